"""H20 (96 GB HBM3) and H20-3e: one compute-capped Hopper part, two HBM stacks; batch-1 decode on
it is weight streaming at the entry's measured bandwidth (issue 14, s16 held-out H20 rows)."""

import pytest

from kvmodel.catalog.hardware import get_framework, get_gpu, raw_entry
from kvmodel.catalog.models import get_model
from kvmodel.instance import seam
from kvmodel.instance._roofline import step_ops


def test_h20_and_h20_3e_share_the_compute_cap():
    a, b = get_gpu("h20"), get_gpu("h20-3e")
    assert a.peak_flops == pytest.approx(b.peak_flops)
    assert a.peak_flops["bf16"] == pytest.approx(148e12)
    assert a.peak_flops["fp8"] == pytest.approx(2 * a.peak_flops["bf16"])


def test_h20_bandwidth_is_the_measured_streaming_figure():
    e = raw_entry("gpu", "h20")
    q = e["achieved_hbm_bandwidth"]
    assert q.kind == "measured" and "AutoMegaKernel" in q.source
    assert q.si == pytest.approx(3712.3e9)
    assert get_gpu("h20").hbm_eff == pytest.approx(3712.3 / 4000.0)


def test_batch1_decode_gemms_on_h20_are_memory_bound():
    """One token per step: 2 FLOPs per 2-byte weight, far below the H20's ridge of
    148 TFLOP/s / 4.0 TB/s = 37 FLOP/B, so each dense GEMM costs its weight bytes over the
    effective HBM bandwidth (plus the fixed per-kernel cost)."""
    g, m = get_gpu("h20"), get_model("qwen3-32b")
    s = seam.setup(m, g, get_framework("sglang"), 1, 1, 1, "bf16", "bf16", seam.params())
    ops, _, _ = step_ops(s, 1.0, 1.0, 0.0, 1024.0, 1024.0, 1.0)
    for name in ("qkv_proj", "o_proj", "mlp"):
        op = ops[name]
        assert op["memory_s"] > 20 * op["compute_s"]
        assert op["memory_s"] == pytest.approx(op["bytes"] / s.hbm_Bps)
    assert s.hbm_Bps == pytest.approx(g.hbm_bw_Bps * g.hbm_eff * seam.params()["memory_efficiency_factor"])
