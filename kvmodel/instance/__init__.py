"""Layer 3: one serving instance — per-operator roofline (:mod:`._roofline`), cached-prefix
load vs recompute (:mod:`._prefix`), closed-form queueing (:mod:`._queueing`), the serving
modes and :func:`estimate` (:mod:`._estimate`), the load/recompute break-even in closed form
(:mod:`.breakeven`, sympy imported on first use) and the calibration against published
measurements (:mod:`.calibration`). :mod:`.seam` is what the simulator, the break-even and the
cluster layer share with the instance model (setup, checks, memory fit)."""

from kvmodel.instance._estimate import METRIC_FIELDS, METRICS, Estimate, estimate
from kvmodel.instance.breakeven import (
    break_even_bandwidth,
    break_even_context_len,
    break_even_formulas,
)

__all__ = ["estimate", "Estimate", "METRICS", "METRIC_FIELDS", "break_even_bandwidth",
           "break_even_context_len", "break_even_formulas"]
