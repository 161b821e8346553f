"""Per-request TPOT over the output-length law (kvmodel/instance/_tpot_law.py): the mixture's
quantiles against a scipy oracle (the tabulated spread within 5e-4 of brentq's), the
identity at one output length, monotonicity, the quadrature of a trace's output lengths,
the validation, and the wiring into estimate and the cluster (no law: the numbers of
before, bit for bit)."""

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

import kvmodel
from kvmodel.instance._tpot_law import node_sd, output_law, steps_factor, tpot_quantiles

QS = (0.5, 0.9, 0.99)


def _oracle(mean, step_var, slow_var, p, lengths, q, m=0.0):
    n = np.asarray(lengths, float) - 1.0
    k = np.arange(1, int(n.max()))
    rho = [1.0 + 2.0 * np.sum((1.0 - k[k < j] / j) * m ** k[k < j]) for j in n]  # by the sum
    sd = np.sqrt(step_var * np.asarray(rho) / n + slow_var)
    return brentq(lambda x: np.sum(p * norm.sf(x, mean, sd)) - (1.0 - q), mean, mean + 50 * sd.max(),
                  xtol=1e-14)


def test_two_output_lengths_match_brentq_on_the_mixed_normal_cdf():
    """Hand toy: 15 % of requests with 3 output tokens (2 steps), 85 % with 401 (400 steps);
    a step's variance 0.005 s² (sd 70.7 ms), slow variance 4e-6 s²."""
    law = (np.array([0.15, 0.85]), np.array([3.0, 401.0]))
    got = tpot_quantiles(0.04, 0.005, 4e-6, law, QS)
    assert got[0] == pytest.approx(0.04, abs=1e-12)   # a common mean: the median
    for q, g in zip(QS[1:], got[1:]):
        assert g - 0.04 == pytest.approx(_oracle(0.04, 0.005, 4e-6, *law, q) - 0.04, rel=5e-4)
    # by hand: the short requests' sd sqrt(0.0025 + 4e-6) = 50.04 ms dominates the 1 % tail
    # (alone they put 0.15·Φc(y/50 ms) = 0.01 at y = 75.1 ms)
    assert 0.04 + 0.070 < got[2] < 0.04 + 0.0752


def test_arrays_match_the_oracle_element_by_element():
    law = (np.array([0.1, 0.3, 0.6]), np.array([2.0, 20.0, 600.0]))
    mean = np.array([0.02, 0.05, 0.03])
    step = np.array([1e-3, 4e-3, 2e-4])
    slow = np.array([1e-6, 0.0, 9e-6])
    got = tpot_quantiles(mean, step, slow, law, QS)
    for q, g in zip(QS, got):
        assert g.shape == (3,)
        for i in range(3):
            want = _oracle(mean[i], step[i], slow[i], *law, q)
            assert g[i] - mean[i] == pytest.approx(want - mean[i], rel=5e-4, abs=1e-15)


def test_steps_factor_is_the_ar1_sum():
    for n in (1, 2, 7, 300):
        for m in (0.0, 0.3, 0.9):
            k = np.arange(1, n)
            want = 1.0 + 2.0 * np.sum((1.0 - k / n) * m ** k)
            assert steps_factor(n, m) == pytest.approx(want, rel=1e-12)
    assert steps_factor(1e9, 0.5) == pytest.approx(3.0, rel=1e-6)     # (1 + m)/(1 − m)


@pytest.mark.parametrize("m", [0.2, 0.58, 0.95])
def test_correlated_steps_match_brentq(m):
    """Steps with lag-one correlation m (the step law's AR(1)): a hand two-length toy."""
    law = (np.array([0.15, 0.85]), np.array([3.0, 401.0]))
    got = tpot_quantiles(0.04, 0.003, 2.5e-6, law, QS, m)
    for q, g in zip(QS, got):
        want = _oracle(0.04, 0.003, 2.5e-6, *law, q, m)
        assert g - 0.04 == pytest.approx(want - 0.04, rel=1e-3, abs=1e-15)
    arr = tpot_quantiles(np.array([0.04, 0.04]), np.array([0.003, 0.003]), 2.5e-6, law, QS,
                         np.array([m, 0.0]))
    assert arr[2][0] == pytest.approx(got[2], rel=1e-12)
    assert arr[2][1] < got[2]                                # correlation widens the spread


def test_one_output_length_is_the_plain_normal():
    law = (np.array([1.0]), np.array([343.0]))
    got = tpot_quantiles(0.04, 0.0049, 2.5e-6, law, QS)
    sd = (0.0049 / 342.0 + 2.5e-6) ** 0.5
    for q, g in zip(QS, got):
        assert g == pytest.approx(0.04 + norm.ppf(q) * sd, rel=1e-12)


def test_the_tail_rises_with_the_short_outputs_share_and_the_step_variance():
    p99 = lambda p, v: tpot_quantiles(0.04, v, 1e-6, (np.array([p, 1 - p]),  # noqa: E731
                                                      np.array([5.0, 500.0])), (0.99,))[0]
    shares = [p99(p, 0.004) for p in (0.0, 0.01, 0.05, 0.15, 0.5)]
    assert all(a < b for a, b in zip(shares, shares[1:]))
    variances = [p99(0.15, v) for v in (1e-4, 1e-3, 4e-3, 1e-2)]
    assert all(a < b for a, b in zip(variances, variances[1:]))


def test_the_quadrature_keeps_the_share_and_the_mean_inverse_steps():
    rng = np.random.default_rng(0)
    lengths = np.concatenate([np.ones(30), rng.integers(2, 2000, 5000)])
    p, nodes = output_law(lengths)
    steps = lengths[lengths >= 2] - 1.0
    assert p.sum() == pytest.approx(1.0, abs=1e-12) and nodes.min() >= 2.0
    assert np.sum(p / (nodes - 1.0)) == pytest.approx(np.mean(1.0 / steps), rel=1e-12)
    assert len(p) <= 25                                  # a small fixed quadrature
    assert output_law(np.ones(5)) is None                # no request has a TPOT
    p1, n1 = output_law(np.full(10, 128))
    assert p1.tolist() == [1.0] and n1[0] == pytest.approx(128.0, rel=1e-12)


def test_the_quadrature_is_close_to_the_exact_mixture_on_the_mooncake_trace():
    """The √2 bands against every distinct output length of the trace: p99 within 1 %."""
    lengths = kvmodel.load_trace("mooncake-conversation").output_len
    vals, cnt = np.unique(lengths[lengths >= 2], return_counts=True)
    exact = (cnt / cnt.sum(), vals.astype(float))
    got = tpot_quantiles(0.04, 0.0049, 2.5e-6, output_law(lengths), (0.99,))[0]
    want = _oracle(0.04, 0.0049, 2.5e-6, *exact, 0.99)
    assert got == pytest.approx(want, rel=0.01)


def test_scalars_and_arrays_agree_and_the_table_spans_every_slow_share():
    law = (np.array([0.05, 0.25, 0.7]), np.array([4.0, 60.0, 900.0]))
    for slow in (0.0, 1e-12, 1e-6, 1e-3, 1.0):
        one = tpot_quantiles(0.03, 2e-3, slow, law, QS)
        arr = tpot_quantiles(np.array([0.03]), np.array([2e-3]), np.array([slow]), law, QS)
        assert all(isinstance(v, float) for v in one)
        assert [a[0] for a in arr] == pytest.approx(one, rel=1e-12)
        for q, g in zip(QS, one):
            assert g - 0.03 == pytest.approx(_oracle(0.03, 2e-3, slow, *law, q) - 0.03,
                                             rel=5e-4, abs=1e-15)


def test_unstable_elements_stay_infinite_without_warnings():
    law = (np.array([0.5, 0.5]), np.array([3.0, 300.0]))
    with np.errstate(all="raise"):
        got = tpot_quantiles(np.array([np.inf, 0.03]), np.array([np.inf, 1e-3]), 0.0, law, QS)
    assert np.isinf(got[2][0]) and np.isfinite(got[2][1])
    assert np.isinf(tpot_quantiles(np.inf, np.inf, 0.0, law, QS)[2])


def test_node_sd_shape():
    law = (np.array([0.5, 0.5]), np.array([2.0, 11.0]))
    sd = node_sd(np.array([[1e-2], [4e-2]]), 0.0, law)
    assert sd.shape == (2, 1, 2) and sd[1, 0, 1] == pytest.approx(0.2 / 10 ** 0.5)


@pytest.mark.parametrize("law, field", [
    (([0.5, 0.6], [2, 3]), "sum to 1"),
    (([1.0], [1.0]), ">= 2"),
    (([0.5, 0.5], [2.0]), "1-D"),
    ((np.ones((1, 1)), np.full((1, 1), 4.0)), "1-D"),
    (([-0.5, 1.5], [2, 3]), ">= 0"),
    ("abc", "output_law"),
])
def test_bad_laws_are_named(law, field):
    with pytest.raises(ValueError, match="output_law") as e:
        kvmodel.estimate("llama-3.1-8b", "h100-sxm", input_len=1024, output_len=128,
                         request_rate=2.0, output_law=law)
    assert field in str(e.value)


def _est(**kw):
    return kvmodel.estimate("llama-3.1-8b", "h100-sxm", input_len=2048, output_len=256,
                            request_rate=8.0, **kw)


def test_estimate_without_a_law_or_at_its_own_length_is_unchanged():
    plain = _est()
    same = _est(output_law=([1.0], [256.0]))
    for k in ("tpot_s", "ttft_p99_s", "e2e_p99_s"):
        assert getattr(same, k) == getattr(plain, k)
    for k in ("tpot_p50_s", "tpot_p90_s", "tpot_p99_s"):
        assert getattr(same, k) == pytest.approx(getattr(plain, k), rel=1e-12)


def test_estimate_with_short_outputs_has_a_longer_tpot_tail_and_the_same_means():
    plain = _est()
    mixed = _est(output_law=([0.15, 0.85], [10.0, 300.0]))
    assert mixed.tpot_s == plain.tpot_s and mixed.ttft_p99_s == plain.ttft_p99_s
    assert mixed.e2e_p99_s == plain.e2e_p99_s             # E2E keeps the mean length's law
    assert mixed.tpot_p99_s > plain.tpot_p99_s * 1.05
    arr = kvmodel.estimate("llama-3.1-8b", "h100-sxm", input_len=np.array([2048, 2048]),
                           output_len=256, request_rate=8.0, output_law=([0.15, 0.85], [10.0, 300.0]))
    assert arr.tpot_p99_s[0] == pytest.approx(mixed.tpot_p99_s, rel=1e-12)


def test_the_cluster_passes_its_traces_law():
    tr = kvmodel.load_trace("mooncake-conversation")
    w = kvmodel.Workload(tr, request_rate=8.0)
    p, nodes = w.output_law
    assert np.sum(p[nodes <= 51.0]) == pytest.approx(np.mean(tr.output_len[tr.output_len >= 2]
                                                               <= 51), abs=0.03)
    c = kvmodel.Cluster("llama-3.1-8b", "h100-sxm", instances=2)
    e = kvmodel.evaluate(c, w)
    assert np.isfinite(e.tpot_p99_s) and e.tpot_p99_s > e.tpot_s
    assert w.with_rate(9.0).__dict__["_output_law"] is w.output_law   # kept by with_rate
