"""Hybrid models in the cluster: a prefix hit is reusable only up to a state snapshot, so the
cached tokens each hit class loads are floored to the snapshot grid (vLLM's hybrid block, or
the trace's blocks for SGLang's per-node snapshots); the P/D decode side's handed-off KV is
each request's own and is not floored; attention-only models are unchanged."""

import numpy as np
import pytest

import kvmodel
import kvmodel.cluster as cl
from kvmodel import Cluster, Workload
from kvmodel.catalog.models import get_model, snapshot_mode
from kvmodel.cluster._classes import with_lengths


@pytest.fixture(scope="module")
def work():
    return Workload(kvmodel.load_trace("mooncake-conversation"), request_rate=1.0)


def _spy(monkeypatch):
    """Record the prefix classes every instance estimate of the cluster receives."""
    calls, real = [], cl.estimate

    def spy(*a, **k):
        calls.append(k)
        return real(*a, **k)
    monkeypatch.setattr(cl, "estimate", spy)
    return calls


def test_with_lengths_floors_to_the_grid_by_hand():
    # one hit class of 700 cached tokens in 1000-token prompts; bands of 1000 and 2000 tokens
    cls = [(0.4, 0, "hbm"), (0.6, 700.0, "dram")]
    bands = [(0.5, 1000.0), (0.5, 2000.0)]
    plain = [c[1] for c in with_lengths(cls, bands, 1000.0)]
    floored = [c[1] for c in with_lengths(cls, bands, 1000.0, grid=528.0)]
    assert plain == [0.0, 0.0, 700.0, 1400.0]
    assert floored == [0.0, 0.0, 528.0, 1056.0]  # 700 -> 1 x 528, 1400 -> 2 x 528


@pytest.mark.parametrize("model, tp", [("qwen3-next-80b-a3b", 4), ("qwen3.5-9b", 1)])
@pytest.mark.parametrize("framework", ["vllm", "sglang"])
def test_hybrid_hits_sit_on_the_snapshot_grid(monkeypatch, work, model, tp, framework):
    c = Cluster(model=model, gpu="h100-sxm", instances=2, tp=tp, precision="bf16",
                framework=framework, dram_B=4e11, ssd_B=0.0)
    mode, grid = cl.snapshot_grid(c, work)
    assert mode == snapshot_mode(framework)
    m = get_model(model)
    want = (work.trace.block_tokens if framework == "sglang" else
            max(work.trace.block_tokens, m.state_block_tokens("bf16", tp=tp)))
    assert grid == want
    calls = _spy(monkeypatch)
    r = kvmodel.evaluate(c, work)
    assert sum(r.hit_ratio.values()) > 0.05
    cached = [float(k[1]) for k in calls[-1]["prefix_classes"]]
    assert max(cached) >= grid  # some hits survive the floor
    assert all(x % grid == 0 for x in cached)


def test_pd_decode_side_keeps_the_handed_off_prompt(monkeypatch, work):
    c = Cluster(model="qwen3.5-9b", gpu="h100-sxm", tp=1, precision="bf16", framework="vllm",
                prefill_instances=2, decode_instances=2, dram_B=4e10, ssd_B=0.0)
    calls = _spy(monkeypatch)
    kvmodel.evaluate(c, work)
    grid = cl.snapshot_grid(c, work)[1]
    prefill, decode = calls[-2], calls[-1]
    assert prefill["output_len"] == 1
    assert all(float(k[1]) % grid == 0 for k in prefill["prefix_classes"])
    I = round(work.input_len)
    assert decode["prefix_classes"] == [(1.0, I - 1, "hbm")]  # not floored to the grid
    assert (I - 1) % grid != 0


def test_attention_only_models_have_no_grid(monkeypatch, work):
    for model in ("llama-3.1-8b", "gpt-oss-20b"):
        c = Cluster(model=model, gpu="h100-sxm", instances=2, tp=1, precision="bf16",
                    framework="vllm")
        assert cl.snapshot_grid(c, work)[1] is None
        assert cl.block_bytes(c, work) == get_model(model).cache_block_bytes(
            work.trace.block_tokens, "bf16", work.input_len)


def test_snapshot_mode_sets_the_block_bytes(work):
    # SGLang: one snapshot per cached prefix (radix node), vLLM: one per hybrid block; a
    # block of the trace then carries less state under SGLang
    def bytes_(fw):
        c = Cluster(model="qwen3.5-9b", gpu="h100-sxm", instances=2, tp=1, precision="bf16",
                    framework=fw)
        return cl.block_bytes(c, work)
    assert bytes_("sglang") < bytes_("vllm")
    assert bytes_("tensorrt-llm") == bytes_("vllm")
    m = get_model("qwen3.5-9b")
    b, I = work.trace.block_tokens, work.input_len
    assert bytes_("sglang") == pytest.approx(m.cache_block_bytes(
        b, "bf16", I, snapshot_tokens=b, snapshots="node"))
    assert np.isclose(bytes_("vllm"), m.cache_block_bytes(b, "bf16", I, snapshot_tokens=528))
