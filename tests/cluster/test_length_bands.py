"""Prompt-length bands of the cluster's instances (kvmodel.cluster._classes): the trace's
quantile bands crossed with the hit classes, and the cluster's TTFT against the simulator."""


import numpy as np
import pytest

import kvmodel
from kvmodel.cluster import Cluster, Workload, evaluate, kv_capacity_tokens
from kvmodel.cluster._classes import trace_bands, with_lengths
from kvmodel.sim import simulate


def test_trace_bands_by_hand():
    x = np.arange(1, 101, dtype=float)  # 1..100 tokens
    bands = trace_bands(x, bands=(0.0, 0.5, 0.9, 1.0))
    assert bands == [(0.5, 25.5), (0.4, 70.5), (0.1, 95.5)]
    assert sum(p * L for p, L in trace_bands(x)) == pytest.approx(x.mean())
    assert len(trace_bands(x)) == 4


def test_with_lengths_keeps_probabilities_and_mean_hit():
    cls = [(0.6, 0, "hbm"), (0.4, 500.0, "dram")]
    bands = [(0.5, 400.0), (0.5, 1600.0)]  # mean prompt 1000
    out = with_lengths(cls, bands, 1000.0)
    assert sum(c[0] for c in out) == pytest.approx(1.0)
    assert [c[1] for c in out] == [0, 0, 200.0, 800.0]  # hits cover half of every prompt
    assert sum(c[0] * c[1] for c in out) == pytest.approx(0.4 * 500.0)
    assert all(c[1] < c[3] for c in out)


def test_cluster_ttft_tracks_the_simulator_on_a_trace_slice():
    """First 3,000 requests of the Mooncake conversation trace on 16 Llama-3.1-8B instances,
    no sharing: mean TTFT within 20 %, p99 within 35 % (mean prompt ~12k tokens, CV ~1.3: p99
    is the prefill of the long prompts, which a single mean-length class misses by ~75 %)."""
    tr = kvmodel.load_trace("mooncake-conversation")
    n = 3000
    sl = tr.window(0, n)
    kv_tok = kv_capacity_tokens("llama-3.1-8b", "h100-sxm", 1, "bf16",
                                round(float(sl.input_len.mean())), round(float(sl.output_len.mean())))
    c = Cluster("llama-3.1-8b", "h100-sxm", instances=16, tp=1, precision="bf16",
                routing="round_robin", hbm_cache_fraction=0.05, dram_B=0.0, ssd_B=0.0)
    e = evaluate(c, Workload(sl))
    r = simulate("llama-3.1-8b", "h100-sxm", sl, instances=16, routing="round_robin",
                 block_tokens=sl.block_tokens, prefix_cache_blocks=int(0.05 * kv_tok / sl.block_tokens))
    assert e.ttft_s == pytest.approx(r.ttft_mean_s, rel=0.20)
    assert e.ttft_p99_s == pytest.approx(r.ttft_p99_s, rel=0.35)
    assert sum(e.hit_ratio.values()) == pytest.approx(r.hit_ratio, abs=0.02)
