"""Golden values by hand arithmetic on toy hardware with round numbers, plus identities."""

import dataclasses
import math

import numpy as np
import pytest

from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import ModelSpec
from kvmodel.instance._roofline import (
    Setup,
    _distinct_experts,
    label_bounds,
    memory_per_gpu,
    step_ops,
)

# Toy model: h=1000, 10 layers, 10 heads of 100 (MHA), gated MLP of 4000, vocab 10,000.
TOY = ModelSpec(key="toy", name="toy", hf_id="toy", attention="mha", hidden_size=1000,
                num_layers=10, num_attention_heads=10, num_kv_heads=10, head_dim=100,
                intermediate_size=4000, vocab_size=10_000)


def setup(tp=1, alpha=0.0, coll=1e11, **kw):
    # 1 PFLOP/s, 1 TB/s, bf16 everything, no overheads
    base = dict(model=TOY, gpu=get_gpu("h100-sxm"), framework=get_framework("vllm"), tp=tp,
                pp=1, ep=1, w_B=2.0, kv_B=2.0, act_B=2.0, gemm_Fps=1e15, attn_Fps=1e15,
                hbm_Bps=1e12, coll_alpha_s=alpha, coll_Bps=coll, p2p_alpha_s=0.0, overhead_s=0.0)
    base.update(kw)
    return Setup(**base)


def decode(s, ctx=1000):
    return step_ops(s, 1.0, 1.0, 0.0, float(ctx), float(ctx), 1.0)


def test_decode_step_golden():
    ops, stage, latency = decode(setup())
    label_bounds(ops)
    # qkv: W = 1000 x 3000 = 3e6 elements -> 6e6 B; activations (1000 in + 3000 out) x 2 B
    #      = 8000 B; per layer 6,008,000 B; x10 layers = 60.08e6 B / 1e12 B/s = 60.08 us
    assert ops["qkv_proj"]["time_s"] == pytest.approx(60.08e-6)
    assert ops["qkv_proj"]["bound"] == "memory"
    # attention: KV of 1000 cached + 1 new token, 2 x 10 x 100 elements x 2 B = 4000 B/token
    #            -> 4,004,000 B + q/o 10 x 200 x 2 = 4000 B; x10 = 40.08e6 B -> 40.08 us
    assert ops["attention"]["time_s"] == pytest.approx(40.08e-6)
    # FLOPs: 2 x 10 heads x 1000 pairs x (100 + 100) = 4e6 per layer
    assert ops["attention"]["flops"] == pytest.approx(4e7)
    # o_proj: 1e6 x 2 B + 2 x 1000 x 2 B = 2,004,000 B x 10 -> 20.04 us
    assert ops["o_proj"]["time_s"] == pytest.approx(20.04e-6)
    # mlp: 3 x 1000 x 4000 = 12e6 elements -> 24e6 B + (2000 + 8000) x 2 B -> 24.02e6 x 10
    assert ops["mlp"]["time_s"] == pytest.approx(240.2e-6)
    # lm head: 1e7 x 2 B + 10,000 fp32 logits = 20.04e6 B -> 20.04 us
    assert ops["lm_head"]["time_s"] == pytest.approx(20.04e-6)
    # elementwise per token: 10 layers x (8 x 1000 norms/residuals + rotary 2 x (1000 + 1000))
    #   + gated activation 3 x 4000 x 10 layers = 240,000 elements x 2 B = 480,000 B -> 0.48 us
    assert ops["elementwise"]["time_s"] == pytest.approx(0.48e-6)
    assert ops["tp_allreduce"]["time_s"] == 0.0
    assert latency == pytest.approx(380.92e-6)


def test_breakdown_sums_to_latency():
    s = setup(tp=2, alpha=5e-6, overhead_s=1e-4)
    ops, stage, latency = step_ops(s, 300.0, 3.0, 4e4, 3000.0, 3000.0, 300.0)
    assert sum(op["time_s"] for op in ops.values()) == pytest.approx(latency)
    assert stage + ops["framework"]["time_s"] == pytest.approx(latency)


def test_allreduce_alpha_beta_golden():
    # tp=2, 1 token: message 1000 x 2 B = 2000 B; ring moves 2(n-1)/n = 1 message per GPU
    # -> 2000 B / 1e11 B/s = 20 ns + alpha 10 us; 2 all-reduces x 10 layers
    ops, _, _ = decode(setup(tp=2, alpha=10e-6))
    assert ops["tp_allreduce"]["time_s"] == pytest.approx(20 * (10e-6 + 20e-9))


def test_infinite_link_bandwidth_leaves_only_latency():
    ops, _, _ = step_ops(setup(tp=4, alpha=7e-6, coll=math.inf), 4096.0, 4.0, 0.0, 0.0, 0.0, 4096.0)
    assert ops["tp_allreduce"]["time_s"] == pytest.approx(20 * 7e-6)


def test_compute_bound_prefill_golden():
    # 100,000 tokens in one step: MLP FLOPs 2 x 1e5 x 12e6 = 2.4e12 per layer -> 24e12 / 1e15
    # = 24 ms; bytes 24e6 + 1e5 x 10,000 x 2 = 2.024e9 per layer -> 20.24 ms: compute-bound
    ops, _, _ = step_ops(setup(), 1e5, 1.0, 0.0, 0.0, 0.0, 1e5)
    label_bounds(ops)
    assert ops["mlp"]["time_s"] == pytest.approx(24e-3)
    assert ops["mlp"]["bound"] == "compute"


def test_more_bandwidth_never_slower():
    slow = decode(setup(hbm_Bps=1e12))[2]
    fast = decode(setup(hbm_Bps=2e12))[2]
    assert fast < slow


def test_kv_heads_replicate_when_tp_exceeds_them():
    gqa = dataclasses.replace(TOY, **{"num_kv_heads": 2})
    s4 = setup(tp=4, model=gqa)
    s2 = setup(tp=2, model=gqa)
    # 2 KV heads: at tp=2 one head per rank; at tp=4 each rank still holds one (replicated)
    assert s2.kv_elems_rank == s4.kv_elems_rank == 2 * 1 * 100


def test_memory_per_gpu_golden():
    weights, acts = memory_per_gpu(setup(), 8192.0)
    # per layer 3e6 (qkv) + 1e6 (o) + 12e6 (mlp); 10 layers; embedding + untied head 2 x 1e7
    assert weights == pytest.approx((10 * 16e6 + 2e7) * 2)
    # 8192 tokens x (4 x 1000 + 3 x 4000) x 2 B
    assert acts == pytest.approx(8192 * (4000 + 12000) * 2)


def test_distinct_experts_against_monte_carlo():
    moe = dataclasses.replace(TOY, **{"num_experts": 8, "experts_per_token": 2,
                       "moe_intermediate_size": 1000})
    rng = np.random.default_rng(0)
    for tokens in (1, 3, 10):
        hits = [len({e for _ in range(tokens) for e in rng.choice(8, 2, replace=False)})
                for _ in range(20000)]
        assert _distinct_experts(moe, float(tokens)) == pytest.approx(np.mean(hits), rel=0.02)


def test_scalar_and_array_paths_agree():
    s = setup(tp=2, alpha=3e-6)
    toks = np.array([1.0, 64.0, 4096.0])
    _, _, lat = step_ops(s, toks, toks, toks * 100, toks * 500, toks * 500, toks)
    for i, t in enumerate(toks):
        assert step_ops(s, t, t, t * 100, t * 500, t * 500, t)[2] == pytest.approx(lat[i])


# Toy MLA: h=1000, 10 layers, 10 heads; latent r=100 (+ rope 10); per head d_nope=50, d_v=50.
TOY_MLA = ModelSpec(key="toy-mla", name="toy-mla", hf_id="toy-mla", attention="mla",
                    hidden_size=1000, num_layers=10, num_attention_heads=10, num_kv_heads=10,
                    head_dim=60, intermediate_size=4000, vocab_size=10_000, kv_lora_rank=100,
                    qk_nope_head_dim=50, qk_rope_head_dim=10, v_head_dim=50)


def test_mla_prefill_over_a_cached_prefix_up_projects_the_latent():
    from kvmodel.instance._prefix import _prefill
    s = setup(model=TOY_MLA)
    ops, _, _ = _prefill(s, 1.0, 1100.0, 100.0)  # 1000 cached tokens, 100 new
    up = ops["mla_kv_upproj"]
    # by hand: 2 x 1000 tokens x r=100 x 10 heads x (50 + 50) x 10 layers = 2e9 FLOPs;
    # K/V written then read: 2 x 1000 x 10 x 100 x 2 B x 10 layers = 4e7 B
    assert up["flops"] == pytest.approx(2e9) and up["bytes"] == pytest.approx(4e7)
    # roofline at 1 PFLOP/s and 1 TB/s: max(2 us, 40 us) = 40 us
    assert up["time_s"] == pytest.approx(40e-6)
    assert _prefill(s, 1.0, 1100.0, 1100.0)[0]["mla_kv_upproj"]["flops"] == 0.0  # nothing cached
    assert "mla_kv_upproj" not in _prefill(setup(), 1.0, 1100.0, 100.0)[0]  # MHA: K/V are cached
