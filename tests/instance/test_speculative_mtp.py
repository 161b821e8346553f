"""MTP speculative decoding follows the model's own MTP layers (config.json
``num_nextn_predict_layers``): the catalog carries the count, MTP defaults to it, and a model
without MTP heads is refused by the instance estimate, the Cluster check and the search space."""

import json

import pytest

import kvmodel
from kvmodel import Cluster, estimate, get_model
from kvmodel.catalog.models import load_hf_config
from kvmodel.search import SpaceError, load_space

# catalog MTP layers and the config.json key each is read from (hardware_db/models/*.toml)
MTP = {"deepseek-v3": 1, "deepseek-v3.1": 1, "deepseek-v3.2": 1, "glm-4.5": 1, "glm-4.6": 1,
       "minimax-m2": 3, "qwen3-next-80b-a3b": 1, "qwen3.5-9b": 1, "kimi-k2": 0,
       "llama-3.1-70b": 0, "gpt-oss-120b": 0}


@pytest.mark.parametrize("key, n", sorted(MTP.items()))
def test_catalog_mtp_layers(key, n):
    assert get_model(key).mtp_layers == n


@pytest.mark.parametrize("cfg_key, n", [("num_nextn_predict_layers", 1),
                                        ("mtp_num_hidden_layers", 2), ("num_mtp_modules", 3)])
def test_hf_config_mtp_spellings(tmp_path, cfg_key, n):
    cfg = {"model_type": "toy", "hidden_size": 256, "num_attention_heads": 4,
           "num_hidden_layers": 2, "vocab_size": 1000, cfg_key: n}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    assert load_hf_config(p).mtp_layers == n
    cfg.pop(cfg_key)
    p.write_text(json.dumps(cfg))
    assert load_hf_config(p).mtp_layers == 0


def _dsv3(spec, model="deepseek-v3"):
    return estimate(model, "h100-sxm", tp=1, ep=16, num_gpus=16, attention_dp=True,
                    precision="fp8", input_len=2048, output_len=256, batch=32,
                    speculative=spec)


def test_mtp_defaults_to_the_models_layers():
    a, b = _dsv3({"method": "mtp", "k": 1}), _dsv3({"method": "mtp", "k": 1, "mtp_layers": 1})
    assert a.tpot_s == b.tpot_s
    assert a.speculative["draft_kv_B_per_token_gpu"] == pytest.approx(576 * 1.0)


def test_mtp_layers_beyond_the_models_are_refused():
    with pytest.raises(ValueError, match=r"mtp_layers=2.*ships 1 MTP layer.*allowed: 1\.\.1"):
        _dsv3({"method": "mtp", "mtp_layers": 2})


def test_mtp_on_a_model_without_mtp_heads_is_refused():
    with pytest.raises(ValueError, match=r"'kimi-k2': the model has no MTP layers"):
        _dsv3({"method": "mtp"}, model="kimi-k2")
    with pytest.raises(ValueError, match="no MTP layers"):
        estimate("llama-3.1-70b", "h100-sxm", tp=8, precision="fp8", input_len=2048,
                 output_len=256, batch=16, speculative={"method": "mtp"})
    # a draft model stays allowed on it
    e = estimate("llama-3.1-70b", "h100-sxm", tp=8, precision="fp8", input_len=2048,
                 output_len=256, batch=16, speculative={"method": "draft", "acceptance": 0.7,
                                                        "draft_model": "llama-3.1-8b"})
    assert e.feasible


def test_cluster_check_refuses_mtp_without_mtp_heads():
    w = kvmodel.Workload(kvmodel.load_trace("mooncake-conversation"), request_rate=1.0)
    c = Cluster(model="kimi-k2", gpu="h200-sxm", instances=1, tp=1, attention_dp=True, ep=16,
                precision="fp8", speculative={"method": "mtp", "k": 1})
    with pytest.raises(ValueError, match=r"Cluster.speculative=.*'kimi-k2'.*no MTP layers"):
        kvmodel.evaluate(c, w)


def _space(model_dim, spec_dim):
    return {"schema_version": 1, "name": "mtp-models",
            "fixed": {"gpu": "h200-sxm", "precision": "fp8"},
            "workload": {"trace": "synthetic", "request_rate": 1.0,
                         "synthetic": {"n_requests": 100, "seed": 1}},
            "objective": {"metrics": ["cost_per_hour"]},
            "dims": {"model": model_dim, "spec_method": spec_dim}}


def test_search_space_mtp_needs_models_with_mtp_layers():
    models = {"choices": ["deepseek-v3", "kimi-k2"]}
    with pytest.raises(SpaceError, match=r"spec_method 'mtp'.*\['kimi-k2'\] have none"):
        load_space(_space(models, {"choices": ["none", "mtp"]}))
    ok = load_space(_space(models, {"choices": ["none", "mtp"],
                                    "when": {"model": ["deepseek-v3"]}}))
    assert "mtp" in ok.dim("spec_method").choices
    load_space(_space(models, {"choices": ["none", "draft"]}))  # no MTP: no check
