"""Non-LRU hit-ratio curves for the closed-form model (kvmodel.workload._policy_curve)."""

import numpy as np
import pytest

import kvmodel
import kvmodel.workload._policy_curve as pc
from kvmodel.workload._policy_curve import EVICTIONS, policy_curve_table, policy_hit_ratio_curve
from kvmodel.workload._reuse_analytic import analytic_hit_ratio_curve, reuse_profile

POLICIES = [e for e in EVICTIONS if e != "lru"]
CASES = [(1, "single"), (4, "prefix_affinity_bounded"), (3, "random"), (2, "round_robin"),
         (3, "prefix_affinity")]
EPS = 0.25


@pytest.fixture(scope="module")
def trace():
    return kvmodel.synthetic_trace(300, seed=4, n_system_prompts=4, turns_mean=3.0)


@pytest.fixture(scope="module")
def prof(trace):
    return reuse_profile(trace)


def exact(trace, caps, n, routing, ev):
    return kvmodel.hit_ratio_curve(trace, np.asarray(caps, np.int64), instances=n,
                                   routing=routing, method="exact", eviction=ev, epsilon=EPS)


def _tag_keys(prof):
    return [k for k in prof._cache if isinstance(k, tuple) and k and k[0] == "policy_curve"]


def test_lru_is_the_analytic_curve(trace, prof):
    caps = np.array([[0, 1, 7, 40], [150, 333.0, 900, 10_000]])
    for n, routing in CASES:
        got = policy_hit_ratio_curve(trace, prof, caps, n, routing, EPS, "lru")
        want = analytic_hit_ratio_curve(prof, caps, instances=n, routing=routing, epsilon=EPS)
        assert got.shape == caps.shape
        np.testing.assert_array_equal(got, want)
    assert not _tag_keys(prof)                      # LRU builds no replay grid


@pytest.mark.parametrize("ev", POLICIES)
@pytest.mark.parametrize("n,routing", CASES)
def test_grid_values_are_the_exact_replay(trace, prof, ev, n, routing):
    tab = policy_curve_table(trace, prof, n, routing, EPS, ev)
    assert tab.per_instance[0] == 0 and tab.per_instance[1:3].tolist() == [1, 2]
    want = exact(trace, tab.capacities, n, routing, ev)
    # The table keeps the running max (Belady's anomaly); equal to the replay where monotone.
    np.testing.assert_array_equal(tab.hit_ratio, np.maximum.accumulate(want))
    for extra in (0, n - 1):                        # per-instance capacity is floor(C / n)
        got = policy_hit_ratio_curve(trace, prof, tab.capacities + extra, n, routing, EPS, ev)
        np.testing.assert_array_equal(got, tab.hit_ratio)
    if np.all(np.diff(want) >= 0):
        np.testing.assert_array_equal(tab.hit_ratio, want)


@pytest.mark.parametrize("ev", POLICIES)
@pytest.mark.parametrize("n,routing", [(1, "single"), (4, "prefix_affinity_bounded")])
def test_off_grid_within_the_segment_rise(trace, prof, ev, n, routing):
    # Tolerance: the interpolant stays within [h_k, h_k+1] of its segment, so wherever the
    # exact curve is monotone the error is at most the segment's rise h_k+1 - h_k. On this
    # 300-request trace segments rise by up to ~0.2; the Mooncake figures are in
    # benchmarks/policy_curve.py (max error < 0.01 at 20 off-grid points).
    tab = policy_curve_table(trace, prof, n, routing, EPS, ev)
    g, h = tab.per_instance, tab.hit_ratio
    rng = np.random.default_rng(0)
    c = np.unique(rng.integers(3, int(g[-1]), 25))
    c = c[~np.isin(c, g)].astype(np.float64)
    got = policy_hit_ratio_curve(trace, prof, c * n, n, routing, EPS, ev)
    want = exact(trace, c * n, n, routing, ev)
    k = np.searchsorted(g, c) - 1
    assert np.all((got >= h[k]) & (got <= h[k + 1]))
    inside = (want >= h[k]) & (want <= h[k + 1])    # exact curve monotone around the point
    assert inside.mean() >= 0.5  # finer grids meet the non-monotone noise of small traces
    assert np.all(np.abs(got - want)[inside] <= (h[k + 1] - h[k])[inside] + 1e-12)
    assert np.mean(np.abs(got - want)) < 0.03


@pytest.mark.parametrize("ev", POLICIES)
@pytest.mark.parametrize("n,routing", CASES)
def test_monotone_zero_at_zero_and_flat_past_saturation(trace, prof, ev, n, routing):
    tab = policy_curve_table(trace, prof, n, routing, EPS, ev)
    top = tab.capacities[-1]
    caps = np.arange(0, int(1.3 * top) + n, max(1, n // 2))
    got = policy_hit_ratio_curve(trace, prof, caps, n, routing, EPS, ev)
    assert np.all(np.diff(got) >= 0)
    assert np.all(got[caps < n] == 0)               # less than one block per instance
    assert policy_hit_ratio_curve(trace, prof, 0, n, routing, EPS, ev) == 0
    beyond = np.array([top, top + n - 1, 2 * top, 10 * top])
    np.testing.assert_array_equal(policy_hit_ratio_curve(trace, prof, beyond, n, routing, EPS, ev),
                                  exact(trace, beyond, n, routing, ev))


def test_vectorised_any_shape(trace, prof):
    caps = np.array([[[0, 5], [60, 700]], [[1e4, 3], [33, 2]]], dtype=float)
    got = policy_hit_ratio_curve(trace, prof, caps, 4, "prefix_affinity_bounded", EPS, "s3fifo")
    assert got.shape == caps.shape
    flat = policy_hit_ratio_curve(trace, prof, caps.ravel(), 4, "prefix_affinity_bounded", EPS,
                                  "s3fifo")
    np.testing.assert_array_equal(got.ravel(), flat)
    assert np.ndim(policy_hit_ratio_curve(trace, prof, 50, 1, "single", EPS, "fifo")) == 0


def test_unknown_eviction_raises_naming_it_and_the_allowed(trace, prof):
    for ev in ("belady", "LRU"):
        with pytest.raises(ValueError, match=repr(ev)) as e:
            policy_hit_ratio_curve(trace, prof, [10], 1, "single", EPS, ev)
        assert all(name in str(e.value) for name in EVICTIONS)


def test_bad_routing_and_capacity_follow_the_analytic_conventions(trace, prof):
    with pytest.raises(ValueError, match="single"):
        policy_hit_ratio_curve(trace, prof, [10], 2, "single", EPS, "fifo")
    with pytest.raises(ValueError, match="routing"):
        policy_hit_ratio_curve(trace, prof, [10], 2, "least_loaded", EPS, "fifo")
    with pytest.raises(ValueError, match=">= 0"):
        policy_hit_ratio_curve(trace, prof, [-1], 1, "single", EPS, "fifo")


def test_cached_second_call_replays_nothing(trace, monkeypatch):
    prof = reuse_profile(trace)
    caps = np.array([0, 40, 400, 4000])
    first = policy_hit_ratio_curve(trace, prof, caps, 4, "prefix_affinity_bounded", EPS, "arc")
    assert len(_tag_keys(prof)) == 2                # the footprint and this table
    size = len(prof._cache)

    def no_replay(*a, **k):
        raise AssertionError("replayed although cached")
    monkeypatch.setattr(pc, "replay", no_replay)
    again = policy_hit_ratio_curve(trace, prof, caps, 4, "prefix_affinity_bounded", EPS, "arc")
    np.testing.assert_array_equal(first, again)
    assert len(prof._cache) == size
    monkeypatch.undo()
    policy_hit_ratio_curve(trace, prof, caps, 4, "prefix_affinity_bounded", EPS, "lfu")
    assert len(prof._cache) == size + 1             # one more table, footprint shared


def test_one_instance_routings_share_one_table(trace, prof):
    caps = np.array([5, 50, 500])
    base = policy_hit_ratio_curve(trace, prof, caps, 1, "single", EPS, "fifo")
    n_keys = len(_tag_keys(prof))
    for routing in ("random", "round_robin", "prefix_affinity", "prefix_affinity_bounded"):
        np.testing.assert_array_equal(
            policy_hit_ratio_curve(trace, prof, caps, 1, routing, EPS, "fifo"), base)
    assert len(_tag_keys(prof)) == n_keys


def test_random_routing_uses_the_replay_seed(trace, prof):
    tab = policy_curve_table(trace, prof, 3, "random", EPS, "fifo", seed=5)
    want = kvmodel.hit_ratio_curve(trace, tab.capacities.astype(np.int64), 3, "random", seed=5,
                                   method="exact", eviction="fifo")
    np.testing.assert_array_equal(tab.hit_ratio, np.maximum.accumulate(want))


def test_trace_or_profile_may_be_omitted(trace, prof):
    caps = np.array([0, 30, 300, 3000])
    want = policy_hit_ratio_curve(trace, prof, caps, 2, "round_robin", EPS, "lfu")
    fresh = reuse_profile(trace)
    np.testing.assert_array_equal(policy_hit_ratio_curve(None, fresh, caps, 2, "round_robin",
                                                         EPS, "lfu"), want)
    np.testing.assert_array_equal(policy_hit_ratio_curve(trace, None, caps, 2, "round_robin",
                                                         EPS, "lfu"), want)
    with pytest.raises(ValueError, match="trace or a profile"):
        policy_hit_ratio_curve(None, None, caps, 2, "round_robin", EPS, "lfu")


def test_empty_trace_is_zero():
    tr = kvmodel.Trace.from_lists([[], []])
    got = policy_hit_ratio_curve(tr, reuse_profile(tr), [0, 5, 50], 1, "single", EPS, "fifo")
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0])
