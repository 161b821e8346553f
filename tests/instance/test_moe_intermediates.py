"""The MoE op's bytes by hand on a toy MoE: the experts hit, the token rows, and the grouped
GEMMs' intermediates (the gate-up output written at the activation width, the down GEMM's input
read at the width of the activations it multiplies)."""

import dataclasses

import pytest

from kvmodel.instance._roofline import moe_intermediate_bytes, step_ops
from tests.instance.test_roofline import TOY, setup

# 8 experts of 1000 (gated: 3e6 weights each), top-2, router 1000 x 8; every layer MoE
MOE = dataclasses.replace(TOY, num_experts=8, experts_per_token=2, moe_intermediate_size=1000)


def _moe(tokens, **kw):
    s = setup(model=MOE, **kw)
    return s, step_ops(s, tokens, tokens, 0.0, 0.0, 0.0, tokens)[0]["moe"]


def test_intermediates_bf16_golden():
    s, op = _moe(10.0)
    # 10 tokens x 2 experts = 20 rows; per row gate-up out 2 x 1000 x 2 B + down in 1000 x 2 B
    # = 6000 B -> 120,000 B per layer
    assert moe_intermediate_bytes(s, 10.0) == pytest.approx(120_000.0)
    hit = 8.0 * (1.0 - 0.75 ** 10)  # distinct experts hit by 10 tokens: 7.5495
    weights = hit * 3e6 * 2.0 + 1000 * 8 * 2.0
    rows = 10 * 1000 * 2.0 * (2.0 + 2.0 * 2)  # in + out once and once per routed expert
    assert op["bytes"] == pytest.approx(10 * (weights + rows + 120_000.0))


def test_intermediates_split_over_tp():
    s1, _ = _moe(10.0)
    s2, _ = _moe(10.0, tp=2)
    assert moe_intermediate_bytes(s2, 10.0) == pytest.approx(60_000.0)
    assert moe_intermediate_bytes(s1, 10.0) == pytest.approx(2.0 * moe_intermediate_bytes(s2, 10.0))


def test_quantised_activations_read_the_down_input_at_the_weight_width():
    # NVFP4-like: weights and activations 4-bit (head_B == w_B): the down GEMM reads 0.5 B
    s, _ = _moe(10.0, w_B=0.5, proj_B=0.5, head_B=0.5)
    assert moe_intermediate_bytes(s, 10.0) == pytest.approx(20 * (2 * 1000 * 2.0 + 1000 * 0.5))
    # weight-only 4-bit (16-bit head / router): activations stay 16-bit
    s, _ = _moe(10.0, w_B=0.5, proj_B=2.0, head_B=2.0)
    assert moe_intermediate_bytes(s, 10.0) == pytest.approx(120_000.0)


def test_plain_mlp_experts_write_a_single_width_gate_up_output():
    plain = dataclasses.replace(MOE, mlp="plain")
    s = setup(model=plain)
    # GELU experts: up output 1000 x 2 B + down input 1000 x 2 B = 4000 B per row
    assert moe_intermediate_bytes(s, 10.0) == pytest.approx(20 * 4000.0)
