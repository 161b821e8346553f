"""Conformance of every registered router near saturation: the setting of
tests/policies/test_routing_vs_sim.py (Llama-3.1-8B bf16 TP1 on H100, 4 instances, 64 GB DRAM
prefix cache each, the bundled Mooncake conversation trace with seeded Poisson arrivals,
random pooled over its SEEDS) at 85 % of round robin's saturation rate instead of 50 %.
Bars (issue 13): hit ratio within 0.02, mean TTFT within 20 %, p99 TTFT within 35 %.

Every mean and p99 cell misses, and mostly for reasons that are not the routers' laws.

The finite trace is not stationary. Its first 3,000 requests carry 13.7k prompt tokens on
average against 12.0k over the trace (11.1k-11.7k after 5,000), so the first quarter runs
hotter than the mean rate, builds a queue the rest drains slowly, and the simulator's means are
partly those of a transient. Measured against the closed form's earlier saturation (6.57/s,
before the KV-slot stability limit by Little on tokens): round robin at 0.60 / 0.70 / 0.80 /
0.85 of it gave simulated mean TTFT 1.24 / 3.36 / 13.4 / 30.7 s over the trace, 0.90 / 1.21 /
2.29 / 13.9 s over its second half. With the requests in random order (seed 7; work per
window flat) the simulator at that 85 % still gave 16.7 s (round robin) and 3.4-6.0 s (the
cache-aware routers): the simulated instance, whose KV pool is full at its peak from 60 % on,
sat near its own saturation, below the closed form's.

The closed form's saturation now stops where the classes' mean token occupancy reaches the
pool (kvmodel.instance._openloop, "KV-slot occupancy"): 5.90/s here, so this file's rate is
5.02/s; the simulator's round robin still queues without bound at 5.97/s. At 5.02/s the
closed form is 25-69 % low on every mean and 52-71 % low on every p99 but one, and
prefix_affinity_bounded's p99 is 64 % high (its tied requests' join-the-shortest-queue tail).
The simulator still sits nearer its own saturation than the closed form does: the cells
referee the instance's KV-slot limit and the trace's drift more than the routers, and stay
strict xfails with the error measured when the file was last run, so that a change in
either model shows."""

import pytest

import kvmodel
from kvmodel.policies import ROUTING
from tests.policies.test_routing_vs_sim import HIT_TOL, MEAN_TOL, P99_TOL, cells, cluster, make_setting, pair

pytestmark = pytest.mark.slow

LOAD = 0.85
# router -> (mean, p99) measured closed / sim - 1 at LOAD (prefix_affinity: unstable in both)
_MEASURED = {"round_robin": (-0.66, -0.68), "random": (-0.63, -0.55),
          "least_loaded": (-0.69, -0.71), "prefix_affinity": (float("inf"), float("inf")),
          "prefix_affinity_bounded": (-0.51, -0.48), "dynamo": (-0.51, -0.52),
          "llmd": (-0.49, -0.58), "sglang": (-0.61, -0.68), "mooncake": (-0.51, -0.55)}
MISSES = {(r, m): v[i] for r, v in _MEASURED.items() for i, m in enumerate(("mean", "p99"))}


@pytest.fixture(scope="module")
def setting():
    return make_setting(LOAD)


_cache: dict = {}


def _pair(setting, routing: str):
    return pair(setting, routing, _cache)




@pytest.mark.parametrize("routing", list(ROUTING))
def test_hit_ratio_matches_the_simulator_near_saturation(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(sum(x.hit_ratio.values()) - s.hit_ratio) <= HIT_TOL


@pytest.mark.parametrize("routing", cells(MISSES, "mean"))
def test_mean_ttft_matches_the_simulator_near_saturation(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(x.ttft_s / s.ttft_mean_s - 1) <= MEAN_TOL, (x.ttft_s, s.ttft_mean_s)


@pytest.mark.parametrize("routing", cells(MISSES, "p99"))
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
