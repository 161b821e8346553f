"""The batch and token limits ``trtllm-bench throughput`` (PyTorch backend) runs with when its
command gives none, as TensorRT-LLM's perf-overview runs it.

``get_settings`` (tensorrt_llm/bench/benchmark/utils/general.py) asks a heuristic
(``calc_engine_setting`` / ``finetune_setting``, tensorrt_llm/bench/build/tuning.py) for the
requests whose prompt + output KV fits the GPUs' total memory less the checkpoint's weights,
times the benchmark's KV fraction; it rounds that count up ("slightly optimistic") into
``max_batch_size`` and the count x (1 + ISL / OSL) into ``max_num_tokens``, each capped.
Checkpoints whose quantisation the heuristic does not tune (MXFP4 gpt-oss) take the build
defaults instead. Chunked prefill is off unless asked for, so ``max_num_tokens`` is then raised
to at least the longest prompt + ``max_batch_size``. The framework entry's ``bench_*``
quantities hold the tool's numbers; the rounding ladders below are its code's.
"""

from __future__ import annotations

import math

from kvmodel.base.units import to_si
from kvmodel.catalog.hardware import FrameworkSpec, GPUSpec
from kvmodel.catalog.models import BYTES_PER_ELEMENT, ModelSpec, default_kv_precision

__all__ = ["bench_limits", "TUNED_PRECISIONS"]

GiB = to_si(1.0, "GiB")  # the heuristic works in GiB (binary), not GB
#: weight precisions whose checkpoints the heuristic tunes (NVFP4, FP8, unquantised)
TUNED_PRECISIONS = ("fp4", "fp8", "bf16", "fp16")


def _round_batch(bs: float) -> int:
    """finetune_setting's optimistic batch: up to 32 (at least 64) below 256 requests, up to 128
    below 1024, up to 256 above."""
    if bs < 256:
        return max(64, 32 * math.ceil(bs / 32))
    step = 128 if bs < 1024 else 256
    return step * math.ceil(bs / step)


def _round_tokens(tok: float) -> int:
    """finetune_setting's token budget: up to 256 (at least 2048) below 4096, up to 512 below
    8192, up to 1024 above."""
    if tok < 4096:
        return max(2048, 256 * math.ceil(tok / 256))
    step = 512 if tok < 8192 else 1024
    return step * math.ceil(tok / step)


def _kv_gib_per_token(m: ModelSpec, tp: int, precision: str) -> float:
    """The heuristic's KV per token: every attention layer, at least one KV head per TP rank
    (an MLA latent once), at the checkpoint's KV precision (FP8 next to FP8/FP4 weights)."""
    kv_B = BYTES_PER_ELEMENT[default_kv_precision(precision)]
    if m.attention == "mla":
        per_layer = m.kv_lora_rank + m.qk_rope_head_dim
    else:
        per_layer = 2 * max(tp, m.num_kv_heads) * m.head_dim
    return m.num_attention_layers * per_layer * kv_B / GiB


def bench_limits(m: ModelSpec, g: GPUSpec, fw: FrameworkSpec, tp: int, pp: int, precision: str,
                 input_len: int, output_len: int) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) of trtllm-bench for ``m`` on ``tp`` x ``pp`` GPUs ``g``
    with uniform ``input_len`` / ``output_len`` requests and chunked prefill off."""
    q = fw.quantities
    if m.key in q["bench_untuned_models"] or precision not in TUNED_PRECISIONS:
        mbs = int(q["bench_default_max_batch_size"].si)
        mnt = int(q["bench_default_max_num_tokens"].si)
    else:
        free = g.hbm_capacity_B / GiB * tp * pp - m.total_params * BYTES_PER_ELEMENT[precision] / GiB
        requests = free * q["bench_kv_cache_fraction"].si / (
            _kv_gib_per_token(m, tp, precision) * (input_len + output_len))
        bs = min(requests, q["bench_batch_cap"].si) / pp
        mbs = _round_batch(bs)
        mnt = _round_tokens(min(bs * (1.0 + input_len / output_len), q["bench_token_cap"].si))
    return mbs, max(mnt, input_len + mbs)
