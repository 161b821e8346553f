"""Per-request TPOT over a workload's output lengths.

A request with O output tokens has O − 1 decode steps after its first token; its TPOT (as
:mod:`kvmodel.sim` defines it: (last token − first token) / (O − 1), requests with O = 1 left
out) is the mean of those steps. Its spread around the common mean TPOT is normal with
variance ``step_var / (O − 1) + slow_var``: the step-kind noise averages over the request's
own steps, the slow drift of the batch size (one level per request window) does not. Over a
trace's output lengths the per-request law is the mixture of those normals, weighted by the
requests' shares; short outputs average few steps, so one step carrying a prefill chunk
decides their TPOT and the mixture's tail (15 % of the Mooncake conversation trace has 2–50
output tokens).

The output-length law is a fixed small quadrature, computed once per trace
(:func:`output_law`): bands of O − 1 in steps of √2, each node at its band's harmonic mean of
O − 1 (which keeps the band's mean of 1 / (O − 1), the variance's weight) and weighted by its
share of the requests with O >= 2. Quantiles of the mixture by a bracketed Newton iteration
on the log tail (:func:`tpot_quantiles`), vectorised over configurations and nodes.
"""

from __future__ import annotations

import numpy as np

from kvmodel.base import xp as xp

BAND_RATIO = 2.0 ** 0.5  # the width of an output-length band (ratio of its edges, in O − 1)
NEWTON_STEPS = 8


def output_law(lengths) -> tuple[np.ndarray, np.ndarray] | None:
    """(probabilities, output lengths) of the quadrature nodes of a trace's output lengths
    (requests with one output token have no TPOT and are left out); None without a request
    of two or more output tokens."""
    n = np.asarray(lengths, dtype=float).ravel() - 1.0
    n = n[n >= 1.0]
    if not len(n):
        return None
    edges = BAND_RATIO ** np.arange(0, int(np.ceil(np.log(n.max()) / np.log(BAND_RATIO))) + 2)
    band = np.searchsorted(edges, n, side="right")
    count = np.bincount(band)
    inv = np.bincount(band, weights=1.0 / n)
    used = count > 0
    return count[used] / len(n), count[used] / inv[used] + 1.0


def check_output_law(law) -> tuple[np.ndarray, np.ndarray] | None:
    """``law`` validated: None, or (probabilities, output lengths) as two equal-length 1-D
    float arrays, probabilities >= 0 summing to 1 and lengths >= 2 (the last law checked is
    kept: a cluster passes its trace's law to every estimate)."""
    if law is None:
        return None
    last = _LAST[0]
    if last is not None and last[0] is law:
        return last[1]
    out = _checked(law)
    _LAST[0] = (law, out)  # the law is held, so its id is not reused
    return out


_LAST: list = [None]


def _checked(law) -> tuple[np.ndarray, np.ndarray]:
    try:
        p, length = (np.asarray(x, dtype=float) for x in law)
    except (TypeError, ValueError):
        raise ValueError(f"output_law={law!r}: expected (probabilities, output lengths)") from None
    if p.ndim != 1 or p.shape != length.shape or not len(p):
        raise ValueError(f"output_law: probabilities {p.shape} and output lengths "
                         f"{length.shape} must be 1-D and of one length >= 1")
    if not (np.all(np.isfinite(p)) and np.all(p >= 0.0) and abs(p.sum() - 1.0) <= 1e-9):
        raise ValueError(f"output_law: probabilities {p.tolist()} must be >= 0 and sum to 1")
    if not (np.all(np.isfinite(length)) and np.all(length >= 2.0)):
        raise ValueError(f"output_law: output lengths {length.tolist()} must be >= 2 (a request "
                         "with one output token has no TPOT)")
    return p, length


def node_sd(step_var, slow_var, law):
    """Std. dev. of each node's per-request TPOT, shape ``shape(step_var) + (nodes,)``."""
    n = law[1] - 1.0
    return np.sqrt(np.asarray(step_var, float)[..., None] / n + np.asarray(slow_var, float)[..., None])


def tpot_quantiles(mean, step_var, slow_var, law, qs: tuple) -> list:
    """The ``qs``-quantiles (each >= 0.5) of the mixture over ``law`` of normals with the
    common ``mean`` and the nodes' std. devs (:func:`node_sd`); scalars stay Python floats."""
    from scipy import special  # scipy only when a workload carries an output-length law
    sd = node_sd(step_var, slow_var, law)
    p = law[0]
    lo, hi = sd.min(axis=-1), sd.max(axis=-1)
    out = []
    for q in qs:
        z = float(special.ndtri(q))
        y = _root(p, sd, z * lo, z * hi, np.log1p(-q), special) if len(p) > 1 else z * hi
        v = mean + y
        out.append(float(v) if np.ndim(v) == 0 else v)
    return out


def _root(p, sd, lo, hi, target, special):
    """y with log Σ p·Φc(y/sd) = ``target``, inside [lo, hi] (the tail at lo is at least the
    target, at hi at most): Newton steps on the log tail, kept inside the shrinking bracket."""
    y = 0.5 * (lo + hi)
    for _ in range(NEWTON_STEPS):
        x = np.asarray(y)[..., None] / sd
        tail = np.sum(p * special.ndtr(-x), axis=-1)
        dens = np.sum(p * np.exp(-0.5 * x * x) / sd, axis=-1) * 0.3989422804014327
        g = np.log(np.maximum(tail, 1e-300)) - target
        lo, hi = np.where(g > 0, y, lo), np.where(g > 0, hi, y)
        step = y + g * tail / np.maximum(dens, 1e-300)
        y = np.where((step > lo) & (step < hi), step, 0.5 * (lo + hi))
    return y
