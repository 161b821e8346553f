"""The routed percentiles near saturation (kvmodel.cluster._routing_queue, ``_count_bound``,
``_queued_share``): the share of requests that find work queued ahead (M/M/1's u², u the
waiting server's utilisation) takes the routed law's whole quantile shift, the rest at most
a waiting request's mean cut; by hand, its limits, and the routed TTFT monotone in the rate
up to the router's own saturation on the router study's outlier cells
(tests/cluster/test_router_edge_cells.py holds them against the simulator)."""

import numpy as np
import pytest

import kvmodel
from kvmodel.cluster import _routing_queue as RQ

M = dict(ttft=1.0, ttft50=0.5, ttft90=2.0, ttft99=6.0, wait=0.4, pwait=0.4)
CLASSES = [(0.9, 0.0, "dram", 4000.0), (0.1, 0.0, "dram", 60000.0)]


def test_queued_share_is_mm1s_probability_of_work_queued_ahead():
    """u² (P(N >= 2) of M/M/1), u the utilisation of the server holding the wait."""
    assert RQ._queued_share(M) == 0.0  # no utilisation given: the bound alone
    assert RQ._queued_share(dict(M, util=0.7)) == pytest.approx(0.49)
    # the parts' prefill token server wins over the instance's utilisation
    assert RQ._queued_share(dict(M, util=0.9, parts=(0.3, 0.3, 0.6, 0.1))) == pytest.approx(0.36)
    assert RQ._queued_share(dict(M, util=1.3)) == 1.0


def test_shift_blends_the_bound_and_the_routed_laws_quantile_by_hand():
    """shift = (1 − u²)·max(s, cut) + u²·s, s the routed law's quantile shift,
    cut = (W' − W)/p."""
    bound = RQ.routed_percentiles(M, 0.1, 0.2, CLASSES)
    free = RQ.routed_percentiles(dict(M, util=1.0), 0.1, 0.2, CLASSES)
    half = RQ.routed_percentiles(dict(M, util=0.5), 0.1, 0.2, CLASSES)
    cut = (0.1 - 0.4) / 0.4
    assert bound["ttft99"] == pytest.approx(M["ttft99"] + cut)  # the bound holds at the tail
    assert free["ttft99"] < bound["ttft99"] - 0.4  # the routed law's own cut goes further
    for k in ("ttft50", "ttft90", "ttft99"):
        assert half[k] == pytest.approx(0.75 * bound[k] + 0.25 * free[k], rel=1e-12)
        assert free[k] <= half[k] <= bound[k] <= M[k]
    for out in (bound, free, half):  # the mean moves by W' − W whatever the share
        assert out["ttft"] == pytest.approx(0.7)


def test_no_cut_no_shift():
    """The routed law equal to the instance's moves no percentile, whatever the share."""
    out = RQ.routed_percentiles(dict(M, util=0.9), M["wait"], M["pwait"], CLASSES)
    for k in ("ttft", "ttft50", "ttft90", "ttft99"):
        assert out[k] == pytest.approx(M[k], abs=1e-12)


def _cluster(n: int, routing: str) -> kvmodel.Cluster:
    return kvmodel.Cluster("llama-3.1-70b", "h100-sxm", instances=n, tp=8, precision="fp8",
                           routing=routing, hbm_cache_fraction=0.0, dram_B=256e9, ssd_B=0.0)


@pytest.fixture(scope="module")
def mooncake():
    return kvmodel.Workload(kvmodel.load_trace("mooncake-conversation"))


# the router study's outlier cells (studies/router_choice.py): own saturation on the file's
# order at a8bd6b9, dynamo on 8 x 70B 18.94 req/s, sglang on 4 10.12 req/s
@pytest.mark.slow
@pytest.mark.parametrize("n,routing,top", [(8, "dynamo", 18.9), (4, "sglang", 10.1)])
def test_routed_ttft_rises_with_the_rate_to_saturation(mooncake, n, routing, top):
    """Mean and p99 TTFT non-decreasing in the rate from 60 % of the router's saturation to
    its edge (the stable ones; the last rates lie within 1 % of it)."""
    c = _cluster(n, routing)
    rates = top * np.array([0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.96, 0.98, 0.99, 1.0])
    xs = [kvmodel.evaluate(c, mooncake.with_rate(float(r))) for r in rates]
    ok = [x for x in xs if x.stable]
    assert len(ok) >= 8
    for a, b in zip(ok, ok[1:]):
        assert b.ttft_s >= a.ttft_s - 1e-9 and b.ttft_p99_s >= a.ttft_p99_s - 1e-9
    assert ok[-1].ttft_p99_s > ok[0].ttft_p99_s
