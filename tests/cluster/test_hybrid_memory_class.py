"""The cluster's hybrid snapshot grid follows the prefill chunk the engine picks for its GPU's
memory (vLLM 2048 below 70 GiB, SGLang 4096 on 35-60 GiB, 16384 from 160 GiB): the prompts that
end inside an earlier prefill reuse it only up to the last chunk end."""

import pytest

import kvmodel
import kvmodel.cluster as cl
from kvmodel import Cluster, Workload
from kvmodel.catalog.models import get_model
from kvmodel.cluster._classes import whole_prefix_share


@pytest.fixture(scope="module")
def work():
    return Workload(kvmodel.load_trace("mooncake-conversation"), request_rate=1.0)


@pytest.mark.parametrize("gpu, framework, chunk", [
    ("l40s", "vllm", 2048), ("h100-sxm", "vllm", 8192), ("a100-sxm-80gb", "vllm", 2048),
    ("l40s", "sglang", 4096), ("h100-sxm", "sglang", 8192), ("b200", "sglang", 16384)])
def test_cluster_grid_uses_the_gpu_memory_class(work, gpu, framework, chunk):
    c = Cluster(model="qwen3.5-9b", gpu=gpu, instances=2, tp=1, precision="bf16",
                framework=framework, dram_B=4e10, ssd_B=0.0)
    _, grid = cl.snapshot_grid(c, work)
    b = work.trace.block_tokens
    hybrid = max(b, get_model("qwen3.5-9b").state_block_tokens("bf16", tp=1))
    # vLLM align: chunks floored to whole hybrid blocks, a whole prompt at its last block;
    # SGLang: every chunk end, a whole prompt at its end (the trace's blocks)
    part = chunk // hybrid * hybrid if framework == "vllm" else chunk
    whole = hybrid if framework == "vllm" else b
    share = whole_prefix_share(work.trace)
    assert grid == ((share, whole), (1.0 - share, part))
