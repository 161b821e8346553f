"""The executor loop's per-sequence host time (a GPU's ``host_sequence_time``): overlapped with
the GPU step, so a step lasts max(GPU stage + exposed host time, sequences x host time) — a
short GPU step at a large batch is host-bound, a long one hides the loop."""

import dataclasses

import numpy as np
import pytest

import kvmodel
from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance import seam
from kvmodel.instance._roofline import step_ops


def _setup(gpu="gb200", model="qwen3-30b-a3b", precision="fp4"):
    return seam.setup(get_model(model), get_gpu(gpu), get_framework("tensorrt-llm"), 1.0, 1.0,
                      1.0, precision, "fp8", seam.params())


def _decode(s, batch, ctx=1000.0):
    return step_ops(s, batch, batch, 0.0, batch * ctx, batch * ctx, batch)


def test_blackwell_entries_are_sourced():
    gb, b = (get_gpu(k).quantities["host_sequence_time"] for k in ("gb200", "b200"))
    assert gb.si == pytest.approx(29.4e-6) and "10273" in gb.source
    assert b.si == pytest.approx(29.4e-6 * 13.48 / 37.08, rel=1e-2) and "2053" in b.source
    assert "host_sequence_time" not in get_gpu("h100-sxm").quantities  # absent: no floor
    assert _setup("h100-sxm", precision="fp8").host_seq_s == 0.0


def test_large_batch_decode_is_host_bound():
    """2048 decoders of Qwen3-30B-A3B on GB200: ~16 ms of GPU work, 2048 x 29.4 us = 60 ms of
    host loop, so the step is the loop's length exactly."""
    s = _setup()
    ops, stage, latency = _decode(s, 2048.0)
    assert stage < 2048.0 * s.host_seq_s
    assert latency == pytest.approx(2048.0 * s.host_seq_s)
    assert ops["framework"]["time_s"] == pytest.approx(latency - stage)


def test_small_batch_hides_the_loop():
    s = _setup()
    without = dataclasses.replace(s, host_seq_s=0.0)
    for batch in (1.0, 64.0, 256.0):
        got, ref = _decode(s, batch)[2], _decode(without, batch)[2]
        assert got == ref  # the GPU step covers the loop: not a bit changes


def test_floor_is_the_max_of_both_and_vectorised():
    s = _setup()
    without = dataclasses.replace(s, host_seq_s=0.0)
    batch = np.array([1.0, 128.0, 512.0, 1024.0, 2048.0, 4096.0])
    got, ref = _decode(s, batch)[2], _decode(without, batch)[2]
    np.testing.assert_allclose(got, np.maximum(ref, batch * s.host_seq_s))


def test_host_bound_throughput_is_one_sequence_per_host_time():
    """Decode-heavy throughput-max at a large batch: output tokens/s approach 1 / host time,
    whatever the batch (each step serves every sequence once)."""
    e = kvmodel.estimate("qwen3-30b-a3b", "gb200", tp=1, precision="fp4", input_len=128,
                         output_len=2048, batch="max", framework="tensorrt-llm")
    s = _setup()
    assert float(e.output_tok_per_s) == pytest.approx(1.0 / s.host_seq_s, rel=0.02)
