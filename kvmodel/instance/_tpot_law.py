"""Per-request TPOT over a workload's output lengths.

A request with O output tokens has O − 1 decode steps after its first token; its TPOT (as
:mod:`kvmodel.sim` defines it: (last token − first token) / (O − 1), requests with O = 1 left
out) is the mean of those steps. Its spread around the common mean TPOT is normal with
variance ``step_var·steps_factor(O − 1, m) / (O − 1) + slow_var``: the step times' noise
averages over the request's own steps, which are AR(1) with lag-one correlation m under the
step-to-step law (:func:`kvmodel.instance._openloop.step_memory`: a long step lets more
prompts into the next, so a request's slow steps bunch), and the slow drift of the batch
size (one level per request window) does not average. Against :mod:`kvmodel.sim` (32 x 70B
TP8, sglang, Mooncake conversation at 64.67 req/s), the per-request sd by output length,
closed / simulated, ms: 3 tokens 48 / 46, 11-20 26 / 31, 51-100 12 / 15, 201-400 6.3 / 6.4,
401-800 4.6 / 5.5 (independent steps: 49, 18, 8.2, 4.3, 3.3). Over a
trace's output lengths the per-request law is the mixture of those normals, weighted by the
requests' shares; short outputs average few steps, so one step carrying a prefill chunk
decides their TPOT and the mixture's tail (15 % of the Mooncake conversation trace has 2–50
output tokens).

The output-length law is a fixed small quadrature, computed once per trace
(:func:`output_law`): bands of O − 1 in steps of √2, each node at its band's harmonic mean of
O − 1 (which keeps the band's mean of 1 / (O − 1), the variance's weight) and weighted by its
share of the requests with O >= 2. Quantiles of the mixture by a bracketed Newton iteration
on the tail's normal score, once per law on a grid of the slow part's share and of m, then
interpolated (:func:`tpot_quantiles`: a few operations per call, any shape).
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from kvmodel.base import xp as xp

BAND_RATIO = 2.0 ** 0.5  # the width of an output-length band (ratio of its edges, in O − 1)
NEWTON_STEPS = 6  # converged to rounding on the tests' laws (5: 1e-9)
SHIFTED_STEPS = 5  # nodes with their own means (a router's left-behind prefill): 1e-9


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


def steps_factor(n, m):
    """Var(mean of n steps)·n / Var(step) for AR(1) steps with lag-k correlation m^k:
    1 + 2·Σ_{k<n} (1 − k/n)·m^k = (1 + m)/(1 − m) − 2m(1 − m^n)/(n(1 − m)²); 1 at m = 0 or
    n = 1, (1 + m)/(1 − m) for long windows."""
    n, m = np.asarray(n, float), np.asarray(m, float)
    with np.errstate(under="ignore"):  # m^n of a long window: 0
        out = (1.0 + m) / (1.0 - m) - 2.0 * m * (1.0 - m ** n) / (n * (1.0 - m) ** 2)
    return out if out.ndim else float(out)


def pulse_excess(n, k):
    """Excess variance of the prompt work in a window of n steps when each prompt's k chunks
    come in k consecutive steps (a pulse) rather than as k independent chunks:
    F(n, k)/(n·k) − 1, F the summed squared overlap of a k-step pulse with the n-step window
    over its start steps, ``(M − μ + 1)·μ² + (μ − 1)·μ·(2μ − 1)/3`` (μ = min(n, k), M =
    max(n, k); symmetric in n and k). 0 for one step or one chunk, k − 1 for long windows."""
    lo = np.minimum(np.asarray(n, float), np.asarray(k, float))
    hi = np.maximum(np.asarray(n, float), np.asarray(k, float))
    f = (hi - lo + 1.0) * lo * lo + (lo - 1.0) * lo * (2.0 * lo - 1.0) / 3.0
    out = np.maximum(f / (lo * hi) - 1.0, 0.0)
    return out if out.ndim else float(out)


def router_terms(smooth) -> tuple:
    """(burst, behind) of a router that steers share ``smooth`` of the prompt work by the
    instances' routed work (None: a lone instance, the law as calibrated: (0, 1)).

    - burst = 1 − smooth, the weight of :func:`pulse_excess` in :func:`request_var`: the
      unsteered prompts reach an instance as a random sample, each landing whole (k chunks in
      consecutive steps) in the windows of the requests decoding there.
    - behind = 1 − smooth, the share of the prefill left behind a request's first token
      (:func:`kvmodel.instance._openloop.left_behind`) that stays: a work-steered prompt
      goes to an instance with less routed work, not to one busy with a long prompt.

    Against :mod:`kvmodel.sim` (32 x 70B TP8 fp8, Mooncake conversation, full trace): the
    prompt tokens per second an instance runs during a request's decode window explain
    70-85 % of the per-request TPOT variance under both routers; over the ~9 s windows of
    201-800-token requests that rate's variance is 0.64 (round robin, 29.5 req/s) and 0.22
    (sglang, 45.3 req/s) of a compound-renewal sample of the instance's prompts (0.68 / 0.30
    on 8 instances at 7.3 req/s); sglang's mean TPOT is its mean step (32.1 vs 33.2 ms at
    64.7 req/s: nothing left behind), round robin's is 1.5x its mean step (114 vs 65 ms).
    """
    if smooth is None:
        return 0.0, 1.0
    return 1.0 - smooth, 1.0 - smooth


def request_var(step_var, slow_var, O, m=0.0, burst=0.0, chunks=1.0):
    """Variance of one request's TPOT, the mean of its O − 1 (at least 1) steps; with
    ``burst`` > 0 (the router's share of unsmoothed prompt work, :func:`router_terms`) the
    steps' part grows by ``burst·pulse_excess(O − 1, chunks)`` (a prompt's ``chunks`` chunks
    land in consecutive steps of one instance, so a window of many steps sees whole prompts)."""
    n = xp.maximum(O - 1.0, 1.0)
    steps = step_var * steps_factor(n, m) / n
    if not xp.is_array(burst, chunks) and (burst <= 0.0 or chunks <= 1.0):
        return steps + slow_var
    return steps * (1.0 + burst * pulse_excess(n, chunks)) + slow_var


def node_sd(step_var, slow_var, law, m=0.0):
    """Std. dev. of each node's per-request TPOT, shape ``shape(step_var) + (nodes,)``."""
    ex = lambda v: np.asarray(v, float)[..., None]  # noqa: E731
    return np.sqrt(np.maximum(request_var(ex(step_var), ex(slow_var), law[1], ex(m)), 0.0))


def tpot_quantiles(mean, step_var, slow_var, law, qs: tuple, m=0.0, pulses=None) -> list:
    """The ``qs``-quantiles (each >= 0.5) of the mixture over ``law`` of normals with the
    common ``mean`` and the nodes' std. devs (:func:`node_sd`; ``m``: the steps' lag-one
    correlation); scalars stay Python floats. ``pulses``: (burst, chunks) of
    :func:`request_var` (None, or a burst of 0: the tabulated law below; else
    :func:`_pulsed_quantiles`).

    With a = step_var·κ (κ = (1 + m)/(1 − m), the long window's factor), h = steps_factor /
    (κ·(O − 1)) and u = slow_var / (a + slow_var), a node's variance is (a + slow_var)·((1 −
    u)·h + u), so the quantile is mean + √(a + slow_var)·Y_q(u, m): Y_q is solved once per
    law on a grid of (log u, log(1 − m)) (:func:`_table`) and interpolated bilinearly."""
    if pulses is not None and pulses[1] is not None and (
            xp.is_array(pulses[0]) or pulses[0] > 0.0) and (
            xp.is_array(pulses[1]) or pulses[1] > 1.0 or _behind(pulses)):
        # a one-chunk prompt has no pulse (pulse_excess(n, 1) = 0) but still leaves prefill
        # behind a first token: the table would drop that term (and the choice would turn on
        # the last bit of a mean chunk count of 1)
        return _pulsed_quantiles(mean, step_var, slow_var, law, qs, m, pulses)
    if len(law[0]) == 1:  # one length: the plain normal
        sd = node_sd(step_var, slow_var, law, m)[..., 0]
        return [_float(mean + _z(q) * sd) for q in qs]
    grids, table = _table(law, tuple(qs))
    if not xp.is_array(mean, step_var, slow_var, m):  # Python numbers: no numpy round trips
        return _scalar_quantiles(mean, step_var, slow_var, m, grids, table)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # unstable: masked
        m = np.clip(np.asarray(m, float), 0.0, M_MAX)
        tot = np.maximum(step_var * (1.0 + m) / (1.0 - m) + slow_var, 0.0)
        x = np.log(np.maximum(slow_var / np.maximum(tot, 1e-300), U_MIN))
        w = np.log(1.0 - m)
        return [_float(mean + np.sqrt(tot) * _bilinear(x, w, grids, y)) for y in table[0]]


def _behind(pulses) -> bool:
    """Whether ``pulses`` carries a left-behind law (its third entry, :func:`behind_nodes`)."""
    return len(pulses) > 2 and pulses[2] is not None


def _pulsed_quantiles(mean, step_var, slow_var, law, qs: tuple, m, pulses) -> list:
    """:func:`tpot_quantiles` behind a router (``pulses`` = (burst, chunks, left-behind law or
    None), :func:`request_var` and :func:`behind_nodes`): the nodes' std. devs no longer scale
    as one family and their means move, so the mixture's tail is solved directly
    (:func:`_root`, bracketed by each node alone and by the widest)."""
    from scipy import special
    def ex(v):  # numbers stay numbers (a cluster's scalar call: fewer array round trips)
        return float(v) if isinstance(v, (float, int)) else np.asarray(v, float)[..., None]
    m = min(max(float(m), 0.0), M_MAX) if isinstance(m, (float, int)) else np.clip(
        np.asarray(m, float), 0.0, M_MAX)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # unstable: masked
        var = request_var(ex(step_var), ex(slow_var), law[1], ex(m), ex(pulses[0]),
                          ex(pulses[1]))
        shift, extra = (0.0, 0.0) if len(pulses) < 3 or pulses[2] is None else behind_nodes(
            tuple(ex(v) for v in pulses[2]), law[1])
        var = np.where(np.isfinite(var + extra), var + extra, 0.0)
        sd = np.sqrt(np.maximum(var, 1e-300))
        mu = np.where(np.isfinite(shift), shift, 0.0) * np.ones_like(sd)
        bad = ~np.isfinite(np.asarray(mean + step_var + slow_var, float))
        z = np.asarray([_z(q) for q in qs]).reshape((-1,) + (1,) * np.ndim(sd))
        tail = np.asarray([1.0 - q for q in qs]).reshape(z.shape)
        # each node alone puts a lower bound on the tail: p·Φc((y − μ)/sd) <= 1 − q
        alone = special.ndtri(1.0 - np.minimum(tail / np.maximum(law[0], 1e-300), 1.0))
        lo = np.maximum(np.max(mu + sd * alone, axis=-1), np.min(mu + z * sd, axis=-1))
        y = _root(law[0], sd, lo, np.max(mu + z * sd, axis=-1), z[..., 0], special, mu)
        return [_float(np.where(bad, np.inf, mean + yq)) for yq in y]


def behind_nodes(lb, O):
    """(mean shift, extra variance) of each output length's TPOT from the prefill left behind
    its first token, ``lb`` = (B̄ busy steps on average, M prompts behind on average, a busy
    step's extra seconds h, the reference output length whose shift the mean already holds):
    B busy steps are 0 w.p. e^(−M), else exponential with mean μ = B̄/(1 − e^(−M)); a
    request of n = O − 1 steps turns min(B, n) of them busy: shift h·E[min(B, n)]/n, less the
    reference's, variance h²·Var(min(B, n))/n² (short requests land in the backlog; long ones
    average it away)."""
    B, M, h, O_ref = lb
    p = 1.0 - np.exp(-np.maximum(M, 0.0))
    mu = np.maximum(B / np.maximum(p, 1e-300), 1e-300)

    def moments(n):
        e = np.exp(-n / mu)
        e1 = p * mu * (1.0 - e)
        return e1, p * (2.0 * mu * mu * (1.0 - e) - 2.0 * mu * n * e)
    n, n_ref = np.maximum(np.asarray(O, float) - 1.0, 1.0), np.maximum(O_ref - 1.0, 1.0)
    e1, e2 = moments(n)
    shift = h * (e1 / n - moments(n_ref)[0] / n_ref)
    return shift, h * h * np.maximum(e2 - e1 * e1, 0.0) / (n * n)


def _scalar_quantiles(mean, step_var, slow_var, m, grids, table) -> list:
    """:func:`tpot_quantiles` of Python numbers over the table's Python lists."""
    m = min(max(float(m), 0.0), M_MAX)
    tot = max(step_var * (1.0 + m) / (1.0 - m) + slow_var, 0.0)
    if not (math.isfinite(tot) and math.isfinite(mean)):
        return [mean + tot for _ in table[1]]  # unstable: masked after
    x, w, r = math.log(max(slow_var / max(tot, 1e-300), U_MIN)), math.log(1.0 - m), tot ** 0.5
    gx, nw = grids[2], grids[3]
    i = min(max(bisect.bisect_left(gx, x), 1), len(gx) - 1)
    j = min(max(bisect.bisect_left(nw, -w), 1), len(nw) - 1)
    fx = min(max((x - gx[i - 1]) / (gx[i] - gx[i - 1]), 0.0), 1.0)
    fw = min(max((-w - nw[j - 1]) / (nw[j] - nw[j - 1]), 0.0), 1.0)
    out = []
    for y in table[1]:
        a, b = y[j - 1], y[j]
        top = a[i - 1] + fx * (a[i] - a[i - 1])
        out.append(mean + r * (top + fw * (b[i - 1] + fx * (b[i] - b[i - 1]) - top)))
    return out


U_MIN = 1e-9  # below it the slow part moves no node's spread by more than 1e-6 (O <= 2000)
M_MAX = 0.999  # the step law's largest lag-one correlation (_openloop.step_memory's cap)
U_PER_DECADE, M_PER_DECADE = 32, 24
_TABLES: dict = {}


def _bilinear(x, w, grids, y):
    """``y`` (rows: log(1 − m) grid, columns: log u grid) at (x = log u, w = log(1 − m))."""
    gx, gw = grids[:2]
    i = np.clip(np.searchsorted(gx, x), 1, len(gx) - 1)
    j = np.clip(np.searchsorted(-gw, -w), 1, len(gw) - 1)  # gw decreasing
    fx = np.clip((x - gx[i - 1]) / (gx[i] - gx[i - 1]), 0.0, 1.0)
    fw = np.clip((w - gw[j - 1]) / (gw[j] - gw[j - 1]), 0.0, 1.0)
    top = y[j - 1, i - 1] + fx * (y[j - 1, i] - y[j - 1, i - 1])
    bottom = y[j, i - 1] + fx * (y[j, i] - y[j, i - 1])
    return top + fw * (bottom - top)


def _float(v):
    return float(v) if np.ndim(v) == 0 else v


def _z(q: float) -> float:
    from scipy import special  # scipy only when a workload carries an output-length law
    return float(special.ndtri(q))


def _table(law, qs: tuple) -> tuple:
    """((log u grid, log(1 − m) grid, the same as Python lists, the second negated), (Y_q on
    them for each q, the same as nested lists)) of ``law``, kept per law object (held: its
    id is not reused; a trace's law is one object)."""
    key = (id(law), qs)
    got = _TABLES.get(key)
    if got is not None and got[0] is law:
        return got[1]
    from scipy import special
    u = np.logspace(np.log10(U_MIN), 0.0, int(-np.log10(U_MIN) * U_PER_DECADE) + 1)
    dec = -np.log10(1.0 - M_MAX)
    m = 1.0 - np.logspace(0.0, -dec, int(round(dec * M_PER_DECADE)) + 1)
    n = law[1] - 1.0
    h = steps_factor(n, m[:, None]) * (1.0 - m[:, None]) / ((1.0 + m[:, None]) * n)
    sd = np.sqrt((1.0 - u)[None, :, None] * h[:, None, :] + u[None, :, None])
    ys = []
    for q in qs:
        z = _z(q)
        # each node alone puts a lower bound on the tail: p·Φc(y/sd) <= 1 − q
        alone = special.ndtri(1.0 - np.minimum((1.0 - q) / np.maximum(law[0], 1e-300), 1.0))
        lo = np.maximum(np.max(sd * alone, axis=-1), z * sd.min(axis=-1))
        ys.append(_root(law[0], sd, lo, z * sd.max(axis=-1), q, special))
    if len(_TABLES) > 64:
        _TABLES.clear()
    gx, gw = np.log(u), np.log(1.0 - m)
    _TABLES[key] = (law, ((gx, gw, gx.tolist(), (-gw).tolist()), (ys, [y.tolist() for y in ys])))
    return _TABLES[key][1]


def _root(p, sd, lo, hi, q, special, mu=0.0):
    """y with Σ p·Φc((y − mu)/sd) = 1 − q, inside [lo, hi] (the tail at lo is at least 1 − q,
    at hi at most): Newton steps on the tail's normal score G(y) = Φ⁻¹(1 − tail(y)) (linear
    for one node, nearly so for a mixture), kept inside the shrinking bracket. ``q`` a
    quantile, or (shifted nodes ``mu``) the normal scores z of several, stacked in front."""
    z = float(special.ndtri(q)) if np.ndim(mu) == 0 else q
    y = lo
    for _ in range(NEWTON_STEPS if np.ndim(mu) == 0 else SHIFTED_STEPS):
        x = (np.asarray(y)[..., None] - mu) / sd
        tail = np.sum(p * special.ndtr(-x), axis=-1)
        dens = np.sum(p * np.exp(-0.5 * x * x) / sd, axis=-1)
        G = -special.ndtri(np.clip(tail, 1e-300, 1.0))
        lo, hi = np.where(G < z, y, lo), np.where(G < z, hi, y)
        slope = dens / np.maximum(np.exp(-0.5 * G * G), 1e-300)  # G' (the 1/√(2π) cancel)
        step = y + (z - G) / np.maximum(slope, 1e-300)
        y = np.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi))
    return y
