"""Queue term of the load-aware routers (kvmodel.cluster._routing_queue): the mixed supermarket
fixed point against Mitzenmacher's closed form, the M/M/N floor, identities where the rule
ignores the load, each rule's load choice count on hand-made views, and the term reaching
evaluate (queue-aware routers' p99 below the cache-blind balance of the same load)."""

import dataclasses
import math

import numpy as np
import pytest

import kvmodel
from kvmodel import Cluster, Workload
from kvmodel.cluster import _routing_queue as RQ
from kvmodel.instance._queueing import erlang_c
from kvmodel.policies.routing import RouteRequest, RoutingView, make_policy
from kvmodel.workload._routing_closed import routed_load_stats


def _mix(n: int, d: int) -> np.ndarray:
    m = np.zeros(n)
    m[d - 1] = 1.0
    return m


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_supermarket_matches_mitzenmacher(d, rho):
    """Pure d choices: P(wait) = ρ^d and mean wait Σ_{i≥2} ρ^((d^i − d)/(d − 1)) (time in
    system T_d less one service, Mitzenmacher 2001, Sec. 3)."""
    p, w = RQ._supermarket(_mix(d, d), np.array([rho]))
    want = sum(rho ** ((d ** i - d) / (d - 1)) for i in range(2, 40))
    assert p[0] == pytest.approx(rho ** d, rel=1e-9)
    assert w[0] == pytest.approx(want, rel=1e-6)


def test_one_choice_is_the_instance_law_exactly():
    """d = 1 for every request: the factors are 1 (work and count signals) and the wait law
    and percentiles come back unchanged."""
    rho = np.linspace(0.01, 0.99, 25)
    for residual in (None, 1.35, 0.6):
        fw, fp = RQ.wait_factors(_mix(8, 1), rho, residual)
        np.testing.assert_allclose(fw, 1.0, rtol=1e-6)
        np.testing.assert_allclose(fp, 1.0, rtol=1e-6)
    m = dict(ttft=2.0, ttft50=1.5, ttft90=3.0, ttft99=6.0, wait=0.8, pwait=0.6)
    W, p = RQ.routed_law(_mix(8, 1), m["wait"], m["pwait"])
    out = RQ.routed_percentiles(m, W, p, [(0.5, 0.0, "dram", 1000.0), (0.5, 500.0, "dram", 3000.0)])
    for k, v in m.items():
        assert out[k] == pytest.approx(v, rel=1e-6)


def test_all_choices_reach_the_central_queue_floor():
    """JSQ over all N with a work signal is no better than one M/M/N queue (Erlang C)."""
    n, rho = 8, 0.8
    fw, fp = RQ.wait_factors(_mix(n, n), rho)
    c = erlang_c(n, n * rho)
    assert fp * rho == pytest.approx(c, rel=1e-3)
    assert fw * rho / (1 - rho) == pytest.approx(c / (n * (1 - rho)), rel=1e-3)


def test_more_choices_never_wait_longer():
    rho = np.linspace(0.05, 0.98, 30)
    prev_w, prev_p = np.ones_like(rho), np.ones_like(rho)
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        mix = np.zeros(16)
        mix[0], mix[3] = 1 - share, share
        fw, fp = RQ.wait_factors(mix, rho)
        assert np.all(fw <= prev_w + 1e-9) and np.all(fp <= prev_p + 1e-9)
        prev_w, prev_p = fw, fp


def test_count_signal_keeps_the_probability_of_waiting():
    """A request count does not see the prompt in service: P(wait) stays, the M/G/1 wait's
    residual share 1 − ρ stays and its queued share ρ is cut as M/M/1's queue; the residual's
    length scales both shares alike, so it cancels."""
    rho = 0.8
    fw_low, fp = RQ.wait_factors(_mix(8, 8), rho, 0.6)
    fw_high, _ = RQ.wait_factors(_mix(8, 8), rho, 2.25)
    fw_work, _ = RQ.wait_factors(_mix(8, 8), rho)
    assert fp == 1.0
    assert fw_low == pytest.approx(fw_high, rel=1e-12)
    assert fw_work < fw_low < 1.0
    queued = rho ** 9  # d = 8: s_2 = ρ·ρ^8, a_2 = s_2^8 ≈ 0, so Σ_{k≥2} a_k ≈ 0
    assert fw_low == pytest.approx(1.0 - rho, abs=queued)


def test_bad_mix_and_residual_are_rejected():
    with pytest.raises(ValueError, match="mix="):
        RQ.wait_factors([0.5, 0.2], 0.5)
    with pytest.raises(ValueError, match="residual="):
        RQ.wait_factors([0.3, 0.7], 0.5, -1.0)


def _view(**kw):
    n = len(kw["active"])
    return RoutingView(n, block_tokens=16, **kw)


def test_token_weighted_signals_read_as_work():
    """llm-d's kv-utilisation (reserved tokens) and sglang's tree (routed prompt blocks) see a
    long prompt in service; least_loaded's active requests do not."""
    from kvmodel.policies import ROUTING
    signal = {r: getattr(ROUTING[r].sim, "load_signal", "count") for r in ROUTING}
    assert signal["llmd"] == signal["sglang"] == signal["dynamo"] == "work"
    assert signal["least_loaded"] == "count"


def test_load_choices_of_each_rule():
    req = RouteRequest(0, 16 * 10, 8, 10)
    cached = [{"hbm": 10}, {"hbm": 0}, {"hbm": 0}, {"hbm": 9}]
    busy = dict(active=[20, 20, 20, 20], waiting=[2, 2, 2, 2], cached=cached,
                queued_prefill_tokens=[400, 400, 400, 400], kv_blocks=[200] * 4,
                kv_usage=[0.5] * 4)
    idle = dict(busy, active=[0] * 4, waiting=[0] * 4, queued_prefill_tokens=[0] * 4,
                kv_blocks=[0] * 4, kv_usage=[0.0] * 4)
    assert make_policy("least_loaded").load_choices(req, _view(**idle)) == 4
    assert make_policy("sglang").load_choices(req, _view(**idle)) == 1  # one longest prefix
    none_cached = dict(idle, cached=[{}] * 4)
    # the smallest tree weighs the routed prompt work: every instance is a choice
    assert make_policy("sglang").load_choices(req, _view(**none_cached)) == 4
    for name in ("mooncake", "dynamo", "llmd"):
        assert make_policy(name).load_choices(req, _view(**idle)) == 1  # cache decides
        assert make_policy(name).load_choices(req, _view(**busy)) >= 2  # load reaches
    assert make_policy("round_robin").load_choices(req, _view(**busy)) == 1
    assert make_policy("sglang", balance_abs_threshold=1).load_choices(
        req, _view(**dict(busy, active=[10, 0, 0, 0]))) == 4


@pytest.fixture(scope="module")
def loaded_cluster():
    w = Workload(kvmodel.synthetic_trace(1000, seed=5, rate_per_s=100.0, n_system_prompts=16,
                                         session_fraction=0.6))
    return w


def test_queue_term_reaches_evaluate_and_says_its_mix(loaded_cluster):
    """least_loaded (all N choices, cache-blind) waits less than random routing at the same
    hit ratio; every served request of least_loaded has N choices."""
    w = loaded_cluster
    c = Cluster("llama-3.1-8b", "h100-sxm", instances=8, tp=1, precision="bf16")
    ll = kvmodel.evaluate(dataclasses.replace(c, routing="least_loaded"), w)
    rnd = kvmodel.evaluate(dataclasses.replace(c, routing="random"), w)
    assert ll.stable and rnd.stable
    assert ll.ttft_p99_s < rnd.ttft_p99_s
    mix, imb = routed_load_stats(w.profile, 8, "least_loaded", None)
    assert mix[-1] == pytest.approx(1.0) and math.isfinite(imb) and imb >= 1.0


def test_work_signal_pools_the_flexible_share():
    """A rule weighing the work left evens out the busiest instance's excess with the
    requests that have a choice; only the share without one keeps its imbalance."""
    from kvmodel.cluster._routing_load import _pooled
    assert _pooled(((0.1, 0.0, 0.9), 1.08), work=True) == 1.0
    assert _pooled(((1.0, 0.0, 0.0), 1.08), work=True) == pytest.approx(1.08)
    assert _pooled(((0.1, 0.0, 0.9), 1.08), work=False) == pytest.approx(1.08)
