"""Bounded prefix affinity's steering share at a cache that never evicts comes from the
no-eviction assignment (:func:`kvmodel.workload._reuse_analytic.assignment`) instead of a
second replay: the two replays must count the same ties and the same bound exclusions (an LRU
cache at least as large as the most distinct blocks an instance takes never evicts, so it
routes exactly as the assignment without eviction)."""

import pytest

from kvmodel.cluster._routing_queue import (
    _distinct_per_instance,
    _replay_lru,
    _replay_policy,
    bounded_steer_share,
)
from kvmodel.workload import synthetic_trace
from kvmodel.workload._reuse_analytic import reuse_profile


@pytest.fixture(scope="module")
def trace():
    return synthetic_trace(1500, seed=3, rate_per_s=4.0, n_system_prompts=5,
                           session_fraction=0.7, block_tokens=64)


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.5])
def test_full_cache_counts_are_the_assignment_s(trace, n, eps):
    prof = reuse_profile(trace)
    full = _distinct_per_instance(prof, n, eps)  # builds the assignment and its counts
    ties, excluded = (prof._cache[("infinite_ties", n, True, eps)],
                      prof._cache[("infinite_excluded", n, eps)])
    assert sum(ties) == prof.n_requests
    for cap in (full, 4 * full):
        assert _replay_lru(prof, n, eps, cap) == (list(ties), excluded)
        assert _replay_policy(prof, n, eps, cap, "lru") == (list(ties), excluded)
    bounded_steer_share(prof, n, eps, 10 * full)  # its top anchor is the full cache
    share = (sum(ties[1:]) + excluded) / prof.n_requests
    assert prof._cache[("pab_steer", n, eps, full, "lru")] == share


def test_a_tight_bound_excludes_someone(trace):
    """The exclusion count is live on this trace (else the identity above is vacuous)."""
    prof = reuse_profile(trace)
    _distinct_per_instance(prof, 3, 0.0)
    assert prof._cache[("infinite_excluded", 3, 0.0)] > 0
