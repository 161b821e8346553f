"""kvmodel: analytical performance model of LLM serving with hierarchical KV caches.

Public API (everything a notebook needs)::

    import kvmodel
    e = kvmodel.estimate("llama-3.1-70b", "h100-sxm", tp=8, precision="fp8",
                         input_len=2048, output_len=128, batch=1)
    e.ttft_s, e.tpot_s, e.output_tok_per_s, e.breakdown

Hardware, models and calibration come from a :class:`Catalog` (default: the bundled
``hardware_db``); ``cat = kvmodel.Catalog.default().with_file("my_gpu.toml")`` adds a file,
and ``estimate(..., catalog=cat)`` / ``evaluate(cluster, workload, catalog=cat)`` use it.
"""

from ._estimate import METRICS, Estimate, estimate
from ._schema import HardwareDBError, Quantity
from .hardware import (Catalog, FrameworkSpec, GPUSpec, LinkSpec, MemorySpec, NodeSpec,
                       get_framework, get_gpu, get_link, get_memory, get_node, list_entries,
                       load_hardware, use_catalog)
from .models import ModelSpec, get_model, kv_bytes_per_token, list_models, load_hf_config
from .tiers import TIER_KINDS, Tier, TransferPath, node_tiers
from ._trace_types import Trace
from .traces import LoadReport, load_trace, load_trace_with_report, synthetic_trace
from .reuse import hit_ratio_curve
from .placement import Placement, place
from . import sim
from .routing import ROUTING_POLICIES, RoutingPolicy, make_policy
from .cluster import Cluster, ClusterResult, P2PSpec, PoolSpec, Workload, evaluate
from .breakeven import break_even_bandwidth, break_even_context_len, break_even_formulas

__version__ = "0.1.0"

__all__ = [
    "estimate", "Estimate", "METRICS", "validate",
    "get_model", "list_models", "load_hf_config", "kv_bytes_per_token", "ModelSpec",
    "get_gpu", "get_link", "get_memory", "get_node", "get_framework", "list_entries",
    "load_hardware", "Catalog", "use_catalog", "GPUSpec", "LinkSpec", "MemorySpec", "NodeSpec", "FrameworkSpec",
    "HardwareDBError", "Quantity", "__version__",
    "node_tiers", "Tier", "TransferPath", "TIER_KINDS",
    "Trace", "load_trace", "load_trace_with_report", "LoadReport", "synthetic_trace",
    "hit_ratio_curve", "place", "Placement", "sim",
    "ROUTING_POLICIES", "RoutingPolicy", "make_policy",
    "Cluster", "ClusterResult", "PoolSpec", "P2PSpec", "Workload", "evaluate", "break_even_bandwidth", "break_even_context_len", "break_even_formulas",
]


def validate(data=None):
    """Run the model over a serving-measurement CSV; returns a :class:`ValidationReport`."""
    from ._validate import run_validation
    return run_validation(data)
