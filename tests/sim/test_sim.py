"""Tests of the reference discrete-event simulator (kvmodel.sim)."""


import numpy as np
import pytest

import kvmodel
import kvmodel.sim as sim
from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance._roofline import step_ops
from kvmodel.instance.seam import params as _params
from kvmodel.instance.seam import setup as _setup
from kvmodel.sim import SIM_ROUTINGS, poisson_requests, simulate
from kvmodel.workload._reuse_exact import replay

M, G = "llama-3.1-8b", "h100-sxm"
MOONCAKE = "mooncake-conversation"  # built-in trace


def _rel(a, b):
    return abs(float(a) / float(b) - 1.0)


def _setup_8b():
    cal = _params()
    return _setup(get_model(M), get_gpu(G), get_framework("tensorrt-llm"), 1.0, 1.0, 1.0,
                  "bf16", "bf16", cal), cal


def _chat(n=600, rate=4.0, seed=3):
    return kvmodel.synthetic_trace(n, seed=seed, rate_per_s=rate, n_system_prompts=16,
                                   system_prompt_tokens=2048, user_tokens_mean=200,
                                   output_tokens_mean=40, session_fraction=0.8)


# ---------------------------------------------------------------------------- workloads

def test_poisson_requests_rate_cv_and_lengths():
    tr = poisson_requests(20_000, 5.0, 100, 10, seed=1)
    gaps = np.diff(np.concatenate([[0.0], tr.arrival_s]))
    assert _rel(gaps.mean(), 0.2) < 0.03 and _rel(gaps.std() / gaps.mean(), 1.0) < 0.03
    bursty = poisson_requests(20_000, 5.0, 100, 10, seed=1, cv=2.0)
    g2 = np.diff(np.concatenate([[0.0], bursty.arrival_s]))
    assert _rel(g2.mean(), 0.2) < 0.05 and _rel(g2.std() / g2.mean(), 2.0) < 0.08
    lens = poisson_requests(3, 1.0, [5, 6, 7], 2)
    assert lens.input_len.tolist() == [5, 6, 7] and lens.output_len.tolist() == [2, 2, 2]
    assert np.all(np.diff(tr.arrival_s) >= 0) and tr.total_blocks == 0
    same = poisson_requests(50, 2.0, 100, 10, seed=1)   # common random numbers across rates
    np.testing.assert_allclose(same.arrival_s * 2.0, tr.arrival_s[:50] * 5.0, rtol=1e-12)


@pytest.mark.parametrize("kw", [dict(n=0, rate_per_s=1.0), dict(n=5, rate_per_s=0.0),
                                dict(n=5, rate_per_s=1.0, cv=-1.0),
                                dict(n=5, rate_per_s=1.0, input_len=0),
                                dict(n=5, rate_per_s=1.0, output_len=[1, 2])])
def test_poisson_requests_rejects_bad_input(kw):
    with pytest.raises(ValueError):
        poisson_requests(**kw)


# ---------------------------------------------------------------------------- one request

@pytest.mark.parametrize("I,O", [(1000, 50), (1, 2), (8000, 200)])
def test_single_request_matches_estimate_batch1(I, O):
    r = simulate(M, G, poisson_requests(1, 1.0, I, O))
    e = kvmodel.estimate(M, G, input_len=I, output_len=O, batch=1)
    assert _rel(r.ttft_s[0], e.ttft_s) < 1e-9
    assert _rel(r.tpot_s[0], e.tpot_s) < 1e-9
    assert _rel(r.e2e_s[0], e.e2e_s) < 1e-9
    assert r.steps == O and r.queue_s[0] == pytest.approx(_params()["request_overhead"])


def test_single_request_chunked_prefill_matches_step_sum():
    s, cal = _setup_8b()
    I, mnt = 5000, 2048
    r = simulate(M, G, poisson_requests(1, 1.0, I, 1), max_num_tokens=mnt)
    expect = cal["request_overhead"]
    for start, c in ((0, 2048), (2048, 2048), (4096, 904)):
        expect += step_ops(s, c, 1.0 if start + c == I else 0.0,
                           c * (start + (c + 1.0) / 2.0), 0.0, start, c)[2]
    assert _rel(r.ttft_s[0], expect) < 1e-12
    assert r.tpot_s[0] == 0.0 and r.e2e_s[0] == r.ttft_s[0] and r.steps == 3


def test_output_len_one_excluded_from_tpot_stats():
    tr = poisson_requests(4, 0.5, 500, [1, 10, 1, 10], seed=2)
    r = simulate(M, G, tr)
    assert np.all(r.tpot_s[[0, 2]] == 0.0) and np.all(r.tpot_s[[1, 3]] > 0)
    assert r.tpot_mean_s == pytest.approx(r.tpot_s[[1, 3]].mean())
    assert np.isfinite(list(r.summary().values())).all()


# ---------------------------------------------------------------------------- invariants

def test_seeded_determinism_and_seed_effect():
    tr = poisson_requests(300, 10.0, 800, 60, seed=4)
    a = simulate(M, G, tr, instances=3, routing="random", seed=7)
    b = simulate(M, G, tr, instances=3, routing="random", seed=7)
    c = simulate(M, G, tr, instances=3, routing="random", seed=8)
    for f in ("ttft_s", "tpot_s", "e2e_s", "instance"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert a.steps == b.steps and np.any(a.instance != c.instance)
    picks = np.random.default_rng(7).integers(0, 3, size=300)   # replay's draws
    np.testing.assert_array_equal(a.instance, picks)


def test_conservation_and_little():
    tr = poisson_requests(800, 14.0, (np.arange(800) % 7 + 1) * 300, np.arange(800) % 90 + 1,
                          seed=5)
    r = simulate(M, G, tr, instances=2, routing="least_loaded")
    assert np.all(np.isfinite(r.e2e_s)) and np.all(r.ttft_s > 0)
    assert np.all(r.e2e_s >= r.ttft_s) and np.all(r.queue_s >= 0)
    assert r.output_tokens == tr.output_len.sum() and r.requests_per_instance.sum() == 800
    first, last = r.busy_window_s
    assert r.output_tok_per_s == pytest.approx(tr.output_len.sum() / (last - first))
    lit = r.little()
    assert lit["rel_err"] < 0.02 and lit["L"] > 1.0
    # decode steps each sequence took: output_len - 1, so steps >= the longest request's
    assert r.steps >= tr.output_len.max()


def test_fast_forward_equals_step_by_step(monkeypatch):
    tr = _chat(300, rate=6.0)
    kw = dict(instances=2, routing="prefix_affinity", prefix_cache_blocks=40)
    a = simulate(M, G, tr, **kw)
    monkeypatch.setattr(sim, "_STRETCH_CAP", 1)
    b = simulate(M, G, tr, **kw)
    for f in ("ttft_s", "e2e_s", "instance", "cached_tokens"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert a.steps == b.steps and a.events < b.events


def test_kv_capacity_and_batch_limits_respected():
    tr = poisson_requests(120, 50.0, 4000, 200, seed=6)
    kw = dict(precision="fp8")
    r = simulate("llama-3.1-70b", G, tr, **kw)
    cap = r.kv_capacity_tokens
    assert r.max_kv_tokens[0] <= cap and r.max_kv_tokens[0] > cap - 4200
    assert r.max_running[0] == cap // 4200
    r2 = simulate("llama-3.1-70b", G, tr, max_batch_size=5, **kw)
    assert r2.max_running[0] == 5 and r2.ttft_mean_s > r.ttft_mean_s


def test_low_load_ttft_is_unloaded_prefill():
    tr = poisson_requests(60, 0.05, 1000, 20, seed=7)
    r = simulate(M, G, tr)
    e = kvmodel.estimate(M, G, input_len=1000, output_len=20, batch=1)
    assert _rel(r.ttft_p50_s, e.ttft_s) < 1e-9
    assert _rel(r.ttft_mean_s, e.ttft_s) < 0.02


def test_ttft_increases_with_rate():
    means = [simulate(M, G, poisson_requests(400, rate, 2000, 100, seed=8)).ttft_mean_s
             for rate in (2.0, 6.0, 10.0, 14.0, 18.0)]
    assert all(b > a for a, b in zip(means, means[1:])), means
    assert means[-1] > 2.0 * means[0]


# ---------------------------------------------------------------------------- routing, cache

def test_least_loaded_balances_counts():
    tr = poisson_requests(600, 30.0, 1500, 80, seed=9)
    ll = simulate(M, G, tr, instances=4, routing="least_loaded").requests_per_instance
    rnd = simulate(M, G, tr, instances=4, routing="random", seed=1).requests_per_instance
    rr = simulate(M, G, tr, instances=4).requests_per_instance
    assert np.ptp(ll) <= 0.1 * ll.mean() and np.ptp(ll) < np.ptp(rnd)
    assert rr.tolist() == [150] * 4


def test_prefix_affinity_beats_random_and_matches_replay():
    tr = _chat(800, rate=8.0)
    kw = dict(instances=4, prefix_cache_blocks=30)
    aff = simulate(M, G, tr, routing="prefix_affinity", **kw)
    rnd = simulate(M, G, tr, routing="random", seed=2, **kw)
    assert aff.hit_ratio > rnd.hit_ratio + 0.15
    assert aff.ttft_mean_s < rnd.ttft_mean_s
    # lookup at routing time: round_robin/random hit ratios equal the exact replay's
    assert rnd.hit_ratio == replay(tr, 120, 4, "random", seed=2).hit_ratio
    rr = simulate(M, G, tr, **kw)
    assert rr.hit_ratio == replay(tr, 120, 4, "round_robin").hit_ratio
    assert np.all(aff.cached_tokens <= tr.input_len - 1)


def test_prefix_affinity_bounded_caps_counts():
    tr = _chat(800, rate=8.0)
    r = simulate(M, G, tr, instances=4, prefix_cache_blocks=30,
                 routing="prefix_affinity_bounded", epsilon=0.1)
    assert r.requests_per_instance.max() <= np.ceil(1.1 * 800 / 4)
    assert r.hit_ratio > 0.3


def test_prefix_cache_tiers_order_ttft():
    tr = _chat(300, rate=2.0)
    kw = dict(instances=2, routing="prefix_affinity")
    none = simulate(M, G, tr, **kw)
    hbm = simulate(M, G, tr, prefix_cache_blocks=200, **kw)
    ssd = simulate(M, G, tr, prefix_cache_blocks=200, cache_tier="ssd", **kw)
    assert hbm.hit_ratio > 0.3 and ssd.hit_ratio == hbm.hit_ratio
    assert hbm.ttft_mean_s < ssd.ttft_mean_s and hbm.ttft_mean_s < none.ttft_mean_s
    assert hbm.kv_capacity_tokens == none.kv_capacity_tokens - 200 * tr.block_tokens
    assert ssd.kv_capacity_tokens == none.kv_capacity_tokens


def test_sliding_window_model_runs_step_exact(monkeypatch):
    tr = poisson_requests(60, 5.0, 3000, 300, seed=10)
    a = simulate("mistral-7b", G, tr)
    monkeypatch.setattr(sim, "_STRETCH_CAP", 1)
    b = simulate("mistral-7b", G, tr)
    np.testing.assert_allclose(a.e2e_s, b.e2e_s, rtol=1e-12)


# ---------------------------------------------------------------------------- errors

@pytest.mark.parametrize("kw", [dict(routing="nearest"), dict(instances=0), dict(instances=1.5),
                                dict(instances=True), dict(prefix_cache_blocks=-1),
                                dict(block_tokens=0), dict(cache_tier="tape"),
                                dict(max_num_tokens=0), dict(tp=3), dict(precision="fp7")])
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        simulate(M, G, poisson_requests(3, 1.0, 100, 5), **kw)


def test_bad_requests_raise():
    with pytest.raises(ValueError, match="Trace"):
        simulate(M, G, [1, 2, 3])
    zero_out = kvmodel.Trace.from_lists([[1]], input_len=[10], output_len=[0])
    with pytest.raises(ValueError, match="output_len"):
        simulate(M, G, zero_out)
    with pytest.raises(ValueError, match="KV tokens"):
        simulate("llama-3.1-70b", G, poisson_requests(2, 1.0, 80_000, 10), precision="fp8")
    with pytest.raises(ValueError, match="infeasible"):
        simulate("llama-3.1-405b", G, poisson_requests(2, 1.0, 100, 10))
    assert set(SIM_ROUTINGS) == {"round_robin", "random", "least_loaded", "prefix_affinity",
                                 "prefix_affinity_bounded"}
    with pytest.raises(ValueError, match="epsilon"):
        simulate(M, G, poisson_requests(3, 1.0, 100, 5), epsilon=0.0)


# ---------------------------------------------------------------------------- the big trace

@pytest.mark.slow
def test_mooncake_16_instances_fast_and_consistent():
    tr = kvmodel.load_trace(MOONCAKE)
    r = simulate(M, G, tr, instances=16)
    assert r.wall_s < 60.0
    assert r.output_tokens == tr.output_len.sum() and r.little()["rel_err"] < 0.02
    assert np.all(r.max_kv_tokens <= r.kv_capacity_tokens)
