"""Weight-only quantisation (int4 w4a16, mxfp4, nvfp4): packed weight bytes by hand on a toy
model, the compute precision per GPU, gpt-oss-120b MXFP4 on one H100, and clear errors."""

import numpy as np
import pytest

import kvmodel
from kvmodel import estimate
from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import BYTES_PER_ELEMENT, ModelSpec, get_model
from kvmodel.instance._roofline import memory_per_gpu
from kvmodel.instance.seam import compute_precision, params, setup

# Toy dense model: h=1000, 10 layers, MHA 10 x 100, gated MLP 4000, vocab 10,000, untied.
# Per layer: qkv 1000 x 3000 + o 1000 x 1000 = 4e6 attention weights, MLP 3 x 1000 x 4000 =
# 12e6; x 10 layers = 4e7 attention + 1.2e8 MLP; embeddings + LM head 2 x 1e7 = 2e7.
TOY = ModelSpec(key="toy", name="toy", hf_id="toy", attention="mha", hidden_size=1000,
                num_layers=10, num_attention_heads=10, num_kv_heads=10, head_dim=100,
                intermediate_size=4000, vocab_size=10_000)


def toy_setup(precision, gpu="h100-sxm"):
    return setup(TOY, get_gpu(gpu), get_framework("vllm"), 1.0, 1.0, 1.0, precision, "bf16",
                 params())


def test_packed_sizes_include_scales():
    # int4: 4 bits + fp16 scale per 128; mxfp4: + E8M0 per 32; nvfp4: + E4M3 per 16
    assert BYTES_PER_ELEMENT["int4"] == 0.515625   # 4.125 bits
    assert BYTES_PER_ELEMENT["mxfp4"] == 0.53125   # 4.25 bits
    assert BYTES_PER_ELEMENT["nvfp4"] == 0.5625    # 4.5 bits


@pytest.mark.parametrize("precision, expected_B", [
    ("bf16", 1.8e8 * 2.0),                                  # everything 16-bit: 3.6e8
    ("int4", 1.6e8 * 0.515625 + 2e7 * 2.0),                 # attn + MLP packed: 1.225e8
    ("nvfp4", 1.6e8 * 0.5625 + 2e7 * 2.0),                  # attn + MLP packed: 1.3e8
    ("mxfp4", 1.2e8 * 0.53125 + (4e7 + 2e7) * 2.0),         # MLP packed only: 1.8375e8
])
def test_toy_weight_bytes_by_hand(precision, expected_B):
    weights, _ = memory_per_gpu(toy_setup(precision), 0.0)
    assert weights == pytest.approx(expected_B, rel=1e-12)


def test_compute_precision_native_fp4_else_bf16():
    h100, b200 = get_gpu("h100-sxm"), get_gpu("b200")
    assert compute_precision(h100, "mxfp4") == "bf16"  # dequantised to bf16 MMA on Hopper
    assert compute_precision(h100, "nvfp4") == "bf16"
    assert compute_precision(b200, "mxfp4") == "fp4"   # Blackwell FP4 tensor cores
    assert compute_precision(b200, "nvfp4") == "fp4"
    assert compute_precision(b200, "int4") == "bf16"   # w4a16: 16-bit activations
    assert compute_precision(h100, "fp8") == "fp8"      # other precisions unchanged


def test_gemm_rates_follow_the_compute_precision():
    cal = params()
    b200 = get_gpu("b200")
    s = toy_setup("mxfp4", "b200")
    fp4 = b200.peak_flops["fp4"] * b200.matmul_eff["fp4"] * cal["gemm_efficiency_factor"]
    bf16 = b200.peak_flops["bf16"] * b200.matmul_eff["bf16"] * cal["gemm_efficiency_factor"]
    assert s.gemm_Fps == pytest.approx(fp4)
    assert s.proj_Fps == pytest.approx(bf16)  # gpt-oss keeps attention in bf16
    assert s.head_Fps == pytest.approx(bf16)
    assert toy_setup("nvfp4", "b200").proj_Fps == pytest.approx(fp4)
    assert toy_setup("int4", "b200").gemm_Fps == pytest.approx(bf16)


def test_gpt_oss_120b_mxfp4_fits_one_h100_bf16_does_not():
    kw = dict(tp=1, input_len=1024, output_len=256, batch=1)
    q = estimate("gpt-oss-120b", "h100-sxm", precision="mxfp4", **kw)
    assert q.feasible, q.reason
    # published checkpoint: 60.8 GiB = 65.3 GB (experts MXFP4, attention/embeddings bf16)
    assert 60e9 <= q.weights_B_per_gpu <= 66e9
    assert q.inputs["kv_precision"] == "bf16"  # KV precision independent of the weight format
    b = estimate("gpt-oss-120b", "h100-sxm", precision="bf16", **kw)
    assert not b.feasible and "exceed HBM" in b.reason


@pytest.mark.parametrize("precision", ["int4", "nvfp4", "mxfp4"])
def test_memory_bound_decode_tpot_falls_with_weight_bytes(precision):
    kw = dict(tp=1, input_len=128, output_len=128, batch=1, kv_precision="bf16")
    b = estimate("llama-3.1-8b", "h100-sxm", precision="bf16", **kw)
    q = estimate("llama-3.1-8b", "h100-sxm", precision=precision, **kw)
    bytes_ratio = q.weights_B_per_gpu / b.weights_B_per_gpu
    assert 0.3 < bytes_ratio < 0.5
    # batch-1 decode streams every weight once per step: the TPOT saved is exactly the weight
    # bytes saved at the effective HBM bandwidth (the fixed per-kernel and framework costs,
    # the KV read and the 16-bit LM head stay, so TPOT falls less than the bytes)
    s = setup(get_model("llama-3.1-8b"), get_gpu("h100-sxm"),
              get_framework(b.inputs["framework"]), 1.0, 1.0, 1.0, "bf16", "bf16", params())
    saved_s = (b.weights_B_per_gpu - q.weights_B_per_gpu) / s.hbm_Bps
    assert b.tpot_s - q.tpot_s == pytest.approx(saved_s, rel=1e-9)
    assert bytes_ratio < q.tpot_s / b.tpot_s < 1.0


def test_fp8_kv_next_to_a_weight_only_format():
    r = estimate("gpt-oss-120b", "h100-sxm", tp=1, precision="mxfp4", kv_precision="fp8",
                 input_len=1024, output_len=256, batch=1)
    assert r.feasible and r.inputs["kv_precision"] == "fp8"


def test_unknown_and_misplaced_formats_give_clear_errors():
    kw = dict(tp=1, input_len=128, output_len=128, batch=1)
    with pytest.raises(ValueError, match=r"precision='int3'.*mxfp4"):
        estimate("llama-3.1-8b", "h100-sxm", precision="int3", **kw)
    with pytest.raises(ValueError, match=r"kv_precision='mxfp4'.*not cache formats"):
        estimate("llama-3.1-8b", "h100-sxm", precision="mxfp4", kv_precision="mxfp4", **kw)
    with pytest.raises(ValueError, match=r"kv_precision='nvfp4'; allowed"):
        get_model("llama-3.1-8b").kv_bytes(1024, "nvfp4")


def test_existing_precisions_unchanged_by_the_split():
    s = toy_setup("fp8")
    assert s.proj_B == s.head_B == s.w_B == 1.0
    assert s.proj_Fps == s.head_Fps == s.gemm_Fps


def test_break_even_takes_weight_only_formats():
    """Break-even runs the prefix recompute in the format's compute precision (bf16 on Hopper)."""
    q = kvmodel.break_even_bandwidth("gpt-oss-120b", "h100-sxm", num_gpus=1, prefix_len=8192,
                                     precision="mxfp4")
    assert np.isfinite(q) and q > 0
    ideal_q = kvmodel.break_even_bandwidth("llama-3.1-8b", "h100-sxm", num_gpus=1,
                                           prefix_len=8192, precision="int4", ideal=True)
    ideal_b = kvmodel.break_even_bandwidth("llama-3.1-8b", "h100-sxm", num_gpus=1,
                                           prefix_len=8192, precision="bf16", ideal=True)
    assert ideal_q == pytest.approx(ideal_b)  # same bf16 compute, same KV bytes


def test_search_spaces_may_name_weight_only_formats():
    from kvmodel import search
    from kvmodel.search._objectives import check_names
    raw = space_dict("tier-sizing-small")
    raw["fixed"]["precision"] = "mxfp4"
    check_names(search.space_from_dict(raw))  # accepted
    raw["fixed"]["precision"] = "fp9"
    with pytest.raises(search.SpaceError, match="fp9"):
        check_names(search.space_from_dict(raw))


def space_dict(name):
    import tomllib
    from pathlib import Path

    from kvmodel import search
    return tomllib.loads((Path(search.__file__).parent / "spaces" / f"{name}.toml").read_text())
