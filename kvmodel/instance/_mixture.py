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
  :func:`kvmodel.instance._queueing.wait_quantile` (0 w.p. 1 − p, else exponential), in
  closed form interval by interval (:func:`mixture_quantile`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.instance._paths import PathLoad

__all__ = ["check_classes", "PrefixMix", "mixture_quantile"]


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


def _scalar_quantile(mean_wait, p, classes, q):
    """:func:`mixture_quantile` for Python floats (classes sorted by offset)."""
    theta = max(mean_wait / p, 1e-300)
    A, B, prev = sum(w for w, _ in classes), 0.0, None
    for j, (w, sj) in enumerate(classes):
        B = (B * math.exp(-(sj - prev) / theta) if prev is not None else 0.0)
        B, A, prev = B + (p if mean_wait > 0 else 0.0) * w, A - w, sj
        room = (1.0 - q) - A
        if A + B <= 1.0 - q:
            return sj
        if room > 0:
            x = sj + theta * math.log(max(B, 1e-300) / room)
            if j + 1 == len(classes) or x < classes[j + 1][1]:
                return x
    return math.inf


def mixture_quantile(mean_wait, p_wait, offsets, q: float):
    """The q-quantile of W + S_K (K drawn with the classes' probabilities), exactly.

    With the offsets sorted, s_1 <= ... <= s_K, on [s_j, s_j+1) the tail is
    ``A_j + B_j·exp(−(x − s_j)/θ)`` with ``A_j = Σ_{i>j} π_i`` (classes still in service),
    ``B_j = p·Σ_{i<=j} π_i·exp(−(s_j − s_i)/θ)`` and θ = W/p; the quantile lies in the first
    interval whose right end has tail <= 1 − q, at ``s_j + θ·ln(B_j / (1 − q − A_j))`` (or at
    s_j when the tail there is already low enough). Elements broadcast; classes are few."""
    p = xp.minimum(xp.maximum(p_wait, 1e-12), 1.0)
    if not any(xp.is_array(w, o) for w, o in offsets) and not xp.is_array(mean_wait, p):
        return _scalar_quantile(mean_wait, p, sorted(offsets, key=lambda c: c[1]), q)
    S = np.asarray(np.broadcast_arrays(*[np.asarray(o, dtype=float) for _, o in offsets]))
    pi = np.asarray(np.broadcast_arrays(*[np.asarray(w, dtype=float) for w, _ in offsets]))
    theta = np.maximum(np.asarray(mean_wait, dtype=float) / p, 1e-300)
    shape = np.broadcast_shapes(S.shape[1:], pi.shape[1:], theta.shape, np.shape(p))
    S, pi = (np.broadcast_to(a.reshape((len(a),) + (1,) * (len(shape) - a.ndim + 1) + a.shape[1:]),
                             (len(offsets),) + shape) for a in (S, pi))
    order = np.argsort(S, axis=0, kind="stable")
    S, pi = np.take_along_axis(S, order, 0), np.take_along_axis(pi, order, 0)
    theta, p = np.broadcast_to(theta, shape), np.broadcast_to(p, shape)
    live = np.broadcast_to(np.asarray(mean_wait) > 0, shape)
    out, found = np.zeros(S.shape[1:]), np.zeros(S.shape[1:], dtype=bool)
    B, A = np.zeros(S.shape[1:]), pi.sum(axis=0)
    for j in range(len(S)):
        if j:
            B = B * np.exp(-(S[j] - S[j - 1]) / theta)
        B, A = B + np.where(live, p, 0.0) * pi[j], A - pi[j]
        room = (1.0 - q) - A  # tail left to the wait inside this interval
        at_start = A + B <= 1.0 - q
        x = S[j] + theta * np.log(np.maximum(B, 1e-300) / np.maximum(room, 1e-300))
        end = S[j + 1] if j + 1 < len(S) else np.inf
        ok = ~found & (at_start | ((room > 0) & (x < end)))
        out = np.where(ok, np.where(at_start, S[j], x), out)
        found = found | ok
    return out if out.ndim else float(out)
