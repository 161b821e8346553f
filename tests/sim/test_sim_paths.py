"""The simulator's KV path server against the closed forms of kvmodel/instance/_paths.py."""

import numpy as np
import pytest

import kvmodel
from kvmodel.sim import poisson_requests, simulate
from kvmodel.workload._trace_types import Trace

M, G = "llama-3.1-8b", "h100-sxm"
P, NEW, O, BT = 16384, 512, 16, 256   # a long shared prefix on NVMe, little compute


def _shared_prefix_trace(n, lam, seed=1):
    """Poisson arrivals; every prompt = the same P-token prefix + NEW tokens of its own."""
    base = poisson_requests(n, lam, P + NEW, O, seed=seed)
    pb, nb = P // BT, -(-NEW // BT)
    ids = np.concatenate([np.concatenate([np.arange(pb), 10**6 + i * nb + np.arange(nb)])
                          for i in range(n)]).astype(np.int64)
    return Trace(base.arrival_s, base.input_len, base.output_len,
                 np.arange(n + 1, dtype=np.int64) * (pb + nb), ids, block_tokens=BT)


EST = dict(input_len=P + NEW, output_len=O, cached_prefix_len=P, cache_tier="ssd",
           prefix_policy="load", kv_block_tokens=BT)
SIM = dict(prefix_cache_blocks=200, cache_tier="ssd", block_tokens=BT)


def _rate_for(u):
    e1 = kvmodel.estimate(M, G, request_rate=1.0, **EST)
    return u / max(e1.path_utilisation.values())


def test_path_little_law_and_utilisation_in_the_simulator():
    lam = _rate_for(0.5)
    r = simulate(M, G, _shared_prefix_trace(1500, lam), **SIM)
    # Little's law on the path queue: time-average jobs = throughput x mean time on the path
    assert r.path_area_s.sum() == pytest.approx(r.path_sojourn_s.sum(), rel=1e-9)
    assert r.path_jobs.sum() == 2 * 1500 - 1   # every load (all but the first) and every save
    busy = r.path_busy_s.sum() / r.arrival_s[-1]
    assert busy == pytest.approx(0.5, abs=0.05)
    per_tok = kvmodel.estimate(M, G).kv_B_per_token
    assert r.saved_B == pytest.approx((P + NEW + (1499 * NEW)) * per_tok)


def test_simultaneous_loads_share_the_path_in_the_simulator():
    alone = simulate(M, G, _shared_prefix_trace(2, 1e-3), **SIM)
    tr = _shared_prefix_trace(3, 1e-3)
    t = tr.arrival_s.copy()
    t[2] = t[1]       # the 2nd and 3rd request arrive together: both load the prefix
    pair = simulate(M, G, Trace(t, tr.input_len, tr.output_len, tr.block_offsets, tr.block_ids,
                                block_tokens=BT), kv_save=0.0, **SIM)
    lone = alone.ttft_s[1]
    assert pair.ttft_s[1] > 1.8 * lone * 0.9 and pair.ttft_s[2] > 1.8 * lone * 0.9
    # a lone load takes exactly what estimate's single-request load takes
    e = kvmodel.estimate(M, G, concurrency=1, **EST)
    assert lone == pytest.approx(e.ttft_s, rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("u", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_closed_form_tracks_simulator_up_to_90_percent_of_the_path(u):
    lam = _rate_for(u)
    e = kvmodel.estimate(M, G, request_rate=lam, **EST)
    n = 20_000 if u < 0.8 else 60_000   # heavy traffic relaxes slowly
    r = simulate(M, G, _shared_prefix_trace(n, lam), **SIM)
    ttft = r.ttft_s[200:]
    assert e.stable
    assert e.ttft_s == pytest.approx(ttft.mean(), rel=0.15)
    assert e.ttft_p99_s == pytest.approx(np.percentile(ttft, 99), rel=0.30)
    assert r.path_busy_s.sum() / r.arrival_s[-1] == pytest.approx(u, abs=0.03)
