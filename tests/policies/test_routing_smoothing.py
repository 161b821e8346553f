"""The arrival smoothing of the load-aware routers (kvmodel.workload._routing_closed.
routed_work_dispersion, kvmodel.cluster._routing_load.routed_arrival_scv) and the routed
percentiles' bound (kvmodel.cluster._routing_queue.routed_percentiles)."""

import numpy as np
import pytest

import kvmodel
from kvmodel import Cluster, Workload
from kvmodel.cluster import _routing_queue as RQ
from kvmodel.cluster._routing_load import routed_arrival_scv
from kvmodel.workload._routing_closed import _dispersion_ratio, routed_work_dispersion

N, REQ = 4, 40_000


def _poisson(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Poisson arrival times (rate 1) and exponential work sizes (c_s² = 1)."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1.0, REQ)), rng.exponential(1.0, REQ)


def _least_cumulative(work: np.ndarray) -> np.ndarray:
    """Each request to the instance with the least work routed so far (sglang's tree)."""
    tot, out = np.zeros(N), np.empty(len(work), np.int64)
    for r, x in enumerate(work):
        out[r] = i = int(tot.argmin())
        tot[i] += x
    return out


def test_random_split_is_one_and_round_robin_is_its_kingman_share():
    t, work = _poisson()
    rand = _dispersion_ratio(t, np.random.default_rng(1).integers(0, N, REQ), work, N, 0.5)
    assert rand == pytest.approx(1.0, abs=0.08)
    # round robin: Erlang-N gaps, ca2 = 1/N, so (ca2 + c_s²)/(1 + c_s²) = (1/N + 1)/2
    rr = _dispersion_ratio(t, np.arange(REQ) % N, work, N, 0.5)
    assert rr == pytest.approx((1.0 / N + 1.0) / 2.0, abs=0.08)


def test_balancing_the_routed_work_smooths_more_than_round_robin():
    t, work = _poisson()
    rr = _dispersion_ratio(t, np.arange(REQ) % N, work, N, 0.5)
    assert _dispersion_ratio(t, _least_cumulative(work), work, N, 0.5) < 0.6 * rr


def test_a_bursty_trace_is_not_counted_as_the_rule():
    """Random splitting of batches (the cluster's own burstiness) still gives about 1."""
    rng = np.random.default_rng(3)
    t = np.repeat(np.cumsum(rng.exponential(5.0, REQ // 5)), 5)
    work = rng.exponential(1.0, len(t))
    assert _dispersion_ratio(t, rng.integers(0, N, len(t)), work, N, 0.5) == pytest.approx(
        1.0, abs=0.1)


def test_degenerate_inputs_give_no_smoothing():
    t = np.arange(10.0)
    assert _dispersion_ratio(t, np.zeros(10, np.int64), np.zeros(10), N, 0.5) == 1.0
    assert _dispersion_ratio(t, -np.ones(10, np.int64), np.ones(10), N, 0.5) == 1.0
    assert _dispersion_ratio(t, np.zeros(10, np.int64), np.ones(10), 1, 0.5) == 1.0


@pytest.fixture(scope="module")
def mooncake():
    return Workload(kvmodel.load_trace("mooncake-conversation"), request_rate=3.0)


def _cluster(routing: str) -> Cluster:
    return Cluster("llama-3.1-8b", "h100-sxm", instances=N, tp=1, precision="bf16",
                   routing=routing, hbm_cache_fraction=0.0, dram_B=64e9, ssd_B=0.0)


@pytest.mark.parametrize("routing", ["least_loaded", "sglang"])
def test_routers_smooth_the_arrivals_and_evaluate_takes_it(mooncake, routing):
    """Both rules balance what they route: ca2 in [0, 1); sglang's smallest tree (cumulative
    work) more than least_loaded's requests in flight; the arrays path gives the same."""
    ca2 = routed_arrival_scv(_cluster(routing), mooncake, N)
    assert 0.0 <= ca2 < 1.0
    vec = routed_arrival_scv(_cluster(routing), mooncake.with_rate(np.array([3.0, 3.0])), N)
    np.testing.assert_allclose(vec, ca2)
    x = kvmodel.evaluate(_cluster(routing), mooncake)
    assert np.isfinite(x.ttft_s) and x.ttft_s > 0


def test_sglang_smooths_more_than_least_loaded(mooncake):
    # idle (nothing in flight), least_loaded sends everything to instance 0: no smoothing
    assert routed_work_dispersion(mooncake.profile, N, "least_loaded") >= 1.0
    ca2 = {r: routed_arrival_scv(_cluster(r), mooncake, N) for r in ("least_loaded", "sglang")}
    assert ca2["sglang"] <= ca2["least_loaded"]


def test_a_percentile_falls_by_at_most_a_waiting_requests_mean_cut():
    """Either signal: the router removes the work queued ahead, not the long prompt's
    residual that makes the wait's tail."""
    m = dict(ttft=1.0, ttft50=0.5, ttft90=2.0, ttft99=6.0, wait=0.4, pwait=0.4)
    classes = [(0.9, 0.0, "dram", 4000.0), (0.1, 0.0, "dram", 60000.0)]
    work = RQ.routed_percentiles(m, 0.1, 0.2, classes)
    count = RQ.routed_percentiles(m, 0.1, 0.2, classes, count=True)
    cut = (0.1 - 0.4) / 0.4
    assert count == work
    assert work["ttft"] == pytest.approx(0.7)
    for k in ("ttft50", "ttft90", "ttft99"):
        assert cut - 1e-12 <= work[k] - m[k] <= 0.0
    assert work["ttft99"] == pytest.approx(m["ttft99"] + cut)  # the tail: the bound holds
