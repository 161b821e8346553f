"""Bad input, extreme values and instability end in a clear message naming the field or in a
finite, consistent result (the reliability audit's library probes)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kvmodel
from kvmodel.cluster import MAX_INSTANCES


# ---- open loop: stability, saturation rate, reason and throughput agree -----------------------
def test_open_loop_unstable_below_saturation_says_why():
    """The audit's repro: unstable below the throughput-max saturation rate, with a reason, and
    never serving more than is offered."""
    e = kvmodel.estimate("llama-2-13b", "h100-sxm", tp=1, precision="bf16", input_len=10532,
                         output_len=40, request_rate=1.45)
    assert e.feasible and not e.stable
    assert 1.45 < e.saturation_request_rate_per_s
    assert "below the throughput-max saturation rate" in e.reason and "KV cache" in e.reason
    assert e.output_tok_per_s <= 1.45 * 40 + 1e-9
    assert np.isinf(e.ttft_s)


def test_open_loop_beyond_saturation_reason():
    e = kvmodel.estimate("llama-3.1-70b", "h100-sxm", tp=8, input_len=2048, output_len=128,
                         request_rate=50.0)
    assert e.feasible and not e.stable
    assert "at or beyond the saturation rate" in e.reason
    assert e.output_tok_per_s == pytest.approx(e.saturation_request_rate_per_s * 128)


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(0.01, 60.0), inp=st.integers(16, 32_000), out=st.integers(2, 2_000),
       model=st.sampled_from(["llama-2-13b", "llama-3.1-8b", "qwen3-8b"]))
def test_open_loop_stable_iff_no_reason(rate, inp, out, model):
    e = kvmodel.estimate(model, "h100-sxm", tp=1, precision="bf16", input_len=inp,
                         output_len=out, request_rate=rate)
    assert e.feasible
    assert bool(e.stable) == (e.reason == "")
    assert 0.0 <= e.output_tok_per_s <= rate * out * (1 + 1e-9)
    if e.stable:
        assert rate < e.saturation_request_rate_per_s and np.isfinite(e.ttft_s)
    else:
        assert np.isinf(e.ttft_s) and np.isinf(e.ttft_p99_s)


def test_vectorised_reasons_match_scalar_calls():
    rates = np.array([0.5, 1.45, 5.0])
    e = kvmodel.estimate("llama-2-13b", "h100-sxm", tp=1, precision="bf16", input_len=10532,
                         output_len=40, request_rate=rates)
    for i, r in enumerate(rates):
        one = kvmodel.estimate("llama-2-13b", "h100-sxm", tp=1, precision="bf16",
                               input_len=10532, output_len=40, request_rate=float(r))
        assert e.reason[i] == one.reason and e.stable[i] == one.stable


# ---- cluster: sizes, SLOs and rates ------------------------------------------------------------
@pytest.fixture(scope="module")
def small_workload():
    return kvmodel.Workload(kvmodel.synthetic_trace(300, seed=2), request_rate=1.0)


@pytest.mark.parametrize("field, kw, match", [
    ("instances", {"instances": 10**8}, r"Cluster.instances=100000000: must be an integer in \[1, 4096\]"),
    ("instances", {"instances": 0}, "Cluster.instances=0"),
    ("tp", {"tp": 0}, r"Cluster.tp=0: must be an integer in \[1, 1024\]"),
    ("epsilon", {"epsilon": float("nan")}, "Cluster.epsilon=nan"),
    ("epsilon", {"epsilon": -1.0}, "Cluster.epsilon=-1.0"),
])
def test_cluster_sizes_are_bounded(small_workload, field, kw, match):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        kvmodel.evaluate(kvmodel.Cluster("llama-3.1-8b", "h100-sxm", **({"instances": 2, "tp": 1}
                                                                       | kw)), small_workload)
    assert time.perf_counter() - t0 < 2.0, "the check comes before any allocation"
    assert MAX_INSTANCES == 4096


@pytest.mark.parametrize("slo", [{"ttft_slo_s": -1.0}, {"tpot_slo_s": 0.0},
                                 {"ttft_slo_s": float("nan")}])
def test_cluster_rejects_bad_slos(small_workload, slo):
    name = next(iter(slo))
    w = kvmodel.Workload(small_workload.trace, request_rate=1.0, **slo)
    with pytest.raises(ValueError, match=f"Workload.{name}"):
        kvmodel.evaluate(kvmodel.Cluster("llama-3.1-8b", "h100-sxm", instances=2, tp=1), w)


def test_cluster_absurd_rate_is_unstable_not_an_exception(small_workload):
    w = kvmodel.Workload(small_workload.trace, request_rate=1e300)
    r = kvmodel.evaluate(kvmodel.Cluster("llama-3.1-8b", "h100-sxm", instances=2, tp=1), w)
    assert not r.stable and r.reason and np.isinf(r.ttft_p99_s)


def test_empty_trace_is_named(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("arrival_s,input_len,output_len\n")
    w = kvmodel.Workload(kvmodel.load_trace(p), request_rate=1.0)
    with pytest.raises(ValueError, match="'empty.csv' has no requests"):
        kvmodel.evaluate(kvmodel.Cluster("llama-3.1-8b", "h100-sxm", instances=2, tp=1), w)


# ---- files: binary, non-UTF-8, wrong JSON shape -----------------------------------------------
def test_binary_trace_names_the_file(tmp_path):
    p = tmp_path / "blob.jsonl"
    p.write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(ValueError, match="blob.jsonl: not a UTF-8 text trace file"):
        kvmodel.load_trace(p)
    q = tmp_path / "late.jsonl"
    q.write_bytes(b'{"arrival_s": 0, "input_len": 1, "output_len": 1}\n\xff\xfe\n')
    with pytest.raises(ValueError, match="late.jsonl"):
        kvmodel.load_trace(q)


@pytest.mark.parametrize("content, match", [
    (b"[1, 2]", "must hold a JSON object, got list"),
    (b"\xff\xfe\x00", "not a UTF-8 text file"),
    (json.dumps({"hidden_size": 4096, "num_attention_heads": 0, "num_hidden_layers": 32,
                 "vocab_size": 1000}).encode(), "num_attention_heads=0: must be an integer >= 1"),
])
def test_hf_config_errors_name_file_and_field(tmp_path, content, match):
    p = tmp_path / "config.json"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=match) as err:
        kvmodel.load_hf_config(p)
    assert str(p) in str(err.value)


# ---- synthetic traces: sizes checked before allocating ----------------------------------------
@pytest.mark.parametrize("kw, match", [
    ({"output_tokens_mean": 1e9}, "output_tokens_mean=1000000000.0: must be <= 1,000,000"),
    ({"system_prompt_tokens": 10**7}, "system_prompt_tokens"),
    ({"turns_mean": 1e4}, "n_requests x turns_mean"),
    ({"turns_mean": 4000, "output_tokens_mean": 1e5}, "prefix blocks"),
])
def test_synthetic_trace_limits(kw, match):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        kvmodel.synthetic_trace(5000, **kw)
    assert time.perf_counter() - t0 < 10.0


def test_synthetic_trace_n_requests_must_be_an_integer():
    with pytest.raises(ValueError, match=r"n_requests=2.5"):
        kvmodel.synthetic_trace(2.5)
    with pytest.raises(ValueError, match=r"n_requests=-5"):
        kvmodel.synthetic_trace(-5)
