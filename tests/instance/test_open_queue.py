"""The open loop's token-budget prefill server (kvmodel.instance._openloop): hand-computed toy
cases, Little's law, monotonicity in load, and stability exactly up to the saturation rate."""

import math

import numpy as np
import pytest

import kvmodel
from kvmodel.instance import _openloop as ol

G = "h100-sxm"
CONFIGS = [("llama-3.1-8b", 1, 1024, 128, 0), ("llama-3.1-8b", 1, 8192, 128, 0),
           ("llama-3.1-70b", 8, 2048, 256, 0), ("llama-3.1-70b", 8, 32768, 64, 0),
           ("llama-3.1-8b", 1, 9216, 128, 8192), ("llama-3.1-70b", 4, 300, 2000, 0)]


def _est(model, tp, I, O, P, **kw):
    return kvmodel.estimate(model, G, tp=tp, input_len=I, output_len=O, cached_prefix_len=P, **kw)


def test_busy_share_by_hand():
    # λ·t·k = 10/s x 0.1 s x 1 chunk = 1: f = 1 - e^-1, P = λ·new·t / f = 1000 / f tokens
    f, P = ol._share(10.0, 0.1, 1000.0, 1.0, 8000.0)
    assert f == pytest.approx(1.0 - math.exp(-1.0))
    assert P == pytest.approx(1000.0 / (1.0 - math.exp(-1.0)))
    # light load: one chunk per busy step, busy share λ·t
    f, P = ol._share(0.01, 0.1, 1000.0, 1.0, 8000.0)
    assert f == pytest.approx(0.001, rel=1e-3) and P == pytest.approx(1000.0, rel=1e-3)
    # 10 000 prompt tokens per step would exceed the 8000-token budget: full steps
    f, P = ol._share(100.0, 0.1, 1000.0, 1.0, 8000.0)
    assert P == 8000.0 and f == 1.0
    # vectorised, same numbers element by element
    fv, Pv = ol._share(np.array([10.0, 100.0]), 0.1, 1000.0, 1.0, 8000.0)
    assert fv.tolist() == pytest.approx([1.0 - math.exp(-1.0), 1.0])


def test_fluctuation_by_hand():
    # t = 20 ms, T' = 0.1 ms, T'' = 0, D = 100, λ = 10/s, O = 101: κ = 10 x 100 x 1e-4 = 0.1,
    # Var(D) = 100 x (1 + 10 x 0.02) / 0.9² = 148.1; TPOT = t + T'·Var/D
    var = 100 * 1.2 / 0.81
    t_mean, tpot, v = ol.fluctuation(0.02, 1e-4, 0.0, 100.0, 10.0, 101.0, 1000.0)
    assert t_mean == 0.02 and tpot == pytest.approx(0.02 + 1e-4 * var / 100)
    assert v == pytest.approx(var)
    # T'' = 1e-6 s per decoder²: the mean step rises by ½·T''·Var/(1 − κ)
    t_mean, _, _ = ol.fluctuation(0.02, 1e-4, 1e-6, 100.0, 10.0, 101.0, 1000.0)
    assert t_mean == pytest.approx(0.02 + 0.5e-6 * var / 0.9)
    # the batch ceiling bounds the spread: Var(D) <= (bmax − D)² = 25
    _, tpot, _ = ol.fluctuation(0.02, 1e-4, 0.0, 100.0, 10.0, 101.0, 105.0)
    assert tpot == pytest.approx(0.02 + 1e-4 * 25 / 100)


def test_residual_step_by_hand():
    # half the steps 10 ms, half 30 ms: E[t²]/(2E[t]) = (0.5·30² + 0.5·10²) / (2 x 20) = 12.5 ms
    assert ol.residual_step(0.5, 0.03, 0.01) == pytest.approx((0.5 * 9e-4 + 0.5 * 1e-4) / 0.04)
    assert ol.residual_step(0.0, 0.03, 0.01) == pytest.approx(0.005)


def test_token_server_is_kingman_on_token_work():
    e = _est("llama-3.1-8b", 1, 1024, 128, 0, request_rate=10.0)
    assert e.stable and e.queue_wait_s > 0
    # doubling the arrival SCV at the same rate raises the prefill wait
    e2 = _est("llama-3.1-8b", 1, 1024, 128, 0, request_rate=10.0, arrival_cv=2 ** 0.5)
    assert e2.queue_wait_s > e.queue_wait_s and e2.ttft_s > e.ttft_s


@pytest.mark.parametrize("model,tp,I,O,P", CONFIGS)
def test_stable_exactly_up_to_saturation(model, tp, I, O, P):
    sat = _est(model, tp, I, O, P, batch="max").saturation_request_rate_per_s
    near = _est(model, tp, I, O, P, request_rate=0.99 * sat)
    over = _est(model, tp, I, O, P, request_rate=1.01 * sat)
    assert near.stable and np.isfinite(near.ttft_s) and near.reason == ""
    assert not over.stable and np.isinf(over.ttft_s)


@pytest.mark.parametrize("model,tp,I,O,P", CONFIGS[:3])
def test_more_load_never_lowers_latency_and_littles_law(model, tp, I, O, P):
    sat = _est(model, tp, I, O, P, batch="max").saturation_request_rate_per_s
    lam = np.linspace(0.02, 0.98, 25) * sat
    e = _est(model, tp, I, O, P, request_rate=lam)
    assert np.all(e.stable)
    for f in ("ttft_s", "ttft_p99_s", "tpot_s", "e2e_s", "queue_wait_s"):
        assert np.all(np.diff(getattr(e, f)) >= -1e-12), f
    # Little: throughput is the offered rate; requests in service lie between those decoding
    # (λ·(E2E − TTFT)) and all in the system (λ·E2E)
    assert np.allclose(e.output_tok_per_s, lam * O)
    assert np.all(e.batch >= lam * (e.e2e_s - e.ttft_s) * (1 - 1e-9))
    assert np.all(e.batch <= lam * e.e2e_s)
    # an array gives each element what it gets alone
    one = _est(model, tp, I, O, P, request_rate=float(lam[12]))
    assert one.ttft_s == pytest.approx(e.ttft_s[12], rel=1e-6)
