"""Exact block-level prefix-cache hit ratios of a :class:`~kvmodel.workload._trace_types.Trace`.

Model (exact, no sampling): requests are served in file order, each instantly. A request's hit
is the number of leading blocks of its hash chain that are all resident on the instance serving
it (the cache state *before* the request). Then the chain is refreshed last-block-first: every
block from the LAST to the FIRST is accessed (moved to MRU / admitted, evicting per policy), so
after the request the first block is the most recently used and LRU eviction removes the deepest
blocks first, as radix-tree caches do. Block hit ratio = sum of hit blocks / sum of chain lengths.

Single instance + LRU uses a one-pass stack-distance method that yields the whole curve at once
(:func:`lru_hit_thresholds`). Every other combination is replayed once per capacity
(:func:`replay`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kvmodel.policies import EVICTION
from kvmodel.policies.eviction import (  # noqa: F401
    EVICTION_POLICIES,
    ARCCache,
    CachePolicy,
    FIFOCache,
    LFUCache,
    LRUAdmitReuseCache,
    LRUCache,
    S3FIFOCache,
)
from kvmodel.policies.routing import CLOSED_FORMS
from kvmodel.workload._trace_types import Trace

__all__ = ["exact_hit_ratio_curve", "lru_hit_thresholds", "replay", "ReplayResult",
           "CachePolicy", "EVICTION_POLICIES", "ROUTINGS"]

# the routings a replay models: the closed-form routing models (kvmodel.policies.routing);
# eviction policies: kvmodel.policies.EVICTION (EVICTION_POLICIES is its name -> class view)
ROUTINGS = CLOSED_FORMS


# ----------------------------------------------------------------------------- public entry point

def exact_hit_ratio_curve(trace: Trace, capacities_blocks, instances: int = 1,
                          routing: str = "single", seed: int = 0, eviction: str = "lru",
                          epsilon: float = 0.25) -> np.ndarray:
    """Block hit ratio of ``trace`` at each TOTAL capacity in ``capacities_blocks``.

    ``capacities_blocks``: array-like of non-negative integers (blocks, summed over instances);
    the result is a float64 array of the same shape with values in [0, 1] (0 for a trace with no
    blocks). With ``instances=N`` every instance gets ``C // N`` blocks (floor: the remainder
    ``C % N`` is unused). ``routing`` is one of :data:`ROUTINGS` (``"single"`` needs N == 1),
    ``eviction`` a key of :data:`EVICTION_POLICIES`; ``seed`` drives ``"random"`` routing and
    ``epsilon`` (> 0) the load bound of ``"prefix_affinity_bounded"`` (see :func:`replay`).
    Single-instance LRU is computed in one stack-distance pass; everything else by one
    :func:`replay` per capacity (same routing seed for every capacity).
    """
    caps = _check_args(capacities_blocks, instances, routing, eviction, epsilon)
    total = trace.total_blocks
    if total == 0:
        return np.zeros(caps.shape, dtype=np.float64)
    if routing == "single" and eviction == "lru":
        thr = lru_hit_thresholds(trace)
        thr = np.sort(thr[thr <= total])                 # drop never-hit accesses
        hits = np.searchsorted(thr, caps, side="right")
    else:
        flat = [replay(trace, int(c), instances, routing, seed, eviction, epsilon).hit_blocks
                for c in caps.ravel()]
        hits = np.asarray(flat, dtype=np.int64).reshape(caps.shape)
    return hits / float(total)


def _check_args(capacities, instances, routing, eviction, epsilon) -> np.ndarray:
    """Validate the shared arguments; return the capacities as an int64 array."""
    if routing not in ROUTINGS:
        raise ValueError(f"routing={routing!r}: must be one of {', '.join(ROUTINGS)}")
    EVICTION.get_entry(eviction)
    if isinstance(instances, bool) or not isinstance(instances, (int, np.integer)) or instances < 1:
        raise ValueError(f"instances={instances!r}: must be an integer >= 1")
    if routing == "single" and instances != 1:
        raise ValueError(f"instances={instances}: routing='single' needs instances=1; "
                         f"pick one of {', '.join(ROUTINGS[1:])}")
    if not (isinstance(epsilon, (int, float, np.floating)) and epsilon > 0):
        raise ValueError(f"epsilon={epsilon!r}: must be a number > 0")
    caps = np.asarray(capacities)
    if caps.dtype == bool or not (np.issubdtype(caps.dtype, np.integer)
                                  or (np.issubdtype(caps.dtype, np.floating)
                                      and np.all(np.isfinite(caps)) and np.all(caps == np.floor(caps)))):
        raise ValueError("capacities_blocks: must be non-negative integers (blocks)")
    if np.any(caps < 0):
        raise ValueError(f"capacities_blocks: must be non-negative, got min {caps.min()}")
    return caps.astype(np.int64)


# ------------------------------------------------------------ one-pass LRU (stack distances)

def lru_hit_thresholds(trace: Trace) -> np.ndarray:
    """Per block access (file order, like ``trace.block_ids``): the smallest single-instance LRU
    capacity at which this block counts as a hit, or ``trace.total_blocks + 1`` if never.

    Access ``g`` of request r at chain position j hits at capacity C iff blocks 0..j of the chain
    are all resident before r, i.e. iff C >= max(depth(b_0), ..., depth(b_j)) where depth is the
    block's position (1 = MRU) in the LRU stack before r (LRU inclusion: capacity C holds exactly
    the top C). So ``hits(C) = count(thresholds <= C)`` for every C at once.
    """
    never = trace.total_blocks + 1
    depth_t, t = _pre_request_depths(trace)
    depth = depth_t[t]                                   # time order -> file order (t is an involution)
    depth[depth < 0] = never                             # first sighting: never resident
    return _segmented_cummax(depth, trace.block_offsets, never)


def _refresh_times(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(request index, refresh timestamp) of every access in file order. Timestamps number the
    accesses in refresh order (each chain reversed), so t is a self-inverse permutation."""
    lens = np.diff(offsets)
    req = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    t = offsets[req] + offsets[req + 1] - 1 - np.arange(offsets[-1], dtype=np.int64)
    return req, t


def _pre_request_depths(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """LRU stack depth before its request of every access, indexed by refresh timestamp
    (-1 for a block never accessed before), plus the file-order -> timestamp permutation.

    With p = the block's last access before the request start s, depth = number of distinct
    blocks whose last access before s is in [p, s) = #{q in [p, s): next(q) >= s}
    = (s - p) - #{next < s} + #{q < p, next(q) < s}  (next(q) < s implies q < s).
    """
    req, t = _refresh_times(trace.block_offsets)
    ids_t, req_t = trace.block_ids[t], req[t]
    n = len(ids_t)
    nxt, pre = _next_and_pre(ids_t, req_t)
    s = trace.block_offsets[req_t]
    depth = np.full(n, -1, dtype=np.int64)
    q = np.flatnonzero(pre >= 0)
    later = np.searchsorted(np.sort(nxt), s[q], side="left")
    depth[q] = (s[q] - pre[q]) - later + _count_lower_left(nxt, pre[q], s[q])
    return depth, t


def _next_and_pre(ids_t: np.ndarray, req_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """next[q]: timestamp of the next access of the same block (n if none); pre[q]: its latest
    access in an EARLIER request (-1 if none). Duplicates within one chain share ``pre``."""
    n = len(ids_t)
    order = np.argsort(ids_t, kind="stable")           # by block, then time
    sid, sreq = ids_t[order], req_t[order]
    same = sid[1:] == sid[:-1]
    nxt = np.full(n, n, dtype=np.int64)
    nxt[order[:-1][same]] = order[1:][same]
    run_start = np.ones(n, dtype=bool)                   # a run = one block within one request
    run_start[1:] = ~same | (sreq[1:] != sreq[:-1])
    first = np.maximum.accumulate(np.where(run_start, np.arange(n), 0))
    has_prev = np.zeros(n, dtype=bool)
    has_prev[1:] = same
    pre_sorted = np.where(has_prev[first], order[first - 1], -1)
    pre = np.empty(n, dtype=np.int64)
    pre[order] = pre_sorted
    return nxt, pre


def _count_lower_left(y: np.ndarray, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """For each query i: #{p < qx[i] : y[p] < qy[i]}, p over 0..len(y)-1; y in [0, len(y)].

    Vectorised merge-sort tree: [0, qx) splits into one aligned block of size 2^k per set bit k
    of qx; at level k the keys (block, y) are sorted once and each query is one searchsorted.
    O(n log^2 n) numpy work, no Python loop over elements.
    """
    n = len(y)
    m = np.int64(n + 1)
    out = np.zeros(len(qx), dtype=np.int64)
    pos = np.arange(n, dtype=np.int64)
    for k in range(max(n.bit_length(), 1)):
        sel = np.flatnonzero((qx >> k) & 1)
        if not len(sel):
            continue
        keys = np.sort((pos >> k) * m + y)
        blk = (qx[sel] >> k) - 1
        out[sel] += np.searchsorted(keys, blk * m + qy[sel], side="left") - (blk << k)
    return out


def _segmented_cummax(x: np.ndarray, offsets: np.ndarray, bound: int) -> np.ndarray:
    """Running maximum of ``x`` restarted at every CSR segment; requires 0 <= x <= bound."""
    seg = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    shift = seg * np.int64(bound + 1)
    return np.maximum.accumulate(x + shift) - shift


# --------------------------------------------------------------------------------- replay

@dataclass(frozen=True)
class ReplayResult:
    """Outcome of one replay: hit blocks, total chain blocks, requests routed to each instance."""
    hit_blocks: int
    total_blocks: int
    requests_per_instance: np.ndarray

    @property
    def hit_ratio(self) -> float:
        return self.hit_blocks / self.total_blocks if self.total_blocks else 0.0


def replay(trace: Trace, capacity_blocks: int, instances: int = 1, routing: str = "single",
           seed: int = 0, eviction: str = "lru", epsilon: float = 0.25) -> ReplayResult:
    """Replay ``trace`` once at TOTAL capacity ``capacity_blocks`` (``// instances`` per
    instance, floor). Routing per request (k = requests routed so far, N = instances):
    ``single``/``round_robin``: instance k % N; ``random``: ``default_rng(seed).integers(N)``
    drawn for all requests up front; ``prefix_affinity``: longest cached prefix of this chain,
    ties to fewest requests so far, then lowest index; ``prefix_affinity_bounded``: the same
    among instances whose count after taking this request is <= ceil((1+epsilon)(k+1)/N)
    (never empty: the least loaded instance always qualifies)."""
    _check_args(capacity_blocks, instances, routing, eviction, epsilon)
    caches = [EVICTION_POLICIES[eviction](int(capacity_blocks) // instances)
              for _ in range(instances)]
    route = _make_router(routing, instances, len(trace), seed, epsilon)
    counts = [0] * instances
    ids, off = trace.block_ids.tolist(), trace.block_offsets.tolist()
    hits = 0
    for k in range(len(trace)):
        chain = ids[off[k]:off[k + 1]]
        i = route(caches, counts, chain, k)
        counts[i] += 1
        hits += _serve(caches[i], chain)
    return ReplayResult(hits, trace.total_blocks, np.asarray(counts, dtype=np.int64))


def _cached_prefix(cache: CachePolicy, chain: list) -> int:
    """Number of leading blocks of ``chain`` resident in ``cache`` (no state change)."""
    n = 0
    for b in chain:
        if not cache.contains(b):
            break
        n += 1
    return n


def _serve(cache: CachePolicy, chain: list) -> int:
    """Serve one request: count its prefix hit, then refresh the chain last-block-first."""
    hit = _cached_prefix(cache, chain)
    for b in reversed(chain):
        cache.touch(b)
    return hit


def _make_router(routing: str, n: int, n_req: int, seed: int, epsilon: float):
    """Return ``route(caches, counts, chain, k) -> instance index`` (see :func:`replay`)."""
    if routing in ("single", "round_robin"):
        return lambda caches, counts, chain, k: k % n
    if routing == "random":
        picks = np.random.default_rng(seed).integers(0, n, size=n_req).tolist()
        return lambda caches, counts, chain, k: picks[k]

    def affinity(caches, counts, chain, k):
        cand = range(n)
        if routing == "prefix_affinity_bounded":
            bound = math.ceil((1 + epsilon) * (k + 1) / n)
            cand = [i for i in cand if counts[i] + 1 <= bound]
        return max(cand, key=lambda i: (_cached_prefix(caches[i], chain), -counts[i], -i))
    return affinity
