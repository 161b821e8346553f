"""Hybrid models in the cluster: a prefix hit is reusable only up to a state snapshot, so the
cached tokens each hit class loads are floored to where the framework keeps them (vLLM align:
the prompt's last hybrid-block boundary and every prefill step; SGLang: each radix node's end;
TensorRT-LLM: every 256 tokens and the prompt's end), mixed by the trace's share of runs that
reach an earlier prompt's end; the P/D decode side's handed-off KV is each request's own and
is not floored; attention-only models are unchanged."""

import numpy as np
import pytest

import kvmodel
import kvmodel.cluster as cl
import kvmodel.cluster._classes as cls_mod
from kvmodel import Cluster, Workload
from kvmodel.catalog.models import get_model, snapshot_mode
from kvmodel.cluster._classes import floor_to_grid, reuse_grid, whole_prefix_share, with_lengths
from kvmodel.workload._trace_types import Trace


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


def _grids(grid):
    return [g for _, g in grid] if isinstance(grid, tuple) else [grid]


@pytest.mark.parametrize("model, tp", [("qwen3-next-80b-a3b", 4), ("qwen3.5-9b", 1)])
@pytest.mark.parametrize("framework", ["vllm", "sglang", "tensorrt-llm"])
def test_hybrid_hits_sit_on_the_snapshot_grid(monkeypatch, work, model, tp, framework):
    c = Cluster(model=model, gpu="h100-sxm", instances=2, tp=tp, precision="bf16",
                framework=framework, dram_B=4e11, ssd_B=0.0)
    mode, grid = cl.snapshot_grid(c, work)
    assert mode == snapshot_mode(framework)
    m, b = get_model(model), work.trace.block_tokens
    hybrid = max(b, m.state_block_tokens("bf16", tp=tp))
    share = whole_prefix_share(work.trace)
    # a run reaching an earlier prompt's end: its last block boundary (vLLM align) or its
    # end (SGLang, TensorRT-LLM: the trace's blocks); a run ending inside one: the prefill
    # snapshots (vLLM: 8,192-token steps floored to whole hybrid blocks)
    part = {"vllm": 8192 // hybrid * hybrid, "sglang": 8192, "tensorrt-llm": 256}[framework]
    whole = hybrid if framework == "vllm" else b
    assert grid == ((share, whole), (1.0 - share, part))
    floors, real = [], cls_mod.floor_to_grid

    def spy_floor(x, g):
        floors.append((x, g, real(x, g)))
        return floors[-1][2]
    monkeypatch.setattr(cls_mod, "floor_to_grid", spy_floor)
    calls = _spy(monkeypatch)
    r = kvmodel.evaluate(c, work)
    assert sum(r.hit_ratio.values()) > 0.05
    cached = [float(k[1]) for k in calls[-1]["prefix_classes"]]
    assert max(cached) > 0  # some hits survive the floor
    # every class's cached tokens: the share-weighted floors of what it would have loaded
    assert floors and all(g == grid for _, g, _ in floors)
    for x, _, y in floors:
        want = np.floor(sum(p * np.floor(np.asarray(x) / q) * q for p, q in grid))
        np.testing.assert_allclose(y, want)
    assert set(cached) <= {float(y) for _, _, y in floors}


def test_hybrid_grid_by_hand_on_a_toy_trace():
    # request 1 repeats request 0's whole prompt (3 full blocks) and adds one: a later turn;
    # request 2 shares request 0's first block only: a shared system prompt
    tr = Trace.from_lists([[1, 2, 3], [1, 2, 3, 4], [1, 9]], input_len=[3 * 16, 4 * 16, 2 * 16],
                          block_tokens=16)
    assert whole_prefix_share(tr) == 0.5
    assert reuse_grid("align", 32.0, 100.0, 0.5) == ((0.5, 32.0), (0.5, 96.0))
    assert reuse_grid("node", 16.0, None, 0.5) == ((0.5, 16.0), (0.5, 16.0))
    assert reuse_grid("block", 32.0, 100.0, 0.5) == 32.0
    # 200 cached tokens: half floored to 32 (192), half to 96 (192); 100 -> 48 + 48
    g = reuse_grid("align", 32.0, 100.0, 0.5)
    np.testing.assert_allclose(floor_to_grid(np.array([200.0, 100.0, 20.0]), g),
                               [192.0, 0.5 * 96 + 0.5 * 96, 0.0])
    assert floor_to_grid(700.0, 528.0) == 528.0 and floor_to_grid(7.0, None) == 7.0
    assert floor_to_grid(1000.0, reuse_grid("none", 32.0, None, 0.5)) == 0.0


def test_no_hybrid_reuse_gives_no_hits(monkeypatch, work):
    # an engine without hybrid prefix caching ("none"): every request recomputes its prompt
    import kvmodel.catalog.models as models
    c = Cluster(model="qwen3.5-9b", gpu="h100-sxm", instances=2, tp=1, precision="bf16",
                framework="vllm", dram_B=4e10, ssd_B=0.0)
    monkeypatch.setattr(cl, "snapshot_mode", lambda fw: models.snapshot_mode(fw, "none"))
    assert cl.snapshot_grid(c, work) == ("none", ((1.0, float("inf")),))
    calls = _spy(monkeypatch)
    kvmodel.evaluate(c, work)
    assert all(float(k[1]) == 0 for k in calls[-1]["prefix_classes"])


def test_pd_decode_side_keeps_the_handed_off_prompt(monkeypatch, work):
    c = Cluster(model="qwen3.5-9b", gpu="h100-sxm", tp=1, precision="bf16", framework="vllm",
                prefill_instances=2, decode_instances=2, dram_B=4e10, ssd_B=0.0)
    calls = _spy(monkeypatch)
    kvmodel.evaluate(c, work)
    grid = cl.snapshot_grid(c, work)[1]
    prefill, decode = calls[-2], calls[-1]
    assert prefill["output_len"] == 1
    I = round(work.input_len)
    assert all(float(k[1]) < float(k[3]) for k in prefill["prefix_classes"])  # < its prompt
    assert decode["prefix_classes"] == [(1.0, I - 1, "hbm")]  # not floored to the grid
    assert floor_to_grid(float(I - 1), grid) < I - 1


def test_attention_only_models_have_no_grid(monkeypatch, work):
    for model in ("llama-3.1-8b", "gpt-oss-20b"):
        c = Cluster(model=model, gpu="h100-sxm", instances=2, tp=1, precision="bf16",
                    framework="vllm")
        assert cl.snapshot_grid(c, work)[1] is None
        assert cl.block_bytes(c, work) == get_model(model).cache_block_bytes(
            work.trace.block_tokens, "bf16", work.input_len)


def test_snapshot_mode_sets_the_block_bytes(work):
    # a block of the trace carries its share of the prefix's states where the framework keeps
    # them: vLLM align (528-token hybrid blocks, 8,192-token steps), SGLang per radix node
    # (8,192-token chunks and the prompt's end), TensorRT-LLM every 256 tokens (the most)
    def bytes_(fw):
        c = Cluster(model="qwen3.5-9b", gpu="h100-sxm", instances=2, tp=1, precision="bf16",
                    framework=fw)
        return cl.block_bytes(c, work)
    m = get_model("qwen3.5-9b")
    b, I = work.trace.block_tokens, work.input_len
    assert bytes_("vllm") == pytest.approx(m.cache_block_bytes(
        b, "bf16", I, snapshot_tokens=528, snapshots="align", interval=8192))
    assert bytes_("sglang") == pytest.approx(m.cache_block_bytes(
        b, "bf16", I, snapshot_tokens=b, snapshots="node", interval=8192))
    assert bytes_("tensorrt-llm") == pytest.approx(m.cache_block_bytes(
        b, "bf16", I, snapshot_tokens=b, snapshots="interval", interval=256))
    every_block = m.cache_block_bytes(b, "bf16", I, snapshot_tokens=528)
    assert bytes_("vllm") < every_block < bytes_("tensorrt-llm")
