"""Reference discrete-event simulator of LLM serving: the oracle for the closed-form queueing.

:func:`simulate` replays a :class:`~kvmodel.workload._trace_types.Trace` (arrivals, prompt and output
lengths, prefix-block hash chains) on ``instances`` identical serving instances, each one
TP×PP group built exactly like :func:`kvmodel.estimate` builds its ``Setup`` (same hardware,
calibration, memory fit and per-step roofline :func:`~kvmodel.instance._roofline.step_ops`).

Semantics, per instance (iteration-level continuous batching, TensorRT-LLM defaults):

* A request becomes visible to its instance ``request_overhead`` (calibration) after arrival:
  the host-side per-request cost, charged once (as ``estimate`` adds it to TTFT).
* Admission, strictly FCFS and without preemption: the head of the queue is admitted when the
  KV cache can reserve its whole ``input_len + output_len`` tokens (guaranteed no eviction;
  ``min(., sliding_window)``) and fewer than ``max_batch_size`` requests are running.
* A step runs every decoding sequence (one token each) plus prefill chunks of admitted
  requests in admission order, filling ``max_num_tokens - decodes`` tokens (chunked prefill; a
  prompt may span several steps). Its duration is ``step_time(...)`` (step_ops' latency) with tokens = D + P,
  logits = D + completing prefills, pairs_prefill = sum chunk·(start + (chunk+1)/2),
  pairs_decode = kv_read (decode part) = sum of decode contexts, kv_read += chunks' start,
  kv_write = D + P. Steps run back to back while there is work.
* ``mixed_steps = false`` in the framework's entry (a prefill-first scheduler without chunked
  prefill, vLLM-Ascend v0.9.1): a step with prompts runs whole prompts only, in admission
  order, up to ``max_num_tokens`` (a prompt longer than that runs alone in chunks), and no
  decodes; the decoders emit nothing in it. Decode steps run when no prompt can start.
* The first token is emitted at the end of the step that completes the prefill (TTFT = that
  time − arrival); then one token per step, ``output_len − 1`` decode steps. Decode step k
  (k = 1..output_len−1) attends over ``input_len + k`` tokens, so a lone request's mean step
  context is ``input_len + output_len/2`` — the context ``estimate`` uses.
* Prefix cache (``prefix_cache_blocks > 0`` blocks per instance): an LRU of block hashes with
  the semantics of :mod:`kvmodel.workload._reuse_exact` (hit = leading resident blocks, then the chain
  is refreshed deepest-first). **Simplification**: lookup and refresh happen when the request
  is routed (its arrival), as in ``_reuse_exact.replay`` — so with ``round_robin``/``random``
  the hit ratio equals ``replay``'s exactly. The hit, capped at ``input_len − 1`` tokens, is
  skipped from prefill (its KV counts as already-cached context). With ``cache_tier="hbm"`` the
  cache is a dedicated HBM partition (``prefix_cache_blocks · block_tokens`` tokens taken off
  the KV capacity); with another tier (of ``node``) the hit is always loaded (never
  recomputed), taking ``_prefix.load_seconds`` (one transfer per cache block) after admission
  before the request's first prefill chunk; the request holds its reservation meanwhile and
  does not block later requests' chunks.
* The KV path is a processor-sharing server per instance (:mod:`kvmodel.sim._path_server`):
  the bandwidth part of every load (bytes x seconds per byte of the path's bottleneck segment)
  shares it with the other loads and with the saves (``kv_save`` of each request's new KV,
  written after its prefill, on segments reads and writes share); the rest of ``load_seconds``
  (setup, latency) follows unshared. A lone load takes exactly ``load_seconds``.
* Shared level (``sharing="central_pool"`` or ``"p2p"``, :mod:`kvmodel.sim._sharing`): after
  the local hit (HBM, or a local tier loaded as above), the next leading blocks are looked
  up in a global LRU pool or in the
  peers' DRAM partitions (owner by block or prefix hash, ``replication`` copies); the shared
  hit is fetched at admission over processor-sharing NIC servers (pool servers, owners and the
  requester, full duplex) plus a lookup round trip, and blocks the shared level lacks are put
  there after the prefill (loading the NICs). With a local tier the first chunk waits for
  both the tier load and the fetch (they run concurrently), and the tier saves every token
  not loaded from it (computed or fetched). ``SimResult`` reports hits per level, bytes per
  network server and Little's law per server. ``sharing="none"`` leaves all of the above as is.
* Pipeline parallelism: a step traverses all ``pp`` stages before the next one starts (no
  micro-batch overlap between steps), so PP adds latency, not throughput.

Routing across instances at arrival: any policy of :data:`kvmodel.policies.routing.ROUTING_POLICIES`
(or a :class:`~kvmodel.policies.routing.RoutingPolicy` instance), given a
:class:`~kvmodel.policies.routing.RoutingView` of the instances at that time. The built-ins of
:data:`SIM_ROUTINGS`: ``round_robin`` (k mod N), ``random`` (the draws of ``replay``:
``default_rng(seed).integers(N)`` for all requests up front), ``least_loaded`` (fewest
routed-but-unfinished requests, ties to the lowest index), ``prefix_affinity`` (longest cached
prefix, ties least loaded, then lowest index; it can send every request to one instance when
all share a first block), ``prefix_affinity_bounded`` (the same among instances whose routed
count after taking request k is <= ceil((1+epsilon)(k+1)/N), as in ``replay``); the published
cache+load cost functions ``dynamo``, ``llmd``, ``sglang``, ``mooncake`` (see
:mod:`kvmodel.policies.routing`). View fields in the simulator: ``cached`` = the LRU prefix hit (tier
``hbm`` or the ``cache_tier`` kind), ``queued_prefill_tokens`` = uncached prompt tokens routed
and not yet prefilled, ``kv_blocks`` = prompt blocks of routed unfinished requests,
``kv_usage`` = reserved / capacity, ``step_s`` = the last step's latency (the first of a decode
run), ``prefill_s_per_token`` = one full-budget prefill chunk from an empty context /
``max_num_tokens``, ``tree_blocks`` = blocks inserted into the cache so far (for a policy with
``router_tree``, e.g. ``sglang`` with ``match="tree"``: the distinct blocks of the prompts
routed there, and ``routed_prefix_blocks`` = the request's match among them, the router's own
tree, never evicted). A policy may reject a request (``mooncake`` with ``ttft_slo_s``): it is
never served, marked in ``SimResult.rejected`` and left out of every latency, throughput,
Little and hit-ratio statistic (its per-request times are NaN, its instance -1).

Speed: a heap of instance event times in plain Python. Runs of decode-only steps (no prefill
work possible, until the next sequence finishes or a request becomes ready) are evaluated as
one vectorised ``step_time`` call and cut short when an arrival lands inside them; mixed steps
use a memoised scalar ``step_time``. Results are identical to stepping one iteration at a time.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from kvmodel.base.fields import add_aliases
from kvmodel.catalog.hardware import catalog_arg, get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance._paths import path_segments
from kvmodel.instance._prefix import kv_bytes_per_token_gpu, load_seconds
from kvmodel.instance._roofline import Setup, attn_pairs, attn_reads, step_time
from kvmodel.instance.seam import (
    Reasons,
    check_static,
    kv_per_seq,
    kv_precision_arg,
    memory_fit,
    num,
    parallelism,
    params,
    precision_arg,
    setup,
)
from kvmodel.policies import ROUTING
from kvmodel.policies.routing import (
    ROUTING_POLICIES,
    RouteRequest,
    RoutingPolicy,
    RoutingView,
    make_policy,
    policy_params,
)
from kvmodel.sim._clients import arrivals, check_clients
from kvmodel.sim._path_server import PathServer, bottleneck
from kvmodel.sim._sharing import SharedLevel, SimP2P, SimPool, sharing_spec
from kvmodel.tiers import TIER_KINDS, Tier, node_tiers
from kvmodel.workload._reuse_exact import LRUCache, _cached_prefix, _serve
from kvmodel.workload._trace_types import Trace

__all__ = ["simulate", "SimResult", "poisson_requests", "SIM_ROUTINGS", "SimPool", "SimP2P"]

# the simulator's built-in routings (kvmodel.policies.ROUTING entries tagged "builtin")
SIM_ROUTINGS = tuple(n for n, e in ROUTING.items() if "builtin" in e.tags)
_STRETCH_CAP = 4096      # most decode steps evaluated in one vectorised call
_MEMO_CAP = 1_000_000    # memoised scalar steps before the memo is cleared


# ------------------------------------------------------------------------------ workloads

def poisson_requests(n: int, rate_per_s: float, input_len: Any = 1024, output_len: Any = 128,
                     seed: int = 0, cv: float = 1.0) -> Trace:
    """``n`` requests with renewal arrivals at ``rate_per_s`` (no prefix information).

    Inter-arrival times are exponential (``cv == 1``: Poisson) or gamma with shape ``1/cv²``
    (coefficient of variation ``cv``), mean ``1/rate_per_s``, drawn from
    ``numpy.random.default_rng(seed)``; the first request arrives one gap after 0. The same
    seed gives the same underlying draws at every rate (arrivals scale as ``1/rate``).
    ``input_len``/``output_len``: an integer >= 1 or an array of ``n`` of them.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r}: must be an integer >= 1")
    for name, v in (("rate_per_s", rate_per_s), ("cv", cv)):
        if not (isinstance(v, (int, float, np.number)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name}={v!r}: must be a finite number > 0")
    rng = np.random.default_rng(seed)
    if cv == 1.0:
        gaps = rng.standard_exponential(n)
    else:
        shape = 1.0 / (cv * cv)
        gaps = rng.standard_gamma(shape, n) / shape
    arrival = np.cumsum(gaps / rate_per_s)
    lens = [_lengths(name, v, n) for name, v in (("input_len", input_len),
                                                 ("output_len", output_len))]
    name = f"poisson(n={n}, rate={rate_per_s:g}/s, cv={cv:g})"
    return Trace(arrival, lens[0], lens[1], np.zeros(n + 1, dtype=np.int64),
                 np.zeros(0, dtype=np.int64), name=name)


def _lengths(name: str, v: Any, n: int) -> np.ndarray:
    """``v`` (scalar or ``n`` values) as an int64 array of ``n`` integers >= 1."""
    arr = np.asarray(v)
    if arr.dtype == bool or arr.ndim > 1 or (arr.ndim == 1 and len(arr) != n):
        raise ValueError(f"{name}: expected an integer or {n} integers")
    if not np.issubdtype(arr.dtype, np.number) or np.any(arr != np.round(arr)) or np.any(arr < 1):
        raise ValueError(f"{name}: values must be integers >= 1")
    return np.broadcast_to(arr, (n,)).astype(np.int64)


# ------------------------------------------------------------------------------ result

def _quantile(x: np.ndarray, stat: str) -> float:
    if not len(x):
        return 0.0
    return float(np.mean(x)) if stat == "mean" else float(np.percentile(x, float(stat[1:])))


@dataclass(frozen=True)
class SimResult:
    """Outcome of :func:`simulate`. Per-request arrays are in trace order; times in seconds.

    ``tpot_s`` is the mean inter-token time over a request's decode steps (0 for
    ``output_len == 1``; such requests are left out of TPOT statistics). ``queue_s`` is the
    wait from arrival to admission. ``area_s`` is the integral of the number of requests in
    the system (arrived, unfinished) over time, accumulated event by event. ``rejected`` marks
    requests the routing policy rejected (never served: NaN times, instance -1); statistics,
    throughput, the busy window and Little's law cover served requests only.
    """

    arrival_s: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    queue_s: np.ndarray
    instance: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    cached_tokens: np.ndarray
    requests_per_instance: np.ndarray
    steps_per_instance: np.ndarray
    max_kv_tokens: np.ndarray        # peak reserved KV tokens, per instance
    max_running: np.ndarray          # peak admitted requests, per instance
    kv_capacity_tokens: float        # reservation pool per instance
    max_batch_size: float
    max_num_tokens: float
    hit_blocks: int
    total_blocks: int
    area_s: float
    steps: int                       # engine iterations, all instances
    events: int                      # arrivals + instance events processed
    wall_s: float
    rejected: np.ndarray = field(default=None)   # bool [n]; None -> none rejected
    # the KV path (bottleneck segment of cache_tier), per instance: seconds with a load or save
    # in service, integral of jobs in service, sum of jobs' times in service (Little: equal
    # to the integral), jobs served; bytes written through to the tier, all instances
    path_busy_s: np.ndarray = field(default=None)
    path_area_s: np.ndarray = field(default=None)
    path_sojourn_s: np.ndarray = field(default=None)
    path_jobs: np.ndarray = field(default=None)
    saved_B: float = 0.0
    # the shared level (kvmodel.sim._sharing; empty with sharing="none"): hit blocks per level
    # beyond the local cache, per network server statistics (Bps, busy_s, area_s, sojourn_s,
    # jobs, get_B, put_B), distinct pool blocks fetched and put
    level_hit_blocks: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)
    pool_blocks_got: int = 0
    pool_blocks_put: int = 0
    # central pool puts, blocks: offered, admitted, dropped (put admission), evicted, resident
    pool_puts: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rejected is None:
            object.__setattr__(self, "rejected", np.zeros(len(self.arrival_s), dtype=bool))

    @property
    def served(self) -> np.ndarray:
        """Mask of the requests that were served (not rejected)."""
        return ~self.rejected

    @property
    def n_rejected(self) -> int:
        return int(self.rejected.sum())

    def stat(self, metric: str, stat: str = "mean") -> float:
        """``metric`` in ttft/tpot/e2e, ``stat`` in mean/p50/p90/p99 over served requests (0.0
        when empty)."""
        x = getattr(self, f"{metric}_s")
        keep = self.served & (self.output_len > 1) if metric == "tpot" else self.served
        return _quantile(x[keep], stat)

    def summary(self) -> dict[str, float]:
        """Every statistic plus throughput, hit ratio and speed, as a flat dict."""
        out = {f"{m}_{s}_s": self.stat(m, s) for m in ("ttft", "tpot", "e2e")
               for s in ("mean", "p50", "p90", "p99")}
        out.update(output_tok_per_s=self.output_tok_per_s,
                   request_throughput_per_s=self.request_throughput_per_s,
                   hit_ratio=self.hit_ratio, steps=self.steps, events=self.events,
                   wall_s=self.wall_s, rejected=self.n_rejected)
        return out

    ttft_mean_s = property(lambda self: self.stat("ttft", "mean"))
    ttft_p50_s = property(lambda self: self.stat("ttft", "p50"))
    ttft_p90_s = property(lambda self: self.stat("ttft", "p90"))
    ttft_p99_s = property(lambda self: self.stat("ttft", "p99"))
    tpot_mean_s = property(lambda self: self.stat("tpot", "mean"))
    tpot_p50_s = property(lambda self: self.stat("tpot", "p50"))
    tpot_p90_s = property(lambda self: self.stat("tpot", "p90"))
    tpot_p99_s = property(lambda self: self.stat("tpot", "p99"))
    e2e_mean_s = property(lambda self: self.stat("e2e", "mean"))
    e2e_p50_s = property(lambda self: self.stat("e2e", "p50"))
    e2e_p90_s = property(lambda self: self.stat("e2e", "p90"))
    e2e_p99_s = property(lambda self: self.stat("e2e", "p99"))

    @property
    def finish_s(self) -> np.ndarray:
        return self.arrival_s + self.e2e_s

    @property
    def busy_window_s(self) -> tuple[float, float]:
        """(first arrival, last finish) of the served requests ((0, 0) if none)."""
        keep = self.served
        if not keep.any():
            return 0.0, 0.0
        return float(self.arrival_s[keep].min()), float(self.finish_s[keep].max())

    @property
    def output_tokens(self) -> int:
        return int(self.output_len[self.served].sum())

    @property
    def output_tok_per_s(self) -> float:
        """Output tokens per second over the busy window."""
        a, b = self.busy_window_s
        return self.output_tokens / (b - a) if b > a else 0.0

    @property
    def request_throughput_per_s(self) -> float:
        """Finished requests per second over the busy window."""
        a, b = self.busy_window_s
        return int(self.served.sum()) / (b - a) if b > a else 0.0

    @property
    def hit_ratio(self) -> float:
        """Prefix-cache block hit ratio (hit blocks / all chain blocks; 0 without blocks)."""
        return self.hit_blocks / self.total_blocks if self.total_blocks else 0.0

    def hit_ratio_by_level(self) -> dict[str, float]:
        """Share of chain blocks served by each level: ``local`` (the instance's cache), then
        the shared levels of the run (``pool``; ``peer_local``, ``peer``)."""
        tot = self.total_blocks or 1
        local = self.hit_blocks - sum(self.level_hit_blocks.values())
        out = {"local": local / tot} if self.total_blocks else {}
        return out | {k: v / tot for k, v in self.level_hit_blocks.items() if self.total_blocks}

    def network_stats(self) -> dict[str, dict[str, float]]:
        """Per network server over the busy window: ``util`` (busy fraction), ``mean_jobs``
        (time-average jobs in service), ``little_rel_err`` (|integral of jobs - summed
        sojourns| / summed sojourns) and ``Bps_mean`` (bytes moved / window). Puts are
        asynchronous: a server whose put backlog outlasts the window (offered load above its
        bandwidth) shows ``util`` > 1, its demand over the window."""
        a, b = self.busy_window_s
        span = (b - a) or 1.0
        out = {}
        for name, s in self.network.items():
            soj = s["sojourn_s"]
            out[name] = dict(util=s["busy_s"] / span, mean_jobs=s["area_s"] / span,
                             little_rel_err=abs(s["area_s"] - soj) / soj if soj else 0.0,
                             Bps_mean=(s["get_B"] + s["put_B"]) / span)
        return out

    def shared_bytes(self) -> dict[str, float]:
        """Bytes moved by the shared level, by flow: ``got`` (fetched from the pool servers or
        the owners), ``received`` (arriving at the requesters' NICs: equal to ``got``),
        ``host`` (P2P blocks the requester owns, no network), ``put`` (leaving the writers'
        NICs) and ``stored`` (arriving at the pool servers or owners: equal to ``put``)."""
        def total(prefixes, f):
            return float(sum(s[f] for k, s in self.network.items() if k.startswith(prefixes)))
        return dict(got=total(("pool_tx", "tx"), "get_B"), received=total("rx", "get_B"),
                    host=total("host", "get_B"), put=total("tx", "put_B"),
                    stored=total(("pool_rx", "rx"), "put_B"))

    def little(self) -> dict[str, float]:
        """Little's law check over the busy window: ``L`` (time-average number in system, from
        the event-by-event integral), ``XW`` (request throughput × mean E2E) and ``rel_err``."""
        a, b = self.busy_window_s
        L = self.area_s / (b - a) if b > a else 0.0
        XW = self.request_throughput_per_s * self.e2e_mean_s
        return {"L": L, "XW": XW, "rel_err": abs(L - XW) / XW if XW else 0.0}


_SIM_RENAMED = {"throughput_tok_s": "output_tok_per_s",
                "request_throughput_s": "request_throughput_per_s"}
_SIM_RENAMED |= {f"{s}_{m}_s": f"{m}_{s}_s" for m in ("ttft", "tpot", "e2e")
                 for s in ("mean", "p50", "p90", "p99")}
add_aliases(SimResult, _SIM_RENAMED)


# ------------------------------------------------------------------------------ configuration

@dataclass(frozen=True)
class _Config:
    setup: Setup
    kv_cap: float        # reservation pool per instance, tokens
    mnt: float           # token budget per step
    mbs: float           # running requests per instance
    req_s: float         # request overhead
    tier: Tier | None    # where cached prefixes live (None: HBM)
    block_tokens: int
    save: float = 1.0    # fraction of each request's new KV written through to the tier
    path_s_per_B: tuple[float, float] = (0.0, 0.0)  # bottleneck seconds per byte read, written
    tok_B: float = 0.0   # KV bytes per token of the whole instance (network transfers)
    mixed: bool = True   # False (framework mixed_steps = false): prompt steps carry no decodes


def _config(model, gpu, tp, pp, precision, kv_precision, framework, max_num_tokens,
            max_batch_size, prefix_blocks, block_tokens, cache_tier, node, save=1.0) -> _Config:
    """Build the instance like ``estimate``: Setup, calibration, memory fit; validate."""
    m, g, fw = get_model(model), get_gpu(gpu), get_framework(framework)
    precision = precision_arg("precision", precision)
    kv = kv_precision_arg(kv_precision, precision, fw)
    tp, pp, ep, _, _ = parallelism(m, tp, pp, 1, None)
    cal = params()
    s = setup(m, g, fw, tp, pp, ep, precision, kv, cal)
    mnt = cal["max_num_tokens"] if max_num_tokens is None else num("max_num_tokens", max_num_tokens)
    mbs = cal["max_batch_size"] if max_batch_size is None else num("max_batch_size", max_batch_size)
    r = Reasons(())
    check_static(r, m, g, tp, pp, precision, kv)
    _, kv_cap, _ = memory_fit(r, s, cal, 1.0, 1.0, mnt, mbs)
    if not r.feasible:
        raise ValueError(f"infeasible instance: {r.reason}")
    tier = _tier(cache_tier, node, g.key)
    if tier is None:
        _check_prefix_fits(prefix_blocks, block_tokens, kv_cap)
        kv_cap -= prefix_blocks * block_tokens
    path = (0.0, 0.0) if tier is None else bottleneck(path_segments(tier))
    return _Config(s, float(kv_cap), float(mnt), float(mbs), cal["request_overhead"], tier,
                   block_tokens, float(num("kv_save", save, integer=False, minimum=0.0,
                                           maximum=1.0)), path, float(m.kv_bytes_per_token(kv)),
                   fw.quantities.get("mixed_steps", True) is not False)


def _check_prefix_fits(blocks: int, block_tokens: int, kv_cap: float) -> None:
    """An HBM prefix cache is carved out of the KV pool: it must leave room for requests."""
    if blocks * block_tokens >= kv_cap:
        raise ValueError(f"prefix_cache_blocks={blocks}: the prefix cache ({blocks} blocks x "
                         f"{block_tokens} tokens = {blocks * block_tokens:,} tokens) exceeds the "
                         f"instance's KV capacity of {kv_cap:,.0f} tokens; allowed: fewer than "
                         f"{int(np.ceil(kv_cap / block_tokens)):,} blocks (or cache_tier='dram', "
                         "'ssd', ... outside HBM)")


def _tier(cache_tier: str | Tier, node: str | None, gpu: str) -> Tier | None:
    """Resolve ``cache_tier`` as ``estimate`` does; None means HBM."""
    if isinstance(cache_tier, Tier):
        return cache_tier if cache_tier.path is not None else None
    if cache_tier not in TIER_KINDS:
        raise ValueError(f"cache_tier={cache_tier!r}; allowed: {TIER_KINDS} or a Tier")
    if cache_tier == "hbm":
        return None
    tier = node_tiers(node, gpu)[cache_tier]
    if tier.capacity_B <= 0:
        raise ValueError(f"cache_tier={cache_tier!r}: the node template has no {cache_tier} "
                         f"capacity; pass a Tier from kvmodel.node_tiers(..., {cache_tier}_B=...)")
    return tier


def _check_args(requests, instances, routing, prefix_cache_blocks, block_tokens) -> int:
    """Validate the simulation arguments; return the tokens per hash block."""
    if not isinstance(requests, Trace):
        raise ValueError(f"requests must be a Trace (see poisson_requests), got {type(requests)}")
    if not len(requests):
        raise ValueError("requests: the trace is empty")
    if np.any(requests.input_len < 1) or np.any(requests.output_len < 1):
        raise ValueError("requests: input_len and output_len must be >= 1 for every request")
    if np.any(np.diff(requests.arrival_s) < 0) or not np.all(np.isfinite(requests.arrival_s)):
        raise ValueError("requests: arrival_s must be finite and non-decreasing")
    if isinstance(instances, bool) or not isinstance(instances, (int, np.integer)) or instances < 1:
        raise ValueError(f"instances={instances!r}: must be an integer >= 1")
    if not isinstance(routing, RoutingPolicy) and routing not in ROUTING_POLICIES:
        raise ValueError(f"routing={routing!r}: must be one of {', '.join(ROUTING_POLICIES)} "
                         f"or a RoutingPolicy")
    for name, v, lo in (("prefix_cache_blocks", prefix_cache_blocks, 0),
                        ("block_tokens", block_tokens, 1)):
        bad = isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo
        if v is not None and bad:
            raise ValueError(f"{name}={v!r}: must be an integer >= {lo}")
    return int(requests.block_tokens if block_tokens is None else block_tokens)


# ------------------------------------------------------------------------------ step times

class _StepTimer:
    """Step latency (incl. framework overhead) from ``step_time``: memoised scalar calls and one
    vectorised call for a run of decode-only steps."""

    def __init__(self, s: Setup):
        self.s = s
        self.memo: dict[tuple, float] = {}

    def step(self, tokens, logits, pairs_p, pairs_d, kv_read, kv_write) -> float:
        """Latency of one step (a pure function of its six floats)."""
        key = (tokens, logits, pairs_p, pairs_d, kv_read, kv_write)
        v = self.memo.get(key)
        if v is None:
            if len(self.memo) >= _MEMO_CAP:
                self.memo.clear()
            v = self.memo[key] = float(step_time(self.s, *key))
        return v

    def decode(self, D: float, ctx: np.ndarray) -> np.ndarray:
        """Latencies of decode-only steps of ``D`` sequences with context sums ``ctx``."""
        return np.asarray(step_time(self.s, D, D, 0.0, ctx, ctx, D), dtype=np.float64)


# ------------------------------------------------------------------------------ engine

class _Inst:
    """One instance's state. ``prefill``: [rid, tokens with KV, first-chunk time] per admitted
    request still prefilling; decoding sequence i joined at step n0 with context c0, so its
    context at step m is c0 + m − n0 = ``off[i]`` + m, and the context sum is D·m + ``base``.
    ``kind``: pending event (None, "wake", "decode" = a run of ``k`` decode steps ending at
    ``T[:k]``, "mixed" = one step with prefill ``chunks``, "prefill" = one without decodes),
    due at ``end``, version ``ver``.
    Router-side counters for the routing view: ``qtok`` (uncached prompt tokens not yet
    prefilled), ``kvb`` (prompt blocks of routed unfinished requests), ``tree`` (blocks
    inserted into the prefix cache so far), ``last`` (latest step latency)."""

    __slots__ = ("idx", "waiting", "prefill", "D", "base", "offs", "fin", "n", "kv", "running",
                 "nsys", "ver", "kind", "end", "T", "k", "chunks", "max_kv", "max_run", "cache",
                 "count", "steps", "qtok", "kvb", "tree", "last", "path", "loading")

    def __init__(self, idx: int, cache_blocks: int):
        self.idx, self.waiting, self.prefill = idx, deque(), []
        self.D, self.base, self.offs, self.fin, self.n = 0, 0, {}, [], 0
        self.kv, self.running, self.nsys, self.ver = 0.0, 0, 0, 0
        self.kind, self.end, self.T, self.k, self.chunks = None, math.inf, None, 0, None
        self.max_kv, self.max_run, self.count, self.steps = 0.0, 0, 0, 0
        self.qtok, self.kvb, self.tree, self.last = 0, 0, 0, 0.0
        self.cache = LRUCache(cache_blocks) if cache_blocks else None
        self.path, self.loading = PathServer(), {}  # loading: rid -> [prefill entry, fixed s]


class _SimView(RoutingView):
    """The routing view of the simulator's instances for one request (fields computed on first
    use, so policies that ignore the view cost nothing)."""

    def __init__(self, sim: "_Sim", chain: list):
        self._sim, self._chain, self._insts = sim, chain, sim.insts
        self.n, self.block_tokens = len(sim.insts), sim.cfg.block_tokens

    @property
    def prefill_s_per_token(self) -> float:
        return self._sim.prefill_s_per_token

    def _each(self, f) -> list:
        return [f(x) for x in self._insts]

    @cached_property
    def cached(self) -> list[dict[str, int]]:
        tier, chain = self._sim.tier, self._chain
        return self._each(lambda x: {tier: _cached_prefix(x.cache, chain)} if x.cache else {})

    active = cached_property(lambda self: self._each(lambda x: x.nsys))
    running = cached_property(lambda self: self._each(lambda x: x.D))
    waiting = cached_property(lambda self: self._each(lambda x: len(x.waiting)))
    queued_prefill_tokens = cached_property(lambda self: self._each(lambda x: x.qtok))
    kv_blocks = cached_property(lambda self: self._each(lambda x: x.kvb))
    kv_usage = cached_property(lambda self: self._each(lambda x: x.kv / self._sim.cfg.kv_cap))
    step_s = cached_property(lambda self: self._each(lambda x: x.last))
    routed = cached_property(lambda self: self._each(lambda x: x.count))
    cache_blocks = cached_property(lambda self: self._each(
        lambda x: len(x.cache.od) if x.cache else 0))
    tree_blocks = cached_property(lambda self: self._each(lambda x: x.tree))

    @cached_property
    def routed_prefix_blocks(self) -> list[int]:
        """Leading blocks of the chain among the blocks routed to each instance (the router's
        tree; tracked for a policy with ``router_tree``, else the resident cache's match)."""
        trees, chain = self._sim.trees, self._chain
        if trees is None:
            return self.prefix_blocks
        return [_in_tree(t, chain) for t in trees]


def _in_tree(tree: set, chain: list) -> int:
    """Leading blocks of ``chain`` in ``tree`` (chained hashes: a block's hash names its whole
    prefix, so the first block missing ends the match)."""
    k = 0
    for b in chain:
        if b not in tree:
            break
        k += 1
    return k


class _Sim:
    """The event loop (see the module docstring for the semantics)."""

    def __init__(self, cfg: _Config, tr: Trace, n_inst: int, policy: RoutingPolicy,
                 cache_blocks: int, share: SimPool | SimP2P | None = None,
                 clients: tuple = (None, None, "open")):
        self.cfg, self.timer = cfg, _StepTimer(cfg.setup)
        m = cfg.setup.model  # decode reads each sequence's KV by layer kind (windows, chunks,
        # recurrent state: kv_per_seq, as the closed form's decode context); full layers: all
        self.by_kind = set(m.layer_kinds) != {"full"}
        self.I, self.O = tr.input_len.tolist(), tr.output_len.tolist()
        self.arr = tr.arrival_s.tolist()
        self.ready = [a + cfg.req_s for a in self.arr]
        self.source = arrivals(tr, self.arr, self.ready, cfg.req_s, *clients)  # sim/_clients
        self.res = np.asarray(kv_per_seq(m, tr.input_len + tr.output_len, cfg.setup.tp,
                                         cfg.setup.kv_B, cfg.setup.framework)).tolist()
        self.ids, self.off = tr.block_ids.tolist(), tr.block_offsets.tolist()
        n = len(self.arr)
        self.hit_tok, self.load_s, self.tier_tok = [0] * n, [0.0] * n, [0] * n
        self.per_tok, self.saved_B = float(kv_bytes_per_token_gpu(cfg.setup)), 0.0
        self.first, self.done, self.admit = [0.0] * n, [0.0] * n, [0.0] * n
        self.where = [0] * n
        self.rejected = [False] * n
        self.insts = [_Inst(i, cache_blocks) for i in range(n_inst)]
        self.policy = policy
        policy.reset(n_inst, n)
        # the router's own tree per instance: the block hashes of every prompt routed there
        # (sglang's cache_aware router, never evicted below its max_tree_size)
        self.trees = ([set() for _ in range(n_inst)] if getattr(policy, "router_tree", False)
                      else None)
        self.tier = "hbm" if cfg.tier is None else cfg.tier.kind
        self.heap: list[tuple[float, int, int]] = []
        self.hit_blocks = self.steps = self.events = self.nsys = 0
        self.area, self.t_last = 0.0, 0.0
        self.share = None if share is None else SharedLevel(share, n_inst, cfg.block_tokens,
                                                            cfg.tok_B)
        self._check_fit()

    def _check_fit(self) -> None:
        big = np.flatnonzero(np.asarray(self.res) > self.cfg.kv_cap)
        if len(big):
            i = int(big[0])
            raise ValueError(f"request {i} needs {self.res[i]:.0f} KV tokens but an instance "
                             f"reserves at most {self.cfg.kv_cap:.0f} ({len(big)} such requests)")

    # ---- main loop -------------------------------------------------------------------------
    def run(self) -> None:
        """Process arrivals and instance events in time order (arrivals first on ties)."""
        heap, src = self.heap, self.source
        while True:
            th = heap[0][0] if heap else math.inf
            ta = src.next_time()
            if ta < math.inf and ta <= th:
                self._arrive(src.pop(), ta)
                continue
            if not heap:
                return
            t, i, ver = heapq.heappop(heap)
            inst = self.insts[i]
            if ver == inst.ver:
                self._event(inst, t)

    def _schedule(self, inst: _Inst, t: float, kind: str) -> None:
        inst.ver += 1
        inst.kind, inst.end = kind, t
        heapq.heappush(self.heap, (t, inst.idx, inst.ver))

    def _count(self, t: float, delta: int) -> None:
        """Integrate the number in system up to ``t``, then change it by ``delta``."""
        self.area += self.nsys * (t - self.t_last)
        self.t_last, self.nsys = t, self.nsys + delta

    # ---- arrivals and routing ----------------------------------------------------------------
    def _arrive(self, rid: int, t: float) -> None:
        self.events += 1
        chain = self.ids[self.off[rid]:self.off[rid + 1]]
        i = self._route(rid, chain)
        if i is None:
            self.rejected[rid] = True
            self.source.done(rid, t)
            return
        self._count(t, +1)
        inst = self.insts[i]
        self.where[rid] = inst.idx
        inst.count += 1
        inst.nsys += 1
        self._book(inst, rid, chain, self._lookup(inst, rid, chain))
        inst.waiting.append(rid)
        r = self.ready[rid]
        if inst.kind is None or (inst.kind == "wake" and inst.end > r):
            self._schedule(inst, r, "wake")
        elif inst.kind == "decode" and inst.k > 1 and inst.end > r:
            j = int(np.searchsorted(inst.T[:inst.k], r))
            if j < inst.k - 1:
                inst.k = j + 1
                self._schedule(inst, float(inst.T[j]), "decode")

    def _route(self, rid: int, chain: list) -> int | None:
        """The policy's choice for ``rid`` (None: rejected), checked against the contract."""
        req = RouteRequest(rid, self.I[rid], self.O[rid], len(chain))
        i = self.policy.choose(req, _SimView(self, chain))
        if i is None and self.policy.may_reject:
            return None
        n = len(self.insts)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
            raise RuntimeError(f"routing policy {type(self.policy).__name__} returned {i!r} for "
                               f"request {rid}; expected an instance index in [0, {n})")
        return int(i)

    def _book(self, inst: _Inst, rid: int, chain: list, hit: int) -> None:
        """Router-side counters of a request just routed to ``inst`` with ``hit`` blocks; with
        a router tree (``self.trees``) the tree takes the chain and ``tree`` is its size."""
        inst.qtok += self.I[rid] - self.hit_tok[rid]
        inst.kvb += -(-self.I[rid] // self.cfg.block_tokens)
        if self.trees is None:
            inst.tree += len(chain) - hit
            return
        tree = self.trees[inst.idx]
        tree.update(chain)
        inst.tree = len(tree)

    @cached_property
    def prefill_s_per_token(self) -> float:
        """Per-token time of one full-budget prefill chunk from an empty context."""
        m = self.cfg.mnt
        return self.timer.step(m, 1.0, m * (m + 1.0) / 2.0, 0.0, 0.0, m) / m

    def _lookup(self, inst: _Inst, rid: int, chain: list) -> int:
        """Prefix-cache hit of ``rid`` on ``inst`` (then refresh), its skipped tokens and load;
        returns the hit in blocks."""
        if self.share is not None:
            return self._shared_lookup(inst, rid, chain)
        if inst.cache is None or not chain:
            return 0
        hit = _serve(inst.cache, chain)
        self.hit_blocks += hit
        tok = min(hit * self.cfg.block_tokens, self.I[rid] - 1)
        self.hit_tok[rid] = tok
        self._tier_load(rid, tok)
        return hit

    def _tier_load(self, rid: int, tok: int) -> None:
        """``tok`` hit tokens of ``rid`` held in the local tier (not HBM): loaded after admission
        (their load time; their bytes go through the instance's path server)."""
        if tok > 0 and self.cfg.tier is not None:
            self.tier_tok[rid] = tok
            self.load_s[rid] = float(load_seconds(self.cfg.setup, self.cfg.tier, float(tok),
                                                  "contiguous", float(self.cfg.block_tokens)))

    def _shared_lookup(self, inst: _Inst, rid: int, chain: list) -> int:
        """Local hit (loaded from the local tier unless in HBM), then the shared level's
        (kvmodel.sim._sharing); the whole prefix skips prefill."""
        local = _serve(inst.cache, chain) if inst.cache is not None and chain else 0
        hit = local + self.share.lookup(self.arr[rid], inst.idx, rid, chain, local, self.I[rid] - 1)
        self.hit_blocks += hit
        self.hit_tok[rid] = min(hit * self.cfg.block_tokens, self.I[rid] - 1)
        self._tier_load(rid, min(local * self.cfg.block_tokens, self.I[rid] - 1))
        return hit

    # ---- instance events ---------------------------------------------------------------------
    def _event(self, inst: _Inst, t: float) -> None:
        self.events += 1
        if inst.kind == "decode":
            self._advance(inst, inst.k, t)
        elif inst.kind == "mixed":
            self._advance(inst, 1, t)
            self._prefill_progress(inst, t)
        elif inst.kind == "prefill":  # prompts only: the decoders emitted nothing
            inst.steps += 1
            self.steps += 1
            self._prefill_progress(inst, t)
        inst.kind, inst.end = None, math.inf
        self._form(inst, t)

    def _advance(self, inst: _Inst, k: int, t: float) -> None:
        """``k`` steps ended at ``t``: every decoding sequence emitted k tokens."""
        inst.n += k
        inst.steps += k
        self.steps += k
        fin = inst.fin
        while fin and fin[0][0] < inst.n:
            rid = heapq.heappop(fin)[1]
            inst.D -= 1
            inst.base -= inst.offs.pop(rid)
            self._finish(inst, rid, t)

    def _finish(self, inst: _Inst, rid: int, t: float) -> None:
        self.done[rid] = t
        self.source.done(rid, t)
        inst.kv -= self.res[rid]
        inst.kvb -= -(-self.I[rid] // self.cfg.block_tokens)
        inst.running -= 1
        inst.nsys -= 1
        self._count(t, -1)

    def _prefill_progress(self, inst: _Inst, t: float) -> None:
        """Apply the ended step's prefill chunks; completed prompts emit their first token."""
        I = self.I
        for p, c in inst.chunks:
            p[1] += c
            inst.qtok -= c
            if p[1] < I[p[0]]:
                continue
            rid = p[0]
            self.first[rid] = t
            self._save(inst, t, rid)
            if self.O[rid] == 1:
                self._finish(inst, rid, t)
                continue
            off = I[rid] + 1 - inst.n          # context I+1 at its first decode step n
            inst.offs[rid] = off
            inst.base += off
            inst.D += 1
            heapq.heappush(inst.fin, (inst.n + self.O[rid] - 2, rid))
        inst.prefill = [p for p in inst.prefill if p[1] < I[p[0]]]
        inst.chunks = None

    # ---- forming the next step ---------------------------------------------------------------
    def _form(self, inst: _Inst, t: float) -> None:
        """Admit, then start a mixed step, a run of decode steps, or go idle until a wake-up."""
        self._admit(inst, t)
        chunks = self._chunks(inst, t)
        if chunks:
            self._mixed(inst, t, chunks)
        elif inst.D:
            self._decode_run(inst, t)
        else:
            b = self._bound(inst, t)
            if b < math.inf:
                self._schedule(inst, b, "wake")

    def _admit(self, inst: _Inst, t: float) -> None:
        w, cap, mbs = inst.waiting, self.cfg.kv_cap, self.cfg.mbs
        while w:
            rid = w[0]
            if self.ready[rid] > t or inst.running >= mbs or inst.kv + self.res[rid] > cap:
                return
            w.popleft()
            inst.kv += self.res[rid]
            inst.running += 1
            inst.max_kv = max(inst.max_kv, inst.kv)
            inst.max_run = max(inst.max_run, inst.running)
            self.admit[rid] = t
            p = [rid, self.hit_tok[rid], t + self.load_s[rid]]
            inst.prefill.append(p)
            if self.share is not None:
                self.share.fetch(t, rid, p)
            if self.load_s[rid] > 0:
                self._path_job(inst, t, rid, p)

    def _path_job(self, inst: _Inst, t: float, rid: int, p: list) -> None:
        """Start ``rid``'s prefix load on the instance's path server (its bandwidth part; the
        rest of ``load_s``, setup and latency, follows it unshared)."""
        demand = self.tier_tok[rid] * self.per_tok * self.cfg.path_s_per_B[0]
        demand = min(demand, self.load_s[rid])
        inst.loading[rid] = [p, self.load_s[rid] - demand]
        inst.path.add(t, ("load", rid), demand)
        self._reproject(inst)

    def _save(self, inst: _Inst, t: float, rid: int) -> None:
        """Write ``rid``'s new KV through to the tier (asynchronously: only loads the path)."""
        if self.share is not None:
            self.share.put(t, rid)
        w = self.cfg.path_s_per_B[1]
        if self.cfg.tier is None or inst.cache is None or w <= 0 or self.cfg.save <= 0:
            return
        new = self.I[rid] - self.tier_tok[rid]   # computed, or fetched from the shared level
        inst.path.add(t, ("save", rid), new * self.cfg.save * self.per_tok * w)
        self.saved_B += new * self.cfg.save * self.per_tok
        self._reproject(inst)

    def _reproject(self, inst: _Inst) -> None:
        """Every load in service gets its end as the path's schedule now stands."""
        fin = inst.path.finish_times()
        for rid in list(inst.loading):
            p, fixed = inst.loading[rid]
            end = fin.get(("load", rid), inst.path.done.get(("load", rid)))
            p[2] = end + fixed if self.share is None else max(end + fixed,
                                                              self.share.ready.get(rid, 0.0))
            if ("load", rid) not in fin:
                del inst.loading[rid]

    def _chunks(self, inst: _Inst, t: float) -> list:
        """Prefill chunks of this step in admission order, within the token budget."""
        budget = self.cfg.mnt - (inst.D if self.cfg.mixed else 0)
        out = []
        self._refresh_fetches(inst)
        for p in inst.prefill:
            if budget <= 0:
                break
            if p[2] > t:
                continue
            c = min(self.I[p[0]] - p[1], budget)
            if not self.cfg.mixed and out and c < self.I[p[0]] - p[1]:
                continue  # whole prompts only (a longer one than the budget runs alone)
            out.append((p, c))
            budget -= c
        return out

    def _bound(self, inst: _Inst, t: float) -> float:
        """Earliest future time new prefill work can start (a queued request becomes ready or a
        prefix load ends); inf if none (a ready head blocked by KV/batch waits for a finish)."""
        b = math.inf
        self._refresh_fetches(inst)
        if inst.waiting and self.ready[inst.waiting[0]] > t:
            b = self.ready[inst.waiting[0]]
        for p in inst.prefill:
            b = min(b, p[2])
        return b

    def _refresh_fetches(self, inst: _Inst) -> None:
        """Project the shared-level fetches of ``inst``'s prefilling requests again."""
        pend = self.share.pending if self.share is not None else None
        if pend:
            for p in inst.prefill:
                if p[0] in pend:
                    self.share.refresh(p[0])

    def _ctx(self, inst: _Inst, m):
        """Sum of decode contexts at step(s) ``m``: tokens, or where some layer is not full
        attention each sequence's KV in tokens of ``kv_elems_rank`` (``kv_per_seq``)."""
        if not self.by_kind:
            return inst.D * m + inst.base
        offs = np.fromiter(inst.offs.values(), dtype=np.float64, count=len(inst.offs))
        st = self.cfg.setup
        s = np.asarray(kv_per_seq(st.model, offs[:, None] + np.atleast_1d(m)[None, :], st.tp,
                                  st.kv_B)).sum(axis=0)
        return s if np.ndim(m) else float(s[0])

    def _mixed(self, inst: _Inst, t: float, chunks: list) -> None:
        D, S = (inst.D, self._ctx(inst, inst.n)) if self.cfg.mixed else (0, 0.0)
        s, P = self.cfg.setup, 0.0
        pairs = start_sum = 0.0
        done = 0
        for p, c in chunks:
            P += c
            pairs += attn_pairs(s, c * (p[1] + (c + 1.0) / 2.0), p[1] + c, c)
            start_sum += attn_reads(s, 1.0, p[1])
            done += p[1] + c >= self.I[p[0]]
        lat = inst.last = self.timer.step(D + P, D + done, pairs, S, S + start_sum, D + P)
        inst.chunks = chunks
        self._schedule(inst, t + lat, "mixed" if self.cfg.mixed else "prefill")

    def _decode_run(self, inst: _Inst, t: float) -> None:
        """Decode-only steps until the next finish, the first step boundary at or after the
        bound, or the stretch cap; evaluated as one vector when longer than two steps."""
        k = min(inst.fin[0][0] - inst.n + 1, _STRETCH_CAP)
        S0 = self._ctx(inst, inst.n)
        dt0 = inst.last = self.timer.step(inst.D, inst.D, 0.0, S0, S0, inst.D)
        b = self._bound(inst, t)
        if b < math.inf:
            k = max(1, min(k, math.ceil((b - t) / dt0)))
        if k <= 2:
            T = [t + dt0]
            if k == 2:
                S1 = self._ctx(inst, inst.n + 1)
                T.append(T[0] + self.timer.step(inst.D, inst.D, 0.0, S1, S1, inst.D))
            T = np.asarray(T)
        else:
            dt = self.timer.decode(float(inst.D), self._ctx(inst, np.arange(inst.n, inst.n + k,
                                                                              dtype=np.float64)))
            dt[0] = dt0
            T = np.cumsum(np.concatenate(([t], dt)))[1:]
        if b < math.inf:
            k = min(k, int(np.searchsorted(T, b)) + 1)
        inst.T, inst.k = T, k
        self._schedule(inst, float(T[k - 1]), "decode")

    # ---- output ------------------------------------------------------------------------------
    def _times(self, tr: Trace) -> dict[str, np.ndarray]:
        """Per-request times and instance; NaN times and instance -1 for rejected requests."""
        arr, O, rej = np.asarray(self.arr), tr.output_len, np.asarray(self.rejected)
        first, done = np.asarray(self.first), np.asarray(self.done)
        out = dict(ttft_s=first - arr, e2e_s=done - arr, queue_s=np.asarray(self.admit) - arr,
                   tpot_s=np.where(O > 1, (done - first) / np.maximum(O - 1, 1), 0.0))
        if rej.any():
            for x in out.values():
                x[rej] = np.nan
        where = np.asarray(self.where, dtype=np.int64)
        where[rej] = -1
        return dict(out, instance=where)

    def result(self, tr: Trace, wall: float) -> SimResult:
        ins, rej = self.insts, np.asarray(self.rejected)
        served_blocks = tr.total_blocks - int(tr.blocks_per_request[rej].sum())
        return SimResult(
            arrival_s=np.asarray(self.arr, dtype=np.float64), **self._times(tr), rejected=rej,
            input_len=tr.input_len.copy(), output_len=tr.output_len.copy(),
            cached_tokens=np.asarray(self.hit_tok, dtype=np.int64),
            requests_per_instance=np.array([x.count for x in ins], dtype=np.int64),
            steps_per_instance=np.array([x.steps for x in ins], dtype=np.int64),
            max_kv_tokens=np.array([x.max_kv for x in ins]),
            max_running=np.array([x.max_run for x in ins], dtype=np.int64),
            kv_capacity_tokens=self.cfg.kv_cap, max_batch_size=self.cfg.mbs,
            max_num_tokens=self.cfg.mnt, hit_blocks=self.hit_blocks,
            total_blocks=served_blocks if any(x.cache for x in ins) or self.share else 0,
            area_s=self.area, steps=self.steps, events=self.events, wall_s=wall,
            **self._path_stats(), **(self.share.stats() if self.share else {}))

    def _path_stats(self) -> dict[str, Any]:
        for x in self.insts:
            x.path.drain()
        get = lambda f: np.array([getattr(x.path, f) for x in self.insts])  # noqa: E731
        return dict(path_busy_s=get("busy"), path_area_s=get("area"),
                    path_sojourn_s=get("sojourn"), path_jobs=get("served"), saved_B=self.saved_B)


# ------------------------------------------------------------------------------ public

@catalog_arg
def simulate(model, gpu, requests: Trace, *, instances: int = 1, tp=1, pp=1,
             precision: str = "bf16", kv_precision: str | None = None,
             framework="tensorrt-llm", max_num_tokens=None, max_batch_size=None,
             routing: str | RoutingPolicy = "round_robin", seed: int = 0,
             prefix_cache_blocks: int = 0, block_tokens: int | None = None,
             cache_tier: str | Tier = "hbm", node: str | None = None, epsilon: float = 0.25,
             routing_params: dict | None = None, kv_save: float = 1.0,
             sharing: str = "none", sharing_spec: SimPool | SimP2P | None = None,
             concurrency: int | None = None, think_time_s: float | None = None,
             session_mode: str = "open", catalog: Any = None) -> SimResult:
    """Discrete-event simulation of ``requests`` served by ``instances`` TP×PP groups.

    Each instance is configured as :func:`kvmodel.estimate` would configure it (``model``,
    ``gpu``, ``tp``, ``pp``, ``precision``, ``kv_precision``, ``framework``,
    ``max_num_tokens`` and ``max_batch_size`` defaulting to the calibration). ``routing`` is a
    key of :data:`kvmodel.policies.routing.ROUTING_POLICIES` (e.g. one of :data:`SIM_ROUTINGS`,
    ``"dynamo"``, ``"llmd"``, ``"sglang"``, ``"mooncake"``) built with ``routing_params``, or a
    :class:`~kvmodel.policies.routing.RoutingPolicy` instance (used as is, after ``reset``). ``seed``
    and ``epsilon`` (> 0) are passed to policies that take them (``random``'s draws,
    ``prefix_affinity_bounded``'s load bound, tie-breaking draws) unless ``routing_params``
    sets them. ``prefix_cache_blocks``: LRU prefix
    cache per instance, in hash blocks of ``block_tokens`` tokens (default: the trace's), held
    in ``cache_tier`` (a tier name of ``node``'s template or a :class:`Tier`); a fraction
    ``kv_save`` of every request's newly computed KV is written through to that tier after
    its prefill (asynchronously: it loads the path, nobody waits for it). ``sharing``: none |
    central_pool | p2p, a shared level beyond the local cache described by ``sharing_spec``
    (a :class:`SimPool` or :class:`SimP2P`; None: its defaults), with network contention
    (:mod:`kvmodel.sim._sharing`), behind the local cache in any ``cache_tier``.
    ``concurrency=N`` (clients, each sending its next request ``think_time_s`` after its
    previous one finished) and ``session_mode="closed"`` (a session's turn k sent
    ``think_time_s``, default the trace's own gap, after turn k-1 finished) replace the trace's
    arrival times by closed-loop ones (:mod:`kvmodel.sim._clients`); ``SimResult.arrival_s``
    holds the times requests were sent. ``catalog``:
    the :class:`kvmodel.Catalog` that names are looked up in (default: the active one).

    Raises ``ValueError`` for malformed arguments, an infeasible instance (weights do not fit,
    unsupported precision, TP not dividing the heads) or a request whose reservation exceeds an
    instance's KV capacity. Every request finishes unless the policy rejects it (see
    ``SimResult.rejected``); see the module docstring for the semantics.
    """
    bt = _check_args(requests, instances, routing, prefix_cache_blocks, block_tokens)
    check_clients(concurrency, think_time_s, session_mode)
    if not (isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) and epsilon > 0):
        raise ValueError(f"epsilon={epsilon!r}: must be a number > 0")
    cfg = _config(model, gpu, tp, pp, precision, kv_precision, framework, max_num_tokens,
                  max_batch_size, int(prefix_cache_blocks), bt, cache_tier, node, kv_save)
    share = _sharing_arg(sharing, sharing_spec, int(instances))
    t0 = time.perf_counter()
    policy = _policy(routing, routing_params, seed=seed, epsilon=epsilon)
    sim = _Sim(cfg, requests, int(instances), policy, int(prefix_cache_blocks), share,
               (concurrency, think_time_s, session_mode))
    sim.run()
    return sim.result(requests, time.perf_counter() - t0)


def _sharing_arg(sharing, spec, instances: int) -> SimPool | SimP2P | None:
    """The shared level's spec (None: no sharing), behind the local cache in any tier."""
    return sharing_spec(sharing, spec, instances)


def _policy(routing, params: dict | None, **defaults) -> RoutingPolicy:
    """The routing policy: an instance as is, else built from the registry with ``params``
    plus the simulator-wide ``defaults`` it accepts and ``params`` does not set."""
    if isinstance(routing, RoutingPolicy):
        if params:
            raise ValueError("routing_params: not allowed with a RoutingPolicy instance")
        return routing
    params = dict(params or {})
    accepted = policy_params(routing)
    for k, v in defaults.items():
        if k in accepted:
            params.setdefault(k, v)
    return make_policy(routing, **params)
