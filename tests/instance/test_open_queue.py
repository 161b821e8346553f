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


def test_progeny_series_by_hand():
    # H(m) = Σ_j (1 − z_j), z_0 = 0, z_{j+1} = exp(−m(1 − z_j)): 1 at m = 0, between 1 and
    # 1/(1 − m) (each generation at most m times the last), the table within 1e-4 of the sum
    assert ol._progeny(0.0) == 1.0
    for m in (0.3, 0.6, 0.9):
        u, total = 1.0, 0.0
        for _ in range(5000):
            total, u = total + u, -math.expm1(-m * u)
        assert ol._progeny(m) == pytest.approx(total, rel=1e-4)
        assert 1.0 < ol._progeny(m) < 1.0 / (1.0 - m)
    v = ol._progeny(np.array([0.3, 0.9]))
    assert v.tolist() == [ol._progeny(0.3), ol._progeny(0.9)]


def test_step_to_step_busy_share_against_its_chain():
    # prompts of a step ~ Poisson(λ·(t_d + a·N_prev)): λ = 10/s, t_d = 20 ms, a = 80 ms per
    # prompt (m = λ·a = 0.8, mean step t = t_d/(1 − m) = 0.1 s); the chain's empty-step
    # share, counted over 200,000 steps, against f of the closed form
    lam, t_d, a = 10.0, 0.02, 0.08
    f, P = ol._gw_share(lam, 0.1, t_d, 1000.0, 1.0, 1e9)
    rng, N, empty = np.random.default_rng(3), 0, 0
    for _ in range(200_000):
        N = rng.poisson(lam * (t_d + a * N))
        empty += N == 0
    assert 1.0 - f == pytest.approx(empty / 200_000, abs=0.01)
    assert P == pytest.approx(lam * 1000.0 * 0.1 / f)  # conservation
    # far fewer busy steps than independent steps of the mean length would give
    assert f < ol._share(lam, 0.1, 1000.0, 1.0, 1e9)[0] - 0.15  # 0.444 vs 0.632
    # m = 0 (the busy step is no longer than a decode-only one): the independent law
    assert ol._gw_share(lam, 0.1, 0.1, 1000.0, 1.0, 8000.0) == pytest.approx(
        ol._share(lam, 0.1, 1000.0, 1.0, 8000.0))


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


def test_cluster_gain_by_hand():
    # 20 % busy steps of 200 ms beside 10 ms decode-only ones, mean step 48 ms:
    # κ_A = 0.2 x 0.19 / 0.048; a count over many steps has index 1/(1 − κ_A)²
    assert ol.cluster_gain(0.2, 0.2, 0.01, 0.048) == pytest.approx(0.2 * 0.19 / 0.048)
    assert ol.cluster_gain(0.9, 0.2, 0.01, 0.18) == ol.KAPPA_MAX  # capped below 1
    assert ol._cluster_excess(0.5) == pytest.approx(3.0) and ol._cluster_excess(0.0) == 0.0
    assert ol.cluster_gain(np.array([0.0, 0.2]), 0.2, 0.01, 0.048).tolist() == pytest.approx(
        [0.0, 0.2 * 0.19 / 0.048])


def test_fluctuation_cluster_variance_by_hand():
    # the example above with κ_A = 0.5: a cluster variance D x (1/0.5² − 1) = 300 seen with the
    # decode slope T'·(1 − κ_A) (the busy-step amplification is left_behind's)
    var = 100 * 1.2 / 0.81
    t_mean, tpot, v = ol.fluctuation(0.02, 1e-4, 0.0, 100.0, 10.0, 101.0, 1000.0, 0.5)
    assert t_mean == 0.02 and v == pytest.approx(var)  # the slow level: unchanged
    assert tpot == pytest.approx(0.02 + (1e-4 * var + 1e-4 * 0.5 * 300.0) / 100)
    # the batch ceiling bounds both parts together: Var <= (bmax − D)² = 25 < var
    _, tpot, _ = ol.fluctuation(0.02, 1e-4, 0.0, 100.0, 10.0, 101.0, 105.0, 0.5)
    assert tpot == pytest.approx(0.02 + 1e-4 * 25 / 100)


def test_left_behind_by_hand():
    # busy share f = 0.2 of 200 ms steps, decode-only 10 ms, mean step 50 ms: busy time share
    # ρ_b = 0.8; prefill wait 0.5 s, own service 0.4 s, O = 101, κ_A = 0.5.
    # Left behind ρ_b(w + S) = 0.72 s of busy steps, against the step-average backlog
    # w·t/t_busy + ½f·t_busy = 0.125 + 0.02 s: X = 0.575 s, each second (1 − 0.05) of a
    # decode-only second longer, over 100 steps, amplified by 1/(1 − κ_A)
    x = ol.left_behind(0.2, 0.2, 0.01, 0.05, 0.5, 0.4, 101.0, 0.0, 0.5)
    assert x == pytest.approx(0.575 * 0.95 / (100 * 0.5))
    # every prompt gated by the slots: no prefill burst behind it, no amplification
    x1 = ol.left_behind(0.2, 0.2, 0.01, 0.05, 0.5, 0.4, 101.0, 1.0, 0.5)
    assert x1 == pytest.approx((0.8 * 0.4 - 0.02) * 0.95 / 100)
    # no busy steps: nothing left behind; and never negative
    assert ol.left_behind(0.0, 0.2, 0.01, 0.01, 0.5, 0.4, 101.0, 0.0, 0.0) == 0.0
    # a window of O − 1 = 4 steps turns at most its 0.8 x 4 decode-only steps busy; O = 1: none
    assert ol.left_behind(0.2, 0.2, 0.01, 0.05, 0.5, 0.4, 5.0, 0.0, 0.5) == pytest.approx(
        3.2 * 0.19 / 4)
    assert ol.left_behind(0.2, 0.2, 0.01, 0.05, 0.5, 0.4, 1.0, 0.0, 0.5) == 0.0
    # vectorised, and more prefill wait leaves more behind
    xs = ol.left_behind(0.2, 0.2, 0.01, 0.05, np.array([0.0, 0.5, 1.0]), 0.4, 101.0, 0.0, 0.5)
    assert xs[1] == pytest.approx(x) and np.all(np.diff(xs) > 0)


def test_step_spread_residual_and_mates_by_hand():
    # m = 1 − 10/20 = 0.5: Var = λ·t·a²·(ca2 + cs2)/(k(1 − m²)) = 10·0.02·0.01²·1/0.75
    assert ol.step_spread(10.0, 0.02, 0.01, 0.2, 0.01, 1.0, 1.0, 0.0) == pytest.approx(
        2e-5 / 0.75)
    # the budget caps a step's prompt work: never wider than the widest law on [t_decode,
    # t_full], (t_full − t)(t − t_decode), and a cap far above the steps leaves the law as is
    capped = ol.step_spread(1e4, 0.02, 0.01, 0.03, 0.01, 1.0, 1.0, 0.0)
    assert 0.0 < capped <= 1e-4
    assert ol.step_residual(0.02, 0.0) == pytest.approx(0.01)  # fixed steps: half a step
    assert ol.step_residual(0.02, 4e-4) == pytest.approx((4e-4 + 4e-4) / 0.04)
    assert ol.step_mates(10.0, 1000.0, 0.01) == pytest.approx(200.0)  # λ·new·2R


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_capped_variance_matches_quadrature(share):
    # a step's prompt work: 0 with probability 1 − share, else Gamma (conditional mean and
    # variance matching mean 0.05 s, variance 0.003 s²), capped at 0.2 s; integrated numerically
    from scipy import integrate, stats
    mean, var, cap = 0.05, 0.003, 0.2
    cm = mean / share
    cv = (var + mean * mean) / share - cm * cm
    g = stats.gamma(cm * cm / cv, scale=cv / cm)
    m = [integrate.quad(lambda z, j=j: z ** j * g.pdf(z), 0.0, cap)[0] + cap ** j * g.sf(cap)
         for j in (1, 2)]
    want = share * m[1] - (share * m[0]) ** 2
    assert ol._capped_variance(mean, var, cap, share) == pytest.approx(want, rel=1e-6)
    # no cap in reach: the law's own variance; vectorised: element-wise the same numbers
    assert ol._capped_variance(mean, var, 50.0, share) == pytest.approx(var, rel=1e-6)
    xs = ol._capped_variance(np.array([mean, mean]), var, np.array([cap, 50.0]), share)
    assert xs[0] == pytest.approx(want, rel=1e-6) and xs[1] == pytest.approx(var, rel=1e-6)
    # a share too small for the variance (its 0-or-busy law alone is wider): the share whose
    # two-point law has exactly the variance, never more than the uncapped variance
    assert ol._capped_variance(mean, var, 50.0, 0.1) == pytest.approx(var, rel=1e-6)


def test_step_position_law_matches_sampling():
    # steps of 10 ms decode plus, in 10 % of them, Gamma prompt work (mean 0.01 s over all
    # steps, variance 1e-3 s²) capped at 0.15 s; an arrival lands length-biased at a uniform
    # point and Poisson(λ·L) mates of 0.1 s each join its step: p = 2·E[X]²/E[X²] of X, the
    # residual plus the mates' seconds, against half a million sampled arrivals
    rng = np.random.default_rng(5)
    lam, t_d, mean, var, share, cap, a = 2.0, 0.01, 0.01, 1e-3, 0.1, 0.15, 0.1
    cm = mean / share
    cv = (var + mean * mean) / share - cm * cm
    n = 1_000_000
    z = np.where(rng.random(n) < share, rng.gamma(cm * cm / cv, cv / cm, n), 0.0)
    steps = t_d + np.minimum(z, cap)
    L = rng.choice(steps, size=500_000, p=steps / steps.sum())  # length-biased
    X = rng.random(L.size) * L + a * rng.poisson(lam * L)
    want = 2.0 * X.mean() ** 2 / (X * X).mean()
    got = ol.step_position(lam, steps.mean(), t_d, t_d + cap, a,
                           ol._capped_variance(mean, var, cap, share), share, 1.0)
    assert got == pytest.approx(want, rel=0.02) and got < 0.9
    # light load, fixed steps: a uniform residual is narrower than an exponential (p capped)
    assert ol.step_position(1e-9, 0.01, 0.01, 0.1, a, 0.0, 1e-9, 1.0) == 1.0


def test_carry_share_flux_balance_by_hand():
    # 1000-token prompts at 20/s, 0.1 s mean steps (mean 2000 tokens, variance 2000·1000 +
    # 20000²·0.002), budget 4000 at t_full 0.25 s (ρ = 20·1000·0.25/4000 = 1.25 → take 0.8)
    from scipy import stats
    lam, new, t, var, b, tf, rho, W = 20.0, 1000.0, 0.1, 0.002, 4000.0, 0.25, 0.8, 0.3
    w, p_wait, p = ol.overflow_wait(lam, new, t, var, b, tf, 1.0, 0.0, (rho, W, 10.0))
    mu, s2 = lam * new * t, lam * t * new * new + (lam * new) ** 2 * var
    g = stats.gamma(mu * mu / s2, scale=s2 / mu)
    edge = b - new / 2  # whole prompts: half a prompt below the budget
    mass = lam * tf * new * new * g.pdf(edge) / (2.0 * b * (1.0 - rho))
    want = mass / (g.cdf(edge) + mass) * tf / t
    assert p == pytest.approx(want, rel=1e-9) and w == pytest.approx(want * W, rel=1e-9)
    assert p_wait == p  # the per-step reading (the fluid one, W − 10 s, is negative)
    # more budget: fewer carrying steps; a fluid wait above the per-step one takes over with ρ
    assert ol.overflow_wait(lam, new, t, var, 2 * b, tf, 1.0, 0.0, (rho, W, 10.0))[2] < p
    w2, p2, _ = ol.overflow_wait(lam, new, t, var, b, tf, 1.0, 0.0, (rho, W, 0.0))
    assert w2 == W and p2 == rho


def test_prefill_queue_counts_only_the_carry_beyond_the_budget():
    sat = _est("llama-3.1-8b", 1, 1024, 128, 0, batch="max").saturation_request_rate_per_s
    lo = _est("llama-3.1-8b", 1, 1024, 128, 0, request_rate=0.3 * sat)
    hi = _est("llama-3.1-8b", 1, 1024, 128, 0, request_rate=0.95 * sat)
    # a step's prompts rarely exceed its budget at 30 %: no carry (the simulator: 0.0 ms)
    assert lo.stable and lo.queue_wait_s < 1e-3 * lo.ttft_s
    assert hi.stable and hi.queue_wait_s > lo.queue_wait_s
    # burstier arrivals at the same rate: more carry and a longer TTFT
    e2 = _est("llama-3.1-8b", 1, 1024, 128, 0, request_rate=0.95 * sat, arrival_cv=2 ** 0.5)
    assert e2.queue_wait_s > hi.queue_wait_s and e2.ttft_s > hi.ttft_s


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


def _halfin_whitt(beta):
    from scipy import stats
    return 1.0 / (1.0 + beta * stats.norm.cdf(beta) / stats.norm.pdf(beta))


def test_slot_queue_is_halfin_whitt_for_poisson_occupancy():
    # z = 1, κ = 0, hold 1/μ = 2 s, c = 100, λ = 47.5/s: a = 95, β = 5/√95, λ_sat = cμ = 50/s
    c, hold, lam = 100.0, 2.0, 47.5
    w, p, N = ol.slot_queue(lam, hold, 0.0, 0.0, 128.0, c, c / hold, 1.0)
    beta = (c - lam * hold) / math.sqrt(lam * hold)
    assert N == pytest.approx(95.0)
    assert p == pytest.approx(_halfin_whitt(beta), rel=1e-9)
    # a waiting request waits c_a²/(2θ) on average (deterministic holds), θ = λ_sat − λ
    assert w == pytest.approx(p * 1.0 / (2.0 * 2.5), rel=1e-9)
    # and Halfin–Whitt is close to the exact Erlang C here
    from kvmodel.instance._queueing import erlang_c
    assert p == pytest.approx(erlang_c(c, lam * hold), rel=0.1)


def test_slot_queue_dispersion_and_load():
    c, hold, sat = 100.0, 2.0, 50.0
    lam = np.array([30.0, 40.0, 45.0, 48.0, 49.5, 49.95])
    w1, p1, _ = ol.slot_queue(lam, hold, 0.0, 0.0, 101.0, c, sat, 1.0)
    # κ = λ(O − 1)T' = 0.5 and λt = 0.25: z = (1 + 0.25) / 0.5² = 5
    t, T1 = 0.25 / lam, 0.5 / (100.0 * lam)
    w5, p5, _ = ol.slot_queue(lam, hold, t, T1, 101.0, c, sat, 1.0)
    # more load, more waiting; finite below saturation
    assert np.all(np.diff(p1) > 0) and np.all(np.diff(w1) > 0) and np.all(np.isfinite(w5))
    assert np.all(np.diff(p5) > 0) and np.all(np.diff(w5) > 0)
    # where the cap lies well beyond the mean (β = (c − N̄)/√V > 1) a more dispersed occupancy
    # reaches it more often (near the cap a wider law puts less density there)
    assert np.all(p5[:2] > 4 * p1[:2])
    # the wait grows without bound as λ → λ_sat: the queue's drift θ vanishes
    assert w5[-1] > 10.0 * w5[-3]
    # and an array gives each element what it gets alone
    one = ol.slot_queue(float(lam[2]), hold, float(t[2]), float(T1[2]), 101.0, c, sat, 1.0)
    assert one[0] == pytest.approx(w5[2]) and one[1] == pytest.approx(p5[2])
    # deterministic arrivals (c_a² = 0) never wait for a slot
    w0, _, _ = ol.slot_queue(lam, hold, t, T1, 101.0, c, sat, 0.0)
    assert np.all(w0 == 0.0)
    # busy-step clusters (κ_A = 0.5) add 1/(1 − κ_A)² − 1 = 3 to the index, z = 8 against 5:
    # the cap far from the mean is reached more often, and near it less
    w8, p8, _ = ol.slot_queue(lam, hold, t, T1, 101.0, c, sat, 1.0, 0.5)
    assert np.all(p8[:2] > p5[:2]) and p8[-1] < p5[-1] and np.all(np.isfinite(w8))
    assert ol.slot_queue(lam, hold, t, T1, 101.0, c, sat, 1.0, 0.0)[0] == pytest.approx(w5)


def test_sum_wait_law_by_hand():
    from kvmodel.instance._queueing import sum_wait_law
    # one wait zero: the other exactly
    W, p = sum_wait_law(0.02, 0.4, 0.0, 0.0)
    assert W == 0.02 and p == pytest.approx(0.4)
    # X: p 0.5, mean 0.02 (conditional 0.04); Y: p 0.1, mean 0.05 (conditional 0.5):
    # E[W²] = 2·0.02²/0.5 + 2·0.05²/0.1 + 2·0.02·0.05 = 0.0016 + 0.05 + 0.002 = 0.0536
    W, p = sum_wait_law(0.02, 0.5, 0.05, 0.1)
    assert W == pytest.approx(0.07) and p == pytest.approx(2 * 0.07**2 / 0.0536)
    # the law's conditional mean W/p lies between the two conditional waits, near the long one
    assert 0.04 < W / p < 0.5 and W / p > 0.35
    # vectorised as scalars
    Wv, pv = sum_wait_law(np.array([0.02, 0.02]), 0.5, np.array([0.0, 0.05]), 0.1)
    assert Wv.tolist() == pytest.approx([0.02, 0.07]) and pv[1] == pytest.approx(p)


def test_slot_bound_wait_tracks_the_simulator():
    # 8B, 2048/256 on one H100 at 95 % of saturation: the batch is capped by 197 KV slots and
    # the simulator's requests wait for one. Allen–Cunneen over Poisson occupancy gave mean
    # TTFT −52 % and p99 −78 % here; pooled over three 8,000-request runs the occupancy
    # diffusion is within the issue's bars (seed groups 11-13 / 21-23 / 31-33 gave
    # 0.98 / 1.08 / 0.81 on the mean and 0.77 / 1.28 / 1.01 on p99)
    from kvmodel.sim import poisson_requests, simulate
    sat = _est("llama-3.1-8b", 1, 2048, 256, 0, batch="max").saturation_request_rate_per_s
    e = _est("llama-3.1-8b", 1, 2048, 256, 0, request_rate=0.95 * sat)
    runs = [simulate("llama-3.1-8b", G, poisson_requests(8000, 0.95 * sat, 2048, 256, seed=k))
            for k in (11, 12, 13)]
    ttft = np.concatenate([r.ttft_s[500:] for r in runs])
    assert e.ttft_s == pytest.approx(ttft.mean(), rel=0.2)
    assert e.ttft_p99_s == pytest.approx(np.quantile(ttft, 0.99), rel=0.35)


@pytest.mark.slow
@pytest.mark.parametrize("I", [12288, 20480])
def test_long_prompts_meet_the_issue_bars(I):
    """8B prompts over two and three chunked-prefill steps, 30-90 % of saturation: mean TTFT
    within 20 %, p99 35 %, mean TPOT 15 % of the simulator. The TPOT was 11-35 % low here
    (decoders see the busy steps of the prompts queued behind them, ``ol.left_behind``, and
    the busy steps' clusters, ``ol.cluster_gain``)."""
    from kvmodel.sim import poisson_requests, simulate
    sat = _est("llama-3.1-8b", 1, I, 128, 0, batch="max").saturation_request_rate_per_s
    for u in (0.3, 0.5, 0.7, 0.85, 0.9):
        e = _est("llama-3.1-8b", 1, I, 128, 0, request_rate=u * sat)
        r = simulate("llama-3.1-8b", G, poisson_requests(3000, u * sat, I, 128, seed=1))
        assert e.ttft_s == pytest.approx(r.stat("ttft", "mean"), rel=0.20), u
        assert e.ttft_p99_s == pytest.approx(r.stat("ttft", "p99"), rel=0.35), u
        assert e.tpot_s == pytest.approx(r.stat("tpot", "mean"), rel=0.15), u
