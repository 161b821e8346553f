"""The running step's remainder where long prompts fill whole steps (kvmodel.instance.
_openloop.chunk_residual, the *Split* (1) of the open loop): hand arithmetic on a round-number
toy, the time-share identity (all steps full: half a step at any rate), prompts within the
budget leave the step-to-step law, monotonicity in the rate, the array path, and the
simulator's admission wait as oracle where the KV pool never fills."""

import numpy as np
import pytest

from kvmodel.instance import _openloop as ol
from kvmodel.sim import poisson_requests, simulate
from tests.instance.test_slot_seen_context import LENS, P_CLS, G, M, O
from tests.instance.test_slot_seen_context import stationary_case as _est

# toy engine: a full-budget step 0.3 s, budget 1,000 tokens; the step-to-step law's remainder
T_FULL, B, R_LAW = 0.3, 1000.0, 0.02


def test_one_class_by_hand():
    # 2,500 tokens: 1.5 full steps (0.3 s) beyond the first budget's worth; at λ = 1/s they
    # fill q = 0.45 s of each second: R = ½·0.45·0.3 + 0.55·0.02 = 0.0785 s
    R = ol.chunk_residual(1.0, T_FULL, B, (np.array([1.0]), np.array([2500.0])), R_LAW)
    assert R == pytest.approx(0.0785)
    # 3,000 tokens, a multiple of the budget: exactly two full steps before the last
    R = ol.chunk_residual(1.0, T_FULL, B, (np.array([1.0]), np.array([3000.0])), R_LAW)
    assert R == pytest.approx(0.5 * 0.6 * 0.3 + 0.4 * 0.02)


def test_two_classes_by_hand():
    # 1,000 tokens (one step, no full one beyond it) and 2,500 (1.5), equally likely, at
    # λ = 0.5/s: q = 0.5·0.75·0.3 = 0.1125, R = ½·0.1125·0.3 + 0.8875·0.02 = 0.034625 s
    cls = (np.array([0.5, 0.5]), np.array([1000.0, 2500.0]))
    assert ol.chunk_residual(0.5, T_FULL, B, cls, R_LAW) == pytest.approx(0.034625)


def test_prompts_within_the_budget_leave_the_law():
    cls = (np.array([0.7, 0.3]), np.array([400.0, 1000.0]))
    assert ol.chunk_residual(2.0, T_FULL, B, cls, R_LAW) == R_LAW


def test_continuous_in_the_prompt_length():
    # no jump where a prompt crosses a multiple of the budget (a prefix-load choice would
    # snap to it): one token more adds 1/1,000 of a full step's share
    def R(x):
        return ol.chunk_residual(1.0, T_FULL, B, (np.array([1.0]), np.array([x])), R_LAW)
    for m in (1000.0, 2000.0):
        assert 0.0 <= R(m + 1.0) - R(m - 1.0) < 1e-3


def test_all_full_steps_leave_half_a_step_at_any_rate():
    # the time shares sum to one: where the law's steps are full ones too, R = t_full/2
    cls = (np.array([0.7, 0.3]), np.array([800.0, 5300.0]))
    for lam in (0.0, 0.1, 0.4, 0.6):
        assert ol.chunk_residual(lam, T_FULL, B, cls, T_FULL / 2) == pytest.approx(T_FULL / 2)


def test_the_remainder_grows_with_the_rate_and_the_array_path_is_the_scalar_path():
    cls = (np.array([0.6, 0.3, 0.1]), np.array([400.0, 2200.0, 9000.0]))
    lam = np.linspace(0.0, 0.6, 7)
    R = ol.chunk_residual(lam, np.full(7, T_FULL), np.full(7, B),
                          (np.broadcast_to(cls[0], (7, 3)), np.broadcast_to(cls[1], (7, 3))),
                          np.full(7, R_LAW))
    assert np.all(np.diff(R) > 0.0)
    for i, x in enumerate(lam):
        assert R[i] == pytest.approx(ol.chunk_residual(float(x), T_FULL, B, cls, R_LAW))


def test_the_estimate_counts_the_full_steps():
    # 2,000/8,000/32,000-token classes: the 32k prompts fill whole steps; the step-to-step
    # law's chunk marks a/k alone give 19 ms at 0.3 of saturation, with the full steps 28 ms
    sat = _est(1.0).saturation_request_rate_per_s
    e = _est(np.array([0.3, 0.5, 0.7]) * sat)
    R = np.asarray(e.step_residual_s)
    assert np.all(np.diff(R) > 0.0)
    assert R[0] > 0.025


@pytest.mark.slow
def test_the_simulator_admission_wait_as_oracle_where_the_pool_never_fills():
    # at 0.3 of saturation no request waits for KV room: the admission wait is the running
    # step's remainder; simulator (2 x 3,000 requests, first 300 left out; ~8-10 s loaded)
    # 34.8 ms, the closed form 27.6 ms (−21 %; the step-to-step law alone 18.9 ms, −46 %)
    lam = 0.3 * _est(1.0).saturation_request_rate_per_s
    q = []
    for seed in (1, 2):
        k = np.random.default_rng(100 + seed).choice(len(LENS), 3000, p=P_CLS)
        r = simulate(M, G, poisson_requests(3000, lam, np.asarray(LENS)[k], O, seed=seed))
        q.append(r.queue_s[300:])
    q = np.concatenate(q)
    assert q.max() < 0.5  # no KV-slot wait: every wait is within one long step
    assert float(_est(lam).step_residual_s) == pytest.approx(q.mean(), rel=0.25)
