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
