import contextlib
import json
from pathlib import Path

import pytest

import kvmodel
from kvmodel.catalog.hardware import Catalog, reset_catalog, use_catalog

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_catalog(monkeypatch):
    """Isolate tests that add user hardware files: reload the bundled catalog before and after."""
    monkeypatch.delenv("KVMODEL_HARDWARE", raising=False)
    reset_catalog()
    yield
    reset_catalog()


TOY_GPU = """
schema_version = 1
[gpu.toy]
name = "Toy GPU with round numbers"
vendor = "nvidia"
architecture = "toy"
hbm_capacity = { value = 100, unit = "GB", kind = "assumed", source = "test", reason = "round" }
hbm_bandwidth = { value = 1, unit = "TB/s", kind = "assumed", source = "test", reason = "round" }
peak_flops.bf16 = { value = 1000, unit = "TFLOP/s", kind = "assumed", source = "test", reason = "round" }
matmul_efficiency = { value = 1, unit = "1", kind = "assumed", source = "test", reason = "round" }
hbm_efficiency = { value = 1, unit = "1", kind = "assumed", source = "test", reason = "round" }
scale_up_link = "nvlink4"
scale_up_bandwidth = { value = 100, unit = "GB/s", kind = "assumed", source = "test", reason = "round" }
host_link = "pcie5-x16"
host_bandwidth = { value = 50, unit = "GB/s", kind = "assumed", source = "test", reason = "round" }
tdp = { value = 500, unit = "W", kind = "assumed", source = "test", reason = "round" }
"""


@pytest.fixture
def toy_gpu(tmp_path, fresh_catalog):
    p = tmp_path / "toy.toml"
    p.write_text(TOY_GPU)
    kvmodel.load_hardware(p)
    return kvmodel.get_gpu("toy")


def toy_hf_model(tmp_path, **extra):
    """A toy Hugging Face config loaded through load_hf_config: 4 layers, 4 heads, 2 KV heads of
    head_dim 8 (64 B of bf16 K+V per token per attention layer: 2 x 2 x 8 x 2 B); ``extra``
    overrides or adds config keys."""
    cfg = {"model_type": "toy", "hidden_size": 32, "num_hidden_layers": 4,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
           "intermediate_size": 64, "vocab_size": 100, **extra}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return kvmodel.load_hf_config(p)


@pytest.fixture
def catalog_with(tmp_path):
    """``catalog_with(text)`` writes ``text`` to a file, makes the default catalog plus that
    file current until the test ends, and returns it."""
    with contextlib.ExitStack() as stack:
        def load(text: str, name: str = "extra.toml") -> Catalog:
            p = tmp_path / name
            p.write_text(text)
            return stack.enter_context(use_catalog(Catalog.default().with_file(p)))
        yield load
