"""The KV read a request of length classes sees (kvmodel.instance._openloop.seen_context and
the class TPOT of the open loop): hand arithmetic on a two-class toy, the shot covariance
against slot_moments by polarisation, Little's law on tokens, monotonicity in the rate, the
saturation against throughput-max, and the simulator as oracle on a stationary stream."""

import numpy as np
import pytest

import kvmodel
from kvmodel.instance import _openloop as ol
from kvmodel.sim import poisson_requests, simulate

# two classes, equally likely: contexts 1 and 3 tokens held 2 s and 4 s (c̄ = 2, h̄ = 3 s)
PROBS, CTX, HOLDS = [0.5, 0.5], [1.0, 3.0], [2.0, 4.0]


def test_no_shots_weight_the_context_by_the_hold():
    # E[h·c]/E[h] − c̄ = (0.5·2·1 + 0.5·4·3)/3 − 2 = 1/3; no shot, no swing
    weighted, seen = ol.seen_context(PROBS, CTX, HOLDS, 1.0, 0.0, [0.0, 0.0])
    assert weighted == pytest.approx(1.0 / 3.0)
    assert seen == pytest.approx(0.0, abs=1e-15)


def test_a_shot_of_the_long_class_by_hand():
    # shots Δ = (0, 1): M_1 = E'[min(h', h_j)] = (2, 3), M_c = E'[c'·min(h', h_j)] = (4, 7),
    # E[Δ²] = 1/2: Var_s(N) = 2λ²·E[Δ·M_1] + λ³·E[Δ²]·E[M_1] = λ²(3 + 1.25λ),
    # Cov_s(N, K) = λ²·E[Δ(M_c + c·M_1)] + λ³·E[Δ²]·E[M_c] = λ²(8 + 2.75λ);
    # seen = (Cov − c̄·Var)/(λ·h̄) = λ(2 + 0.25λ)/3: 0.75 at λ = 1, 5/3 at λ = 2
    for lam, kappa, want in ((1.0, 0.0, 0.75), (2.0, 0.0, 5.0 / 3.0), (1.0, 0.5, 1.5)):
        _, seen = ol.seen_context(PROBS, CTX, HOLDS, lam, kappa, [0.0, 1.0])
        assert seen == pytest.approx(want)
    # the short class's shot holds back the long one: a request sees less than c̄ per count
    _, seen = ol.seen_context(PROBS, CTX, HOLDS, 1.0, 0.0, [1.0, 0.0])
    assert seen == pytest.approx((5.75 - 2.0 * 3.25) / 3.0)
    assert seen < 0.0


def _slow_var(sizes, shots, lam):
    """The shot part of slot_moments' variance (tokens²): total less the independent holds'."""
    mean, idx, _, _ = ol.slot_moments(PROBS, sizes, HOLDS, lam, 1.0, 0.0, 0.0, shots)
    rb = sum(p * r for p, r in zip(PROBS, sizes))
    ind = lam * sum(p * r * r * h for p, r, h in zip(PROBS, sizes, HOLDS))
    return mean * idx * rb * rb - ind


@pytest.mark.parametrize("shots", [[0.0, 1.0], [0.7, 0.2], [1.5, 0.0]])
def test_the_covariance_is_slot_moments_by_polarisation(shots):
    lam = 1.3
    var_n = _slow_var([1.0, 1.0], shots, lam)
    cov = (_slow_var([1.0 + c for c in CTX], shots, lam) - var_n - _slow_var(CTX, shots, lam)) / 2
    _, seen = ol.seen_context(PROBS, CTX, HOLDS, lam, 0.0, shots)
    assert seen == pytest.approx((cov - 2.0 * var_n) / (lam * 3.0))


def test_the_array_path_is_the_scalar_path():
    lam = np.array([0.5, 1.0, 2.0])
    w, s = ol.seen_context(PROBS, CTX, HOLDS, lam, 0.2, [0.3, 1.0])
    for i, x in enumerate(lam):
        assert (w[i], s[i]) == pytest.approx(ol.seen_context(PROBS, CTX, HOLDS, float(x), 0.2,
                                                             [0.3, 1.0]))


M, G = "llama-3.1-8b", "h100-sxm"
LENS, P_CLS, O = [2000, 8000, 32000], [0.6, 0.3, 0.1], 256
CLS = [(p, 0, "hbm", L) for p, L in zip(P_CLS, LENS)]
I = round(sum(p * L for p, L in zip(P_CLS, LENS)))


def stationary_case(rate):
    return kvmodel.estimate(M, G, input_len=I, output_len=O, prefix_classes=CLS,
                            request_rate=rate)


def test_little_on_the_batch_and_monotone_in_the_rate():
    sat = stationary_case(1.0).saturation_request_rate_per_s
    rates = np.linspace(0.1, 0.85, 12) * sat
    e = stationary_case(rates)
    assert np.all(e.stable)
    # Little: decoders λ(O − 1)·TPOT plus prefilling requests; the batch grows with the rate
    assert np.all(np.asarray(e.batch) >= rates * (O - 1.0) * np.asarray(e.tpot_s) - 1e-9)
    for x in (e.batch, e.tpot_s, e.ttft_s):
        assert np.all(np.diff(np.asarray(x)) > 0.0)


def test_the_stability_edge_is_one_and_never_above_throughput_max():
    # the reported saturation is throughput-max's (no slot limit); the KV pool's own edge,
    # Little on tokens λ·h̄·w1 = bmax, lies below it (0.895 of it here; the simulator serves
    # 0.908 of it from a backlog, 8,000 requests at 1.0 and 1.2x)
    sat = stationary_case(1.0).saturation_request_rate_per_s
    rates = np.linspace(0.5, 1.1, 121) * sat
    stable = np.asarray(stationary_case(rates).stable)
    edge = int(np.argmin(stable))
    assert stable[:edge].all() and not stable[edge:].any()  # one edge: stable below, not above
    assert 0.85 * sat < rates[edge] <= sat


def test_the_simulator_as_oracle_on_a_stationary_stream():
    # lengths i.i.d. from the classes, Poisson arrivals at half the saturation rate: the
    # class KV read takes the closed form's TPOT from −11.5 % to −7.9 % of the simulator's
    # (2 x 3,000 requests, the first 300 of each left out; ~5 s)
    lam = 0.5 * stationary_case(1.0).saturation_request_rate_per_s
    e = stationary_case(lam)
    tpot, hold = [], []
    for seed in (1, 2):
        k = np.random.default_rng(100 + seed).choice(len(LENS), 3000, p=P_CLS)
        r = simulate(M, G, poisson_requests(3000, lam, np.asarray(LENS)[k], O, seed=seed))
        tpot.append(r.tpot_s[300:])
        hold.append((r.e2e_s - r.queue_s)[300:])
    assert float(e.tpot_s) == pytest.approx(np.concatenate(tpot).mean(), rel=0.10)
    # the batch is Little's on the holds (requests admitted until their last token)
    assert float(e.batch) == pytest.approx(lam * np.concatenate(hold).mean(), rel=0.15)
