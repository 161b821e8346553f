"""Where each framework's prefix cache keeps a hybrid model's state snapshots
(``hybrid_prefix_cache`` in ``hardware_db/frameworks.toml``) and the bytes a cached prefix then
holds per mode: hand arithmetic on the toy hybrid of ``test_prefix_reuse`` (one linear layer,
896 B per snapshot in bf16; one full layer of 64 B per token)."""

import numpy as np
import pytest
from conftest import toy_hf_model

from kvmodel.base.schema import Curve
from kvmodel.catalog import get_framework
from kvmodel.catalog.hardware import FrameworkSpec, get_gpu
from kvmodel.catalog.models import SNAPSHOT_MODES, ModelSpec, get_model, snapshot_interval, snapshot_mode


def _hybrid(tmp_path):
    return toy_hf_model(tmp_path, num_hidden_layers=2,
                        layer_types=["linear_attention", "full_attention"],
                        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
                        linear_value_head_dim=8, linear_conv_kernel_dim=4)


def test_framework_defaults_are_the_sourced_modes():
    # vLLM: mamba_cache_mode "align" (the default with prefix caching; the only mode for
    # Gated DeltaNet hybrids), SGLang: one state per radix node, TensorRT-LLM: every
    # mamba_state_cache_interval tokens
    assert [snapshot_mode(f) for f in ("vllm", "sglang", "tensorrt-llm")] == [
        "align", "node", "interval"]
    assert snapshot_mode(get_framework("vllm")) == "align"  # a spec works as its key
    # without a GPU: each entry's interval on the largest GPUs (vLLM >= 70 GiB, SGLang >= 160)
    assert [snapshot_interval(f) for f in ("vllm", "sglang", "tensorrt-llm")] == [
        8192.0, 16384.0, 256.0]
    for f in ("vllm", "sglang"):  # file @ commit
        assert "@" in get_framework(f).quantities["hybrid_prefix_cache_source"]


# one GPU per memory class of the engines' prefill-chunk defaults: (key, vLLM, SGLang)
# vLLM get_batch_defaults: 8192 at >= 70 GiB except A100s (device-name check), else 2048;
# SGLang _handle_gpu_memory_settings: 2048 below 35 GiB, 4096 below 60, 8192 below 160, 16384 above
_CLASSES = [("l4", 2048, 2048),               # 24 GB = 22.4 GiB
            ("rtx-4090", 2048, 2048),         # 24564 MiB = 24.0 GiB
            ("l40s", 2048, 4096),             # 48 GB = 44.7 GiB: SGLang's A100-40GB / L40 class
            ("a100-sxm-40gb", 2048, 4096),
            ("a100-sxm-80gb", 2048, 8192),    # 80 GiB, but vLLM names A100 out of its large class
            ("a800-sxm-80gb", 8192, 8192),    # same memory, no 'a100' in the device name
            ("h100-sxm", 8192, 8192),         # 81559 MiB = 79.6 GiB
            ("h20", 8192, 8192),              # 97871 MiB: SGLang's 'H20, H200' tier
            ("h200-sxm", 8192, 8192),         # 143771 MiB = 140.4 GiB, below 160
            ("b200", 8192, 16384),            # 183359 MiB = 179.1 GiB: SGLang's 'B200, MI300' tier
            ("mi300x", 8192, 16384),          # 192 GB = 178.8 GiB
            ("b300", 8192, 16384)]


@pytest.mark.parametrize("gpu, vllm, sglang", _CLASSES)
def test_snapshot_interval_follows_the_gpu_memory_class(gpu, vllm, sglang):
    assert snapshot_interval("vllm", gpu) == vllm
    assert snapshot_interval("sglang", gpu) == sglang
    assert snapshot_interval("tensorrt-llm", gpu) == 256.0  # a fixed mamba_state_cache_interval
    assert snapshot_interval(get_framework("sglang"), get_gpu(gpu)) == sglang  # specs work too


def test_snapshot_tiers_are_checked(monkeypatch):
    from kvmodel.catalog import hardware
    for key in get_framework("vllm").quantities["hybrid_snapshot_small_gpus"]:
        assert hardware.get_gpu(key).key == key  # every named GPU is a catalog entry
    q = dict(get_framework("sglang").quantities)
    q["hybrid_snapshot_interval_below"] = Curve((60.0 * 2**30, 35.0 * 2**30), (4096.0, 2048.0),
                                                "GiB", "count", "datasheet", "test")
    bad = FrameworkSpec("bad", "tiers out of order", 1e-3, q)
    with pytest.raises(ValueError, match=r"hybrid_snapshot_interval_below.x=.*increase"):
        snapshot_interval(bad, "l4")
    assert snapshot_interval(bad) == 16384.0  # no GPU: the tiers are not read


def test_an_explicit_mode_overrides_and_unknown_values_name_the_field():
    assert snapshot_mode("vllm", "block") == "block"
    bare = FrameworkSpec("bare", "an entry without the field", 1e-3)
    assert snapshot_mode(bare) == "block" and snapshot_interval(bare) is None  # former grid
    with pytest.raises(ValueError, match=r"hybrid_prefix_cache='every'.*allowed"):
        snapshot_mode("vllm", "every")
    assert set(SNAPSHOT_MODES) == {"block", "align", "interval", "node", "none"}


def test_snapshot_counts_by_hand():
    n = ModelSpec.snapshot_count
    # 1,000 reusable tokens on a 100-token block: every boundary
    assert n(1000, 100, "block") == 10
    # align: chunks of 350 floored to 3 blocks (300): states at 300, 600, 900 and 1,000
    assert n(1000, 100, "align", 350) == 4
    # interval / node: every 256 tokens and the end: 256, 512, 768, 1,000
    assert n(1000, 100, "interval", 256) == 4 == n(1000, 100, "node", 256)
    assert n(1000, 100, "node") == 1  # no interval: one per cached prefix
    assert n(1000, 100, "none", 256) == 0
    assert n(0, 100, "align", 350) == 0
    np.testing.assert_array_equal(n(np.array([100, 300, 400]), 100, "align", 350), [1, 1, 2])
    with pytest.raises(ValueError, match="interval"):
        n(1000, 100, "align", 0)


def test_prefix_bytes_per_mode_by_hand(tmp_path):
    m = _hybrid(tmp_path)
    kv = 96 * 64  # 100 tokens floored to 6 blocks of 16
    assert m.prefix_cache_bytes(100, 16, snapshots="block") == kv + 6 * 896
    # align with a 40-token chunk: 32-token chunks (2 blocks) -> states at 32, 64, 96
    assert m.prefix_cache_bytes(100, 16, snapshots="align", interval=40) == kv + 3 * 896
    assert m.prefix_cache_bytes(100, 16, snapshots="interval", interval=64) == kv + 2 * 896
    assert m.prefix_cache_bytes(100, 16, snapshots="node", interval=64) == kv + 2 * 896
    assert m.prefix_cache_bytes(100, 16, snapshots="none", interval=64) == 0.0
    # a cache block of 16 tokens: 16 x 64 B of KV + its share of the prefix's 3 states
    assert m.cache_block_bytes(16, prefix_len=100, snapshot_tokens=16, snapshots="align",
                               interval=40) == pytest.approx(16 * 64 + 3 * 896 / 6)
    # "none" keeps nothing reusable, but a block is still sized (one state per prefix)
    assert m.cache_block_bytes(16, prefix_len=100, snapshot_tokens=16, snapshots="none") == \
        m.cache_block_bytes(16, prefix_len=100, snapshot_tokens=16, snapshots="node")


def test_align_holds_fewer_states_than_all_on_qwen35():
    # Qwen3.5-9B on vLLM: 528-token hybrid blocks, 8,192-token steps floored to 15 blocks
    # (7,920 tokens): a 16,000-token prompt keeps states at 7,920, 15,840 and 15,840 -> 2 vs 30
    q = get_model("qwen3.5-9b")
    R = 16000 // 528 * 528
    assert R == 15840
    assert q.snapshot_count(R, 528, "block") == 30
    assert q.snapshot_count(R, 528, "align", 8192) == 2
    state = q.kv_bytes(0)  # one snapshot: 24 x (524,288 x 4 + 24,576 x 2) B
    assert state == 24 * (524_288 * 4 + 24_576 * 2)
    diff = q.prefix_cache_bytes(16000, 528) - q.prefix_cache_bytes(
        16000, 528, snapshots="align", interval=8192)
    assert diff == pytest.approx(28 * state)


def test_the_catalog_rejects_an_unknown_mode_naming_the_field():
    from kvmodel.base.schema import HardwareDBError, parse_entry
    raw = {"name": "x", "step_overhead": {"value": 1, "unit": "ms", "kind": "assumed",
                                          "source": "test", "reason": "test"},
           "hybrid_prefix_cache": "every"}
    with pytest.raises(HardwareDBError, match=r"framework\.x\.hybrid_prefix_cache: 'every' not one"):
        parse_entry("framework", "x", raw, "framework.x")
    raw["hybrid_prefix_cache"] = "align"
    assert parse_entry("framework", "x", raw, "framework.x")["hybrid_prefix_cache"] == "align"
