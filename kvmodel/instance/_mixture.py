"""Hit classes: an open loop whose requests find different cached prefixes.

``estimate(..., prefix_classes=[(probability, cached_prefix_len, cache_tier), ...])`` describes
the requests as a mixture: class k (probability π_k, summing to 1) has ``cached_prefix_len``
tokens cached in ``cache_tier`` (a tier name, a :class:`~kvmodel.tiers.Tier` or a mix
``[(tier, fraction), ...]``; length 0 is a miss). Each class is its own prefix
(:class:`kvmodel.instance._estimate._Prefix`: its load time, its uncached prompt tokens); the
shared queues see the mixture:

* the token-budget prefill server gets the mixture's uncached tokens: mean ``n̄ = Σ π_k n_k``
  and SCV ``Σ π_k n_k² (1 + c_len²) / n̄² − 1`` (``c_len``: ``length_cv``, scaling every class);
* the KV path carries every class's loads and saves (a request's mean demand ``Σ π_k d_k``);
  in M/G/1-PS a load's delay is proportional to its own demand, so class k's path delay is the
  mean delay scaled by its loaded tokens over the mean;
* TTFT of class k is the common part (request overhead, residual step, prefill and slot wait W)
  plus its own service ``S_k`` (its chunks, its exposed load, path delay, synchronous save).
  Its quantiles solve ``Σ_k π_k P(W + S_k > x) = 1 − q`` with W's law of
  :func:`kvmodel.instance._queueing.wait_quantile` (0 w.p. 1 − p, else exponential), by
  bisection on all elements at once (:func:`mixture_quantile`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.instance._paths import PathLoad

__all__ = ["check_classes", "PrefixMix", "mixture_quantile"]

_BISECT = 60


def check_classes(classes: Any) -> list[tuple[Any, Any, Any]]:
    """Validate ``prefix_classes``: a non-empty list of (probability, cached_prefix_len, tier)
    with probabilities >= 0 summing to 1 (element-wise for arrays)."""
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (list, tuple)) or not classes:
        raise ValueError(f"prefix_classes={classes!r}: expected a non-empty list of "
                         "(probability, cached_prefix_len, cache_tier) tuples")
    out = []
    for k, c in enumerate(classes):
        if not isinstance(c, (list, tuple)) or len(c) != 3:
            raise ValueError(f"prefix_classes[{k}]={c!r}: expected (probability, "
                             "cached_prefix_len, cache_tier)")
        p = c[0]
        if isinstance(p, (bool, np.bool_)) or p is None:
            raise ValueError(f"prefix_classes[{k}] probability {p!r}: expected a number in [0, 1]")
        p = np.asarray(p, dtype=float)
        if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
            raise ValueError(f"prefix_classes[{k}] probability {c[0]!r}: expected numbers in [0, 1]")
        out.append((p if p.ndim else float(p), c[1], c[2]))
    total = sum(p for p, _, _ in out)
    if np.any(np.abs(np.asarray(total) - 1.0) > 1e-6):
        raise ValueError(f"prefix_classes probabilities must sum to 1, got {np.min(total):g}"
                         + (f" to {np.max(total):g}" if np.ndim(total) else ""))
    return out


class PrefixMix:
    """The classes' prefixes with their probabilities, seen by the open loop as one prefix
    (the interface of ``_Prefix``: ``none``, ``new_tokens``, ``exposed``, ``path``,
    ``save_op``, ``exposed_with``) plus the per-class parts (:meth:`offsets`)."""

    def __init__(self, probs: list, prefixes: list):
        self.probs, self.parts = probs, prefixes
        live = [p for p in prefixes if not p.none]
        self.none = not live
        self.save_sync = any(p.save_sync for p in live)
        self.loaded = self._mean(lambda p: p.loaded)
        self.exposed = self._mean(lambda p: p.exposed)
        self.path = None
        if live:
            reads = [(t, b * pi) for pi, p in zip(probs, prefixes) if not p.none for t, b in p.reads]
            writes = [(t, b * pi) for pi, p in zip(probs, prefixes) if not p.none for t, b in p.writes]
            self.path = PathLoad(reads, writes, live[0].eff)

    def _mean(self, f):
        return sum(pi * f(p) for pi, p in zip(self.probs, self.parts))

    def new_tokens(self, I):
        return I - self.loaded

    def new_scv(self, I, cs2):
        """SCV of the classes' uncached prompt tokens, each scaled by the length spread."""
        n = self.new_tokens(I)
        m2 = self._mean(lambda p: p.new_tokens(I) ** 2) * (1.0 + cs2)
        return xp.maximum(m2 / xp.maximum(n * n, 1e-300) - 1.0, 0.0)

    def _share(self, p):
        """Class p's path delay relative to the mean (its loaded tokens over the mean)."""
        return p.loaded / xp.maximum(self.loaded, 1e-300)

    def exposed_with(self, delay):
        return self._mean(lambda p: self._exposed_k(p, delay))

    def _exposed_k(self, p, delay):
        return p.exposed if p.none else p.exposed_with(delay * self._share(p))

    def save_op(self, util: dict | None = None) -> dict:
        ops = [p.save_op() for p in self.parts if not p.none]
        live = [pi for pi, p in zip(self.probs, self.parts) if not p.none]
        return {k: sum(pi * o[k] for pi, o in zip(live, ops)) for k in ("flops", "bytes", "time_s")}

    def offsets(self, delay, S_of):
        """Per class: (probability, own TTFT part: chunks ``S_of(new_k)``, exposed load with
        its path delay, synchronous save)."""
        out = []
        for pi, p in zip(self.probs, self.parts):
            own = S_of(p) + self._exposed_k(p, delay)
            if not p.none:
                own = own + p.save_op()["time_s"]
            out.append((pi, own))
        return out


def _tail(x, mean_wait, p_wait, offsets):
    """Σ_k π_k P(W + S_k > x) for W = 0 w.p. 1 − p, else exponential of mean W/p."""
    p = xp.minimum(xp.maximum(p_wait, 1e-12), 1.0)
    scale = xp.maximum(mean_wait / p, 1e-300)
    out = 0.0
    for pi, s in offsets:
        above = p * np.exp(-np.maximum(x - s, 0.0) / scale)
        out = out + pi * xp.where(x < s, 1.0, xp.where(mean_wait > 0, above, 0.0 * x))
    return out


def mixture_quantile(mean_wait, p_wait, offsets, q: float):
    """The q-quantile of W + S_K (K drawn with the classes' probabilities), by bisection:
    the tail is non-increasing in x, bracketed by [0, max S_k + W/p·ln(p/(1−q)) + 1]."""
    p = xp.minimum(xp.maximum(p_wait, 1e-12), 1.0)
    top = 0.0
    for _, s in offsets:
        top = xp.maximum(top, s)
    lo = 0.0 * (top + mean_wait)
    hi = top + (mean_wait / p) * np.log(xp.maximum(p / (1.0 - q), 1.0)) + 1e-9 + lo
    for _ in range(_BISECT):
        mid = 0.5 * (lo + hi)
        over = _tail(mid, mean_wait, p_wait, offsets) > 1.0 - q
        lo, hi = xp.where(over, mid, lo), xp.where(over, hi, mid)
    return hi
