"""Study: tier sizing (DRAM / CXL / SSD per node, HBM prefix-cache share, number of DGX H100
nodes) for Llama-3.1-70B serving the Mooncake conversation trace; goodput per $ under p99 TTFT
6 s / p99 TPOT 50 ms and a 300 $/h budget (built-in space ``tier-sizing``; 6 s because the
trace's p99 prompt alone takes over 3 s to prefill on 70B TP8).

    python studies/search_tier_sizing.py [--trials 600]

Writes study.journal, trials.csv and HTML plots under studies/results/search_tier_sizing/.
"""

from __future__ import annotations

import argparse

from search_common import run_and_export

from kvmodel import search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=600)
    a = ap.parse_args()
    st = run_and_export("tier-sizing", "search_tier_sizing", a.trials)
    best = search.best_trials(st, top=1)[0]
    print("best:", best.params, best.user_attrs["metrics"])


if __name__ == "__main__":
    main()
