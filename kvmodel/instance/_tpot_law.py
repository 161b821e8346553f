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
on the tail's normal score, once per law on a grid of the slow part's share, then
interpolated (:func:`tpot_quantiles`: a few numpy operations per call, any shape).
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from kvmodel.base import xp as xp

BAND_RATIO = 2.0 ** 0.5  # the width of an output-length band (ratio of its edges, in O − 1)
NEWTON_STEPS = 6  # converged to rounding on the tests' laws (5: 1e-9)


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
    var = np.asarray(step_var, float)[..., None] / n + np.asarray(slow_var, float)[..., None]
    return np.sqrt(np.maximum(var, 0.0))


def tpot_quantiles(mean, step_var, slow_var, law, qs: tuple) -> list:
    """The ``qs``-quantiles (each >= 0.5) of the mixture over ``law`` of normals with the
    common ``mean`` and the nodes' std. devs (:func:`node_sd`); scalars stay Python floats.

    With a + b = step_var + slow_var and u = slow_var / (a + b) a node's variance is
    (a + b)·((1 − u)/(O − 1) + u), so the quantile is mean + √(a + b)·Y_q(u): Y_q is solved
    once per law on a grid of log u (:func:`_table`) and interpolated."""
    if len(law[0]) == 1:  # one length: the plain normal
        sd = node_sd(step_var, slow_var, law)[..., 0]
        return [_float(mean + _z(q) * sd) for q in qs]
    grid, table, lists = _table(law, tuple(qs))
    if not xp.is_array(mean, step_var, slow_var):  # Python numbers: no numpy round trips
        tot = max(step_var + slow_var, 0.0)
        if not math.isfinite(tot) or not math.isfinite(mean):
            return [mean + tot for _ in qs]  # unstable: masked after
        x, r = math.log(max(slow_var / max(tot, 1e-300), U_MIN)), math.sqrt(tot)
        return [mean if q == 0.5 else mean + r * _interp(x, lists[0], y)
                for q, y in zip(qs, lists[1])]
    tot = np.maximum(np.asarray(step_var, float) + slow_var, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):  # unstable elements: masked after
        x = np.log(np.maximum(slow_var / np.maximum(tot, 1e-300), U_MIN))
        return [_float(mean + np.sqrt(tot) * np.interp(x, grid, y)) for y in table]


U_MIN = 1e-9  # below it the slow part moves no node's spread by more than 1e-6 (O <= 2000)
PER_DECADE = 64
_TABLES: dict = {}


def _interp(x: float, grid: list, y: list) -> float:
    """np.interp at one Python float over Python lists (``grid`` increasing)."""
    i = min(max(bisect.bisect_left(grid, x), 1), len(grid) - 1)
    g0, g1, y0 = grid[i - 1], grid[i], y[i - 1]
    return y0 + (y[i] - y0) * (min(max(x, g0), g1) - g0) / (g1 - g0)


def _float(v):
    return float(v) if np.ndim(v) == 0 else v


def _z(q: float) -> float:
    from scipy import special  # scipy only when a workload carries an output-length law
    return float(special.ndtri(q))


def _table(law, qs: tuple) -> tuple:
    """(log u grid, Y_q on it for each q, both again as Python lists) of ``law``, kept per
    law object (held: its id is not reused; a trace's law is one object)."""
    key = (id(law), qs)
    got = _TABLES.get(key)
    if got is not None and got[0] is law:
        return got[1]
    from scipy import special
    u = np.logspace(np.log10(U_MIN), 0.0, int(-np.log10(U_MIN) * PER_DECADE) + 1)
    sd = np.sqrt((1.0 - u)[:, None] / (law[1] - 1.0) + u[:, None])
    ys = []
    for q in qs:
        z = _z(q)
        # each node alone puts a lower bound on the tail: p·Φc(y/sd) <= 1 − q
        alone = special.ndtri(1.0 - np.minimum((1.0 - q) / np.maximum(law[0], 1e-300), 1.0))
        lo = np.maximum(np.max(sd * alone, axis=-1), z * sd.min(axis=-1))
        ys.append(_root(law[0], sd, lo, z * sd.max(axis=-1), q, special))
    if len(_TABLES) > 64:
        _TABLES.clear()
    grid = np.log(u)
    _TABLES[key] = (law, (grid, ys, (grid.tolist(), [y.tolist() for y in ys])))
    return _TABLES[key][1]


def _root(p, sd, lo, hi, q, special):
    """y with Σ p·Φc(y/sd) = 1 − q, inside [lo, hi] (the tail at lo is at least 1 − q, at hi
    at most): Newton steps on the tail's normal score G(y) = Φ⁻¹(1 − tail(y)) (linear for one
    node, nearly so for a mixture), kept inside the shrinking bracket."""
    z, y = float(special.ndtri(q)), lo
    for _ in range(NEWTON_STEPS):
        x = np.asarray(y)[..., None] / sd
        tail = np.sum(p * special.ndtr(-x), axis=-1)
        dens = np.sum(p * np.exp(-0.5 * x * x) / sd, axis=-1)
        G = -special.ndtri(np.clip(tail, 1e-300, 1.0))
        lo, hi = np.where(G < z, y, lo), np.where(G < z, hi, y)
        slope = dens / np.maximum(np.exp(-0.5 * G * G), 1e-300)  # G' (the 1/√(2π) cancel)
        step = y + (z - G) / np.maximum(slope, 1e-300)
        y = np.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi))
    return y
