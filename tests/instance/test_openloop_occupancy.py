"""KV-slot occupancy moments of request classes (kvmodel.instance._openloop.slot_moments,
class_holds): hand arithmetic on a two-size toy, Little's law on tokens and the index
against a seeded Monte Carlo of marked infinite-server holds, the feedback and steering
limits, and the scalar path against the array path."""

import numpy as np
import pytest

from kvmodel.instance import _openloop as ol

# two classes, equally likely: 1 and 3 tokens held 2 s and 4 s (r̄ = 2 tokens, h̄ = 3 s)
PROBS, SIZES, HOLDS = [0.5, 0.5], [1.0, 3.0], [2.0, 4.0]


def test_two_sizes_by_hand():
    # E[r·h] = (2 + 12)/2 = 7, E[r²·h] = (2 + 36)/2 = 19; λ = 1
    mean, idx, w1, w3 = ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 1.0, 0.0)
    assert mean == pytest.approx(7.0 / 2.0)  # λ·E[r·h]/r̄
    assert w1 == pytest.approx(7.0 / (2.0 * 3.0))
    assert w3 == pytest.approx(19.0 / (7.0 * 2.0))
    assert idx == pytest.approx((19.0 / 4.0) / 3.5)  # Poisson: λ·E[r²·h]/r̄² over the mean
    assert idx == pytest.approx(w3)


def test_smoother_arrivals_by_hand():
    # E[r·r'·min(h, h')] = (1·1·2 + 2·(1·3·2) + 3·3·4)/4 = 12.5; c_a² = 1/4
    _, idx, _, _ = ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 0.25, 0.0)
    assert idx == pytest.approx((19.0 - 0.75 * 12.5) / 4.0 / 3.5)


def test_a_steering_router_keeps_the_poisson_independent_holds():
    # a load-aware router's arrivals follow the pool: its steer share of the renewal
    # reduction (c_a² − 1)·E[r·r'·min(h, h')] = −0.75·12.5 is not taken (its smoothing is the
    # steer), so steer 1 gives Poisson's independent holds, 19/4/3.5, whatever c_a² and κ
    poisson = ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 1.0, 0.0)[1]
    assert ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 0.25, 0.3, 1.0)[1] == pytest.approx(poisson)
    half = ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 0.25, 0.0, 0.5)[1]
    assert half == pytest.approx((19.0 - 0.5 * 0.75 * 12.5) / 4.0 / 3.5)


def test_one_deterministic_size_is_the_count_of_an_infinite_server():
    # M/D/∞ (and GI/D/∞ with long holds): N̄ = λh, index c_a²
    for ca2 in (1.0, 0.25):
        mean, idx, w1, w3 = ol.slot_moments([1.0], [7.0], [5.0], 2.0, ca2, 0.0)
        assert (mean, w1, w3) == pytest.approx((10.0, 1.0, 1.0))
        assert idx == pytest.approx(ca2)


def test_feedback_amplifies_and_steering_takes_it_back():
    base = ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 1.0, 0.0)[1]
    assert ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 1.0, 0.5)[1] == pytest.approx(2.0 * base)
    assert ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 1.0, 0.5, 1.0)[1] == pytest.approx(base)
    last = np.inf
    for steer in np.linspace(0.0, 1.0, 11):  # steering never raises the index
        for kappa in (0.0, 0.3, 0.6):
            idx = ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 1.0, kappa, steer)[1]
            assert idx >= base - 1e-12
        idx = ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 1.0, 0.6, steer)[1]
        assert idx <= last + 1e-12
        last = idx


def test_class_holds_average_to_the_mean_hold_and_grow_with_size():
    probs, S_k, c_k = [0.25, 0.75], [0.2, 1.0], [1000.0, 9000.0]
    S = sum(p * x for p, x in zip(probs, S_k))
    c = sum(p * x for p, x in zip(probs, c_k))
    holds = ol.class_holds(5.0, S_k, S, 101.0, 1.5, 1e-6, c_k, c)
    assert sum(p * h for p, h in zip(probs, holds)) == pytest.approx(5.0)
    # by hand: 5 + 1.5·(S_k − S) + 100 steps · 1e-6 s/token · (c_k − c)
    assert holds[0] == pytest.approx(5.0 + 1.5 * (0.2 - 0.8) + 100 * 1e-6 * (1000.0 - 7000.0))
    assert holds[0] < holds[1]


def _marked_infinite_server(lam, probs, sizes, holds, n, rng, shape=1):
    """Time-average mean and variance of Σ r over holds in flight (Erlang-``shape`` renewal
    arrivals: SCV 1/shape; 1 is Poisson)."""
    t = np.cumsum(rng.gamma(shape, 1.0 / (lam * shape), n))
    k = rng.choice(len(probs), n, p=probs)
    r, h = np.asarray(sizes)[k], np.asarray(holds)[k]
    ev = np.concatenate([t, t + h])
    order = np.argsort(ev, kind="stable")
    level = np.cumsum(np.concatenate([r, -r])[order])
    ev = ev[order]
    keep = (ev[:-1] > t[n // 10]) & (ev[:-1] < t[-1] - max(holds))  # steady state only
    dt, x = np.diff(ev)[keep], level[:-1][keep]
    mean = (dt * x).sum() / dt.sum()
    return mean, (dt * (x - mean) ** 2).sum() / dt.sum()


@pytest.mark.parametrize("shape", [1, 4])
def test_littles_law_and_index_against_a_monte_carlo(shape):
    # Erlang-4 (round robin over 4 instances): the (c_a² − 1)·λ·E[r·r'·min(h, h')] term,
    # 2.65 against 3.24 for Poisson (the Monte Carlo 2.63 and 3.26 at seed 3)
    rng = np.random.default_rng(7)
    probs, sizes, holds, lam = [0.7, 0.2, 0.1], [1.0, 4.0, 12.0], [3.0, 5.0, 9.0], 2.0
    mean, var = _marked_infinite_server(lam, probs, sizes, holds, 200_000, rng, shape)
    rb = sum(p * r for p, r in zip(probs, sizes))
    m, idx, _, _ = ol.slot_moments(probs, sizes, holds, lam, 1.0 / shape, 0.0)
    assert mean / rb == pytest.approx(m, rel=0.02)  # Little on tokens: λ·E[r·h]
    assert var / rb ** 2 / (mean / rb) == pytest.approx(idx, rel=0.05)


def test_arrays_match_scalars():
    lam = np.array([0.5, 1.0, 2.0])
    out = ol.slot_moments(PROBS, SIZES, [np.array(HOLDS[0] * lam), HOLDS[1]], lam, 0.5, 0.2)
    for i, x in enumerate(lam):
        one = ol.slot_moments(PROBS, SIZES, [HOLDS[0] * float(x), HOLDS[1]], float(x), 0.5, 0.2)
        assert [v[i] for v in out] == pytest.approx(list(one))


def test_shots_add_the_prefill_delays_by_hand():
    # Δ = (1, 2) s: 2λ²·E[r·Δ·E'[r'·min(h, h')]] + λ³·E[Δ²]·E[r·r'·min(h, h')], λ = 1:
    # E'[r'·min(h, ·)] = (1·2 + 3·2)/2 = 4 at h = 2, (1·2 + 3·4)/2 = 7 at h = 4
    cross = (1.0 * 1.0 * 4.0 + 3.0 * 2.0 * 7.0) / 2.0
    shots = 2.0 * cross + (1.0 + 4.0) / 2.0 * 12.5
    _, idx, _, _ = ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 1.0, 0.0, 0.0, [1.0, 2.0])
    assert idx == pytest.approx((19.0 + shots) / 4.0 / 3.5)
    steered = ol.slot_moments(PROBS, SIZES, HOLDS, 1.0, 1.0, 0.5, 1.0, [1.0, 2.0])[1]
    assert steered == pytest.approx(19.0 / 4.0 / 3.5)  # the router takes all swings back


def _wait(cap, steer=0.0, lam=1.0, z=6.0):
    moments = (8.0, z, 1.2, 3.0)  # occupancy 8 r̄ of index z, w1 1.2, w3 3
    return ol.slot_queue(lam, 7.0, 0.02, 1e-3, 300.0, cap, 2.0 * cap / 36.0, 1.0, 0.3, 1.4,
                         moments, steer)


def test_head_of_line_wait_falls_as_the_pool_grows():
    # (λ_sat grows with the pool: 2/s at 36 r̄; a pool of 7.5 r̄ cannot hold the 8 r̄ offered)
    assert _wait(7.5)[1:] == (1.0, 7.5)
    waits = [_wait(cap)[0] for cap in (24.0, 30.0, 36.0, 48.0, 64.0, 96.0)]
    assert all(a > b for a, b in zip(waits, waits[1:]))  # more capacity, never longer
    assert waits[0] > 0.0 and waits[-1] < 1e-4 * waits[0]  # the Gamma tail: exp(−cap/z)
    assert _wait(36.0, steer=1.0)[0] < _wait(36.0)[0]  # steered arrivals leave a full pool


def test_a_pool_that_cannot_hold_its_tokens_is_unstable():
    # Little on tokens: λ·h̄·w1 = 10.5 r̄ offered to a pool of 10
    wait, p, occupancy = ol.slot_queue(1.9, 7.0, 0.02, 1e-3, 300.0, 10.0, 2.0, 1.0, 0.3, 1.4,
                                       (10.5, 6.0, 1.2, 3.0))
    assert (wait, p, occupancy) == (0.0, 1.0, 10.0)  # reported at the cap: unstable
    # a full pool of the largest requests drains slower than they come (θ < 0) far from
    # saturation: the episode still ends within a hold (θ >= 1/h̄), stable
    wait, p, occupancy = ol.slot_queue(0.5, 7.0, 0.02, 1e-3, 300.0, 36.0, 2.0, 1.0, 0.3, 1.4,
                                       (3.0, 2.0, 1.2, 6.0))
    assert 0.0 <= wait < 1e-3 and p < 1.0 and occupancy == pytest.approx(2.5)
