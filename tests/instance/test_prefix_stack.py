"""Hit classes of several tiers built as one stacked prefix (kvmodel.instance._estimate
._rows_prefix) and the rate-independent memo of the prefix mixture: the same numbers as
classes built one by one, the harmonic saturation of the classes' own throughput-max rates,
and no memo shared between calibrations."""

import numpy as np
import pytest

import kvmodel
from kvmodel.catalog.hardware import current
from kvmodel.tiers import default_node_for_gpu

M, G, I, O = "llama-3.1-8b", "h100-sxm", 9216, 128
FIELDS = ("ttft_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_s", "tpot_p99_s", "e2e_s",
          "queue_wait_s", "saturation_request_rate_per_s")


def _classes(ssd_B=15e12):
    """A miss and hits in HBM, DRAM and SSD of the default node (two prefix lengths each).
    15 TB of SSD: four of the node's 3.84 TB drives (3.25 GB/s per GPU), where the SSD classes'
    saturation is set by their loads in both the plain and the mixture estimate."""
    t = kvmodel.node_tiers(default_node_for_gpu(G), G, dram_B=2e12, ssd_B=ssd_B)
    return [(0.2, 0, "hbm"), (0.1, 4096, t["hbm"]), (0.1, 8192, t["hbm"]), (0.15, 4096, t["dram"]),
            (0.15, 8192, t["dram"]), (0.2, 2048, t["ssd"]), (0.1, 6144, t["ssd"])]


def _est(**kw):
    return kvmodel.estimate(M, G, input_len=I, output_len=O, **kw)


def test_stacked_tiers_equal_classes_built_one_by_one():
    cls = _classes()
    stacked = _est(request_rate=1.0, prefix_classes=cls)
    # arrays of one element take the per-class path (no stack across classes)
    one_by_one = _est(request_rate=1.0, prefix_classes=[(p, np.array([n]), t) for p, n, t in cls])
    assert stacked.stable and stacked.path_utilisation
    for f in FIELDS:
        assert getattr(stacked, f) == pytest.approx(float(getattr(one_by_one, f)[0]), rel=1e-12), f
    for k, u in stacked.path_utilisation.items():
        assert u == pytest.approx(float(one_by_one.path_utilisation[k][0]), rel=1e-12), k


def test_saturation_is_the_harmonic_mix_of_each_class_alone():
    cls = _classes()
    mix = _est(request_rate=1.0, prefix_classes=cls).saturation_request_rate_per_s
    # each class alone as a one-class mixture (a plain HBM prefix would also take its own
    # partition off the KV slots; hit classes live in the caller's cache partition)
    alone = [_est(request_rate=1.0, prefix_classes=[(1.0, n, t)]).saturation_request_rate_per_s
             for _, n, t in cls]
    plain = [_est(batch="max", cached_prefix_len=n, cache_tier=t) for _, n, t in cls[3:]]
    assert [e.saturation_request_rate_per_s for e in plain] == pytest.approx(alone[3:], rel=1e-12)
    assert mix == pytest.approx(1.0 / sum(p / r for (p, _, _), r in zip(cls, alone)), rel=1e-12)


def test_memo_gives_the_fresh_result_and_follows_the_calibration():
    cls = _classes()
    current()._memo.pop("prefix_mix", None)
    fresh = _est(request_rate=1.0, prefix_classes=cls)
    again = _est(request_rate=1.0, prefix_classes=cls)  # from the memo
    other_rate = _est(request_rate=0.5, prefix_classes=cls)  # the memo serves every rate
    slow = dict(memory_efficiency_factor=0.5)
    cal = _est(request_rate=0.5, prefix_classes=cls, calibration=slow)
    current()._memo.pop("prefix_mix", None)
    assert [getattr(again, f) for f in FIELDS] == [getattr(fresh, f) for f in FIELDS]
    assert other_rate.ttft_s == _est(request_rate=0.5, prefix_classes=cls).ttft_s
    current()._memo.pop("prefix_mix", None)
    assert cal.ttft_s == _est(request_rate=0.5, prefix_classes=cls, calibration=slow).ttft_s
    assert cal.ttft_s > other_rate.ttft_s  # half the HBM bandwidth: not the memoised mixture


def _reweighted(cls, probs, **tiers):
    """``cls`` with new probabilities and its tiers rebuilt (new objects) with ``tiers``'
    capacities: what a search's new configuration passes."""
    t = kvmodel.node_tiers(default_node_for_gpu(G), G, **({"dram_B": 2e12, "ssd_B": 15e12}
                                                          | tiers))
    return [(p, n, tier if isinstance(tier, str) else t[tier.kind])
            for p, (_, n, tier) in zip(probs, cls)]


def test_memo_serves_new_probabilities_and_capacities_with_the_fresh_numbers():
    """The memo keys a mixture's prefixes without the classes' probabilities and its tiers
    by kind, device and path (not capacity): a new configuration whose larger DRAM only
    moves the hit probabilities reuses them, with the very numbers built afresh; a tier
    whose path changes (more SSD drives) is built anew."""
    cls = _classes()
    probs = [0.1, 0.1, 0.1, 0.25, 0.25, 0.1, 0.1]
    current()._memo.pop("prefix_mix", None)
    fresh = [_est(request_rate=r, prefix_classes=_reweighted(cls, probs, dram_B=3e12))
             for r in (0.5, 1.0)]
    fresh_ssd = _est(request_rate=1.0, prefix_classes=_reweighted(cls, probs, ssd_B=30e12))
    current()._memo.pop("prefix_mix", None)
    _est(request_rate=1.0, prefix_classes=cls)  # the memo's entry: other probabilities, 2 TB
    memo = current()._memo["prefix_mix"]
    got = [_est(request_rate=r, prefix_classes=_reweighted(cls, probs, dram_B=3e12))
           for r in (0.5, 1.0)]
    assert len(memo) == 1  # served from the entry
    got_ssd = _est(request_rate=1.0, prefix_classes=_reweighted(cls, probs, ssd_B=30e12))
    assert len(memo) == 2  # eight drives: another path, another entry
    for a, b in zip(got + [got_ssd], fresh + [fresh_ssd]):
        assert a.to_dict() == b.to_dict()
    assert got_ssd.ttft_s != got[1].ttft_s and got[1].ttft_s != _est(
        request_rate=1.0, prefix_classes=cls).ttft_s


def test_large_grids_computed_on_distinct_prefixes_equal_the_direct_computation(monkeypatch):
    import kvmodel.instance._prefix as prefix
    from kvmodel.cluster import Cluster, Workload, evaluate
    rng = np.random.default_rng(3)
    n = 2 * prefix._DISTINCT_MIN
    c = Cluster("llama-3.1-8b", G, instances=4, tp=1, sharing="central_pool",
                dram_B=10 ** rng.uniform(9, 12, n), ssd_B=10 ** rng.uniform(10, 13, n),
                hbm_cache_fraction=rng.uniform(0, 0.9, n))
    w = Workload(kvmodel.load_trace("mooncake-conversation"), request_rate=4.0)
    fast = evaluate(c, w)
    monkeypatch.setattr(prefix, "_DISTINCT_MIN", 10 ** 12)  # every element computed directly
    direct = evaluate(c, w)
    assert np.isfinite(fast.ttft_p99_s).mean() > 0.5
    for f in ("ttft_s", "ttft_p99_s", "tpot_s", "goodput_per_s"):
        np.testing.assert_array_equal(getattr(fast, f), getattr(direct, f), err_msg=f)
    np.testing.assert_array_equal(fast.instances["instance"].saturation_request_rate_per_s,
                                  direct.instances["instance"].saturation_request_rate_per_s)


def test_fast_ssd_hits_agree_between_plain_and_mixture():
    # found when the SSD drive count was fixed (30 TB: eight drives, 6.5 GB/s per GPU): the
    # plain estimate took batch="max"'s saturation from the candidate "best" picks by TTFT
    # (recompute, 3.336 req/s) and the mixture from each class's uncontended choice (load:
    # 2048 3.229, 6144 4.185); both now take the fastest candidate (2048: recompute 3.336,
    # 6144: split 4.413), in every mode and at every offered rate
    cls = _classes(ssd_B=30e12)
    alone = [_est(request_rate=1.0, prefix_classes=[(1.0, n, t)]).saturation_request_rate_per_s
             for _, n, t in cls[5:]]
    plain = [_est(batch="max", cached_prefix_len=n, cache_tier=t).saturation_request_rate_per_s
             for _, n, t in cls[5:]]
    assert plain == pytest.approx(alone, rel=1e-9)
    at_rates = [_est(request_rate=r, cached_prefix_len=n, cache_tier=t).saturation_request_rate_per_s
                for _, n, t in cls[5:] for r in (1.0, 3.0)]
    assert at_rates == pytest.approx([a for a in alone for _ in (1, 2)], rel=1e-12)


def test_fast_ssd_mixture_holds_only_within_its_classes_own_choices():
    """Half misses, half 2048-token SSD hits (8 drives): the hits' own choice is to load
    (3.229 req/s alone), best's fastest candidate recomputes (3.336, the misses' rate too), so
    the mixture saturates at 3.336 but is served, and stable, only below the harmonic mix of
    the own choices, 1 / (0.5 / 3.336 + 0.5 / 3.229) = 3.281 req/s."""
    ssd = _classes(ssd_B=30e12)[5][2]
    cls = [(0.5, 0, "hbm"), (0.5, 2048, ssd)]
    miss = _est(batch="max").saturation_request_rate_per_s
    load = _est(request_rate=1.0, prefix_classes=[(1.0, 2048, ssd)],
                prefix_policy="load").saturation_request_rate_per_s
    own = 1.0 / (0.5 / miss + 0.5 / load)
    assert _est(request_rate=1.0, prefix_classes=cls).saturation_request_rate_per_s == \
        pytest.approx(miss, rel=1e-12)
    assert _est(request_rate=0.99 * own, prefix_classes=cls).stable
    between = _est(request_rate=0.5 * (own + miss), prefix_classes=cls)
    assert not between.stable
    assert f"own prefix choices saturate ({own:.4g} requests/s)" in between.reason
