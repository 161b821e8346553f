"""DP attention with wide expert parallelism: the dispatch / combine all-to-all by hand on
round numbers, expert sharding against Monte Carlo, identities and monotonicity through
``estimate``, and the errors."""

import dataclasses

import numpy as np
import pytest

from kvmodel import estimate, get_gpu, get_link, get_node
from kvmodel.catalog.models import ModelSpec
from kvmodel.instance._wide_ep import WideEP
from kvmodel.instance.seam import params

# toy MoE: h = 1000, 32 experts, top-4
TOY = ModelSpec(key="toy-moe", name="toy-moe", hf_id="toy-moe", attention="mha", hidden_size=1000,
                num_layers=4, num_attention_heads=8, num_kv_heads=8, head_dim=125,
                intermediate_size=4000, vocab_size=10_000, num_experts=32, experts_per_token=4,
                moe_intermediate_size=500)


def wide(ep, per_node=8.0):
    # fp8 dispatch, bf16 combine; NVLink 100 GB/s, network 10 GB/s per GPU; alphas 1 us
    return WideEP(ep=ep, gpus_per_node=per_node, dispatch_B=1.0, combine_B=2.0, nvl_Bps=1e11,
                  net_Bps=1e10, alpha_s=1e-6, net_alpha_s=1e-6)


def test_alltoall_two_nodes_by_hand():
    # 100 tokens x top-4 x h 1000 = 4e5 elements per direction; EP16 over 2 nodes of 8:
    # 7/16 of them over NVLink, 8/16 over the network, 1/16 stay on the GPU
    op = wide(16.0).alltoall(TOY, 100.0, 1.0, 1.0)
    # dispatch (1 B): max(4e5 x 7/16 / 1e11, 4e5 x 8/16 / 1e10) = max(1.75 us, 20 us) = 20 us
    # combine (2 B): max(3.5 us, 40 us) = 40 us; alpha (1 + 1 us) per all-to-all, two of them
    assert op["time_s"] == pytest.approx(2 * 2e-6 + 20e-6 + 40e-6)
    assert op["bytes"] == pytest.approx(4e5 * 3 * 15 / 16)
    assert op["nvlink_s"] == pytest.approx(1.75e-6 + 3.5e-6)
    assert op["network_s"] == pytest.approx(20e-6 + 40e-6)


def test_alltoall_one_node_by_hand():
    # EP8 in one node: 7/8 over NVLink, nothing on the network, no NIC latency
    op = wide(8.0).alltoall(TOY, 100.0, 2.0, 3.0)  # tp=2: each GPU sends half of the tokens
    per = 50.0 * 4 * 1000
    t = 2 * 1e-6 + per * 7 / 8 * (1.0 + 2.0) / 1e11
    assert op["time_s"] == pytest.approx(3 * t)
    assert op["network_s"] == 0.0


def test_no_alltoall_at_ep_1():
    op = wide(1.0).alltoall(TOY, 100.0, 1.0, 5.0)
    assert op["time_s"] == 0.0 and op["bytes"] == 0.0


def test_local_experts_read_against_monte_carlo():
    # EP4: 8 local experts on GPU 0; 3 attention ranks' worth of tokens each of 5 tokens
    w, rng, tokens = wide(4.0), np.random.default_rng(1), 5
    hits = []
    for _ in range(20000):
        picks = [rng.choice(32, 4, replace=False) for _ in range(tokens * 4)]
        hits.append(len({e for p in picks for e in p if e < 8}))
    got = w.expert_read(TOY, float(tokens), 1.0) / TOY.expert_params
    assert got == pytest.approx(np.mean(hits), rel=0.02)


def _dp(**kw):
    base = dict(precision="fp8", input_len=2048, output_len=512, batch=64, attention_dp=True)
    base.update(kw)
    return estimate("deepseek-v3", "h100-sxm", **base)


def test_deepseek_v3_dp16_ep16_on_two_h100_nodes():
    e = _dp(ep=16, num_gpus=16)
    assert e.feasible, e.reason
    w = e.wide_ep
    cal, g, nic = params(), get_gpu("h100-sxm"), get_link(get_node("dgx-h100").nic_link)
    # 58 MoE layers; the decode step carries 64 tokens on each GPU (tp = 1)
    per = 64 * 8 * 7168
    nvl = g.scale_up_bw_Bps * cal["ep_alltoall_nvlink_efficiency"]
    net = nic.bw_Bps * cal["ep_alltoall_rdma_efficiency"]  # 8 NICs for 8 GPUs
    t = sum(max(per * b * 7 / 16 / nvl, per * b * 8 / 16 / net) for b in (1.0, 2.0))
    alpha = cal["collective_latency"] + nic.latency_s
    assert w["alltoall_s"] == pytest.approx(58 * (2 * alpha + t))
    assert w["alltoall_B_per_gpu"] == pytest.approx(58 * per * 3 * 15 / 16)
    assert 0.0 < w["alltoall_share"] < 1.0
    assert e.breakdown["decode"]["ep_alltoall"]["bound"] == "network"
    # 16 attention ranks of 64 sequences each
    assert e.output_tok_per_s == pytest.approx(16 * 64 * 512 / e.e2e_s)
    # the full model (~671e9 fp8 weights) is far beyond one 80 GB GPU; EP16 fits it with room for KV
    assert e.weights_B_per_gpu < 80e9 and e.kv_capacity_tokens > 64 * (2048 + 512)


def test_more_ep_never_more_expert_weight_per_gpu():
    eps = [8, 16, 32, 64]
    es = [_dp(ep=ep, num_gpus=ep) for ep in eps]
    w = [e.weights_B_per_gpu for e in es]
    assert all(a >= b for a, b in zip(w, w[1:])) and w[0] > w[-1]
    kv = [e.kv_capacity_tokens for e in es]
    assert all(a <= b for a, b in zip(kv, kv[1:]))


def test_ep_1_equals_the_plain_single_gpu_instance():
    m = "qwen3-30b-a3b"
    for kw in (dict(batch=8), dict(batch="max"), dict(concurrency=16)):
        a = estimate(m, "h100-sxm", tp=1, input_len=1024, output_len=128, **kw)
        b = estimate(m, "h100-sxm", tp=1, ep=1, attention_dp=True, input_len=1024,
                     output_len=128, **kw)
        for f in ("ttft_s", "tpot_s", "output_tok_per_s", "kv_capacity_tokens"):
            assert getattr(b, f) == pytest.approx(getattr(a, f), rel=1e-9), (kw, f)
        assert b.wide_ep["alltoall_s"] == 0.0 and a.wide_ep == {}


def test_array_ep_equals_the_loop():
    eps = np.array([8.0, 16.0, 32.0])
    v = _dp(ep=eps, num_gpus=eps)
    for i, ep in enumerate(eps):
        one = _dp(ep=float(ep), num_gpus=float(ep))
        assert v.tpot_s[i] == pytest.approx(one.tpot_s, rel=1e-12)
        assert v.wide_ep["alltoall_s"][i] == pytest.approx(one.wide_ep["alltoall_s"], rel=1e-12)


def test_num_gpus_alone_sets_the_ep_group():
    a, b = _dp(num_gpus=16), _dp(ep=16)
    assert a.tpot_s == b.tpot_s and a.output_tok_per_s == b.output_tok_per_s


def test_fp8_dispatch_moves_fewer_bytes_than_bf16():
    a, b = _dp(ep=16), _dp(ep=16, attention_dp={"dispatch": "bf16"})
    assert a.wide_ep["alltoall_B_per_gpu"] < b.wide_ep["alltoall_B_per_gpu"]
    assert a.tpot_s <= b.tpot_s


@pytest.mark.parametrize("kw, match", [
    (dict(model="llama-3.1-8b"), "needs an MoE model"),
    (dict(pp=2), "pp=1 only"),
    (dict(tp=3, ep=16), "must divide ep"),
    (dict(ep=16, num_gpus=24), "multiple of ep"),
    (dict(attention_dp={"dispatch": "fp7"}), "allowed"),
    (dict(attention_dp={"dispach": "fp8"}), "unknown key"),
    (dict(attention_dp="yes"), "expected True, False or a mapping"),
])
def test_errors_name_the_argument(kw, match):
    base = dict(model="deepseek-v3", ep=16, attention_dp=True)
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        estimate(base.pop("model"), "h100-sxm", precision="fp8", **base)


def test_gpu_without_a_node_template_needs_node(toy_gpu):
    with pytest.raises(ValueError, match="no node template has gpu 'toy'"):
        estimate(dataclasses.replace(TOY), "toy", ep=2, attention_dp=True)


@pytest.mark.parametrize("ep, dispatch_us, combine_us", [(16, 118, 195), (32, 155, 273),
                                                         (64, 173, 314)])
def test_deepep_low_latency_kernels_within_20_percent(ep, dispatch_us, combine_us):
    """Component check against DeepEP's low-latency table (docs/legacy.md @0297fc80: H800,
    one CX7 400 Gb/s NIC per GPU, 128 tokens, hidden 7168, top-8, FP8 dispatch, BF16
    combine); the efficiencies come from the same README's normal-kernel table, the
    latency from calibration.toml. One MoE layer; dispatch and combine separately."""
    cal, nic = params(), get_link("ib-ndr")
    ds = dataclasses.replace(TOY, hidden_size=7168, num_experts=256, experts_per_token=8)
    common = dict(ep=float(ep), gpus_per_node=8.0, nvl_Bps=160e9 * cal[
        "ep_alltoall_nvlink_efficiency"], net_Bps=nic.bw_Bps * cal["ep_alltoall_rdma_efficiency"],
        alpha_s=cal["collective_latency"], net_alpha_s=nic.latency_s)
    for size, measured in ((1.0, dispatch_us), (2.0, combine_us)):
        w = WideEP(dispatch_B=size, combine_B=0.0, **common)
        one_way = w.alltoall(ds, 128.0, 1.0, 1.0)["time_s"] - w.alpha_s - w.net_alpha_s
        assert one_way * 1e6 == pytest.approx(measured, rel=0.2)
