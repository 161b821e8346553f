"""The head-of-line KV-slot wait of length classes (kvmodel.instance._openloop, *KV-slot
occupancy*, :func:`slot_queue` with moments): a waiting request waits σ²/(2θλ), the
departures' noise counted, by hand on a toy; the wait grows with the rate up to the pool's
edge; the simulator's admission wait as oracle near saturation on a stationary stream."""

import numpy as np
import pytest

from kvmodel.instance import _openloop as ol
from kvmodel.sim import poisson_requests, simulate

# the stationary case of tests/instance/test_slot_seen_context.py
from tests.instance.test_slot_seen_context import LENS, P_CLS, G, M, O
from tests.instance.test_slot_seen_context import stationary_case as _est


def _head(lam, cr2=0.5, t=0.0, lam_sat=1.5, cap=36.0, mean=20.0):
    # one hold-weighted size (w1 = w3 = 1): a full pool holds cap requests, s_f = 1
    return ol.slot_queue(lam, 7.0, t, 1e-3, 300.0, cap, lam_sat, 1.0, 0.0, cr2,
                         (mean, 6.0, 1.0, 1.0))


def test_a_waiting_request_waits_sigma2_over_two_theta_lambda_by_hand():
    # λ = 1, c_a² = 1, c_r² = 0.5, t = 0: σ² = λ(c_a² + 1 + λt) + 2λ·c_r² = 3 r̄²/s;
    # θ = λ_sat/s_f − λ = 0.5/s (above λ/N = 1/20): a waiting request waits 3/(2·0.5·1) = 3 s
    # (Allen–Cunneen on a regular server, (c_a² + c_r²)/(2θ), gave 1.5 s)
    wait, p, n = _head(1.0)
    assert 0.0 < p < 1.0 and n == pytest.approx(20.0)
    assert wait / p == pytest.approx(3.0, rel=1e-12)
    # λt = 0.5 adds λ²t = 0.5 to σ²: 3.5 s; λ = 1.2 (θ = 0.3): (1.2·2 + 1.2)/(2·0.3·1.2) = 5 s
    wait, p, _ = _head(1.0, t=0.5)
    assert wait / p == pytest.approx(3.5, rel=1e-12)
    wait, p, _ = _head(1.2, mean=24.0)
    assert wait / p == pytest.approx(5.0, rel=1e-12)


def test_the_wait_grows_with_the_rate_up_to_the_edge():
    sat = _est(1.0).saturation_request_rate_per_s
    rates = np.linspace(0.3, 0.95, 14) * sat
    e = _est(rates)
    stable = np.asarray(e.stable)
    assert stable[:8].all()
    w = np.asarray(e.queue_wait_s)[stable]
    assert np.all(np.diff(w) > 0.0)
    assert np.all(np.diff(np.asarray(e.ttft_s)[stable]) > 0.0)


def test_the_simulator_admission_wait_as_oracle_near_saturation():
    # lengths i.i.d. from the classes, Poisson at 0.8 of the pool's edge (the last stable
    # rate): the simulator's mean TTFT against the closed form's (2 x 3,000 requests, the
    # first 300 of each left out; ~3 s): 0.88 s against 1.21 s, −27 % (Allen–Cunneen's
    # (c_a² + c_r²)/(2θ) for a waiting request's wait gave 0.78 s, −36 %)
    sat = _est(1.0).saturation_request_rate_per_s
    rates = np.linspace(0.5, 1.1, 121) * sat
    edge = rates[int(np.argmin(np.asarray(_est(rates).stable))) - 1]
    lam = 0.8 * edge
    e = _est(lam)
    ttft = []
    for seed in (1, 2):
        k = np.random.default_rng(100 + seed).choice(len(LENS), 3000, p=P_CLS)
        r = simulate(M, G, poisson_requests(3000, lam, np.asarray(LENS)[k], O, seed=seed))
        ttft.append(r.ttft_s[300:])
    sim = np.concatenate(ttft).mean()
    assert float(e.ttft_s) == pytest.approx(sim, rel=0.30)
