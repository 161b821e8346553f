"""The fused MoE's rate by routed rows per active expert (``fused_moe_rows_efficiency``): few
rows per expert stream the experts' weights and fill a padded token tile for few FLOPs, so
the expert GEMMs run below ``achieved_moe_flops`` until the rows fill several tiles."""

import dataclasses
import types

import numpy as np
import pytest

from kvmodel.base.schema import Curve, Quantity
from kvmodel.catalog.hardware import get_framework, get_gpu, list_entries
from kvmodel.catalog.models import get_model
from kvmodel.instance import seam
from kvmodel.instance._roofline import Setup, _interp1, _moe_rows, step_ops
from tests.instance.test_roofline import TOY

# Toy MoE: 4 experts of 1000 (gated: 3e6 weights each), top-2, router 1000 x 4.
MOE = dataclasses.replace(TOY, num_experts=4, experts_per_token=2, moe_intermediate_size=1000)


def _toy_gpu(curve=True):
    q = dict(achieved_moe_flops={"fp4": Quantity(1e15, 1000.0, "TFLOP/s", "assumed", "toy")})
    if curve:  # 0.1 of the fused rate at 8 rows per expert, all of it from 128 rows
        q["fused_moe_rows_efficiency"] = Curve((8.0, 128.0), (0.1, 1.0), "count", "1",
                                               "assumed", "toy")
    return dataclasses.replace(get_gpu("b300"), quantities=q)


def _toy_setup(curve=True):
    # FP4 weights on an FP4 GPU; GEMMs 4 PFLOP/s (above the 1 PFLOP/s fused cap); HBM so fast
    # that the MoE op is compute-bound
    return Setup(model=MOE, gpu=_toy_gpu(curve), framework=get_framework("vllm"), tp=1, pp=1,
                 ep=1, w_B=0.5, kv_B=2.0, act_B=2.0, gemm_Fps=4e15, attn_Fps=1e15,
                 hbm_Bps=1e18, coll_alpha_s=0.0, coll_Bps=1e11, p2p_alpha_s=0.0, overhead_s=0.0)


def _moe_op(s, tokens):
    return step_ops(s, tokens, tokens, 0.0, 0.0, 0.0, tokens)[0]["moe"]


def test_toy_golden_rows_and_rate():
    s = _toy_setup()
    assert s.k["moe_Fps"] == 1e15  # the fused cap at large sizes, unchanged
    # 64 tokens hit all 4 experts (1 - 0.5^64 = 1 to 1e-19): 64 x 2 / 4 = 32 rows per expert;
    # curve 0.1 + (32 - 8) / 120 x 0.9 = 0.28 -> 0.28e15 FLOP/s
    assert _moe_rows(MOE, 64.0) == pytest.approx(32.0)
    # FLOPs per layer 2 x 64 x (2 x 3e6) + 2 x 64 x 4000 (router) = 768.512e6; x 10 layers
    op = _moe_op(s, 64.0)
    assert op["flops"] == pytest.approx(7.68512e9)
    assert op["compute_s"] == pytest.approx(7.68512e9 / 0.28e15)


def test_the_rate_holds_at_the_cap_beyond_the_curve_and_without_it():
    s, flat = _toy_setup(), _toy_setup(curve=False)
    big = _moe_op(s, 1024.0)  # 512 rows per expert, beyond the curve's 128: held at 1
    assert big["compute_s"] == pytest.approx(big["flops"] / 1e15)
    for t in (1.0, 64.0, 1024.0):  # no curve: the fused cap at every size
        op = _moe_op(flat, t)
        assert op["compute_s"] == pytest.approx(op["flops"] / 1e15)


def test_rows_per_active_expert_limits():
    # one token: its k experts, one row each; many tokens: tokens x k / E
    assert _moe_rows(MOE, 1.0) == pytest.approx(1.0)
    assert _moe_rows(MOE, 0.0) == 1.0
    assert _moe_rows(MOE, 1e4) == pytest.approx(1e4 * 2 / 4)
    # wide EP: the GPU's experts take the group's tokens x ep / tp
    wide = types.SimpleNamespace(ep=8)
    assert _moe_rows(MOE, 10.0, wide, 2.0) == pytest.approx(_moe_rows(MOE, 40.0))


def _qwen_b300():
    return seam.setup(get_model("qwen3-30b-a3b"), get_gpu("b300"), get_framework("tensorrt-llm"),
                      1.0, 1.0, 1.0, "fp4", "fp8", seam.params())


def test_moe_time_grows_and_rate_never_falls_with_tokens():
    s = _qwen_b300()
    toks = np.geomspace(1.0, 65536.0, 200)
    op = _moe_op(s, toks)
    rate = op["flops"] / op["compute_s"]
    assert np.all(np.diff(op["time_s"]) >= 0.0)
    assert np.all(np.diff(rate) >= -1e-6 * rate[1:])
    # 65536 tokens: 4096 rows per expert, the measured fused rate
    cap = get_gpu("b300").quantities["achieved_moe_flops"]["fp4"].si
    assert rate[-1] == pytest.approx(cap)
    # a 1024-sequence decode step: 64 rows per expert, about a quarter of it
    one = _moe_op(s, 1024.0)
    assert one["flops"] / one["compute_s"] == pytest.approx(0.2531 * cap, rel=0.01)


def test_scalar_and_array_paths_agree():
    s = _qwen_b300()
    toks = np.array([1.0, 100.0, 1024.0, 20000.0])
    arr = _moe_op(s, toks)["time_s"]
    for i, t in enumerate(toks):
        assert _moe_op(s, float(t))["time_s"] == pytest.approx(arr[i])


def test_every_rows_curve_is_a_fraction_of_its_fused_rate_rising_to_it():
    """A GPU's curve is relative to its own achieved_moe_flops: it needs one, never exceeds
    it, never falls with more rows, and reaches it at its largest size (held beyond)."""
    have = [g for g in list_entries("gpu")
            if "fused_moe_rows_efficiency" in get_gpu(g).quantities]
    assert {"b200", "gb200", "b300", "gb300"} <= set(have)
    for g in have:
        q = get_gpu(g).quantities
        c = q["fused_moe_rows_efficiency"]
        assert "fp4" in q["achieved_moe_flops"]
        assert np.all(np.diff(c.x) > 0) and np.all(np.diff(c.y) >= 0)
        assert 0.0 < c.y[0] and c.y[-1] == 1.0


def test_scalar_interpolation_matches_numpy():
    xs, ys = (4.07, 8.0, 16.0, 512.0), (0.03, 0.06, 0.1, 1.0)
    for x in (0.5, 4.07, 5.0, 8.0, 15.99, 100.0, 512.0, 1e6):
        assert _interp1(x, xs, ys) == pytest.approx(float(np.interp(x, xs, ys)), rel=1e-15)
