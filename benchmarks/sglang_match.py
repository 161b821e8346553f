"""SGLang's router matching the resident cache or its own tree, on the router referee cell.

    python benchmarks/sglang_match.py [--load 0.85] [--seeds 4]

The cell of tests/policies/test_routing_vs_sim.py (Llama-3.1-8B bf16 TP1 on H100, 4 instances,
64 GB DRAM prefix cache each, the Mooncake conversation trace in stationary order, Poisson
arrivals at ``--load`` x round robin's saturation, the first WARMUP requests left out of the
TTFT statistics, seeds 0 .. k - 1 pooled). Per ``match`` ("cache": the instance's resident
cache, the default; "tree": the router's tree of routed prompts, sglang's own rule): the
simulator's hit ratio, mean and p99 TTFT (per-seed spread), and the closed form's (one
figure: its replay matches routed prompts either way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kvmodel  # noqa: E402
from kvmodel.sim import simulate  # noqa: E402
from tests.policies import test_routing_vs_sim as cells  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--load", type=float, default=0.85)
    ap.add_argument("--seeds", type=int, default=4)
    a = ap.parse_args()
    w, trace, blocks, warmup = cells.make_setting(a.load)
    x = kvmodel.evaluate(cells.cluster("sglang"), w)
    print(f"load {a.load}, {a.seeds} seeds; closed form: hit {sum(x.hit_ratio.values()):.3f}  "
          f"mean {x.ttft_s:.3f} s  p99 {x.ttft_p99_s:.3f} s")
    for match in ("cache", "tree"):
        runs = [simulate(cells.M, cells.G, trace(s), instances=cells.N, tp=1, precision="bf16",
                         routing="sglang", routing_params={"match": match},
                         prefix_cache_blocks=blocks, cache_tier="dram", seed=s)
                for s in range(a.seeds)]
        s = cells.sim_figures(runs, warmup)
        print(f"match={match:5s} sim: hit {s.hit_ratio:.3f}  mean {s.ttft_mean_s:.3f} s "
              f"(sd {s.mean_spread:.2f})  p99 {s.ttft_p99_s:.3f} s (sd {s.p99_spread:.2f})",
              flush=True)


if __name__ == "__main__":
    main()
