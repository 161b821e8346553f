"""The router study's two outlier cells near saturation (studies/router_choice.py, issue 13),
closed form against the simulator on the stationary referee.

Cells (Llama-3.1-70B fp8 TP8 on DGX H100, 256 GB DRAM prefix cache per instance, no HBM
share, no SSD, the Mooncake conversation trace): dynamo on 8 instances at 85 % and sglang on
4 instances at 95 % of the cell's saturation rate R_sat (the best router's, bounded prefix
affinity epsilon 0.1, as the study sets it). The study replays the file's order, whose first
3,000 requests carry 14 % more prompt work than the whole trace: near saturation the
simulator then referees its own transient (sglang on 4 at 95 % of R_sat: the first quarter's
mean TTFT 6.0 s, the last 1.1 s). The referee here is tests/policies/test_routing_vs_sim.py's
stationary stream (conversations at random phases, the first WARMUP requests left out),
pooled over SEEDS orders and arrival seeds.

    python tests/cluster/test_router_edge_cells.py [--seeds K] [--loads 0.85 0.95]
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

import kvmodel
from kvmodel.cluster import max_rate_at_slo

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.policies.test_routing_vs_sim import (  # noqa: E402
    ORDER_SEED,
    WARMUP,
    sim_figures,
    stationary_order,
)

M, G, TP, PREC, DRAM_B = "llama-3.1-70b", "h100-sxm", 8, "fp8", 256e9
CELLS = ((8, "dynamo", 0.85), (4, "sglang", 0.95))
SEEDS = 4
MEAN_TOL, P99_TOL = 0.20, 0.35


def cluster(n: int, routing: str, eps: float = 0.25) -> kvmodel.Cluster:
    """The study's cluster (studies/router_choice.py ``cluster``)."""
    return kvmodel.Cluster(M, G, instances=n, tp=TP, precision=PREC, routing=routing,
                           epsilon=eps, hbm_cache_fraction=0.0, dram_B=DRAM_B, ssd_B=0.0)


_W: list = []


def workload() -> kvmodel.Workload:
    """The stationary stream of ORDER_SEED (the closed form's profile), built once."""
    if not _W:
        _W.append(kvmodel.Workload(stationary_order(
            kvmodel.load_trace("mooncake-conversation"), ORDER_SEED)))
    return _W[0]


def saturation(n: int, routing: str, eps: float = 0.25) -> float:
    """The router's largest stable rate (req/s, SLOs off), as the study bisects it."""
    w = workload()
    return float(max_rate_at_slo(cluster(n, routing, eps), w.with_rate(0.5 * n),
                                 ttft_slo_s=1e9, tpot_slo_s=1e9))


def r_sat(n: int) -> float:
    """The cell's reference saturation: bounded prefix affinity (epsilon 0.1)'s."""
    return saturation(n, "prefix_affinity_bounded", 0.1)


def simulated(n: int, routing: str, rate: float, seeds: int = SEEDS):
    """The simulator's figures (:func:`sim_figures`) at ``rate``: seed s replays stationary
    order ORDER_SEED + s with Poisson arrivals of seed s."""
    from kvmodel.sim import simulate
    t = kvmodel.load_trace("mooncake-conversation")
    block_B = t.block_tokens * kvmodel.get_model(M).kv_bytes_per_token(PREC)
    runs = []
    for s in range(seeds):
        order = workload().trace if s == 0 else stationary_order(t, ORDER_SEED + s)
        gaps = np.random.default_rng(s).exponential(1.0 / rate, len(order))
        tr = dataclasses.replace(order, arrival_s=np.cumsum(gaps) - gaps[0])
        runs.append(simulate(M, G, tr, instances=n, tp=TP, precision=PREC, routing=routing,
                             prefix_cache_blocks=int(DRAM_B / block_B), cache_tier="dram",
                             seed=s))
    return sim_figures(runs, WARMUP)


def closed(n: int, routing: str, rate: float):
    return kvmodel.evaluate(cluster(n, routing), workload().with_rate(rate))


_PAIRS: dict = {}


def pair(n: int, routing: str, load: float):
    key = (n, routing, load)
    if key not in _PAIRS:
        rate = load * r_sat(n)
        _PAIRS[key] = rate, closed(n, routing, rate), simulated(n, routing, rate)
    return _PAIRS[key]


# (cell, metric) -> closed / sim - 1 measured when the file was written, strict xfails: the
# routed mean wait is about half the simulator's near saturation (dynamo on 8 at 85 %: the
# routed wait 0.45 s, the simulator's TTFT less the closed form's no-wait TTFT 0.84 s).
# sglang on 4 at 95 %: -0.29 -> -0.07 (p99 +0.18 -> +0.27) once its smallest tree is read as
# balancing the work sent, not the work left (kvmodel.cluster._routing_queue, *Work sent*)
MISSES = {((8, "dynamo", 0.85), "mean"): -0.35}


def _cells(metric: str) -> list:
    out = []
    for cell in CELLS:
        miss = MISSES.get((cell, metric))
        marks = [pytest.mark.xfail(strict=True, reason=f"measured {miss:+.2f}")] if miss else []
        out.append(pytest.param(*cell, marks=marks, id=f"{cell[1]}-{cell[0]}-{cell[2]}"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("n,routing,load", _cells("p99"))
def test_outlier_cell_p99_matches_the_simulator(n, routing, load):
    """p99 TTFT within 35 % (stop 24's law: dynamo +1.64, sglang +1.38)."""
    rate, x, s = pair(n, routing, load)
    assert x.stable, (rate, routing)
    assert abs(x.ttft_p99_s / s.ttft_p99_s - 1) <= P99_TOL, (x.ttft_p99_s, s.ttft_p99_s)


@pytest.mark.slow
@pytest.mark.parametrize("n,routing,load", _cells("mean"))
def test_outlier_cell_mean_matches_the_simulator(n, routing, load):
    rate, x, s = pair(n, routing, load)
    assert x.stable, (rate, routing)
    assert abs(x.ttft_s / s.ttft_mean_s - 1) <= MEAN_TOL, (x.ttft_s, s.ttft_mean_s)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="closed-form saturation 18.94 req/s, below 19.57")
def test_dynamo_stable_where_the_simulator_serves_its_rate():
    """dynamo on 8 at 90 % of R_sat (19.57 req/s): the simulator serves it (mean 4.4 s, p99
    14.2 s over 4 seeds; the mean TTFT of each sixth of the stream does not grow, seeds 0
    and 1), and its queue grows at 95 % (20.66 req/s); the closed form's saturation, 18.94
    req/s (the instance's KV-slot pool saturates first: utilisation 0.98 where the prefill
    token server is 0.90 busy), is 3-8 % below. Strict xfail: the instance's law."""
    rate = 0.90 * r_sat(8)
    assert closed(8, "dynamo", rate).stable, rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=SEEDS)
    ap.add_argument("--loads", type=float, nargs="*", default=None)
    ap.add_argument("--no-sim", action="store_true")
    a = ap.parse_args()
    for n, routing, load in CELLS:
        rs, own = r_sat(n), saturation(n, routing)
        print(f"{routing} on {n}: R_sat {rs:.3f} req/s, its own saturation {own:.3f}")
        for f in a.loads or (load,):
            x = closed(n, routing, f * rs)
            line = (f"  {f:.0%} ({f * rs:.3f} req/s): closed mean {x.ttft_s:.3f} p99 "
                    f"{x.ttft_p99_s:.3f} s")
            if not a.no_sim:
                s = simulated(n, routing, f * rs, a.seeds)
                line += (f"; sim {s.ttft_mean_s:.3f} / {s.ttft_p99_s:.3f} s (sd {s.mean_spread:.2f}"
                         f" / {s.p99_spread:.2f}); errors {x.ttft_s / s.ttft_mean_s - 1:+.2f} / "
                         f"{x.ttft_p99_s / s.ttft_p99_s - 1:+.2f}")
            print(line, flush=True)


if __name__ == "__main__":
    main()
