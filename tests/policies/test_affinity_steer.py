"""Bounded prefix affinity near saturation (kvmodel.cluster._routing_queue, issue 13): the
share of its requests whose choice reads the load (the KV-slot steering share,
bounded_steer_share through routed_slot_steer), worked by hand on toy traces and laws; the
mean wait's rise with the load; its limits (no cache: every
request ties, least_loaded's count law and steering); monotonicity; and unbounded prefix
affinity's overload, which the closed form and the simulator agree on."""

import dataclasses
import math

import numpy as np
import pytest

import kvmodel
from kvmodel import Cluster, Workload
from kvmodel.cluster import _routing_queue as RQ
from kvmodel.cluster._routing_load import routed_slot_steer
from kvmodel.instance._mixture import mixture_quantile
from kvmodel.workload._reuse_analytic import reuse_profile


def _toy():
    """r0 [1, 2], r1 [1, 3], r2 [4], r3 [1, 2, 5] (as tests/cluster/test_routing_queue.py)."""
    return reuse_profile(kvmodel.Trace.from_lists([[1, 2], [1, 3], [4], [1, 2, 5]]))


def test_steer_share_by_hand():
    """Two instances, caches that never evict.
    epsilon 10 (the bound never binds): r0 ties (both empty, to instance 0), r1 has block 1
    on instance 0 only (d = 1), r2 [4] is nowhere and ties (to instance 1, fewest routed),
    r3 follows [1, 2] to instance 0: 2 of 4 read the load, 0.5, all of them ties.
    epsilon 0.01: bounds ceil(1.01 (k + 1) / 2) = 1, 2, 2, 3; r2 finds instance 0 at its bound
    (2 routed) and has one eligible instance, d = 1, but without the bound both would tie at
    the empty prefix: the bound decided, so it reads the load too: 1 tie + 1 bound, 0.5, while
    the choice mix has one tie in four (0.75, 0.25).
    No cache: every request ties, 1 (least_loaded's)."""
    prof = _toy()
    assert RQ.bounded_choice_mix(prof, 2, 10.0, 100) == pytest.approx((0.5, 0.5))
    assert RQ.bounded_steer_share(prof, 2, 10.0, 100) == pytest.approx(0.5)
    assert RQ.bounded_choice_mix(prof, 2, 0.01, 100) == pytest.approx((0.75, 0.25))
    assert RQ.bounded_steer_share(prof, 2, 0.01, 100) == pytest.approx(0.5)
    assert RQ.bounded_steer_share(prof, 2, 0.01, 0) == pytest.approx(1.0)
    assert RQ.bounded_steer_share(prof, 1, 0.01, 100) == 0.0  # one instance: nothing to steer


def test_bound_count_matches_the_block_by_block_replay():
    """The LRU replay's bound count is the generic replay's (CachePolicy caches walked block
    by block), on a trace where the bound binds (epsilon 0.01) and caches evict."""
    tr = kvmodel.synthetic_trace(400, seed=3, rate_per_s=50.0, n_system_prompts=6,
                                 session_fraction=0.5)
    prof = reuse_profile(tr)
    for cap in (0, 7, 40, 10**5):
        lru = RQ._replay_lru(prof, 3, 0.01, cap)
        assert lru == RQ._replay_policy(prof, 3, 0.01, cap, "lru"), cap
    assert RQ._replay_lru(prof, 3, 0.01, 40)[1] > 0  # the bound decided some


def test_steer_share_falls_with_cache():
    """More cache per instance keeps more follow-ups on their prefix (d = 1): the share
    that reads the load never rises with the capacity; an array of capacities gives each
    one's number."""
    tr = kvmodel.synthetic_trace(800, seed=5, rate_per_s=100.0, n_system_prompts=16,
                                 session_fraction=0.6)
    prof = reuse_profile(tr)
    caps = np.array([0, 1, 10, 100, 1000, 10**4, 10**6])
    s = RQ.bounded_steer_share(prof, 8, 0.25, caps)
    assert s[0] == 1.0 and np.all(np.diff(s) <= 1e-12) and s[-1] < 0.9
    assert [RQ.bounded_steer_share(prof, 8, 0.25, int(c)) for c in caps] == pytest.approx(s)


def test_routed_slot_steer_reads_the_rule():
    """least_loaded 1 − 1/n (3/4 on 4 instances; the cluster's own 1/4 share of the swing
    stays; without n: 1), round robin 0, bounded prefix affinity its replayed share of the
    same 3/4 (without a workload: 0, as before)."""
    tr = kvmodel.synthetic_trace(800, seed=5, rate_per_s=100.0, n_system_prompts=16,
                                 session_fraction=0.6)
    w = Workload(tr)
    c = Cluster("llama-3.1-8b", "h100-sxm", instances=4, tp=1, precision="bf16",
                routing="prefix_affinity_bounded", epsilon=0.25)
    assert routed_slot_steer(dataclasses.replace(c, routing="least_loaded"), w, 4, 10) == 0.75
    assert routed_slot_steer(dataclasses.replace(c, routing="least_loaded")) == 1.0
    assert routed_slot_steer(dataclasses.replace(c, routing="round_robin"), w, 4, 10) == 0.0
    assert routed_slot_steer(c) == 0.0
    assert routed_slot_steer(c, w, 4, 100) == pytest.approx(
        0.75 * RQ.bounded_steer_share(w.profile, 4, 0.25, 100))


def _m(W: float, p: float, b: float, classes: list) -> dict:
    """Instance figures whose percentiles are the law's own (service b x uncached tokens)."""
    off = [(pi, b * max(L - c, 1.0)) for pi, c, _, L in classes]
    mean = sum(pi * o for pi, o in off)
    out = dict(ttft=W + mean, wait=W, pwait=p)
    for key, q in (("ttft50", 0.5), ("ttft90", 0.9), ("ttft99", 0.99)):
        out[key] = mixture_quantile(W, p, off, q)
    return out


_CLASSES = [(0.6, 0.0, "dram", 1000.0), (0.3, 0.0, "dram", 4000.0), (0.1, 3000.0, "dram", 8000.0)]


def test_bounded_affinity_mean_rises_with_the_load():
    """An instance law whose wait rises with the rate (P(wait) = ρ, mean ρ/(1 − ρ) s) behind
    the rule on a synthetic trace (epsilon 0.25, 100 blocks per instance): the mean TTFT
    never falls as ρ rises, its percentiles are the instance's, scalar and array alike."""
    tr = kvmodel.synthetic_trace(800, seed=5, rate_per_s=100.0, n_system_prompts=16,
                                 session_fraction=0.6)
    prof = reuse_profile(tr)
    rho = np.linspace(0.1, 0.95, 18)
    ms = [dict(_m(r / (1 - r), r, 1e-3, _CLASSES), util=r) for r in rho]
    got = [RQ.bounded_affinity_waits(prof, 8, 0.25, "lru", 100, m, 1.0) for m in ms]
    assert np.all(np.diff([g["ttft"] for g in got]) >= 0)
    assert all(g["ttft99"] == m["ttft99"] for g, m in zip(got, ms))
    arr = {k: np.array([x[k] for x in ms]) for k in ms[0]}
    vec = RQ.bounded_affinity_waits(prof, 8, 0.25, "lru", np.full(len(rho), 100.0), arr, 1.0)
    assert vec["ttft"] == pytest.approx([g["ttft"] for g in got], rel=1e-9)


def test_no_cache_is_least_loaded():
    """No cache: every request ties at the empty prefix (after the bound's first few), so
    the wait law is the count signal's over all N, least_loaded's (mix (0, ..., 0, 1)) up to
    those few, and every request reads the load."""
    tr = kvmodel.synthetic_trace(800, seed=5, rate_per_s=100.0, n_system_prompts=16,
                                 session_fraction=0.6)
    prof = reuse_profile(tr)
    m = dict(ttft=2.0, ttft50=1.5, ttft90=3.0, ttft99=6.0, wait=0.8, pwait=0.6, util=0.7)
    got = RQ.bounded_affinity_waits(prof, 4, 1e6, "lru", 0, m, 1.0)
    want = RQ.routed_law((0.0, 0.0, 0.0, 1.0), 0.8, 0.6, 1.0, 0.7)
    assert got["wait"] == pytest.approx(want[0], rel=1e-3)
    assert RQ.bounded_steer_share(prof, 4, 1e6, 0) == 1.0


@pytest.mark.slow
def test_unbounded_affinity_overloads_in_both():
    """Unbounded prefix affinity on the router conformance setting (4 x Llama-3.1-8B,
    Mooncake, 50 % of round robin's saturation): the shared system prompt pulls every request
    to the instance that holds it. The closed form calls the cluster unstable; the simulator's
    queue grows through the trace (its mean TTFT is past a thousand seconds where bounded
    affinity's is under one) and more than 90 % of the requests went to one instance."""
    from kvmodel.sim import simulate
    from tests.policies.test_routing_vs_sim import G, M, N, cluster, make_setting
    w, trace, blocks, _ = make_setting(0.5)
    x = kvmodel.evaluate(cluster("prefix_affinity"), w)
    assert not x.stable and not math.isfinite(x.ttft_s)
    s = simulate(M, G, trace(0), instances=N, tp=1, precision="bf16", routing="prefix_affinity",
                 prefix_cache_blocks=blocks, cache_tier="dram", seed=0)
    assert s.ttft_mean_s > 1000.0
    assert float(s.requests_per_instance.max()) > 0.9 * float(s.requests_per_instance.sum())
