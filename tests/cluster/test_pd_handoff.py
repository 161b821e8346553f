"""P/D handoff on toy numbers: a layer-wise connector streams the KV under the prefill, one
that sends after the prefill exposes the whole transfer."""

from types import SimpleNamespace

import pytest

import kvmodel.cluster as cl
from kvmodel.catalog.hardware import ConnectorSpec, LinkSpec

# 10 GB/s scale-up link with a 10 us setup; a 10-layer model with 1 MB of KV per token
LINK = LinkSpec("toy", "toy 10 GB/s", "nvlink", 10e9, 10e-6, "full", 10e9, None)
MODEL = SimpleNamespace(num_layers=10, kv_bytes_per_token=lambda precision: 1e6)


def _conn(streaming, per_request=0.0):
    return ConnectorSpec("t", "toy", "ideal", per_request, 0.0, 1.0, streaming, False)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(cl, "get_link", lambda key, *a: LINK)
    monkeypatch.setattr(cl, "get_gpu", lambda key, *a: SimpleNamespace(scale_up_link="toy"))
    monkeypatch.setattr(cl, "get_model", lambda key, *a: MODEL)
    monkeypatch.setattr(cl, "kv_precision", lambda c: "bf16")
    node = SimpleNamespace(gpus_per_node=8, nic_link="toy", nics=8)
    w = SimpleNamespace(trace=SimpleNamespace(block_tokens=100))

    def handoff(connector, prefill_s):
        c = SimpleNamespace(gpu="g", nic=None, model="m", tp=1, prefill_instances=1,
                            decode_instances=1, connector=connector)
        p = SimpleNamespace(ttft_s=prefill_s + 0.5, queue_wait_s=0.5)  # prefill = TTFT - wait
        return float(cl._handoff_s(c, w, p, node, 1000))
    return handoff


def test_send_after_prefill_exposes_the_whole_transfer(toy):
    # 1000 tokens x 1 MB = 1 GB over 10 GB/s = 0.1 s, all 10 blocks posted at once: one 10 us setup
    assert toy(_conn("before_prefill"), 0.08) == pytest.approx(0.1 + 10e-6)
    assert toy(_conn("before_prefill", per_request=2e-3), 0.08) == pytest.approx(0.1 + 10e-6 + 2e-3)


def test_layer_wise_streaming_hides_the_transfer_under_the_prefill(toy):
    # prefill 0.08 s: only the 0.02001 s the transfer outlasts it stays exposed
    assert toy(_conn("layer"), 0.08) == pytest.approx(0.1 + 10e-6 - 0.08)
    # a long prefill hides all but the last layer's share: 0.10001 / 10
    assert toy(_conn("layer"), 0.5) == pytest.approx((0.1 + 10e-6) / 10)
    # streaming is never slower than sending after the prefill
    for pre in (0.0, 0.05, 0.2, 1.0):
        assert toy(_conn("layer"), pre) <= toy(_conn("before_prefill"), pre)
