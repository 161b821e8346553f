"""Expert GEMMs of 4-bit weights on a GPU with an FP4 tensor core: MXFP4 checkpoints that
TensorRT-LLM runs against MXFP8 activations (``mxfp8_activation_moe_models``) issue the FP8/FP6
MMA kind, so the MoE op runs at the GPU's fp8 rate; a GPU's measured fused-MoE rate
(``achieved_moe_flops``) caps either; nothing else changes."""

import pytest

from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance import seam
from kvmodel.instance._roofline import step_ops


def _setup(model, gpu, fw="tensorrt-llm", precision="fp4"):
    m, g = get_model(model), get_gpu(gpu)
    return seam.setup(m, g, get_framework(fw), 1.0, 1.0, 1.0, precision, "fp8", seam.params())


def _fp8_over_fp4(gpu):
    g = get_gpu(gpu)
    return (g.peak_flops["fp8"] * g.matmul_eff["fp8"]) / (g.peak_flops["fp4"] * g.matmul_eff["fp4"])


def _fused_cap(gpu):
    q = get_gpu(gpu).quantities.get("achieved_moe_flops", {}).get("fp4")
    return float("inf") if q is None else q.si


@pytest.mark.parametrize("gpu", ["b200", "gb200", "b300", "gb300"])
def test_gpt_oss_experts_run_at_the_fp8_rate_on_blackwell(gpu):
    s = _setup("gpt-oss-120b", gpu)
    assert _fp8_over_fp4(gpu) < 1.0
    # the rate of a plain fp8 GEMM on that GPU (the calibration factor cancels), capped by the
    # GPU's fused-MoE measurement where it has one
    fp8 = _setup("gpt-oss-120b", gpu, precision="fp8").gemm_Fps
    assert fp8 == pytest.approx(s.gemm_Fps * _fp8_over_fp4(gpu))
    assert s.k["moe_Fps"] == pytest.approx(min(fp8, _fused_cap(gpu)))


@pytest.mark.parametrize("gpu", ["b200", "gb200", "b300", "gb300"])
def test_the_measured_fused_moe_rate_caps_nvfp4_experts(gpu):
    s = _setup("qwen3-30b-a3b", gpu)
    assert _fused_cap(gpu) < s.gemm_Fps
    assert s.k["moe_Fps"] == _fused_cap(gpu)


@pytest.mark.parametrize("model, gpu, fw, precision", [
    ("qwen3-30b-a3b", "rtx-pro-6000", "tensorrt-llm", "fp4"),  # NVFP4; no fused-MoE figure
    ("gpt-oss-120b", "rtx-pro-6000", "vllm", "fp4"),   # not listed for this engine, nor figure
    ("gpt-oss-120b", "b300", "tensorrt-llm", "fp8"),   # not a 4-bit checkpoint
    ("gpt-oss-120b", "h100-sxm", "tensorrt-llm", "mxfp4"),  # no FP4 tensor core
])
def test_other_moe_gemms_keep_the_gemm_rate(model, gpu, fw, precision):
    s = _setup(model, gpu, fw, precision)
    assert s.k["moe_Fps"] == s.gemm_Fps


def test_the_moe_op_slows_at_a_large_prefill_and_the_gemms_do_not():
    s = _setup("gpt-oss-120b", "rtx-pro-6000")  # (no fused-MoE figure to cap either)
    fast = _setup("gpt-oss-120b", "rtx-pro-6000", fw="vllm")
    ops, _, _ = step_ops(s, 32768.0, 1.0, 32768.0 ** 2 / 2, 0.0, 0.0, 32768.0)
    ref, _, _ = step_ops(fast, 32768.0, 1.0, 32768.0 ** 2 / 2, 0.0, 0.0, 32768.0)
    assert ops["moe"]["compute_s"] == pytest.approx(ref["moe"]["compute_s"] / _fp8_over_fp4("rtx-pro-6000"))
    assert ops["moe"]["compute_s"] > ops["moe"]["memory_s"]  # compute-bound at 32K tokens
    for op in ("qkv_proj", "o_proj", "lm_head"):  # (attention: the BF16 context FMHA below)
        assert ops[op]["time_s"] == pytest.approx(ref[op]["time_s"])


@pytest.mark.parametrize("gpu", ["b200", "gb200", "b300", "gb300"])
def test_gpt_oss_context_attention_runs_at_the_bf16_rate_over_fp8_kv(gpu):
    """trtllm-bench (block reuse and chunking off) runs gpt-oss's unquantised attention's
    context FMHA in BF16: the measured bf16 attention rate, the FP8 KV cache unchanged."""
    g = get_gpu(gpu)
    measured = g.quantities["achieved_attention_flops"]
    ratio = measured["bf16"].si / measured["fp8"].si
    s, other = _setup("gpt-oss-120b", gpu), _setup("gpt-oss-120b", gpu, fw="vllm")
    assert s.attn_Fps == other.attn_Fps and s.kv_B == 1.0
    assert s.k["attn_Fps"] == pytest.approx(other.k["attn_Fps"] * ratio)
    assert ratio < 1.0


@pytest.mark.parametrize("model, kv", [("qwen3-30b-a3b", "fp8"), ("gpt-oss-120b", "bf16")])
def test_quantised_attention_or_a_16_bit_cache_keeps_its_rate(model, kv):
    m, g = get_model(model), get_gpu("b300")
    s = seam.setup(m, g, get_framework("tensorrt-llm"), 1.0, 1.0, 1.0, "fp4", kv, seam.params())
    ref = seam.setup(m, g, get_framework("vllm"), 1.0, 1.0, 1.0, "fp4", kv, seam.params())
    assert s.k["attn_Fps"] == ref.k["attn_Fps"]
