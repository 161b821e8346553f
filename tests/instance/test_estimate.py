"""Public estimate(): modes, identities, monotonicity, vectorisation, infeasibility, bad input."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kvmodel
from kvmodel.catalog.models import list_models
from kvmodel.instance import _estimate

BASE = dict(model="llama-3.1-70b", gpu="h100-sxm", tp=8, precision="fp8")


def test_contract_fields():
    e = kvmodel.estimate(**BASE, input_len=2048, output_len=128, batch=1)
    for f in ("ttft_s", "tpot_s", "e2e_s", "output_tok_per_s", "batch", "feasible", "reason",
              "breakdown"):
        assert hasattr(e, f)
    assert e.feasible and e.reason == ""
    assert 0 < e.ttft_s < e.e2e_s and 0 < e.tpot_s
    assert set(e.breakdown) == {"prefill", "decode"}
    for op in e.breakdown["decode"].values():
        assert {"flops", "bytes", "time_s", "bound"} <= set(op)
        assert op["bound"] in ("compute", "memory", "network", "host")
    lo, hi = e.interval["tpot_s"]
    assert lo < e.tpot_s < hi


def test_static_batch_identities():
    e = kvmodel.estimate(**BASE, input_len=1000, output_len=200, batch=8)
    assert e.e2e_s == pytest.approx(e.ttft_s + 199 * e.tpot_s)
    assert e.output_tok_per_s == pytest.approx(8 * 200 / e.e2e_s)
    cal = _estimate._params()
    # the prefill breakdown sums to TTFT (pp=1), decode breakdown to TPOT
    assert sum(o["time_s"] for o in e.breakdown["prefill"].values()) + cal["request_overhead"] \
        == pytest.approx(e.ttft_s)
    assert sum(o["time_s"] for o in e.breakdown["decode"].values()) == pytest.approx(e.tpot_s)


@pytest.mark.parametrize("n", [1, 8, 64, 2000])
def test_closed_loop_obeys_littles_law(n):
    e = kvmodel.estimate("llama-3.1-8b", "h100-sxm", precision="fp8", input_len=1000,
                         output_len=300, concurrency=n)
    assert e.feasible
    requests_per_s = e.output_tok_per_s / 300
    assert requests_per_s * e.e2e_s == pytest.approx(n, rel=1e-6)


def test_closed_loop_queues_beyond_capacity():
    small = kvmodel.estimate("llama-3.3-70b", "h100-sxm", tp=2, precision="fp8", input_len=5000,
                             output_len=500, concurrency=25)
    big = kvmodel.estimate("llama-3.3-70b", "h100-sxm", tp=2, precision="fp8", input_len=5000,
                           output_len=500, concurrency=400)
    assert big.batch == big.max_batch < 400
    assert big.ttft_s > 5 * small.ttft_s


def test_throughput_max_beats_small_batches():
    kw = dict(model="llama-3.1-8b", gpu="h200-sxm", precision="fp8", input_len=500, output_len=2000)
    best = kvmodel.estimate(**kw, batch="max")
    assert best.output_tok_per_s > kvmodel.estimate(**kw, batch=1).output_tok_per_s * 20
    assert best.batch <= best.max_batch


def test_data_parallel_replicas_scale_throughput():
    one = kvmodel.estimate(**BASE, input_len=500, output_len=500, batch="max")
    two = kvmodel.estimate(**{**BASE, "num_gpus": 16}, input_len=500, output_len=500, batch="max")
    assert two.output_tok_per_s == pytest.approx(2 * one.output_tok_per_s)
    assert two.tpot_s == pytest.approx(one.tpot_s)


@pytest.mark.parametrize("mode", [dict(batch=4), dict(batch="max"), dict(concurrency=16)])
def test_vectorised_equals_elementwise(mode):
    rng = np.random.default_rng(1)
    I = rng.integers(1, 8000, 12)
    O = rng.integers(1, 2000, 12)
    tp = rng.choice([1, 2, 4, 8], 12)
    kw = dict(model="llama-3.1-70b", gpu="h200-sxm", precision="fp8")
    v = kvmodel.estimate(**kw, tp=tp, input_len=I, output_len=O, **mode)
    for i in range(12):
        s = kvmodel.estimate(**kw, tp=int(tp[i]), input_len=int(I[i]), output_len=int(O[i]), **mode)
        assert v.feasible[i] == s.feasible
        assert v.reason[i] == s.reason
        for f in ("ttft_s", "tpot_s", "e2e_s", "output_tok_per_s", "batch"):
            assert getattr(v, f)[i] == pytest.approx(getattr(s, f), rel=1e-6), f


def test_grid_of_100k_is_one_call_without_nan():
    I = np.arange(1, 100_001)
    e = kvmodel.estimate("llama-3.1-8b", "h100-sxm", precision="fp8", input_len=I, output_len=256,
                         batch="max")
    assert e.output_tok_per_s.shape == (100_000,)
    for f in ("ttft_s", "tpot_s", "e2e_s", "output_tok_per_s"):
        assert not np.isnan(getattr(e, f)).any()
    assert (e.output_tok_per_s >= 0).all()


@settings(max_examples=30, deadline=None)
@given(I=st.integers(1, 30000), extra=st.integers(1, 5000), O=st.integers(1, 2000),
       b=st.integers(1, 16))
def test_longer_input_never_faster(I, extra, O, b):
    kw = dict(model="llama-3.1-8b", gpu="h100-sxm", precision="bf16", output_len=O, batch=b)
    a, c = kvmodel.estimate(**kw, input_len=I), kvmodel.estimate(**kw, input_len=I + extra)
    if a.feasible and c.feasible:
        assert c.ttft_s >= a.ttft_s and c.tpot_s >= a.tpot_s and c.e2e_s >= a.e2e_s


def test_more_hbm_bandwidth_never_slower(toy_gpu, tmp_path):
    fast = dataclasses.replace(toy_gpu, key="toy-fast", hbm_bw_Bps=2 * toy_gpu.hbm_bw_Bps)
    for mode in (dict(batch=1), dict(batch=32), dict(batch="max"), dict(concurrency=8)):
        kw = dict(model="llama-3.1-8b", input_len=2000, output_len=200, **mode)
        slow, quick = kvmodel.estimate(gpu=toy_gpu, **kw), kvmodel.estimate(gpu=fast, **kw)
        assert quick.ttft_s <= slow.ttft_s and quick.tpot_s <= slow.tpot_s
        assert quick.output_tok_per_s >= slow.output_tok_per_s


@pytest.mark.parametrize("model", list_models())
@pytest.mark.parametrize("gpu", ["h100-sxm", "b200", "mi300x", "l40s"])
def test_every_model_on_gpus_is_finite_or_infeasible(model, gpu):
    e = kvmodel.estimate(model, gpu, tp=8, precision="fp8", input_len=1024, output_len=128,
                         batch="max")
    if e.feasible:
        assert np.isfinite([e.ttft_s, e.tpot_s, e.e2e_s, e.output_tok_per_s]).all()
        assert e.output_tok_per_s > 0
    else:
        assert e.reason and e.output_tok_per_s == 0 and e.ttft_s == np.inf


def test_infeasible_reasons():
    e = kvmodel.estimate("llama-3.1-405b", "h100-sxm", tp=1, precision="bf16")
    assert not e.feasible and "exceed HBM" in e.reason and e.ttft_s == np.inf
    e = kvmodel.estimate("llama-3.1-8b", "h100-sxm", tp=3)
    assert not e.feasible and "tp=3 does not divide num_attention_heads=32" in e.reason
    e = kvmodel.estimate("llama-3.1-8b", "a100-sxm-80gb", precision="fp8")
    assert not e.feasible and "precision fp8 not supported on a100-sxm-80gb" in e.reason
    e = kvmodel.estimate("llama-3.1-70b", "h100-sxm", tp=2, precision="fp8", batch=5000,
                         input_len=8000)
    assert not e.feasible and "exceeds the largest batch" in e.reason


def test_infeasible_elements_of_an_array():
    e = kvmodel.estimate("llama-3.1-70b", "h100-sxm", tp=np.array([1, 2, 3, 8]), precision="bf16")
    assert e.feasible.tolist() == [False, True, False, True]
    assert "exceed HBM" in e.reason[0] and "tp=3" in e.reason[2] and e.reason[1] == ""
    assert np.isinf(e.ttft_s[[0, 2]]).all() and np.isfinite(e.ttft_s[[1, 3]]).all()


@pytest.mark.parametrize("kw,match", [
    (dict(input_len=0), "input_len"), (dict(output_len=-5), "output_len"),
    (dict(input_len=1.5), "input_len: values must be integers"), (dict(batch=0), "batch"),
    (dict(batch="lots"), "batch='lots'"), (dict(tp=0), "tp"), (dict(precision="fp7"), "precision='fp7'"),
    (dict(kv_precision="int3"), "kv_precision"), (dict(ep=2), "expert parallelism needs an MoE"),
    (dict(num_gpus=12, tp=8), "num_gpus=12 must be a multiple"),
    (dict(concurrency=4, batch=8), "either batch or concurrency"),
    (dict(input_len=np.array([1, np.nan])), "finite"),
])
def test_bad_input_raises_naming_field(kw, match):
    args = {**dict(model="llama-3.1-8b", gpu="h100-sxm"), **kw}
    with pytest.raises(ValueError, match=match):
        kvmodel.estimate(**args)


def test_unknown_names_raise_keyerror():
    with pytest.raises(KeyError, match="unknown gpu 'tpu-v9'"):
        kvmodel.estimate("llama-3.1-8b", "tpu-v9")
    with pytest.raises(KeyError, match="unknown framework"):
        kvmodel.estimate("llama-3.1-8b", "h100-sxm", framework="ollama")


def test_moe_expert_parallel_changes_communication():
    kw = dict(model="mixtral-8x7b", gpu="h100-sxm", tp=8, precision="fp8", batch=64)
    tp_only, ep = kvmodel.estimate(**kw), kvmodel.estimate(**kw, ep=8)
    assert tp_only.breakdown["decode"]["ep_alltoall"]["time_s"] == 0
    assert ep.breakdown["decode"]["ep_alltoall"]["time_s"] > 0
    assert ep.feasible


def test_mla_kv_is_replicated_on_every_tp_rank():
    e1 = kvmodel.estimate("deepseek-v3", "h200-sxm", tp=8, precision="fp8", batch=1)
    assert e1.feasible
    # latent KV: 61 x 576 bytes in fp8 per token on every rank -> capacity independent of tp
    per_token = 61 * 576
    assert e1.kv_capacity_tokens * per_token < 141e9


def test_fp8_kv_doubles_capacity():
    a = kvmodel.estimate("llama-3.1-70b", "h100-sxm", tp=4, precision="fp8", kv_precision="bf16")
    b = kvmodel.estimate("llama-3.1-70b", "h100-sxm", tp=4, precision="fp8", kv_precision="fp8")
    assert b.kv_capacity_tokens == pytest.approx(2 * a.kv_capacity_tokens, rel=1e-6)


def test_json_ready(tmp_path):
    import json
    e = kvmodel.estimate(**BASE, input_len=np.array([100, 200]))
    json.dumps(e.to_dict())


def test_closed_loop_prefill_server_saturates():
    """O=1: every client only prefills, so throughput saturates at one prompt per service time
    and TTFT grows about linearly with clients (a closed queue never exceeds utilisation 1)."""
    n = np.array([1, 10, 100, 1000])
    e = kvmodel.estimate("llama-3.1-8b", "h100-sxm", precision="fp8", input_len=32000,
                         output_len=1, concurrency=n)
    x = e.output_tok_per_s  # requests/s when output_len = 1
    assert x[1] > x[0]  # a second client keeps the server busier ...
    assert x[3] <= x[2] * 1.05  # ... but a saturated server serves no faster with more clients
    assert np.allclose(x * e.e2e_s, n)  # Little's law
    assert np.all(np.diff(e.ttft_s) > 0)
    assert e.ttft_s[3] > 50 * e.ttft_s[0]


def test_chunked_prefill_work_does_not_depend_on_the_chunk_count():
    """An uncached prompt split into 2 or 3 chunks still adds its own tokens per second to the
    step mix (regression: each chunk was charged the whole token budget, +68 % TPOT at 8192)."""
    kw = dict(tp=8, precision="fp8", input_len=12035, output_len=343, request_rate=1.0,
              cached_prefix_len=3750, cache_tier="hbm")
    tpot = {m: kvmodel.estimate("llama-3.1-70b", "h100-sxm", max_num_tokens=m, **kw).tpot_s
            for m in (4096, 4200, 8192, 8300, 16384)}
    assert max(tpot.values()) / min(tpot.values()) < 1.02
