"""Hit ratio vs capacity for any eviction policy, fast enough for the closed-form cluster model.

``policy_hit_ratio_curve(trace, profile, capacities_blocks, instances, routing, epsilon,
eviction)`` answers in tens of microseconds per call (vectorised over any shape) once a small
table per (eviction, instances, routing, epsilon[, seed]) is built and cached in
``profile._cache``.

* ``eviction="lru"`` is exactly :func:`~kvmodel.workload._reuse_analytic.analytic_hit_ratio_curve`
  (the analytic TTL/Che model), so LRU results do not change.
* Any other policy of :data:`~kvmodel.workload._reuse_exact.EVICTION_POLICIES` is replayed exactly
  (:func:`~kvmodel.workload._reuse_exact.replay`, same semantics and routing as
  ``hit_ratio_curve(method="exact")``) at a few per-instance capacities ``c_k`` and
  interpolated in between.

Grid. Per-instance capacities ``c = floor(C / N)`` (C: total over the N instances, as in the
analytic model). The grid is ``0`` (hit ratio 0, not replayed), ``1``, ``2`` (small-cache
artefacts, e.g. admit-on-reuse needs 2 slots to admit anything), ``grid_points`` interior
points, and the saturation capacity ``c_top`` at which no instance ever evicts (every
capacity above it gives the same hit ratio as ``c_top``; see :func:`_saturation`). The
interior points sit at equal steps of
``u(c) = (A'(c) + lam * log(c / 2) / log(c_top / 2)) / (1 + lam)``, ``lam = 0.5``, where ``A'``
is the analytic LRU curve for the same (N, routing) scaled to [0, 1] over [2, c_top]: points go
where the LRU curve rises (all policies rise in the capacity range where the working set
starts to fit) and, through the log term, some into the flat stretches. Wide gaps are then
filled geometrically so that no two neighbouring grid capacities differ by more than
``MAX_STEP`` (4x): where LRU is already flat another policy may still rise (LFU on short
multi-turn traces was off by 0.08 without it, 0.035 with it).

Interpolation. Between grid points ``c_k <= c < c_{k+1}`` the hit ratio is
``h_k + t (h_{k+1} - h_k)`` with ``t = (A(c) - A(c_k)) / (A(c_{k+1}) - A(c_k))``: linear in the
analytic LRU curve A rather than in log c, i.e. the policy's curve is assumed to have the
LRU's shape within a segment (fallback where A is flat: linear in log c). Because A is
non-decreasing this is monotone, exact at the grid points, and never leaves
``[h_k, h_{k+1}]``, so where the exact curve is monotone the error is at most the segment's
rise. Grid values are made non-decreasing by a running max (a policy with Belady's anomaly
can hit less with more space; the table then reports the best hit ratio reachable with at
most ``c`` blocks per instance). At build time this interpolant is tabulated at ~2000
log-spaced per-instance capacities (the grid points among them); a call is one ``np.interp``
in ``log1p(c)`` on that table (exact at grid points, monotone, ~25-40 us for a few
capacities -- cheaper than the analytic LRU call itself).

Why this interpolant. On the Mooncake conversation trace (N=1 and N=8 bounded affinity, 20
off-grid capacities per policy, default grid of 7 replays) the max error is <= 0.003, against
0.003-0.019 for linear-in-log-c on the same grid and 0.000-0.009 for the multiplicative
correction ``A(c) * interp(h_k / A(c_k))``; with 6-11 replays it stays 0.002-0.006 while the
correction is sometimes better, sometimes worse. Unlike the correction it is monotone and
bounded by its segment by construction. ``benchmarks/policy_curve.py`` prints the figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from kvmodel.policies import EVICTION
from kvmodel.workload._reuse_analytic import (
    ReuseProfile,
    _assignment,
    _check,
    analytic_hit_ratio_curve,
    reuse_profile,
)
from kvmodel.workload._reuse_exact import EVICTION_POLICIES, replay
from kvmodel.workload._trace_types import Trace

__all__ = ["policy_hit_ratio_curve", "policy_curve_table", "PolicyCurveTable", "EVICTIONS",
           "DEFAULT_GRID_POINTS"]

EVICTIONS = EVICTION.names()   # kvmodel.policies.EVICTION
DEFAULT_GRID_POINTS = 4          # interior grid points; + 1, 2 and c_top = 7 replays
MAX_STEP = 4.0                   # widest ratio between neighbouring grid capacities (>= 2)
_LOG_WEIGHT = 0.5                # lam in u(c): share of grid spacing that follows log c
# Policies that admit every missed block (when capacity > 0). With them, a cache that never
# evicts holds exactly the blocks its instance has seen, so content-dependent routing matches
# the infinite-cache routing of the analytic model (see _saturation).
_ADMIT_ALL = frozenset(n for n, e in EVICTION.items() if "admits-every-miss" in e.tags)
_CACHE_TAG = "policy_curve"


@dataclass(frozen=True)
class PolicyCurveTable:
    """The replayed grid of one (eviction, instances, routing, epsilon, seed).

    ``per_instance``: per-instance capacities, starting 0, 1, 2, ..., ending at ``c_top``
    (saturation); ``capacities``: the same as totals (``instances * per_instance``);
    ``hit_ratio``: exact replay hit ratio there (running max, 0 at 0); ``lru``: the analytic LRU
    hit ratio there (interpolation coordinate); ``build_s``: seconds spent building.
    ``x_dense``/``h_dense``: the interpolant tabulated at ~2000 per-instance capacities
    (all grid points among them) against ``log1p(c)``; calls interpolate linearly in it.
    """
    eviction: str
    instances: int
    routing: str
    per_instance: np.ndarray
    capacities: np.ndarray
    hit_ratio: np.ndarray
    lru: np.ndarray
    build_s: float
    x_dense: np.ndarray = field(repr=False)
    h_dense: np.ndarray = field(repr=False)

    @property
    def replays(self) -> int:
        return len(self.per_instance) - 1


def policy_hit_ratio_curve(trace: Trace | None, profile: ReuseProfile | None, capacities_blocks,
                           instances: int = 1, routing: str = "single", epsilon: float = 0.25,
                           eviction: str = "lru", *, seed: int = 0,
                           grid_points: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    """Block hit ratio at each TOTAL capacity in ``capacities_blocks`` (blocks over all
    instances; per-instance ``floor(C / instances)``), float64 shaped like the input.

    ``eviction="lru"``: exactly ``analytic_hit_ratio_curve(profile, ...)``. Other policies:
    exact replay on a grid, interpolated along the analytic LRU curve (module docstring); the
    grid is built on first use (``grid_points + 3`` replays, about 0.2-1 s each on a 300k-block
    trace) and cached in ``profile._cache``, after which calls take microseconds. Pass the
    same ``profile`` object each time (``profile=None`` extracts a fresh one per call, so
    nothing is cached; ``trace=None`` rebuilds the chains from the profile). ``seed`` is the
    routing seed of the replays for ``routing="random"`` (the analytic model averages over
    draws). Conventions (routing names, ``"single"`` needs 1 instance, capacities >= 0) are the
    analytic model's; map ``least_loaded`` etc. before calling. ``prefix_affinity_bounded``
    with a non-LRU policy needs ``epsilon > 0`` (exact replay). Raises ValueError naming the
    allowed values for an unknown ``eviction``.
    """
    _check_eviction(eviction)
    if profile is None:
        if trace is None:
            raise ValueError("policy_hit_ratio_curve needs a trace or a profile")
        profile = reuse_profile(trace)
    if eviction == "lru":
        return analytic_hit_ratio_curve(profile, capacities_blocks, instances=instances,
                                        routing=routing, epsilon=epsilon)
    caps = _check(capacities_blocks, instances, routing, epsilon)
    n = int(instances)
    if profile.total_accesses == 0:
        return np.zeros(caps.shape)
    tab = profile._cache.get(_key(eviction, n, routing, epsilon, seed, grid_points))
    if tab is None:
        tab = policy_curve_table(trace, profile, instances=n, routing=routing, epsilon=epsilon,
                                 eviction=eviction, seed=seed, grid_points=grid_points)
    return np.asarray(np.interp(np.log1p(np.floor(caps / n)), tab.x_dense, tab.h_dense))


def policy_curve_table(trace: Trace | None, profile: ReuseProfile, instances: int = 1,
                       routing: str = "single", epsilon: float = 0.25, eviction: str = "fifo",
                       *, seed: int = 0,
                       grid_points: int = DEFAULT_GRID_POINTS) -> PolicyCurveTable:
    """The cached grid behind :func:`policy_hit_ratio_curve` (built on first use)."""
    _check_eviction(eviction)
    if int(grid_points) != grid_points or grid_points < 0:
        raise ValueError(f"grid_points={grid_points!r}: must be an integer >= 0")
    _check(np.zeros(0), instances, routing, epsilon)
    n = int(instances)
    key = _key(eviction, n, routing, epsilon, seed, grid_points)
    routing = key[3]
    tab = profile._cache.get(key)
    if tab is None:
        tab = profile._cache[key] = _build(trace, profile, n, routing, float(epsilon), eviction,
                                           int(seed), int(grid_points))
    return tab


def _check_eviction(eviction: str) -> None:
    if eviction not in EVICTION_POLICIES:
        raise ValueError(f"eviction={eviction!r}: unknown eviction policy; allowed: "
                         f"{', '.join(EVICTIONS)}")


def _key(eviction: str, n: int, routing: str, epsilon: float, seed: int, grid_points: int):
    """Cache key; every routing is "single" on one instance, epsilon/seed only where used."""
    routing = "single" if n == 1 else routing
    return (_CACHE_TAG, eviction, n, routing,
            float(epsilon) if routing == "prefix_affinity_bounded" else None,
            int(seed) if routing == "random" else None, int(grid_points))


# ----------------------------------------------------------------------------- building

def _build(trace: Trace | None, prof: ReuseProfile, n: int, routing: str, eps: float,
           eviction: str, seed: int, grid_points: int) -> PolicyCurveTable:
    t0 = time.perf_counter()
    if trace is None:
        trace = _trace_from_profile(prof)
    total = trace.total_blocks
    c_top = _saturation(trace, prof, n, routing, eps, eviction, seed)
    grid, cand = _grid(prof, n, routing, eps, c_top, grid_points)
    # epsilon only matters to the bounded router; the replay insists on > 0 even when unused
    eps_replay = eps if routing == "prefix_affinity_bounded" or eps > 0 else 0.25
    hits = [0.0]
    for c in grid[1:]:
        r = replay(trace, int(c) * n, n, routing, seed, eviction, eps_replay)
        hits.append(r.hit_blocks / total)
    hit = np.maximum.accumulate(np.asarray(hits))
    lru = _lru(prof, grid, n, routing, eps)
    dense = np.unique(np.r_[grid, cand])
    h_dense = _interpolate(grid, hit, lru, dense, lambda c: _lru(prof, c, n, routing, eps))
    return PolicyCurveTable(eviction, n, routing, grid, grid * n, hit, lru,
                            time.perf_counter() - t0, np.log1p(dense), h_dense)


def _trace_from_profile(prof: ReuseProfile) -> Trace:
    m = prof.n_requests
    zeros = np.zeros(m)
    return Trace(zeros, np.zeros(m, np.int64), np.zeros(m, np.int64),
                 np.asarray(prof.block_offsets, np.int64), np.asarray(prof.block_ids, np.int64))


def _saturation(trace: Trace, prof: ReuseProfile, n: int, routing: str, eps: float,
                eviction: str, seed: int) -> int:
    """Per-instance capacity at and above which no instance ever evicts: the most distinct
    blocks any instance is sent. The request->instance assignment is fixed for single,
    round_robin and random (the replay's own draws); for prefix affinity with a policy that
    admits every miss it is the analytic model's infinite-cache routing (a never-evicting
    cache holds exactly what its instance has seen, so the router decides identically, by
    induction over requests). Otherwise (e.g. admit-on-reuse under affinity, whose routing
    depends on what was admitted) fall back to the trace's distinct blocks, which always
    suffice."""
    unique = prof.unique_blocks
    if n == 1:
        return max(unique, 1)
    if routing in ("prefix_affinity", "prefix_affinity_bounded") and eviction not in _ADMIT_ALL:
        return max(unique, 1)
    key = (_CACHE_TAG, "footprint", n, routing,
           eps if routing == "prefix_affinity_bounded" else None,
           seed if routing == "random" else None)
    if key not in prof._cache:
        if routing == "random":          # the same draws as replay(..., routing="random")
            assign = np.random.default_rng(seed).integers(0, n, size=len(trace))
        elif routing == "round_robin":
            assign = np.arange(len(trace)) % n
        else:
            assign = _assignment(prof, n, routing, eps)
        inst = np.repeat(np.asarray(assign, np.int64), np.diff(trace.block_offsets))
        ids = np.asarray(trace.block_ids)
        o = np.lexsort((ids, inst))
        si, sb = inst[o], ids[o]
        new = np.r_[True, (si[1:] != si[:-1]) | (sb[1:] != sb[:-1])] if len(o) else o > 0
        prof._cache[key] = max(int(np.bincount(si[new], minlength=n).max()), 1)
    return prof._cache[key]


def _lru(prof: ReuseProfile, per_instance, n: int, routing: str, eps: float) -> np.ndarray:
    """Analytic LRU hit ratio at per-instance capacities (the interpolation coordinate)."""
    return analytic_hit_ratio_curve(prof, np.asarray(per_instance, np.float64) * n,
                                    instances=n, routing=routing, epsilon=eps)


def _grid(prof: ReuseProfile, n: int, routing: str, eps: float, c_top: int,
          grid_points: int) -> np.ndarray:
    """(grid, candidates): 0, 1, 2, ``grid_points`` points at equal steps of u(c) (module
    docstring) and c_top; picked among ~2000 log-spaced candidate capacities in [2, c_top]."""
    fixed = [0, 1, 2, c_top]
    if c_top <= 3:
        return np.unique(np.clip(fixed, 0, c_top)).astype(np.float64), np.zeros(0)
    cand = np.unique(np.round(np.geomspace(2, c_top, 2048)))
    a = _lru(prof, cand, n, routing, eps)
    span = a[-1] - a[0]
    a = (a - a[0]) / span if span > 0 else np.zeros_like(a)
    lam = _LOG_WEIGHT if span > 0 else 1.0
    u = (a + lam * np.log(cand / 2) / np.log(c_top / 2)) / (1 + lam)
    u = np.maximum.accumulate(u)
    levels = np.linspace(0.0, 1.0, grid_points + 2)[1:-1]
    picks = cand[np.minimum(np.searchsorted(u, levels, side="left"), len(cand) - 1)]
    g = np.unique(np.r_[fixed, picks]).astype(np.float64)
    # no stretch wider than MAX_STEP x: where the LRU curve is already flat another policy
    # may still be rising (LFU on short multi-turn traces), so fill wide gaps geometrically
    fill = [np.geomspace(a, b, int(np.ceil(np.log(b / a) / np.log(MAX_STEP))) + 1)[1:-1]
            for a, b in zip(g[2:-1], g[3:]) if b / a > MAX_STEP]
    return np.unique(np.round(np.r_[g, *fill])).astype(np.float64), cand


# ----------------------------------------------------------------------------- interpolation

def _interpolate(g: np.ndarray, h: np.ndarray, al: np.ndarray, c: np.ndarray,
                 lru) -> np.ndarray:
    """Hit ratio at per-instance capacities ``c`` (integers >= 0, 1-D) from grid ``g`` with
    hit ratios ``h`` and analytic LRU ``al`` there; ``lru(c)``: the analytic LRU at ``c``."""
    k = np.clip(np.searchsorted(g, c, side="right") - 1, 0, len(g) - 2)
    t = (c >= g[-1]).astype(np.float64)               # on a grid point: 0; beyond c_top: 1
    inside = np.flatnonzero((c > g[k]) & (c < g[-1]))
    if len(inside):
        ci, ki = c[inside], k[inside]
        lo, hi = g[ki], g[ki + 1]                     # lo >= 2: 0, 1, 2 are grid points
        t_log = np.log(ci / lo) / np.log(hi / lo)
        da = al[ki + 1] - al[ki]
        t_warp = (lru(ci) - al[ki]) / np.where(da > 1e-12, da, 1.0)
        t[inside] = np.clip(np.where(da > 1e-12, t_warp, t_log), 0.0, 1.0)
    return h[k] + t * (h[k + 1] - h[k])
