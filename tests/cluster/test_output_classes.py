"""Output lengths of the cluster's prompt-length classes (kvmodel.cluster._classes): each
quantile band of the trace's prompts carries its requests' mean output, the classes'
outputs average to the workload's (conservation), a trace of one output length keeps
today's classes, and the Mooncake conversation trace's longer prompts have longer outputs."""

import dataclasses

import numpy as np
import pytest

import kvmodel
from kvmodel.cluster import Cluster, Workload, evaluate
from kvmodel.cluster._classes import trace_bands, with_lengths


def test_band_outputs_by_hand():
    x = np.array([40.0, 10.0, 30.0, 20.0])  # sorted: 10, 20, 30, 40
    y = np.array([4.0, 1.0, 3.0, 2.0])  # output = prompt / 10
    assert trace_bands(x, bands=(0.0, 0.5, 1.0), output_len=y) == [(0.5, 15.0, 1.5),
                                                                   (0.5, 35.0, 3.5)]
    assert trace_bands(x, bands=(0.0, 0.5, 1.0)) == [(0.5, 15.0), (0.5, 35.0)]  # as before


def test_band_outputs_conserve_the_mean():
    rng = np.random.default_rng(0)
    x = rng.lognormal(8.0, 1.0, 5000)
    y = rng.integers(1, 800, 5000).astype(float)
    bands = trace_bands(x, output_len=y)
    assert sum(b[0] * b[2] for b in bands) == pytest.approx(y.mean(), rel=1e-12)
    cls = with_lengths([(0.7, 0, "hbm"), (0.3, 500.0, "dram")], bands, float(x.mean()),
                       O=round(y.mean()))
    assert sum(c[0] * c[4] for c in cls) == pytest.approx(round(y.mean()), rel=1e-12)
    raw = with_lengths([(1.0, 0, "hbm")], bands, float(x.mean()))  # not scaled
    assert sum(c[0] * c[4] for c in raw) == pytest.approx(y.mean(), rel=1e-12)


def test_one_output_length_keeps_todays_classes():
    x = np.arange(1.0, 101.0)
    bands = trace_bands(x, output_len=np.full(100, 64.0))
    cls = with_lengths([(1.0, 0, "hbm")], bands, float(x.mean()), O=64)
    assert cls == with_lengths([(1.0, 0, "hbm")], trace_bands(x), float(x.mean()))
    assert all(len(c) == 4 for c in cls)


def test_mismatched_outputs_are_refused():
    with pytest.raises(ValueError, match="trace_bands output_len: expected one output"):
        trace_bands(np.arange(4.0), output_len=np.arange(3.0))


@pytest.fixture(scope="module")
def trace():
    tr = kvmodel.load_trace("mooncake-conversation")
    n = 3000
    return dataclasses.replace(tr, arrival_s=tr.arrival_s[:n], input_len=tr.input_len[:n],
                               output_len=tr.output_len[:n],
                               block_offsets=tr.block_offsets[:n + 1],
                               block_ids=tr.block_ids[:tr.block_offsets[n]])


def test_mooncake_longer_prompts_have_longer_outputs(trace):
    bands = trace_bands(trace.input_len, output_len=trace.output_len)
    assert bands[0][2] < bands[1][2] < bands[2][2]  # 0-75 %, 75-95 %, 95-99 %


@pytest.mark.parametrize("kw", [dict(), dict(prefill_instances=2, decode_instances=2)])
def test_cluster_evaluates_with_band_outputs(trace, kw):
    """Colocated and disaggregated (the prefill pool at output_len 1 takes the classes
    without outputs) instances on the trace's band outputs: finite, stable figures."""
    c = Cluster("llama-3.1-8b", "h100-sxm", instances=4, tp=1, precision="bf16",
                routing="round_robin", dram_B=64e9, **kw)
    e = evaluate(c, Workload(trace))
    assert np.isfinite(e.ttft_s) and e.ttft_s > 0 and np.isfinite(e.tpot_s)
