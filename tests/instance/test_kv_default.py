"""The default KV-cache precision follows the framework (``kv_cache_auto``): SGLang keeps the
model's 16-bit dtype next to FP8 weights (``kv_cache_dtype="auto"`` -> ``self.dtype``), while
TensorRT-LLM with ModelOpt checkpoints caches in FP8. Estimate, simulator and cluster agree."""

import pytest

from kvmodel import Cluster, estimate
from kvmodel.catalog.hardware import get_framework
from kvmodel.catalog.models import default_kv_precision, get_model
from kvmodel.cluster import kv_precision
from kvmodel.instance.seam import kv_cache_auto, kv_precision_arg


@pytest.mark.parametrize("precision, quantised, model_dtype", [
    ("fp8", "fp8", "bf16"), ("fp4", "fp8", "bf16"), ("int8", "fp8", "bf16"),
    ("bf16", "bf16", "bf16"), ("fp16", "fp16", "fp16")])
def test_default_by_what_the_cache_follows(precision, quantised, model_dtype):
    assert default_kv_precision(precision) == quantised
    assert default_kv_precision(precision, "quantised") == quantised
    assert default_kv_precision(precision, "model_dtype") == model_dtype


def test_framework_entries():
    assert kv_cache_auto(get_framework("sglang")) == "model_dtype"
    assert kv_cache_auto(get_framework("tensorrt-llm")) is None
    assert kv_cache_auto(None) is None
    assert kv_precision_arg(None, "fp8", get_framework("sglang")) == "bf16"
    assert kv_precision_arg("fp8", "fp8", get_framework("sglang")) == "fp8"  # explicit wins


def test_estimate_and_cluster_use_it():
    m = get_model("qwen3-8b")
    kw = dict(tp=1, precision="fp8", input_len=1024, output_len=128, batch=1)
    sg = estimate("qwen3-8b", "h100-sxm", framework="sglang", **kw)
    trt = estimate("qwen3-8b", "h100-sxm", framework="tensorrt-llm", **kw)
    assert sg.kv_B_per_token == m.kv_bytes_per_token("bf16") == 2 * trt.kv_B_per_token
    c = Cluster("qwen3-8b", "h100-sxm", instances=2, precision="fp8", framework="sglang")
    assert kv_precision(c) == "bf16"
    assert kv_precision(Cluster("qwen3-8b", "h100-sxm", instances=2, precision="fp8")) == "fp8"
