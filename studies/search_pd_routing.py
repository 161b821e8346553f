"""Study: P:D ratio and routing policy under SLOs — colocated vs disaggregated (prefill share
of 8 H100 TP1 instances), routing policy and its load bound; objective: output tokens/s at the
largest request rate meeting p90 TTFT 2 s / p99 TPOT 30 ms (built-in space ``pd-routing``,
Llama-3.1-8B, Mooncake conversation trace). The space is small, so the exhaustive grid is run
too and compared with TPE.

    python studies/search_pd_routing.py [--trials 120]

Writes study.journal, trials.csv, HTML and grid.csv under studies/results/search_pd_routing/.
"""

from __future__ import annotations

import argparse
import csv

from search_common import HERE, run_and_export

from kvmodel import search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=120)
    a = ap.parse_args()
    st = run_and_export("pd-routing", "search_pd_routing", a.trials)
    g = search.grid_search("pd-routing")
    out = HERE / "results" / "search_pd_routing" / "grid.csv"
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["disaggregated", "prefill_share", "routing", "epsilon", "throughput_at_slo",
                    "feasible"])
        for p, v, f in zip(g.points, g.values[:, 0], g.feasible):
            w.writerow([p["disaggregated"], p.get("prefill_share", ""), p["routing"],
                        p.get("epsilon", ""), v, f])
    best, value = g.best()
    tpe = search.best_trials(st, top=1)[0]
    print(f"grid: {len(g.points)} points, {g.points_per_s:.0f} points/s; optimum {value:.1f} "
          f"tok/s at {best}")
    print(f"TPE after {a.trials} trials: {tpe.values[0]:.1f} tok/s at {tpe.params}")


if __name__ == "__main__":
    main()
