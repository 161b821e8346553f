"""``step_time`` (the latency alone; its lean path for a dense model on Python numbers, and
element by element for small arrays) is ``step_ops``' latency bit for bit: every model of the
catalog (dense, MoE, MLA, sliding-window / chunked, linear-attention layers) on GPUs and
frameworks whose terms differ (FP8 GEMM tile, fused-MoE rows, sampling, layer dispatch,
grouped-matmul copy), every precision, TP / PP, wide EP, over a grid of step shapes, as
Python floats and as arrays."""

import dataclasses
import itertools

import numpy as np

from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import get_model, list_models
from kvmodel.instance._roofline import _lean_small, attn_pairs, attn_reads, step_ops, step_time
from kvmodel.instance._wide_ep import WideEP
from kvmodel.instance.seam import params, setup

# (decoders, prompt tokens, prompt length, cached tokens of an MLA prefill or None)
SHAPES = [(1.0, 0.0, 1.0, None), (7.0, 0.0, 1.0, None), (256.0, 0.0, 1.0, None),
          (0.0, 8192.0, 8192.0, None), (64.0, 1500.0, 3000.0, 1500.0),
          (300.0, 7000.0, 40_000.0, 33_000.0), (3.0, 17.0, 100_000.0, 0.0)]
CASES = [("h100-sxm", "vllm", "bf16", "bf16", 1, 1), ("h100-sxm", "tensorrt-llm", "fp8", "fp8", 8, 1),
         ("b200", "tensorrt-llm", "nvfp4", "fp8", 4, 2), ("h20", "sglang", "fp8", "fp8", 8, 1),
         ("ascend-910b", "vllm-ascend", "bf16", "bf16", 16, 1), ("mi300x", "vllm", "fp8", "fp8", 2, 1)]


def _args(s, D, P, I, cached, ctx=2000.0):
    new = P if P else 1.0
    pairs = attn_pairs(s, P * (I - new / 2.0), I, new) if P else 0.0
    reads = attn_reads(s, 1.0, ctx)
    return (D + P, D + (1.0 if P else 0.0), pairs, D * reads, D * ctx, D + P, cached)


def _setups():
    cal = params()
    for key, (gpu, fw, prec, kv, tp, pp) in itertools.product(list_models(), CASES):
        m, g = get_model(key), get_gpu(gpu)
        if not g.supports(prec):
            continue
        yield f"{key}/{gpu}/{fw}/{prec}", setup(m, g, get_framework(fw), float(tp), float(pp), 1.0,
                                              prec, kv, cal)


def _extras(s):
    """The setup, and variants with the optional terms on: host loop, layer issuing, sampling,
    the grouped-matmul copy, kernel latency, wide EP (MoE)."""
    yield s
    yield dataclasses.replace(s, host_seq_s=3e-6, layer_host_s=2e-5, sample_s=1e-10,
                              gmm_copy=1.0, kernel_s=4e-6)
    if s.model.is_moe:
        wide = WideEP(ep=16.0, gpus_per_node=8.0, dispatch_B=1.0, combine_B=2.0, nvl_Bps=1e11,
                      net_Bps=1e10, alpha_s=1e-6, net_alpha_s=1e-6)
        yield dataclasses.replace(s, wide=wide, ep=16.0)


def test_step_time_is_step_ops_latency_bit_for_bit():
    n, kinds = 0, set()
    for name, base in _setups():
        m = base.model
        kinds |= {m.attention, "moe" if m.is_moe else "dense", "mixed" if not m.is_uniform
                  else "uniform", "linear" if m.layer_counts["linear"] else "softmax",
                  "lean" if base.k["lean"] else "general"}
        for s in _extras(base):
            for D, P, I, cached in SHAPES:
                args = _args(s, D, P, I, cached)
                want = step_ops(s, *args)[2]
                got = step_time(s, *args)
                assert type(got) is type(want) and got == want, (name, D, P, I, cached)
                n += 1
    assert n > 500 and kinds >= {"mla", "moe", "dense", "mixed", "linear", "lean"}  # the grid ran


def test_step_time_arrays_bit_for_bit():
    s = next(s for name, s in _setups() if name.startswith("deepseek-v3.2/h100-sxm/tensorrt"))
    s = dataclasses.replace(s, sample_s=1e-10, host_seq_s=3e-6)
    rng = np.random.default_rng(3)
    D, P = rng.uniform(0, 400, 50), rng.uniform(1, 8000, 50)
    pairs = attn_pairs(s, P * (30_000.0 - P / 2.0), 30_000.0, P)
    args = (D + P, D + 1.0, pairs, D * attn_reads(s, 1.0, 2000.0), D * 2000.0, D + P, P)
    np.testing.assert_array_equal(step_time(s, *args), step_ops(s, *args)[2])


def test_small_arrays_take_the_lean_path_bit_for_bit():
    """A stencil of a few points (step_response's) goes element by element through the lean
    path: the same numbers as the array path, broadcast against scalars, in its shape."""
    for name, base in _setups():
        if not base.k["lean"]:
            continue
        s = dataclasses.replace(base, host_seq_s=3e-6, layer_host_s=2e-5, sample_s=1e-10)
        D = np.array([[0.0, 3.0, 40.0, 255.5, 1.0]]).T  # (5, 1) against (3,)
        P = np.array([1.0, 700.0, 8000.0])
        args = (D + P, D + 1.0, P * 900.0, D * 2000.0, D * 2000.0, D + P)
        got, want = step_time(s, *args), step_ops(s, *args)[2]
        assert _lean_small(s, args) is not None  # the lean path ran
        assert got.shape == want.shape == (5, 3)
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_a_stencil_of_floats_and_vectors_bit_for_bit():
    """step_response's case: Python floats beside 1-d arrays of one length (no broadcasting);
    a non-finite element sends the call to the array path (numpy's NaN rules)."""
    s = next(s for name, s in _setups() if s.k["lean"])
    D = np.array([10.0, 11.0, 9.0, 10.0, 10.5])
    args = (D, D, 0.0, D * 3000.0, D * 3000.0, D)
    assert _lean_small(s, args) is not None
    np.testing.assert_array_equal(step_time(s, *args), step_ops(s, *args)[2])
    D[2] = np.inf
    assert _lean_small(s, args) is None
    with np.errstate(invalid="ignore"):  # (inf - inf in the host term: NaN, as numpy has it)
        np.testing.assert_array_equal(step_time(s, *args), step_ops(s, *args)[2])
