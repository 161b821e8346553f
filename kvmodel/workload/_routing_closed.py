"""Closed forms of the load-aware routers (least_loaded, dynamo, llmd, sglang, mooncake): each
policy's own rule replayed once over the trace against a fluid load instead of the simulator's
live state, giving its own request -> instance assignment, hence its own hit ratio curve and
load imbalance.

Replay. Requests arrive in trace order at the trace's arrival times rescaled to the operating
request rate ``RouterLoad.rate_per_s`` (whole cluster). Each is routed by the registered policy
object itself (``make_policy(name, **params).choose``, the class the simulator runs) given a
:class:`~kvmodel.policies.routing.RoutingView` built as follows:

* ``cached[i] = {"hbm": p_i}``: ``p_i`` = leading blocks of the request's chain that instance i
  has been routed before (caches never evict, as :func:`~kvmodel.workload._reuse_analytic.
  _route_infinite` assumes; this is exactly SGLang's router-side tree, and an over-estimate
  for indexers that see evictions when the caches are much smaller than the working set).
* In flight, from Little's law at the operating point, each routed request counts on its
  instance for three spans (:func:`_times`), as the simulator's instance holds it: admission
  wait ``A`` = the level's wait (``waiting_s``: the time in the engine's waiting queue, i.e.
  the request overhead, the rest of the step in progress, the prefill carry and the KV-slot
  wait; see :func:`kvmodel.cluster._routing_load._admission_wait`), at most its TTFT; prefill pending
  (its TTFT) ``P_r = A + p·u_r + max(T − A − p·ū, 0)``: its own ``u_r`` uncached prompt
  tokens at the per-token prefill time ``p`` (``prefill_s_per_token``), the rest of the
  level's mean TTFT ``T`` (``prefill_s``) spread evenly (ū: the mean uncached tokens of the
  requests so far), so a full miss holds its prompt as long as it computes and the mean is
  ``T`` (unless the prefill alone takes longer); residence ``P_r`` + its own decode at the
  mean pace ``(R − T) / mean output`` (mean ``R``, ``residence_s``; about ``rate * R``
  requests in flight cluster-wide). A load without a TTFT (the default) holds nothing.
  ``active_i``, ``kv_blocks_i`` (prompt blocks), ``kv_usage_i`` (prompt + output tokens over
  ``kv_capacity_tokens``) sum the requests within their residence; ``waiting_i`` those
  within their admission wait; ``queued_prefill_tokens_i`` (uncached prompt tokens) those
  within their prefill pending time; ``running_i`` = active less the latter (the decoding
  ones). ``routed_i`` counts every request so far; ``tree_blocks_i`` and ``cache_blocks_i``
  the distinct blocks instance i has seen; ``step_s_i`` 0 (no registered policy reads it).
* ``prefill_s_per_token`` from the load (Mooncake's estimate; the argmin does not depend on it
  unless the policy has a pool or an SLO).

A rejected request (Mooncake with ``ttft_slo_s``) is served nowhere: it counts as a miss.
Hit ratio: the analytic LRU of each instance's sub-trace (as for round robin and prefix
affinity, :func:`~kvmodel.workload._reuse_analytic.assignment_hit_blocks`). Imbalance: the
busiest instance's routed count x N / routed total (the simulator's ``requests_per_instance``;
:func:`routed_imbalance`). Queue term (:func:`routed_load_stats`, read by
:mod:`kvmodel.cluster._routing_queue`): the share of requests whose rule chose among d
instances by load (``RoutingPolicy.load_choices`` on the same view) and the busiest instance's
share of the uncached prompt tokens x N (what :func:`kvmodel.evaluate` takes as the load-aware
routers' imbalance: they send more requests where they hit). Arrival smoothing
(:func:`routed_work_dispersion`): how much less variable each instance's arrivals of prompt
work are than a random split's (the instance queue's ``ca2``). Work classes
(:func:`routed_work_classes`): the served requests' hits and misses, each class's share and
mean prompt and uncached tokens (the load levels' instance estimate takes them as its
``prefix_classes``).

Load levels. The assignment depends on the load, so callers quantise it to a few levels of
utilisation (:data:`LOAD_LEVELS`, fractions of the instance's saturation rate; see
:mod:`kvmodel.cluster._routing_load`) and describe each by one :class:`RouterLoad`. Every
(policy, parameters, N, load) assignment is built once (a Python replay, ~40 us per request and
instance count) and cached in ``profile._cache``; later calls are table look-ups.

Parameters that cannot change the choice are dropped before caching
(:func:`canonical_params`): Mooncake's ``prefill_s_per_token`` without pool or SLO (a common
factor of every predicted TTFT), Dynamo's ``tier_credit`` with ``overlap_score_weight`` 0 and
llm-d's ``tier_weight`` with ``prefix_weight`` 0, SGLang's ``match`` (the replay's prefix is the
routed prompts', its tree, either way); llm-d's weights are scaled to sum 1 (the
max-score pick is scale-free). Equal canonical parameters give equal numbers, and
``ClusterResult.closed_forms["routing_params"]`` shows them.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, poisson

from kvmodel.policies import ROUTING
from kvmodel.policies.routing import LOADED_FORMS, RouteRequest, RoutingView, make_policy
from kvmodel.workload._reuse_analytic import (
    ReuseProfile,
    analytic_hit_ratio_curve,
    assignment_hit_blocks,
    reuse_profile,
)
from kvmodel.workload._trace_types import Trace

__all__ = ["RouterLoad", "LOAD_LEVELS", "LOADED_FORMS", "canonical_params", "routed_assignment",
           "routed_hit_ratio_curve", "routed_imbalance", "random_imbalance", "routed_load_stats",
           "routed_token_hit", "routed_work_classes", "routed_work_dispersion"]

# utilisation levels (offered load / saturation rate of an instance) the replays run at, the
# rates between interpolated; fine at the low end, where a load-aware rule's spread moves most
# with the load (8 x 1,000 synthetic requests: llm-d's imbalance 2.6 at 0.05, 1.9 at 0.25)
LOAD_LEVELS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class RouterLoad:
    """The fluid load a router sees (see the module docstring). ``rate_per_s`` None replays
    the trace at its own arrival times; the default (nothing in flight) is an idle cluster."""
    rate_per_s: float | None = None
    residence_s: float = 0.0
    prefill_s: float = 0.0
    waiting_s: float = 0.0
    kv_capacity_tokens: float = math.inf
    prefill_s_per_token: float = 1e-4

    def __post_init__(self):
        for name in ("residence_s", "prefill_s", "waiting_s", "kv_capacity_tokens",
                     "prefill_s_per_token"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and not math.isnan(v)):
                raise ValueError(f"RouterLoad.{name}={v!r}: must be a number >= 0")
        r = self.rate_per_s
        if r is not None and not (isinstance(r, (int, float)) and 0 < r < math.inf):
            raise ValueError(f"RouterLoad.rate_per_s={r!r}: must be a finite number > 0 or None")
        object.__setattr__(self, "_key", tuple(
            None if v is None else float(f"{v:.9g}") for v in
            (r, self.residence_s, self.prefill_s, self.waiting_s, self.kv_capacity_tokens,
             self.prefill_s_per_token)))

    def key(self) -> tuple:
        """The load's figures (9 significant digits): the cache key of its assignments."""
        return self._key


_CANONICAL: dict = {}


def canonical_params(name: str, params: dict | None = None) -> dict:
    """``params`` over the entry's defaults with the parameters that cannot change the choice
    removed or normalised (module docstring); ValueError for unknown names or values. The
    returned dict is shared (memoised): do not modify it."""
    key = (name, _params_key(params or {}))
    if key not in _CANONICAL:
        _CANONICAL[key] = _canonical(name, params)
    return _CANONICAL[key]


def _canonical(name: str, params: dict | None) -> dict:
    full = ROUTING.check_params(name, dict(params or {}))
    for p in ROUTING[name].params:  # 64 and 64.0 are one threshold
        if p.kind in (float, int) and full[p.name] is not None:
            full[p.name] = p.kind(full[p.name])
    if name == "mooncake" and full["ttft_slo_s"] is None and full["pool_s_per_block"] is None:
        full["prefill_s_per_token"] = None
    if name == "sglang":  # the replay's prefix is the routed prompts' (the tree) either way
        del full["match"]
    if name == "dynamo" and full["overlap_score_weight"] == 0:
        full["tier_credit"] = None
    if name == "llmd":
        total = full["prefix_weight"] + full["kv_util_weight"] + full["queue_weight"]
        for k in ("prefix_weight", "kv_util_weight", "queue_weight"):
            full[k] = full[k] / total if total > 0 else 0.0
        if full["prefix_weight"] == 0:
            full["tier_weight"] = None
    return full


def _params_key(params: dict) -> tuple:
    return tuple((k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
                 for k, v in sorted(params.items()))


# ----------------------------------------------------------------------------- replay

def _prefixes(seen: dict, chain: list, n: int) -> list[int]:
    """Leading blocks of ``chain`` each instance has seen (``seen``: block -> instance bits)."""
    out = [len(chain)] * n
    alive = (1 << n) - 1
    for d, b in enumerate(chain):
        now = alive & seen.get(b, 0)
        gone = alive & ~now
        while gone:
            low = gone & -gone
            out[low.bit_length() - 1] = d
            gone ^= low
        alive = now
        if not alive:
            break
    return out


def _arrivals(prof: ReuseProfile, rate: float | None) -> list[float]:
    """Arrival times (s) replayed at the cluster rate ``rate`` (None: the trace's own)."""
    t = prof.arrival_s - prof.arrival_s[0]
    span = float(t[-1]) if len(t) else 0.0
    if rate is None:
        return t.tolist()
    if span <= 0:  # all at once: spread evenly at the rate
        return (np.arange(len(t)) / rate).tolist()
    return (t * ((len(t) / span) / rate)).tolist()


class _Fluid:
    """Per-instance counters of the fluid load (module docstring) and their expiry queues."""

    def __init__(self, n: int, load: RouterLoad):
        self.load = load
        z = [0] * n
        self.active, self.kvb, self.kvtok, self.wait, self.qtok = z[:], z[:], z[:], z[:], z[:]
        self.filling, self.routed, self.tree, self._zeros, self._tier = z[:], z[:], z[:], z[:], []
        self.res, self.pre, self.adm = [], [], deque()  # expiry queues

    def expire(self, now: float) -> None:
        while self.res and self.res[0][0] <= now:
            _, _, i, b, tok = heapq.heappop(self.res)
            self.active[i] -= 1
            self.kvb[i] -= b
            self.kvtok[i] -= tok
        while self.pre and self.pre[0][0] <= now:
            _, _, i, q = heapq.heappop(self.pre)
            self.qtok[i] -= q
            self.filling[i] -= 1
        while self.adm and self.adm[0][0] <= now:
            self.wait[self.adm.popleft()[1]] -= 1

    def view(self, n: int, block_tokens: int, prefix: list[int]) -> RoutingView:
        """The view of this request (fields as RoutingView's, filled without its checks:
        every list has n entries by construction; policies never mutate a view)."""
        v = RoutingView.__new__(RoutingView)
        v.n, v.block_tokens = n, block_tokens
        v.prefill_s_per_token = self.load.prefill_s_per_token
        cap = self.load.kv_capacity_tokens
        while len(self._tier) <= max(prefix, default=0):  # {"hbm": p}, shared read-only
            self._tier.append({"hbm": len(self._tier)})
        v.cached, v.active = [self._tier[p] for p in prefix], self.active
        v.running = [a - f for a, f in zip(self.active, self.filling)]
        v.waiting, v.queued_prefill_tokens, v.kv_blocks = self.wait, self.qtok, self.kvb
        v.kv_usage = [x / cap for x in self.kvtok]
        v.step_s, v.routed = self._zeros, self.routed
        v.cache_blocks = v.tree_blocks = self.tree
        v.__dict__["prefix_blocks"] = prefix
        return v

    def add(self, now: float, times: tuple, i: int, blocks: int, tokens: int,
            uncached: int) -> None:
        """Route a request to ``i`` at ``now``; ``times``: its (residence, prefill pending,
        admission wait) in seconds."""
        stay, pre, adm = times
        self.active[i] += 1
        self.kvb[i] += blocks
        self.kvtok[i] += tokens
        self.wait[i] += 1
        self.qtok[i] += uncached
        self.filling[i] += 1
        self.routed[i] += 1
        heapq.heappush(self.res, (now + stay, self.routed[i], i, blocks, tokens))
        heapq.heappush(self.pre, (now + pre, self.routed[i], i, uncached))
        self.adm.append((now + adm, i))  # one admission wait per load: FIFO


def _times(prof: ReuseProfile, load: RouterLoad) -> tuple[float, float, float]:
    """(decode pace per output token, admission wait A, the level's TTFT − A) in seconds: the
    fluid spans of the module docstring."""
    pace = max(load.residence_s - load.prefill_s, 0.0) / max(float(np.mean(prof.output_len)),
                                                             1.0)
    adm = min(load.waiting_s, load.prefill_s)
    return pace, adm, load.prefill_s - adm


def _replay(prof: ReuseProfile, n: int, name: str, params: dict, load: RouterLoad) -> tuple:
    """(instance of each request (-1: rejected) under the policy's own rule (module
    docstring), the rule's load choice count per request (``load_choices``), uncached prompt
    tokens per request on its instance)."""
    policy = make_policy(name, **params)
    policy.reset(n, prof.n_requests)
    B, ids, off = prof.block_tokens, prof.block_ids.tolist(), prof.block_offsets.tolist()
    I, O = prof.input_len.tolist(), prof.output_len.tolist()
    state, seen = _Fluid(n, load), {}
    pace, adm, fill = _times(prof, load)
    out, d, unc = (np.empty(prof.n_requests, np.int64), np.ones(prof.n_requests, np.int64),
                   np.zeros(prof.n_requests))
    served, done = 0, 0.0  # served requests, their uncached prompt tokens
    p = load.prefill_s_per_token if load.prefill_s > 0 else 0.0  # idle: nothing in flight
    for r, now in enumerate(_arrivals(prof, load.rate_per_s)):
        state.expire(now)
        chain = ids[off[r]:off[r + 1]]
        prefix = _prefixes(seen, chain, n)
        req, view = RouteRequest(r, I[r], O[r], len(chain)), state.view(n, B, prefix)
        i = policy.choose(req, view)
        out[r] = -1 if i is None else i
        if i is None:
            continue
        d[r] = policy.load_choices(req, view)
        hit_tok = min(prefix[i] * B, max(I[r] - 1, 0))
        u = unc[r] = I[r] - hit_tok
        served, done = served + 1, done + u
        pend = adm + max(fill - p * done / served, 0.0) + p * u  # its TTFT
        state.add(now, (pend + pace * O[r], pend, adm), i, -(-I[r] // B), I[r] + O[r], u)
        bit = 1 << i
        for b in chain[prefix[i]:]:
            seen[b] = seen.get(b, 0) | bit
        state.tree[i] += len(chain) - prefix[i]
    return out, d, unc


# ----------------------------------------------------------------------------- public

def _prepare(profile_or_trace, routing: str, params: dict | None, seed: int):
    if routing not in LOADED_FORMS:
        raise ValueError(f"routing={routing!r}: not a load-aware closed form; expected one of "
                         f"{', '.join(LOADED_FORMS)}")
    prof = profile_or_trace if isinstance(profile_or_trace, ReuseProfile) \
        else reuse_profile(profile_or_trace)
    if prof.arrival_s is None:
        raise ValueError("profile has no requests (arrival_s None): build it with reuse_profile")
    params = dict(params or {})
    if "seed" in ROUTING[routing].param_names:
        params.setdefault("seed", seed)
    return prof, canonical_params(routing, params)


def _key(routing: str, n: int, params: dict, load: RouterLoad) -> tuple:
    return ("routed", routing, n, _params_key(params), load.key())


def routed_assignment(profile_or_trace: ReuseProfile | Trace, instances: int, routing: str,
                      params: dict | None = None, load: RouterLoad | None = None,
                      seed: int = 0) -> np.ndarray:
    """Instance of each request (-1: rejected) under ``routing``'s own rule and ``load``
    (default: idle), cached per (routing, canonical params, instances, load)."""
    prof, full = _prepare(profile_or_trace, routing, params, seed)
    load = load or RouterLoad()
    n = int(instances)
    if n < 1 or n != instances:
        raise ValueError(f"instances={instances!r}: must be an integer >= 1")
    return _replayed(prof, n, routing, full, load)[0]


def _replayed(prof: ReuseProfile, n: int, routing: str, full: dict, load: RouterLoad) -> tuple:
    """:func:`_replay`'s arrays, memoised per (routing, canonical params, n, load)."""
    key = ("assign",) + _key(routing, n, full, load)
    if key not in prof._cache:
        prof._cache[key] = _replay(prof, n, routing, full, load)
    return prof._cache[key]


def routed_load_stats(profile_or_trace: ReuseProfile | Trace, instances: int, routing: str,
                      params: dict | None = None, load: RouterLoad | None = None,
                      seed: int = 0) -> tuple[tuple, float]:
    """(share of the served requests whose load choice count is d, for d = 1 ... N; the
    busiest instance's share of the uncached prompt tokens x N) of ``routing``'s replay:
    the inputs of the queue term of :mod:`kvmodel.cluster._routing_queue`. Memoised."""
    prof, full = _prepare(profile_or_trace, routing, params, seed)
    load, n = load or RouterLoad(), int(instances)
    key = ("load_stats",) + _key(routing, n, full, load)
    if key not in prof._cache:
        a, d, unc = _replayed(prof, n, routing, full, load)
        ok = a >= 0
        mix = np.bincount(np.clip(d[ok], 1, n) - 1, minlength=n).astype(float)
        mix[0] += 0.0 if mix.sum() else 1.0  # nothing served: no choice
        work = np.bincount(a[ok], weights=unc[ok], minlength=n)
        prof._cache[key] = (tuple((mix / max(mix.sum(), 1.0)).tolist()),
                            float(work.max() * n / work.sum()) if work.sum() > 0 else 1.0)
    return prof._cache[key]


def routed_work_dispersion(profile_or_trace: ReuseProfile | Trace, instances: int,
                           routing: str, params: dict | None = None,
                           load: RouterLoad | None = None, utilisation: float = 0.5,
                           seed: int = 0) -> float:
    """How much the rule smooths the prompt work each instance receives: the index of
    dispersion of each instance's uncached prompt tokens per window (variance over mean x the
    mean request's work; ``1 + c_s²`` for Poisson arrivals of independent sizes, Fendick and
    Whitt, Proc. IEEE 77(1), 1989: the IDW), averaged over the instances, over what splitting
    the same arrivals at random gives (``I/N + (1 − 1/N)·(1 + c_s²)`` from the cluster's
    own IDW ``I``, so a bursty trace does not count as the rule's). A rule that balances
    the work routed so far (sglang's smallest tree, least requests in flight) gives < 1;
    random 1 up to sampling. The window spans ``(1 + c_s²)/(1 − utilisation)²`` mean
    per-instance inter-arrival times (the time scale over which a single-server queue at
    that utilisation accumulates its workload, same source; at most a 16th of the trace).
    Memoised."""
    prof, full = _prepare(profile_or_trace, routing, params, seed)
    load, n = load or RouterLoad(), int(instances)
    key = ("work_dispersion", round(float(utilisation), 6)) + _key(routing, n, full, load)
    if key not in prof._cache:
        a, _, unc = _replayed(prof, n, routing, full, load)
        prof._cache[key] = _dispersion_ratio(np.asarray(_arrivals(prof, load.rate_per_s)),
                                             a, unc, n, float(utilisation))
    return prof._cache[key]


def _dispersion_ratio(t: np.ndarray, a: np.ndarray, work: np.ndarray, n: int,
                      u: float) -> float:
    """:func:`routed_work_dispersion` of arrivals ``t`` (s) routed to ``a`` (-1: rejected)
    with ``work`` each."""
    ok = a >= 0
    t, a, work = t[ok], a[ok], work[ok]
    if n < 2 or len(t) < 2 or not work.sum() > 0 or not t[-1] > t[0]:
        return 1.0
    cs2 = float(work.var() / work.mean() ** 2)
    span = float(t[-1] - t[0])
    win = min((1.0 + cs2) / (1.0 - min(max(u, 0.0), 0.95)) ** 2 * span * n / len(t),
              span / 16.0)  # at least 16 windows for the variances
    k = int(span // win)
    b = np.minimum(((t - t[0]) // win).astype(np.int64), k)
    sums = np.bincount(a * (k + 1) + b, weights=work, minlength=n * (k + 1))
    sums = sums.reshape(n, k + 1)[:, :k]  # the last, partial window dropped
    mean, size = sums.mean(axis=1), np.bincount(a[b < k], weights=work[b < k], minlength=n)
    size = size / np.maximum(np.bincount(a[b < k], minlength=n), 1)  # mean request's work
    on = (mean > 0) & (size > 0)
    if not on.any():
        return 1.0
    per = sums[on].var(axis=1) / mean[on] / size[on]
    whole = sums.sum(axis=0)
    idw = whole.var() / whole.mean() / float(work[b < k].mean())
    ref = idw / n + (1.0 - 1.0 / n) * (1.0 + cs2)
    return float(per.mean() / ref)


def routed_token_hit(profile_or_trace: ReuseProfile | Trace, instances: int, routing: str,
                     params: dict | None = None, load: RouterLoad | None = None,
                     seed: int = 0) -> float:
    """Share of the prompt tokens the replay finds cached on the chosen instance (its
    never-evicting view, the replay's own prefill work; a rejected request is all miss)."""
    prof, full = _prepare(profile_or_trace, routing, params, seed)
    a, _, unc = _replayed(prof, int(instances), routing, full, load or RouterLoad())
    total = float(np.sum(prof.input_len))
    return float(np.sum((prof.input_len - unc)[a >= 0])) / total if total > 0 else 0.0


def routed_work_classes(profile_or_trace: ReuseProfile | Trace, instances: int, routing: str,
                        params: dict | None = None, load: RouterLoad | None = None,
                        seed: int = 0) -> tuple[tuple[float, float, float], ...]:
    """The uncached prompt work of the requests the replay serves as two classes, the hits
    (some prefix found cached on the chosen instance) and the misses (the whole prompt
    computed): ``((share, mean prompt tokens, mean uncached tokens) of the hits, the same of
    the misses)``. The shares sum to 1 and ``Σ share·uncached`` is the served requests' mean
    uncached work; a class nobody falls in has share 0 and
    the served requests' mean prompt (an all-miss class). Nothing served: all miss, of the
    trace's mean prompt. Memoised."""
    prof, full = _prepare(profile_or_trace, routing, params, seed)
    load, n = load or RouterLoad(), int(instances)
    key = ("work_classes",) + _key(routing, n, full, load)
    if key not in prof._cache:
        a, _, unc = _replayed(prof, n, routing, full, load)
        ok = a >= 0
        I, u = np.asarray(prof.input_len, float)[ok], unc[ok]
        if not ok.any():
            m = float(np.mean(prof.input_len)) if prof.n_requests else 1.0
            prof._cache[key] = ((0.0, m, m), (1.0, m, m))
        else:
            prof._cache[key] = tuple(
                (float(sel.mean()), float(I[sel].mean()), float(u[sel].mean())) if sel.any()
                else (0.0, float(I.mean()), float(I.mean())) for sel in (u < I, u >= I))
    return prof._cache[key]


def routed_imbalance(profile_or_trace: ReuseProfile | Trace, instances: int, routing: str,
                     params: dict | None = None, load: RouterLoad | None = None,
                     seed: int = 0) -> float:
    """Busiest instance's routed count x N / routed total (1 with nothing routed)."""
    prof, full = _prepare(profile_or_trace, routing, params, seed)
    key = ("imbalance",) + _key(routing, int(instances), full, load or RouterLoad())
    if key not in prof._cache:
        a = routed_assignment(prof, instances, routing, full, load, seed)
        counts = np.bincount(a[a >= 0], minlength=int(instances))
        prof._cache[key] = float(counts.max() * len(counts) / counts.sum()) if counts.sum() \
            else 1.0
    return prof._cache[key]


def routed_hit_ratio_curve(profile_or_trace: ReuseProfile | Trace, capacities_blocks,
                           instances: int = 1, routing: str = "dynamo", seed: int = 0,
                           epsilon: float = 0.25, params: dict | None = None,
                           load: RouterLoad | None = None) -> np.ndarray:
    """Block hit ratio at each total capacity (blocks over all instances, ``floor(C / N)``
    each) under the load-aware router ``routing`` with ``params`` at ``load`` (default: idle).
    Same contract as :func:`~kvmodel.workload._reuse_analytic.analytic_hit_ratio_curve`
    (``epsilon`` is accepted for symmetry and unused); one instance is the single cache."""
    caps = np.asarray(capacities_blocks, dtype=np.float64)
    if caps.size and (not np.all(np.isfinite(caps)) or np.any(caps < 0)):
        raise ValueError("capacities_blocks must be finite and >= 0")
    prof, full = _prepare(profile_or_trace, routing, params, seed)
    n = int(instances)
    if n == 1:
        return analytic_hit_ratio_curve(prof, caps, 1, "single")
    if prof.total_accesses == 0:
        return np.zeros(caps.shape)
    load = load or RouterLoad()
    key = _key(routing, n, full, load)
    hits = assignment_hit_blocks(
        prof, key, lambda: routed_assignment(prof, n, routing, full, load), np.floor(caps / n), n)
    return hits / prof.total_accesses


def random_imbalance(requests: int, instances: int) -> float:
    """Expected busiest instance's routed count x N / ``requests`` when each of ``requests``
    goes to one of ``instances`` uniformly at random (balls into bins): ``E[max_i X_i]·N/n``,
    (X_i) multinomial(n, 1/N), with ``E[max] = Σ_k (1 − P(max ≤ k))``.

    ``P(max ≤ k)`` by Poissonisation: with Y_i iid Poisson(λ = n/N), the multinomial is the Y's
    given Σ Y_i = n, so ``P(max ≤ k) = F(k)^N · P(Σ Y_i = n | all Y_i ≤ k) / P(Σ Y_i = n)``
    (F: the Poisson CDF); the conditional sum of N truncated Poissons is taken as normal (mean
    N·μ_k, variance N·σ_k² of Y | Y ≤ k), ``P(Σ Y_i = n)`` is exact. Against 40,000 seeded
    multinomial draws: within 0.1 % for n/N ≥ 12 (8 x 1,000: 1.130 vs 1.129), 2 % at n/N = 1.

    This is the imbalance the simulator reports (``requests_per_instance`` over the run) and
    what the replayed routers report (routed counts over the trace), so ``requests`` is the
    trace's request count (8 instances: 1,000 requests give 1.13, the Mooncake trace's 23,608
    give 1.026). The fluctuation of the in-flight requests (a few per instance) is not added on
    top: each instance's Poisson arrivals already carry it into the instance queue."""
    n, N = requests, instances
    for name, v, lo in (("requests", n, 0), ("instances", N, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name}={v!r}: must be an integer >= {lo}")
    if N == 1 or n == 0:
        return 1.0
    lam = n / N
    k0 = max(int(lam - 12.0 * math.sqrt(lam)), 0)  # below k0, P(max <= k) < 1e-30
    k = np.arange(k0, min(n, int(lam + 12.0 * math.sqrt(lam) + 10)) + 1)
    lF = poisson.logcdf(k, lam)
    mu = lam * np.exp(poisson.logcdf(k - 1, lam) - lF)  # E[Y | Y <= k]
    m2 = lam * lam * np.exp(poisson.logcdf(k - 2, lam) - lF) + mu
    sd = np.sqrt(N * np.maximum(m2 - mu * mu, 1e-12))
    logp = N * lF + norm.logpdf(n, N * mu, sd) - poisson.logpmf(n, n)
    e_max = k0 + float(np.sum(1.0 - np.exp(np.minimum(logp, 0.0))))
    return max(e_max * N / n, 1.0)
