"""KV sizing per layer kind (``ModelSpec.kv_bytes``): hand-computed golden sizes on toy configs of
each kind, every catalog model against its config arithmetic, published engine "KV cache size"
lines beside our numbers, and a conformance suite over every model (and model x GPU)."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import toy_hf_model

import kvmodel
from kvmodel.catalog.hardware import list_entries
from kvmodel.catalog.models import get_model, list_models

GiB = 2**30


_toy = toy_hf_model


# ---- golden sizes by hand, one toy config per layer kind -----------------------------------
def test_full_attention_gqa_and_replication_under_tp(tmp_path):
    m = _toy(tmp_path)
    # 4 layers x 64 B x 100 tokens
    assert m.kv_bytes(100) == 4 * 64 * 100 == 25_600
    assert m.kv_bytes(100, "fp8") == 12_800
    # tp=4 > 2 KV heads: each rank keeps 1 head (32 B/token/layer), 4 ranks -> twice the bytes
    assert m.kv_bytes(100, tp=4) == 4 * (4 * 32 * 100) == 51_200
    assert m.kv_bytes(100, tp=2) == 25_600  # heads split, no replica


def test_sliding_window_alternating(tmp_path):
    m = _toy(tmp_path, sliding_window=16,
             layer_types=["sliding_attention", "full_attention"] * 2)
    assert m.layer_counts["sliding"] == 2 and m.layer_counts["full"] == 2
    assert m.kv_bytes(100) == (2 * 100 + 2 * 16) * 64 == 14_848
    assert m.kv_bytes(10) == 4 * 10 * 64  # inside the window every layer holds every token
    assert m.kv_bytes_per_token() == 4 * 64  # a token's slot in a block: all attention layers


def test_sliding_window_pattern_gemma_style(tmp_path):
    # sliding_window_pattern 6 on 8 layers: layer 5 is global -> 7 sliding + 1 full
    m = _toy(tmp_path, num_hidden_layers=8, sliding_window=16, sliding_window_pattern=6)
    assert m.layer_kinds == ("sliding",) * 5 + ("full",) + ("sliding",) * 2
    assert m.kv_bytes(100) == (1 * 100 + 7 * 16) * 64


def test_chunked_attention_llama4_style(tmp_path):
    m = _toy(tmp_path, attention_chunk_size=32)  # no_rope_layer_interval 4 by default
    assert m.layer_kinds == ("chunked", "chunked", "chunked", "full")
    assert m.kv_bytes(100) == (3 * 32 + 100) * 64 == 12_544
    m2 = _toy(tmp_path, attention_chunk_size=32, no_rope_layers=[1, 0, 1, 0])
    assert m2.kv_bytes(100) == (2 * 32 + 2 * 100) * 64


def _mla(tmp_path, **extra):
    return _toy(tmp_path, num_hidden_layers=2, kv_lora_rank=16, q_lora_rank=0,
                qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, **extra)


def test_mla_latent_replicated_on_every_rank(tmp_path):
    m = _mla(tmp_path)
    # (16 + 4) x 2 B = 40 B per token per layer, 2 layers, 10 tokens
    assert m.kv_bytes(10) == 2 * 40 * 10 == 800
    assert m.kv_bytes(10, tp=8) == 8 * 800  # the latent is on every TP rank


def test_dsa_indexer_cache(tmp_path):
    m = _mla(tmp_path, index_head_dim=128, index_n_heads=4, index_topk=8)
    # latent 40 B + indexer key 128 x 1 B (fp8) + one fp32 scale per 128 = 172 B per token per layer
    assert m.indexer_bytes_per_token_layer == 132
    assert m.kv_bytes(10) == 2 * 172 * 10 == 3_440
    assert m.kv_bytes(10, "fp8") == 2 * (20 + 132) * 10  # the indexer stays fp8 + scale


def test_linear_attention_gated_deltanet_state(tmp_path):
    m = _toy(tmp_path, num_hidden_layers=2, layer_types=["linear_attention", "full_attention"],
             linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
             linear_value_head_dim=8, linear_conv_kernel_dim=4)
    # state 4 x 8 x 8 = 256, conv (4-1) x (2 x 2 x 8 + 4 x 8) = 192 -> 448 elements x 2 B = 896 B
    assert m.kv_bytes(0) == 896
    assert m.kv_bytes(100) == 100 * 64 + 896 == 7_296
    # tp=2: heads split (2 value / 1 key head per rank): no replica, same total
    assert m.kv_bytes(100, tp=2) == 7_296
    # tp=4: 1 value head and 1 key head (replicated) per rank: state 64 + 3 x (16 + 8) = 136
    # elements = 272 B; KV 1 head = 32 B/token; 4 x (3200 + 272)
    assert m.kv_bytes(100, tp=4) == 4 * (3_200 + 272) == 13_888
    assert m.kv_bytes(100, state_precision="fp32") == 6_400 + 2 * 896


def test_mamba2_maps_onto_the_linear_state():
    # Mamba-2 (heads 8, head_dim 4, d_state 16, n_groups 1, conv 4) as linear-attention fields:
    # state 8 x 16 x 4 = 512, conv 3 x (4 x 8 + 2 x 1 x 16) = 192 -> 704 elements
    m = dataclasses.replace(get_model("qwen3.5-9b"), linear_num_key_heads=1,
                            linear_num_value_heads=8, linear_key_head_dim=16,
                            linear_value_head_dim=4, linear_conv_kernel_dim=4)
    assert m.linear_state_elements_rank() == 704


def test_vectorised_equals_loop_and_broadcasts():
    m = get_model("qwen3-next-80b-a3b")
    L = np.array([0, 1, 100, 8192, 131072])
    tp = np.array([[1], [2], [8]])
    grid = m.kv_bytes(L, "fp8", tp=tp)
    assert grid.shape == (3, 5)
    for i, t in enumerate([1, 2, 8]):
        for j, n in enumerate(L):
            assert grid[i, j] == m.kv_bytes(int(n), "fp8", tp=t)
    assert isinstance(m.kv_bytes(5), float)


@pytest.mark.parametrize("bad", [-1, float("nan"), [1, -2]])
def test_bad_context_is_an_error_naming_it(bad):
    with pytest.raises(ValueError, match="context_len"):
        get_model("gpt-oss-20b").kv_bytes(bad)


def test_bad_precision_and_tp():
    m = get_model("gpt-oss-20b")
    with pytest.raises(ValueError, match="precision='fp7'"):
        m.kv_bytes(10, "fp7")
    with pytest.raises(ValueError, match="tp=0"):
        m.kv_bytes(10, tp=0)


def test_unknown_layer_kind_and_missing_sizes_are_errors(tmp_path):
    with pytest.raises(ValueError, match="layer_types has unknown type"):
        _toy(tmp_path, layer_types=["local_attention"] * 4)
    with pytest.raises(ValueError, match="'sliding' layers need sliding_window"):
        _toy(tmp_path, layer_types=["sliding_attention"] * 4)
    with pytest.raises(ValueError, match="no attention layer"):
        _toy(tmp_path, layer_types=["linear_attention"] * 4, linear_num_key_heads=1,
             linear_num_value_heads=1, linear_key_head_dim=8, linear_value_head_dim=8,
             linear_conv_kernel_dim=4)


# ---- the bar ----------------------------------------------------------------------
def test_gpt_oss_120b_bar():
    # 18 full layers x 131,072 + 18 sliding layers x 128 tokens, x 8 KV heads x 64 x 2 (K, V) x 2 B
    want = (18 * 131_072 + 18 * 128) * 8 * 64 * 2 * 2
    assert get_model("gpt-oss-120b").kv_bytes(131072, "bf16") == pytest.approx(want, rel=0.02)


# ---- every catalog model against its config arithmetic ------------------------------------
def _gqa(layers, kv_heads, head_dim):  # bf16 K+V bytes per token over `layers` layers
    return layers * 2 * kv_heads * head_dim * 2


GDN_STATE_B = (32 * 128 * 128 + 3 * (2 * 16 * 128 + 32 * 128)) * 2  # Qwen3-Next / 3.5 layers
# Qwen3.5's config names mamba_ssm_dtype float32: the SSM state in fp32, the conv window in bf16
GDN_STATE_FP32_SSM_B = 32 * 128 * 128 * 4 + 3 * (2 * 16 * 128 + 32 * 128) * 2
HYBRID = {  # bf16 KV bytes of one sequence of L tokens (state in the config's dtype), by hand
    "gpt-oss-120b": lambda L: _gqa(1, 8, 64) * (18 * L + 18 * min(L, 128)),
    "gpt-oss-20b": lambda L: _gqa(1, 8, 64) * (12 * L + 12 * min(L, 128)),
    "gemma-3-27b": lambda L: _gqa(1, 16, 128) * (10 * L + 52 * min(L, 1024)),
    "llama-4-scout": lambda L: _gqa(1, 8, 128) * (12 * L + 36 * min(L, 8192)),
    "llama-4-maverick": lambda L: _gqa(1, 8, 128) * (12 * L + 36 * min(L, 8192)),
    "mistral-7b": lambda L: _gqa(32, 8, 128) * min(L, 4096),
    "qwen3-next-80b-a3b": lambda L: _gqa(12, 2, 256) * L + 36 * GDN_STATE_B,
    "qwen3.5-9b": lambda L: _gqa(8, 4, 256) * L + 24 * GDN_STATE_FP32_SSM_B,
    "deepseek-v3.2": lambda L: 61 * ((512 + 64) * 2 + 128 + 4) * L,
}
PER_TOKEN_NEW = {  # full-attention newcomers, bf16 bytes per token
    "qwen3-14b": _gqa(40, 8, 128), "qwen2.5-72b": _gqa(80, 8, 128),
    "glm-4.5": _gqa(92, 8, 128), "glm-4.6": _gqa(92, 8, 128), "minimax-m2": _gqa(62, 8, 128),
    "deepseek-v3.1": 61 * 576 * 2, "kimi-k2": 61 * 576 * 2,
}


@pytest.mark.parametrize("key", list_models())
@pytest.mark.parametrize("L", [1, 100, 8192, 131072])
def test_every_model_matches_its_config_arithmetic(key, L):
    m = get_model(key)
    want = HYBRID[key](L) if key in HYBRID else m.kv_bytes_per_token("bf16") * L
    assert m.kv_bytes(L, "bf16") == want


@pytest.mark.parametrize("key", sorted(PER_TOKEN_NEW))
def test_new_full_attention_models_per_token(key):
    assert get_model(key).kv_bytes_per_token("bf16") == PER_TOKEN_NEW[key]


# Published totals (model cards, billions); ours from the architecture within 3 % (MTP layers,
# vision towers and the DSA indexer weights are not counted)
PARAMS_NEW_B = {"gpt-oss-120b": 116.8, "gpt-oss-20b": 20.9, "qwen3-next-80b-a3b": 80.0,
                "qwen3.5-9b": 9.0, "qwen3-14b": 14.8, "qwen2.5-72b": 72.7, "deepseek-v3.1": 671.0,
                "deepseek-v3.2": 671.0, "kimi-k2": 1040.0, "glm-4.5": 355.0, "glm-4.6": 355.0,
                "minimax-m2": 230.0, "gemma-3-27b": 27.0}


@pytest.mark.parametrize("key", sorted(PARAMS_NEW_B))
def test_new_models_parameter_counts(key):
    assert get_model(key).total_params / 1e9 == pytest.approx(PARAMS_NEW_B[key], rel=0.03)


@pytest.mark.parametrize("key", sorted(PARAMS_NEW_B))
def test_new_models_found_by_published_name(key):
    m = get_model(key)
    assert get_model(m.hf_id) is m and m.source.startswith("https://huggingface.co/")


# ---- engines' reported KV capacity beside ours ----------------------------------------------
# (engine, model, tp, kv precision, KV pool bytes per GPU as logged, tokens as logged, source).
# A full-attention engine divides its per-GPU pool by the per-GPU bytes of one token (all
# layers); we do the same with ModelSpec.kv_token_bytes_rank and compare the token counts.
ENGINE_ROWS = [
    ("vLLM", "qwen3-235b-a22b", 4, 2.0, 8.11 * GiB, 178_880,
     "https://github.com/vllm-project/vllm/issues/21348 (Qwen3-235B-A22B-FP8, 4xH100: "
     "'Available KV cache memory: 8.11 GiB', 'GPU KV cache size: 178,880 tokens')"),
    ("SGLang (K half only)", "qwen3-235b-a22b", 4, 2.0, 8.23 * GiB, 367_404,
     "https://github.com/vllm-project/vllm/issues/21348 (same model on SGLang tp 4: "
     "'KV Cache is allocated. #tokens: 367404, K size: 8.23 GB' with GB = 2**30 B)"),
    ("vLLM", "qwen3-14b", 1, 2.0, 6.51 * GiB, 42_656,
     "https://github.com/LMCache/LMCache/issues/1739 (Qwen3-14B, one GPU: 'Available KV cache "
     "memory: 6.51 GiB', 'GPU KV cache size: 42,656 tokens')"),
    ("vLLM", "llama-3.1-8b", 1, 2.0, 3.81 * GiB, 1952 * 16,
     "https://github.com/vllm-project/vllm/issues/10517 (Llama-3.1-8B-Instruct, RTX 3090: "
     "'kv_cache_size=3.81GiB', '# GPU blocks: 1952' of 16 tokens)"),
]


@pytest.mark.parametrize("engine,key,tp,kv_B,pool_B,tokens,source", ENGINE_ROWS,
                         ids=[f"{r[0]}-{r[1]}" for r in ENGINE_ROWS])
def test_engine_reported_kv_capacity(engine, key, tp, kv_B, pool_B, tokens, source):
    per_tok = get_model(key).kv_token_bytes_rank(kv_B, tp)
    if engine.startswith("SGLang"):
        per_tok = per_tok / 2  # the logged size is the K buffer alone
    ours = pool_B / per_tok
    # the logged pool is rounded to 3 significant digits and engines round down to whole blocks
    assert ours == pytest.approx(tokens, rel=0.02), source


# ---- conformance over every model -----------------------------------------------------------
@pytest.mark.parametrize("key", list_models())
def test_sizing_conformance(key):
    m = get_model(key)
    L = np.array([1, 2, 16, 127, 128, 129, 1024, 4096, 8192, 32768, 131072, 1_000_000])
    for kv in ("bf16", "fp8"):
        for tp in (1, 2, 8):
            b = m.kv_bytes(L, kv, tp=tp)
            assert np.all(np.isfinite(b)) and np.all(b > 0)
            assert np.all(np.diff(b) >= 0)  # monotone in context
            kv_B = 2.0 if kv == "bf16" else 1.0  # never more than every token in every layer
            assert np.all(b <= m.kv_token_bytes_rank(kv_B, tp) * tp * L + m.kv_bytes(0, kv, tp=tp))
        assert np.all(m.kv_bytes(L, "fp8") <= m.kv_bytes(L, "bf16"))
    assert np.all(m.kv_bytes(L, tp=8) >= m.kv_bytes(L))  # replicas never shrink the total


def _estimate(key, gpu):
    return kvmodel.estimate(key, gpu, tp=8, precision="fp8", input_len=4096, output_len=256,
                            batch="max")


@pytest.mark.parametrize("gpu", list_entries("gpu"))
def test_every_model_on_every_gpu_is_feasible_or_says_why(gpu):
    for key in list_models():
        e = _estimate(key, gpu)
        assert bool(e.feasible) or str(e.reason), (key, gpu)
        if bool(e.feasible):
            assert e.max_batch >= 1 and np.isfinite(e.tpot_s) and e.tpot_s > 0


def test_memory_fit_uses_context_dependent_size():
    # gpt-oss-120b with its sliding layers admits a larger batch at long context than the
    # same model with every layer full, and the ratio follows the KV bytes per sequence, where
    # sliding layers hold only their window (vLLM); TensorRT-LLM's equal pool shares per window
    # size give the full layers half the pool: the batch of the all-full model
    m = get_model("gpt-oss-120b")
    full = dataclasses.replace(m, key="gpt-oss-120b-all-full", layer_pattern=("full",))
    kw = dict(tp=4, precision="fp8", input_len=65536, output_len=1024, batch="max",
              framework="vllm")
    a, b = kvmodel.estimate(m, "h100-sxm", **kw), kvmodel.estimate(full, "h100-sxm", **kw)
    assert a.feasible and b.feasible
    ratio = full.kv_bytes(66560) / m.kv_bytes(66560)
    assert a.max_batch / b.max_batch == pytest.approx(ratio, rel=0.05)
    assert a.kv_capacity_tokens == b.kv_capacity_tokens  # same pool, same per-token slot
    kw["framework"] = "tensorrt-llm"
    t, tf = kvmodel.estimate(m, "h100-sxm", **kw), kvmodel.estimate(full, "h100-sxm", **kw)
    assert t.max_batch == tf.max_batch


def test_hybrid_linear_model_batch_counts_its_state():
    m = get_model("qwen3-next-80b-a3b")
    e = kvmodel.estimate(m, "h200-sxm", tp=2, precision="fp8", kv_precision="bf16",
                         input_len=1000, output_len=24, batch="max", max_batch_size=100000)
    per_seq_rank = m.kv_bytes(1024, "bf16", tp=2) / 2
    per_tok_rank = m.kv_token_bytes_rank(2.0, 2)
    assert e.max_batch == np.floor(e.kv_capacity_tokens * per_tok_rank / per_seq_rank)


# ---- load_hf_config reads each family's layer keys ------------------------------------------
_GDN = {"linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128,
        "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4}
_DS = {"hidden_size": 7168, "num_hidden_layers": 61, "num_attention_heads": 128,
       "num_key_value_heads": 128, "intermediate_size": 18432, "moe_intermediate_size": 2048,
       "n_routed_experts": 256, "num_experts_per_tok": 8, "n_shared_experts": 1,
       "first_k_dense_replace": 3, "kv_lora_rank": 512, "q_lora_rank": 1536,
       "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 129280}
FAMILY_CONFIGS = {  # the keys each family's config.json uses (values of the catalog model)
    "gpt-oss-120b": {"model_type": "gpt_oss", "hidden_size": 2880, "num_hidden_layers": 36,
                     "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
                     "intermediate_size": 2880, "num_local_experts": 128,
                     "num_experts_per_tok": 4, "vocab_size": 201088, "sliding_window": 128,
                     "layer_types": ["sliding_attention", "full_attention"] * 18},
    "qwen3-next-80b-a3b": {"model_type": "qwen3_next", "hidden_size": 2048,
                           "num_hidden_layers": 48, "num_attention_heads": 16,
                           "num_key_value_heads": 2, "head_dim": 256, "intermediate_size": 5120,
                           "moe_intermediate_size": 512, "num_experts": 512,
                           "num_experts_per_tok": 10, "shared_expert_intermediate_size": 512,
                           "decoder_sparse_step": 1, "vocab_size": 151936,
                           "full_attention_interval": 4, **_GDN},
    "qwen3.5-9b": {"model_type": "qwen3_5", "text_config": {
        "model_type": "qwen3_5_text", "hidden_size": 4096, "num_hidden_layers": 32,
        "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 256,
        "intermediate_size": 12288, "vocab_size": 248320,
        "layer_types": (["linear_attention"] * 3 + ["full_attention"]) * 8,
        "mamba_ssm_dtype": "float32", **_GDN}},
    "gemma-3-27b": {"model_type": "gemma3", "text_config": {
        "model_type": "gemma3_text", "hidden_size": 5376, "num_hidden_layers": 62,
        "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128,
        "intermediate_size": 21504, "vocab_size": 262208, "sliding_window": 1024,
        "sliding_window_pattern": 6, "tie_word_embeddings": True}},
    "llama-4-scout": {"model_type": "llama4", "text_config": {
        "model_type": "llama4_text", "hidden_size": 5120, "num_hidden_layers": 48,
        "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
        "intermediate_size": 8192, "intermediate_size_mlp": 16384, "vocab_size": 202048,
        "num_local_experts": 16, "num_experts_per_tok": 1, "attention_chunk_size": 8192}},
    "deepseek-v3.2": {"model_type": "deepseek_v32", **_DS, "index_head_dim": 128,
                      "index_n_heads": 64, "index_topk": 2048},
    "minimax-m2": {"model_type": "minimax_m2", "hidden_size": 3072, "num_hidden_layers": 62,
                   "num_attention_heads": 48, "num_key_value_heads": 8, "head_dim": 128,
                   "intermediate_size": 1536, "num_local_experts": 256,
                   "num_experts_per_tok": 8, "vocab_size": 200064,
                   "attn_type_list": [1] * 62},
    "qwen2.5-72b": {"model_type": "qwen2", "hidden_size": 8192, "num_hidden_layers": 80,
                    "num_attention_heads": 64, "num_key_value_heads": 8,
                    "intermediate_size": 29568, "vocab_size": 152064, "sliding_window": 131072,
                    "use_sliding_window": False, "max_window_layers": 70},
}


@pytest.mark.parametrize("key", sorted(FAMILY_CONFIGS))
def test_hf_config_of_each_family_sizes_like_the_catalog(tmp_path, key):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(FAMILY_CONFIGS[key]))
    m, ref = kvmodel.load_hf_config(p), get_model(key)
    assert m.layer_counts == ref.layer_counts
    L = np.array([1, 128, 1024, 8192, 131072])
    for tp in (1, 8):
        np.testing.assert_array_equal(m.kv_bytes(L, tp=tp), ref.kv_bytes(L, tp=tp))


def test_hf_layer_types_all_full_ignores_sliding_window(tmp_path):
    m = _toy(tmp_path, sliding_window=16, layer_types=["full_attention"] * 4)
    assert m.layer_kinds == ("full",) * 4 and m.kv_bytes(100) == 4 * 64 * 100
