"""The HBM prefix cache as a partition of the KV pool (``estimate(hbm_cache_fraction=)``,
kvmodel.instance._estimate._cache_partition): the largest batch by hand, monotonicity, and a
vector of fractions beside hit classes stacked on a row axis equal to its scalar evaluations
(the stacks then take the configurations on their last axis, under both the stacked and the
one-call-per-candidate ``best`` paths)."""

import math

import numpy as np
import pytest

import kvmodel
from kvmodel.cluster import kv_capacity_tokens
from kvmodel.tiers import default_node_for_gpu

M, G, I, O = "llama-3.1-8b", "h100-sxm", 9216, 128
FIELDS = ("ttft_s", "ttft_p50_s", "ttft_p99_s", "tpot_s", "e2e_s", "queue_wait_s",
          "saturation_request_rate_per_s", "max_batch", "output_tok_per_s")


def _classes():
    """A miss and hits in HBM, DRAM and SSD of the default node: two stacks of rows."""
    t = kvmodel.node_tiers(default_node_for_gpu(G), G, dram_B=2e12, ssd_B=15e12)
    return [(0.2, 0, "hbm"), (0.1, 4096, t["hbm"]), (0.1, 8192, t["hbm"]),
            (0.15, 4096, t["dram"]), (0.15, 8192, t["dram"]), (0.2, 2048, t["ssd"]),
            (0.1, 6144, t["ssd"])]


def _est(**kw):
    return kvmodel.estimate(M, G, input_len=I, output_len=O, **kw)


def test_largest_batch_is_what_fits_beside_the_partition():
    """floor((1 - f) x pool / (I + O)) by hand: a dense model keeps one KV token per context
    token, so the pool in tokens divides by the request's 9,344 tokens."""
    pool = kv_capacity_tokens(M, G, 1, "bf16", I, O)
    whole = _est(request_rate=1.0).max_batch
    assert whole == math.floor(pool / (I + O))
    for f in (0.25, 0.5, 0.9):
        assert _est(request_rate=1.0, hbm_cache_fraction=f).max_batch == \
            math.floor((1 - f) * pool / (I + O)), f


def test_a_larger_partition_never_serves_more():
    fs = [0.0, 0.3, 0.6, 0.8, 0.9]
    es = [_est(request_rate=2.0, prefix_classes=_classes(), hbm_cache_fraction=f) for f in fs]
    for a, b in zip(es, es[1:]):
        assert b.max_batch <= a.max_batch
        assert b.saturation_request_rate_per_s <= a.saturation_request_rate_per_s * (1 + 1e-12)


def test_a_partition_that_leaves_no_request_is_infeasible_with_its_reason():
    e = _est(request_rate=1.0, hbm_cache_fraction=0.999)
    assert not e.feasible and "HBM prefix cache" in str(e.reason)


def test_fraction_out_of_range_names_the_field():
    with pytest.raises(ValueError, match="hbm_cache_fraction"):
        _est(request_rate=1.0, hbm_cache_fraction=1.5)


@pytest.mark.parametrize("n", [9, 300])  # 300: above _STACK_MAX, one run per candidate policy
def test_a_vector_of_fractions_beside_stacked_classes_equals_its_scalars(n):
    fs = np.round(np.linspace(0.0, 0.9, n), 2)  # (300: configurations sharing a batch)
    vec = _est(request_rate=3.0, prefix_classes=_classes(), hbm_cache_fraction=fs)
    for i in sorted({0, 1, n // 2, n - 2, n - 1}):
        one = _est(request_rate=3.0, prefix_classes=_classes(), hbm_cache_fraction=float(fs[i]))
        for f in FIELDS:
            a, b = float(np.asarray(getattr(vec, f))[i]), float(getattr(one, f))
            assert a == pytest.approx(b, rel=1e-7) or (math.isinf(a) and a == b), (f, i)
