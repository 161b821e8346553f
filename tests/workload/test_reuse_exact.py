"""Exact prefix-cache hit ratios: hand-worked cases, a replay oracle, policies and routing."""

import json
import math
from collections import OrderedDict

import numpy as np
import pytest

from kvmodel.workload._reuse_exact import (
    EVICTION_POLICIES,
    ROUTINGS,
    _count_lower_left,
    _pre_request_depths,
    exact_hit_ratio_curve,
    lru_hit_thresholds,
    replay,
)
from kvmodel.workload._trace_types import Trace
from kvmodel.workload.traces import builtin_path

A, B, C, D = 10, 11, 12, 13
CONVERSATION = builtin_path("mooncake-conversation")


def oracle_lru(chains, capacity):
    """Obviously-correct LRU replay: prefix hit, then refresh last block first."""
    cache, hits = OrderedDict(), 0
    for chain in chains:
        n = 0
        while n < len(chain) and chain[n] in cache:
            n += 1
        hits += n
        for b in reversed(chain):
            cache.pop(b, None)
            cache[b] = None
            while len(cache) > capacity:
                cache.popitem(last=False)
    total = sum(map(len, chains))
    return hits / total


def tree_chains(rng, n_req, p_new=0.3):
    """Random prefix-closed chains: each request extends a prefix of an earlier chain."""
    chains, nid = [], 0
    for _ in range(n_req):
        base = []
        if chains and rng.random() > p_new:
            prev = chains[rng.integers(len(chains))]
            base = list(prev[:rng.integers(0, len(prev) + 1)])
        for _ in range(rng.integers(0 if base else 1, 4)):
            base.append(nid)
            nid += 1
        chains.append(base)
    return chains


def curve(chains, caps, **kw):
    return exact_hit_ratio_curve(Trace.from_lists(chains), caps, **kw)


# ------------------------------------------------------------------- hand-worked cases

def test_last_block_first_refresh_matters():
    # Capacity 2, [a,b,c] then [a,b]. Refresh c, b, a: c in, b in, a evicts c -> {a,b};
    # request 2 hits 2 of its 2 blocks: 2 / 5 = 0.4. (First-block-first would keep {b,c}: 0.)
    chains = [[A, B, C], [A, B]]
    assert curve(chains, [2])[0] == pytest.approx(0.4)
    # C=1: refresh leaves {a}: request 2 hits a -> 1/5. C>=3: 2/5.
    np.testing.assert_allclose(curve(chains, [0, 1, 2, 3, 9]), [0, 0.2, 0.4, 0.4, 0.4])


def test_prefix_rule_uses_prefix_max_of_depths():
    # [a,b], [b], [a,b]. After req1 the stack is (a, b). req2 [b]: depth 2, stack (b, a).
    # req3: a depth 2, b depth 1 -> thresholds 2, 2. At C=1 the cache is {b}: b is resident
    # but a is not, so req3 hits 0. At C=2: req2 hits 1, req3 hits 2 -> 3/5.
    chains = [[A, B], [B], [A, B]]
    never = 6
    np.testing.assert_array_equal(lru_hit_thresholds(Trace.from_lists(chains)),
                                  [never, never, 2, 2, 2])
    np.testing.assert_allclose(curve(chains, [0, 1, 2, 3]), [0, 0, 0.6, 0.6])


def test_fifo_differs_from_lru_by_hand():
    # C=2, [a],[b],[a],[c],[a]. LRU: a hit moves a to MRU, c evicts b, a hits: 2/5.
    # FIFO: the hit does not reorder, c evicts a, a misses: 1/5.
    chains = [[A], [B], [A], [C], [A]]
    assert curve(chains, [2])[0] == pytest.approx(0.4)
    assert curve(chains, [2], eviction="fifo")[0] == pytest.approx(0.2)


def test_admit_after_reuse_by_hand():
    # a first seen -> ghost only; second sighting admits (miss); third hits: 1/3.
    assert curve([[A], [A], [A]], [5], eviction="lru-admit-reuse")[0] == pytest.approx(1 / 3)


def test_round_robin_identical_requests():
    # 6 x [a,b,c] on 3 instances: each instance gets 2 requests. C=9 (3 each): 2nd hits 3 ->
    # 9/18. C=8 -> 2 each (floor): refresh c,b,a leaves {a,b}, 2nd hits 2 -> 6/18.
    # One instance, C=3: 5 of 6 requests hit fully -> 15/18.
    chains = [[A, B, C]] * 6
    assert curve(chains, [9], instances=3, routing="round_robin")[0] == pytest.approx(0.5)
    assert curve(chains, [8], instances=3, routing="round_robin")[0] == pytest.approx(1 / 3)
    assert curve(chains, [3])[0] == pytest.approx(15 / 18)


# ------------------------------------------------------------- one-pass LRU vs oracle

@pytest.mark.parametrize("seed", range(30))
def test_stack_curve_equals_replay_oracle_on_trees(seed):
    chains = tree_chains(np.random.default_rng(seed), 40)
    caps = np.arange(0, len({b for c in chains for b in c}) + 2)
    expect = [oracle_lru(chains, c) for c in caps]
    np.testing.assert_allclose(curve(chains, caps), expect, atol=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_stack_curve_equals_oracle_on_arbitrary_chains(seed):
    # Not prefix-closed, and with repeated ids inside a chain: the prefix-max rule still holds.
    rng = np.random.default_rng(100 + seed)
    chains = [rng.integers(0, 7, rng.integers(1, 6)).tolist() for _ in range(40)]
    caps = np.arange(0, 9)
    np.testing.assert_allclose(curve(chains, caps), [oracle_lru(chains, c) for c in caps])


@pytest.mark.parametrize("seed", range(5))
def test_tree_depths_increase_along_chain(seed):
    # Prefix-closed + deep-first refresh: a parent is always touched right after its child, so
    # its depth is smaller; cold (never seen) blocks only form a chain's tail.
    trace = Trace.from_lists(tree_chains(np.random.default_rng(seed), 60))
    depth_t, t = _pre_request_depths(trace)
    depth = depth_t[t]
    for i in range(len(trace)):
        d = depth[trace.block_offsets[i]:trace.block_offsets[i + 1]]
        warm = d[d > 0]
        assert np.all(np.diff(warm) > 0)
        assert np.all(d[:len(warm)] > 0)


def test_monotone_and_cold_miss_limit():
    chains = tree_chains(np.random.default_rng(7), 200)
    trace = Trace.from_lists(chains)
    r = exact_hit_ratio_curve(trace, np.arange(0, trace.unique_blocks + 3))
    assert np.all(np.diff(r) >= 0) and r[0] == 0
    cold_only = 1 - trace.unique_blocks / trace.total_blocks
    np.testing.assert_allclose(r[trace.unique_blocks:], cold_only)


def test_shape_and_empty_trace():
    # [a,b] twice: the stack after request 1 is (a, b): C=1 hits a only (1/4), C>=2 both (2/4).
    trace = Trace.from_lists([[A, B], [A, B]])
    out = exact_hit_ratio_curve(trace, np.array([[0, 1], [2, 3]]))
    assert out.shape == (2, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out, [[0, 0.25], [0.5, 0.5]])
    assert exact_hit_ratio_curve(Trace.from_lists([]), [0, 4]).tolist() == [0, 0]


def test_count_lower_left_matches_brute_force():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 51, 50)
    qx, qy = rng.integers(0, 51, 200), rng.integers(0, 52, 200)
    brute = [(y[:a] < b).sum() for a, b in zip(qx, qy)]
    np.testing.assert_array_equal(_count_lower_left(y, qx, qy), brute)


def test_real_trace_slice_matches_replay():
    with open(CONVERSATION) as f:
        chains = [json.loads(line)["hash_ids"] for _, line in zip(range(1500), f)]
    trace = Trace.from_lists(chains)
    for c in (0, 500, 3000, 20000):
        assert exact_hit_ratio_curve(trace, [c])[0] == pytest.approx(oracle_lru(chains, c))


# ------------------------------------------------------------------ eviction policies

@pytest.mark.parametrize("eviction", sorted(EVICTION_POLICIES))
def test_policies_bounded_and_agree_at_extremes(eviction):
    chains = tree_chains(np.random.default_rng(11), 120)
    trace = Trace.from_lists(chains)
    big = trace.unique_blocks
    caps = [0, 1, 3, 10, 30, big, 2 * big]
    r = exact_hit_ratio_curve(trace, caps, eviction=eviction)
    assert np.all((r >= 0) & (r <= 1)) and r[0] == 0
    if eviction != "lru-admit-reuse":  # everything else never evicts once all blocks fit
        lru = exact_hit_ratio_curve(trace, [big, 2 * big])
        np.testing.assert_allclose(r[-2:], lru)


@pytest.mark.parametrize("eviction", sorted(EVICTION_POLICIES))
@pytest.mark.parametrize("capacity", [1, 2, 5])
def test_policies_never_exceed_capacity(eviction, capacity):
    rng = np.random.default_rng(capacity)
    cache = EVICTION_POLICIES[eviction](capacity)
    for b in rng.integers(0, 12, 400).tolist():
        cache.touch(b)
        assert sum(cache.contains(x) for x in range(12)) <= capacity
    assert cache.contains(b) or eviction == "lru-admit-reuse"


def test_lru_replay_matches_curve():
    chains = tree_chains(np.random.default_rng(5), 80)
    trace = Trace.from_lists(chains)
    caps = range(0, trace.unique_blocks + 1, 3)
    np.testing.assert_allclose([replay(trace, c).hit_ratio for c in caps],
                               exact_hit_ratio_curve(trace, list(caps)))


# ------------------------------------------------------------------------------ routing

def shared_prefix_chains(rng, groups=8, n_req=400):
    """Requests of `groups` conversations: a 6-block group prefix plus one fresh block."""
    chains, nid = [], 1000
    for g in rng.integers(0, groups, n_req).tolist():
        chains.append([g * 10 + j for j in range(6)] + [nid])
        nid += 1
    return chains


def test_prefix_affinity_beats_random():
    chains = shared_prefix_chains(np.random.default_rng(0))
    kw = dict(instances=4, seed=12345)  # not the trace's seed: same stream would correlate
    aff = curve(chains, [40], routing="prefix_affinity", **kw)[0]
    rnd = curve(chains, [40], routing="random", **kw)[0]
    assert aff > rnd


def test_random_routing_is_seeded():
    chains = shared_prefix_chains(np.random.default_rng(1))
    a, b = (curve(chains, [20, 40], instances=3, routing="random", seed=4) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_bounded_affinity_respects_load_bound():
    # Identical requests: plain affinity sends every request after the first to instance 0;
    # the bounded variant keeps every instance <= ceil((1+eps) * k / N) after k requests.
    n, eps = 4, 0.25
    for m in range(1, 30):
        trace = Trace.from_lists([[A, B, C]] * m)
        plain = replay(trace, 40, n, "prefix_affinity").requests_per_instance
        assert plain.tolist() == [m, 0, 0, 0]
        counts = replay(trace, 40, n, "prefix_affinity_bounded", epsilon=eps).requests_per_instance
        assert counts.sum() == m and counts.max() <= math.ceil((1 + eps) * m / n)


def test_bounded_with_loose_bound_equals_affinity():
    chains = shared_prefix_chains(np.random.default_rng(2), n_req=100)
    kw = dict(instances=3)
    np.testing.assert_allclose(curve(chains, [30], routing="prefix_affinity", **kw),
                               curve(chains, [30], routing="prefix_affinity_bounded",
                                     epsilon=100.0, **kw))


@pytest.mark.parametrize("routing", ROUTINGS[1:])
def test_one_instance_routing_equals_single(routing):
    chains = tree_chains(np.random.default_rng(9), 60)
    caps = [0, 2, 7, 20]
    np.testing.assert_allclose(curve(chains, caps, routing=routing), curve(chains, caps))


# ---------------------------------------------------------------------------- validation

@pytest.mark.parametrize("kw, word", [
    (dict(routing="nearest"), "routing"),
    (dict(eviction="mru"), "eviction"),
    (dict(instances=0, routing="random"), "instances"),
    (dict(instances=2), "instances"),
    (dict(epsilon=0.0, routing="prefix_affinity_bounded"), "epsilon"),
    (dict(capacities_blocks=[-1]), "capacities_blocks"),
    (dict(capacities_blocks=[1.5]), "capacities_blocks"),
])
def test_invalid_arguments(kw, word):
    args = dict(capacities_blocks=[1])
    args.update(kw)
    with pytest.raises(ValueError, match=word):
        exact_hit_ratio_curve(Trace.from_lists([[A]]), **args)
