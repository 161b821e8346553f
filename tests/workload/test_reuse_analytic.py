"""Tests of the analytic (Che/TTL) prefix-cache hit-ratio model against an LRU replay oracle."""

from __future__ import annotations

import json
import math
import random
from collections import OrderedDict

import numpy as np
import pytest

from kvmodel.workload._reuse_analytic import ReuseProfile, analytic_hit_ratio_curve, reuse_profile
from kvmodel.workload._trace_types import Trace
from kvmodel.workload.traces import DATA_DIR

TRACES = DATA_DIR  # the built-in traces bundled in the package


# ----------------------------------------------------------------------------- oracle

def _prefix_len(cache: OrderedDict, chain) -> int:
    n = 0
    for b in chain:
        if b not in cache:
            break
        n += 1
    return n


def _route(chain, caches, counts, routing, rng, k, eps) -> int:
    n = len(caches)
    if routing in ("single", "round_robin"):
        return k % n
    if routing == "random":
        return rng.randrange(n)
    allowed = range(n)
    if routing == "prefix_affinity_bounded":
        bound = math.ceil((1 + eps) * (k + 1) / n)
        allowed = [i for i in range(n) if counts[i] + 1 <= bound]
    return max(allowed, key=lambda i: (_prefix_len(caches[i], chain), -counts[i], -i))


def lru_replay(chains, capacity: int, instances: int = 1, routing: str = "single",
               seed: int = 0, epsilon: float = 0.25) -> float:
    """Obviously-correct exact replay: hit = resident prefix at arrival, then refresh
    deepest-first (insert at MRU, evict LRU), per-instance capacity floor(C / N)."""
    cap = int(capacity) // instances
    caches = [OrderedDict() for _ in range(instances)]
    counts = [0] * instances
    rng = random.Random(seed)
    hits = total = 0
    for k, chain in enumerate(chains):
        c = _route(chain, caches, counts, routing, rng, k, epsilon)
        cache = caches[c]
        hits += _prefix_len(cache, chain)
        total += len(chain)
        for b in reversed(chain):
            if b in cache:
                cache.move_to_end(b)
            elif cap > 0:
                cache[b] = None
                if len(cache) > cap:
                    cache.popitem(last=False)
        counts[c] += 1
    return hits / total if total else 0.0


def load_chains(name: str, limit: int | None = None) -> list[list[int]]:
    with open(TRACES / name) as f:
        chains = [json.loads(line)["hash_ids"] for line in f]
    return chains[:limit] if limit else chains


# ----------------------------------------------------------------------------- hand cases

def test_identical_requests():
    n, chain = 50, [1, 2, 3, 4]
    t = Trace.from_lists([chain] * n)
    hr = analytic_hit_ratio_curve(t, [0, 4, 10, 1000])
    assert hr[0] == 0.0
    assert hr[1:] == pytest.approx((n - 1) / n)
    for c in (4, 10):
        assert lru_replay([chain] * n, c) == pytest.approx((n - 1) / n)


def test_capacity_above_unique_is_cold_miss_only():
    rng = np.random.default_rng(1)
    chains = [[0] + list(rng.integers(1, 40, size=rng.integers(1, 5))) for _ in range(200)]
    chains = [list(dict.fromkeys(c)) for c in chains]
    t = Trace.from_lists(chains)
    prof = reuse_profile(t)
    # non-chained ids: exact prefix rule still needs all ancestors present
    cold_only = lru_replay(chains, t.unique_blocks)
    got = analytic_hit_ratio_curve(prof, [t.unique_blocks, 10 * t.unique_blocks])
    assert got == pytest.approx([cold_only] * 2)


def test_empty_and_zero():
    assert analytic_hit_ratio_curve(Trace.from_lists([]), [0, 5]).tolist() == [0.0, 0.0]
    t = Trace.from_lists([[1, 2], [1, 2]])
    assert analytic_hit_ratio_curve(t, [0.0, 0.9, 1.9], instances=1).tolist()[0] == 0.0


def test_one_block_capacity_keeps_root():
    # capacity 1 holds the root of the previous request (refreshed last): exact TTL X = 1
    chains = [[1, 2], [1, 3], [4], [4, 5]]
    t = Trace.from_lists(chains)
    assert analytic_hit_ratio_curve(t, [1])[0] == pytest.approx(lru_replay(chains, 1))


# ----------------------------------------------------------------------------- properties

@pytest.fixture(scope="module")
def conv_sample():
    chains = load_chains("conversation_trace.jsonl", 2500)
    return chains, reuse_profile(Trace.from_lists(chains))


def test_monotone_and_bounded(conv_sample):
    _, prof = conv_sample
    caps = np.linspace(0, 2 * prof.unique_blocks, 200)
    cold_only = 1 - prof.unique_blocks / prof.total_accesses
    for n, routing in [(1, "single"), (4, "random"), (4, "round_robin"), (4, "prefix_affinity"),
                       (4, "prefix_affinity_bounded")]:
        hr = analytic_hit_ratio_curve(prof, caps, instances=n, routing=routing)
        assert np.all(np.diff(hr) >= -1e-12), routing
        assert hr[0] == 0.0 and np.all(hr <= cold_only + 1e-12)


def test_vectorised_equals_pointwise(conv_sample):
    _, prof = conv_sample
    caps = np.array([0, 3, 50, 400, 1234.5, 9000])
    for n, routing in [(1, "single"), (8, "random"), (3, "round_robin"), (4, "prefix_affinity")]:
        vec = analytic_hit_ratio_curve(prof, caps, instances=n, routing=routing)
        pts = [analytic_hit_ratio_curve(prof, [c], instances=n, routing=routing)[0] for c in caps]
        np.testing.assert_allclose(vec, pts, rtol=0, atol=1e-15)
    assert analytic_hit_ratio_curve(prof, 100.0).shape == ()


def test_profile_is_frozen_arrays(conv_sample):
    _, prof = conv_sample
    assert isinstance(prof, ReuseProfile)
    with pytest.raises(AttributeError):
        prof.total_accesses = 1  # type: ignore[misc]


@pytest.mark.parametrize("kwargs", [dict(capacities_blocks=[-1]), dict(capacities_blocks=[np.nan]),
                                    dict(capacities_blocks=[1], routing="nope"),
                                    dict(capacities_blocks=[1], instances=0, routing="random"),
                                    dict(capacities_blocks=[1], instances=2, routing="single"),
                                    dict(capacities_blocks=[1], instances=2, routing="random",
                                         epsilon=-1)])
def test_bad_input(kwargs):
    with pytest.raises(ValueError):
        analytic_hit_ratio_curve(Trace.from_lists([[1]]), **kwargs)


# ----------------------------------------------------------------------------- vs oracle

def _zipf_chains(n_req=20000, n_items=2000, alpha=0.8, seed=0):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1) ** alpha
    return [[int(x)] for x in rng.choice(n_items, size=n_req, p=p / p.sum())]


def test_irm_zipf_single_and_random():
    chains = _zipf_chains()
    prof = reuse_profile(Trace.from_lists(chains))
    caps = [50, 200, 600, 1200]
    got = analytic_hit_ratio_curve(prof, caps)
    exact = [lru_replay(chains, c) for c in caps]
    np.testing.assert_allclose(got, exact, atol=0.01)
    got4 = analytic_hit_ratio_curve(prof, caps, instances=4, routing="random")
    exact4 = [lru_replay(chains, c, 4, "random") for c in caps]
    np.testing.assert_allclose(got4, exact4, atol=0.015)


def test_conversation_sample_vs_oracle(conv_sample):
    chains, prof = conv_sample
    caps = [200, 1000, 4000, 15000]
    cases = [(1, "single", 0.02), (4, "random", 0.03), (4, "round_robin", 0.03),
             (4, "prefix_affinity", 0.03)]
    for n, routing, tol in cases:
        got = analytic_hit_ratio_curve(prof, caps, instances=n, routing=routing)
        exact = [lru_replay(chains, c, n, routing) for c in caps]
        np.testing.assert_allclose(got, exact, atol=tol, err_msg=f"{routing} N={n}")
