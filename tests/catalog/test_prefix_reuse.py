"""Prefix caching for hybrid models (``ModelSpec.reusable_prefix``, ``prefix_cache_bytes``,
``cache_block_bytes``, ``state_block_tokens``): golden numbers by hand on toy configs, the
engine's published block size for Qwen3.5, and attention-only models unchanged."""


import numpy as np
import pytest
from conftest import toy_hf_model

from kvmodel.catalog.models import get_model, list_models

_toy = toy_hf_model


def _hybrid(tmp_path, **extra):
    """[linear, full]: state 4 x 8 x 8 = 256 elements, conv 3 x (2 x 2 x 8 + 4 x 8) = 192
    (896 B in bf16); one full layer of 64 B per token."""
    return _toy(tmp_path, num_hidden_layers=2, layer_types=["linear_attention", "full_attention"],
                linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
                linear_value_head_dim=8, linear_conv_kernel_dim=4, **extra)


def test_hybrid_reuse_floors_to_the_snapshot_grid(tmp_path):
    m = _hybrid(tmp_path)
    assert m.has_recurrent_state
    assert m.reusable_prefix(100, 16) == 96
    assert m.reusable_prefix(15, 16) == 0  # no snapshot yet: nothing reusable
    assert m.reusable_prefix(100, 1) == 100  # SGLang MambaRadixCache, page size 1
    np.testing.assert_array_equal(m.reusable_prefix(np.array([0, 16, 47]), 16), [0, 16, 32])


def test_hybrid_bytes_per_snapshot_mode(tmp_path):
    m = _hybrid(tmp_path)
    # block: 96 tokens x 64 B + 6 snapshots x 896 B; node: one snapshot
    assert m.prefix_cache_bytes(100, 16) == 96 * 64 + 6 * 896 == 11_520
    assert m.prefix_cache_bytes(100, 16, snapshots="node") == 96 * 64 + 896 == 7_040
    assert m.prefix_cache_bytes(10, 16) == 0.0
    # fp32 SSM state, bf16 conv: 256 x 4 + 192 x 2 = 1,408 B per snapshot
    assert m.prefix_cache_bytes(32, 16, state_precision="fp32", conv_precision="bf16") \
        == 32 * 64 + 2 * 1_408
    # tp=4: 1 KV head (32 B/token) and 136 state elements (272 B) per rank, x 4 ranks
    assert m.prefix_cache_bytes(32, 16, tp=4) == 4 * (32 * 32 + 2 * 272)
    # node mode at the whole prefix equals one sequence's KV (kv_bytes)
    assert m.prefix_cache_bytes(96, 16, snapshots="node") == m.kv_bytes(96)


def test_hybrid_block_size_rule(tmp_path):
    m = _hybrid(tmp_path)
    # page 896 B / (16 x 64 B) -> 1 x 16 tokens; fp32 SSM: 1,408 / 1,024 -> 2 x 16 = 32
    assert m.state_block_tokens() == 16
    assert m.state_block_tokens(state_precision="fp32", conv_precision="bf16") == 32
    assert m.state_block_tokens(align=1) == 14  # ceil(896 / 64)
    # a cache block of 16 tokens: 16 x 64 B of KV + one snapshot (one per 16-token boundary)
    assert m.cache_block_bytes(16, prefix_len=100) == 16 * 64 + 896
    # snapshots every 32 tokens: half a snapshot per 16-token block
    assert m.cache_block_bytes(16, prefix_len=100, snapshot_tokens=32) == 16 * 64 + 448
    # one snapshot for the whole 96-token reusable prefix, spread over its 6 blocks
    assert m.cache_block_bytes(16, prefix_len=100, snapshots="node") == pytest.approx(
        16 * (96 * 64 + 896) / 96)


def test_qwen35_block_size_matches_vllm():
    # vLLM logs "Setting attention block size to 528 tokens to ensure that attention page
    # size is >= mamba page size" for Qwen3.5-4B (vLLM issue #40696) and 9B (LMCache Qwen3.5
    # recipe note, search-index file id 56156006681). Attention: 2 x 4 KV heads x 256 x 2 B =
    # 4,096 B per token per layer; state 32 x 128 x 128 x 4 B (mamba_ssm_dtype float32) + conv
    # 3 x (2 x 16 x 128 + 32 x 128) x 2 B = 2,146,304 B -> 524 tokens -> 528 (multiple of 16)
    m = get_model("qwen3.5-9b")
    assert m.state_block_tokens("bf16", "fp32", "bf16") == 528
    # the same from the catalog's mamba_ssm_dtype alone (what vLLM does with "auto")
    assert m.state_block_tokens() == 528


def test_state_precision_defaults_to_the_configs_mamba_ssm_dtype():
    q, n = get_model("qwen3.5-9b"), get_model("qwen3-next-80b-a3b")
    assert (q.default_state_precision, n.default_state_precision) == ("fp32", "bf16")
    assert q.state_bytes() == (4.0, 2.0)  # SSM state fp32, conv window in the model dtype
    assert q.state_bytes("bf16") == (2.0, 2.0)  # an explicit state precision sets both
    # 24 linear layers: state 32 x 128 x 128 x 4 B + conv 3 x 8,192 x 2 B; 8 full layers
    # of 2 x 4 x 256 x 2 B per token
    assert q.kv_bytes(100) == 24 * (524_288 * 4 + 24_576 * 2) + 8 * 4_096 * 100
    assert q.kv_bytes(100, state_precision="bf16") == 24 * (524_288 + 24_576) * 2 \
        + 8 * 4_096 * 100
    assert q.prefix_cache_bytes(1056, 528) == q.prefix_cache_bytes(
        1056, 528, state_precision="fp32", conv_precision="bf16")
    # Qwen3-Next names no mamba_ssm_dtype: bf16 throughout, as before
    assert n.kv_bytes(100) == n.kv_bytes(100, state_precision="bf16")


@pytest.mark.parametrize("dtype, want", [("float32", "fp32"), ("bfloat16", "bf16"),
                                         ("auto", "bf16")])
def test_hf_loader_reads_mamba_ssm_dtype(tmp_path, dtype, want):
    m = _hybrid(tmp_path, mamba_ssm_dtype=dtype)
    assert m.default_state_precision == want
    # state 256 elements in the SSM dtype, conv window 192 in bf16; one full layer of 64 B
    assert m.kv_bytes(10) == 256 * {"fp32": 4, "bf16": 2}[want] + 192 * 2 + 640


def test_hf_loader_rejects_an_unknown_mamba_ssm_dtype(tmp_path):
    with pytest.raises(ValueError, match="mamba_ssm_dtype"):
        _hybrid(tmp_path, mamba_ssm_dtype="int3")


def test_sliding_window_bytes_bounded_reuse_whole(tmp_path):
    m = _toy(tmp_path, sliding_window=16, layer_types=["sliding_attention", "full_attention"] * 2)
    assert not m.has_recurrent_state
    assert m.reusable_prefix(100, 16) == 100
    assert m.prefix_cache_bytes(100, 16) == (2 * 100 + 2 * 16) * 64 == m.kv_bytes(100)
    assert m.cache_block_bytes(16, prefix_len=100) == pytest.approx(16 * 14_848 / 100)
    # a prefix inside the window: every layer holds every token, the per-token rate
    assert m.cache_block_bytes(16, prefix_len=16) == 16 * m.kv_bytes_per_token()


@pytest.mark.parametrize("key", list_models())
def test_attention_only_full_models_keep_the_per_token_block(key):
    m = get_model(key)
    if set(m.layer_kinds) == {"full"}:
        for kv in ("bf16", "fp8"):
            assert m.cache_block_bytes(256, kv, 8192) == 256 * m.kv_bytes_per_token(kv)
    else:  # windows and states make a cached block of a long prefix differ from the rate
        assert m.cache_block_bytes(256, "bf16", 131072) != 256 * m.kv_bytes_per_token()


def test_errors_name_the_argument(tmp_path):
    m = _hybrid(tmp_path)
    with pytest.raises(ValueError, match="snapshots='every'"):
        m.prefix_cache_bytes(100, 16, snapshots="every")
    with pytest.raises(ValueError, match="block_tokens"):
        m.reusable_prefix(100, 0)
    with pytest.raises(ValueError, match="prefix_len"):
        m.reusable_prefix(-1, 16)
    with pytest.raises(ValueError, match="state_precision"):
        m.state_block_tokens(state_precision="mxfp4")


def test_snapshot_grid_vectorised_over_tp(tmp_path):
    m = _hybrid(tmp_path)
    # tp=2: 1 KV head per rank = 32 B/token/layer; state per rank 2 value heads x 64 + conv
    # 3 x (2 x 8 + 2 x 8) = 224 elements = 448 B -> ceil(448 / (16 x 32)) = 1 -> 16 tokens
    np.testing.assert_array_equal(m.snapshot_grid_tokens(2.0, np.array([1, 2])), [16, 16])
    assert m.snapshot_grid_tokens(2.0, 1, state_B=4.0, conv_B=2.0, align=1) == 22  # 1408 / 64
