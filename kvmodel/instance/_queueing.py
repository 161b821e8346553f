"""Closed-form queueing used by the serving modes (all vectorised, SI units).

* ``mg1_wait``: Pollaczek–Khinchine mean wait of M/G/1, ``λ·E[S²] / (2(1 − ρ))``.
* ``kingman_wait``: G/G/1 heavy-traffic (Kingman) mean wait, ``(c_a² + c_s²)/2 · ρ/(1−ρ) · E[S]``;
  exact for M/M/1 and M/D/1 (c_a = 1; c_s = 1 or 0).
* ``erlang_c``: probability that an arrival waits in M/M/c with offered load ``a = λ/μ``,
  through Erlang B = Poisson pmf(c; a) / cdf(c; a) (stable for thousands of servers).
* ``allen_cunneen_wait``: G/G/c mean wait, ``C(c, a) / (cμ − λ) · (c_a² + c_s²)/2``.
* ``sum_wait_law``: two independent waits of that law as one, with the sum's mean and
  second moment.
* ``wait_quantile``: the q-quantile of a wait that is 0 with probability ``1 − p`` and otherwise
  exponential with mean ``W/p`` (exact for M/M/1 and M/M/c; the usual approximation otherwise).
"""

from __future__ import annotations

import numpy as np

from kvmodel.base import xp as xp

__all__ = ["mg1_wait", "kingman_wait", "erlang_c", "allen_cunneen_wait", "wait_quantile", "sum_wait_law",
           "normal_quantile", "normal_cdf", "QUANTILES"]

QUANTILES = (0.5, 0.9, 0.99)


def mg1_wait(lam, ES, ES2):
    rho = lam * ES
    return lam * ES2 / (2.0 * (1.0 - rho))


def kingman_wait(rho, ca2, cs2, ES):
    return (ca2 + cs2) / 2.0 * rho / (1.0 - rho) * ES


def erlang_c(c, a):
    """P(wait) in M/M/c; ``c`` servers (>= 1), offered load ``a`` < c."""
    from scipy import special  # scipy only when a queue needs it
    c = np.floor(np.asarray(c, dtype=float))
    a = np.asarray(a, dtype=float)
    log_pmf = c * np.log(np.maximum(a, 1e-300)) - a - special.gammaln(c + 1.0)
    B = np.exp(log_pmf) / np.maximum(special.pdtr(c, a), 1e-300)
    C = B / (1.0 - a / c * (1.0 - B))
    C = np.where(a <= 0, 0.0, np.minimum(C, 1.0))
    return C if C.ndim else float(C)


def allen_cunneen_wait(c, a, mu, ca2, cs2):
    return erlang_c(c, a) / (c * mu - a * mu) * (ca2 + cs2) / 2.0


def sum_wait_law(w1, p1, w2, p2):
    """The sum of two independent waits, each 0 w.p. 1 − p_i else exponential with mean
    w_i/p_i, read as one such law with the sum's mean W = w1 + w2 and second moment
    ``E[W²] = 2w1²/p1 + 2w2²/p2 + 2w1·w2``: mean wait ``W`` and probability
    ``p = 2W²/E[W²]`` (at most 1). With one wait zero it is the other exactly; the tail
    follows the longer of the two conditional waits where that one carries the mass.
    An infinite wait (an unstable queue) makes the sum infinite for every arrival: ``W = inf``,
    ``p = 1``, so each quantile is infinite too. Both are computed without an invalid
    operation (no ``0/0``, ``inf/inf`` or ``0·inf``), scalars and arrays alike.
    Returns ``(W, p)``."""
    W = w1 + w2
    finite = W < np.inf
    a1, a2 = xp.where(finite, w1, 0.0), xp.where(finite, w2, 0.0)  # keep inf out of the law
    second = _wait_m2(a1, p1) + _wait_m2(a2, p2) + 2.0 * a1 * a2
    p = xp.where(W > 0, 2.0 * (a1 + a2) ** 2 / xp.maximum(second, 1e-300), xp.maximum(p1, p2))
    return W, xp.where(finite, xp.minimum(p, 1.0), 1.0)


def _wait_m2(w, p):
    """Second moment ``2w²/p`` of a wait that is 0 w.p. 1 − p else exponential with mean
    w/p (0 where the wait is 0)."""
    return xp.where(w > 0, 2.0 * w * w / xp.maximum(p, 1e-300), 0.0)


def wait_quantile(mean_wait, p_wait, q: float):
    """q-quantile of a wait: 0 w.p. 1 - p_wait, else exponential with mean mean_wait / p_wait."""
    p = xp.minimum(xp.maximum(p_wait, 1e-12), 1.0)
    tail = (mean_wait / p) * np.log(xp.maximum(p / (1.0 - q), 1.0))
    return xp.where(mean_wait > 0, tail, 0.0 * mean_wait)


def normal_cdf(x):
    """Standard normal distribution function, element-wise."""
    from scipy import special  # scipy only when a queue needs it
    out = special.ndtr(x)
    return out if np.ndim(out) else float(out)


def normal_quantile(q: float) -> float:
    from scipy import special  # scipy only when a queue needs it
    return float(special.ndtri(q))
