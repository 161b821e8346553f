"""p99 TPOT per routing rule, closed form against the simulator running the exact rule: one
conformance cell over the routing registry (benchmarks/router_tpot_arrivals.py's mapping).

Cell: 8 x Llama-3.1-70B fp8 TP8 (one per DGX H100, RoCE 400G), HBM prefix share 0.3, no DRAM /
SSD tier, no sharing, the Mooncake conversation trace in its order at 1.0 request/s per
instance with seeded Poisson arrivals (the closed form's own arrival process; the published
3 s timestamp ticks would add bursts the closed form does not model, Trace.spread_ticks).
Bar: issue 13's p99 bar, within 35 %.

The router-dependent TPOT law (kvmodel.instance._tpot_law.router_terms) reads one number per
rule (kvmodel.cluster._work_smoothing: 1 with a work signal, 0 without). It holds for round
robin, random, sglang and mooncake here; four rules miss, marked strict xfail with the
measured error (stop 26), so a law per rule that fixes them turns these into failures to
update: bounded affinity and least_loaded send less prompt work into short requests' decode
windows than a random sample (0.49 / 0.38 of the instance's mean against random's 0.66;
``router_tpot_arrivals.py --windows``), dynamo and llm-d more than the law's "work-steered"
(0.88 / 0.81 against sglang's 0.38).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

import kvmodel
from kvmodel.policies import ROUTING
from kvmodel.sim import simulate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from cluster_vs_sim import _configs, at_rate, with_arrivals  # noqa: E402

M, G, TP, PREC, N, PER = "llama-3.1-70b", "h100-sxm", 8, "fp8", 8, 1.0
P99_TOL = 0.35
# closed / simulated p99 TPOT - 1 measured at stop 26 (71eaf79's model)
MISSES = {"least_loaded": "+1.65", "prefix_affinity_bounded": "+1.14", "dynamo": "-0.68",
          "llmd": "-0.67"}
RULES = [r for r in ROUTING if r != "prefix_affinity"]   # unbounded affinity: unstable here

_TRACE: list = []


def trace() -> kvmodel.Trace:
    """The trace in its order, seeded Poisson arrivals at N x PER requests/s (built once)."""
    if not _TRACE:
        t = with_arrivals(kvmodel.load_trace("mooncake-conversation"), "poisson", 0)
        _TRACE.append(at_rate(t, N * PER))
    return _TRACE[0]


def pair(routing: str) -> tuple[float, float]:
    """(closed, simulated) p99 TPOT, s, on cluster_vs_sim.py's mapping (no sharing)."""
    tr = trace()
    a = argparse.Namespace(gpu=G, tp=TP, precision=PREC, model=M, instances=N, routing=routing,
                           hbm_fraction=0.3, local_dram_GB=0.0, lookup_s=0.0, pool_servers=1,
                           pool_GB=2000.0, pool_nics=2, dram_GB=0.0, seed=0)
    c, kw = _configs(a, tr, "roce-400g")["none"]
    e = kvmodel.evaluate(c, kvmodel.Workload(tr))
    r = simulate(M, G, tr, **dict(kw, epsilon=c.epsilon))
    return float(e.tpot_p99_s), float(r.tpot_p99_s)


@pytest.mark.parametrize("routing", [
    pytest.param(r, marks=pytest.mark.xfail(strict=True, reason=(
        f"closed p99 TPOT {MISSES[r]} against the simulator: one work_smoothing number per "
        "rule (0 or 1) does not fit this rule"))) if r in MISSES else r
    for r in RULES])
def test_p99_tpot_per_rule_against_the_simulator(routing):
    closed, sim = pair(routing)
    assert closed > 0 and sim > 0
    assert abs(closed / sim - 1) <= P99_TOL, (routing, closed, sim)
