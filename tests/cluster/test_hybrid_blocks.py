"""The cluster counts cache capacity in blocks of ``ModelSpec.cache_block_bytes``: hybrid models'
blocks carry their state snapshots, sliding-window models' blocks hold only their windows."""

import kvmodel
from kvmodel import Cluster, Workload
from kvmodel.catalog.models import ModelSpec, get_model


def _dram_hits(model, precision, tp=1):
    w = Workload(kvmodel.load_trace("mooncake-conversation"), request_rate=2.0)
    c = Cluster(model=model, gpu="h100-sxm", instances=2, tp=tp, precision=precision,
                dram_B=2e10, ssd_B=0.0)
    return kvmodel.evaluate(c, w).hit_ratio["dram"]


def test_block_bytes_come_from_the_model(monkeypatch):
    base = _dram_hits("qwen3.5-9b", "bf16")
    assert base > 0.0
    orig = ModelSpec.cache_block_bytes
    monkeypatch.setattr(ModelSpec, "cache_block_bytes",
                        lambda self, *a, **k: 100.0 * orig(self, *a, **k))
    assert _dram_hits("qwen3.5-9b", "bf16") < base


def test_hybrid_blocks_hold_snapshots_window_blocks_less():
    q = get_model("qwen3.5-9b")
    assert q.cache_block_bytes(256, "bf16", 8192) > 256 * q.kv_bytes_per_token()
    g = get_model("gpt-oss-120b")
    assert g.cache_block_bytes(256, "bf16", 8192) < 256 * g.kv_bytes_per_token()
