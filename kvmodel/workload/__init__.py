"""Layer 5: workloads and reuse — request traces (:mod:`.traces`: loaders, the built-in public
traces, synthetic traces), reuse profiles and hit-ratio curves (analytic, exact replay, one curve
per eviction policy), and the multi-tier :func:`place` of those hits."""

from kvmodel.workload._trace_types import Trace
from kvmodel.workload.placement import Placement, place
from kvmodel.workload.reuse import hit_ratio_curve
from kvmodel.workload.traces import (
    BUILTIN,
    LoadReport,
    load_trace,
    load_trace_with_report,
    synthetic_trace,
)

__all__ = ["Trace", "load_trace", "load_trace_with_report", "LoadReport", "synthetic_trace",
           "BUILTIN", "hit_ratio_curve", "place", "Placement"]
