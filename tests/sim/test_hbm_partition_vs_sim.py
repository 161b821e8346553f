"""The HBM prefix cache is a partition of the KV pool: the closed form against the simulator.

A cluster's ``hbm_cache_fraction`` keeps that share of each instance's KV pool as prefix
cache, and every request reserves its whole prompt + output from the rest
(``estimate(hbm_cache_fraction=)``), as :func:`kvmodel.sim.simulate` carves
``prefix_cache_blocks`` out of the pool. Before the partition the closed form gave the
requests the whole pool whatever the fraction: on the tier-sizing-small space's workload at
12 req/s (one Llama-3.1-8B fp8 H100, no host tiers) it called 80 % and 95 % of the pool as
prefix cache stable with a 0.31 s p99 TTFT and a largest batch of 107 requests, where the
simulator saturates at 10.0 req/s with a 19 s p99 TTFT (21 requests of 9.5k tokens fit).

Settings chosen before measuring: the workload of ``kvmodel/search/spaces/tier-sizing-small.toml``
(synthetic trace, 1,500 requests, seed 7) with seeded Poisson arrivals at 12 req/s. Bars: a
largest batch equal to the requests that fit beside the partition (hand arithmetic), and the
closed form's saturation rate within 10 % of the simulator's throughput where the offered rate
overloads both."""

import dataclasses

import numpy as np
import pytest

import kvmodel
from kvmodel.cluster import kv_capacity_tokens
from kvmodel.sim import simulate

M, G, PREC, RATE = "llama-3.1-8b", "h100-sxm", "fp8", 12.0


@pytest.fixture(scope="module")
def workload():
    tr = kvmodel.synthetic_trace(1500, seed=7, system_prompt_tokens=4096, user_tokens_mean=1500,
                                 output_tokens_mean=128, rate_per_s=2.0)
    return kvmodel.Workload(tr, request_rate=RATE)


def _cluster(fraction: float) -> kvmodel.Cluster:
    return kvmodel.Cluster(M, G, instances=1, tp=1, precision=PREC, routing="round_robin",
                           hbm_cache_fraction=fraction, dram_B=0.0, cxl_B=0.0, ssd_B=0.0)


def test_the_partition_leaves_the_requests_the_rest_of_the_pool(workload):
    """Largest batch = floor((1 - f) x pool / (I + O)) by hand (a dense model: one KV token per
    context token), never more than without the partition."""
    I, O = round(workload.input_len), round(workload.output_len)
    pool = kv_capacity_tokens(M, G, 1, PREC, I, O)
    whole = kvmodel.evaluate(_cluster(0.0), workload).instances["instance"].max_batch
    for f in (0.1, 0.4, 0.8, 0.95):
        got = kvmodel.evaluate(_cluster(f), workload).instances["instance"].max_batch
        assert got == min(np.floor((1 - f) * pool / (I + O)), whole), f


def test_more_prefix_cache_never_fits_more_requests(workload):
    fs = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 0.9])
    batches = [kvmodel.evaluate(_cluster(float(f)), workload).instances["instance"].max_batch
               for f in fs]
    assert all(a >= b for a, b in zip(batches, batches[1:]))


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.8, 0.9])
def test_saturation_beside_a_large_partition_matches_the_simulator(workload, fraction):
    """Offered 12 req/s, the closed form calls the instance unstable and its saturation rate is
    the simulator's served rate within 10 %."""
    e = kvmodel.evaluate(_cluster(fraction), workload)
    tr = workload.trace
    gaps = np.random.default_rng(0).exponential(1.0 / RATE, len(tr))
    trace = dataclasses.replace(tr, arrival_s=np.cumsum(gaps) - gaps[0])
    pool = kv_capacity_tokens(M, G, 1, PREC, round(workload.input_len),
                              round(workload.output_len))
    s = simulate(M, G, trace, instances=1, tp=1, precision=PREC,
                 prefix_cache_blocks=int(fraction * pool / tr.block_tokens), cache_tier="hbm")
    sat = float(e.instances["instance"].saturation_request_rate_per_s)
    assert not e.stable and s.request_throughput_per_s < 0.9 * RATE
    assert sat == pytest.approx(s.request_throughput_per_s, rel=0.10)
