"""Closed-form queueing: golden values, identities, open-loop estimates."""

import math

import numpy as np
import pytest

import kvmodel
from kvmodel.instance._queueing import (
    allen_cunneen_wait,
    erlang_c,
    kingman_wait,
    mg1_wait,
    wait_quantile,
)


def test_mm1_golden():
    # M/M/1, lambda = 0.8, mu = 1: Wq = rho/(mu - lambda) = 0.8/0.2 = 4
    assert kingman_wait(0.8, 1.0, 1.0, 1.0) == pytest.approx(4.0)
    assert mg1_wait(0.8, 1.0, 2.0) == pytest.approx(4.0)  # E[S^2] = 2/mu^2 for exponential
    # waiting-time quantile: P(Wq > x) = rho exp(-(mu - lambda) x)
    x90 = math.log(0.8 / 0.1) / 0.2
    assert wait_quantile(4.0, 0.8, 0.9) == pytest.approx(x90)
    assert wait_quantile(4.0, 0.8, 0.1) == 0.0


def test_md1_golden():
    # M/D/1, rho = 0.5, S = 1: Wq = rho S / (2 (1 - rho)) = 0.5
    assert kingman_wait(0.5, 1.0, 0.0, 1.0) == pytest.approx(0.5)
    assert mg1_wait(0.5, 1.0, 1.0) == pytest.approx(0.5)


def test_erlang_c_golden_and_oracle():
    # M/M/2 with a = 1 (rho = 0.5): C = 1/3 by hand
    assert erlang_c(2, 1.0) == pytest.approx(1.0 / 3.0)
    # oracle: direct sum formula for several (c, a)
    for c, a in [(1, 0.7), (5, 3.2), (40, 35.0), (2048, 2000.0)]:
        terms = [a**k / math.factorial(k) for k in range(c)] if c < 150 else None
        if terms is None:  # log-space sum for large c
            logt = [k * math.log(a) - math.lgamma(k + 1) for k in range(c)]
            m = max(logt)
            s = sum(math.exp(t - m) for t in logt)
            top = math.exp(c * math.log(a) - math.lgamma(c + 1) - m) * c / (c - a)
        else:
            s = sum(terms)
            top = a**c / math.factorial(c) * c / (c - a)
        assert erlang_c(c, a) == pytest.approx(top / (s + top), rel=1e-9)
    # M/M/1 special case: C = rho
    assert erlang_c(1, 0.6) == pytest.approx(0.6)


def test_allen_cunneen_reduces_to_mmc():
    c, a, mu = 4, 3.0, 2.0
    assert allen_cunneen_wait(c, a, mu, 1.0, 1.0) == pytest.approx(erlang_c(c, a) / (c * mu - a * mu))


def test_mg1_against_simulation_oracle():
    # M/G/1 with uniform(0, 2) service (E[S]=1, E[S^2]=4/3), lambda = 0.6: Lindley recursion
    rng = np.random.default_rng(0)
    n = 400_000
    a = rng.exponential(1 / 0.6, n)
    s = rng.uniform(0, 2, n)
    w = np.zeros(n)
    for i in range(1, n):
        w[i] = max(0.0, w[i - 1] + s[i - 1] - a[i])
    assert w[1000:].mean() == pytest.approx(mg1_wait(0.6, 1.0, 4 / 3), rel=0.05)


KW = dict(model="llama-3.1-70b", gpu="h100-sxm", tp=4, precision="bf16", input_len=467,
          output_len=256)


def test_open_loop_littles_law_and_throughput():
    lam = np.array([0.5, 2.0, 6.0])
    e = kvmodel.estimate(**KW, request_rate=lam)
    assert e.stable.all()
    assert e.output_tok_per_s == pytest.approx(lam * 256)
    # decoding sequences = lambda (O-1) TPOT: Little's law on the decode stage
    assert np.all(e.batch >= lam * 255 * e.tpot_s * (1 - 1e-9))


def test_open_loop_monotone_and_percentiles_ordered():
    lam = np.linspace(0.2, 10, 12)
    e = kvmodel.estimate(**KW, request_rate=lam)
    assert np.all(np.diff(e.ttft_s) > 0) and np.all(np.diff(e.tpot_s) > 0)
    for m in ("ttft", "tpot", "e2e"):
        p50, p90, p99 = (getattr(e, f"{m}_p{q}_s") for q in (50, 90, 99))
        assert np.all(p50 <= p90) and np.all(p90 <= p99)
    # burstier arrivals wait longer
    bursty = kvmodel.estimate(**KW, request_rate=lam, arrival_cv=3.0)
    assert np.all(bursty.ttft_s >= e.ttft_s)


def test_saturation_is_unstable_never_nan():
    e = kvmodel.estimate(**KW, request_rate=np.array([1.0, 1e3]))
    sat = e.saturation_request_rate_per_s[0]
    assert 1.0 < sat < 1e3
    assert e.stable.tolist() == [True, False]
    assert np.isinf(e.ttft_s[1]) and np.isinf(e.ttft_p99_s[1])
    assert e.output_tok_per_s[1] == pytest.approx(sat * 256)
    for f in ("ttft_s", "tpot_s", "e2e_s", "output_tok_per_s", "ttft_p90_s"):
        assert not np.isnan(getattr(e, f)).any()
    m = kvmodel.estimate(**KW, batch="max")
    assert m.saturation_request_rate_per_s == pytest.approx(m.output_tok_per_s / 256)


def test_every_mode_reports_stability_and_percentiles():
    for mode in (dict(batch=4), dict(batch="max"), dict(concurrency=8), dict(request_rate=1.0)):
        e = kvmodel.estimate(**KW, **mode)
        assert e.stable is True or bool(e.stable)
        assert e.saturation_request_rate_per_s > 0
        assert e.ttft_p50_s <= e.ttft_p99_s and e.e2e_p50_s <= e.e2e_p99_s


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_bad_request_rate(bad):
    with pytest.raises(ValueError, match="request_rate"):
        kvmodel.estimate(**KW, request_rate=bad)


def test_rate_and_batch_exclusive():
    with pytest.raises(ValueError, match="one of batch, concurrency or request_rate"):
        kvmodel.estimate(**KW, request_rate=1.0, concurrency=3)


def test_variable_lengths_wait_longer():
    lam = np.array([2.0, 6.0, 10.0])
    fixed = kvmodel.estimate(**KW, request_rate=lam)
    varied = kvmodel.estimate(**KW, request_rate=lam, length_cv=1.0)
    assert np.all(varied.ttft_s > fixed.ttft_s)
    # the decode steps are the same; only the prefill queued behind a decoding request moves
    # (kvmodel.instance._openloop.left_behind): 0.01 % here
    assert varied.tpot_s == pytest.approx(fixed.tpot_s, rel=1e-3)


def test_length_cv_against_simulator():
    """M/G/1-style variability: the simulator with exponential-ish prompt lengths waits longer
    than with fixed ones, and the closed form moves the same way."""
    from kvmodel.sim import poisson_requests, simulate
    rng = np.random.default_rng(0)
    I = np.clip(rng.exponential(467, 3000).round(), 16, 4000).astype(int)
    cv = float(I.std() / I.mean())
    base = dict(KW, input_len=int(I.mean()))
    sat = kvmodel.estimate(**base, batch="max").saturation_request_rate_per_s
    lam = 0.5 * sat
    e0 = kvmodel.estimate(**base, request_rate=lam)
    e1 = kvmodel.estimate(**base, request_rate=lam, length_cv=cv)
    kw = {k: v for k, v in KW.items() if k in ("tp", "precision")}
    s0 = simulate(KW["model"], KW["gpu"], poisson_requests(3000, lam, int(I.mean()), 256, seed=2), **kw)
    s1 = simulate(KW["model"], KW["gpu"], poisson_requests(3000, lam, I, 256, seed=2), **kw)
    assert e1.ttft_s > e0.ttft_s and s1.ttft_mean_s > s0.ttft_mean_s


def test_sum_wait_law_has_no_invalid_operation():
    """Zero, infinite (unstable) and mixed waits, scalar and array: no RuntimeWarning, a
    finite p in (0, 1], and an infinite wait makes the sum infinite for every arrival."""
    import warnings

    from kvmodel.instance._queueing import sum_wait_law
    cases = [(0.0, 0.0, 0.0, 0.0), (0.0, 0.3, 0.0, 0.7), (0.0, 0.0, math.inf, 0.4),
             (0.5, 0.98, math.inf, np.float64(0.38)), (math.inf, 0.2, math.inf, 0.9),
             (0.2, 0.5, 0.0, 0.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scalar = [sum_wait_law(*c) for c in cases]
        W, p = sum_wait_law(*(np.array(col, dtype=float) for col in zip(*cases)))
    assert np.array_equal(W, [s[0] for s in scalar]) and np.array_equal(p, [s[1] for s in scalar])
    assert scalar[0] == (0.0, 0.0) and scalar[1] == (0.0, 0.7)  # no wait: p is the larger input
    for k in (2, 3, 4):
        assert scalar[k] == (math.inf, 1.0)
        assert wait_quantile(*scalar[k], 0.5) == math.inf
    assert scalar[5] == (0.2, 0.5)  # one wait zero: the other exactly
    # the law itself: 2W²/E[W²] with E[W²] = 2w1²/p1 + 2w2²/p2 + 2w1w2
    W, p = sum_wait_law(0.3, 0.6, 0.1, 0.2)
    assert W == pytest.approx(0.4) and p == pytest.approx(0.32 / (0.3 + 0.1 + 0.06))
