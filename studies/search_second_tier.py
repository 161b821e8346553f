"""Study: CXL vs DRAM vs SSD as the second KV tier — the cost-effectiveness frontier (Pareto
front of $/h against mean TTFT) for Llama-3.1-70B on 4 DGX H100 nodes, Mooncake conversation
trace; plus one-tier-only sweeps at equal extra spend (built-in space ``second-tier``).

    python studies/search_second_tier.py [--trials 400]

Writes study.journal, trials.csv, pareto/parallel/importance HTML and second_tier_sweep.csv
under studies/results/search_second_tier/.
"""

from __future__ import annotations

import argparse

from search_common import HERE, run_and_export, write_rows

from kvmodel import search

DIMS = {"dram": "dram_GB_per_node", "cxl": "cxl_GB_per_node", "ssd": "ssd_TB_per_node"}
SIZES = {"dram": [0, 512, 1024, 2048, 4096], "cxl": [0, 512, 1024, 2048, 4096],
         "ssd": [0, 7.68, 15.36, 30.72, 61.44]}


def one_tier_sweep(space) -> list[dict]:
    """Each medium alone as the second tier (the others at zero), exclusive, write-back."""
    rows = []
    for tier, dim in DIMS.items():
        for size in SIZES[tier]:
            p = {d: 0.0 for d in DIMS.values()} | {dim: float(size), "placement": "exclusive",
                                                   "write_policy": "back"}
            o = search.evaluate_point(space, p)
            m = o.metrics
            rows.append(dict(tier=tier, size=size, cost_usd_per_h=m["cost_usd_per_h"],
                             ttft_mean_s=m["ttft_s"], ttft_p90_s=m["ttft_p90_s"],
                             ttft_p99_s=m["ttft_p99_s"], feasible=o.feasible,
                             hit=sum(v for k, v in m.items() if k.startswith("hit_"))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=400)
    a = ap.parse_args()
    space = search.load_space("second-tier")
    run_and_export(space, "search_second_tier", a.trials, sampler="nsga2")
    rows = one_tier_sweep(space)
    out = HERE / "results" / "search_second_tier" / "second_tier_sweep.csv"
    write_rows(out, rows)
    for r in rows:
        print(f"  {r['tier']:5s} {r['size']:>7} -> {r['cost_usd_per_h']:.2f} $/h, TTFT mean "
              f"{r['ttft_mean_s']:.4f} / p90 {r['ttft_p90_s']:.4f} / p99 {r['ttft_p99_s']:.4f} s, "
              f"hit {r['hit']:.3f}")


if __name__ == "__main__":
    main()
