"""Engine- and vendor-specific kernel rates: a GPU's measured attention kernel
(``achieved_attention_flops``), a framework's per-layer host dispatch floor (``layer_dispatch``,
vLLM-Ascend), a GPU's measured all-reduce bandwidth by group size (``allreduce_bandwidth``) and
the row-to-framework and scheduler mapping of the held-out set."""

import numpy as np
import pytest
from conftest import ROOT

import kvmodel
from kvmodel.catalog.hardware import Catalog, get_framework, get_gpu, use_catalog
from kvmodel.catalog.models import get_model
from kvmodel.instance import calibration as cal
from kvmodel.instance import seam
from kvmodel.instance._roofline import step_ops

TOY_FRAMEWORK = """schema_version = 1
[framework.toy-eager]
name = "toy eager engine"
step_overhead = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "round" }
layer_dispatch = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "round" }
[framework.toy-graphed]
name = "toy engine, kernels issued as one graph"
step_overhead = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "round" }
"""


@pytest.mark.parametrize("name, key", [
    ("vLLM-Ascend v0.9.1 (vllm bench serve, random dataset)", "vllm-ascend"),
    ("MindIE 2.1RC1", "mindie"),
    ("vLLM v0.6.3", "vllm"),
    ("SGLang v0.4", "sglang"),
    ("TensorRT-LLM v0.17", "tensorrt-llm"),
])
def test_framework_key(name, key):
    assert cal.framework_key(name) == key


def test_ascend_holdout_rows_use_the_ascend_engine():
    rows = [r for r in cal.load_rows(cal.holdout_data()) if r["gpu"] == "ascend-910b"]
    assert rows and all(cal.row_kwargs(r)[0]["framework"] == "vllm-ascend" for r in rows)
    rep = cal.run_validation(rows=rows)
    assert len(rep.rows) == len(rows)  # every row predicted, none skipped


def test_mindie_rows_are_skipped_not_predicted_as_another_engine():
    row = dict(cal.load_rows(cal.holdout_data())[-1], framework="MindIE 2.1RC1")
    rep = cal.run_validation(rows=[row])
    assert not rep.rows and sum(rep.skipped.values()) == 1


def _setup(model, gpu, fw, calibration=None):
    m, g = get_model(model), get_gpu(gpu)
    return seam.setup(m, g, get_framework(fw), 1.0, 1.0, 1.0, "bf16", "bf16",
                      seam.params(calibration))


def test_measured_attention_kernel_replaces_the_global_factor():
    s = _setup("qwen3-8b", "ascend-910b", "vllm")
    assert s.attn_Fps == pytest.approx(150.78e12)  # torch_npu flash attention, 910B2
    s2 = _setup("qwen3-8b", "ascend-910b", "vllm", {"attention_efficiency_factor": 0.5})
    assert s2.attn_Fps == s.attn_Fps
    h = get_gpu("h100-sxm")  # no measured attention kernel: best GEMM x the global factor
    sh = _setup("qwen3-8b", "h100-sxm", "vllm", {"attention_efficiency_factor": 0.5})
    assert sh.attn_Fps == pytest.approx(h.peak_flops["bf16"] * h.matmul_eff["bf16"] * 0.5)


@pytest.fixture
def toy_catalog(catalog_with):
    return catalog_with(TOY_FRAMEWORK)


def test_layer_dispatch_floor_in_decode(toy_catalog):
    """Decode of one sequence: Qwen3-8B's 36 layers issue for 36 x 1 ms = 36 ms, longer than
    the NPU's work (~16 GB of weights at ~1.2 TB/s), so the step is host-bound:
    latency = 36 ms + 1 ms step overhead + 1 x the per-sequence cost, exactly."""
    s = _setup("qwen3-8b", "ascend-910b", "toy-eager")
    ops, stage, latency = step_ops(s, 1.0, 1.0, 0.0, 1000.0, 1000.0, 1.0)
    assert stage < 36e-3
    assert latency == pytest.approx(36e-3 + 1e-3 + s.seq_s)
    assert ops["framework"]["time_s"] == pytest.approx(latency - stage)


def test_layer_dispatch_hidden_under_a_long_prefill(toy_catalog):
    s = _setup("qwen3-8b", "ascend-910b", "toy-eager")
    ops, stage, latency = step_ops(s, 8192.0, 1.0, 8192.0 ** 2 / 2, 0.0, 0.0, 8192.0)
    assert stage > 36e-3
    assert latency == pytest.approx(stage + 1e-3 + s.seq_s)


def test_layer_dispatch_never_lowers_latency(toy_catalog):
    eager, graphed = (_setup("qwen3-8b", "ascend-910b", f) for f in ("toy-eager", "toy-graphed"))
    for tokens in (1.0, 64.0, 512.0, 8192.0):
        args = (tokens, tokens, 0.0, tokens * 2000.0, tokens * 2000.0, tokens)
        a, b = step_ops(eager, *args)[2], step_ops(graphed, *args)[2]
        assert a >= b and a == pytest.approx(max(b, 36e-3 + 1e-3 + tokens * eager.seq_s))


def test_vllm_ascend_entry_is_sourced():
    f = get_framework("vllm-ascend")
    q = f.quantities["layer_dispatch"]
    assert q.si == pytest.approx(832e-6) and q.kind == "measured" and "9404" in q.source
    assert kvmodel.estimate("qwen3-8b", "ascend-910b", tp=1, precision="bf16", input_len=128,
                            output_len=128, concurrency=1, framework="vllm-ascend").feasible


def test_h20_measured_efficiencies():
    g = get_gpu("h20")
    assert g.matmul_eff["bf16"] == pytest.approx(142.25 / 148)
    assert g.hbm_eff == pytest.approx(3712.3 / 4000)
    assert g.matmul_eff["fp8"] == pytest.approx(0.803)  # no fp8 measurement: sibling ratio


@pytest.mark.parametrize("I, O", [(1000, 50), (8000, 20)])
def test_simulator_agrees_with_estimate_under_the_floor(I, O):
    """One request on vLLM-Ascend: the simulator's steps and the closed form take the same
    host-bound decode (36 layers x 832 us) and the same prefill (floor hidden)."""
    from kvmodel.sim import poisson_requests, simulate

    r = simulate("qwen3-8b", "ascend-910b", poisson_requests(1, 1.0, I, O),
                 framework="vllm-ascend")
    e = kvmodel.estimate("qwen3-8b", "ascend-910b", input_len=I, output_len=O, batch=1,
                         framework="vllm-ascend")
    assert r.tpot_s[0] == pytest.approx(e.tpot_s, rel=1e-9)
    assert r.ttft_s[0] == pytest.approx(e.ttft_s, rel=1e-9)
    assert e.tpot_s >= 36 * 832e-6  # decode of one sequence is host-bound


@pytest.mark.parametrize("key", kvmodel.list_entries("gpu"))
def test_measured_attention_rates_are_below_peak(key):
    g = get_gpu(key)
    for p, q in g.quantities.get("achieved_attention_flops", {}).items():
        assert p in g.peak_flops and 0 < q.si <= g.peak_flops[p], (key, p)
        assert q.kind in ("measured", "derived") and q.source


TOY_SCHEDULERS = """schema_version = 1
[framework.toy-unchunked]
name = "toy engine, whole prompts, 4 sequences"
step_overhead = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "round" }
max_num_seqs = { value = 4, unit = "count", kind = "assumed", source = "test", reason = "round" }
chunked_prefill = false
[framework.toy-chunked]
name = "toy engine, calibration defaults"
step_overhead = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "round" }
"""


def test_engine_scheduler_defaults_map_rows_to_estimate_limits(tmp_path):
    p = tmp_path / "schedulers.toml"
    p.write_text(TOY_SCHEDULERS)
    with use_catalog(Catalog.default().with_file(p)):
        # whole prompts: the budget is the model's context (qwen3-8b max_position_embeddings)
        assert cal.scheduler_kwargs("toy-unchunked", "qwen3-8b") == dict(
            max_batch_size=4, max_num_tokens=40960)
        assert cal.scheduler_kwargs("toy-unchunked", "no-such-model") == dict(max_batch_size=4)
        assert cal.scheduler_kwargs("toy-chunked", "qwen3-8b") == {}
    assert cal.scheduler_kwargs("mindie", "qwen3-8b") == {}  # no entry: left to estimate


def test_ascend_rows_run_the_v091_scheduler_and_other_engines_keep_the_defaults():
    rows = cal.load_rows(cal.holdout_data())
    asc = next(r for r in rows if r["gpu"] == "ascend-910b")
    kw, _ = cal.row_kwargs(asc)
    assert (kw["max_batch_size"], kw["max_num_tokens"]) == (256, 40960)
    other = next(r for r in rows if cal.framework_key(r["framework"]) == "vllm")
    kw, _ = cal.row_kwargs(other)
    assert "max_batch_size" not in kw and "max_num_tokens" not in kw


def test_measured_allreduce_bandwidth_by_group_size():
    """A pair of fully connected 910Bs reaches only its own HCCS link: TP2 collectives run at
    the measured 2-NPU all-reduce rate (18 GB/s), not 392 GB/s x the NVLink-derived
    efficiency; sizes between measured points interpolate, beyond them hold."""
    g, c = get_gpu("ascend-910b"), seam.params(None)
    assert seam._collective_Bps(g, 2, c) == pytest.approx(18e9)
    assert seam._collective_Bps(g, 3, c) == pytest.approx(31.5e9)  # halfway to 4 NPUs' 45
    assert seam._collective_Bps(g, 16, c) == pytest.approx(126e9)
    h = get_gpu("h100-sxm")  # no measured curve: scale-up bandwidth x the global efficiency
    assert seam._collective_Bps(h, 2, c) == pytest.approx(
        h.scale_up_bw_Bps * c["collective_bandwidth_efficiency"])


def test_910b_allreduce_curve_is_the_scripts_rate_in_bus_terms():
    """The limulidae script divides a tensor's bytes by the time (algorithm bandwidth: 18 / 30 /
    72 GB/s on 2 / 4 / 8 NPUs); the model charges 2(n-1)/n x message / rate, so the stored
    curve is x 2(n-1)/n. Its all_gather column (38 / 64 / 149 GB/s of output) in bus terms,
    x (n-1)/n, lands within 8 % at each size: the same links under two collectives."""
    q = get_gpu("ascend-910b").quantities["allreduce_bandwidth"]
    n = np.array(q.x)
    bus = np.array([18e9, 30e9, 72e9]) * 2.0 * (n - 1.0) / n
    assert np.array(q.y) == pytest.approx(bus)
    gather_bus = np.array([38e9, 64e9, 149e9]) * (n - 1.0) / n
    assert np.all(np.abs(gather_bus / bus - 1.0) < 0.08)
    assert q.kind == "derived" and "bench_collective.py" in q.source


def test_tp2_allreduce_time_on_910b_follows_the_measured_rate():
    """Hand check: one all-reduce of 1000 tokens x 4096 x 2 B = 8.192 MB over 2 NPUs takes
    alpha + 2(2-1)/2 x 8.192 MB / 18 GB/s = alpha + 455.1 us; Qwen3-8B issues 2 per layer."""
    m, g = get_model("qwen3-8b"), get_gpu("ascend-910b")
    s = seam.setup(m, g, get_framework("vllm-ascend"), 2.0, 1.0, 1.0, "bf16", "bf16",
                   seam.params(None))
    ops, _, _ = step_ops(s, 1000.0, 1.0, 0.0, 0.0, 0.0, 1000.0)
    one = s.coll_alpha_s + 8.192e6 / 18e9
    assert ops["tp_allreduce"]["time_s"] == pytest.approx(2 * m.num_layers * one)


TOY_DENSE = """schema_version = 1
[framework.toy-dense]
name = "toy engine whose prompt attention computes the whole square"
step_overhead = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "round" }
causal_attention_work = { value = 2, unit = "1", kind = "assumed", source = "test", reason = "round" }
"""


def test_dense_mask_attention_doubles_prompt_attention_only(tmp_path):
    """A 32768-token prompt on the 910B: 2 x 32 heads x 32768 x 32769 / 2 causal pairs x
    (128 + 128) x 36 layers = 3.167e14 FLOP, 2.1002 s at the kernel's 150.78 TFLOP/s, and
    twice that when every pair of the square is computed; a decode step's attention
    (memory-bound) does not move."""
    p = tmp_path / "dense.toml"
    p.write_text(TOY_DENSE)
    with use_catalog(Catalog.default().with_file(p)):
        dense = _setup("qwen3-8b", "ascend-910b", "toy-dense")
    plain = _setup("qwen3-8b", "ascend-910b", "vllm")
    assert dense.attn_Fps == pytest.approx(150.78e12 / 2)
    S = 32768.0
    pf = (S, 1.0, S * (S + 1) / 2, 0.0, 0.0, S)
    a, b = step_ops(dense, *pf)[0]["attention"], step_ops(plain, *pf)[0]["attention"]
    assert b["compute_s"] == pytest.approx(2.1002, rel=1e-4)
    assert a["time_s"] == pytest.approx(2 * b["time_s"], rel=1e-3)
    dec = (64.0, 64.0, 0.0, 64 * 4000.0, 64 * 4000.0, 64.0)
    assert step_ops(dense, *dec)[0]["attention"]["time_s"] == step_ops(plain, *dec)[0][
        "attention"]["time_s"]


def test_vllm_ascend_prompt_attention_work_is_sourced():
    q = get_framework("vllm-ascend").quantities["causal_attention_work"]
    assert q.si == 2.0 and q.kind == "derived" and "isTriuMask" in q.source


TOY_COPY = """schema_version = 1
[framework.toy-copy]
name = "toy engine copying its grouped-matmul outputs"
step_overhead = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "round" }
moe_gmm_output_copy = true
[framework.toy-nocopy]
name = "toy engine, grouped-matmul outputs used in place"
step_overhead = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "round" }
"""


def _tp_setup(model, fw, tp, ep):
    return seam.setup(get_model(model), get_gpu("ascend-910b"), get_framework(fw), tp, 1.0, ep,
                      "bf16", "bf16", seam.params())


@pytest.mark.parametrize("ep, width", [(1.0, 8 * (768 + 2048)), (2.0, 8 * (768 + 1024))])
def test_gmm_output_copy_golden(catalog_with, ep, width):
    """Qwen3-30B-A3B on TP2 (48 MoE layers, top-8, moe_intermediate 768, hidden 2048), 1000
    tokens, bf16: each rank copies k x (2 x 768 / 2) gate-up and k x 2048 / ep down elements
    per token per layer, read and written: 2 x 2 B x 1000 x width x 48 bytes (4.325376 GB at
    ep 1), at the HBM rate, plus two kernels per layer."""
    catalog_with(TOY_COPY)
    m = get_model("qwen3-30b-a3b")
    assert (m.num_moe_layers, m.experts_per_token, m.moe_intermediate_size, m.hidden_size) == (
        48, 8, 768, 2048)
    s = _tp_setup("qwen3-30b-a3b", "toy-copy", 2.0, ep)
    ops, stage, latency = step_ops(s, 1000.0, 1000.0, 1000.0 ** 2 / 2, 0.0, 0.0, 1000.0)
    op = ops["moe_copy"]
    assert op["bytes"] == pytest.approx(2 * 2 * 1000 * width * 48, rel=1e-12)
    assert ep != 1.0 or op["bytes"] == pytest.approx(4.325376e9, rel=1e-12)
    assert op["flops"] == 0.0
    assert op["time_s"] == pytest.approx(op["bytes"] / s.hbm_Bps + 96 * s.kernel_s)
    ref = _tp_setup("qwen3-30b-a3b", "toy-nocopy", 2.0, ep)
    ops0, stage0, latency0 = step_ops(ref, 1000.0, 1000.0, 1000.0 ** 2 / 2, 0.0, 0.0, 1000.0)
    assert "moe_copy" not in ops0
    assert stage - stage0 == pytest.approx(op["time_s"])
    assert latency - latency0 == pytest.approx(op["time_s"])


def test_gmm_output_copy_only_for_moe_models(catalog_with):
    catalog_with(TOY_COPY)
    s = _tp_setup("qwen3-8b", "toy-copy", 1.0, 1.0)
    assert s.gmm_copy == 1.0
    assert "moe_copy" not in step_ops(s, 512.0, 512.0, 512.0 ** 2 / 2, 0.0, 0.0, 512.0)[0]


def test_gmm_output_copy_grows_with_tokens_and_never_lowers_latency(catalog_with):
    catalog_with(TOY_COPY)
    a, b = (_tp_setup("qwen3-30b-a3b", f, 2.0, 1.0) for f in ("toy-copy", "toy-nocopy"))
    prev = 0.0
    for tokens in (1.0, 256.0, 4096.0, 40960.0):
        args = (tokens, tokens, 0.0, tokens * 500.0, tokens * 500.0, tokens)
        t = step_ops(a, *args)[0]["moe_copy"]["time_s"]
        assert t > prev and step_ops(a, *args)[2] >= step_ops(b, *args)[2]
        prev = t


def test_vllm_ascend_v091_copies_its_grouped_matmul_outputs():
    """The flag is set for vLLM-Ascend (v0.9.1 fused_moe.py torch.cat) with its source line,
    and no other engine sets it."""
    assert get_framework("vllm-ascend").quantities["moe_gmm_output_copy"] is True
    for fw in ("vllm", "sglang", "tensorrt-llm"):
        assert "moe_gmm_output_copy" not in get_framework(fw).quantities
    line = next(x for x in (ROOT / "hardware_db" / "frameworks.toml").read_text().splitlines()
                if x.startswith("moe_gmm_output_copy"))
    assert "fused_moe.py" in line and "#2153" in line and "0740d102" in line


def test_simulator_charges_the_copy_like_estimate():
    """One Qwen3-30B-A3B request on two 910Bs: the simulator's steps and the closed form
    carry the same moe_copy op (shared step_ops)."""
    from kvmodel.sim import poisson_requests, simulate

    r = simulate("qwen3-30b-a3b", "ascend-910b", poisson_requests(1, 1.0, 2000, 20), tp=2,
                 framework="vllm-ascend")
    e = kvmodel.estimate("qwen3-30b-a3b", "ascend-910b", tp=2, input_len=2000, output_len=20,
                         batch=1, framework="vllm-ascend")
    assert "moe_copy" in e.breakdown["prefill"]
    assert r.ttft_s[0] == pytest.approx(e.ttft_s, rel=1e-9)
    assert r.tpot_s[0] == pytest.approx(e.tpot_s, rel=1e-9)
