"""Layouts and overlap: what a cached prefix's load hides behind the prefill, by layout and
connector streaming; connector costs reach TTFT."""

import pytest

from kvmodel.catalog.hardware import ConnectorSpec
from kvmodel.tiers import node_tiers


def _conn(per_request=0.0, per_block=0.0, eff=1.0, streaming="layer"):
    return ConnectorSpec("t", "toy connector", "ideal", per_request, per_block, eff, streaming, False)


# ---- layouts and overlap (through estimate) ---------------------------------------------------
KW = dict(model="llama-3.1-70b", gpu="h100-sxm", tp=8, precision="bf16", input_len=8192,
          output_len=64, cached_prefix_len=8000, cache_tier="ssd", prefix_policy="load")


def _exposed(**kw):
    import kvmodel
    e = kvmodel.estimate(**KW, **kw)
    return e.breakdown["prefill"]["kv_load"]["time_s"], e


def _load_s(layout, connector="ideal"):
    from kvmodel.catalog.hardware import get_framework, get_gpu
    from kvmodel.catalog.models import get_model
    from kvmodel.instance import _estimate
    from kvmodel.instance._prefix import load_seconds
    from kvmodel.instance.seam import setup
    s = setup(get_model(KW["model"]), get_gpu(KW["gpu"]), get_framework("tensorrt-llm"), 8, 1, 1,
              "bf16", "bf16", _estimate._params())
    return load_seconds(s, node_tiers("dgx-h100")["ssd"], 8000.0, layout, 256.0, connector=connector)


def test_contiguous_layout_exposes_the_whole_load():
    exposed, _ = _exposed(kv_layout="contiguous")
    assert exposed == pytest.approx(_load_s("contiguous"), rel=1e-9)


def test_per_layer_layout_streams_under_compute_only_with_a_layer_wise_connector():
    streamed, _ = _exposed(kv_layout="per_layer")
    before, _ = _exposed(kv_layout="per_layer", connector=_conn(streaming="before_prefill"))
    t = _load_s("per_layer")
    assert streamed < t   # part hidden behind computing earlier layers
    assert before == pytest.approx(t, rel=1e-9)


def test_connector_costs_add_to_ttft_and_are_monotone():
    c = _conn(1e-3, 1e-6, 0.5)
    base, e0 = _exposed(kv_layout="contiguous")
    slow, e1 = _exposed(kv_layout="contiguous", connector=c)
    assert slow == pytest.approx(_load_s("contiguous", c), rel=1e-9)
    # 70B, TP8, bf16: 80 layers x 1 KV head x 128 x 2 (K, V) x 2 B = 40960 B per token and GPU;
    # 1 ms per request + the wire time once more (half the bandwidth); posting 32 blocks x 1 us
    # overlaps the drive's one 80 us access (32 blocks, 128 in flight), so it adds nothing
    wire = 8000 * 40960 / node_tiers("dgx-h100")["ssd"].path.bandwidth_Bps()
    assert slow - base == pytest.approx(1e-3 + wire, rel=1e-9)
    assert e1.ttft_s == pytest.approx(e0.ttft_s + slow - base, rel=1e-9)
