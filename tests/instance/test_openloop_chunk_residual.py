"""The running step's remainder from the prompts' own chunks (kvmodel.instance._openloop.
chunk_residual, the *Split* (1) of the open loop with length classes): hand arithmetic on a
round-number toy, the time-share identity (equal steps: half a step at any rate), monotonicity
in the rate, the array path, the estimate's residual at least the chunk law's, and the
simulator's admission wait as oracle where the KV pool never fills."""

import numpy as np
import pytest

from kvmodel.instance import _openloop as ol
from kvmodel.sim import poisson_requests, simulate
from tests.instance.test_slot_seen_context import LENS, P_CLS, G, M, O
from tests.instance.test_slot_seen_context import stationary_case as _est

# toy engine: decode-only step 0.01 s, a full-budget step 0.3 s, budget 1,000 tokens
T_D, T_FULL, B = 0.01, 0.3, 1000.0


def test_one_class_by_hand():
    # 2,500 tokens: ceil(2.5) = 3 chunks, two full steps (0.3 s) and a last one of 500
    # tokens, 0.01 + 0.29·0.5 = 0.155 s; at λ = 1/s the prompts' steps fill 0.755 s of each
    # second, decode-only steps the other 0.245: R = ½(2·0.3² + 0.155² + 0.245·0.01)
    R = ol.chunk_residual(1.0, T_D, T_FULL, B, (np.array([1.0]), np.array([2500.0])))
    assert R == pytest.approx(0.5 * (2 * 0.09 + 0.155 ** 2 + 0.245 * 0.01))
    assert R == pytest.approx(0.1032375)


def test_two_classes_by_hand():
    # classes 1,000 (one full step, no remainder: ceil(1) = 1, last step 0.3 s) and 500
    # tokens (0.155 s), equally likely, at λ = 2/s: busy 2·(0.5·0.3 + 0.5·0.155) = 0.455 s
    R = ol.chunk_residual(2.0, T_D, T_FULL, B, (np.array([0.5, 0.5]), np.array([1000.0, 500.0])))
    assert R == pytest.approx(0.5 * (2.0 * (0.5 * 0.09 + 0.5 * 0.155 ** 2) + 0.545 * 0.01))


def test_equal_steps_leave_half_a_step_at_any_rate():
    # the time shares sum to one: if every step lasts t_d the remainder is t_d/2
    cls = (np.array([0.7, 0.3]), np.array([800.0, 5300.0]))
    for lam in (0.0, 0.1, 0.5, 2.0):
        assert ol.chunk_residual(lam, T_D, T_D, B, cls) == pytest.approx(T_D / 2)


def test_the_remainder_grows_with_the_rate_and_the_array_path_is_the_scalar_path():
    cls = (np.array([0.6, 0.3, 0.1]), np.array([400.0, 2200.0, 9000.0]))
    lam = np.linspace(0.0, 0.6, 7)
    R = ol.chunk_residual(lam, np.full(7, T_D), np.full(7, T_FULL), np.full(7, B),
                          (np.broadcast_to(cls[0], (7, 3)), np.broadcast_to(cls[1], (7, 3))))
    assert np.all(np.diff(R) > 0.0)
    for i, x in enumerate(lam):
        assert R[i] == pytest.approx(ol.chunk_residual(float(x), T_D, T_FULL, B, cls))


def test_the_estimate_takes_at_least_the_chunk_law():
    # 2,000/8,000/32,000-token classes: the 32k prompts fill whole steps; the step-to-step
    # law's chunk marks a/k alone give 19 ms at 0.3 of saturation, the chunks 29 ms
    sat = _est(1.0).saturation_request_rate_per_s
    e = _est(np.array([0.3, 0.5, 0.7]) * sat)
    R = np.asarray(e.step_residual_s)
    assert np.all(np.diff(R) > 0.0)
    assert R[0] > 0.025


@pytest.mark.slow
def test_the_simulator_admission_wait_as_oracle_where_the_pool_never_fills():
    # at 0.3 of saturation no request waits for KV room: the admission wait is the running
    # step's remainder; simulator (2 x 3,000 requests, first 300 left out; ~8-10 s loaded)
    # 34.8 ms, the closed form 28.8 ms (−17 %; the step-to-step law alone 18.9 ms, −46 %)
    lam = 0.3 * _est(1.0).saturation_request_rate_per_s
    q = []
    for seed in (1, 2):
        k = np.random.default_rng(100 + seed).choice(len(LENS), 3000, p=P_CLS)
        r = simulate(M, G, poisson_requests(3000, lam, np.asarray(LENS)[k], O, seed=seed))
        q.append(r.queue_s[300:])
    q = np.concatenate(q)
    assert q.max() < 0.5  # no KV-slot wait: every wait is within one long step
    assert float(_est(lam).step_residual_s) == pytest.approx(q.mean(), rel=0.25)
