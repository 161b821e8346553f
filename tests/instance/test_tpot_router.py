"""Router-dependent TPOT spread (kvmodel/instance/_tpot_law.py ``pulse_excess``,
``router_terms``, ``estimate(work_smoothing=)``, kvmodel/cluster's ``_work_smoothing``): golden
toy values counted by hand, monotonicity (burstier prompt work never lowers p99 TPOT), the
reductions (no burst, one chunk or one instance: the law of before, bit for bit), the
validation, and a small simulator oracle (round robin on 8 x 70B TP8, ~6 s)."""

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

import kvmodel
from kvmodel.instance._tpot_law import pulse_excess, request_var, router_terms, tpot_quantiles

QS = (0.5, 0.9, 0.99)


@pytest.mark.parametrize("n, k, want", [
    # a 2-step pulse over a 2-step window: overlaps 1, 2, 1 over its start steps -> 6 vs 2 x 2
    (2, 2, 6.0 / 4.0 - 1.0),
    # 2-step pulse, 3-step window: overlaps 1, 2, 2, 1 -> 10 vs 6
    (3, 2, 10.0 / 6.0 - 1.0),
    (2, 3, 10.0 / 6.0 - 1.0),  # symmetric in n and k
    # 3-step pulse, 3-step window: 1, 2, 3, 2, 1 -> 19 vs 9
    (3, 3, 19.0 / 9.0 - 1.0),
    (1, 5, 0.0),  # one step sees one chunk of any prompt: no excess
    (40, 1, 0.0),  # one chunk per prompt: the independent chunks of the step law
])
def test_pulse_excess_golden_toys(n, k, want):
    assert pulse_excess(n, k) == pytest.approx(want, rel=1e-12)


def test_pulse_excess_tends_to_k_minus_one_and_rises_with_the_window():
    assert pulse_excess(1e7, 3.0) == pytest.approx(2.0, rel=1e-6)
    n = np.arange(1, 200)
    e = pulse_excess(n, 4.0)
    assert np.all(np.diff(e) >= -1e-15) and e[0] == 0.0


def test_request_var_golden():
    """n = 2 steps, independent (m = 0), k = 2 chunks: Var = v/2·(1 + 1/2) + slow."""
    assert request_var(0.004, 1e-6, 3.0, 0.0, 1.0, 2.0) == pytest.approx(0.003 + 1e-6)
    assert request_var(0.004, 1e-6, 3.0, 0.0, 0.0, 2.0) == request_var(0.004, 1e-6, 3.0)


def _oracle(mean, var, p, q):
    sd = np.sqrt(var)
    return brentq(lambda x: np.sum(p * norm.sf(x, mean, sd)) - (1.0 - q), mean,
                  mean + 50 * sd.max(), xtol=1e-14)


def test_pulsed_quantiles_match_brentq():
    law = (np.array([0.1, 0.3, 0.6]), np.array([3.0, 41.0, 401.0]))
    mean, sv, slow, m, burst, k = 0.03, 0.002, 3e-6, 0.4, 1.0, 2.5
    got = tpot_quantiles(mean, sv, slow, law, QS, m, (burst, k))
    var = request_var(sv, slow, law[1], m, burst, k)
    for q, g in zip(QS, got):
        assert g == pytest.approx(_oracle(mean, var, law[0], q), rel=1e-9)


def test_burstier_work_never_lowers_the_tail():
    law = (np.array([0.05, 0.15, 0.8]), np.array([3.0, 20.0, 400.0]))
    args = (0.03, 0.002, 1e-6, law, QS, 0.3)
    p99 = [tpot_quantiles(*args, (b, k))[2] for b in (0.0, 0.25, 0.5, 1.0) for k in (2.0, 4.0)]
    base = tpot_quantiles(*args)[2]
    assert p99[0] == base  # burst 0: the tabulated law, bit for bit
    assert all(p >= base - 1e-12 for p in p99)
    assert np.all(np.diff([tpot_quantiles(*args, (b, 3.0))[2] for b in (0.1, 0.5, 1.0)]) > 0)
    assert np.all(np.diff([tpot_quantiles(*args, (1.0, k))[2] for k in (1.5, 3.0, 6.0)]) > 0)


def test_arrays_and_scalars_agree():
    law = (np.array([0.2, 0.8]), np.array([3.0, 300.0]))
    sv = np.array([0.001, 0.002, np.inf])
    arr = tpot_quantiles(np.array([0.02, 0.03, np.inf]), sv, 0.0, law, QS, 0.2, (1.0, 2.0))
    for i in range(2):
        one = tpot_quantiles([0.02, 0.03][i], float(sv[i]), 0.0, law, QS, 0.2, (1.0, 2.0))
        assert [a[i] for a in arr] == pytest.approx(one, rel=1e-12)
    assert all(np.isinf(a[2]) for a in arr)


def _est(**kw):
    tr = kvmodel.load_trace("mooncake-conversation").window(0, 2000)
    from kvmodel.instance._tpot_law import output_law
    return kvmodel.estimate("llama-3.1-70b", "h100-sxm", tp=8, precision="fp8", input_len=8192,
                            output_len=300, request_rate=0.9, output_law=output_law(
                                tr.output_len), **kw)


def test_router_terms():
    assert router_terms(None) == (0.0, 1.0)  # a lone instance: the law as calibrated
    assert router_terms(0.0) == (1.0, 1.0) and router_terms(1.0) == (0.0, 0.0)
    assert router_terms(0.25) == (0.75, 0.75)


def test_estimate_without_a_router_is_the_law_of_before():
    e0 = _est()
    assert _est(work_smoothing=None).tpot_p99_s == e0.tpot_p99_s
    # unsteered prompts: the mean keeps its left-behind prefill, the tail widens (pulses)
    rr = _est(work_smoothing=0.0)
    assert rr.tpot_s == e0.tpot_s and rr.ttft_p99_s == e0.ttft_p99_s
    assert rr.tpot_p99_s > e0.tpot_p99_s


def test_more_smoothing_never_raises_tpot():
    es = [_est(work_smoothing=s) for s in (0.0, 0.5, 1.0)]
    for a, b in zip(es, es[1:]):
        assert b.tpot_s <= a.tpot_s and b.tpot_p99_s <= a.tpot_p99_s
    assert es[2].tpot_s < es[0].tpot_s  # no prefill left behind a request's first token
    assert all(e.ttft_p99_s == es[0].ttft_p99_s for e in es)  # TTFT untouched


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_work_smoothing_is_named(bad):
    with pytest.raises(ValueError, match="work_smoothing"):
        _est(work_smoothing=bad)


def test_the_cluster_takes_the_smoothing_from_the_rule():
    from kvmodel.cluster import _work_smoothing
    got = [_work_smoothing(kvmodel.Cluster("llama-3.1-8b", "h100-sxm", instances=4, routing=r), 4)
           for r in ("round_robin", "random", "least_loaded", "sglang", "dynamo")]
    assert got == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert _work_smoothing(kvmodel.Cluster("llama-3.1-8b", "h100-sxm", instances=1), 1) is None


def test_one_instance_is_the_plain_instance_law_and_two_take_the_pulses(monkeypatch):
    import kvmodel.cluster as cl
    w = kvmodel.Workload(kvmodel.load_trace("mooncake-conversation").window(0, 1000))

    def p99(n, patched):
        if patched:
            monkeypatch.setattr(cl, "_work_smoothing", lambda c, n: None)
        c = kvmodel.Cluster("llama-3.1-8b", "h100-sxm", instances=n, routing="round_robin")
        out = kvmodel.evaluate(c, w.with_rate(0.5 * n)).tpot_p99_s
        monkeypatch.undo()
        return out
    assert p99(1, False) == p99(1, True)  # one instance: no router, the calibrated law
    assert p99(2, False) > p99(2, True)  # round robin's unsmoothed prompts widen the tail


@pytest.mark.parametrize("lam, tau, ca2, want", [
    (1.0, 2.0, 1.0, 1.0),  # Poisson: λτ arrivals after an arrival
    (1.0, 2.0, 0.0, 0.75),  # a clock: λτ − 1/2 = 1.5 of 2
    (1.0, 0.25, 1.0 / 32.0, 1.0 / 32.0),  # shorter than Erlang-32's gaps: the floor c_a²
    (2.0, 5.0, 0.5, 1.0 - 0.5 / 20.0),  # the renewal asymptote λτ + (c_a² − 1)/2
])
def test_renewal_share_golden(lam, tau, ca2, want):
    from kvmodel.instance._openloop import renewal_share
    r, M = renewal_share(lam, tau, ca2)
    assert r == pytest.approx(want, rel=1e-12) and M == pytest.approx(lam * tau * want)


def test_behind_nodes_match_the_integrals():
    """B̄ = 1 busy step, M = ln 2 prompts: B = 0 w.p. 1/2, else exponential of mean 2; the
    moments of min(B, n) by quadrature."""
    from scipy.integrate import quad

    from kvmodel.instance._tpot_law import behind_nodes
    h, O = 0.26, np.array([2.0, 4.0, 30.0])
    shift, var = behind_nodes((1.0, np.log(2.0), h, 1e9), O)
    for j, n in enumerate(O - 1.0):
        e1 = 0.5 * quad(lambda x: min(x, n) * np.exp(-x / 2.0) / 2.0, 0, np.inf)[0]
        e2 = 0.5 * quad(lambda x: min(x, n) ** 2 * np.exp(-x / 2.0) / 2.0, 0, np.inf)[0]
        assert shift[j] == pytest.approx(h * e1 / n - h * 1.0 / (1e9 - 1.0), rel=1e-7)
        assert var[j] == pytest.approx(h * h * (e2 - e1 * e1) / n ** 2, rel=1e-7)
    assert np.all(np.diff(shift) < 0) and np.all(np.diff(var) < 0)  # long requests average it


def test_shifted_nodes_match_brentq():
    from kvmodel.instance._tpot_law import behind_nodes
    law = (np.array([0.05, 0.25, 0.7]), np.array([3.0, 30.0, 400.0]))
    lb = (0.4, 0.3, 0.25, 343.0)
    mean, sv, slow, m, k = 0.022, 0.0012, 1e-6, 0.37, 1.7
    got = tpot_quantiles(mean, sv, slow, law, QS, m, (1.0, k, lb))
    shift, extra = behind_nodes(lb, law[1])
    sd = np.sqrt(request_var(sv, slow, law[1], m, 1.0, k) + extra)
    for q, g in zip(QS, got):
        want = brentq(lambda x: np.sum(law[0] * norm.sf(x, mean + shift, sd)) - (1.0 - q),
                      0.0, 10.0, xtol=1e-14)
        assert g == pytest.approx(want, rel=1e-9)
    # more prefill behind a first token never lowers the tail
    more = tpot_quantiles(mean, sv, slow, law, QS, m, (1.0, k, (0.8, 0.6, 0.25, 343.0)))
    assert more[2] > got[2]


def test_one_chunk_prompts_keep_the_left_behind_prefill():
    """A one-chunk prompt has no pulse, but prefill left behind a first token still shifts
    short requests' TPOT: the quantiles are continuous at a mean chunk count of 1 (the last
    bit of a chunk count summed from hit classes decided the path on some CPUs), the scalar
    call equals the array one, and the left-behind law raises the tail."""
    law = (np.array([0.05, 0.25, 0.7]), np.array([3.0, 30.0, 400.0]))
    lb = (0.4, 0.3, 0.25, 343.0)
    mean, sv, slow, m = 0.022, 0.0012, 1e-6, 0.37
    at_one = tpot_quantiles(mean, sv, slow, law, QS, m, (1.0, 1.0, lb))
    above = tpot_quantiles(mean, sv, slow, law, QS, m, (1.0, 1.0 + 2.0 ** -52, lb))
    arr = tpot_quantiles(np.array([mean]), np.array([sv]), np.array([slow]), law, QS,
                         np.array([m]), (np.array([1.0]), np.array([1.0]), lb))
    without = tpot_quantiles(mean, sv, slow, law, QS, m, (1.0, 1.0, None))
    for a, b, c, d in zip(at_one, above, arr, without):
        assert a == pytest.approx(b, rel=1e-9) and a == pytest.approx(float(c[0]), rel=1e-9)
        assert a > d


def test_round_robin_tail_against_the_simulator(monkeypatch):
    """8 x 70B TP8 fp8, the first 3,000 Mooncake conversation requests at 7.3 req/s, round
    robin (the referee mapping of benchmarks/cluster_vs_sim.py): the router law brings the
    closed p99 TPOT nearer the simulator's than the lone-instance law, within 35 %."""
    import argparse
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from cluster_vs_sim import _configs, at_rate

    import kvmodel.cluster as cl
    from kvmodel.sim import simulate
    a = argparse.Namespace(instances=8, model="llama-3.1-70b", gpu="h100-sxm", tp=8,
                           precision="fp8", hbm_fraction=0.3, local_dram_GB=0, lookup_s=0,
                           pool_servers=1, pool_GB=100, pool_nics=1, dram_GB=64, seed=0,
                           routing="round_robin")
    tr = at_rate(kvmodel.load_trace("mooncake-conversation").window(0, 3000), 7.3)
    c, kw = _configs(a, tr, "roce-400g")["none"]
    sim = simulate(a.model, a.gpu, tr, **kw).tpot_p99_s
    got = kvmodel.evaluate(c, kvmodel.Workload(tr)).tpot_p99_s
    monkeypatch.setattr(cl, "_work_smoothing", lambda c, n: None)
    lone = kvmodel.evaluate(c, kvmodel.Workload(tr)).tpot_p99_s
    assert abs(got - sim) < abs(lone - sim)
    print(f"p99 TPOT: router law {got:.4f}, lone law {lone:.4f}, sim {sim:.4f} s")
    assert abs(got / sim - 1.0) < 0.35, (got, sim, lone)
