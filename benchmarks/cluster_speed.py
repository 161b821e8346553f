"""Speed of the closed-form cluster model: microseconds per evaluate() of a 16-instance cluster
with local tiers and P2P sharing (after the workload's reuse profile is extracted once), then
configurations per second of one vectorised evaluate() over 10^5 local-tier configurations
(arrays of dram_B / cxl_B / ssd_B / hbm_cache_fraction).

Three per-call figures: the same configuration again (as a rate sweep, a bisection or a search
revisiting it: the instance's prefix mixture, which does not depend on the rate, comes from
the catalog's memo), a new configuration every call (200 distinct DRAM sizes: every call
builds its tiers, hit classes and mixture and solves the instance's queues, as a search's new
trials do; the classes' stacked prefixes and their throughput-max, which depend on the tiers'
paths but not on their capacities or the hit probabilities, come from the memo), and the same
with the prefix-mixture memo emptied before each call (what a configuration whose tier paths
are new pays: another SSD drive or CXL device count, another NIC).

    python benchmarks/cluster_speed.py [--json FILE]

--json also writes the figures (seconds, configurations/s) to FILE.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np

import kvmodel
from kvmodel.catalog.hardware import current
from kvmodel.cluster import Cluster, Workload, evaluate

TRACE = "mooncake-conversation"  # built-in trace (kvmodel traces)
SETUPS = (("none", "round_robin"), ("central_pool", "round_robin"),
          ("p2p", "prefix_affinity_bounded"), ("p2p", "random"),
          ("p2p", "dynamo"), ("none", "llmd"), ("none", "sglang"), ("none", "mooncake"),
          ("none", "least_loaded"))  # from dynamo on: load-aware routing replays
GRID = 100_000


def _grid(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n random local-tier configurations per instance (30 % without CXL)."""
    rng = np.random.default_rng(seed)
    return dict(dram_B=10 ** rng.uniform(10, 12.5, n),
                cxl_B=np.where(rng.random(n) < 0.3, 0.0, 10 ** rng.uniform(10, 12.5, n)),
                ssd_B=10 ** rng.uniform(11, 13.5, n), hbm_cache_fraction=rng.uniform(0, 0.9, n))


def _median_s(fn, repeats: int, before=None) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls (``before()`` first, untimed)."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _forget_mixtures() -> None:
    """Empty the active catalog's prefix-mixture memo (a configuration of new tier paths)."""
    current()._memo.pop("prefix_mix", None)


def measure(w: Workload) -> dict:
    """Median seconds per scalar evaluate() and configurations/s vectorised, per setup."""
    out = dict(instances=16, grid=GRID, evaluate_s={}, evaluate_new_config_s={},
               evaluate_new_paths_s={}, vector_configs_per_s={}, build_s={})
    grid = _grid(GRID)
    for sharing, routing in SETUPS:
        c = Cluster("llama-3.1-70b", "h100-sxm", instances=16, tp=8, sharing=sharing,
                    routing=routing, dram_B=1e12)
        t0 = time.perf_counter()
        evaluate(c, w)  # builds the routing tables once
        out["build_s"][f"{sharing} {routing}"] = time.perf_counter() - t0
        out["evaluate_s"][f"{sharing} {routing}"] = _median_s(lambda: evaluate(c, w), 200)
        news = iter([dataclasses.replace(c, dram_B=float(d)) for d in np.linspace(5e11, 2e12, 200)])
        out["evaluate_new_config_s"][f"{sharing} {routing}"] = _median_s(
            lambda: evaluate(next(news), w), 200)
        news = iter([dataclasses.replace(c, dram_B=float(d)) for d in np.linspace(5e11, 2e12, 50)])
        out["evaluate_new_paths_s"][f"{sharing} {routing}"] = _median_s(
            lambda: evaluate(next(news), w), 50, _forget_mixtures)
    for sharing, routing in SETUPS:
        c = Cluster("llama-3.1-70b", "h100-sxm", instances=16, tp=8, sharing=sharing,
                    routing=routing, **grid)
        evaluate(c, w)  # warm-up
        out["vector_configs_per_s"][f"{sharing} {routing}"] = GRID / _median_s(
            lambda: evaluate(c, w), 5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    a = ap.parse_args()
    trace = kvmodel.load_trace(TRACE)
    w = Workload(trace, request_rate=6.0)
    t0 = time.perf_counter()
    w.profile
    profile_s = time.perf_counter() - t0
    print(f"reuse profile (once): {profile_s:.2f} s")
    out = dict(trace=trace.name, profile_s=profile_s, **measure(w))
    for setup, s in out["evaluate_s"].items():
        print(f"16 instances, {setup:37s} {s * 1e6:8.0f} us again, "
              f"{out['evaluate_new_config_s'][setup] * 1e6:6.0f} us a new configuration, "
              f"{out['evaluate_new_paths_s'][setup] * 1e6:6.0f} us with new tier paths "
              f"(first call, tables built: {out['build_s'][setup]:.2f} s)")
    for setup, r in out["vector_configs_per_s"].items():
        print(f"16 instances, {setup:37s} vectorised, {GRID:.0e} configs: {GRID / r:6.3f} s, "
              f"{r:9,.0f} configs/s")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
