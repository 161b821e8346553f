"""Load-vs-recompute break-even in closed form (sympy), consistent with the roofline.

Recomputing a P-token prefix costs ``t_rec(P) = c0 + τ·P + α·P²``: ``τ`` gathers everything
linear in tokens (GEMM FLOPs 2N per token, elementwise traffic, all-reduce bytes), ``α`` the
causal attention (2·L·d FLOPs per token pair), ``c0`` the fixed costs (kernels, framework).
Loading it costs ``t_load = k·P / B`` (k KV bytes per token). Loading wins when
``B > B*(P) = k·P / t_rec(P)``; for a given B it wins beyond the larger root ``P*`` of
``α·P² + (τ − k/B)·P + c0 = 0`` (everywhere if ``τ ≥ k/B`` and there is no positive root).

``c0, τ, α`` come from the per-operator roofline, fitted exactly through three prefix lengths
(in the compute-bound regime the roofline is exactly this quadratic). ``ideal=True`` takes
Mooncake's assumptions (FAST'25, §2.2, Eq. 2): peak FLOP/s, no attention or fixed costs, so
``B* = k·F / (2N)``: about 6 GB/s on 8×A800 and 19 GB/s on 8×H800 for LLaMA3-70B.

The numeric functions take ``catalog=`` (a :class:`kvmodel.Catalog`; default: the active one).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from kvmodel.catalog.hardware import catalog_arg, get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance._roofline import attn_pairs, step_ops
from kvmodel.instance.seam import compute_precision, kv_precision_arg, num, params, precision_arg, setup

__all__ = ["break_even_formulas", "break_even_bandwidth", "break_even_context_len",
           "recompute_coefficients"]


@lru_cache(maxsize=1)
def break_even_formulas() -> dict[str, Any]:
    """Sympy expressions (and LaTeX) of t_rec, t_load, B* and P*, and numpy functions of them."""
    import sympy as sp  # sympy only when the formulas are asked for (~0.2 s import)

    P, k, B, c0, tau, alpha = sp.symbols("P k B c_0 tau alpha", positive=True)
    t_rec = c0 + tau * P + alpha * P**2
    t_load = k * P / B
    B_star = k * P / t_rec
    roots = sp.solve(sp.Eq(t_load, t_rec), P)
    P_star = max(roots, key=lambda r: r.subs({c0: 1, tau: 1, alpha: 1, k: 10, B: 1}))
    exprs = {"t_recompute": t_rec, "t_load": t_load, "B_star": B_star, "P_star": P_star}
    return {"symbols": dict(P=P, k=k, B=B, c0=c0, tau=tau, alpha=alpha), "exprs": exprs,
            "latex": {name: sp.latex(e) for name, e in exprs.items()},
            "B_star_fn": sp.lambdify((P, k, c0, tau, alpha), B_star, "numpy")}


def _setup(model, gpu, num_gpus, precision, kv_precision):
    m, g = get_model(model), get_gpu(gpu)
    if compute_precision(g, precision_arg("precision", precision)) not in g.peak_flops:
        raise ValueError(f"precision={precision!r} not supported on {g.key}")
    kv = kv_precision_arg(kv_precision, precision)
    s = setup(m, g, get_framework("tensorrt-llm"), float(num_gpus), 1.0, 1.0, precision, kv,
              params())
    return s, m.kv_bytes_per_token(kv)


@catalog_arg
def recompute_coefficients(model, gpu, num_gpus: int = 8, precision: str = "bf16",
                           kv_precision: str | None = None, ideal: bool = False,
                           reference_len: float = 8192.0) -> tuple[float, float, float, float]:
    """(c0, τ, α, k): t_rec(P) = c0 + τ·P + α·P² on ``num_gpus``-way TP, and KV bytes/token."""
    s, k = _setup(model, gpu, num_gpus, precision, kv_precision)
    if ideal:
        m, g = s.model, s.gpu
        peak = g.peak_flops[compute_precision(g, precision)]  # weight-only: its compute format
        tau = 2.0 * (m.active_params - m.embedding_params) / (num_gpus * peak)
        return 0.0, tau, 0.0, k
    P = np.array([0.5, 1.0, 2.0]) * reference_len
    t = step_ops(s, P, 1.0, attn_pairs(s, P * (P + 1.0) / 2.0, P, P), 0.0, 0.0, P)[2]
    alpha, tau, c0 = np.polyfit(P, t, 2)
    return float(c0), float(tau), float(alpha), k


@catalog_arg
def break_even_bandwidth(model, gpu, num_gpus: int = 8, prefix_len: Any = 8192,
                         precision: str = "bf16", kv_precision: str | None = None,
                         ideal: bool = False, method: str = "closed_form"):
    """Aggregate load bandwidth (bytes/s) above which loading a prefix beats recomputing it.

    ``closed_form`` evaluates the sympy B*(P); ``roofline`` divides the prefix's KV bytes by the
    per-operator roofline time of prefilling it (equal to the closed form in the compute-bound
    regime, by construction of the coefficients).
    """
    P = num("prefix_len", prefix_len)
    if method == "roofline":
        s, k = _setup(model, gpu, num_gpus, precision, kv_precision)
        return k * P / step_ops(s, P, 1.0, attn_pairs(s, P * (P + 1.0) / 2.0, P, P), 0.0, 0.0,
                                P)[2]
    if method != "closed_form":
        raise ValueError(f"method={method!r}; allowed: 'closed_form', 'roofline'")
    c0, tau, alpha, k = recompute_coefficients(model, gpu, num_gpus, precision, kv_precision, ideal,
                                               float(np.max(P)))
    return break_even_formulas()["B_star_fn"](P, k, c0, tau, alpha)


@catalog_arg
def break_even_context_len(model, gpu, bandwidth_Bps, num_gpus: int = 8, precision: str = "bf16",
                           kv_precision: str | None = None, ideal: bool = False):
    """Prefix length above which loading at ``bandwidth_Bps`` beats recomputing (0: always)."""
    B = num("bandwidth_Bps", bandwidth_Bps, integer=False, minimum=1e-30)
    c0, tau, alpha, k = recompute_coefficients(model, gpu, num_gpus, precision, kv_precision, ideal)
    b = tau - k / B
    if alpha == 0.0:  # linear (ideal): loading wins at every length iff it is faster per token
        return np.where(b >= 0, 0.0, np.inf)
    disc = b * b - 4.0 * alpha * c0
    root = (-b + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * alpha)
    return np.where(disc > 0, np.maximum(root, 0.0), 0.0)
