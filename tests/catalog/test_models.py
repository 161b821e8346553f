"""LLM catalog: KV bytes per token and parameter counts against published config arithmetic."""

import json

import pytest

import kvmodel
from kvmodel.catalog.models import get_model, list_models

# KV bytes/token in bf16, derived by hand from each published config.json:
#   MHA/GQA: 2 (K and V) x layers x kv_heads x head_dim x 2 bytes;  MLA: layers x (512 + 64) x 2
KV_BF16 = {
    "llama-2-7b": 2 * 32 * 32 * 128 * 2,        # 524,288
    "llama-2-13b": 2 * 40 * 40 * 128 * 2,       # 819,200
    "llama-2-70b": 2 * 80 * 8 * 128 * 2,        # 327,680
    "llama-3.1-8b": 2 * 32 * 8 * 128 * 2,       # 131,072
    "llama-3.1-70b": 327_680,                   # the golden value
    "llama-3.3-70b": 327_680,
    "llama-3.1-405b": 2 * 126 * 8 * 128 * 2,    # 516,096
    "mistral-7b": 2 * 32 * 8 * 128 * 2,
    "mixtral-8x7b": 2 * 32 * 8 * 128 * 2,
    "mixtral-8x22b": 2 * 56 * 8 * 128 * 2,
    "qwen3-8b": 2 * 36 * 8 * 128 * 2,
    "qwen3-32b": 2 * 64 * 8 * 128 * 2,
    "qwen3-30b-a3b": 2 * 48 * 4 * 128 * 2,
    "qwen3-235b-a22b": 2 * 94 * 4 * 128 * 2,
    "deepseek-v3": 61 * (512 + 64) * 2,         # 70,272
    "llama-4-scout": 2 * 48 * 8 * 128 * 2,
    "llama-4-maverick": 2 * 48 * 8 * 128 * 2,
    "gpt-j-6b": 2 * 28 * 16 * 256 * 2,
    "falcon-180b": 2 * 80 * 8 * 64 * 2,
}

# Published total parameter counts (model cards / names), billions; our count from the
# architecture must land within 3 %.
PARAMS_B = {
    "llama-2-7b": 6.74, "llama-2-13b": 13.0, "llama-2-70b": 69.0, "llama-3.1-8b": 8.03,
    "llama-3.1-70b": 70.6, "llama-3.1-405b": 405.9, "mistral-7b": 7.24, "mixtral-8x7b": 46.7,
    "mixtral-8x22b": 141.0, "qwen3-8b": 8.2, "qwen3-32b": 32.8, "qwen3-30b-a3b": 30.5,
    "qwen3-235b-a22b": 235.0, "deepseek-v3": 671.0, "llama-4-scout": 109.0,
    "llama-4-maverick": 400.0, "gpt-j-6b": 6.05, "falcon-180b": 180.0,
}
ACTIVE_B = {"mixtral-8x7b": 12.9, "qwen3-30b-a3b": 3.3, "qwen3-235b-a22b": 22.0,
            "deepseek-v3": 37.0, "llama-4-scout": 17.0, "llama-4-maverick": 17.0}


def test_catalog_complete():
    assert set(KV_BF16) <= set(list_models())


@pytest.mark.parametrize("key", sorted(KV_BF16))
def test_kv_bytes_per_token(key):
    m = get_model(key)
    assert m.kv_bytes_per_token("bf16") == KV_BF16[key]
    assert m.kv_bytes_per_token("fp8") == KV_BF16[key] / 2


@pytest.mark.parametrize("key", sorted(PARAMS_B))
def test_parameter_counts(key):
    assert get_model(key).total_params / 1e9 == pytest.approx(PARAMS_B[key], rel=0.03)


@pytest.mark.parametrize("key", sorted(ACTIVE_B))
def test_active_parameters_of_moe(key):
    m = get_model(key)
    assert m.active_params / 1e9 == pytest.approx(ACTIVE_B[key], rel=0.06)
    assert m.active_params < m.total_params


@pytest.mark.parametrize("name", ["llama-3.1-70b", "LLAMA-3.1-70B", "meta-llama/Llama-3.1-70B",
                                  "Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"])
def test_lookup_accepts_published_names(name):
    assert get_model(name).key == "llama-3.1-70b"


def test_unknown_model_lists_known():
    with pytest.raises(KeyError, match="unknown model 'gpt-5'.*llama-3.1-8b"):
        get_model("gpt-5")


def test_mla_and_moe_structure():
    ds = get_model("deepseek-v3")
    assert ds.attention == "mla" and ds.num_moe_layers == 58 and ds.num_dense_layers == 3
    mav = get_model("llama-4-maverick")
    assert mav.num_moe_layers == 24  # interleaved: every other of 48 layers


def test_hf_config_json_matches_catalog(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 80,
           "num_attention_heads": 64, "num_key_value_heads": 8, "intermediate_size": 28672,
           "vocab_size": 128256, "tie_word_embeddings": False,
           "max_position_embeddings": 131072, "_name_or_path": "meta-llama/Llama-3.1-70B"}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    m = kvmodel.load_hf_config(p)
    ref = get_model("llama-3.1-70b")
    assert m.kv_bytes_per_token() == ref.kv_bytes_per_token() == 327_680
    assert m.total_params == ref.total_params
    # usable directly as the model argument
    e = kvmodel.estimate(str(p), "h100-sxm", tp=8, precision="fp8")
    assert e.feasible


def test_hf_config_moe_and_mla(tmp_path):
    cfg = {"model_type": "deepseek_v3", "hidden_size": 7168, "num_hidden_layers": 61,
           "num_attention_heads": 128, "num_key_value_heads": 128, "intermediate_size": 18432,
           "moe_intermediate_size": 2048, "n_routed_experts": 256, "num_experts_per_tok": 8,
           "n_shared_experts": 1, "first_k_dense_replace": 3, "kv_lora_rank": 512,
           "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
           "v_head_dim": 128, "vocab_size": 129280}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    m = kvmodel.load_hf_config(p)
    assert m.kv_bytes_per_token("bf16") == 70_272
    assert m.total_params == pytest.approx(get_model("deepseek-v3").total_params, rel=1e-9)


def test_bad_config_json(tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{"model_type": "x"}')
    with pytest.raises(ValueError, match="config.json"):
        kvmodel.load_hf_config(p)
