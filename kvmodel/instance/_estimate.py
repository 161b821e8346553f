"""``kvmodel.estimate``: one serving instance (a TP×PP×EP group, optionally replicated) in three
modes — static batch, throughput-max continuous batching, closed loop with N clients.

All numeric arguments broadcast (floats or numpy arrays). Infeasible elements are marked with
``feasible=False`` and a ``reason``; their times are ``inf`` and throughput 0 — never NaN.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.base.fields import add_aliases, fields_dict
from kvmodel.catalog.hardware import (
    ConnectorSpec,
    FrameworkSpec,
    GPUSpec,
    catalog_arg,
    current,
    get_connector,
    get_framework,
    get_gpu,
)
from kvmodel.catalog.models import ModelSpec, get_model
from kvmodel.instance import _contended as _best
from kvmodel.instance import _openloop as _ol
from kvmodel.instance import _speculative as _spec
from kvmodel.instance import _tpot_law as _tl
from kvmodel.instance import _unmixed as _um
from kvmodel.instance import _wide_ep as _wide
from kvmodel.instance._mixture import (
    PrefixMix,
    PrefixRow,
    check_classes,
    length_bands,
    mixture_quantiles,
)
from kvmodel.instance._paths import PathLoad
from kvmodel.instance._prefix import (
    LAYOUTS,
    POLICIES,
    kv_bytes_per_token_gpu,
    load_seconds,
    on_distinct,
    overlap_layers,
    path_token,
    pipeline_makespan,
    prefill_choice,
    prefill_with_prefix,
    prefix_bytes_gpu,
)
from kvmodel.instance._queueing import (
    QUANTILES,
    normal_quantile,
    sum_wait_law,
    wait_quantile,
)
from kvmodel.instance._roofline import (
    Setup,
    attn_pairs,
    attn_reads,
    chunk_start,
    label_bounds,
    mean_ops,
    memoised,
    setup_key,
    step_ops,
    step_time,
)
from kvmodel.instance.seam import Reasons as _Reasons
from kvmodel.instance.seam import check_static as _check_static
from kvmodel.instance.seam import kv_per_seq as _kv_per_seq
from kvmodel.instance.seam import kv_precision_arg as _kv_precision
from kvmodel.instance.seam import memory_fit as _memory_fit
from kvmodel.instance.seam import num as _num
from kvmodel.instance.seam import parallelism as _parallelism
from kvmodel.instance.seam import params as _params
from kvmodel.instance.seam import precision_arg as _precision
from kvmodel.instance.seam import setup as _setup
from kvmodel.tiers import TIER_KINDS, Tier, node_tiers

__all__ = ["estimate", "Estimate", "METRICS", "METRIC_FIELDS"]

# metric names of the serving measurements (hardware_db/measurements, calibration.toml keys)
METRICS = ("ttft_s", "tpot_s", "e2e_s", "output_tok_s")
# ... and the Estimate field each one is compared with
METRIC_FIELDS = {"ttft_s": "ttft_s", "tpot_s": "tpot_s", "e2e_s": "e2e_s",
                 "output_tok_s": "output_tok_per_s"}
_FIXED_POINT_ITERS = 60
# largest token length, batch or client count accepted: far beyond any context window or
# deployment, small enough that products of them (pairs of attention, FLOPs) stay finite
MAX_COUNT = 1e9


@dataclass(frozen=True)
class Estimate:
    """Result of :func:`estimate`. Times in seconds (``_s``), rates per second (``_per_s``),
    bytes ``_B``; throughput in generated tokens/s for all ``num_gpus``; arrays when any input
    was an array. ``ttft_s``, ``tpot_s``, ``e2e_s`` are means."""

    ttft_s: Any
    tpot_s: Any
    e2e_s: Any
    output_tok_per_s: Any            # generated tokens/s, all replicas
    batch: Any                       # mean running requests per replica
    feasible: Any
    reason: Any
    mode: str
    breakdown: Mapping[str, Mapping[str, Mapping[str, Any]]]
    kv_capacity_tokens: Any          # KV pool per replica, tokens
    max_batch: Any                   # largest batch the KV pool admits, per replica
    weights_B_per_gpu: Any           # bytes of weights on each GPU
    kv_B_per_token: float            # KV bytes per token (all layers, one replica)
    stable: Any = True
    saturation_request_rate_per_s: Any = 0.0  # requests/s at which the queue grows without bound
    ttft_p50_s: Any = 0.0
    ttft_p90_s: Any = 0.0
    ttft_p99_s: Any = 0.0
    tpot_p50_s: Any = 0.0
    tpot_p90_s: Any = 0.0
    tpot_p99_s: Any = 0.0
    e2e_p50_s: Any = 0.0
    e2e_p90_s: Any = 0.0
    e2e_p99_s: Any = 0.0
    queue_wait_s: Any = 0.0     # mean queueing delay inside TTFT
    queue_wait_prob: Any = 0.0  # probability that a request waits at all
    # open loop: mean remaining time of the step an arrival lands in (the engine admits at
    # step boundaries; with the request overhead and queue_wait_s, a request's time in the
    # engine's waiting queue); 0 in the other modes
    step_residual_s: Any = 0.0
    interval: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    # busy fraction of each KV path segment ("ssd: device ...", "link pcie5-x16") from all
    # concurrent loads and saves of one replica (empty without a prefix outside HBM)
    path_utilisation: Mapping[str, Any] = field(default_factory=dict)
    # cached prefix tokens each request loads (the rest of its prefix is recomputed), as the
    # prefix policy chose them; the classes' mean with prefix_classes
    prefix_loaded_tokens: Any = 0.0
    # DP attention with wide EP (``attention_dp``): the step's all-to-all bytes and time per
    # GPU, its NVLink / network parts and share of the step (empty when off)
    wide_ep: Mapping[str, Any] = field(default_factory=dict)
    # speculative decoding: TPOT factor, accepted tokens per verify step, verify / draft /
    # plain decode step times, the drafter's weights and KV per token per GPU (empty when off)
    speculative: Mapping[str, Any] = field(default_factory=dict)
    # open loop with hit classes: the TTFT's class mixture (:func:`ttft_mixture`: class
    # offsets, common part, step spread law), from which a router's wait law rebuilds the
    # instance's TTFT percentiles (:func:`kvmodel.cluster._routing_queue.routed_percentiles`);
    # None otherwise. Fields (not attributes) so that ``dataclasses.replace`` keeps them.
    ttft_mixture: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    # open loop: the wait's two queues, ``(prefill carry wait_s, its probability, its token
    # server's utilisation, the KV-slot wait's probability)`` (the slot wait's mean is
    # queue_wait_s less the prefill's), for a router's wait law
    # (:func:`kvmodel.cluster._routing_queue.routed_law`); None otherwise
    wait_parts: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (arrays become lists, non-finite floats None)."""
        return fields_dict(self)


add_aliases(Estimate, {"output_tok_s": "output_tok_per_s",
                       "weights_bytes_per_gpu": "weights_B_per_gpu",
                       "kv_bytes_per_token": "kv_B_per_token",
                       "saturation_request_rate": "saturation_request_rate_per_s"})


_SCALARS = (float, int, bool, str, type(None))  # shape () whatever their value


def _same_shape(**named: Any) -> tuple[int, ...]:
    """Broadcast shape of the named arguments; a mismatch names the two that clash."""
    if all(type(v) in _SCALARS for v in named.values()):  # the common case: no arrays
        return ()
    shape: tuple[int, ...] = ()
    widest = ""
    for name, v in named.items():
        try:
            new = np.broadcast_shapes(shape, np.shape(v))
        except ValueError:
            raise ValueError(f"{name} has shape {np.shape(v)}, which does not broadcast with "
                             f"{widest} of shape {shape}: array arguments must have equal "
                             "shapes (or shapes numpy broadcasts, e.g. (3, 1) with (4,))") from None
        if new != shape:
            shape, widest = new, name
    return shape


# ---- modes --------------------------------------------------------------------------------------
def _prefix_B(s: Setup, tokens, per_tok):
    """KV bytes one GPU moves for ``tokens`` tokens of one request's prefix (``per_tok``: its
    per-token rate after compression; mixed layer kinds via :func:`prefix_bytes_gpu`)."""
    m = s.model
    if m.is_uniform and m.layer_kinds[0] == "full":
        return tokens * per_tok
    return prefix_bytes_gpu(s, tokens) * (per_tok / kv_bytes_per_token_gpu(s))


def _new_kv_B(s: Setup, I, P, per_tok):
    """KV bytes one GPU writes for a request's I - P new prompt tokens (what a windowed or
    linear-attention layer adds beyond its prefix, for mixed layer kinds)."""
    m = s.model
    if m.is_uniform and m.layer_kinds[0] == "full":
        return xp.maximum(I - P, 0.0) * per_tok
    return xp.maximum(_prefix_B(s, I, per_tok) - _prefix_B(s, P, per_tok), 0.0)


class _Prefix:
    """A cached prefix of P tokens loaded by ``load(tokens) -> seconds`` (None: no prefix);
    for continuous batching the per-request choice (load / recompute / split) is made for one
    request alone and then applied to all. ``path``: the per-request demand of its loads and
    saves on the shared path segments (:mod:`kvmodel.instance._paths`); ``save_sync``: whether
    the save of new KV completes before the first token (else it only loads the path)."""

    def __init__(self, s: Setup, P, load, policy: str, I, layers=None, parts=(), per_tok=0.0,
                 save=0.0, conn=None, stretch=1.0):
        self.none = load is None
        self.P, self.policy, self.load, self.layers = P, policy, load, layers
        self.loaded, self.exposed, self.t_load, self.t_comp = 0.0, 0.0, 0.0, 0.0
        self._path, self.save_sync = None, bool(conn is not None and conn.save_sync)
        depth = float(s.model.num_layers if layers is None else layers)  # overlap depth
        if self.none:
            return
        ch = prefill_choice(s, 1.0, I, P, load, policy, layers, stretch)
        self.depth = depth
        # no cached prefix (an element with P = 0): no tier in use, nothing saved, as for a scalar
        self.saved_B = xp.where(P > 0, save * _new_kv_B(s, I, P, per_tok), 0.0)
        self.eff = 1.0 if conn is None else conn.bandwidth_efficiency
        self._s, self._parts, self._per_tok, self._each = s, parts, per_tok, ch["each"]
        self.pick = ch["pick"]  # per element, the index in _best.POLICIES of the choice
        self._use(ch["tok"], ch["lat"], ch["comp"], ch["t_load"])

    def _use(self, tok, lat, comp, t_load) -> None:
        """Take the prefill choice that loads ``tok`` tokens: its times and path demand."""
        self.loaded, self.exposed = tok, lat - comp
        self.t_load, self.t_comp = t_load, lat - self.exposed
        loaded_B = _prefix_B(self._s, tok, self._per_tok)
        self.reads = [(t, f * loaded_B) for t, f in self._parts]
        self.writes = [(t, self.saved_B * f) for t, f in self._parts]
        self._path = None  # built when first used (:attr:`path`)

    @property
    def path(self) -> PathLoad | None:
        """The path demand of the chosen loads and saves (None: no prefix); built on first use
        (a stack of hit classes under ``best`` serves only its candidates': :func:`_stack_served`)."""
        if self._path is None and not self.none:
            self._path = PathLoad(self.reads, self.writes, self.eff)
        return self._path

    def as_policy(self, policy: str) -> "_Prefix":
        """This prefix under ``policy`` (recompute, load, or split at this prefix's balance,
        the uncontended one unless it was built with a stretch): what ``_prefix(..., policy)``
        builds, from the candidates its own choice already computed."""
        if self.none:
            return self
        other = copy.copy(self)
        other.policy, other.pick = policy, tuple(self._each).index(policy)
        other._use(*self._each[policy])
        return other

    def as_policies(self, policies: tuple) -> "_Prefix":
        """:meth:`as_policy` of each of ``policies`` at once, stacked on a new leading axis
        (one throughput-max call serves every candidate)."""
        other = copy.copy(self)
        other.policy, other.pick = policies, None  # (a choice per candidate: none)
        each = [self._each[p] for p in policies]
        other._use(*(_stacked(v) for v in zip(*each)))
        return other

    def new_tokens(self, I):
        return I - self.loaded

    def times(self) -> tuple:
        """(load seconds, compute seconds, overlap depth) of the chosen prefix use."""
        return self.t_load, self.t_comp, self.depth

    def exposed_with(self, delay):
        """Exposed load time when each load spends ``delay`` more seconds on the path."""
        mk = pipeline_makespan(self.t_load + delay, self.t_comp, self.depth) - self.t_comp
        return xp.where((delay > 0) & (self.loaded > 0), mk, self.exposed)

    def save_op(self, util: dict | None = None) -> dict:
        """The breakdown op of a request's save: bytes per GPU and the latency it adds."""
        t = self.path.write_time() if self.save_sync else 0.0
        return {"flops": 0.0, "bytes": self.saved_B, "time_s": t + 0.0 * self.saved_B}


def _stacked(values) -> np.ndarray:
    """``values`` stacked on a new leading axis (broadcast to one shape; of one shape
    already, as the candidates' rows mostly are, in one copy)."""
    shape = np.shape(values[0])
    if all(np.shape(v) == shape for v in values):
        return np.array(values, dtype=float)
    return np.stack(np.broadcast_arrays(*values))


def _path_outputs(pre: "_Prefix", rate, delay, p_wait) -> dict:
    """Result entries of the path model: the extra exposed load time, its wait probability,
    each segment's utilisation at ``rate`` requests/s per replica."""
    extra = pre.exposed_with(delay) - pre.exposed
    return dict(path_wait=extra, path_p=p_wait, path_util=pre.path.utilisation(rate),
                path_delay=delay)


def _static(s: Setup, I, O, B, dp, req_s, pre: "_Prefix"):
    if pre.none:
        ops_p, _, lat_p = step_ops(s, B * I, B, attn_pairs(s, B * I * (I + 1.0) / 2.0, I, I), 0.0,
                                   0.0, B * I)
    else:
        ops_p, lat_p, _ = prefill_with_prefix(s, B, I, pre.P, lambda tok: pre.load(B * tok, B),
                                              pre.policy, pre.layers)
    lat_p = lat_p + req_s
    c = I + O / 2.0
    kv_c = _kv_per_seq(s.model, c, s.tp, s.kv_B)
    ops_d, _, lat_d = step_ops(s, B, B, 0.0, B * kv_c, B * kv_c, B)
    e2e = lat_p + (O - 1.0) * lat_d
    return dict(bd={"prefill": ops_p, "decode": ops_d}, ttft=lat_p, tpot=lat_d, e2e=e2e,
                tok=dp * B * O / e2e, B=B)


def _tm_batch(s: Setup, O, bmax, max_tokens, n):
    """Throughput-max's batch B (the largest that fits, or the token budget's), and its
    cycle: each of the B slots runs its prompt's k chunks in k steps, then O − 1 decode steps,
    so q = B / (O − 1 + k) requests complete per step; ``n``: prompt tokens each request
    computes, in k = ceil(n / (max_tokens − B)) chunks beside the decoders.
    Returns (B, k, q)."""
    b_tok = xp.floor(max_tokens * O / (n + O))
    B = xp.maximum(xp.minimum(bmax, b_tok), 1.0)
    k = xp.ceil(n / xp.minimum(n, xp.maximum(max_tokens - B, 1.0)))
    return B, k, B / (O - 1.0 + k)


def _tm_step(s: Setup, I, O, bmax, max_tokens, n, c):
    """(ops, mean period) of throughput-max's steps, per pipeline stage plus the framework's.

    The engine's steps are of two kinds, as in :mod:`kvmodel.sim`: a slot admitted when another
    finishes runs its prompt as whole chunks of n / k tokens beside the D = q·(O − 1)
    decoders, and the steps no chunk lands in decode only. Chunks come at x = q·k per step.
    With deterministic lengths a full batch keeps the step phases of the arrivals that first
    filled its slots (Poisson: equal requests admitted together finish together, and the slots
    they free are re-admitted together; filled all at once, as an offline batch, every cohort
    is a full-budget step and the convex roofline makes the engine slower, 0.94 of this rate
    for 8B 9216/128 with an 8K cached prefix in :mod:`kvmodel.sim`, while Poisson overload gets
    1.00: ``benchmarks/queue_vs_sim.py``), so a step carries a chunk with probability
    f = 1 − e^(−x) and then x/f chunks on average, capped by the budget max_tokens − D (a
    budget-bound batch fills every step): the open loop's busy-step law
    (:func:`kvmodel.instance._openloop.busy_share` at λ·t = q). Mixing the two kinds, rather
    than spreading the prompt tokens evenly over the steps, keeps the roofline's convexity: a
    lone chunk of a long prompt is compute-bound where a few prompt tokens per step hide under
    the weight reads. Ops and period are the f-weighted mean of the two kinds."""
    f, busy, stage_b, dec, stage_d = _tm_kinds(s, I, O, bmax, max_tokens, n, c)
    return mean_ops([busy, dec], [f, 1.0 - f]), _tm_period(f, busy, stage_b, dec, stage_d)


def _tm_kinds(s: Setup, I, O, bmax, max_tokens, n, c):
    """(f, busy ops, busy stage, decode ops, decode stage) of :func:`_tm_step`."""
    _, k, q = _tm_batch(s, O, bmax, max_tokens, n)
    D = q * (O - 1.0)
    f, P = _ol.busy_share(q, 1.0, n, k, xp.maximum(max_tokens - D, 1.0))
    d, tok = D / s.pp, P / s.pp  # per stage: decoders, prompt tokens of a busy step
    m = tok * k / n  # chunks of a busy step
    busy, stage_b, _ = step_ops(s, d + tok, d + m / k, attn_pairs(s, tok * (I - n / 2.0), I, n),
                                d * c, d * c + attn_reads(s, m, chunk_start(I, n, k)), d + tok)
    dec, stage_d, _ = step_ops(s, d, d, 0.0, d * c, d * c, d)
    return f, busy, stage_b, dec, stage_d


def _tm_period(f, busy, stage_b, dec, stage_d):
    """Mean period of throughput-max's steps (:func:`_tm_step`) from its two step kinds."""
    return (f * (stage_b + busy["framework"]["time_s"])
            + (1.0 - f) * (stage_d + dec["framework"]["time_s"]))


def _tm_period_of(s: Setup, I, O, bmax, max_tokens, n, c):
    """:func:`_tm_step`'s period alone (no merged op breakdown), memoised by value."""
    return memoised("tm_period", s, (I, O, bmax, max_tokens, n, c),
                    lambda: _tm_period(*_tm_kinds(s, I, O, bmax, max_tokens, n, c)))


def _tm_ops(s: Setup, I, O, bmax, max_tokens, n, c, breakdown: bool):
    """(ops, period) of the mixed cycle (:func:`_tm_step`); without ``breakdown`` the period
    alone, memoised (a large array of prefixes: on its distinct lengths)."""
    if breakdown:
        return _tm_step(s, I, O, bmax, max_tokens, n, c)
    if xp.is_array(I, O, bmax, max_tokens, c):
        return {}, _tm_period_of(s, I, O, bmax, max_tokens, n, c)
    return {}, on_distinct(lambda v: _tm_period_of(s, I, O, bmax, max_tokens, v, c), n)


def _throughput_max(s: Setup, I, O, dp, bmax, max_tokens, req_s, pre: "_Prefix",
                    breakdown: bool = True, ctx=None):
    """Continuous batching at the largest sustainable batch (``breakdown`` False: the step's
    ops are left out, and a large array of prefixes is computed on its distinct lengths). A
    prefix load holds its request's KV slot while it waits on and crosses the path: the batch
    computes in the slots the loads leave (:func:`~kvmodel.instance._contended.slot_bound`).
    ``ctx``: the decoders' KV per sequence (None: the request's own, I + O/2; a class of a
    mixed batch decodes beside the mixture's, :func:`_mixed_batch`)."""
    def serve(b, bd):
        return _tm_slots(s, I, O, dp, b, max_tokens, req_s, pre, bd, bmax, ctx)
    if pre.none or not xp.any_true(pre.loaded > 0):
        return serve(bmax, breakdown)
    return _best.slot_bound(serve, lambda x, t: _best.held_slots(pre, x, t, bmax), bmax,
                            dp * O, breakdown)


def _tm_slots(s: Setup, I, O, dp, bmax, max_tokens, req_s, pre: "_Prefix", breakdown: bool,
              clients, ctx=None):
    """:func:`_throughput_max` with ``bmax`` slots computing, ``clients`` requests in flight
    on the path (every slot: computing or loading); ``breakdown`` None: ``tok`` and ``tpot``
    alone where a prefix loads (a probe of :func:`~kvmodel.instance._contended.slot_bound`)."""
    n = pre.new_tokens(I)  # prompt tokens each request computes
    c = _kv_per_seq(s.model, I + O / 2.0, s.tp, s.kv_B) if ctx is None else ctx
    um = _um.cycle(s, I, O, bmax, max_tokens, n, c) if _um.unmixed(s) else None
    if um is not None:  # prompt steps without decodes: the cohort cycle of _unmixed
        B, q, ops, period = um["B"], um["q"], um["ops"] if breakdown else {}, um["period"]
    else:
        B, _, q = _tm_batch(s, O, bmax, max_tokens, n)
        ops, period = _tm_ops(s, I, O, bmax, max_tokens, n, c, breakdown)
    r = q / s.pp  # requests starting (and finishing) per stage period
    period0, extra, probe = period, {}, breakdown is None and not pre.none
    if not pre.none:  # prefix loads and saves run beside compute; the path must keep up
        load = pre.load(r * pre.loaded, r)  # r requests start their loads per step
        busy = _max_busy(pre.path.utilisation(r))  # path seconds per step, reads + writes
        need = xp.maximum(load, busy)
        if probe:  # the rate and step alone (slot_bound): no path delay, no ops
            period = xp.maximum(period, need)
        else:
            ops, period, extra = _path_step(pre, r, period, need, ops, clients)
    tpot, first = s.pp * period, s.pp * period * xp.maximum(1.0, 1.0 / q)
    if um is not None:  # the cohort's own times, stretched as the path stretches the steps
        tpot, first = um["tpot"] * (period / period0), um["first"] * (period / period0)
    if probe:
        return dict(tok=dp * r * O / period, tpot=tpot)
    ttft = req_s + first + pre.exposed + extra.get("path_wait", 0.0)
    ttft = ttft + (0.0 if pre.none else ops["kv_save"]["time_s"])
    e2e = ttft + (O - 1.0) * tpot
    return dict(bd={"step": ops}, ttft=ttft, tpot=tpot, e2e=e2e, tok=dp * r * O / period, B=B,
                **extra)


def _path_step(pre: "_Prefix", r, period, need, ops: dict, clients):
    """(ops, period, result entries) of a throughput-max step of ``period`` seconds computing
    beside its prefix loads and saves, which need ``need`` seconds of the path per step:
    every slot's request always in flight, a closed loop of ``clients`` on the path."""
    ops = dict(ops, kv_load={"flops": 0.0, "bytes": 0.0, "time_s": xp.maximum(need - period, 0.0)},
               kv_save=pre.save_op())
    period = xp.maximum(period, need)
    delay, p_wait = pre.path.delay(r / period, clients)
    return ops, period, _path_outputs(pre, r / period, delay, p_wait)


def _max_busy(util: dict):
    out = 0.0
    for u in util.values():
        out = xp.maximum(out, u)
    return out


def _bracketed_root(residual, lo, hi):
    """Root of residual(t) (> 0 at ``lo``, < 0 at ``hi``) by Illinois false position, vectorised.

    Returns ``(t, extra)`` where ``residual(t) == (g, extra)``. An element that has converged
    stays where it is while the others iterate, so an element of an array gets exactly the
    answer it gets alone.
    """
    g_lo, _ = residual(lo)
    g_hi, extra = residual(hi)
    t = hi
    if not xp.is_array(lo, hi, g_lo, g_hi):
        return _scalar_root(residual, lo, hi, g_lo, g_hi, extra)
    for _ in range(_FIXED_POINT_ITERS):
        den = g_hi - g_lo
        t = hi - g_hi * (hi - lo) / xp.where(den == 0, 1.0, den)
        g, extra = residual(t)
        busy = abs(g) > 1e-7 * t
        if not xp.any_true(busy):
            break
        done = ~busy if xp.is_array(busy) else False
        flip = (g * g_hi < 0) & busy
        lo, g_lo = xp.where(flip, hi, lo), xp.where(flip, g_hi, xp.where(done, g_lo, 0.5 * g_lo))
        hi, g_hi = t, xp.where(done, 0.0, g)
    return t, extra


def _scalar_root(residual, lo, hi, g_lo, g_hi, extra):
    """:func:`_bracketed_root` on numbers: the same steps with the selections written as
    conditional expressions (``xp.where`` of numbers is one). A residual that is a number at
    both ends of the bracket is one everywhere (an array there is a caller's error)."""
    t = hi
    for _ in range(_FIXED_POINT_ITERS):
        den = g_hi - g_lo
        t = hi - g_hi * (hi - lo) / (1.0 if den == 0 else den)
        g, extra = residual(t)
        if xp.is_array(g, t):
            raise TypeError("a scalar bracket's residual gave an array")
        if not abs(g) > 1e-7 * t:
            break
        if g * g_hi < 0:
            lo, g_lo = hi, g_hi
        else:
            g_lo = 0.5 * g_lo
        hi, g_hi = t, g
    return t, extra


def _prefill_queue(a, S, P0, Z):
    """Closed loop of ``a`` clients over a single prefill server of deterministic service ``S``.

    A cycle is prefill wait W + ``P0`` (prefill, request overhead, half a step) + ``Z`` (decode).
    W is the M/D/1 wait S·q / (2 (1 - q)) at the utilisation seen by an arriving client,
    q = X·S·(a-1)/a (Schweitzer's arrival-theorem correction), and X = a / (W + P0 + Z).
    Eliminating X gives A·q² + B·q + C = 0 with exactly one root in (0, 1) (g(0) = C < 0,
    g(1) = S > 0), taken in the cancellation-free form. Returns (W + P0, X).
    """
    m = xp.maximum(a - 1.0, 0.0)
    A = S - 2.0 * (P0 + Z)
    B = 2.0 * (P0 + Z) + 2.0 * m * S
    C = -2.0 * m * S
    q = -2.0 * C / (B + (xp.maximum(B * B - 4.0 * A * C, 0.0)) ** 0.5)
    wait = S * q / (2.0 * (1.0 - q))
    return P0 + wait, a / (wait + P0 + Z)


def _closed_loop(s: Setup, I, O, N, dp, bmax, max_tokens, req_s, pre: "_Prefix"):
    new = pre.new_tokens(I)
    n = N / dp
    a = xp.minimum(n, bmax)
    c = _kv_per_seq(s.model, I + O / 2.0, s.tp, s.kv_B)

    # a new request waits for the running step, then its prompt runs in chunks that share each
    # step's token budget with up to ``a`` decoding sequences
    chunk = xp.minimum(new, xp.maximum(max_tokens - a, 1.0))
    t_pf, n_chunks = _chunk_step(s, I, new, chunk, a, c)
    prefill_s = req_s + n_chunks * t_pf + pre.exposed

    S = n_chunks * t_pf  # engine time one prompt's chunks occupy
    contended = not pre.none and xp.any_true(a > 1.0)

    def rates(t):
        if not contended:
            return _prefill_queue(a, S, prefill_s + 0.5 * t, (O - 1.0) * t)
        delay = _closed_path_delay(pre, a, lambda extra: _prefill_queue(
            a, S, prefill_s + extra + 0.5 * t, (O - 1.0) * t)[1])
        return _prefill_queue(a, S, prefill_s + pre.exposed_with(delay) - pre.exposed + 0.5 * t,
                              (O - 1.0) * t)

    def residual(t):
        _, X = rates(t)
        return _mixed_step(s, t, X * (O - 1.0) * t, X, I, new, c, max_tokens)

    hi = 1.01 * step_time(s, a + max_tokens, a, max_tokens * I, a * c, a * c, a + max_tokens)
    t, ops = _bracketed_root(residual, 1e-9 + 0.0 * I, hi)
    svc_ttft, X = rates(t)  # outputs from one consistent state: Little's law holds exactly
    wait = xp.maximum(n / X - (svc_ttft + (O - 1.0) * t), 0.0)
    ttft = svc_ttft + wait
    e2e = ttft + (O - 1.0) * t
    queued = svc_ttft - (prefill_s + 0.5 * t) + wait
    D = X * (O - 1.0) * t
    extra = {}
    if not pre.none:
        extra = _path_outputs(pre, X, *pre.path.delay(X, a))  # at the root: its delay
        queued = queued - extra["path_wait"]  # the path's delay has its own wait law
        ops = dict(ops, kv_save=pre.save_op())
        ttft, e2e = ttft + ops["kv_save"]["time_s"], e2e + ops["kv_save"]["time_s"]
    return dict(bd={"step": ops}, ttft=ttft, tpot=t, e2e=e2e, tok=dp * X * O, B=a,
                wait=queued, p_wait=xp.minimum(X * S, 1.0),
                tpot_sd=_tpot_sd(s, t, t_pf, X * xp.ceil(new / chunk) * t, D, c, O), **extra)


def _closed_path_delay(pre: "_Prefix", a, rate_at):
    """Delay of a load on the shared path in a closed loop of ``a`` clients: the root of
    delay(X(extra)) = d, where ``rate_at(extra)`` is the cycle rate when each request's exposed
    load grows by ``extra`` (a longer load slows the loop, lowering the path's load)."""
    hi = 0.0 * a
    for k in pre.path.names:
        hi = xp.maximum(hi, 2.0 * xp.maximum(a - 1.0, 0.0) * pre.path.queued(k))

    def residual(d):
        X = rate_at(pre.exposed_with(d) - pre.exposed)
        return pre.path.read_delay(X, a) - d, None
    d, _ = _bracketed_root(residual, 0.0 * hi, hi + 1e-12)
    return xp.maximum(d, 0.0)


def _chunk_step(s: Setup, I, new, chunk, D, c):
    """Mean duration of the steps that carry one prompt's chunks, and their number.

    The ``new`` uncomputed tokens (after ``I - new`` cached ones) are split into equal chunks of
    at most ``chunk`` tokens; each step carries one chunk beside D decode tokens, and the
    prompt's causal attention pairs are shared equally, so chunk costs sum to the whole prefill.
    """
    n = xp.ceil(new / chunk)
    size = new / n
    pairs = (new * (I - new) + new * (new + 1.0) / 2.0) / n
    t = step_ops(s, D + size, D + 1.0 / n, attn_pairs(s, pairs, I, new), D * c,
                 D * c + attn_reads(s, 1.0, I - new), D + size)[2]
    return t, n


def _mixed_step(s: Setup, t, D, lam, I, new, c, max_tokens):
    """Residual of the mean step time t (and the prefill step's ops) under continuous batching.

    Prompts arrive at ``lam``; a step carries a prefill chunk with probability
    f = min(1, lam·t·chunks) and then holds P = max(chunk, lam·new·t) prompt tokens (capped by
    the budget; the ``new`` uncached tokens split into equal chunks, so prompt tokens are
    processed at lam·new per second whatever the chunk count), otherwise only the D decode
    tokens. Mixing the two step kinds, rather than
    spreading prompt tokens evenly over steps, keeps the convexity of the roofline (a decode
    step hides a few prompt tokens under its weight reads; a whole prompt does not).
    """
    budget = xp.maximum(max_tokens - D, 1.0)
    chunks = xp.ceil(new / xp.minimum(new, budget))
    chunk = new / chunks  # equal chunks, as _chunk_step: chunks x chunk = the prompt's tokens
    f = xp.minimum(lam * t * chunks, 1.0)
    P = xp.minimum(xp.maximum(chunk, lam * new * t), budget)
    ops, _, t_p = step_ops(s, D + P, D + P / new, attn_pairs(s, P * (I - new / 2.0), I, new),
                           D * c, D * c, D + P)
    t_d = step_ops(s, D, D, 0.0, D * c, D * c, D)[2]
    return f * t_p + (1.0 - f) * t_d - t, ops


def _tpot_sd(s: Setup, t, t_pf, f, D, c, O, t_d=None):
    """Std. dev. of a request's mean inter-token time: steps are decode-only (t_d; computed
    here when not given) or carry a prefill chunk (t_pf) with frequency f; a request averages
    O-1 independent steps."""
    f = xp.minimum(xp.maximum(f, 0.0), 1.0)
    if t_d is None:
        t_d = step_ops(s, D, D, 0.0, D * c, D * c, D)[2]
    var = f * (1.0 - f) * (t_pf - t_d) ** 2
    return (var / xp.maximum(O - 1.0, 1.0)) ** 0.5


def _open_loop(s: Setup, I, O, lam, ca2, dp, bmax, max_tokens, req_s, pre: "_Prefix", cs2=0.0,
               lam_sat=np.inf, steer=0.0, smooth=None):
    """Open-loop arrivals at ``lam`` per replica (inter-arrival SCV ``ca2``), continuous batching.

    Step time t solves t = f·t_busy + (1 − f)·t_decode with D = λ(O−1)t decoding (Little's law)
    and prompts sharing busy steps' token budget (:mod:`kvmodel.instance._openloop`). A prompt
    waits for the token-budget prefill server (G/G/1 on token work), then for a KV slot (a
    diffusion of the slot occupancy, c = largest batch, :func:`_ol.slot_queue`; both saturate
    at ``lam_sat``, the throughput-max rate per replica), then runs its own chunks in busy
    steps. ``pre`` may be a
    :class:`~kvmodel.instance._mixture.PrefixMix` of hit classes (their mixture's moments feed
    the queues; each class keeps its own service for the TTFT percentiles).
    """
    new, mix = pre.new_tokens(I), isinstance(pre, PrefixMix)
    cs2 = pre.new_scv(I, cs2) if mix else cs2
    c = _kv_per_seq(s.model, I + O / 2.0, s.tp, s.kv_B)
    Ia = pre.attn_len(I) if mix else I  # attention length of the mixture's prompt tokens
    cls = pre.uncached() if mix else None  # classes' uncached lengths: the expected chunks
    t, ops, D, (f, t_p, t_d, P) = _open_step(s, lam, Ia, O, new, c, bmax, max_tokens, cls)
    R, own, S, (rho, w_pf, p_pf), spread = _open_split(s, (t, D, lam, Ia, new, c, max_tokens),
                                                       (ca2, cs2), (t_p, t_d, P), pre, cls)
    T1, T2 = _ol.step_response(s, t, D, lam, Ia, new, c, max_tokens, cls)
    held = _best.load_hold(pre, lam, t)  # seconds a load holds its request's slot
    cr2 = pre.reserve_scv(O) if mix else 0.0  # the KV slots count reserved tokens
    burst, behind = _tl.router_terms(smooth)
    tpot, var_D, kA, lb = _seen_tpot(t, (T1, T2), D, lam, O, bmax, (f, t_p, t_d),
                                     (rho, w_pf, S, held), lam_sat, ca2, cr2,
                                     (behind, None if smooth is None else (lam, ca2)))
    mom = None
    if mix and pre.sized:  # the classes' KV read lengthens the steps they decode in
        parts = (f, t_p, t_d, t, kA)
        hold = _slot_hold(w_pf, S, O, tpot, held)
        tpot = tpot + _class_tpot(s, pre, own, (S, O, hold, D, bmax, tpot),
                                  parts, xp.minimum(lam, 4.0 * bmax / hold), steer)
        mom = _slot_classes(s, pre, own, (S, O, _slot_hold(w_pf, S, O, tpot, held), tpot), parts,
                            lam, ca2, steer)
    q = _open_waits(rho, w_pf, S, O, t, lam, lam_sat, bmax, ca2, T1, kA, tpot, p_pf, held, cr2,
                    (mom, steer))
    common = req_s + R
    ttft = common + pre.exposed + S + q["wait"]
    extra, stable, why = {}, q["stable"], _why_unstable(rho, q["offered"], bmax)
    if mix:
        extra.update(classes=pre.offsets(0.0, own), ttft_common=common)
    if not pre.none:  # loads queue on the path beside every request's save (M/G/1-PS)
        seg, _ = pre.path.over(lam)
        stable = stable & (seg == 0)
        why = xp.where((why == 0) & (seg > 0), 2 + seg, why)
        delay, p_path = pre.path.delay(xp.where(seg == 0, lam, 0.0), None)
        extra.update(_path_outputs(pre, lam, delay, p_path), path_names=pre.path.names)
        ops = dict(ops, kv_save=pre.save_op())
        ttft = ttft + extra["path_wait"] + ops["kv_save"]["time_s"]
        if mix:
            extra.update(classes=pre.offsets(delay, own))
    # a request's mean inter-token time: the step times' noise over its O−1 steps, which
    # are AR(1) under the step-to-step law (a long step lets more prompts into the next;
    # _tpot_law.steps_factor), plus the slow drift of D (it changes over about O steps, so a
    # request's window sees one level of it)
    # step's, slow, lag-one, a prompt's chunks (:func:`_tl.request_var`'s pulses)
    parts = (spread[2], T1 * T1 * var_D, _ol.step_memory(t, t_d), (burst, spread[3], lb))
    sd = _tl.request_var(parts[0], parts[1], O, parts[2]) ** 0.5
    return dict(bd={"step": ops}, ttft=ttft, tpot=tpot, e2e=ttft + (O - 1.0) * tpot,
                tok=dp * lam * O, B=lam * (O - 1.0) * tpot + lam * S, wait=q["wait"],
                p_wait=q["p_wait"], spread=spread[0], spread_p=spread[1], residual=R,
                tpot_sd=sd, tpot_parts=parts, stable=stable, why=why, wait_parts=q["parts"],
                **extra)


def _open_split(s: Setup, state, scv, parts, pre, cls):
    """The TTFT split of the open loop (:mod:`kvmodel.instance._openloop`, *Split*): the
    running step's residual R, the own service (per class, and its mean), the prefill server
    (ρ, carry wait, its probability) and the step position's spread: its mean and the
    probability of its 0-or-exponential law (:func:`~kvmodel.instance._openloop.step_position`).
    ``state``: (t, D, λ, attention length, uncached tokens, KV per sequence, max_num_tokens);
    ``scv``: (c_a², c_s²); ``parts``: (t_busy, t_decode, P) of
    :func:`~kvmodel.instance._openloop.step_parts`. The spread comes with the step time's
    variance (:func:`~kvmodel.instance._openloop.step_spread`)."""
    (t, D, lam, Ia, new, c, max_tokens), (ca2, cs2), (t_p, t_d, P) = state, scv, parts
    budget = xp.maximum(max_tokens - D, 1.0)
    chunks = _ol.chunk_count(new, budget, cls)
    mix = cls is not None
    pair_s = _ol.pair_seconds(s, t_p, D, P, Ia, new, c) if mix else None
    cs2_s = pre.seconds_scv(cs2, (t_p - t_d) / P, pair_s) if mix else cs2  # service seconds
    rho, w_tok, t_full = _ol.token_server(s, lam, D, Ia, new, c, max_tokens, ca2, cs2_s)
    a, share = new * (t_p - t_d) / P, (t - t_d) / xp.maximum(t_p - t_d, 1e-300)  # busy share
    var_t = _ol.step_spread(lam, t, t_d, t_full, a, chunks, ca2, cs2_s, share)
    R = _ol.step_residual(t, var_t)
    # long prompts fill whole steps (one prompt length: one class, as a single class is)
    R = _ol.chunk_residual(lam, t_full, budget, cls if mix else
                           (np.ones(1), np.asarray(new, float)[..., None]), R)
    mates = _ol.step_mates(lam, new, R)
    w_pf, p_pf, p_c = _ol.overflow_wait(lam, new, t, var_t, budget, t_full, ca2, cs2,
                                        (rho, w_tok, R * (2.0 - t_d / t)))
    # behind a carry a one-chunk prompt's own step is a full one; the carry's wait ends, on
    # average, half way into it (the fluid drains up to its first token): the other half in S
    # (a longer prompt's own chunks fill its steps already: own_service's mates, capped)
    full = mates + 0.5 * xp.where(rho < 1.0, p_c, 0.0) * xp.maximum(budget - mates, 0.0)

    def S_of(n):  # a prompt's own chunks, the first with the prompts that came during R
        return _ol.own_service(n, t_p, t_d, P, budget, xp.where(n <= budget, full, mates))
    own = pre.own(S_of, pair_s) if mix else None
    S = sum(pi * o for pi, o in zip(pre.probs, own)) if mix else S_of(new)
    spread = R + (t_p - t_d) / P * xp.minimum(mates, budget - new / chunks)
    return R, own, S, (rho, w_pf, p_pf), (spread, _ol.step_position(lam, t, t_d, t_full, a,
                                                                      var_t, share, ca2), var_t,
                                           chunks)


def _seen_tpot(t, slopes, D, lam, O, bmax, parts, prefill, lam_sat, ca2, cr2=0.0,
               router=(1.0, None)):
    """(TPOT a request sees, Var(D), the cluster gain κ_A, the left-behind law of the TPOT
    mixture or None): the D-weighted step under the
    fluctuations of D (:func:`kvmodel.instance._openloop.fluctuation`) plus the prefill left
    behind a request's first token (:func:`~kvmodel.instance._openloop.left_behind`), whose
    burst share excludes the requests the KV-slot gate admits one by one. ``slopes``: (T',
    T''); ``parts``: (f, t_busy, t_decode); ``prefill``: (ρ, prefill wait, own service,
    the seconds a prefix load holds the slot); ``cr2``: the reservations' SCV; ``router``:
    (the share of the left-behind prefill the router leaves in place, :func:`_tl.router_terms`;
    (λ, c_a²) of its arrivals, :func:`_ol.renewal_share`, or None: a lone instance, Poisson,
    no left-behind law: the mixture keeps one mean)."""
    (T1, T2), (f, t_p, t_d), (rho, w_pf, S, held) = slopes, parts, prefill
    kA = _ol.cluster_gain(f, t_p, t_d, t)
    _, tpot, var_D = _ol.fluctuation(t, T1, T2, D, lam, O, bmax, kA)
    p_slot = _ol.slot_queue(lam, _slot_hold(w_pf, S, O, tpot, held), t, T1, O, bmax, lam_sat, ca2,
                            kA, cr2)[1]  # the slot gate's share; then the hold with the seen TPOT
    behind, renewal = router
    w = xp.where(rho < 1.0, w_pf, 0.0)
    tpot = tpot + behind * _ol.left_behind(f, t_p, t_d, t, w, S, O, p_slot, kA, renewal)
    if renewal is None:
        return tpot, var_D, kA, None
    B, M = _ol.behind_steps(f, t_p, t, w, S, p_slot, kA, renewal)
    return tpot, var_D, kA, (behind * B, behind * M, t_p - t_d, O)


def _slot_hold(w_pf, S, O, tpot, held=0.0):
    """Mean seconds a KV slot is held: from admission to the last token, the prefix load's
    ``held`` seconds (wait + transfer, to the step its request joins) included."""
    return w_pf + held + S + (O - 1.0) * tpot


def _slot_classes(s: Setup, pre: PrefixMix, own, means, parts, lam, ca2, steer=0.0):
    """The KV-slot occupancy moments of length classes
    (:func:`kvmodel.instance._openloop.slot_moments`): each class's hold
    (:func:`~kvmodel.instance._openloop.class_holds`) from its own service ``own``, the
    left-behind prefill's amplification and its own KV read per decode step, a token of KV
    (``kv_token_bytes_rank``) at the roofline's achieved HBM bandwidth; the token-weighted
    feedback gain κ = λ(O − 1)·(read seconds per token)·c̄, returned after the moments (the
    slot law's drain at a full pool). ``means``: (S, O, mean hold);
    ``parts``: (f, t_busy, t_decode, t, κ_A)."""
    (S, O, hold, tpot), (_, t_p, t_d, _, kA) = means, parts
    read_s, amp, c_k, c = _class_reads(s, pre, O, parts)
    holds = _ol.class_holds(hold, own, S, O, amp, read_s, c_k, c, pre.outs, tpot)
    kappa = lam * (O - 1.0) * read_s * c
    shots = [o * (1.0 - t_d / t_p) / (1.0 - kA) for o in own]  # busy seconds it and its
    mom = _ol.slot_moments(pre.probs, pre.reserved(O), holds, lam, ca2, kappa,
                           steer, shots)  # cluster (κ_A) add to every hold in the pool
    return (*mom, kappa)  # the feedback also lengthens a full pool's holds (its drain)


def _class_tpot(s: Setup, pre: PrefixMix, own, means, parts, lam, steer=0.0):
    """TPOT a request of length classes sees above the count law's (module docstring of
    :mod:`kvmodel.instance._openloop`, *KV-slot occupancy*): every step reads the decoders'
    hold-weighted context, D·(E[h·c]/E[h] − c̄) tokens more than D·c̄, and a request sees the
    shots' context swing (:func:`~kvmodel.instance._openloop.seen_context`), at most the
    pool's room above its mean occupancy (bmax − λ·E[r·h]/r̄ mean reservations of c̄ context
    each, at the holds with the hold-weighted read: a full pool does not swing, as Var(D) <=
    (bmax − D)² in the count law, so the pool's edge is that of the weighted read), each token
    at the roofline's achieved HBM bandwidth. The class holds are those of the count law's TPOT: one
    step of the fixed point hold ↔ step time (the extra lengthens every hold; the moments are
    then taken at the longer holds). ``means``: (S, O, mean hold, D, bmax); ``parts`` as
    :func:`_slot_classes`; ``lam`` is the caller's, at most 4·bmax/h̄ (beyond it the pool
    holds X̄ = λ·h̄·w1 >= bmax for any w1 >= 1/4: unstable and reported so; the cap keeps
    the λ² of the shots finite at absurd rates); a load-aware router takes back its
    ``steer`` share of the swing, as of the occupancy's (:func:`_slot_classes`)."""
    (S, O, hold, D, bmax, tpot), (_, t_p, t_d, _, kA) = means, parts
    read_s, amp, c_k, c = _class_reads(s, pre, O, parts)
    holds = _ol.class_holds(hold, own, S, O, amp, read_s, c_k, c, pre.outs, tpot)
    shots = [o * (1.0 - t_d / t_p) / (1.0 - kA) for o in own]
    weighted, seen = _ol.seen_context(pre.probs, c_k, holds, lam, lam * (O - 1.0) * read_s * c,
                                      shots)
    r_k = pre.reserved(O)  # reserved tokens: the swing fits in the pool's room
    r = sum(p * x for p, x in zip(pre.probs, r_k))
    dh = [(o - 1.0) * read_s * D * weighted for o in pre.outputs(O)]  # every hold, at the
    held = lam * sum(p * x * (h + d) for p, x, h, d  # hold-weighted read
                     in zip(pre.probs, r_k, holds, dh)) / r
    seen = xp.minimum(seen * (1.0 - steer), xp.maximum(bmax - held, 0.0) * c)
    return read_s * (D * weighted + seen)


def _class_reads(s: Setup, pre: PrefixMix, O, parts):
    """(seconds per KV token read per step, the left-behind prefill's amplification of a
    class's own service, the classes' mean contexts c_k = I_k + O_k/2, their mean c̄ over
    the decode steps: each class weighted by its π_k·(O_k − 1) steps, so that the classes'
    decode seconds Σ π_k·(O_k − 1)·(TPOT + read·(c_k − c̄)) stay the mean request's; at one
    output the probabilities' mean)."""
    f, t_p, t_d, t, kA = parts
    read_s = s.model.kv_token_bytes_rank(s.kv_B, s.tp) / s.hbm_Bps
    amp = 1.0 + f * t_p / t * (1.0 - t_d / t_p) / (1.0 - kA)
    if pre.outs is None:
        c_k, _ = _decode_contexts(pre.probs, pre.lens, [O] * len(pre.lens))
        return read_s, amp, c_k, sum(p * x for p, x in zip(pre.probs, c_k))
    c_k, steps = _decode_contexts(pre.probs, pre.lens, pre.outs)
    return read_s, amp, c_k, _decode_mean(steps, c_k)


def _decode_contexts(probs, lens, outs) -> tuple[list, list]:
    """The classes' mean contexts over their decode steps, ``c_k = I_k + O_k/2`` (the KV a
    class's sequence holds halfway through its output), and each class's weight in a mean
    over the decode steps, ``π_k·(O_k − 1)`` (its share of the batch's decoders)."""
    return ([L + o / 2.0 for L, o in zip(lens, outs)],
            [p * (o - 1.0) for p, o in zip(probs, outs)])


def _decode_mean(weights, xs):
    """Σ w_k·x_k / Σ w_k (0 where no class decodes)."""
    return sum(w * x for w, x in zip(weights, xs)) / xp.maximum(sum(weights), 1e-300)


def _open_waits(rho, w_pf, S, O, t, lam, lam_sat, bmax, ca2, T1, kA, tpot, p_pf,
                held=0.0, cr2=0.0, classes=(None, 0.0)) -> dict:
    """Prefill carry-over wait (``w_pf``, probability ``p_pf``) plus KV-slot wait
    (:func:`kvmodel.instance._openloop.slot_queue`; the slot hold includes a prefix load's
    ``held`` seconds; ``cr2`` the reservations' SCV), the probability of waiting, stability
    and the slots' mean occupancy; ``parts``: (prefill wait, its probability, the token
    server's utilisation ``rho``, the slot wait's probability), the two waits a router's law
    reads each at its own server's utilisation
    (:func:`kvmodel.cluster._routing_queue.routed_law`)."""
    hold = _slot_hold(w_pf, S, O, tpot, held)
    w_slot, p_slot, offered = _ol.slot_queue(lam, hold, t, T1, O, bmax, lam_sat, ca2, kA, cr2,
                                             *classes)
    stable = (rho < 1.0) & (offered < bmax)
    p_pf = xp.where(stable, p_pf, 0.5)
    wait, p_wait = sum_wait_law(w_pf, p_pf, w_slot, p_slot)
    return dict(wait=wait, stable=stable, offered=offered, p_wait=p_wait,
                parts=(w_pf, p_pf, rho, p_slot))


def _open_step(s: Setup, lam, I, O, new, c, bmax, max_tokens, cls=None):
    """Mean step time t of the open loop, the busy step's ops, D = λ(O−1)t and the step's
    parts (f, t_busy, t_decode, P) at t (:func:`kvmodel.instance._openloop.step_parts`, from
    the root's last residual; ``cls``: the classes' uncached lengths,
    :func:`kvmodel.instance._openloop.chunk_count`)."""
    def residual(t):
        D = xp.minimum(lam * (O - 1.0) * t, bmax)
        g, _, parts = _ol.busy_parts(s, t, D, lam, I, new, c, max_tokens, cls, with_ops=False)
        return g, parts

    hi = 1.01 * step_time(s, bmax + max_tokens, bmax, max_tokens * I, bmax * c, bmax * c,
                          bmax + max_tokens)
    t, parts = _bracketed_root(residual, 1e-9 + 0.0 * I, hi)
    D = xp.minimum(lam * (O - 1.0) * t, bmax)
    return t, _ol.busy_ops(s, D, parts[3], I, new, c)[0], D, parts


def _why_unstable(rho, offered, bmax):
    """Index of the first saturated resource per element: 0 none, 1 prefill server (token
    budget), 2 KV slots (the order of the ``stable`` test in :func:`_open_loop`)."""
    return xp.where(rho >= 1.0, 1, xp.where(offered >= bmax, 2, 0))


_UNSTABLE = ("", "the token-budget prefill server is saturated (prompt tokens arrive faster "
             "than the budget max_num_tokens left by the decoders serves them)",
             "the KV cache holds too few sequences for the offered load")


def _percentiles(r: dict, O, law=None) -> dict:
    """p50/p90/p99 of TTFT, TPOT, E2E from a mode's means, wait law and TPOT spread; with an
    output-length ``law`` (open loop) TPOT's are the mixture's over the requests' own output
    lengths (:mod:`kvmodel.instance._tpot_law`, with the router's prompt pulses; E2E keeps the
    mean length's)."""
    out = {}
    step_var, slow_var, m, pulses = r.get("tpot_parts", (None,) * 4)
    mix_t = (_tl.tpot_quantiles(r["tpot"], step_var, slow_var, law, QUANTILES, m, pulses)
             if law is not None and m is not None else None)
    wait, p_wait, sd = r.get("wait", 0.0), r.get("p_wait", 0.0), r.get("tpot_sd", 0.0)
    path, p_path = r.get("path_wait", 0.0), r.get("path_p", 0.0)
    spread = r.get("spread", 0.0)  # the step an arrival lands in and its mates: 0 or exp.
    base = r["ttft"] - wait - path - spread
    if "spread" in r:
        wait, p_wait = sum_wait_law(wait, p_wait, spread, r.get("spread_p", 1.0))
    mix_q = (mixture_quantiles(wait, p_wait, r["classes"], QUANTILES) if "classes" in r
             else None)
    for i, q in enumerate(QUANTILES):
        tag = f"p{int(round(q * 100))}"
        if mix_q is not None:  # hit classes: each its own service after the common wait
            ttft_q = r["ttft_common"] - spread + mix_q[i]
        else:
            ttft_q = base + wait_quantile(wait, p_wait, q)
        if "classes" not in r and xp.any_true(path > 0):  # path delay: 0 if idle, else exp.
            ttft_q = ttft_q + wait_quantile(path, p_path, q)
        tpot_q = r["tpot"] + normal_quantile(q) * sd
        out[f"ttft_{tag}_s"] = ttft_q
        out[f"tpot_{tag}_s"] = tpot_q if mix_t is None else mix_t[i]
        out[f"e2e_{tag}_s"] = ttft_q + (O - 1.0) * tpot_q
    return out


# ---- public -------------------------------------------------------------------------------------
_MODE_ARG = {"rate": "request_rate", "concurrency": "concurrency", "batch": "batch",
             "max": "batch"}


def _mode(batch: Any, concurrency: Any, request_rate: Any = None) -> tuple[str, Any]:
    if request_rate is not None:
        if concurrency is not None or not (isinstance(batch, (int, float)) and batch == 1):
            raise ValueError("give one of batch, concurrency or request_rate")
        return "rate", _num("request_rate", request_rate, integer=False, minimum=1e-12)
    if concurrency is not None:
        if not (isinstance(batch, (int, float)) and batch == 1):
            raise ValueError("give either batch or concurrency, not both")
        return "concurrency", _num("concurrency", concurrency, maximum=MAX_COUNT)
    if isinstance(batch, str):
        if batch != "max":
            raise ValueError(f"batch={batch!r}: expected a number or 'max'")
        return "max", None
    return "batch", _num("batch", batch, maximum=MAX_COUNT)


def _resolve_tier(s: Setup, tier, node) -> Tier | None:
    """A tier name of the node template or a Tier; None for HBM."""
    if isinstance(tier, str):
        if tier not in TIER_KINDS:
            raise ValueError(f"cache_tier={tier!r}; allowed: {TIER_KINDS}, a Tier, or a list of "
                             "(tier, fraction) pairs")
        name, tier = tier, None if tier == "hbm" else node_tiers(node, s.gpu.key)[tier]
        if tier is not None and tier.capacity_B <= 0:
            raise ValueError(f"cache_tier={name!r}: the node template has no {name} capacity; "
                             f"pass a Tier from kvmodel.node_tiers(..., {name}_B=...)")
        return tier
    if not isinstance(tier, Tier):
        raise ValueError(f"cache_tier must be a tier name, a Tier or (tier, fraction) pairs, "
                         f"got {tier!r}")
    return None if tier.path is None else tier


def _fraction(f):
    """A mix fraction: a Python float, or a float array (fractions may vary per element)."""
    if isinstance(f, (bool, np.bool_)) or f is None:
        raise ValueError(f"cache_tier fraction {f!r}: expected a number in [0, 1]")
    if type(f) in (int, float):
        return float(f)
    arr = np.asarray(f, dtype=float)
    return arr if arr.ndim else float(arr)


def _loader(s: Setup, tier, node, layout, block_tokens, compression, connector="ideal"):
    """tokens -> seconds for one tier, or a mix [(tier, fraction), ...] loaded one after another.

    Fractions may be arrays (broadcasting with the other arguments); each element's fractions
    must be >= 0 and sum to 1. Tiers whose fraction is 0 everywhere are skipped; a zero
    element of an array fraction loads nothing from that tier."""
    mix = tier if isinstance(tier, (list, tuple)) else [(tier, 1.0)]
    parts = [(_resolve_tier(s, t, node), _fraction(f)) for t, f in mix]
    total = sum(f for _, f in parts)
    bad_total = (abs(total - 1.0) > 1e-6) | (total != total)  # NaN fails too
    if any(xp.any_true((f < 0) | (f != f)) for _, f in parts) or xp.any_true(bad_total):
        got = (f"sums from {np.min(total):g} to {np.max(total):g}" if xp.is_array(total)
               else f"{total:g}")
        raise ValueError(f"cache_tier fractions must be >= 0 and sum to 1, got {got}")
    parts = [(t, f) for t, f in parts if t is not None and xp.any_true(f > 0)]

    def load(tok, requests=1.0):
        out = 0.0 * tok
        for t, f in parts:
            out = out + load_seconds(s, t, tok * f, layout, block_tokens, compression,
                                     connector=connector, requests=requests)
        return out
    return load, parts


def _hbm_share(s: Setup, tier, node):
    """Share of a cached prefix that ``cache_tier`` (a name, a Tier or a mix) holds in HBM."""
    mix = tier if isinstance(tier, (list, tuple)) else [(tier, 1.0)]
    return sum(_fraction(f) for t, f in mix if _resolve_tier(s, t, node) is None)


def _held_hbm(s: Setup, classes, P, tier, node):
    """Cached-prefix tokens resident in HBM: the HBM share of ``cached_prefix_len``. With
    ``prefix_classes`` the classes' prefixes live in the caller's own cache partition (the
    cluster's ``hbm_cache_fraction``, which :func:`_cache_partition` takes off the pool), so
    nothing more is taken off here."""
    if classes is not None:
        return 0.0
    return _num("cached_prefix_len", P, minimum=0) * _hbm_share(s, tier, node)


def _prefix_partition(r: _Reasons, s: Setup, kv_cap, max_batch, I, O, mbs, held):
    """Largest batch once the KV of ``held`` cached-prefix tokens sits in HBM: the shared
    prefix is a partition of the KV pool (as ``prefix_cache_blocks`` in :mod:`kvmodel.sim`),
    and every request still reserves its whole I + O tokens beside it."""
    if not xp.any_true(held > 0):
        return max_batch
    r.widen(np.broadcast_shapes(r.shape, np.shape(held)))
    free = kv_cap - _kv_per_seq(s.model, held, s.tp, s.kv_B)
    fit = xp.minimum(xp.floor(xp.maximum(free, 0.0) / _kv_per_seq(s.model, I + O, s.tp, s.kv_B)),
                     mbs)
    r.add((max_batch >= 1) & (fit < 1), "the cached prefix's {:.0f} tokens in HBM leave {:.0f} "
          "KV tokens, less than one request of {:.0f}", held, free, I + O)
    return xp.where(held > 0, fit, max_batch)


def _cache_partition(r: _Reasons, s: Setup, kv_cap, max_batch, I, O, mbs, fraction):
    """Largest batch once a share ``fraction`` of the KV pool is a prefix-cache partition
    (``estimate(hbm_cache_fraction=)``): the requests reserve their whole I + O tokens from
    the other 1 - ``fraction`` of ``kv_cap``. 0 leaves ``max_batch`` as it is."""
    f = _num("hbm_cache_fraction", fraction, integer=False, minimum=0.0, maximum=1.0)
    if not xp.any_true(f > 0):
        return max_batch
    r.widen(np.broadcast_shapes(r.shape, np.shape(f)))
    free = kv_cap * (1.0 - f)
    fit = xp.minimum(xp.floor(free / _kv_per_seq(s.model, I + O, s.tp, s.kv_B)), max_batch)
    r.add((max_batch >= 1) & (fit < 1), "the HBM prefix cache's {:.0%} of the KV pool leaves "
          "{:.0f} KV tokens, less than one request of {:.0f}", f, free, I + O)
    return xp.where(f > 0, fit, max_batch)


def _prefix_args(I, P, policy, layout, block_tokens, compression, save):
    """Validated (P, block_tokens, compression, save) of a cached prefix."""
    if policy not in POLICIES:
        raise ValueError(f"prefix_policy={policy!r}; allowed: {POLICIES}")
    if layout not in LAYOUTS:
        raise ValueError(f"kv_layout={layout!r}; allowed: {LAYOUTS}")
    P = _num("cached_prefix_len", P, minimum=0)
    block_tokens = _num("kv_block_tokens", block_tokens)
    compression = _num("kv_compression", compression, integer=False)
    if xp.any_true(P >= I):
        raise ValueError("cached_prefix_len must be < input_len (at least one prompt token is "
                         "computed to produce the first output token)")
    save = _num("kv_save", save, integer=False, minimum=0.0, maximum=1.0)
    return P, block_tokens, compression, save


def _prefix(s: Setup, I, P, tier, node, policy, layout, block_tokens, compression,
            connector="ideal", save=1.0, stretch=1.0) -> _Prefix:
    """Validate the cached-prefix arguments and build the prefix loader; ``save``: the fraction
    of each prompt's new KV written through to the prefix's tier(s); ``stretch``: the path's
    contention factor a split balances against (:func:`~kvmodel.instance._prefix.prefill_choice`)."""
    P, block_tokens, compression, save = _prefix_args(I, P, policy, layout, block_tokens,
                                                      compression, save)
    load, parts = _loader(s, tier, node, layout, block_tokens, compression, connector)
    if not xp.any_true(P > 0):
        return _Prefix(s, 0.0, None, policy, I)
    return _Prefix(s, P, load, policy, I, overlap_layers(s, layout, connector), parts,
                   kv_bytes_per_token_gpu(s, compression), save, connector, stretch)


def _rows_prefix(s: Setup, I, P, tiers: list, rows: list, node, policy, layout, block_tokens,
                 compression, connector="ideal", save=1.0) -> _Prefix:
    """One prefix of classes stacked on axis 0 (``P``, ``I``: 1-d) whose rows ``rows[g]``
    load from ``tiers[g]`` (rows in none: misses, P = 0): one prefill choice and one path for all of them.
    Each tier's loader sees only its rows' tokens (0 elsewhere, which loads nothing), so a
    row's load, reads and writes are those of its own tier; ``part_group`` / ``row_group``
    say which tier each path part and each row belongs to."""
    P, block_tokens, compression, save = _prefix_args(I, P, policy, layout, block_tokens,
                                                      compression, save)
    masks, loaders, parts, part_group = [], [], [], []
    row_group = np.full(len(P), -1)  # rows of no tier (misses) load nothing
    for g, (tier, ks) in enumerate(zip(tiers, rows)):
        m = np.zeros(len(P))
        m[ks] = 1.0
        row_group[ks] = g
        ld, pts = _loader(s, tier, node, layout, block_tokens, compression, connector)
        if pts:  # an HBM tier loads nothing
            masks.append(m)
            loaders.append(ld)
        parts += [(t, f * m) for t, f in pts]
        part_group += [g] * len(pts)

    def load(tok, requests=1.0):
        out = 0.0 * tok
        for ld, m in zip(loaders, masks):
            out = out + ld(tok * m, requests)
        return out
    pre = _Prefix(s, P, load, policy, I, overlap_layers(s, layout, connector), parts,
                  kv_bytes_per_token_gpu(s, compression), save, connector)
    pre.part_group, pre.row_group = part_group, row_group.tolist()
    return pre


def _checked_classes(classes, mode, P, tier) -> list:
    """``prefix_classes`` validated (:func:`~kvmodel.instance._mixture.check_classes`), in the
    open loop and without a plain cached prefix."""
    if mode != "rate":
        raise ValueError("prefix_classes needs request_rate (the open loop); for batch or "
                         "concurrency give cached_prefix_len and cache_tier")
    if not (isinstance(P, (int, float)) and P == 0) or not (isinstance(tier, str) and tier == "hbm"):
        raise ValueError("give prefix_classes or cached_prefix_len/cache_tier, not both")
    return check_classes(classes)


# prefix mixtures memoised per catalog: a rate sweep or bisection revisits one at once; each
# entry keeps ~150 objects alive, and a few hundred (a search's new configurations) push them
# all into the collector's oldest generation, whose full passes then cost more than the
# rare revisit of an older configuration saves (NSGA-II, 1,000 trials: 15% of builds)
_MIX_MEMO = 16


class _MixShape:
    """What a prefix mixture is built from that does not depend on the classes' probabilities:
    each class's prefix (rows of stacked prefixes), the stacks, their order, the prompt lengths,
    and the stacks' throughput-max per queue (:func:`_throughput_max_mix`)."""

    def __init__(self, prefixes, stacks, order, lens, lengths, policy, outs=None):
        self.prefixes, self.stacks, self.order, self.lens = prefixes, stacks, order, lens
        self.outs = outs  # the classes' own output lengths (None: none gave one)
        self.lengths, self.policy, self.saturation = lengths, policy, {}
        self._last: tuple | None = None  # (probabilities' key, mixture) of the last call

    def mix(self, parts) -> PrefixMix:
        """The mixture of these prefixes with the probabilities of ``parts`` (the classes);
        the last one again for the same probabilities (a rate sweep: its per-class caches)."""
        probs = [c[0] for c in parts]
        key = None  # (array probabilities: none)
        if all(type(p) is float for p in probs):
            key = tuple([p if p else repr(p) for p in probs])  # (0.0 and -0.0 apart)
            if self._last is not None and self._last[0] == key:
                self._last[1].seconds = self.lengths  # (a spread's caller sets it again)
                return self._last[1]
        mix = PrefixMix(probs, self.prefixes, self.lens, self.lengths, self.outs)
        mix.stacks, mix.order, mix.policy, mix.shape = self.stacks, self.order, self.policy, self
        if key is not None:
            self._last = (key, mix)
        return mix


def _prefix_mix(s: Setup, I, classes, mode, P, tier, pkw) -> PrefixMix:
    """Validate ``prefix_classes`` and build one prefix per class (see :func:`estimate`).
    Scalar classes are stacked on a leading axis and read back row by row, misses and hits of
    every tier as one prefix (one prefill choice, one loader per tier, one path:
    :func:`_rows_prefix`). Nothing here depends on the request rate, nor the prefixes on the
    classes' probabilities or their tiers' capacities: with scalar inputs the prefixes are
    memoised in the active catalog (:func:`_mix_key`), so a sweep or bisection of the rate, a
    search revisiting a configuration, or a new one that changes only the hit probabilities
    (a larger DRAM tier) builds them once."""
    parts = _checked_classes(classes, mode, P, tier)
    key, refs = _mix_key(s, I, parts, P, tier, pkw)
    if key is None:
        return _build_mix(s, I, parts, pkw).mix(parts)
    held, shape = current().cached("prefix_mix", key, lambda: (refs, _build_mix(
        s, I, parts, pkw)), maxsize=_MIX_MEMO)
    if len(held) != len(refs) or any(a is not b for a, b in zip(held, refs)):
        shape = _build_mix(s, I, parts, pkw)  # an id of a former object
    return shape.mix(parts)


_PLAIN = (float, int, str, type(None))  # keyed by value as they are


class _Uncached(Exception):
    """An input the prefix-mixture memo does not key (an array)."""


def _tier_atom(t: Tier) -> tuple:
    """A Tier by what the instance model reads of it: kind, device and path (by value, over
    the same link objects: :func:`~kvmodel.instance._prefix.path_token`), not its capacity or
    price (a new configuration's larger DRAM loads the same way)."""
    if t.path is None:
        return ("tier", t.kind, t.device, None)
    tok = path_token(t.path)
    if tok is None:  # an array in the path
        raise _Uncached
    return ("tier", t.kind, t.device, tok)


def _mix_key(s: Setup, I, parts, P, tier, pkw) -> tuple:
    """(key, objects) of a prefix mixture's inputs but the classes' probabilities: the setup
    by :func:`~kvmodel.instance._roofline.setup_key`, numbers and strings by value, Tiers by
    :func:`_tier_atom`, other objects (specs, connector) by identity, with the objects
    themselves kept beside the memo entry so that a recycled id is recognised; a class's
    tier object also by its first class (the classes' grouping); (None, None) where an
    input holds an array."""
    refs: list = []
    tiers: dict = {}  # id -> key of the Tiers seen (held by ``parts`` meanwhile)

    def atom(v):
        if type(v) in _PLAIN:  # the common case first (not bool: type, not isinstance)
            return v
        if type(v) is Tier:  # (a class's tier: once per object)
            got = tiers.get(id(v))
            if got is None:
                got = tiers[id(v)] = _tier_atom(v)
            return got
        if isinstance(v, (bool, np.bool_)):  # not equal to 1 / 0 here (validation differs)
            return ("bool", bool(v))
        if v is None or isinstance(v, (int, float, str, np.generic)):
            return v
        if isinstance(v, (list, tuple)):  # tier mixes (their plain items inline)
            return tuple([x if type(x) in _PLAIN else atom(x) for x in v])
        if isinstance(v, (np.ndarray, dict, set)):
            raise _Uncached
        refs.append(v)
        return ("id", id(v))
    try:
        if any(type(c[0]) is not float for c in parts):  # array probabilities
            raise _Uncached
        first: dict = {}  # a tier object's first class (classes group by tier identity)
        cls = tuple((atom(c[1]), atom(c[2]), atom(c[3]), c[4],
                     None if isinstance(c[2], str) else first.setdefault(id(c[2]), k))
                    for k, c in enumerate(parts))
        tok = setup_key(s)
        if tok is None:
            raise _Uncached
        key = (tok, atom(I), cls, atom(P), atom(tier), atom(pkw))
    except _Uncached:
        return None, None
    return key, tuple(refs)


def _build_mix(s: Setup, I, parts, pkw) -> _MixShape:
    """:func:`_prefix_mix`'s prefixes without the memo (``parts``: the validated classes)."""
    lens = [I if c[3] is None else c[3] for c in parts]
    groups: dict = {}
    for k, c in enumerate(parts):
        miss = not xp.is_array(c[1]) and c[1] == 0  # misses never share a hit's stack
        groups.setdefault((c[2] if isinstance(c[2], str) else id(c[2]), miss), []).append(k)
    order = [k for ks in groups.values() for k in ks]  # the groups' order (harmonic sums)
    prefixes, stacks = [None] * len(parts), []
    scalar = not xp.is_array(*[c[1] for c in parts], *lens)
    if scalar and len(parts) > 1 and any(not miss for _, miss in groups):
        _stack_all(s, parts, lens, groups, pkw, prefixes, stacks)
        groups = {}
    for ks in groups.values():
        if len(ks) == 1 or xp.is_array(*[parts[k][1] for k in ks], *[lens[k] for k in ks]):
            for k in ks:  # arrays: per class (a row axis would not align with the others)
                prefixes[k] = _prefix(s, lens[k], parts[k][1], parts[k][2], *pkw)
                stacks.append((prefixes[k], [k], lens[k]))
            continue
        Ps = np.array([float(parts[k][1]) for k in ks] + [float(lens[k]) for k in ks])
        g = _prefix(s, Ps[len(ks):], Ps[:len(ks)], parts[ks[0]][2], *pkw)
        g.flat = _flat(s, [parts[k] for k in ks], pkw)
        for j, k in enumerate(ks):
            prefixes[k] = PrefixRow(g, j)
        stacks.append((g, ks, Ps[len(ks):]))
    outs = [c[4] for c in parts] if any(c[4] is not None for c in parts) else None
    return _MixShape(prefixes, stacks, order, lens, any(c[3] is not None for c in parts), pkw[1],
                     outs)


def _flat(s: Setup, parts, pkw) -> bool:
    """Whether a stack of the scalar classes ``parts`` holds no array but its rows: a setup,
    tiers' paths and prefix arguments of numbers alone (:func:`_stacks_served` may then serve
    it on the distinct largest batches of a configuration axis)."""
    if setup_key(s) is None or xp.is_array(*[v for v in pkw if isinstance(v, (np.ndarray,
                                                                              float, int))]):
        return False
    for c in parts:
        for t in c[2] if isinstance(c[2], (list, tuple)) else [c[2]]:
            if type(t) is Tier and t.path is not None and path_token(t.path) is None:
                return False
    return True


def _stack_all(s: Setup, parts, lens, groups: dict, pkw, prefixes: list, stacks: list) -> None:
    """Scalar classes (``groups``: class indices per (tier, miss)) as one
    :func:`_rows_prefix`: the hits load from their tier, the misses (0 tokens) from none;
    its rows go to ``prefixes``, the stack to ``stacks``."""
    ks = [k for g in groups.values() for k in g]
    row = {k: j for j, k in enumerate(ks)}
    hits = [(parts[g[0]][2], [row[k] for k in g]) for (_, miss), g in groups.items() if not miss]
    for (_, miss), g in groups.items():
        if miss:  # a miss loads nothing, but its tier must still be a valid one
            _loader(s, parts[g[0]][2], pkw[0], *pkw[2:6])
    Ls = np.array([float(lens[k]) for k in ks])
    stacked = _rows_prefix(s, Ls, np.array([float(parts[k][1]) for k in ks]),
                           [t for t, _ in hits], [r for _, r in hits], *pkw)
    stacked.flat = _flat(s, parts, pkw)
    for j, k in enumerate(ks):
        prefixes[k] = PrefixRow(stacked, j)
    stacks.append((stacked, ks, Ls))


def _spread_mix(s: Setup, I, cv, classes, P, tier, pkw) -> PrefixMix:
    """``length_cv`` > 0 in the open loop: each hit class (or the one prefix) crossed with the
    lognormal's quantile bands (:func:`~kvmodel.instance._mixture.length_bands`), a band's
    prompt ``I·m_b`` and its cached prefix scaled alike (``floor(P·m_b)``: a hit covers the
    same share of every prompt). Classes that already carry lengths take no length_cv."""
    base = ([(1.0, P, tier, None, None)] if classes is None
            else _checked_classes(classes, "rate", P, tier))
    if any(c[3] is not None for c in base):
        raise ValueError("length_cv must be 0 when prefix_classes carry their own input_len "
                         "(the classes already hold the length spread)")
    if classes is None:  # the plain prefix's own validation first (tier, policy, P < I)
        base = [(1.0, _prefix(s, I, P, tier, *pkw).P, tier, None, None)]
    crossed = [(c[0] * pb, xp.floor(c[1] * mb), c[2], xp.maximum(I * mb, 1.0), c[4])
               for c in base for pb, mb in length_bands(cv)]
    return _prefix_mix(s, I, crossed, "rate", 0, "hbm", pkw)


def _throughput_max_mix(s: Setup, I, O, dp, fits, mnt, req_s, mix: PrefixMix) -> dict:
    """Throughput-max of a mixture of hit classes: one saturated batch of the mixture
    (:func:`_mixed_batch`), each request taking its class's share of the engine's time in it,
    so the request rates combine harmonically. The stacks' own throughput-max is kept on the
    mixture's prefixes for scalar arguments (a memoised mixture is reused at every request
    rate, and at every hit probability where the classes are of one size)."""
    bmax, ctx = _mixed_batch(s, O, fits, mnt, mix)
    key = (I, O, dp, fits, mnt, req_s)
    if xp.is_array(*key, bmax, ctx):
        return _mix_saturation(mix, _stacks_served(s, I, O, dp, bmax, mnt, req_s, mix, ctx))
    memo = mix.shape.saturation
    key = key if ctx is None else key + (bmax, ctx)
    if key not in memo:
        if len(memo) >= _SAT_MEMO:  # (a search's hit probabilities move a sized batch)
            memo.clear()
        memo[key] = _stacks_served(s, I, O, dp, bmax, mnt, req_s, mix, ctx)
    return _mix_saturation(mix, memo[key])


_SAT_MEMO = 64  # saturations kept per mixture shape


def _mixed_batch(s: Setup, O, fits, mnt, mix: PrefixMix) -> tuple:
    """(batch, decoders' KV per sequence) of a mixture's one saturated batch; ``(fits,
    None)`` for classes of one size (each class then as the estimate's request, bit for bit).

    The engine admits a request when the pool can reserve its whole prompt + output
    (:mod:`kvmodel.sim`, TensorRT-LLM's guaranteed-no-evict capacity scheduler), so a full
    pool of ``fits`` mean reservations r̄ holds requests in proportion to how long they stay:
    Little on tokens, N·E[r·h]/E[h] = fits·r̄, N = fits/w1 with w1 = E[r·h]/(r̄·E[h]) (never
    above ``fits``: w1 < 1, short requests holding longest, is taken as 1, since ``fits`` may
    be max_batch_size). A request holds its slot for its O_k − 1 decode steps and its
    ceil(I_k / budget) prompt chunks, steps that the whole batch shares (the whole prompt's:
    a hit saves a few chunks of its ~O_k steps, and a batch of the classes' sizes alone,
    :func:`_size_shares`, is one for every hit probability). Every step carries
    the batch's decoders at the mixture's context, each class's mean I_k + O_k/2 weighted by
    its π_k·(O_k − 1) decode steps (where the step is linear in that context, the classes
    at their own contexts give the same harmonic mix: tests/instance/test_mixture_outputs.py;
    the roofline's convex parts and the token budget's batch do not). Measured on the Mooncake
    conversation lengths, Llama-3.1-8B H100, a backlog in :mod:`kvmodel.sim`: w1 1.08, the
    pool 0.976 full (fits/cap-in-r̄ 0.974), N 33.6 of fits 36. Where the engine's
    max_batch_size (:attr:`PrefixMix.seq_cap`) sets ``fits``, the pool's own count is not
    known here and the batch stays at ``fits`` (exact where the pool holds w1·fits)."""
    if not mix.sized or len(mix.probs) == 1:
        return fits, None
    cap = mix.seq_cap
    pi, lens, outs = _size_shares(mix.probs, mix.lens, mix.outputs(O))
    budget = xp.maximum(mnt - fits, 1.0)
    steps = [o - 1.0 + xp.ceil(L / xp.minimum(L, budget)) for L, o in zip(lens, outs)]
    res = [L + o for L, o in zip(lens, outs)]
    r_bar = sum(p * r for p, r in zip(pi, res))
    h_bar = sum(p * h for p, h in zip(pi, steps))
    w1 = sum(p * r * h for p, r, h in zip(pi, res, steps)) / (r_bar * h_bar)
    c_k, dec = _decode_contexts(pi, lens, outs)
    ctx = _decode_mean(dec, [_kv_per_seq(s.model, c, s.tp, s.kv_B) for c in c_k])
    pool = fits if cap is None else xp.where(fits < cap, fits, np.inf)  # KV-bound: the pool
    return xp.minimum(fits, pool / xp.maximum(w1, 1.0)), ctx


def _size_shares(probs, lens, outs) -> tuple:
    """(shares, prompts, outputs) of the classes' distinct (prompt, output) sizes: hit classes
    of one length band merged, their summed probability rounded to 12 decimals (the band's
    share whatever the hits, so that another configuration's hit probabilities find the
    memoised throughput-max, :func:`_throughput_max_mix`); arrays as they are."""
    if xp.is_array(*probs, *lens, *outs):
        return probs, lens, outs
    share: dict = {}
    for p, L, o in zip(probs, lens, outs):
        share[(float(L), float(o))] = share.get((float(L), float(o)), 0.0) + p
    sizes = list(share)
    return ([round(share[k], 12) for k in sizes], [k[0] for k in sizes], [k[1] for k in sizes])


def _throughput_max_classes(s: Setup, I, O, dp, fits, mnt, req_s, mix: PrefixMix) -> dict:
    """:func:`_throughput_max_mix` without the memo. With ``prefix_policy="best"`` and
    classes loading over a path, each class serves at the highest of its candidates'
    throughput-max (:func:`~kvmodel.instance._contended.fastest`), the rule of a single
    cached prefix; ``own_share``: the share of it the classes' own (uncontended) choices
    reach, the ones the open loop serves (:func:`_assemble`). The other fields are the first
    stack's own throughput-max."""
    bmax, ctx = _mixed_batch(s, O, fits, mnt, mix)
    return _mix_saturation(mix, _stacks_served(s, I, O, dp, bmax, mnt, req_s, mix, ctx))


def _stacks_served(s: Setup, I, O, dp, fits, mnt, req_s, mix: PrefixMix, ctx=None) -> tuple:
    """(first stack's throughput-max, class -> its own choice's tokens/s, class -> its
    fastest candidate's tokens/s) of :func:`_throughput_max_classes`: no probabilities.
    A stack's classes are rows on its leading axis; beside an array of largest batches
    ``fits`` (configurations whose HBM prefix cache leaves them different pools,
    :func:`_cache_partition`) the batches take a new last axis and the rows come after the
    configurations', so each class reads back as ``[..., j]``: one vectorised call per stack
    (the first stack's other fields keep that row axis; only ``tok`` is combined)."""
    own, fast, first = {}, {}, None
    for p, ks, L in mix.stacks:
        b, c, row = _row_axis(p, len(ks), O, dp, fits, mnt, req_s, ctx)
        res, most = _stack_served(s, L, _row_outputs(mix, ks, L, O), dp, b, mnt, req_s, p,
                                  mix.policy, first is None, b is not fits, c)
        first = res if first is None else first
        tok = xp.maximum(res["tok"], 1e-300)
        for j, k in enumerate(ks):
            own[k] = fast[k] = row(tok, j)
            if most is not None and _row_loads(p, j):  # not a class in HBM, a miss beside tiers
                fast[k] = xp.maximum(row(most, j), 1e-300)
    return first, own, fast


def _row_outputs(mix: PrefixMix, ks: list, L, O):
    """Output tokens of a stack's classes ``ks`` (prompts ``L``): the estimate's ``O``, or
    where the classes carry their own (:attr:`PrefixMix.outs`) each row's, shaped as ``L``
    (a row axis beside the configurations', as the prompts)."""
    if mix.outs is None:
        return O
    if len(ks) == 1:
        return mix.outs[ks[0]]
    return np.array([mix.outs[k] for k in ks], dtype=float).reshape(np.shape(L))


def _row_axis(p: _Prefix, rows: int, O, dp, fits, mnt, req_s, ctx=None) -> tuple:
    """(largest batches to serve a stack of ``rows`` classes at, the decoders' context ``ctx``
    laid out alike, class ``j``'s figure from a result): rows on the leading axis; beside an
    array ``fits`` or ``ctx`` (a mixed batch of array probabilities, :func:`_mixed_batch`),
    the batches on a new last axis, the rows after them; a stack of numbers alone
    (``p.flat``, :func:`_flat`) beside scalar other arguments on the distinct batches only
    (integers: a few hundred among 10^5 configurations), taken back to every configuration."""
    if rows == 1:
        return fits, ctx, lambda v, j: v
    if np.ndim(fits) == 0 and np.ndim(ctx) == 0:
        return fits, ctx, lambda v, j: v[j]
    if not getattr(p, "flat", False) or xp.is_array(O, dp, mnt, req_s, ctx):
        if xp.is_array(ctx):
            shape = np.broadcast_shapes(np.shape(fits), np.shape(ctx))
            fits, ctx = np.broadcast_to(fits, shape), np.expand_dims(ctx, -1)
        return np.expand_dims(fits, -1), ctx, lambda v, j: v[..., j]
    u, inv = np.unique(fits, return_inverse=True)
    shape = np.shape(fits)
    return u[:, None], ctx, lambda v, j: np.broadcast_to(v, (len(u), rows))[:, j][inv].reshape(
        shape)


def _mix_saturation(mix: PrefixMix, served: tuple) -> dict:
    """:func:`_throughput_max_classes` from :func:`_stacks_served`: the classes' tokens/s
    mixed harmonically with their probabilities."""
    first, own, fast = served
    tok = _harmonic(mix, fast)
    return dict(first, tok=tok, own_share=_harmonic(mix, own) / tok)


_STACK_MAX = 256  # elements: above it the candidates are served one call each


def _stack_served(s: Setup, L, O, dp, fits, mnt, req_s, p: _Prefix, policy: str, whole: bool,
                  split: bool = False, ctx=None):
    """(throughput-max of a stack's own choices, the highest of its candidates' tokens/s or
    None where ``best`` does not choose over a path). Under ``best`` the own choice of each
    element is one of the candidates (:data:`_best.POLICIES`), so its result is read from
    theirs (``whole`` False: its ``tok`` alone) rather than served once more: the candidates
    stacked on a leading axis, or one call each for a large stack or where ``split`` (rows
    beside a configuration axis, which a leading candidate axis would not align with)."""
    if not _best.loads_over_path(p, policy):
        return _throughput_max(s, L, O, dp, fits, mnt, req_s, p, False, ctx), None
    if split or max(np.size(x) for x in (L, O, dp, fits, mnt, req_s, p.P)) > _STACK_MAX:
        runs = [_throughput_max(s, L, O, dp, fits, mnt, req_s, p.as_policy(pol), False, ctx)
                for pol in _best.POLICIES]
        most = functools.reduce(xp.maximum, [r["tok"] for r in runs])
        own = _best.pick(p.pick, runs if whole else [{"tok": r["tok"]} for r in runs])
        return own, most
    run = _throughput_max(s, L, O, dp, fits, mnt, req_s, p.as_policies(_best.POLICIES),
                          False, ctx)
    shape, pick = np.shape(run["tok"]), p.pick
    if isinstance(pick, np.ndarray) and pick.ndim == 1 and shape[1:] == pick.shape:
        pick = (pick, np.arange(len(pick)))  # rows: each row's candidate, by index
    own = _own_rows(run, pick, shape) if whole else {"tok": _own_rows(run["tok"], pick, shape)}
    return own, np.max(run["tok"], axis=0)


def _own_rows(run, pick, shape: tuple):
    """The own choices' result from a result of candidates stacked on a leading axis
    (:meth:`_Prefix.as_policies`, ``shape``: its tokens/s'): element by element the candidate
    ``pick`` names; fields of fewer dimensions do not depend on the candidate."""
    if type(run) is dict:
        return {k: _own_rows(v, pick, shape) for k, v in run.items()}
    if type(run) is not np.ndarray or run.ndim != len(shape):
        return run
    if run.shape == shape and type(pick) in (int, tuple):
        return run[pick]
    return np.choose(pick[0] if type(pick) is tuple else pick, run)


def _row_loads(p: _Prefix, j: int) -> bool:
    """Whether row ``j`` of a stacked prefix loads over a path (its tier has path parts,
    :func:`_rows_prefix`); rows of a prefix of one tier all do."""
    return not hasattr(p, "row_group") or p.row_group[j] in p.part_group


def _harmonic(mix: PrefixMix, tok_of: dict):
    """The classes' output tokens/s ``tok_of`` (class index -> tokens/s) mixed by their
    probabilities: each request takes its class's share of the engine's time, O_k/tok_k
    seconds for its O_k output tokens (classes with their own outputs, :attr:`PrefixMix.outs`:
    tokens/s = Σ π_k·O_k / Σ π_k·O_k/tok_k; at one output O it is 1/Σ π_k/tok_k)."""
    inv = 0.0
    if mix.outs is not None:
        outs, mean = mix.outs, 0.0
        for k in mix.order:
            inv, mean = inv + mix.probs[k] * outs[k] / tok_of[k], mean + mix.probs[k] * outs[k]
        return mean / inv
    for k in mix.order:  # summed in the classes' group order
        inv = inv + mix.probs[k] / tok_of[k]
    return 1.0 / inv


def _build_prefix(s: Setup, mode, I, cv, classes, P, tier, pkw):
    """(prefix, length CV left for the queues): lognormal prompt-length classes from the spread
    in an open loop (the classes then carry it), a plain cached prefix, or the caller's classes."""
    if mode == "rate" and xp.any_true(cv > 0):
        mix = _spread_mix(s, I, cv, classes, P, tier, pkw)
        mix.seconds = False  # lognormal bands of a spread: the token SCV (seconds_scv)
        return mix, 0.0
    if classes is None:
        return _prefix(s, I, P, tier, *pkw), cv
    return _prefix_mix(s, I, classes, mode, P, tier, pkw), cv


def _solve(s: Setup, mode, N, I, O, queue, pre, cached, plan):
    """(mode result, saturation rate, extra Estimate fields): the mode's queues on the prefix,
    or on the best of the prefix policies under path contention; the wide-EP summary (of the
    step without speculation) and speculation applied at the solved point."""
    dp, fits, mnt, req_s, ca2, cs2, steer, smooth = queue
    P, tier, pkw = cached

    def serve(p):
        return _serve(s, mode, N, I, O, dp, fits, mnt, req_s, p, ca2, cs2, steer, smooth)

    def build(pol, f=1.0):  # uncontended: from the candidates pre's choice already made
        if type(f) is float and f == 1.0 and not isinstance(pre, PrefixMix):
            return pre.as_policy(pol)
        return _prefix(s, I, P, tier, pkw[0], pol, *pkw[2:], stretch=f)
    if _best.contended(pre, pkw[1], mode, None if N is None else N / dp):
        res, sat, loaded = _best.choose(pre, build, serve, mode, N, O)
    else:
        (res, sat), loaded = serve(pre), pre.loaded
        if not isinstance(pre, PrefixMix) and _best.loads_over_path(pre, pkw[1]):
            sat = _best.fastest([_throughput_max(s, I, O, dp, fits, mnt, req_s, build(pol))
                                 for pol in _best.POLICIES])  # as choose's, in every mode
    extra = {"prefix_loaded_tokens": loaded + 0.0 * I}
    if s.wide is not None:
        bd = res["bd"]
        extra["wide_ep"] = _wide.wide_ep_summary(s.wide, bd["decode"] if "decode" in bd
                                                 else bd["step"])
    if plan is not None:
        res, sat, extra["speculative"] = _spec.apply(plan, s, res, sat, mode, I, O)
    return res, sat, extra


@catalog_arg
def estimate(model: str | ModelSpec, gpu: str | GPUSpec, *, tp: Any = 1, pp: Any = 1, ep: Any = 1,
             num_gpus: Any = None, precision: str = "bf16", kv_precision: str | None = None,
             input_len: Any = 1024, output_len: Any = 128, batch: Any = 1,
             concurrency: Any = None, framework: str | FrameworkSpec = "tensorrt-llm",
             max_num_tokens: Any = None, max_batch_size: Any = None,
             cached_prefix_len: Any = 0, cache_tier: str | Tier = "hbm", node: str | None = None,
             prefix_policy: str = "best", kv_layout: str = "contiguous",
             kv_block_tokens: Any = 256, kv_compression: Any = 1.0,
             connector: str | ConnectorSpec = "ideal",
             request_rate: Any = None, arrival_cv: Any = 1.0, length_cv: Any = 0.0,
             slot_steer: Any = 0.0, hbm_cache_fraction: Any = 0.0,
             kv_save: Any = 1.0, calibration: Mapping[str, float] | None = None,
             prefix_classes: Any = None, attention_dp: Any = False, speculative: Any = None,
             output_law: Any = None, catalog: Any = None, work_smoothing: Any = None) -> Estimate:
    """Estimate TTFT, TPOT, E2E and throughput of one serving instance.

    ``batch``: a number (static batch) or ``"max"`` (continuous batching at the largest
    sustainable batch, chunked prefill). ``concurrency=N``: closed loop with N clients.
    ``num_gpus`` (default ``tp*pp``) may be a multiple of ``tp*pp``: data-parallel replicas.
    ``request_rate=λ``: open-loop arrivals (requests/s for all ``num_gpus``; Poisson, or
    inter-arrival coefficient of variation ``arrival_cv``; request lengths varying with
    coefficient of variation ``length_cv`` around the given means make prefill service times
    vary alike, as in M/G/1 / Kingman; ``kvmodel.Workload(trace).length_cv`` measures it;
    ``slot_steer`` in [0, 1]: the share of the KV-slot occupancy's slow swings a load-aware
    router in front takes back, :func:`kvmodel.instance._openloop.slot_moments`).
    ``hbm_cache_fraction`` in [0, 1): the share of the KV pool kept as a prefix-cache partition
    (a cluster's HBM cache tier, :class:`kvmodel.Cluster`): requests reserve their whole
    I + O from the rest, as :func:`kvmodel.sim.simulate` carves ``prefix_cache_blocks`` out of
    it, so the largest batch shrinks with it (:func:`_cache_partition`).
    Every estimate reports
    ``saturation_request_rate_per_s`` and ``stable``; at or beyond saturation latencies are ``inf``.

    ``cached_prefix_len`` tokens of every prompt are cached in ``cache_tier`` (``hbm``,
    ``dram``, ``cxl``, ``ssd``, ``remote`` of the ``node`` template, a :class:`Tier`, or a mix
    ``[(tier, fraction), ...]`` whose parts load one after another; fractions may be arrays);
    ``prefix_policy`` (best / load / recompute / split) decides how they are used. KV moves in
    transfers of ``kv_block_tokens`` tokens (``kv_layout="per_layer"``: one transfer per layer
    of a block), shrunk by ``kv_compression`` (>= 1), by ``connector`` (``hardware_db/
    connectors.toml``: its per-request and per-descriptor costs and bandwidth share); loading
    hides behind computing only with a per-layer layout and a layer-wise connector. A fraction
    ``kv_save`` of each prompt's new KV (its ``input_len - cached_prefix_len`` tokens) is
    written through to the same tier(s) (0: nothing saved; below 1: an admission filter).
    Loads and saves of all concurrent requests share the path's segments as processor-sharing
    servers (:mod:`kvmodel.instance._paths`): ``path_utilisation`` reports each segment's busy
    fraction, ``breakdown[...]["kv_save"]`` the save (bytes per GPU, and the latency it adds
    when the connector saves synchronously), and an open loop that puts a segment over
    capacity is unstable with a reason naming it. ``prefix_policy="best"`` decides under that
    contention (:mod:`kvmodel.instance._contended`: load, recompute and split each served with
    its own path load, the lowest stable mean TTFT wins, so concurrency can turn a load into a
    split or a recompute); ``prefix_loaded_tokens`` reports the tokens it loads. Its
    ``saturation_request_rate_per_s`` is the highest throughput-max of recompute, load and
    split, in every mode and at every offered rate (``batch="max"`` still reports the
    candidate of lowest TTFT at its own throughput-max).

    ``prefix_classes=[(probability, cached_prefix_len, cache_tier), ...]`` (open loop only,
    instead of ``cached_prefix_len``/``cache_tier``): requests fall into hit classes (length 0:
    a miss), each loading its own prefix; the queues see the mixture's moments and the TTFT
    percentiles the mixture of each class's service after the common wait
    (:mod:`kvmodel.instance._mixture`). ``saturation_request_rate_per_s`` is then the
    harmonic mixture of the classes' throughput-max rates (each request takes its class's
    share of the engine's time; with ``best``, each class's fastest policy, as for one cached
    prefix); each class is served at its uncontended choice, so the estimate is stable only
    below the harmonic mixture of those choices' rates. A class may carry its own prompt length,
    ``(probability, cached_prefix_len, cache_tier, input_len)``: it computes its own chunks
    and attention pairs (long prompts dominate the tail); ``input_len`` then still sets the
    decode context and the KV per sequence, and ``length_cv`` must be 0. In the open loop
    ``length_cv`` > 0 is itself turned into such classes: the lognormal's quantile bands
    (:data:`~kvmodel.instance._mixture.TAIL_BANDS`, finer in the tail), each hit class (or
    the one cached prefix, scaled with the prompt) crossed with them.

    ``attention_dp=True``: DP attention with wide expert parallelism (DeepSeek/Kimi-style
    DP16/EP16): ``ep`` GPUs (default ``num_gpus``; may span nodes of the ``node`` template)
    shard the routed experts, attention runs on ``ep / tp`` data-parallel ranks of ``tp`` GPUs
    (each its own requests and KV; throughput counts every rank), and each MoE layer
    dispatches (fp8 where the GPU has it) and combines over NVLink and the node's NICs
    (:mod:`kvmodel.instance._wide_ep`; ``{"dispatch": p, "combine": p}`` sets the precisions).
    ``wide_ep`` reports the all-to-all. ``speculative``: a
    :class:`~kvmodel.instance._speculative.Speculative` or a mapping ``{"method": "mtp" |
    "draft", "k": drafted tokens, "acceptance": α, "draft_model": name, "mtp_layers": n}``;
    TPOT is scaled by (t_verify + t_draft) / (E[tokens]·t_decode) with E[tokens] =
    (1 - α^(k+1)) / (1 - α), the drafter's KV and weights come out of the KV cache
    (:mod:`kvmodel.instance._speculative`); ``speculative`` reports the factor and its parts.

    ``output_law=(probabilities, output lengths)`` (open loop; lengths >= 2): the requests'
    output lengths, e.g. :func:`kvmodel.instance._tpot_law.output_law` of a trace's; the TPOT
    percentiles are then the mixture over them of each length's per-request law (a request's
    TPOT averages its own O − 1 steps), the means and everything else stay ``output_len``'s.
    ``work_smoothing`` (open loop): None, a lone instance (the law as calibrated); s in [0, 1],
    behind a router that steers share s of the prompt work by the instances' routed work (0:
    round robin / random, each instance a random sample of prompts; 1: sglang-like work
    signals): the unsmoothed share 1 − s lands whole prompts (consecutive chunks) in a
    request's window, widening the TPOT spread of long requests
    (:func:`kvmodel.instance._tpot_law.pulse_excess`, with ``output_law``), and the steered
    share s sends no prompt to an instance busy with a long one, so no prefill is left behind
    a request's first token (:func:`kvmodel.instance._tpot_law.router_terms`).

    ``catalog``: the :class:`kvmodel.Catalog` that names (model, GPU, framework, node) are
    looked up in (default: the active one, :func:`kvmodel.catalog.hardware.use_catalog`);
    ``calibration``: parameter name -> SI value overriding the catalog's calibration.

    What may move against intuition (physical, not solver noise; ``tests/robustness/test_fuzz.py``):
    in a closed loop, more HBM bandwidth lowers E2E and raises throughput, but mean TPOT and
    TTFT may rise (TPOT by 3x seen at 4x bandwidth): decode-only steps get faster, clients
    cycle faster, so a larger share of steps carries a compute-bound prefill chunk (TPOT is
    the mean step time) and more clients queue for the prefill server; TPOT stays below TTFT.
    A few more prompt tokens may lower TTFT with ``batch="max"`` or a closed loop (7% and 11%
    seen) only where the running batch shrinks (the largest batch that fits the KV cache, or
    throughput-max's token-budget batch ``max_num_tokens·O/(I+O)``): fewer sequences share each
    step. At a fixed batch TTFT never falls as prompts grow; at a fixed batch or request rate no
    latency rises with bandwidth.
    """
    m, g, fw = get_model(model), get_gpu(gpu), get_framework(framework)
    precision = _precision("precision", precision)
    kv = _kv_precision(kv_precision, precision, fw)
    wide = _wide.wide_ep_arg(attention_dp)
    tp, pp, ep, ngpu, dp = (_parallelism(m, tp, pp, ep, num_gpus) if wide is None
                            else _wide.wide_parallelism(m, tp, pp, ep, num_gpus))
    I = _num("input_len", input_len, maximum=MAX_COUNT)
    O = _num("output_len", output_len, maximum=MAX_COUNT)
    mode, N = _mode(batch, concurrency, request_rate)
    law = _tl.check_output_law(output_law)
    cal = _params(calibration)
    mnt = cal["max_num_tokens"] if max_num_tokens is None else _num("max_num_tokens", max_num_tokens)
    mbs = cal["max_batch_size"] if max_batch_size is None else _num("max_batch_size", max_batch_size)
    _same_shape(tp=tp, pp=pp, ep=ep, num_gpus=ngpu, input_len=I, output_len=O,
                **{_MODE_ARG[mode]: N}, max_num_tokens=mnt, max_batch_size=mbs,
                cached_prefix_len=cached_prefix_len, arrival_cv=arrival_cv, length_cv=length_cv)
    s = _memo_setup(m, g, fw, tp, pp, ep, precision, kv, cal)
    s, plan = _extended(s, wide, node, _spec.speculative_arg(speculative, cal),
                        lambda dm: _setup(dm, g, fw, tp, 1.0, 1.0, precision, kv, cal), cal)
    pkw = (node, prefix_policy, kv_layout, kv_block_tokens, kv_compression,
           get_connector(connector), kv_save)
    pre, cv = _build_prefix(s, mode, I, _num("length_cv", length_cv, integer=False, minimum=0.0),
                            prefix_classes, cached_prefix_len, cache_tier, pkw)
    if isinstance(pre, PrefixMix):  # the classes' own outputs against output_len
        pre.set_output(O)
        pre.seq_cap = mbs  # (:func:`_mixed_batch`: the pool or this cap sets the batch)
    args = (tp, pp, ep, I, O, ngpu, mnt, mbs) + ((N,) if N is not None else ())
    r = _Reasons(np.broadcast_shapes(*(np.shape(x) for x in args)) if xp.is_array(*args) else ())
    _check_static(r, m, g, tp, pp, precision, kv)
    weights, kv_cap, max_batch = _memory_fit(r, s, cal, I, O, mnt, mbs)
    max_batch = _prefix_partition(r, s, kv_cap, max_batch, I, O, mbs,
                                  _held_hbm(s, prefix_classes, cached_prefix_len, cache_tier, node))
    max_batch = _cache_partition(r, s, kv_cap, max_batch, I, O, mbs, hbm_cache_fraction)
    req_s, fits = cal["request_overhead"], xp.maximum(max_batch, 1.0)
    if mode == "batch":
        r.add(N > max_batch, "batch {:.0f} exceeds the largest batch that fits ({:.0f})",
              N, max_batch)
    ca2 = (_num("arrival_cv", arrival_cv, integer=False, minimum=0.0) ** 2 if mode == "rate"
           else None)
    steer = _num("slot_steer", slot_steer, integer=False, minimum=0.0, maximum=1.0)
    smooth = (None if work_smoothing is None else
              _num("work_smoothing", work_smoothing, integer=False, minimum=0.0, maximum=1.0))
    res, sat, extra = _solve(s, mode, N, I, O, (dp, fits, mnt, req_s, ca2, cv ** 2, steer,
                                                smooth), pre,
                             (cached_prefix_len, cache_tier, pkw), plan)
    inputs = dict(model=m.key, gpu=g.key, tp=tp, pp=pp, ep=ep, num_gpus=ngpu, precision=precision,
                  kv_precision=kv, input_len=I, output_len=O, mode=mode,
                  batch=N if mode == "batch" else mode,
                  concurrency=N if mode == "concurrency" else None,
                  request_rate=N if mode == "rate" else None, framework=fw.key)
    return _assemble(res, sat, r, mode, N, O, cal, inputs, kv_cap, max_batch, weights,
                     m.kv_bytes_per_token(kv), extra, law)


_SETUPS = 256  # Setups memoised per catalog (bounded in long searches)


def _memo_setup(m, g, fw, tp, pp, ep, precision: str, kv: str, cal) -> Setup:
    """:func:`kvmodel.instance.seam.setup` memoised in the active catalog for numbers ``tp``,
    ``pp``, ``ep`` (by type and value), the specs and calibration by identity (kept in the
    entry and checked: a recycled id computes afresh): a search's new trials that keep the
    model, GPU and parallelism share one Setup and its memo token."""
    par = (tp, pp, ep)
    if not all(type(x) in (int, float) for x in par):
        return _setup(m, g, fw, tp, pp, ep, precision, kv, cal)
    refs = (m, g, fw, cal)
    key = (tuple([(type(x), x) for x in par]), precision, kv) + tuple([id(x) for x in refs])
    got = current().cached("setup", key, lambda: (refs, _setup(m, g, fw, tp, pp, ep, precision,
                                                               kv, cal)), _SETUPS)
    if all([a is b for a, b in zip(got[0], refs)]):
        return got[1]
    return _setup(m, g, fw, tp, pp, ep, precision, kv, cal)


def _serve(s: Setup, mode, N, I, O, dp, fits, mnt, req_s, pre, ca2, cs2,
           steer=0.0, smooth=None) -> tuple[dict, dict]:
    """(result, throughput-max) of one mode with the prefix ``pre`` (``steer``: the router's
    share of the KV-slot swings, :func:`_slot_classes`; ``smooth``: its smoothing of the
    prompt work, :func:`_tl.router_terms`)."""
    sat = (_throughput_max_mix(s, I, O, dp, fits, mnt, req_s, pre) if isinstance(pre, PrefixMix)
           else _throughput_max(s, I, O, dp, fits, mnt, req_s, pre))
    if mode == "batch":
        return _static(s, I, O, N, dp, req_s, pre), sat
    if mode == "max":
        return sat, sat
    if mode == "concurrency":
        return _closed_loop(s, I, O, N, dp, fits, mnt, req_s, pre), sat
    return _open_loop(s, I, O, N / dp, ca2, dp, fits, mnt, req_s, pre, cs2,
                      sat["tok"] * sat.get("own_share", 1.0) / (O * dp), steer, smooth), sat


def _extended(s: Setup, wide, node, spec, make_setup, cal) -> tuple[Setup, Any]:
    """The setup with DP attention's wide EP and a speculative drafter's weights and KV;
    the drafter's plan (None without speculation)."""
    if wide is not None:
        s = replace(s, wide=_wide.wide_ep(s.gpu, s.ep, node, wide, cal, s.act_B))
    if spec is None:
        return s, None
    plan = _spec.plan(spec, s, make_setup)
    return replace(s, spec_w_B=plan.weights_B, spec_kv_tok_B=plan.kv_tok_B), plan


def _assemble(res, sat, r: _Reasons, mode, N, O, cal, inputs, kv_cap, max_batch, weights,
              kv_tok_B, extra=None, law=None) -> Estimate:
    """Mask infeasible / unstable elements (inf times, never NaN) and build the Estimate."""
    for ops in res["bd"].values():
        label_bounds(ops)
    sat_rate = sat["tok"] / O
    stable = res.get("stable", True)
    ok = r.feasible  # instability goes into reason below but is not infeasibility
    if mode == "rate":  # hit classes: also within their own choices' share (own_share)
        own_rate = sat_rate * sat.get("own_share", 1.0)
        stable = stable & (N < sat_rate) & (N < own_rate)
        _unstable_reasons(r, res, N, sat_rate, own_rate)
    live = ok & stable
    out = {k: xp.where(live, res[k[:-2]], np.inf) for k in ("ttft_s", "tpot_s", "e2e_s")}
    # an overloaded server serves at most its capacity, and never more than is offered
    served = xp.minimum(sat["tok"], N * O) if mode == "rate" else sat["tok"]
    out["output_tok_per_s"] = xp.where(ok, xp.where(stable, res["tok"], served), 0.0)
    pct = {k: xp.where(live, v, np.inf) for k, v in _percentiles(res, O, law).items()}
    pct["queue_wait_s"] = xp.where(live, res.get("wait", 0.0), np.inf)
    pct["queue_wait_prob"] = xp.where(live, res.get("p_wait", 0.0), 1.0)
    pct["step_residual_s"] = xp.where(live, res.get("residual", 0.0), np.inf)
    est = Estimate(**out, **pct, batch=xp.where(live, res["B"], 0.0), feasible=ok,
                   reason=r.reason, mode=mode, stable=stable,
                    saturation_request_rate_per_s=xp.where(ok, sat_rate, 0.0), breakdown=res["bd"],
                    kv_capacity_tokens=kv_cap, max_batch=xp.maximum(max_batch, 0.0),
                    weights_B_per_gpu=weights, kv_B_per_token=kv_tok_B,
                    interval=_interval(out, cal), inputs=inputs,
                   path_utilisation={k: xp.where(ok, u, 0.0)
                                     for k, u in res.get("path_util", {}).items()},
                   ttft_mixture=ttft_mixture(res) if "classes" in res else None,
                   wait_parts=res.get("wait_parts"), **(extra or {}))
    return est



def ttft_mixture(res: dict) -> dict:
    """The open loop's TTFT percentiles as :func:`_percentiles` builds them with hit classes:
    ``common`` (request overhead and step residual) + the quantile of the wait law summed
    with the step ``spread`` law over the class ``offsets`` (:meth:`PrefixMix.offsets`).
    Kept on the Estimate as its field ``ttft_mixture`` so that
    :func:`kvmodel.cluster._routing_queue.routed_percentiles` reads a router's wait law with
    the instance's own classes."""
    return dict(offsets=res["classes"], common=res["ttft_common"],
                spread=res.get("spread", 0.0), spread_p=res.get("spread_p", 1.0))


def _unstable_reasons(r: _Reasons, res: dict, N, sat_rate, own_rate) -> None:
    """Say why an open-loop element is unstable: a KV path segment over capacity (named first:
    it also bounds the saturation rate), beyond the throughput-max saturation rate, or
    below it where one of the open loop's queues (token-budget prefill server, KV slots)
    saturates -- both are built to saturate at the throughput-max rate, so this last reason
    is kept only as a guard -- or, for hit classes, beyond the throughput-max of the classes'
    own prefix choices (``own_rate``, below the saturation where ``best`` would recompute or
    split some loads: a mixture serves each class at its uncontended choice)."""
    if _stable_scalar(r, res, N, sat_rate, own_rate):
        return  # (no reason to add: a scalar evaluate's common case, without the arrays)
    why = np.asarray(xp.where(res["stable"], 0, res["why"])).astype(int)
    r.widen(np.broadcast_shapes(r.shape, np.shape(why), np.shape(sat_rate), np.shape(N)))
    names = res.get("path_names", ())
    text = np.asarray(_UNSTABLE + tuple(
        f"the KV path segment '{n}' is over capacity: the reads and writes of all concurrent "
        "requests need more than its bandwidth" for n in names), dtype=object)
    r.add(why >= len(_UNSTABLE), "unstable: at {:.4g} requests/s {}", N, text[why])
    r.add(N >= sat_rate, "unstable: {:.4g} requests/s is at or beyond the saturation rate {:.4g} "
          "requests/s (continuous batching at the largest batch that fits)", N, sat_rate)
    r.add(why > 0, "unstable: at {:.4g} requests/s, below the throughput-max saturation rate "
          "{:.4g} requests/s, {}", N, sat_rate, text[why])
    r.add((N >= own_rate) & (N < sat_rate), "unstable: at {:.4g} requests/s the hit classes' "
          "own prefix choices saturate ({:.4g} requests/s); prefix_policy='best' reaches {:.4g} "
          "requests/s only by recomputing or splitting loads, which hit classes do not model "
          "(give one cached_prefix_len for that)", N, own_rate, sat_rate)


def _stable_scalar(r: _Reasons, res: dict, N, sat_rate, own_rate) -> bool:
    """Whether :func:`_unstable_reasons` adds nothing to a scalar ``r``: every input a scalar
    and, where ``r`` is still feasible, each of its four conditions false."""
    stable, why = res["stable"], res["why"]
    if r.shape or xp.is_array(stable, why, N, sat_rate, own_rate):
        return False
    if not r.ok:
        return True  # (Reasons keeps the first reason only)
    return (stable or why == 0) and not N >= sat_rate and not (N >= own_rate and N < sat_rate)


def _interval(out: Mapping[str, Any], cal: Mapping[str, float]) -> dict[str, tuple]:
    """10th–90th percentile band of measured/predicted on the calibration rows, per metric."""
    band = {}
    for metric, name in METRIC_FIELDS.items():
        lo, hi = cal.get(f"interval_{metric}_p10"), cal.get(f"interval_{metric}_p90")
        if lo is not None and hi is not None:
            band[name] = (out[name] * lo, out[name] * hi)
    return band
