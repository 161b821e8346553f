"""Analytic (Che / TTL) approximation of the prefix-block LRU hit ratio of a trace.

Semantics approximated (computed exactly elsewhere): requests are served instantly in file
order; a request's hit is the longest prefix of its hash chain resident on its instance; then
its blocks are refreshed deepest-first (so the root ends most-recently-used), misses inserted
at MRU, LRU evicted. Block hit ratio = hit blocks / requested blocks. With ``N`` instances each
holds ``floor(C / N)`` blocks.

Method. Time is a *clock* advancing by one per block access, in request order and
deepest-first within a request (the refresh order), so request ``r`` occupies ticks
``[off_r, off_r + L_r)`` and its block ``j`` is accessed at tick ``off_r + L_r - 1 - j``.
The total is ``E`` ticks (= accesses). A re-access's *gap* is ``off_r - t_prev`` (ticks from
the previous access of the block to the start of the request, when residency is checked).

TTL approximation: a block is resident iff its gap ``<= X`` for a characteristic time ``X``
fixed by the capacity. The time-average number of blocks touched in a sliding window of
``X`` ticks is

    O(X) = (sum_intervals min(iv, X) + sum_blocks min(tail, X)) / E,

(``iv``: ticks between consecutive accesses of a block; ``tail = E - t_last``), and ``X_C``
solves ``O(X_C) = C`` (``X_C = inf`` when ``C >= O(inf)``). ``O`` is piecewise linear and
concave with breakpoints at the sorted intervals, so it is inverted by interpolation.
Prefix rule: a block can only hit when all its ancestors hit, so each access carries the
running max of the gaps along its chain (``prefix_max_gap``); hits = #(prefix_max_gap <= X).
With chained ids and deepest-first refresh, ancestors are always more recent, so the max is
the block's own gap (checked on the Mooncake traces); the max keeps it exact for TTL anyway.

Multi-instance. ``random``: each request lands on a given instance with ``p = 1/N``, so the
previous access of a block *on the same instance* is its k-th previous access overall with
probability ``p q^(k-1)`` (``q = 1 - p``); the instance clock runs at ``1/N`` of the global one.
With ``G_k`` the gap to the k-th previous access (``I_k`` the interval), per-instance capacity
``c = floor(C/N)`` and ``X = N T_inst`` in global ticks:

    sum_k w_k S_k(X) + sum_{m<K} q^m Tail_m(X) = N E c,   S_k(X) = sum min(I_k, X),
    hit(X) = sum_k p q^(k-1) #(G_k <= X) / E,

with ``w_k = p q^(k-1)`` (k < K), ``w_K = q^(K-1)`` (mass beyond K lumped at K) and
``Tail_m`` the tails of pairs with ``m`` later accesses (none on the instance w.p. ``q^m``).
``round_robin`` and ``prefix_affinity[_bounded]`` use a known request->instance assignment
(round robin: ``r mod N``; affinity: the router replayed once with an infinite cache, so a
prefix once routed to an instance stays there) and the single-instance model per instance,
on the instance's own sub-trace and clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kvmodel.policies.routing import CLOSED_FORMS
from kvmodel.workload._trace_types import Trace

__all__ = ["ReuseProfile", "reuse_profile", "analytic_hit_ratio_curve", "ROUTINGS",
           "assignment_hit_blocks", "assignment"]

ROUTINGS = CLOSED_FORMS  # the closed-form routing models (kvmodel.policies.routing)
_GRID_POINTS = 4096


@dataclass(frozen=True)
class _Single:
    """One cache's TTL tables: ``E`` ticks; sorted hit gaps; O breakpoints ``(x_bp, f_bp)``.

    ``f_bp = E * O(x_bp)`` (prepended with (0, 0)); ``hit_gaps`` sorted finite prefix-max gaps;
    ``fill[c] = sum_s min(c, D(s))`` (D(s): distinct blocks seen before tick s), the LRU's
    integrated occupancy including the warm-up while it is not yet full.
    """
    ticks: int
    hit_gaps: np.ndarray
    x_bp: np.ndarray
    f_bp: np.ndarray
    fill: np.ndarray  # [U + 1]: cumsum of (E - first-access tick), sorted by first access


@dataclass(frozen=True)
class ReuseProfile:
    """Reuse statistics of a trace, extracted once by :func:`reuse_profile`.

    ``single``: the single-cache tables. Mixture tables (k = 1..K, CSR by ``*_off``):
    ``gap_k`` sorted finite prefix-max gaps to the k-th previous access (hit side);
    ``iv_k`` sorted intervals to the k-th previous access with prefix sums ``iv_k_cs``
    (``iv_k_cs`` has one leading 0 per k, so its offsets are ``iv_off + arange(K + 1)``);
    ``tail_m`` sorted tails of accesses followed by exactly ``m`` (< K) later accesses, same
    layout. ``arr_time``/``arr_rank``: ticks and ranks (j-1: earlier accesses of the block) of
    the accesses with rank < K, by time: a block first reaches an instance at its j-th access
    w.p. ``p q^(j-1)`` (warm-up fill). ``block_offsets``/``block_ids`` keep the trace's chains for
    assignment routings.
    """
    n_requests: int
    total_accesses: int
    unique_blocks: int
    single: _Single
    k_max: int
    gap_k: np.ndarray
    gap_off: np.ndarray
    iv_k: np.ndarray
    iv_k_cs: np.ndarray
    iv_off: np.ndarray
    tail_m: np.ndarray
    tail_m_cs: np.ndarray
    tail_off: np.ndarray
    arr_time: np.ndarray
    arr_rank: np.ndarray
    block_offsets: np.ndarray
    block_ids: np.ndarray
    # the trace's requests (load-aware routing closed forms replay them): arrival times (s),
    # prompt and output tokens, block size in tokens; None in profiles built without them
    arrival_s: np.ndarray | None = None
    input_len: np.ndarray | None = None
    output_len: np.ndarray | None = None
    block_tokens: int | None = None
    _cache: dict = field(default_factory=dict, compare=False, repr=False)


# ----------------------------------------------------------------------------- extraction

def _pairs(offsets: np.ndarray, ids: np.ndarray) -> dict:
    """Unique (block, request) accesses ("pairs") sorted by (block, time), and their stats.

    Tick of request r's block j: ``off_r + L_r - 1 - j``. A pair's time is the last tick the
    block is touched in that request; ``rank``/``later``: pairs of the same block before/after.
    ``pair_of`` maps each access (trace order) to its pair.
    """
    lens = np.diff(offsets)
    m = len(ids)
    req = np.repeat(np.arange(len(lens)), lens)
    clock = offsets[req] + lens[req] - 1 - (np.arange(m) - offsets[req])
    order = np.lexsort((clock, ids))
    s_ids, s_req = ids[order], req[order]
    new = np.ones(m, bool)
    new[1:] = (s_ids[1:] != s_ids[:-1]) | (s_req[1:] != s_req[:-1])
    pair_of = np.empty(m, np.int64)
    pair_of[order] = np.cumsum(new) - 1
    last = np.r_[np.flatnonzero(new)[1:] - 1, m - 1] if m else np.zeros(0, np.int64)
    block, p_req = s_ids[last], s_req[last]
    bnew = np.ones(len(block), bool)
    bnew[1:] = block[1:] != block[:-1]
    bstart = np.flatnonzero(bnew)
    bid = np.cumsum(bnew) - 1
    size = np.diff(np.r_[bstart, len(block)])
    rank = np.arange(len(block)) - bstart[bid]
    return dict(time=clock[order][last].astype(np.float64), start=offsets[p_req].astype(np.float64),
                rank=rank, later=size[bid] - 1 - rank, pair_of=pair_of, req=req, ticks=m,
                unique=len(bstart))


def _prefix_max(values: np.ndarray, req: np.ndarray, ticks: int) -> np.ndarray:
    """Running max of ``values`` (inf allowed) along each request's chain (segmented cummax)."""
    cap = float(ticks + 1)
    big = 2.0 * (cap + 1.0)
    v = np.minimum(values, cap) + req * big
    out = np.maximum.accumulate(v) - req * big if len(v) else v
    out[out >= cap] = np.inf
    return out


def _back(pr: dict, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: gap ``start - time[i-k]`` (inf if < k earlier pairs) and finite intervals."""
    ok = pr["rank"] >= k
    idx = np.flatnonzero(ok)
    gap = np.full(len(ok), np.inf)
    gap[idx] = pr["start"][idx] - pr["time"][idx - k]
    return gap, pr["time"][idx] - pr["time"][idx - k]


def _hit_gaps(pr: dict, pair_gap: np.ndarray) -> np.ndarray:
    """Sorted finite prefix-max gaps of all accesses, given a per-pair gap."""
    g = _prefix_max(pair_gap[pr["pair_of"]], pr["req"], pr["ticks"])
    return np.sort(g[np.isfinite(g)])


def _sum_min_table(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints of ``F(X) = sum min(x_i, X)``: unique sorted x with F there, (0, 0) first."""
    xs = np.sort(x)
    n = len(xs)
    f = np.cumsum(xs) + xs * (n - 1 - np.arange(n))
    xu, last = np.unique(xs[::-1], return_index=True)
    return np.r_[0.0, xu], np.r_[0.0, f[::-1][last]]


def _single_from_pairs(pr: dict) -> _Single:
    gap, iv = _back(pr, 1)
    tails = pr["ticks"] - pr["time"][pr["later"] == 0]
    x_bp, f_bp = _sum_min_table(np.r_[iv, tails])
    first = np.sort(pr["time"][pr["rank"] == 0])
    fill = np.r_[0.0, np.cumsum(pr["ticks"] - first)]
    return _Single(pr["ticks"], _hit_gaps(pr, gap), x_bp, f_bp, fill)


def _single_stats(offsets: np.ndarray, ids: np.ndarray) -> _Single:
    """Single-cache TTL tables of a trace given as CSR chains."""
    return _single_from_pairs(_pairs(np.asarray(offsets, np.int64), np.asarray(ids, np.int64)))


def _csr(arrays: list[np.ndarray], with_cs: bool):
    """Concatenate sorted arrays; optionally prefix sums with a leading 0 per array."""
    off = np.r_[0, np.cumsum([len(a) for a in arrays])].astype(np.int64)
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    if not with_cs:
        return flat, off
    cs = np.concatenate([np.r_[0.0, np.cumsum(a)] for a in arrays])
    return flat, cs, off


def reuse_profile(trace: Trace, k_max: int = 64) -> ReuseProfile:
    """Extract the reuse profile of ``trace`` (O(E log E) time; ~E·min(reuse, K) floats).

    ``k_max`` (K >= 1) bounds how many previous accesses per re-access the multi-instance
    mixture sees; the mass ``(1 - 1/N)^(K-1)`` beyond it is lumped at K (keep N << K).
    """
    if k_max < 1:
        raise ValueError(f"k_max={k_max}: must be >= 1")
    off = np.asarray(trace.block_offsets, np.int64)
    ids = np.asarray(trace.block_ids, np.int64)
    pr = _pairs(off, ids)
    gaps, ivs = [], []
    for k in range(1, k_max + 1):
        gap, iv = _back(pr, k)
        gaps.append(_hit_gaps(pr, gap))
        ivs.append(np.sort(iv))
    tails = [np.sort(pr["ticks"] - pr["time"][pr["later"] == m]) for m in range(k_max)]
    g, g_off = _csr(gaps, False)
    iv, iv_cs, iv_off = _csr(ivs, True)
    tl, tl_cs, tl_off = _csr(tails, True)
    sel = np.flatnonzero(pr["rank"] < k_max)
    sel = sel[np.argsort(pr["time"][sel], kind="stable")]
    return ReuseProfile(len(trace), pr["ticks"], pr["unique"], _single_from_pairs(pr), k_max,
                        g, g_off, iv, iv_cs, iv_off, tl, tl_cs, tl_off, pr["time"][sel],
                        pr["rank"][sel], off, ids, np.asarray(trace.arrival_s, np.float64),
                        np.asarray(trace.input_len, np.int64),
                        np.asarray(trace.output_len, np.int64), int(trace.block_tokens))


# ----------------------------------------------------------------------------- evaluation

def _solve_single(s: _Single, cap: np.ndarray) -> np.ndarray:
    """Hit blocks of one cache of ``cap`` blocks: X solves E·O(X) = fill(cap); #(gaps <= X).

    ``fill(cap) = sum_s min(cap, D(s))`` (= E·cap once full) keeps the warm-up honest;
    ``cap >= U`` (all distinct blocks fit) gives X = inf: every re-access hits.
    """
    u = len(s.fill) - 1
    target = s.fill[np.minimum(cap, u).astype(np.int64)]  # cap is integral (floored)
    x = np.interp(target, s.f_bp, s.x_bp)
    x = np.where(cap >= u, np.inf, x)
    return np.searchsorted(s.hit_gaps, x, side="right").astype(np.float64)


def _sum_min(x: np.ndarray, cs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``sum_i min(x_i, X)`` at each X of ``grid`` (x sorted, cs = [0, cumsum(x)])."""
    i = np.searchsorted(x, grid, side="right")
    return cs[i] + grid * (len(x) - i)


def _mixture_tables(prof: ReuseProfile, n: int) -> tuple:
    """(X grid, F_N(X), expected hit count on it, fill weights W, fill values V) for ``n``.

    Mean per-instance distinct blocks seen before s: ``D(s) = sum w [t < s]`` over arrivals
    with ``w = p q^rank``; ``sum_s min(c, D(s))`` = ``V`` interpolated at ``W = c``.
    """
    key = ("mixture", n)
    if key in prof._cache:
        return prof._cache[key]
    e, kk = prof.total_accesses, prof.k_max
    p = 1.0 / n
    q = 1.0 - p
    grid = np.r_[0.0, np.geomspace(0.5, e + 1.0, _GRID_POINTS)]
    f = np.zeros_like(grid)
    h = np.zeros_like(grid)
    for k in range(1, kk + 1):
        w_hit = p * q ** (k - 1)
        w_occ = w_hit if k < kk else q ** (kk - 1)
        a, b = prof.iv_off[k - 1], prof.iv_off[k]
        f += w_occ * _sum_min(prof.iv_k[a:b], prof.iv_k_cs[a + k - 1:b + k], grid)
        a, b = prof.gap_off[k - 1], prof.gap_off[k]
        h += w_hit * np.searchsorted(prof.gap_k[a:b], grid, side="right")
    for m in range(kk):
        a, b = prof.tail_off[m], prof.tail_off[m + 1]
        f += q ** m * _sum_min(prof.tail_m[a:b], prof.tail_m_cs[a + m:b + m + 1], grid)
    w = p * q ** prof.arr_rank.astype(np.float64)
    fill_w = np.r_[0.0, np.cumsum(w)]
    fill_v = np.r_[0.0, np.cumsum(w * (e - prof.arr_time))]
    prof._cache[key] = (grid, f, h, fill_w, fill_v)
    return prof._cache[key]


def _solve_mixture(prof: ReuseProfile, cap: np.ndarray, n: int) -> np.ndarray:
    """Expected hit blocks under random routing: solve F_N(X) = N·fill(cap), interpolate hits.

    ``fill(cap) = sum_s min(cap, D(s))`` (= E·cap once full); ``cap >= sum w`` gives X = inf.
    """
    grid, f, h, fill_w, fill_v = _mixture_tables(prof, n)
    target = n * np.interp(cap, fill_w, fill_v)
    x = np.interp(target, f, grid)
    out = np.interp(x, grid, h)
    return np.where((cap >= fill_w[-1]) | (target >= f[-1]), h[-1], out)


def prefix_chains(prof: ReuseProfile) -> tuple | None:
    """(each request's chain as a list, how many of its first blocks are accessed again by a
    later request, 1 + the largest block id) for the prefix-affinity replays
    (:func:`_route_infinite`, :func:`kvmodel.cluster._routing_queue.bounded_choice_mix`);
    None unless the ids are small non-negative integers, no chain repeats a block and the
    chains are prefix chains: every access of a block has the same block before it (so the
    same prefix). Then an LRU cache holds a prefix of every chain (a chain touched last block
    to first leaves each block more recent than the next; a later access of a block touches
    its prefix again), and a request's re-accessed blocks come before its last accesses (a
    later request holding a block holds its prefix), which is checked too. Memoised on the
    profile."""
    if "pab_chains" not in prof._cache:
        prof._cache["pab_chains"] = _compress(prof.block_ids, prof.block_offsets)
    return prof._cache["pab_chains"]


def _compress(ids: np.ndarray, off: np.ndarray) -> tuple | None:
    """:func:`prefix_chains` of the flat block ids ``ids`` cut at ``off``; None where its
    conditions fail, or where the largest id exceeds 4x the accesses (the replays index a list
    of 1 + that many masks; sparse ids take the replays' general paths)."""
    if not len(ids) or ids.min() < 0 or ids.max() > 4 * len(ids):
        return None
    lens = np.diff(off)
    req = np.repeat(np.arange(len(lens)), lens)
    order = np.lexsort((np.arange(len(ids)), ids))
    s = ids[order]
    again = np.ones(len(ids), bool)
    again[order[np.r_[s[1:] != s[:-1], True]]] = False  # the block's last access
    live = np.bincount(req, weights=again, minlength=len(lens)).astype(np.int64)
    pos = np.arange(len(ids)) - off[req]
    width = int(ids.max()) + 1
    pred = np.where(pos > 0, np.r_[-1, ids[:-1]], -1)  # the block before in its chain
    if (len(np.unique(req * width + ids)) < len(ids) or np.any(again != (pos < live[req]))
            or len(np.unique(ids * (width + 1) + pred + 1)) > len(np.unique(ids))):
        return None
    flat = ids.tolist()
    chains = [flat[a:b] for a, b in zip(off[:-1].tolist(), off[1:].tolist())]
    return chains, live.tolist(), width


def _route_infinite(prof: ReuseProfile, n: int, bounded: bool, eps: float) -> np.ndarray:
    """Replay the prefix-affinity router assuming caches never evict (a prefix, once routed
    to an instance, stays cached there). Longest prefix wins; ties -> fewest requests, then
    lowest index; bounded: only instances with ``count + 1 <= ceil((1+eps)(k+1)/n)``. Each
    block maps to the mask of the instances holding it; a block's last access in the trace
    is not recorded (no later request looks it up, :func:`prefix_chains`). The number of
    instances tied at each request's longest prefix is kept in ``prof._cache`` under
    ``("infinite_ties", n, bounded, eps)`` (counts of 1 ... n ties) and, bounded, the
    requests left with one eligible instance because the bound excluded others (an instance
    with a longer cached prefix, or one tied with it: the unbounded rule's set differs) under
    ``("infinite_excluded", n, eps)``
    (:func:`kvmodel.cluster._routing_queue.bounded_steer_share`)."""
    pre = prefix_chains(prof)
    if pre is None:
        off, ids = prof.block_offsets.tolist(), prof.block_ids.tolist()
        chains = [ids[a:b] for a, b in zip(off[:-1], off[1:])]
        live, seen = [len(c) for c in chains], _Masks()
    else:
        chains, live, width = pre
        seen = [0] * width
    counts, ties, most, full, excluded = [0] * n, [0] * n, 0, (1 << n) - 1, 0
    out = np.empty(prof.n_requests, np.int64)
    for r, chain in enumerate(chains):
        best = full
        if bounded:
            bound = math.ceil((1.0 + eps) * (r + 1) / n)
            if most >= bound:
                best = sum(1 << i for i in range(n) if counts[i] + 1 <= bound)
        cut = best != full
        best = narrowed(best, chain, seen)[0]
        ties[best.bit_count() - 1] += 1
        if cut and best & (best - 1) == 0:  # one eligible: did the bound decide?
            excluded += narrowed(full, chain, seen)[0] != best
        c = fewest_routed(best, counts, full)
        counts[c] += 1
        most = max(most, counts[c])
        out[r] = c
        bit = 1 << c
        for b in chain[:live[r]]:
            seen[b] |= bit
    prof._cache[("infinite_ties", n, bounded, eps)] = ties
    if bounded:
        prof._cache[("infinite_excluded", n, eps)] = excluded
    return out


def narrowed(best: int, chain: list, holders) -> tuple[int, int]:
    """(the instances of the mask ``best`` holding the longest prefix of ``chain`` any of
    them holds, its length in blocks): the mask narrowed block by block (``holders``: block
    -> mask of the instances holding it)."""
    k = 0
    for b in chain:
        m = best & holders[b]
        if not m:
            break
        best, k = m, k + 1
    return best, k


def fewest_routed(mask: int, counts: list, full: int) -> int:
    """The instance in the bit mask ``mask`` with the fewest routed requests (``counts``),
    ties to the lowest index (``full``: the mask of every instance)."""
    if mask & (mask - 1) == 0:
        return mask.bit_length() - 1
    if mask == full:
        return counts.index(min(counts))
    n = len(counts)
    return min([counts[i] * n + i for i in range(n) if mask >> i & 1]) % n


class _Masks(dict):
    """Block -> instance mask, 0 for a block no instance holds."""

    def __missing__(self, key: int) -> int:
        return 0


def _assignment(prof: ReuseProfile, n: int, routing: str, eps: float) -> np.ndarray:
    if routing == "round_robin":
        return np.arange(prof.n_requests) % n
    return _route_infinite(prof, n, routing == "prefix_affinity_bounded", eps)


def assignment(prof: ReuseProfile, n: int, routing: str, eps: float) -> np.ndarray:
    """Instance of each request under a cache-only assignment routing (round_robin,
    prefix_affinity, prefix_affinity_bounded with ``eps``); memoised on the profile (the
    hit curve's tables and the bounded router's queue law ask for the same one)."""
    key = ("assignment", routing, int(n), float(eps) if routing == "prefix_affinity_bounded"
           else None)
    if key not in prof._cache:
        a = _assignment(prof, int(n), routing, float(eps))
        a.setflags(write=False)
        prof._cache[key] = a
    return prof._cache[key]


def _instance_tables(prof: ReuseProfile, assign: np.ndarray, n: int) -> list[_Single]:
    """Single-cache tables of each instance's sub-trace (own clock) under ``assign``."""
    lens = np.diff(prof.block_offsets)
    tables = []
    for i in range(n):
        rs = np.flatnonzero(assign == i)
        sub_off = np.r_[0, np.cumsum(lens[rs])].astype(np.int64)
        mask = np.repeat(assign == i, lens)
        tables.append(_single_stats(sub_off, prof.block_ids[mask]))
    return tables


def _solve_assigned(prof: ReuseProfile, cap: np.ndarray, n: int, routing: str,
                    eps: float) -> np.ndarray:
    key = (routing, n, eps if routing == "prefix_affinity_bounded" else None)
    return assignment_hit_blocks(prof, key, lambda: assignment(prof, n, routing, eps), cap, n)


def assignment_hit_blocks(prof: ReuseProfile, key: tuple, assign_fn, cap: np.ndarray,
                          n: int) -> np.ndarray:
    """Expected hit blocks at per-instance capacities ``cap`` (integral) when request r is
    served by instance ``assign_fn()[r]`` (-1: not served), each instance an LRU on its own
    sub-trace and clock. ``key`` names the assignment in ``prof._cache`` (built once)."""
    if key not in prof._cache:
        prof._cache[key] = _instance_tables(prof, np.asarray(assign_fn()), n)
    tables = prof._cache[key]
    # every instance gets the same integral capacity, so the summed hits are tabulated once
    # for every capacity up to the largest instance's distinct blocks (beyond it nothing
    # changes): a call is then one look-up, with exactly the values of the sum below
    tkey = ("summed",) + key
    if tkey not in prof._cache:
        top = max(len(t.fill) - 1 for t in tables)
        every = np.arange(top + 1, dtype=np.float64)
        prof._cache[tkey] = sum(_solve_single(t, every) for t in tables)
    summed = prof._cache[tkey]
    return summed[np.minimum(cap, len(summed) - 1).astype(np.int64)]


def _check(capacities, instances: int, routing: str, epsilon: float) -> np.ndarray:
    caps = np.asarray(capacities, dtype=np.float64)
    if caps.size and (not np.all(np.isfinite(caps)) or np.any(caps < 0)):
        raise ValueError("capacities_blocks must be finite and >= 0")
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; expected one of {ROUTINGS}")
    if int(instances) != instances or instances < 1:
        raise ValueError(f"instances={instances}: must be an integer >= 1")
    if routing == "single" and instances != 1:
        raise ValueError("routing='single' needs instances=1")
    if epsilon < 0:
        raise ValueError(f"epsilon={epsilon}: must be >= 0")
    return caps


def analytic_hit_ratio_curve(profile_or_trace: ReuseProfile | Trace, capacities_blocks,
                             instances: int = 1, routing: str = "single", seed: int = 0,
                             epsilon: float = 0.25) -> np.ndarray:
    """Approximate block hit ratio at each total capacity (blocks, over all instances).

    Returns float64 array shaped like ``capacities_blocks``, each in [0, 1 - cold/E], and
    non-decreasing in capacity for a fixed (instances, routing). Per-instance capacity is
    ``floor(C / instances)``. ``random`` returns the expectation over routing draws (``seed``
    is accepted for API symmetry with exact replay and unused). The first call per
    (instances, routing) builds cached tables (ms .. 1 s); later calls are microseconds.
    Raises ValueError on negative/non-finite capacities or an unknown routing.
    """
    caps = _check(capacities_blocks, instances, routing, epsilon)
    prof = profile_or_trace if isinstance(profile_or_trace, ReuseProfile) \
        else reuse_profile(profile_or_trace)
    n = int(instances)
    if prof.total_accesses == 0:
        return np.zeros(caps.shape)
    cap = np.floor(caps / n)
    if n == 1:
        hits = _solve_single(prof.single, cap)
    elif routing == "random":
        hits = _solve_mixture(prof, cap, n)
    else:
        hits = _solve_assigned(prof, cap, n, routing, float(epsilon))
    return hits / prof.total_accesses
