"""``kvmodel.estimate``: one serving instance (a TP×PP×EP group, optionally replicated) in three
modes — static batch, throughput-max continuous batching, closed loop with N clients.

All numeric arguments broadcast (floats or numpy arrays). Infeasible elements are marked with
``feasible=False`` and a ``reason``; their times are ``inf`` and throughput 0 — never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from . import _xp as xp
from ._roofline import Setup, label_bounds, memory_per_gpu, step_ops
from .hardware import (FrameworkSpec, GPUSpec, get_calibration, get_framework, get_gpu, get_link)
from .models import BYTES_PER_ELEMENT, ModelSpec, get_model

__all__ = ["estimate", "Estimate", "METRICS"]

METRICS = ("ttft_s", "tpot_s", "e2e_s", "output_tok_s")
_FIXED_POINT_ITERS = 60


@dataclass(frozen=True)
class Estimate:
    """Result of :func:`estimate`. Times in seconds, throughput in generated tokens/s for all
    ``num_gpus``; arrays when any input was an array."""

    ttft_s: Any
    tpot_s: Any
    e2e_s: Any
    output_tok_s: Any
    batch: Any
    feasible: Any
    reason: Any
    mode: str
    breakdown: Mapping[str, Mapping[str, Mapping[str, Any]]]
    kv_capacity_tokens: Any
    max_batch: Any
    weights_bytes_per_gpu: Any
    kv_bytes_per_token: float
    interval: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (arrays become lists)."""
        def conv(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                return v.tolist()
            if isinstance(v, Mapping):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, tuple):
                return [conv(x) for x in v]
            if isinstance(v, float) and not np.isfinite(v):
                return None
            return v
        keys = ("ttft_s", "tpot_s", "e2e_s", "output_tok_s", "batch", "feasible", "reason",
                "mode", "kv_capacity_tokens", "max_batch", "weights_bytes_per_gpu",
                "kv_bytes_per_token", "interval", "inputs", "breakdown")
        return {k: conv(getattr(self, k)) for k in keys}


# ---- input validation ---------------------------------------------------------------------------
def _num(name: str, v: Any, integer: bool = True, minimum: float = 1) -> Any:
    if type(v) in (int, float):  # fast scalar path
        if v >= minimum and v == v and v != float("inf") and (not integer or v == int(v)):
            return float(v)
    if isinstance(v, (bool, np.bool_)) or v is None:
        raise ValueError(f"{name}={v!r}: expected a number >= {minimum}")
    arr = np.asarray(v, dtype=float)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}={v!r}: expected finite numbers")
    if np.any(arr < minimum):
        raise ValueError(f"{name}: values must be >= {minimum}, got min {arr.min():g}")
    if integer and np.any(arr != np.round(arr)):
        raise ValueError(f"{name}: values must be integers")
    return arr if arr.ndim else float(arr)


def _precision(name: str, p: str) -> str:
    if p not in BYTES_PER_ELEMENT:
        raise ValueError(f"{name}={p!r}; allowed: {sorted(BYTES_PER_ELEMENT)}")
    return p


_OVERRIDE: dict[str, float] = {}  # used only while fitting (kvmodel._validate.fit_calibration)


def _params() -> dict[str, float]:
    cal = get_calibration()
    if _CACHE.get("src") is not cal:
        _CACHE.update(src=cal, si={k: q.si for k, q in cal.items()})
    if not _OVERRIDE:
        return _CACHE["si"]
    return {**_CACHE["si"], **_OVERRIDE}


_CACHE: dict[str, Any] = {}


def _setup(m: ModelSpec, g: GPUSpec, fw: FrameworkSpec, tp, pp, ep, precision: str, kv: str,
           cal: Mapping[str, float]) -> Setup:
    act = "fp16" if precision == "fp16" else "bf16"
    attn_p = "fp8" if kv == "fp8" and g.supports("fp8") else act
    wp = precision if g.supports(precision) else act  # unsupported: flagged infeasible later
    link = get_link(g.scale_up_link)
    return Setup(
        model=m, gpu=g, framework=fw, tp=tp, pp=pp, ep=ep,
        w_B=BYTES_PER_ELEMENT[precision], kv_B=BYTES_PER_ELEMENT[kv], act_B=BYTES_PER_ELEMENT[act],
        gemm_Fps=g.peak_flops[wp] * g.matmul_eff[wp] * cal["gemm_efficiency_factor"],
        attn_Fps=(g.peak_flops.get(attn_p, g.peak_flops[wp]) * g.matmul_eff.get(attn_p, 1.0)
                  * cal["attention_efficiency_factor"]),
        hbm_Bps=g.hbm_bw_Bps * g.hbm_eff * cal["memory_efficiency_factor"],
        coll_alpha_s=cal["collective_latency"],
        coll_Bps=g.scale_up_bw_Bps * cal["collective_bandwidth_efficiency"],
        p2p_alpha_s=link.latency_s, overhead_s=fw.step_overhead_s, kernel_s=cal["kernel_latency"],
        seq_s=cal["sequence_overhead"])


# ---- feasibility --------------------------------------------------------------------------------
class _Reasons:
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

    @property
    def feasible(self) -> Any:
        return self.ok


def _check_static(r: _Reasons, m: ModelSpec, g: GPUSpec, tp, pp, precision: str, kv: str) -> None:
    if not g.supports(precision):
        r.add(True, "precision {} not supported on {} (supports {})", precision, g.key,
              ", ".join(sorted(g.peak_flops)))
    if kv == "fp8" and not g.supports("fp8") and g.vendor == "nvidia":
        r.add(True, "fp8 KV cache needs fp8 support, absent on {}", g.key)
    heads = m.num_attention_heads
    r.add((tp > heads) | (heads % tp != 0), "tp={:.0f} does not divide num_attention_heads={}",
          tp, heads)
    r.add(pp > m.num_layers, "pp={:.0f} exceeds num_layers={}", pp, m.num_layers)


# ---- modes --------------------------------------------------------------------------------------
def _kv_per_seq(m: ModelSpec, ctx):
    return xp.minimum(ctx, m.sliding_window) if m.sliding_window else ctx


def _static(s: Setup, I, O, B, dp, req_s):
    ops_p, _, lat_p = step_ops(s, B * I, B, B * I * (I + 1.0) / 2.0, 0.0, 0.0, B * I)
    lat_p = lat_p + req_s
    c = I + O / 2.0
    kv_c = _kv_per_seq(s.model, c)
    ops_d, _, lat_d = step_ops(s, B, B, 0.0, B * kv_c, B * kv_c, B)
    e2e = lat_p + (O - 1.0) * lat_d
    return {"prefill": ops_p, "decode": ops_d}, lat_p, lat_d, e2e, dp * B * O / e2e, B


def _throughput_max(s: Setup, I, O, dp, bmax, max_tokens, req_s):
    b_tok = xp.floor(max_tokens * O / (I + O))
    B = xp.maximum(xp.minimum(bmax, b_tok), 1.0)
    P = B * I / O
    c = _kv_per_seq(s.model, I + O / 2.0)
    b, p = B / s.pp, P / s.pp
    ops, stage, lat = step_ops(s, b + p, b, p * I / 2.0, b * c, b * c, b + p)
    period = stage + ops["framework"]["time_s"]
    tpot = s.pp * period
    ttft = req_s + tpot * xp.maximum(1.0, I / P)
    e2e = ttft + (O - 1.0) * tpot
    return {"step": ops}, ttft, tpot, e2e, dp * b / period, B


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


def _closed_loop(s: Setup, I, O, N, dp, bmax, max_tokens, req_s):
    n = N / dp
    a = xp.minimum(n, bmax)
    c = _kv_per_seq(s.model, I + O / 2.0)

    # a new request waits for the running step, then its prompt runs in chunks that share each
    # step's token budget with up to ``a`` decoding sequences
    chunk = xp.minimum(I, xp.maximum(max_tokens - a, 1.0))
    _, _, t_pf = step_ops(s, a + chunk, a + 1.0, chunk * (I + 1.0) / 2.0, a * c, a * c, a + chunk)
    prefill_s = req_s + xp.ceil(I / chunk) * t_pf

    S = xp.ceil(I / chunk) * t_pf  # engine time one prompt's chunks occupy

    def rates(t):
        return _prefill_queue(a, S, prefill_s + 0.5 * t, (O - 1.0) * t)

    _, _, t = step_ops(s, a, a, 0.0, a * c, a * c, a)
    for i in range(_FIXED_POINT_ITERS):
        svc_ttft, X = rates(t)
        D, P = X * (O - 1.0) * t, X * I * t
        ops, _, t_new = step_ops(s, D + P, D + X * t, P * I / 2.0, D * c, D * c, D + P)
        t_old, t = t, (t_new if i < 20 else 0.5 * (t + t_new))  # damp if it has not settled
        if not xp.any_true(abs(t - t_old) > 1e-7 * t):
            break
    svc_ttft, X = rates(t)  # outputs from one consistent state: Little's law holds exactly
    wait = xp.maximum(n / X - (svc_ttft + (O - 1.0) * t), 0.0)
    ttft = svc_ttft + wait
    e2e = ttft + (O - 1.0) * t
    return {"step": ops}, ttft, t, e2e, dp * X * O, a


# ---- public -------------------------------------------------------------------------------------
def _parallelism(m: ModelSpec, tp, pp, ep, num_gpus):
    """Validated (tp, pp, ep, num_gpus, data-parallel replicas)."""
    tp, pp, ep = _num("tp", tp), _num("pp", pp), _num("ep", ep)
    if xp.any_true(ep > 1) and not m.is_moe:
        raise ValueError(f"ep={ep}: expert parallelism needs an MoE model; {m.key} is dense")
    if xp.any_true(tp % ep != 0):
        raise ValueError(f"ep={ep} must divide tp={tp} (experts are split inside the TP group)")
    group = tp * pp
    ngpu = group if num_gpus is None else _num("num_gpus", num_gpus)
    if xp.any_true(ngpu % group != 0):
        raise ValueError(f"num_gpus={num_gpus} must be a multiple of tp*pp={group}")
    return tp, pp, ep, ngpu, ngpu / group


def _mode(batch: Any, concurrency: Any) -> tuple[str, Any]:
    if concurrency is not None:
        if not (isinstance(batch, (int, float)) and batch == 1):
            raise ValueError("give either batch or concurrency, not both")
        return "concurrency", _num("concurrency", concurrency)
    if isinstance(batch, str):
        if batch != "max":
            raise ValueError(f"batch={batch!r}: expected a number or 'max'")
        return "max", None
    return "batch", _num("batch", batch)


def _memory_fit(r: _Reasons, s: Setup, cal: Mapping[str, float], I, O, mnt, mbs):
    """Weights per GPU, KV capacity in tokens and the largest batch; flags what does not fit."""
    m, g = s.model, s.gpu
    weights, acts = memory_per_gpu(s, mnt)
    free = g.hbm_capacity_B - cal["runtime_reserve"] - weights - acts
    r.add(free <= 0, "weights {:.1f} GB + activations {:.1f} GB per GPU exceed HBM {:.1f} GB",
          weights / 1e9, acts / 1e9, g.hbm_capacity_B / 1e9)
    kv_tok_B = m.num_layers / s.pp * s.kv_elems_rank * s.kv_B
    kv_cap = xp.floor(xp.maximum(free, 0.0) * cal["kv_cache_fraction"] / kv_tok_B)
    max_batch = xp.minimum(xp.floor(kv_cap / _kv_per_seq(m, I + O)), mbs)
    r.add(max_batch < 1, "KV cache holds {:.0f} tokens, less than one request of {:.0f}",
          kv_cap, I + O)
    return weights, kv_cap, max_batch


def estimate(model: str | ModelSpec, gpu: str | GPUSpec, *, tp: Any = 1, pp: Any = 1, ep: Any = 1,
             num_gpus: Any = None, precision: str = "bf16", kv_precision: str | None = None,
             input_len: Any = 1024, output_len: Any = 128, batch: Any = 1,
             concurrency: Any = None, framework: str | FrameworkSpec = "tensorrt-llm",
             max_num_tokens: Any = None, max_batch_size: Any = None) -> Estimate:
    """Estimate TTFT, TPOT, E2E and throughput of one serving instance.

    ``batch``: a number (static batch) or ``"max"`` (continuous batching at the largest
    sustainable batch, chunked prefill). ``concurrency=N``: closed loop with N clients.
    ``num_gpus`` (default ``tp*pp``) may be a multiple of ``tp*pp``: data-parallel replicas.
    """
    m, g, fw = get_model(model), get_gpu(gpu), get_framework(framework)
    precision = _precision("precision", precision)
    kv = _precision("kv_precision", kv_precision or ("fp8" if precision in ("fp8", "fp4", "int8")
                                                     else precision))
    tp, pp, ep, ngpu, dp = _parallelism(m, tp, pp, ep, num_gpus)
    I, O = _num("input_len", input_len), _num("output_len", output_len)
    mode, N = _mode(batch, concurrency)
    cal = _params()
    s = _setup(m, g, fw, tp, pp, ep, precision, kv, cal)
    mnt = cal["max_num_tokens"] if max_num_tokens is None else _num("max_num_tokens", max_num_tokens)
    mbs = cal["max_batch_size"] if max_batch_size is None else _num("max_batch_size", max_batch_size)

    args = (tp, pp, ep, I, O, ngpu, mnt, mbs) + ((N,) if N is not None else ())
    r = _Reasons(np.broadcast_shapes(*(np.shape(x) for x in args)) if xp.is_array(*args) else ())
    _check_static(r, m, g, tp, pp, precision, kv)
    weights, kv_cap, max_batch = _memory_fit(r, s, cal, I, O, mnt, mbs)
    req_s, fits = cal["request_overhead"], xp.maximum(max_batch, 1.0)
    if mode == "batch":
        r.add(N > max_batch, "batch {:.0f} exceeds the largest batch that fits ({:.0f})",
              N, max_batch)
        bd, ttft, tpot, e2e, tok, B = _static(s, I, O, N, dp, req_s)
    elif mode == "max":
        bd, ttft, tpot, e2e, tok, B = _throughput_max(s, I, O, dp, fits, mnt, req_s)
    else:
        bd, ttft, tpot, e2e, tok, B = _closed_loop(s, I, O, N, dp, fits, mnt, req_s)
    for ops in bd.values():
        label_bounds(ops)
    ok = r.feasible
    out = {k: xp.where(ok, v, np.inf) for k, v in (("ttft_s", ttft), ("tpot_s", tpot), ("e2e_s", e2e))}
    out["output_tok_s"] = xp.where(ok, tok, 0.0)
    inputs = dict(model=m.key, gpu=g.key, tp=tp, pp=pp, ep=ep, num_gpus=ngpu, precision=precision,
                  kv_precision=kv, input_len=I, output_len=O, mode=mode,
                  batch=N if mode == "batch" else mode,
                  concurrency=N if mode == "concurrency" else None, framework=fw.key)
    return Estimate(**out, batch=xp.where(ok, B, 0.0), feasible=ok, reason=r.reason, mode=mode,
                    breakdown=bd, kv_capacity_tokens=kv_cap, max_batch=xp.maximum(max_batch, 0.0),
                    weights_bytes_per_gpu=weights, kv_bytes_per_token=m.kv_bytes_per_token(kv),
                    interval=_interval(out, cal), inputs=inputs)


def _interval(out: Mapping[str, Any], cal: Mapping[str, float]) -> dict[str, tuple]:
    """10th–90th percentile band of measured/predicted on the calibration rows, per metric."""
    band = {}
    for metric, v in out.items():
        lo, hi = cal.get(f"interval_{metric}_p10"), cal.get(f"interval_{metric}_p90")
        if lo is not None and hi is not None:
            band[metric] = (v * lo, v * hi)
    return band
