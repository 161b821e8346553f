"""The instance model's shared seam: what :mod:`kvmodel.sim`, :mod:`kvmodel.instance.breakeven` and
:mod:`kvmodel.cluster` share with :func:`kvmodel.estimate` — argument checks (:func:`num`,
:func:`precision_arg`, :func:`parallelism`), the calibration in SI units (:func:`params`),
the roofline setup of one instance (:func:`setup`), feasibility bookkeeping (:class:`Reasons`,
:func:`check_static`), KV per sequence and the memory fit (:func:`kv_per_seq`,
:func:`memory_fit`).

**Import rule.** No kvmodel module imports another module's underscore names; what two
modules share lives here under a public name (this module is private to the package, its
names are not part of the public API). ``tests/catalog/test_catalog.py`` checks the rule.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.catalog.hardware import FrameworkSpec, GPUSpec, current, get_link
from kvmodel.catalog.models import (
    BYTES_PER_ELEMENT,
    KV_PRECISIONS,
    WEIGHT_ONLY,
    ModelSpec,
    default_kv_precision,
)
from kvmodel.instance import _sampling
from kvmodel.instance._roofline import Setup, memory_per_gpu

__all__ = ["num", "show", "precision_arg", "kv_precision_arg", "kv_cache_auto", "params", "supported",
           "compute_precision", "setup", "Reasons", "check_static", "kv_per_seq", "parallelism",
           "memory_fit"]


def num(name: str, v: Any, integer: bool = True, minimum: float = 1,
        maximum: float = float("inf")) -> Any:
    """``v`` checked as a finite number (or array) in [minimum, maximum], integer when asked;
    errors name the argument, the value and what is allowed."""
    if type(v) in (int, float):  # fast scalar path
        if minimum <= v <= maximum and v != float("inf") and (not integer or v == int(v)):
            return float(v)
    if isinstance(v, (bool, np.bool_)) or v is None:
        raise ValueError(f"{name}={v!r}: expected a number >= {minimum}")
    try:
        arr = np.asarray(v, dtype=float)
    except (ValueError, TypeError):
        raise ValueError(f"{name}={show(v)}: expected a number or an array of numbers "
                         f">= {minimum}") from None
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}={v!r}: expected finite numbers")
    if np.any(arr < minimum):
        raise ValueError(f"{name}: values must be >= {minimum}, got min {arr.min():g}")
    if np.any(arr > maximum):
        raise ValueError(f"{name}={show(v)}: values must be <= {maximum:,.0f}, got max "
                         f"{arr.max():g}")
    if integer and np.any(arr != np.round(arr)):
        raise ValueError(f"{name}: values must be integers")
    return arr if arr.ndim else float(arr)


def show(v: Any) -> str:
    """``v`` for an error message: a scalar as is, an array by its shape."""
    return f"array of shape {np.shape(v)}" if np.ndim(v) else repr(v)


def precision_arg(name: str, p: str) -> str:
    if p not in BYTES_PER_ELEMENT:
        raise ValueError(f"{name}={p!r}; allowed: {sorted(BYTES_PER_ELEMENT)}")
    return p


def kv_precision_arg(kv_precision: str | None, precision: str,
                     fw: FrameworkSpec | None = None) -> str:
    """The KV precision: ``kv_precision`` checked against the cache formats, or the default
    of the framework ``fw`` (its ``kv_cache_auto``; TensorRT-LLM's when None) next to weights
    in ``precision`` (:func:`default_kv_precision`)."""
    kv = (default_kv_precision(precision, kv_cache_auto(fw)) if kv_precision is None
          else kv_precision)
    if kv not in KV_PRECISIONS:
        raise ValueError(f"kv_precision={kv!r}; allowed: {sorted(KV_PRECISIONS)} (weight-only "
                         f"formats {sorted(WEIGHT_ONLY)} are not cache formats)")
    return kv


def kv_cache_auto(fw: FrameworkSpec | None) -> str | None:
    """What the framework's default KV-cache dtype follows (``kv_cache_auto``), None unknown."""
    return None if fw is None else fw.quantities.get("kv_cache_auto")


def params(calibration: Mapping[str, float] | None = None) -> Mapping[str, float]:
    """The active catalog's calibration in SI floats, with ``calibration`` (parameter name ->
    SI value) overriding some of them (e.g. the trial values of a fit)."""
    base = current().params()
    if not calibration:
        return base
    if not isinstance(calibration, Mapping):
        raise TypeError(f"calibration={calibration!r}: expected a mapping of parameter name to "
                        "SI value, or None")
    unknown = sorted(set(calibration) - set(base))
    if unknown:
        raise ValueError(f"calibration: unknown parameter(s) {unknown}; allowed: {sorted(base)}")
    return {**base, **{k: float(v) for k, v in calibration.items()}}


def supported(g: GPUSpec, p: str) -> str:
    """``p`` when the GPU has peak FLOP/s for it, else a stand-in it has (bf16, fp16, then any)
    so that an unsupported precision is reported by :func:`check_static`, never a KeyError."""
    for q in (p, "bf16", "fp16"):
        if g.supports(q):
            return q
    return sorted(g.peak_flops)[0]


def compute_precision(g: GPUSpec, p: str) -> str:
    """The precision GEMMs on weights stored in ``p`` run in on ``g``: a weight-only format
    (:data:`WEIGHT_ONLY`) in its native peak where the GPU has one (fp4 on Blackwell for
    mxfp4/nvfp4), else dequantised to the 16-bit activation type; any other precision as
    :func:`supported`."""
    if p not in WEIGHT_ONLY:
        return supported(g, p)
    native = WEIGHT_ONLY[p][0]
    return native if native is not None and g.supports(native) else supported(g, "bf16")


def _weight_bytes(g: GPUSpec, precision: str, act: str, gemm_Fps: float,
                  cal: Mapping[str, float]) -> dict[str, float]:
    """Bytes and GEMM rate of the weights a weight-only format leaves 16-bit (attention
    projections: ``proj_*``; embeddings, LM head, router: ``head_*``); other precisions store
    every weight alike."""
    w_B = BYTES_PER_ELEMENT[precision]
    if precision not in WEIGHT_ONLY:
        return dict(proj_B=w_B, head_B=w_B, proj_Fps=gemm_Fps, head_Fps=gemm_Fps)
    act_Fps = g.achieved_flops(act) * cal["gemm_efficiency_factor"]
    packed = WEIGHT_ONLY[precision][1] == "linear"
    return dict(proj_B=w_B if packed else BYTES_PER_ELEMENT[act], head_B=BYTES_PER_ELEMENT[act],
                proj_Fps=gemm_Fps if packed else act_Fps, head_Fps=act_Fps)


def setup(m: ModelSpec, g: GPUSpec, fw: FrameworkSpec, tp, pp, ep, precision: str, kv: str,
           cal: Mapping[str, float]) -> Setup:
    act = supported(g, "fp16" if precision == "fp16" else "bf16")
    attn_p = "fp8" if kv == "fp8" and g.supports("fp8") else act
    wp = compute_precision(g, precision)  # unsupported: flagged infeasible by check_static
    gemm_Fps = g.achieved_flops(wp) * cal["gemm_efficiency_factor"]
    link = get_link(g.scale_up_link)
    return Setup(
        model=m, gpu=g, framework=fw, tp=tp, pp=pp, ep=ep,
        w_B=BYTES_PER_ELEMENT[precision], kv_B=BYTES_PER_ELEMENT[kv], act_B=BYTES_PER_ELEMENT[act],
        gemm_Fps=gemm_Fps, **_weight_bytes(g, precision, act, gemm_Fps, cal),
        attn_Fps=_attention_Fps(g, attn_p, wp, cal) / _work(fw, "causal_attention_work"),
        hbm_Bps=g.hbm_bw_Bps * g.hbm_eff * cal["memory_efficiency_factor"],
        coll_alpha_s=cal["collective_latency"],
        coll_Bps=_collective_Bps(g, tp, cal),
        p2p_alpha_s=link.latency_s, overhead_s=fw.step_overhead_s, kernel_s=cal["kernel_latency"],
        seq_s=cal["sequence_overhead"],
        layer_host_s=fw.quantities["layer_dispatch"].si if "layer_dispatch" in fw.quantities else 0.0,
        sample_s=_sampling.per_entry_s(fw, cal),
        gmm_copy=1.0 if fw.quantities.get("moe_gmm_output_copy", False) is True else 0.0)


def _work(fw: FrameworkSpec, name: str) -> float:
    """A framework's work factor ``name`` (1 where its entry has none)."""
    q = fw.quantities.get(name)
    return 1.0 if q is None else q.si


def _collective_Bps(g: GPUSpec, tp, cal: Mapping[str, float]):
    """Per-GPU bus bandwidth of the TP group's collectives: the GPU's measured all-reduce bus
    bandwidth at the group's size (``allreduce_bandwidth``, linear between the measured sizes,
    held beyond them) where it has one, else its scale-up bandwidth x the global
    ``collective_bandwidth_efficiency``."""
    c = g.quantities.get("allreduce_bandwidth")
    if c is None:
        return g.scale_up_bw_Bps * cal["collective_bandwidth_efficiency"]
    v = np.interp(tp, c.x, c.y)
    return float(v) if np.ndim(v) == 0 else v


def _attention_Fps(g: GPUSpec, attn_p: str, wp: str, cal: Mapping[str, float]) -> float:
    """Effective attention FLOP/s: the GPU's measured attention kernel where it has one
    (``achieved_attention_flops``), else its best GEMM rate x ``attention_efficiency_factor``."""
    measured = g.quantities.get("achieved_attention_flops", {})
    if attn_p in measured:
        return measured[attn_p].si
    return (g.peak_flops.get(attn_p, g.peak_flops[wp]) * g.matmul_eff.get(attn_p, 1.0)
            * cal["attention_efficiency_factor"])


class Reasons:
    """Accumulates the first reason of infeasibility per element; messages are formatted only
    for the elements they apply to."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.reason: Any = np.full(shape, "", dtype=object) if shape else ""
        self.ok: Any = np.ones(shape, dtype=bool) if shape else True

    def add(self, cond: Any, template: str, *args: Any) -> None:
        if not self.shape:
            if cond and self.ok:
                self.reason, self.ok = template.format(*args), False
            return
        hit = np.broadcast_to(cond, self.shape) & self.ok
        if not hit.any():
            return
        idx = np.nonzero(hit)
        vals = [np.broadcast_to(a, self.shape)[idx] if np.ndim(a) else [a] * len(idx[0])
                for a in args]
        self.reason[idx] = [template.format(*v) for v in zip(*vals)] if args else template
        self.ok = self.ok & ~hit

    def widen(self, shape: tuple[int, ...]) -> None:
        """Broadcast to ``shape`` (results may be arrays through inputs other than lengths)."""
        if shape != self.shape:
            self.reason = np.array(np.broadcast_to(np.asarray(self.reason, dtype=object), shape))
            self.ok = np.array(np.broadcast_to(self.ok, shape))
            self.shape = shape

    @property
    def feasible(self) -> Any:
        return self.ok


def _runs(g: GPUSpec, p: str) -> bool:
    """Whether ``g`` has a GEMM precision for weights stored in ``p``."""
    if p in WEIGHT_ONLY:
        return compute_precision(g, p) in (WEIGHT_ONLY[p][0], "bf16", "fp16")
    return g.supports(p)


def check_static(r: Reasons, m: ModelSpec, g: GPUSpec, tp, pp, precision: str, kv: str) -> None:
    if not _runs(g, precision):
        r.add(True, "precision {} not supported on {} (supports {})", precision, g.key,
              ", ".join(sorted(g.peak_flops)))
    if kv == "fp8" and not g.supports("fp8") and g.vendor == "nvidia":
        r.add(True, "fp8 KV cache needs fp8 support, absent on {}", g.key)
    heads = m.num_attention_heads
    r.add((tp > heads) | (heads % tp != 0), "tp={:.0f} does not divide num_attention_heads={}",
          tp, heads)
    r.add(pp > m.num_layers, "pp={:.0f} exceeds num_layers={}", pp, m.num_layers)


def kv_per_seq(m: ModelSpec, ctx, tp=1.0, kv_B: float = 2.0, fw: FrameworkSpec | None = None):
    """KV a sequence of ``ctx`` tokens holds, in tokens of :meth:`ModelSpec.kv_token_bytes_rank`
    (``ctx`` for full attention; sliding windows, chunks and recurrent state per layer kind via
    :meth:`ModelSpec.kv_bytes_rank`, on one of ``tp`` ranks with ``kv_B`` bytes per element).
    Where ``fw`` splits the pool equally among window sizes (``sliding_window_pool =
    "equal_share"``), a model of full and sliding layers fills the full layers' share: two
    shares x the full layers' part of a token's KV, per context token."""
    kinds = m.layer_counts
    if (fw is not None and fw.quantities.get("sliding_window_pool") == "equal_share"
            and kinds["full"] and kinds["sliding"] and kinds["full"] + kinds["sliding"] == m.num_layers):
        return ctx * 2.0 * kinds["full"] / m.num_layers
    if m.is_uniform:
        kind = m.layer_kinds[0]
        if kind == "full":
            return ctx
        return xp.minimum(ctx, m.sliding_window if kind == "sliding" else m.attention_chunk_size)
    return m.kv_bytes_rank(ctx, kv_B, tp) / m.kv_token_bytes_rank(kv_B, tp)


def parallelism(m: ModelSpec, tp, pp, ep, num_gpus):
    """Validated (tp, pp, ep, num_gpus, data-parallel replicas)."""
    tp, pp, ep = num("tp", tp), num("pp", pp), num("ep", ep)
    if xp.any_true(ep > 1) and not m.is_moe:
        raise ValueError(f"ep={ep}: expert parallelism needs an MoE model; {m.key} is dense")
    if xp.any_true(tp % ep != 0):
        raise ValueError(f"ep={ep} must divide tp={tp} (experts are split inside the TP group)")
    group = tp * pp
    ngpu = group if num_gpus is None else num("num_gpus", num_gpus)
    if xp.any_true(ngpu % group != 0):
        raise ValueError(f"num_gpus={num_gpus} must be a multiple of tp*pp={group}")
    return tp, pp, ep, ngpu, ngpu / group


def memory_fit(r: Reasons, s: Setup, cal: Mapping[str, float], I, O, mnt, mbs):
    """Weights per GPU, KV capacity in tokens and the largest batch; flags what does not fit."""
    m, g = s.model, s.gpu
    weights, acts = memory_per_gpu(s, mnt)
    free = g.hbm_capacity_B - cal["runtime_reserve"] - weights - acts
    r.add(free <= 0, "weights {:.1f} GB + activations {:.1f} GB per GPU exceed HBM {:.1f} GB",
          weights / 1e9, acts / 1e9, g.hbm_capacity_B / 1e9)
    kv_tok_B = m.num_layers / s.pp * s.kv_elems_rank * s.kv_B + s.spec_kv_tok_B
    kv_cap = xp.floor(xp.maximum(free, 0.0) * cal["kv_cache_fraction"] / kv_tok_B)
    max_batch = xp.minimum(xp.floor(kv_cap / kv_per_seq(m, I + O, s.tp, s.kv_B, s.framework)), mbs)
    r.add(max_batch < 1, "KV cache holds {:.0f} tokens, less than one request of {:.0f}",
          kv_cap, I + O)
    return weights, kv_cap, max_batch
