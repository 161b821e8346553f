"""Speed of the closed-form cluster model: microseconds per evaluate() of a 16-instance cluster
with local tiers and P2P sharing (after the workload's reuse profile is extracted once).

    python benchmarks/cluster_speed.py
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import kvmodel
from kvmodel.cluster import Cluster, Workload, evaluate

TRACE = Path(__file__).resolve().parents[2] / "shared" / "traces" / "conversation_trace.jsonl"


def main() -> None:
    trace = kvmodel.load_trace(TRACE) if TRACE.is_file() else kvmodel.synthetic_trace(10_000)
    w = Workload(trace, request_rate=6.0)
    t0 = time.perf_counter()
    w.profile
    print(f"reuse profile (once): {time.perf_counter() - t0:.2f} s")
    for sharing, routing in (("none", "round_robin"), ("central_pool", "round_robin"),
                             ("p2p", "prefix_affinity_bounded"), ("p2p", "random")):
        c = Cluster("llama-3.1-70b", "h100-sxm", instances=16, tp=8, sharing=sharing,
                    routing=routing, dram_B=1e12)
        evaluate(c, w)  # builds the routing tables once
        times = []
        for _ in range(200):
            t = time.perf_counter()
            evaluate(c, w)
            times.append(time.perf_counter() - t)
        print(f"16 instances, {sharing:12s} {routing:24s} {statistics.median(times) * 1e6:8.0f} us")


if __name__ == "__main__":
    main()
