"""Blackwell entries' measured collectives: a GPU's all-reduce bus bandwidth by group size
replaces scale_up_bandwidth x collective_bandwidth_efficiency in the TP all-reduce."""

import pytest

from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance import seam


def _coll_Bps(gpu, tp):
    s = seam.setup(get_model("llama-3.1-405b"), get_gpu(gpu), get_framework("tensorrt-llm"),
                   float(tp), 1.0, 1.0, "fp4", "fp8", seam.params())
    return s.coll_Bps


@pytest.mark.parametrize("tp, want", [(2, 673.8e9), (4, 673.8e9), (8, 682.2e9)])
def test_b200_ring_allreduce_by_group_size(tp, want):
    assert _coll_Bps("b200", tp) == pytest.approx(want)


def test_gb200_four_gpu_allreduce_held_for_every_size():
    q = get_gpu("gb200").quantities["allreduce_bandwidth"]
    assert q.kind == "measured" and "ND_GB200_v6" in q.source
    assert _coll_Bps("gb200", 2) == _coll_Bps("gb200", 8) == pytest.approx(679.61e9)


def test_blackwell_ring_below_the_link():
    for gpu in ("b200", "gb200"):
        g = get_gpu(gpu)
        assert _coll_Bps(gpu, 8) < g.scale_up_bw_Bps  # Ring busbw, not an in-switch reduction


def test_host_loop_time_follows_the_host_cpu():
    """Grace-hosted trays (GB200, GB300) share the measured Grace figure; x86 HGX boards (B200,
    B300) the x86 derivation 29.4 x 13.48 / 37.08 us; GPUs with no figure have no floor."""
    t = {g: get_gpu(g).quantities.get("host_sequence_time") for g in
         ("gb200", "gb300", "b200", "b300", "h100-sxm")}
    assert t["gb200"].si == t["gb300"].si == pytest.approx(29.4e-6)
    assert t["b200"].si == t["b300"].si == pytest.approx(29.4e-6 * 13.48 / 37.08, rel=0.01)
    assert t["h100-sxm"] is None


def _attn_Fps(gpu, kv):
    s = seam.setup(get_model("llama-3.3-70b"), get_gpu(gpu), get_framework("tensorrt-llm"),
                   1.0, 1.0, 1.0, "fp4", kv, seam.params())
    return s.attn_Fps


@pytest.mark.parametrize("gpu, fp8, bf16", [("gb200", 2197e12, 1622e12), ("gb300", 3108e12, 1953e12)])
def test_grace_blackwell_attention_is_the_measured_cudnn_kernel(gpu, fp8, bf16):
    """GB200 / GB300 attention runs at cuDNN's measured causal forward rate (cudnn-frontend SDPA
    benchmark, head dim 128, 32K tokens), in the KV cache's precision, not best GEMM x 0.931."""
    q = get_gpu(gpu).quantities["achieved_attention_flops"]
    assert q["fp8"].kind == q["bf16"].kind == "measured" and "cudnn-frontend" in q["fp8"].source
    assert _attn_Fps(gpu, "fp8") == pytest.approx(fp8)
    assert _attn_Fps(gpu, "bf16") == pytest.approx(bf16)


@pytest.mark.parametrize("gpu, sibling", [("b200", "gb200"), ("b300", "gb300")])
def test_hgx_attention_scales_the_superchip_measurement_by_peak(gpu, sibling):
    """HGX B200 / B300 take their NVL72 sibling's measured rate x the ratio of dense peaks
    (4500 / 5000 = 2250 / 2500 = 0.9: same silicon, lower clock)."""
    g, sib = get_gpu(gpu), get_gpu(sibling)
    for p in ("fp8", "bf16", "fp16"):
        q = g.quantities["achieved_attention_flops"][p]
        want = sib.quantities["achieved_attention_flops"][p].si * g.peak_flops[p] / sib.peak_flops[p]
        assert q.kind == "derived" and q.si == pytest.approx(want, rel=1e-4)


def test_blackwell_attention_below_best_gemm_times_hopper_factor():
    """The measured kernels sit below what the Hopper-derived default (best GEMM x
    attention_efficiency_factor) gives GB200 / B200, whose fp8 MMA outruns the softmax units;
    Blackwell Ultra (GB300), with doubled exponential throughput, reaches it."""
    cal = seam.params()
    for gpu in ("gb200", "b200"):
        g = get_gpu(gpu)
        default = g.peak_flops["fp8"] * g.matmul_eff["fp8"] * cal["attention_efficiency_factor"]
        assert _attn_Fps(gpu, "fp8") < 0.7 * default
    g = get_gpu("gb300")
    default = g.peak_flops["fp8"] * g.matmul_eff["fp8"] * cal["attention_efficiency_factor"]
    assert _attn_Fps("gb300", "fp8") == pytest.approx(default, rel=0.05)
