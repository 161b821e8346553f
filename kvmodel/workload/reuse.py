"""Prefix-cache hit ratio vs capacity: exact (trace replay, one pass for LRU) or analytic.

``hit_ratio_curve(trace, capacities_blocks, instances=1, routing="single", seed=0,
method="exact", eviction="lru", epsilon=0.25)`` returns the block hit ratio at each total
capacity (in blocks). Semantics of the exact method: requests in file order, served instantly;
a request hits the longest prefix of its block-hash chain resident on its instance; its blocks
are then refreshed deepest-first (radix-tree eviction order); N instances each hold C/N blocks.
``method="analytic"`` uses a TTL (Che) approximation on a reuse profile extracted once from
the trace (pass a :class:`ReuseProfile` to skip the extraction).
"""

from __future__ import annotations

from typing import Any

from kvmodel.workload._reuse_exact import EVICTION_POLICIES, ROUTINGS, exact_hit_ratio_curve

__all__ = ["hit_ratio_curve", "ROUTINGS", "EVICTION_POLICIES", "METHODS"]

METHODS = ("exact", "analytic")


def hit_ratio_curve(trace: Any, capacities_blocks: Any, instances: int = 1, routing: str = "single",
                    seed: int = 0, method: str = "exact", eviction: str = "lru",
                    epsilon: float = 0.25):
    """Block hit ratio at each total capacity (see the module docstring)."""
    if method == "exact":
        return exact_hit_ratio_curve(trace, capacities_blocks, instances=instances, routing=routing,
                                     seed=seed, eviction=eviction, epsilon=epsilon)
    if method == "analytic":
        if eviction != "lru":
            raise ValueError(f"eviction={eviction!r}: the analytic method models LRU only")
        from kvmodel.workload._reuse_analytic import analytic_hit_ratio_curve
        return analytic_hit_ratio_curve(trace, capacities_blocks, instances=instances,
                                        routing=routing, seed=seed, epsilon=epsilon)
    raise ValueError(f"method={method!r}; allowed: {METHODS}")
