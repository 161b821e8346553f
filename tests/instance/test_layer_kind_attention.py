"""Attention work per layer kind in the step roofline: hand-counted causal pairs and cached
reads on toy models (one full + one sliding layer, chunked, linear attention), the state
update and write of linear-attention layers, bit-identity for full-attention models, the
simulator's decode contexts by kind, the attention rate by head dim and the sliding-window
kernel rate."""

import dataclasses

import numpy as np
import pytest

from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import ModelSpec, get_model
from kvmodel.instance._roofline import Setup, attn_pairs, attn_reads, step_ops

# 2 layers (MHA, 2 heads of 4): one sliding (window 4), one full
BASE = dict(key="toy2", name="toy2", hf_id="toy2", attention="mha", hidden_size=8, num_layers=2,
            num_attention_heads=2, num_kv_heads=2, head_dim=4, intermediate_size=16,
            vocab_size=32)
SLIDE = ModelSpec(**BASE, sliding_window=4, layer_pattern=("full", "sliding"))
FULL = ModelSpec(**BASE)


def setup(model, gpu="a100-sxm-80gb", **kw):
    base = dict(model=model, gpu=get_gpu(gpu), framework=get_framework("vllm"), tp=1, pp=1,
                ep=1, w_B=2.0, kv_B=2.0, act_B=2.0, gemm_Fps=1e15, attn_Fps=1e15, hbm_Bps=1e12,
                coll_alpha_s=0.0, coll_Bps=1e11, p2p_alpha_s=0.0, overhead_s=0.0)
    base.update(kw)
    return Setup(**base)


def test_keys_by_kind_by_hand():
    # a 10-token prompt: full 1+2+...+10 = 55; window 4: 1+2+3+4 + 6 x 4 = 34
    assert SLIDE.keys_before("full", 10) == 55
    assert SLIDE.keys_before("sliding", 10) == 34
    assert SLIDE.keys_before("sliding", 3) == 6  # inside the window: every key
    chunked = dataclasses.replace(FULL, attention_chunk_size=4, layer_pattern=("chunked",))
    # positions 0..9 in chunks of 4: (1+2+3+4) x 2 + (1+2) = 23
    assert chunked.keys_before("chunked", 10) == 23
    assert SLIDE.cached_keys("sliding", 100) == 4 and chunked.cached_keys("chunked", 10) == 2
    with pytest.raises(ValueError, match="kind='linear'"):
        SLIDE.keys_before("linear", 10)


def test_prefill_pairs_two_layer_toy():
    s = setup(SLIDE)
    # whole prompt from 0: 55 (full layer) + 34 (sliding layer) = 89 pairs over 2 layers
    assert attn_pairs(s, 55.0, 10, 10) * 2 == pytest.approx(89.0)
    ops = step_ops(s, 10.0, 1.0, attn_pairs(s, 55.0, 10, 10), 0.0, 0.0, 10.0)[0]
    # FLOPs: 2 x 2 heads x 89 pairs x (4 + 4)
    assert ops["attention"]["flops"] == pytest.approx(2 * 2 * 89 * 8)
    # a chunk of 4 after 6 cached: full 7+8+9+10 = 34, sliding 4 x 4 = 16
    assert attn_pairs(s, 34.0, 10, 4) * 2 == pytest.approx(50.0)
    # its cached reads: 6 in the full layer, 4 in the sliding one, mean 5 per layer
    assert attn_reads(s, 1.0, 6.0) == pytest.approx(5.0)
    assert attn_reads(s, 3.0, 2.0) == pytest.approx(6.0)  # inside the window: all


def test_full_attention_is_identity():
    s = setup(FULL)
    for pairs, I, n in ((55.0, 10.0, 10.0), (np.array([1.5, 7.0]), 3.0, 2.0)):
        assert attn_pairs(s, pairs, I, n) is pairs
    assert attn_reads(s, 3.0, 7.0) == 21.0


def test_vectorised_pairs_match_scalar():
    s = setup(SLIDE)
    I = np.array([10.0, 40.0, 3.0])
    got = attn_pairs(s, I * (I + 1.0) / 2.0, I, I)
    want = [attn_pairs(s, i * (i + 1.0) / 2.0, i, i) for i in I]
    assert np.allclose(got, want)


def _linear_toy():
    return ModelSpec(**{**BASE, "num_layers": 4}, layer_pattern=("linear", "linear", "linear",
                     "full"), linear_num_key_heads=1, linear_num_value_heads=2,
                     linear_key_head_dim=4, linear_value_head_dim=8, linear_conv_kernel_dim=4,
                     mamba_ssm_dtype="fp32")


def test_linear_layers_state_update_and_write():
    m = _linear_toy()
    s = setup(m)
    # state 2 heads x 4 x 8 = 64 fp32 + conv 3 x (2 x 4 + 2 x 8) = 72 bf16 = 256 + 144 B/layer
    assert m.kv_bytes_rank(0.0, 2.0) == 3 * (64 * 4 + 72 * 2) == 1200
    assert m.linear_flops_per_token() == 6 * 2 * 4 * 8
    # prompt pairs: only the one full layer attends (1/4 of the layers)
    assert attn_pairs(s, 55.0, 10, 10) * 4 == pytest.approx(55.0)
    # one decode token, context 0: no pairs; the 3 linear layers update (384 FLOPs each)
    # and write their 1200 B of state; the full layer writes its token (2 x 2 x 4 x 2 B)
    ops = step_ops(s, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0)[0]
    assert ops["attention"]["flops"] == pytest.approx(3 * 384)
    kv_new = 2 * 2 * 4 * 2.0  # one token's K and V in the full layer
    qo = 4 * 2 * 8 * 2.0  # q / o activations, 2 heads x 8, on every layer
    assert ops["attention"]["bytes"] == pytest.approx(1200 + kv_new + qo)


def test_decode_pairs_on_attention_layers_only():
    s = setup(_linear_toy())
    ops = step_ops(s, 1.0, 1.0, 0.0, 100.0, 100.0, 1.0)[0]
    # 100 cached tokens' pairs on the one full layer of 4, plus the linear layers' updates
    assert ops["attention"]["flops"] == pytest.approx(2 * 2 * 100 * 8 + 3 * 384)


def test_gpt_oss_long_prompt_halves_attention_flops():
    m = get_model("gpt-oss-120b")
    s = setup(m)
    I = 32768.0
    full = I * (I + 1.0) / 2.0
    got = attn_pairs(s, full, I, I)  # half the layers full, half a 128 window
    sliding = 128 * 129 / 2 + (I - 128) * 128
    assert got == pytest.approx((full + sliding) / 2.0)
    assert got / full == pytest.approx(0.504, abs=1e-3)


def test_head_dim_rate_applies_to_head_dim_64_only():
    oss = get_model("gpt-oss-120b")
    llama = get_model("llama-3.1-8b")
    h100 = get_gpu("h100-sxm")
    curve = h100.quantities["attention_head_dim_efficiency"]
    r64 = float(np.interp(64, curve.x, curve.y))
    assert 0.5 < r64 < 1.0
    assert setup(oss, gpu="h100-sxm").k["attn_Fps"] == pytest.approx(1e15 * r64)
    assert setup(llama, gpu="h100-sxm").k["attn_Fps"] == 1e15  # head dim 128: the rate itself
    no_curve = get_gpu("a100-sxm-80gb")
    assert "attention_head_dim_efficiency" not in no_curve.quantities
    assert setup(oss, gpu="a100-sxm-80gb").k["attn_Fps"] == 1e15


@pytest.mark.parametrize("model,gpu,precision", [("gpt-oss-120b", "h100-sxm", "mxfp4"),
                                                 ("gpt-oss-120b", "gb200", "mxfp4"),
                                                 ("gemma-3-27b", "b300", "fp8"),
                                                 ("qwen3-next-80b-a3b", "h200-sxm", "fp8"),
                                                 ("llama-4-scout", "h200-sxm", "fp8")])
def test_simulator_matches_closed_form_by_kind(model, gpu, precision):
    """One request: the simulator's per-chunk pairs and per-sequence decode KV by layer kind
    are the closed form's (decode contexts beyond the window: linear in the context)."""
    import kvmodel
    from kvmodel.sim import poisson_requests, simulate
    r = simulate(model, gpu, poisson_requests(1, 1.0, 3000, 200), precision=precision)
    e = kvmodel.estimate(model, gpu, input_len=3000, output_len=200, batch=1,
                         precision=precision)
    assert r.ttft_s[0] == pytest.approx(e.ttft_s, rel=1e-9)
    assert r.tpot_s[0] == pytest.approx(e.tpot_s, rel=1e-9)


def test_breakeven_recompute_counts_windowed_pairs():
    """Recomputing a gpt-oss prefix: half the layers attend over 128 tokens, so the quadratic
    term of t_rec(P) falls to about half of the all-full count's (same setup otherwise)."""
    from kvmodel.instance.breakeven import recompute_coefficients
    oss = get_model("gpt-oss-120b")
    full = dataclasses.replace(oss, key="oss-full", sliding_window=0, layer_pattern=("full",))
    a_win = recompute_coefficients(oss, "h100-sxm", 1, "mxfp4")[2]
    a_full = recompute_coefficients(full, "h100-sxm", 1, "mxfp4")[2]
    assert a_win == pytest.approx(0.5 * a_full, rel=0.02)


def test_sliding_pairs_at_the_window_rate_by_hand():
    """Two-layer toy (one full, one window-4 layer) on GB200: the sliding layer's 34 pairs run
    at its window rate, the curve held at its first point (window 128) below it, so the
    attention time is 55 / rate + 34 / (rate x eff), FLOPs counted at that equivalent."""
    s = setup(SLIDE, gpu="gb200")
    eff = get_gpu("gb200").quantities["sliding_window_attention_efficiency"].y[0]
    assert eff == pytest.approx(0.157)
    assert attn_pairs(s, 55.0, 10, 10) * 2 == pytest.approx(55.0 + 34.0 / eff)
    ops = step_ops(s, 10.0, 1.0, attn_pairs(s, 55.0, 10, 10), 0.0, 0.0, 10.0)[0]
    per_pair = 2 * 2 * 8 / s.k["attn_Fps"]  # 2 x 2 heads x (4 + 4) FLOPs, at the full rate
    assert ops["attention"]["compute_s"] == pytest.approx(per_pair * (55.0 + 34.0 / eff))
    # the same layers all full attention, or on a GPU without a curve: the full rate
    assert attn_pairs(setup(FULL, gpu="gb200"), 55.0, 10, 10) == 55.0
    assert attn_pairs(setup(SLIDE), 55.0, 10, 10) * 2 == pytest.approx(89.0)


def test_gpt_oss_window_rate_on_gb200():
    """gpt-oss (window 128) on GB200: each sliding pair costs 1 / 0.157 = 6.4 full-rate
    pairs; a 32K prompt's sliding layers then cost 5 % of the full layers' time, not 0.8 %."""
    s = setup(get_model("gpt-oss-120b"), gpu="gb200")
    I = 32768.0
    full = I * (I + 1.0) / 2.0
    sliding = 128 * 129 / 2 + (I - 128) * 128
    assert attn_pairs(s, full, I, I) == pytest.approx((full + sliding / 0.157) / 2.0)
    assert sliding / full == pytest.approx(0.0078, abs=1e-4)
    assert sliding / 0.157 / full == pytest.approx(0.0497, abs=1e-4)
    # the window interpolates: Gemma 3's 1024 on GB300 (0.566)
    g = setup(get_model("gemma-3-27b"), gpu="gb300")
    assert g.k["pair_w"][1][1] * 0.566 == pytest.approx(52 / 62)
