"""trtllm-bench's own batch / token limits (PyTorch backend), as ``kvmodel validate`` maps the
perf-overview rows, against hand arithmetic of the benchmark's heuristic."""

import pytest

from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance import calibration as c
from kvmodel.instance._trtllm_bench import _round_batch, _round_tokens, bench_limits


def _limits(model, gpu, isl, osl, precision="fp4", tp=1, pp=1):
    return bench_limits(get_model(model), get_gpu(gpu), get_framework("tensorrt-llm"), tp, pp,
                        precision, isl, osl)


def test_qwen3_30b_on_b300_by_hand():
    """B300: 288.4e9 B / 2^30 = 268.595 GiB; Qwen3-30B-A3B NVFP4: 30.532e9 x 0.5 B = 14.217 GiB;
    (268.595 - 14.217) x 0.90 = 228.94 GiB of KV. FP8 KV: 48 layers x 2 x 4 heads x 128 x 1 B =
    49152 B = 4.5776e-5 GiB per token.
    1024/32768: 228.94 / (4.5776e-5 x 33792) = 148.0 requests -> 32 x ceil(148 / 32) = 160;
    148 x (1 + 1/32) = 152.6 tokens -> 2048 (the floor), >= 1024 + 160.
    1024/1024: 228.94 / (4.5776e-5 x 2048) = 2442 -> 256 x 10 = 2560; 4884 tokens -> 512 x 10."""
    assert _limits("qwen3-30b-a3b", "b300", 1024, 32768) == (160, 2048)
    assert _limits("qwen3-30b-a3b", "b300", 1024, 1024) == (2560, 5120)


def test_whole_prompts_raise_the_token_budget():
    """Chunked prefill off: a 32768-token prompt needs max_num_tokens >= 32768 + max_batch_size
    (Llama-3.3-70B on GB300: a few tens of requests fit -> the 64 floor)."""
    assert _limits("llama-3.3-70b", "gb300", 32768, 1024) == (64, 32768 + 64)


@pytest.mark.parametrize("model", ["gpt-oss-120b", "gpt-oss-20b"])
@pytest.mark.parametrize("isl, mnt", [(1024, 8192), (8192, 8192 + 2048), (32768, 32768 + 2048)])
def test_mxfp4_gpt_oss_takes_the_build_defaults(model, isl, mnt):
    assert _limits(model, "b300", isl, 1024) == (2048, mnt)


def test_rounding_ladders():
    assert [_round_batch(x) for x in (1, 65, 255.5, 256, 1000, 1025)] == [64, 96, 256, 256, 1024, 1280]
    assert [_round_tokens(x) for x in (10, 2049, 4095, 4097, 8191, 8193)] == [
        2048, 2304, 4096, 4608, 8192, 9216]


def _row(framework, gpu="b300"):
    return dict(id="x", model="qwen3-30b-a3b", gpu=gpu, num_gpus="1", tp="1", pp="1", ep="",
                precision="fp4", input_len="1024", output_len="32768", mode="throughput_max",
                mode_value="", metric="output_tok_s", stat="total", value="1", framework=framework,
                source="s")


def test_validation_maps_only_pytorch_bench_rows():
    kw, _ = c.row_kwargs(_row("TensorRT-LLM 1.2 (trtllm-bench, PyTorch backend)"))
    assert (kw["max_batch_size"], kw["max_num_tokens"]) == (160, 2048)
    kw, _ = c.row_kwargs(_row("TensorRT-LLM v0.17 (trtllm-bench)"))
    assert "max_batch_size" not in kw and "max_num_tokens" not in kw


def test_equal_window_shares_give_sliding_models_full_length_kv():
    """TensorRT-LLM splits the KV pool equally between window sizes: gpt-oss (18 sliding-128 +
    18 full layers) fills its full layers' half, so a sequence of S tokens costs S tokens of
    all-layer KV (2 shares x 18 / 36 x S), where a window-sized pool would cost
    (18 S + 18 x 128) / 36."""
    from kvmodel.instance.seam import kv_per_seq

    m, trt, vllm = get_model("gpt-oss-120b"), get_framework("tensorrt-llm"), get_framework("vllm")
    assert kv_per_seq(m, 33792.0, 1.0, 1.0, trt) == pytest.approx(33792.0)
    assert kv_per_seq(m, 33792.0, 1.0, 1.0, vllm) == pytest.approx((33792.0 + 128.0) / 2.0)
    dense = get_model("llama-3.3-70b")  # one window size: unchanged
    assert kv_per_seq(dense, 5000.0, 1.0, 1.0, trt) == kv_per_seq(dense, 5000.0, 1.0, 1.0) == 5000.0
