"""kvmodel: analytical performance model of LLM serving with hierarchical KV caches.

Public API (everything a notebook needs)::

    import kvmodel
    e = kvmodel.estimate("llama-3.1-70b", "h100-sxm", tp=8, precision="fp8",
                         input_len=2048, output_len=128, batch=1)
    e.ttft_s, e.tpot_s, e.output_tok_per_s, e.breakdown

Hardware, models and calibration come from a :class:`Catalog` (default: the bundled
``hardware_db``); ``cat = kvmodel.Catalog.default().with_file("my_gpu.toml")`` adds a file,
and ``estimate(..., catalog=cat)`` / ``evaluate(cluster, workload, catalog=cat)`` use it.

The package is layered (``ARCHITECTURE.md``): ``catalog`` → ``tiers`` → ``instance`` →
``policies`` → ``workload`` → ``cluster`` | ``sim`` → ``search``. Every name here is imported on
first use, so ``import kvmodel`` stays light (numpy only); ``kvmodel.search`` imports Optuna,
``kvmodel.break_even_formulas`` sympy, only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_PUBLIC = {
    "estimate": "kvmodel.instance", "Estimate": "kvmodel.instance", "METRICS": "kvmodel.instance",
    "break_even_bandwidth": "kvmodel.instance", "break_even_context_len": "kvmodel.instance",
    "break_even_formulas": "kvmodel.instance",
    "Catalog": "kvmodel.catalog", "load_hardware": "kvmodel.catalog", "get_gpu": "kvmodel.catalog",
    "get_model": "kvmodel.catalog", "list_models": "kvmodel.catalog",
    "list_entries": "kvmodel.catalog", "load_hf_config": "kvmodel.catalog",
    "kv_bytes_per_token": "kvmodel.catalog", "ModelSpec": "kvmodel.catalog",
    "GPUSpec": "kvmodel.catalog", "HardwareDBError": "kvmodel.catalog",
    "Quantity": "kvmodel.catalog",
    "Tier": "kvmodel.tiers", "node_tiers": "kvmodel.tiers",
    "Trace": "kvmodel.workload", "load_trace": "kvmodel.workload",
    "synthetic_trace": "kvmodel.workload", "hit_ratio_curve": "kvmodel.workload",
    "place": "kvmodel.workload", "Placement": "kvmodel.workload",
    "Cluster": "kvmodel.cluster", "Workload": "kvmodel.cluster", "PoolSpec": "kvmodel.cluster",
    "P2PSpec": "kvmodel.cluster", "ClusterResult": "kvmodel.cluster",
    "evaluate": "kvmodel.cluster", "max_rate_at_slo": "kvmodel.cluster",
}
_SUBPACKAGES = ("catalog", "tiers", "instance", "policies", "workload", "cluster", "sim", "search")

# kept for existing notebooks, not part of the curated API (``dir(kvmodel)`` lists them too)
_MORE = {
    "get_link": "kvmodel.catalog", "get_memory": "kvmodel.catalog", "get_node": "kvmodel.catalog",
    "get_framework": "kvmodel.catalog", "use_catalog": "kvmodel.catalog",
    "LinkSpec": "kvmodel.catalog", "MemorySpec": "kvmodel.catalog", "NodeSpec": "kvmodel.catalog",
    "FrameworkSpec": "kvmodel.catalog", "TransferPath": "kvmodel.tiers",
    "TIER_KINDS": "kvmodel.tiers", "load_trace_with_report": "kvmodel.workload",
    "LoadReport": "kvmodel.workload", "ROUTING_POLICIES": "kvmodel.policies.routing",
    "RoutingPolicy": "kvmodel.policies.routing", "make_policy": "kvmodel.policies.routing",
}

__all__ = sorted(_PUBLIC) + ["validate", "sim", "search", "policies", "__version__"]


def validate(data: Any = None, calibration: Any = None) -> Any:
    """Run the model over a serving-measurement CSV (default: the calibration set); returns a
    :class:`~kvmodel.instance.calibration.ValidationReport`."""
    from kvmodel.instance.calibration import run_validation
    return run_validation(data, calibration=calibration) if calibration else run_validation(data)


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        value = importlib.import_module(f"kvmodel.{name}")
    elif name in _PUBLIC or name in _MORE:
        value = getattr(importlib.import_module(_PUBLIC.get(name) or _MORE[name]), name)
    else:
        raise AttributeError(f"module 'kvmodel' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | set(_MORE) | set(_SUBPACKAGES))
