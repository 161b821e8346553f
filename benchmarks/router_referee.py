"""Closed form against the simulator for every router, on the router cells' referee.

    python benchmarks/router_referee.py [--load 0.5,0.85] [--seeds K] [--referee stationary]
                                        [--instance]

The cells of tests/policies/test_routing_vs_sim.py and test_routing_vs_sim_load.py (Llama-3.1-8B
bf16 TP1 on H100, 4 instances, 64 GB DRAM prefix cache each, the bundled Mooncake conversation
trace with seeded Poisson arrivals at ``--load`` x round robin's saturation). ``--referee``:
``stationary`` (the tests' stream: the trace's conversations at random phases,
``stationary_order``, the first WARMUP requests of each run left out of the TTFT statistics)
or ``trace`` (the file's order, every request counted: the referee before the stationary one).
Each router's simulator figures pool ``--seeds`` seeds (arrival and router seed s = 0 .. k - 1;
default: the 50 % file's SEEDS, the 85 % file's are ``--seeds 4``); prefix_affinity (unstable
in both models) runs one. Printed per router: hit ratio, mean and
p99 TTFT, closed and simulated, closed / sim - 1, and the per-seed spread (sample standard
deviation over the pooled value; the pooled figure's standard error is it over sqrt(k)).

``--instance``: one instance fed a quarter of the cluster's rate (the full stationary stream,
Poisson and Erlang-4 arrivals; the instance behind random and round robin), closed form
(a one-instance cluster: Poisson arrivals) against the simulator, per seed: what of a
router cell's miss is the instance's own law.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kvmodel  # noqa: E402
from kvmodel.policies import ROUTING  # noqa: E402
from kvmodel.sim import simulate  # noqa: E402
from tests.policies import test_routing_vs_sim as cells  # noqa: E402

_ROW = ("{r:24s} hit {ch:.3f}/{sh:.3f}  mean {cm:6.2f}/{sm:6.2f} {em:+.2f} (sd {dm:.2f})  "
        "p99 {cp:6.2f}/{sp:6.2f} {ep:+.2f} (sd {dp:.2f})")


def router_rows(load: float, seeds: int | None, referee: str):
    """One line per router (closed/sim figures, errors, seed spreads) at ``load``, yielded
    as each is measured."""
    setting = cells.make_setting(load, referee == "stationary")
    for r in ROUTING:
        k = None if seeds is None else 1 if r == "prefix_affinity" else seeds
        x, s = cells.pair(setting, r, {}, k)
        yield _ROW.format(r=r, ch=sum(x.hit_ratio.values()), sh=s.hit_ratio, cm=x.ttft_s,
                          sm=s.ttft_mean_s, em=x.ttft_s / s.ttft_mean_s - 1, dm=s.mean_spread,
                          cp=x.ttft_p99_s, sp=s.ttft_p99_s, ep=x.ttft_p99_s / s.ttft_p99_s - 1,
                          dp=s.p99_spread)


def instance_rows(load: float, seeds: int) -> list[str]:
    """One instance at a quarter of the cluster's rate: closed (Poisson) and the simulator
    under Poisson and Erlang-4 arrivals, TTFTs after WARMUP pooled over ``seeds``."""
    w, _, blocks, warmup = cells.make_setting(load)
    lam, n = w.rate / cells.N, len(w.trace)
    one = dataclasses.replace(cells.cluster("round_robin"), instances=1)
    x = kvmodel.evaluate(one, w.with_rate(lam))
    rows = [f"instance at {lam:.3f}/s: closed mean {x.ttft_s:.2f} s, p99 {x.ttft_p99_s:.2f} s"]
    for arrivals in ("poisson", "erlang"):
        runs = []
        for seed in range(seeds):
            rng = np.random.default_rng(1000 + seed)
            gaps = (rng.exponential(1.0 / lam, n) if arrivals == "poisson"
                    else rng.exponential(1.0 / w.rate, (n, cells.N)).sum(axis=1))
            tr = dataclasses.replace(w.trace, arrival_s=np.cumsum(gaps) - gaps[0])
            runs.append(simulate(cells.M, cells.G, tr, instances=1, tp=1, precision="bf16",
                                 prefix_cache_blocks=blocks, cache_tier="dram", seed=seed))
        s = cells.sim_figures(runs, warmup)
        rows.append(f"  sim {arrivals:7s}: mean {s.ttft_mean_s:.2f} s (sd {s.mean_spread:.2f}, "
                    f"closed/sim - 1 {x.ttft_s / s.ttft_mean_s - 1:+.2f}), p99 "
                    f"{s.ttft_p99_s:.2f} s (sd {s.p99_spread:.2f}, "
                    f"{x.ttft_p99_s / s.ttft_p99_s - 1:+.2f})")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", default="0.5,0.85")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--referee", choices=("stationary", "trace"), default="stationary")
    ap.add_argument("--instance", action="store_true")
    a = ap.parse_args(argv)
    for load in (float(v) for v in a.load.split(",")):
        print(f"load {load:g}, referee {a.referee}, {a.seeds} seeds (closed/sim):")
        rows = instance_rows(load, a.seeds or 4) if a.instance else router_rows(load, a.seeds,
                                                                           a.referee)
        for row in rows:
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
