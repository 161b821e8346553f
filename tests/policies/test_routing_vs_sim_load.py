"""Conformance of every registered router near saturation: the setting of
tests/policies/test_routing_vs_sim.py (Llama-3.1-8B bf16 TP1 on H100, 4 instances, 64 GB DRAM
prefix cache each, the bundled Mooncake conversation trace with seeded Poisson arrivals,
random pooled over its SEEDS) at 85 % of round robin's saturation rate instead of 50 %.
Bars (issue 13): hit ratio within 0.02, mean TTFT within 20 %, p99 TTFT within 35 %.

Every mean and p99 cell misses, by -0.70 to -0.95 (closed / sim - 1), and for a reason that
is not the routers' laws: the finite trace is not stationary. Its first 3,000 requests carry
13.7k prompt tokens on average against 12.0k over the trace (11.1k-11.7k after 5,000), so
at 85 % overall the first quarter runs at ~97 % of the closed form's saturation, builds a
queue the rest drains slowly, and the simulator's means are those of a transient (round
robin at 0.60 / 0.70 / 0.80 / 0.85 of saturation: simulated mean TTFT 1.24 / 3.36 / 13.4 /
30.7 s over the trace, 0.90 / 1.21 / 2.29 / 13.9 s over its second half; the closed form
1.00 / 1.20 / 1.76 / 2.60 s). The closed form is a stationary model at the trace's mean
work, so these cells referee the trace's drift more than the router; a referee of the
routers near saturation needs a stationary trace (requests in random order, or a longer
trace whose work per window is flat) and the cells are kept here as strict xfails with the
error measured when the file was written, so that a change in either model shows.
The drift is not all of it: with the requests in random order (seed 7; work per window
flat) the simulator at 85 % still gives 16.7 s (round robin) and 3.4-6.0 s (the
cache-aware routers) against the closed form's 2.6 and 0.84-0.96 s: on this setting the
simulated instance, whose KV pool is full at its peak from 60 % on, sits near its own
saturation, below the closed form's (the instance's KV-slot law, not the routers')."""

import dataclasses
import types

import numpy as np
import pytest

import kvmodel
from kvmodel.cluster import max_rate_at_slo
from kvmodel.policies import ROUTING
from kvmodel.sim import simulate
from tests.policies.test_routing_vs_sim import DRAM_B, HIT_TOL, MEAN_TOL, P99_TOL, SEEDS, G, M, N

pytestmark = pytest.mark.slow

LOAD = 0.85
# router -> (mean, p99) measured closed / sim - 1 at LOAD (prefix_affinity: unstable in both)
MISSES = {"round_robin": (-0.92, -0.87), "random": (-0.91, -0.84),
          "least_loaded": (-0.95, -0.78), "prefix_affinity": (float("inf"), float("inf")),
          "prefix_affinity_bounded": (-0.93, -0.70), "dynamo": (-0.95, -0.82),
          "llmd": (-0.94, -0.84), "sglang": (-0.94, -0.83), "mooncake": (-0.94, -0.82)}


def cluster(routing: str) -> kvmodel.Cluster:
    return kvmodel.Cluster(M, G, instances=N, tp=1, precision="bf16", routing=routing,
                           hbm_cache_fraction=0.0, dram_B=DRAM_B, ssd_B=0.0)


@pytest.fixture(scope="module")
def setting():
    """(workload at LOAD x round robin's saturation, the trace with Poisson arrivals of a
    seed, blocks per instance)."""
    w = kvmodel.Workload(kvmodel.load_trace("mooncake-conversation"))
    sat = float(max_rate_at_slo(cluster("round_robin"), w.with_rate(N), ttft_slo_s=1e9,
                                tpot_slo_s=1e9))
    rate = LOAD * sat

    def trace(seed: int):
        gaps = np.random.default_rng(seed).exponential(1.0 / rate, len(w.trace))
        return dataclasses.replace(w.trace, arrival_s=np.cumsum(gaps) - gaps[0])

    block_B = w.trace.block_tokens * kvmodel.get_model(M).kv_bytes_per_token("bf16")
    return w.with_rate(rate), trace, int(DRAM_B / block_B)


_cache: dict = {}


def _pair(setting, routing: str):
    """(closed-form result, simulator figures averaged over the router's SEEDS)."""
    if routing not in _cache:
        w, trace, blocks = setting
        runs = [simulate(M, G, trace(s), instances=N, tp=1, precision="bf16", routing=routing,
                         prefix_cache_blocks=blocks, cache_tier="dram", seed=s)
                for s in range(SEEDS.get(routing, 1))]
        sim = {k: float(np.mean([getattr(r, k) for r in runs]))
               for k in ("hit_ratio", "ttft_mean_s", "ttft_p99_s")}
        _cache[routing] = (kvmodel.evaluate(cluster(routing), w), types.SimpleNamespace(**sim))
    return _cache[routing]


def _cells(which: int):
    out = []
    for r in ROUTING:
        miss = MISSES.get(r, (None, None))[which]
        marks = [pytest.mark.xfail(strict=True, reason=f"measured {miss:+.2f}")] if miss else []
        out.append(pytest.param(r, marks=marks, id=r))
    return out


@pytest.mark.parametrize("routing", list(ROUTING))
def test_hit_ratio_matches_the_simulator_near_saturation(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(sum(x.hit_ratio.values()) - s.hit_ratio) <= HIT_TOL


@pytest.mark.parametrize("routing", _cells(0))
def test_mean_ttft_matches_the_simulator_near_saturation(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(x.ttft_s / s.ttft_mean_s - 1) <= MEAN_TOL, (x.ttft_s, s.ttft_mean_s)


@pytest.mark.parametrize("routing", _cells(1))
def test_p99_ttft_matches_the_simulator_near_saturation(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(x.ttft_p99_s / s.ttft_p99_s - 1) <= P99_TOL, (x.ttft_p99_s, s.ttft_p99_s)


def test_the_closed_form_mean_rises_from_half_load(setting):
    """Every stable router's closed-form mean TTFT at LOAD is above its mean at 50 % (the
    rate of test_routing_vs_sim.py): a higher rate never gives a shorter mean."""
    w = setting[0]
    for r in ROUTING:
        hi = kvmodel.evaluate(cluster(r), w)
        lo = kvmodel.evaluate(cluster(r), w.with_rate(w.rate * 0.5 / LOAD))
        if hi.stable:
            assert hi.ttft_s > lo.ttft_s, r
