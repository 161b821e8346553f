"""The KV-slot admission law of length classes (kvmodel.instance._openloop, *KV-slot
occupancy*, :func:`slot_queue` with moments): the free Gamma's mass above the head's room
plus a reflected queue drained at a full pool's rate, by hand (scipy as oracle) on a toy;
its limits (light load: P -> 0; the pool's edge: P -> 1, wait -> ∞) and monotonicity; the
wait grows with the rate up to the pool's edge; the simulator's admission wait as oracle
near saturation on a stationary stream."""

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


def test_the_law_by_hand_on_a_toy():
    # λ = 1, c_a² = 1, c_r² = 0.5, t = 0, no feedback: σ² = λ(c_a² + 1 + λt) + 2λ·c_r² = 3 r̄²/s;
    # the head's room c' = 36 − (1 + 0.5)/2 = 35.25; θ = λ(c' − X̄)/X̄ = 15.25/20 r̄/s; the
    # occupancy Gamma(shape 20/6, scale 6): P = (S + M)/(1 + M), M = σ²·f(c')/(2θ), the mean
    # wait (E[(X − c')⁺] + M·σ²/(2θ))/(1 + M) over λ·6/5.5 (the waiting requests' size,
    # 1/(1 − c_r²/z)) (scipy's Gamma law and quadrature as oracle)
    from scipy import integrate, stats
    X = stats.gamma(20.0 / 6.0, scale=6.0)
    c, s2, th = 35.25, 3.0, 15.25 / 20.0
    M = s2 * X.pdf(c) / (2.0 * th)
    excess = integrate.quad(lambda x: (x - c) * X.pdf(x), c, np.inf)[0]
    wait, p, n = _head(1.0)
    assert n == pytest.approx(20.0)
    assert p == pytest.approx((X.sf(c) + M) / (1.0 + M), rel=1e-9)
    assert wait == pytest.approx((excess + M * s2 / (2.0 * th)) / (1.0 + M) / (6.0 / 5.5),
                                 rel=1e-7)
    # λt = 0.5 adds λ²t = 0.5 to σ²
    wait_t, p_t, _ = _head(1.0, t=0.5)
    M = 3.5 * X.pdf(c) / (2.0 * th)
    assert p_t == pytest.approx((X.sf(c) + M) / (1.0 + M), rel=1e-9)
    assert wait_t > wait


def test_a_full_pool_drains_by_hand():
    # X̄ = 20 r̄ of a 30 r̄ pool at λ = 1/s: without feedback a full pool releases 30 r̄ per
    # w1·h̄ = X̄/λ = 20 s, 1.5 r̄/s, against 1 r̄/s arriving: θ = 0.5; with κ = 0.2 its holds are
    # longer, λ·w1·h_c = 20 + 0.2·10 = 22: θ = 30/22 − 1 = 8/22; a router that sends a
    # quarter of a full pool's arrivals elsewhere adds 0.25; nothing at the edge X̄ = 30
    assert ol._full_drain(1.0, 20.0, 30.0, 0.0) == pytest.approx(0.5, rel=1e-12)
    assert ol._full_drain(1.0, 20.0, 30.0, 0.2) == pytest.approx(8.0 / 22.0, rel=1e-12)
    assert ol._full_drain(1.0, 20.0, 30.0, 0.2, 0.25) == pytest.approx(8.0 / 22.0 + 0.25)
    assert ol._full_drain(1.0, 30.0, 30.0, 0.2) == 0.0


def test_the_waiting_requests_size_by_hand():
    # the Gamma tail's tilt e^{r/z} over reservations of SCV c_r²: 1/(1 − c_r²/z); one size: 1;
    # at most the size-biased 1 + c_r² (z <= 1 + c_r²), continuously
    assert ol._blocked_size(6.0, 0.5) == pytest.approx(12.0 / 11.0, rel=1e-12)
    assert ol._blocked_size(6.0, 0.0) == 1.0
    assert ol._blocked_size(1.5, 1.0) == 2.0
    assert ol._blocked_size(2.0 + 1e-9, 1.0) == pytest.approx(2.0, rel=1e-6)
    z = np.array([30.0, 10.0, 4.0, 2.5])
    assert np.all(np.diff(ol._blocked_size(z, 1.5)) > 0.0)


def test_the_limits_light_load_and_the_edge():
    # far below the pool nobody waits; as X̄ reaches c' = 35.25 every arrival waits, forever;
    # beyond it the pool is unstable (P 1, occupancy reported at the cap)
    wait, p, _ = _head(0.3, mean=np.array([1.0, 0.1, 0.01, 0.001]))
    assert np.all(np.diff(p) < 0.0) and np.all(np.diff(wait) < 0.0)
    assert p[-1] < 1e-5 and wait[-1] < 1e-4
    means = np.array([34.0, 35.0, 35.2, 35.249, 35.2499])
    wait, p, _ = _head(1.0, mean=means)
    assert np.all(np.diff(p) > 0.0) and np.all(np.diff(wait) > 0.0)
    assert p[-1] > 0.999 and wait[-1] > 1e3
    wait, p, n = _head(1.0, mean=36.0)
    assert p == 1.0 and n == 36.0


def test_monotone_in_the_occupancy_the_pool_and_the_feedback():
    means = np.linspace(2.0, 35.0, 34)
    wait, p, _ = _head(1.0, mean=means)
    assert np.all(np.diff(p) > 0.0) and np.all(np.diff(wait) > 0.0)
    caps = np.linspace(24.0, 60.0, 37)  # a larger pool: fewer and shorter waits
    wait, p, _ = _head(1.0, cap=caps)
    assert np.all(np.diff(p) < 0.0) and np.all(np.diff(wait) < 0.0)
    w0, p0, _ = _head(1.0)
    w1, p1, _ = ol.slot_queue(1.0, 7.0, 0.0, 1e-3, 300.0, 36.0, 1.5, 1.0, 0.0, 0.5,
                              (20.0, 6.0, 1.0, 1.0, 0.3))
    assert p1 > p0  # the feedback slows a full pool's drain
    # far from the edge the queue is the free excess, of which the feedback's share κ is the
    # pool's own requests held longer (in the drain), not arrivals waiting: 1 − κ of the wait
    # (plus the reflected queue's share, which the slower drain lengthens)
    w0 = _head(1.0, mean=4.0)[0]
    w1 = ol.slot_queue(1.0, 7.0, 0.0, 1e-3, 300.0, 36.0, 1.5, 1.0, 0.0, 0.5,
                       (4.0, 6.0, 1.0, 1.0, 0.3))[0]
    assert 0.7 < w1 / w0 < 0.73


def test_a_few_percent_more_occupancy_does_not_double_the_wait():
    # the law's sensitivity away from the edge: +5 % occupancy at half to 0.85 of the pool
    for mean in (18.0, 24.0, 30.0):
        w0 = _head(1.0, mean=mean)[0]
        w1 = _head(1.0, mean=1.05 * mean)[0]
        assert 1.0 < w1 / w0 < 1.6


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
