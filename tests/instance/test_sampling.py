"""Top-k / top-p sampling time per step (kvmodel/instance/_sampling.py): the framework's
``sampling_time`` per sampled sequence per vocabulary entry, charged to the calibration's
``sampled_sequence_share`` of the sequences; 0 by default (benchmarks decode greedily)."""

import numpy as np
import pytest
from conftest import ROOT

import kvmodel
from kvmodel.catalog.hardware import Catalog, get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance import _sampling, seam
from kvmodel.instance._roofline import step_ops
from kvmodel.sim import poisson_requests, simulate

SHARE = "sampled_sequence_share"


def _setup(share=None, framework="vllm-ascend", pp=1.0, model="qwen3-8b"):
    cal = dict(seam.params())
    if share is not None:
        cal[SHARE] = share
    return seam.setup(get_model(model), get_gpu("ascend-910b"), get_framework(framework), 1.0,
                      pp, 1.0, "bf16", "bf16", cal)


def _decode(s, batch, ctx=2000.0):
    return step_ops(s, batch, batch, 0.0, batch * ctx, batch * ctx, batch)


def test_entry_is_sourced_and_only_vllm_ascend_has_one():
    q = get_framework("vllm-ascend").quantities["sampling_time"]
    assert q.si == pytest.approx(3.5e-9) and q.kind == "derived"
    assert "13847" in q.source and "13.662" in q.source and "7608" in q.source
    for fw in ("vllm", "sglang", "tensorrt-llm"):
        assert "sampling_time" not in get_framework(fw).quantities


def test_default_share_is_greedy_and_leaves_the_step_alone():
    """The bundled calibration samples nothing (vllm bench serve sends temperature 0)."""
    assert seam.params()[SHARE] == 0.0
    s = _setup()
    assert s.sample_s == 0.0
    ops, _, _ = _decode(s, 64.0)
    assert "sampling" not in ops


def test_decode_step_grows_by_batch_x_vocab_x_time():
    """256 Qwen3 decoders, all sampling: 256 x 151936 x 3.5 ns = 136 ms more per step, in the
    stage (throughput periods) and the latency alike."""
    B, vocab = 256.0, get_model("qwen3-8b").vocab_size
    ops0, stage0, lat0 = _decode(_setup(0.0), B)
    ops1, stage1, lat1 = _decode(_setup(1.0), B)
    extra = B * vocab * 3.5e-9
    assert ops1["sampling"]["time_s"] == pytest.approx(extra)
    assert extra == pytest.approx(0.136, rel=1e-2)
    assert stage1 - stage0 == pytest.approx(extra)
    assert lat1 - lat0 == pytest.approx(extra)


def test_share_scales_the_time_and_pipeline_samples_once():
    half, full = _setup(0.5), _setup(1.0)
    assert half.sample_s == pytest.approx(0.5 * full.sample_s)
    _, _, lat0 = _decode(_setup(0.0, pp=2.0, model="qwen3-30b-a3b"), 32.0)
    _, _, lat1 = _decode(_setup(1.0, pp=2.0, model="qwen3-30b-a3b"), 32.0)
    assert lat1 - lat0 == pytest.approx(32.0 * get_model("qwen3-30b-a3b").vocab_size * 3.5e-9)


def test_framework_without_sampling_time_is_not_charged():
    assert _setup(1.0, framework="vllm").sample_s == 0.0
    kw = dict(framework="vllm", input_len=1000, output_len=100, batch=16)
    e0 = kvmodel.estimate("qwen3-8b", "h100-sxm", **kw)
    e1 = kvmodel.estimate("qwen3-8b", "h100-sxm", **kw, calibration={SHARE: 1.0})
    assert e1.tpot_s == e0.tpot_s and e1.output_tok_per_s == e0.output_tok_per_s


def test_static_batch_tpot_carries_the_closed_form():
    """A static batch of 32: each decode step gains 32 x vocab x 3.5 ns, so TPOT does too."""
    kw = dict(framework="vllm-ascend", input_len=1000, output_len=64, batch=32)
    e0 = kvmodel.estimate("qwen3-8b", "ascend-910b", **kw)
    e1 = kvmodel.estimate("qwen3-8b", "ascend-910b", **kw, calibration={SHARE: 1.0})
    extra = 32 * get_model("qwen3-8b").vocab_size * 3.5e-9
    assert e1.tpot_s - e0.tpot_s == pytest.approx(extra, rel=1e-6)
    assert e1.breakdown["decode"]["sampling"]["time_s"] == pytest.approx(extra)
    assert "sampling" not in e0.breakdown["decode"]


def test_share_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="sampled_sequence_share=1.5.*0 to 1"):
        _sampling.per_entry_s(get_framework("vllm-ascend"), {SHARE: 1.5})
    with pytest.raises(ValueError, match="sampled_sequence_share"):
        kvmodel.estimate("qwen3-8b", "ascend-910b", framework="vllm-ascend",
                         calibration={SHARE: -0.1})


def test_simulator_charges_each_decode_step_the_same(tmp_path, fresh_catalog):
    """16 requests arriving together (vLLM-Ascend: whole prompts first, then 16 decoders per
    step): with every sequence sampling, each decode step, so each request's TPOT, gains
    16 x vocab x 3.5 ns in the simulator (kvmodel.sim) and in estimate's static batch alike."""
    text = (ROOT / "hardware_db" / "calibration.toml").read_text()
    assert text.count("sampled_sequence_share = { value = 0,") == 1
    path = tmp_path / "share1.toml"
    path.write_text(text.replace("sampled_sequence_share = { value = 0,",
                                 "sampled_sequence_share = { value = 1,"))
    cat = Catalog.default().with_file(path)
    extra = 16 * get_model("qwen3-8b").vocab_size * 3.5e-9
    trace = poisson_requests(16, 1e6, input_len=500, output_len=32)
    r0 = simulate("qwen3-8b", "ascend-910b", trace, framework="vllm-ascend")
    r1 = simulate("qwen3-8b", "ascend-910b", trace, framework="vllm-ascend", catalog=cat)
    assert np.median(r1.tpot_s - r0.tpot_s) == pytest.approx(extra, rel=1e-6)
    kw = dict(framework="vllm-ascend", input_len=500, output_len=32, batch=16)
    e0 = kvmodel.estimate("qwen3-8b", "ascend-910b", **kw)
    e1 = kvmodel.estimate("qwen3-8b", "ascend-910b", **kw, catalog=cat)
    assert e1.tpot_s - e0.tpot_s == pytest.approx(extra, rel=1e-6)
