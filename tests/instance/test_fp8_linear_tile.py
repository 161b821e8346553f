"""FP8 linear GEMMs that compute a whole token tile (``fp8_linear_tile_rows``, SGLang 0.4.6's
DeepGEMM path on Hopper: 64 rows): a step of fewer tokens is charged the tile's FLOPs, which
binds only where 128 FLOP per FP8 weight byte exceeds the GPU's ridge (the H20). Golden values
by hand on the toy model of test_roofline (1 byte weights, 100 TFLOP/s, 1 TB/s)."""

import dataclasses

import numpy as np
import pytest

from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import ModelSpec, get_model
from kvmodel.instance import seam
from kvmodel.instance._roofline import Setup, _linear_rows, step_ops

LINEAR = ("qkv_proj", "o_proj", "mlp")
# test_roofline's toy: h=1000, 10 layers, 10 heads of 100 (MHA), gated MLP of 4000
TOY = ModelSpec(key="toy", name="toy", hf_id="toy", attention="mha", hidden_size=1000,
                num_layers=10, num_attention_heads=10, num_kv_heads=10, head_dim=100,
                intermediate_size=4000, vocab_size=10_000)


def _toy(fw="sglang", gpu="h20", w_B=1.0, framework=None):
    """1-byte weights, 100 TFLOP/s GEMMs, 1 PFLOP/s attention, 1 TB/s, no overheads."""
    return Setup(model=TOY, gpu=get_gpu(gpu), framework=framework or get_framework(fw), tp=1,
                 pp=1, ep=1, w_B=w_B, kv_B=2.0, act_B=2.0, gemm_Fps=1e14, attn_Fps=1e15,
                 hbm_Bps=1e12, coll_alpha_s=0.0, coll_Bps=1e11, p2p_alpha_s=0.0, overhead_s=0.0)


def _step(s, tokens):
    return step_ops(s, tokens, 1.0, 0.0, 1000.0, 1000.0, 1.0)[0]


def test_decode_token_is_charged_the_64_row_tile_golden():
    ops = _step(_toy(), 1.0)
    # qkv: 2 x 64 rows x 3e6 weights x 10 layers = 3.84e9 FLOP / 1e14 = 38.4 us, above its
    # memory time (3e6 B + 8000 B activations) x 10 / 1e12 = 30.08 us
    assert ops["qkv_proj"]["flops"] == pytest.approx(3.84e9)
    assert ops["qkv_proj"]["time_s"] == pytest.approx(38.4e-6)
    assert ops["qkv_proj"]["memory_s"] == pytest.approx(30.08e-6)
    # o: 2 x 64 x 1e6 x 10 = 1.28e9 FLOP -> 12.8 us (memory 10.04 us)
    assert ops["o_proj"]["time_s"] == pytest.approx(12.8e-6)
    # mlp: 2 x 64 x 12e6 x 10 = 1.536e10 FLOP -> 153.6 us (memory 120.2 us)
    assert ops["mlp"]["time_s"] == pytest.approx(153.6e-6)
    # the same step without the tile (another engine): memory-bound, 1 row of FLOPs
    ref = _step(_toy(fw="vllm"), 1.0)
    assert ref["qkv_proj"]["time_s"] == pytest.approx(30.08e-6)
    assert ref["qkv_proj"]["flops"] == pytest.approx(6e7)
    for op in ("attention", "lm_head", "elementwise"):
        assert ops[op]["time_s"] == ref[op]["time_s"]


def test_rows_round_up_to_the_tile_scalar_and_array():
    s = _toy()
    assert [_linear_rows(s, t) for t in (0.0, 1.0, 64.0, 65.0, 128.0, 8192.0)] == [
        0.0, 64.0, 64.0, 128.0, 128.0, 8192.0]
    rows = _linear_rows(s, np.array([1.0, 37.5, 64.0, 65.0, 2049.0]))
    np.testing.assert_array_equal(rows, [64.0, 64.0, 64.0, 128.0, 2112.0])


@pytest.mark.parametrize("fw, gpu, w_B", [
    ("vllm", "h20", 1.0),          # no tile in the engine's entry
    ("sglang", "h20", 2.0),        # bf16 weights: cuBLAS, not the FP8 path
    ("sglang", "b200", 1.0),       # not Hopper: no DeepGEMM in that release
])
def test_other_setups_keep_the_token_count(fw, gpu, w_B):
    assert _linear_rows(_toy(fw, gpu, w_B), 3.0) == 3.0


def test_linear_time_is_flat_within_a_tile_and_monotone():
    s = _toy()
    tokens = np.arange(1.0, 300.0)
    t = sum(_step(s, tokens)[op]["time_s"] for op in LINEAR)
    assert np.all(np.diff(t) >= 0.0)
    assert np.ptp(t[:64]) == pytest.approx(0.0, abs=1e-15)  # 1..64 tokens: one tile
    # never below the untiled roofline, equal to it once the tokens fill whole tiles
    ref = sum(_step(_toy(fw="vllm"), tokens)[op]["time_s"] for op in LINEAR)
    assert np.all(t >= ref * (1 - 1e-12))
    whole = (tokens % 64 == 0)
    np.testing.assert_allclose(t[whole], ref[whole])


def _real(gpu, fw):
    m, g = get_model("qwen3-8b"), get_gpu(gpu)
    return seam.setup(m, g, get_framework(fw), 1.0, 1.0, 1.0, "fp8", "fp8", seam.params())


def test_the_tile_binds_on_the_h20_and_not_on_an_h100():
    """Qwen3-8B FP8 decode at one token: on the H20 (ridge 64 FLOP/B) the tiled linears turn
    compute-bound and slower; on the H100 (ridge 441) they stay memory-bound, unchanged."""
    h20 = _step(_real("h20", "sglang"), 1.0)
    h20_ref = _step(_real("h20", "vllm"), 1.0)
    h100 = _step(_real("h100-sxm", "sglang"), 1.0)
    h100_ref = _step(_real("h100-sxm", "vllm"), 1.0)
    for op in LINEAR:
        assert h20[op]["compute_s"] > h20[op]["memory_s"]
        assert h20[op]["time_s"] > h20_ref[op]["time_s"]
        assert h100[op]["compute_s"] < h100[op]["memory_s"]
        assert h100[op]["time_s"] == pytest.approx(h100_ref[op]["time_s"])


def test_the_tile_is_the_frameworks_entry():
    q = get_framework("sglang").quantities
    assert q["fp8_linear_tile_rows"].si == 64.0
    assert tuple(q["fp8_linear_tile_architectures"]) == ("hopper",)
    # without an architecture list the tile applies on every GPU
    no_arch = dataclasses.replace(get_framework("sglang"), quantities={
        "fp8_linear_tile_rows": q["fp8_linear_tile_rows"]})
    assert _linear_rows(_toy(gpu="b200", framework=no_arch), 3.0) == 64.0
