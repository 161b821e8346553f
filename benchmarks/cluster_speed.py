"""Speed of the closed-form cluster model: microseconds per evaluate() of a 16-instance cluster
with local tiers and P2P sharing (after the workload's reuse profile is extracted once), then
configurations per second of one vectorised evaluate() over 10^5 local-tier configurations
(arrays of dram_B / cxl_B / ssd_B / hbm_cache_fraction).

    python benchmarks/cluster_speed.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import kvmodel
from kvmodel.cluster import Cluster, Workload, evaluate

TRACE = "mooncake-conversation"  # built-in trace (kvmodel traces)
SETUPS = (("none", "round_robin"), ("central_pool", "round_robin"),
          ("p2p", "prefix_affinity_bounded"), ("p2p", "random"))
GRID = 100_000


def _grid(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n random local-tier configurations per instance (30 % without CXL)."""
    rng = np.random.default_rng(seed)
    return dict(dram_B=10 ** rng.uniform(10, 12.5, n),
                cxl_B=np.where(rng.random(n) < 0.3, 0.0, 10 ** rng.uniform(10, 12.5, n)),
                ssd_B=10 ** rng.uniform(11, 13.5, n), hbm_cache_fraction=rng.uniform(0, 0.9, n))


def main() -> None:
    trace = kvmodel.load_trace(TRACE)
    w = Workload(trace, request_rate=6.0)
    t0 = time.perf_counter()
    w.profile
    print(f"reuse profile (once): {time.perf_counter() - t0:.2f} s")
    for sharing, routing in SETUPS:
        c = Cluster("llama-3.1-70b", "h100-sxm", instances=16, tp=8, sharing=sharing,
                    routing=routing, dram_B=1e12)
        evaluate(c, w)  # builds the routing tables once
        times = []
        for _ in range(200):
            t = time.perf_counter()
            evaluate(c, w)
            times.append(time.perf_counter() - t)
        print(f"16 instances, {sharing:12s} {routing:24s} {statistics.median(times) * 1e6:8.0f} us")
    grid = _grid(GRID)
    for sharing, routing in SETUPS:
        c = Cluster("llama-3.1-70b", "h100-sxm", instances=16, tp=8, sharing=sharing,
                    routing=routing, **grid)
        evaluate(c, w)  # warm-up
        times = []
        for _ in range(5):
            t = time.perf_counter()
            evaluate(c, w)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(f"16 instances, {sharing:12s} {routing:24s} vectorised, {GRID:.0e} configs: "
              f"{med:6.3f} s, {GRID / med:9,.0f} configs/s")


if __name__ == "__main__":
    main()
