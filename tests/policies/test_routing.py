"""Routing policies (kvmodel.policies.routing): registry, a conformance suite over every registered
policy, hand-worked cost functions, and their effect in the simulator."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kvmodel
from kvmodel.policies.routing import (
    ROUTING_POLICIES,
    RouteRequest,
    RoutingPolicy,
    RoutingView,
    make_policy,
)
from kvmodel.sim import simulate

M, G = "llama-3.1-8b", "h100-sxm"
ROOT = Path(__file__).resolve().parents[2]
CACHE_AWARE = ("dynamo", "llmd", "sglang", "mooncake")


def _req(input_len=160, n_blocks=10, output_len=8, index=0):
    return RouteRequest(index, input_len, output_len, n_blocks)


def _random_view(rng, n, n_blocks):
    """A random but well-formed view of ``n`` instances for a request of ``n_blocks``."""
    def ints(hi):
        return rng.integers(0, hi, size=n).tolist()
    cached = [{"hbm": int(a), "dram": int(b)} for a, b in
              zip(rng.integers(0, n_blocks + 1, size=n), rng.integers(0, 2, size=n))]
    return RoutingView(n, block_tokens=16, prefill_s_per_token=1e-4, cached=cached,
                       active=ints(200), running=ints(50), waiting=ints(20),
                       queued_prefill_tokens=ints(5000), kv_blocks=ints(500),
                       kv_usage=rng.random(n).tolist(), step_s=(rng.random(n) / 10).tolist(),
                       routed=ints(100), cache_blocks=ints(300), tree_blocks=ints(3000))


def _chat(n=240, rate=6.0, seed=3):
    return kvmodel.synthetic_trace(n, seed=seed, rate_per_s=rate, n_system_prompts=8,
                                   system_prompt_tokens=2048, user_tokens_mean=200,
                                   output_tokens_mean=30, session_fraction=0.8)


# ---------------------------------------------------------------------------- registry

def test_registry_names_and_docstrings():
    assert set(ROUTING_POLICIES) == {"round_robin", "random", "least_loaded", "prefix_affinity",
                                     "prefix_affinity_bounded", "dynamo", "llmd", "sglang",
                                     "mooncake"}
    for name, cls in ROUTING_POLICIES.items():
        assert issubclass(cls, RoutingPolicy) and cls.name == name
        assert cls.__doc__ and len(cls.__doc__) > 40
    for name in CACHE_AWARE:     # every published cost function cites its source
        assert "Source" in ROUTING_POLICIES[name].__doc__


@pytest.mark.parametrize("name,params,match", [
    ("nearest", {}, "unknown policy"),
    ("dynamo", {"overlap_weight": 1.0}, "unknown parameter"),
    ("round_robin", {"seed": 1}, "unknown parameter"),
    ("dynamo", {"temperature": -1.0}, "temperature"),
    ("dynamo", {"tier_credit": {"tape": 1.0}}, "tier"),
    ("llmd", {"queue_weight": float("nan")}, "queue_weight"),
    ("sglang", {"cache_threshold": True}, "cache_threshold"),
    ("mooncake", {"ttft_slo_s": 0.0}, "ttft_slo_s"),
    ("prefix_affinity_bounded", {"epsilon": 0.0}, "epsilon"),
])
def test_make_policy_rejects_bad_names_and_params(name, params, match):
    with pytest.raises(ValueError, match=match):
        make_policy(name, **params)


def test_view_rejects_bad_fields():
    with pytest.raises(ValueError, match="unknown fields"):
        RoutingView(2, queue=[0, 0])
    with pytest.raises(ValueError, match="active"):
        RoutingView(2, active=[0])


# ---------------------------------------------------------------------------- conformance

@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("name", list(ROUTING_POLICIES))
def test_conformance_on_views(name, n):
    """Valid index (or None only where rejection is declared), deterministic for a seed,
    ``reset`` restarts the policy's state, the view is left untouched."""
    rng = np.random.default_rng(11 + n)
    views = [(_req(n_blocks=int(k), input_len=16 * int(k) + 3, index=j),
              _random_view(rng, n, int(k))) for j, k in enumerate(rng.integers(0, 12, 60))]
    params = {"ttft_slo_s": 0.4} if name == "mooncake" else {}
    a, b = make_policy(name, **params), make_policy(name, **params)
    a.reset(n, len(views))
    b.reset(n, len(views))
    first = [a.choose(r, v) for r, v in views]
    assert first == [b.choose(r, v) for r, v in views]
    for i in first:
        assert (i is None and a.may_reject) or (isinstance(i, int) and 0 <= i < n)
    before = [dict(vars(v)) for _, v in views]
    a.reset(n, len(views))
    assert [a.choose(r, v) for r, v in views] == first
    assert [dict(vars(v)) for _, v in views] == before


@pytest.mark.parametrize("name", list(ROUTING_POLICIES))
def test_conformance_in_simulator(name):
    """Every request is served on a valid instance or explicitly rejected; same seed, same
    run; the served requests' statistics are finite."""
    tr = _chat(120, rate=8.0)
    kw = dict(instances=3, routing=name, prefix_cache_blocks=20, seed=5)
    a, b = simulate(M, G, tr, **kw), simulate(M, G, tr, **kw)
    for f in ("instance", "ttft_s", "e2e_s", "cached_tokens", "rejected"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    served = ~a.rejected
    assert np.all((a.instance[served] >= 0) & (a.instance[served] < 3))
    assert np.all(a.instance[a.rejected] == -1) and np.all(np.isnan(a.ttft_s[a.rejected]))
    assert np.all(np.isfinite(a.e2e_s[served])) and np.all(a.e2e_s[served] >= a.ttft_s[served])
    assert a.requests_per_instance.sum() + a.n_rejected == len(tr)
    assert np.isfinite(list(a.summary().values())).all()
    assert a.n_rejected == 0          # default parameters never reject


# ---------------------------------------------------------------------------- hand-worked costs

def test_dynamo_cost_by_hand():
    """B = 16, prompt 160 tokens = 10 blocks. Worker 0 caches 9 blocks and holds 20 active
    blocks, worker 1 caches nothing and holds 5.
    prefill = max(q/16 + 10 - credit, 0): 1 and 10; decode = kv + 10: 30 and 15.
    w = 1: 1 + 30 = 31 vs 10 + 15 = 25 -> worker 1; w = 2: 32 vs 35 -> worker 0."""
    view = RoutingView(2, block_tokens=16, cached=[{"hbm": 9}, {}], kv_blocks=[20, 5])
    assert make_policy("dynamo").costs(_req(), view) == [31.0, 25.0]
    assert make_policy("dynamo").choose(_req(), view) == 1
    assert make_policy("dynamo", overlap_score_weight=2.0).choose(_req(), view) == 0
    # queued prompt work on worker 0: 64 tokens = 4 blocks -> 2 * 5 + 30 = 40 > 35
    queued = RoutingView(2, block_tokens=16, cached=[{"hbm": 9}, {}], kv_blocks=[20, 5],
                         queued_prefill_tokens=[64, 0])
    assert make_policy("dynamo", overlap_score_weight=2.0).choose(_req(), queued) == 1
    # the same 9 blocks in host DRAM earn credit 0.75 * 9 = 6.75: 2 * 3.25 + 30 = 36.5 > 35
    host = RoutingView(2, block_tokens=16, cached=[{"dram": 9}, {}], kv_blocks=[20, 5])
    assert make_policy("dynamo", overlap_score_weight=2.0).costs(_req(), host) == [36.5, 35.0]
    assert make_policy("dynamo", overlap_score_weight=2.0).choose(_req(), host) == 1


def test_dynamo_temperature_sampling():
    """Costs [31, 25], span 6, T = 1: P(worker 0) = e^-1 / (1 + e^-1) = 0.2689."""
    view = RoutingView(2, block_tokens=16, cached=[{"hbm": 9}, {}], kv_blocks=[20, 5])
    pol = make_policy("dynamo", temperature=1.0, seed=3)
    picks = [pol.choose(_req(), view) for _ in range(4000)]
    p0 = math.exp(-1) / (1 + math.exp(-1))
    assert abs(picks.count(0) / 4000 - p0) < 0.03
    ties = RoutingView(3, block_tokens=16, cache_blocks=[7, 3, 3])
    assert {make_policy("dynamo", seed=s).choose(_req(), ties) for s in range(20)} == {1, 2}


def test_llmd_scores_by_hand():
    """prefix 10/10, 5/10, 0; queue (4 - q) / 4 for q = 4, 0, 2: 0, 1, 0.5; kv 1 - usage.
    3*1 + 2*0.1 + 2*0 = 3.2; 3*0.5 + 2*0.5 + 2*1 = 4.5; 0 + 2*0.9 + 2*0.5 = 2.8 -> 1."""
    view = RoutingView(3, cached=[{"hbm": 10}, {"hbm": 5}, {}], waiting=[4, 0, 2],
                       kv_usage=[0.9, 0.5, 0.1])
    np.testing.assert_allclose(make_policy("llmd").scores(_req(), view), [3.2, 4.5, 2.8])
    assert make_policy("llmd").choose(_req(), view) == 1
    assert make_policy("llmd", prefix_weight=10.0).choose(_req(), view) == 0   # 10.2 vs 8.0


@pytest.mark.parametrize("active,cached,tree,expect", [
    ([100, 10, 50], [{"hbm": 10}, {}, {}], [0, 0, 0], 1),   # 90 > 64 and 100 > 15: balance
    ([70, 10, 50], [{"hbm": 10}, {}, {}], [0, 0, 0], 0),    # 60 <= 64: cache, ratio 1 > 0.3
    ([230, 160, 200], [{"hbm": 10}, {}, {}], [0, 0, 0], 0),  # 230 <= 1.5 * 160: cache
    ([20, 10, 10], [{"hbm": 2}, {}, {}], [5, 9, 3], 2),      # ratio 0.2 <= 0.3: smallest tree
    ([20, 10, 10], [{"hbm": 4}, {}, {}], [5, 9, 3], 0),      # ratio 0.4 > 0.3
])
def test_sglang_rule_by_hand(active, cached, tree, expect):
    view = RoutingView(3, active=active, cached=cached, tree_blocks=tree)
    assert make_policy("sglang").choose(_req(), view) == expect


def test_sglang_thresholds_are_parameters():
    view = RoutingView(3, active=[70, 10, 50], cached=[{"hbm": 10}, {}, {}])
    assert make_policy("sglang", balance_abs_threshold=32).choose(_req(), view) == 1
    assert make_policy("sglang", balance_abs_threshold=32,
                       balance_rel_threshold=10.0).choose(_req(), view) == 0


def test_mooncake_ttft_and_rejection_by_hand():
    """B = 100, prompt 1000 tokens, p = 1e-4 s/token. Worker 0 caches 8 blocks with 2000
    queued tokens: (2000 + 200) p = 0.22 s; worker 1: 1000 p = 0.1 s -> 1. With 500 queued:
    0.07 s -> 0; an SLO of 0.05 s rejects, 0.08 s does not."""
    req = _req(input_len=1000, n_blocks=10)
    def mk(**kw):
        return make_policy("mooncake", prefill_s_per_token=1e-4, **kw)
    def view(q):
        return RoutingView(2, block_tokens=100, cached=[{"hbm": 8}, {}],
                                     queued_prefill_tokens=[q, 0])
    np.testing.assert_allclose(mk().ttft(req, view(2000)), [0.22, 0.1])
    assert mk().choose(req, view(2000)) == 1 and mk().choose(req, view(500)) == 0
    assert mk(ttft_slo_s=0.05).choose(req, view(500)) is None
    assert mk(ttft_slo_s=0.08).choose(req, view(500)) == 0
    # a pool at 1 ms/block lets worker 1 fetch 8 blocks: 0.008 + 200 p = 0.028 s
    np.testing.assert_allclose(mk(pool_s_per_block=1e-3).ttft(req, view(2000)), [0.22, 0.028])
    # without the parameter, the view's estimate is used
    v = RoutingView(2, block_tokens=100, prefill_s_per_token=2e-4, queued_prefill_tokens=[0, 10])
    np.testing.assert_allclose(make_policy("mooncake").ttft(req, v), [0.2, 0.202])


def test_builtin_rules_by_hand():
    view = RoutingView(3, cached=[{"hbm": 2}, {"hbm": 2}, {}], active=[5, 3, 0],
                       routed=[4, 4, 0])
    rr = make_policy("round_robin")
    assert [rr.choose(_req(), view) for _ in range(4)] == [0, 1, 2, 0]
    assert make_policy("least_loaded").choose(_req(), view) == 2
    assert make_policy("prefix_affinity").choose(_req(), view) == 1       # tie on 2 -> fewer active
    # k = 8 routed, bound ceil(1.25 * 9 / 3) = 4: instances 0 and 1 (4 + 1 > 4) are full
    assert make_policy("prefix_affinity_bounded").choose(_req(), view) == 2
    assert make_policy("prefix_affinity_bounded", epsilon=1.0).choose(_req(), view) == 1


def test_seeded_choices_same_in_another_process():
    code = ("from kvmodel.policies.routing import make_policy, RoutingView, RouteRequest\n"
            "v = RoutingView(4, block_tokens=16, kv_blocks=[3, 1, 4, 1])\n"
            "p = make_policy('dynamo', temperature=0.7, seed=9)\n"
            "print([p.choose(RouteRequest(0, 64, 1, 4), v) for _ in range(30)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.strip()
    p = make_policy("dynamo", temperature=0.7, seed=9)
    v = RoutingView(4, block_tokens=16, kv_blocks=[3, 1, 4, 1])
    assert out == str([p.choose(RouteRequest(0, 64, 1, 4), v) for _ in range(30)])


# ---------------------------------------------------------------------------- in the simulator

def test_simulate_routing_params_and_instances():
    tr = _chat(60)
    a = simulate(M, G, tr, instances=3, routing="random", seed=7)
    b = simulate(M, G, tr, instances=3, routing="random", routing_params={"seed": 7})
    np.testing.assert_array_equal(a.instance, b.instance)
    c = simulate(M, G, tr, instances=3, routing=make_policy("random", seed=7))
    np.testing.assert_array_equal(a.instance, c.instance)
    with pytest.raises(ValueError, match="unknown parameter"):
        simulate(M, G, tr, instances=3, routing="dynamo", routing_params={"weight": 2})
    with pytest.raises(ValueError, match="routing"):
        simulate(M, G, tr, routing="nearest")
    with pytest.raises(ValueError, match="routing_params"):
        simulate(M, G, tr, routing=make_policy("dynamo"), routing_params={"seed": 1})


def test_simulate_rejects_policy_returning_garbage():
    class Bad(RoutingPolicy):
        def choose(self, req, view):
            return view.n
    with pytest.raises(RuntimeError, match="instance index"):
        simulate(M, G, _chat(5), instances=2, routing=Bad())


def test_mooncake_early_rejection_in_simulator():
    """A tight TTFT SLO under overload rejects some requests; they are excluded from every
    statistic, and the served ones keep Little's law."""
    tr = _chat(300, rate=400.0)
    free = simulate(M, G, tr, instances=2, routing="mooncake", prefix_cache_blocks=20)
    slo = simulate(M, G, tr, instances=2, routing="mooncake", prefix_cache_blocks=20,
                   routing_params={"ttft_slo_s": 0.25})
    assert free.n_rejected == 0 and 0 < slo.n_rejected < len(tr)
    served = ~slo.rejected
    assert slo.output_tokens == tr.output_len[served].sum()
    assert slo.requests_per_instance.sum() == served.sum()
    assert np.all(np.isnan(slo.e2e_s[slo.rejected])) and slo.summary()["rejected"] == slo.n_rejected
    assert slo.ttft_mean_s == pytest.approx(slo.ttft_s[served].mean())
    assert slo.ttft_p99_s < free.ttft_p99_s
    assert slo.little()["rel_err"] < 0.02
    assert slo.hit_blocks <= slo.total_blocks < tr.total_blocks


@pytest.fixture(scope="module")
def shared_prefix_runs():
    """12 Zipf-popular 4096-token system prompts, 4 instances of 40 cache blocks, loaded."""
    tr = kvmodel.synthetic_trace(600, seed=5, rate_per_s=200.0, n_system_prompts=12,
                                 zipf_alpha=1.2, system_prompt_tokens=4096,
                                 user_tokens_mean=300, output_tokens_mean=100,
                                 session_fraction=0.5)
    kw = dict(instances=4, prefix_cache_blocks=40, seed=2)
    return {r: simulate(M, G, tr, routing=r, **kw)
            for r in ("random", "prefix_affinity") + CACHE_AWARE}


@pytest.mark.parametrize("name", CACHE_AWARE)
def test_cache_aware_beats_random_and_balances_better_than_affinity(name, shared_prefix_runs):
    runs = shared_prefix_runs
    def imbalance(r):
        return r.requests_per_instance.max() / r.requests_per_instance.mean()
    assert runs[name].hit_ratio > runs["random"].hit_ratio + 0.05
    assert imbalance(runs[name]) < imbalance(runs["prefix_affinity"])
    assert runs[name].ttft_mean_s < runs["random"].ttft_mean_s
