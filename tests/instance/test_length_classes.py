"""Prompt-length classes in the open loop: ``prefix_classes`` entries carrying their own
input_len, and ``length_cv`` > 0 as lognormal quantile-band classes (kvmodel.instance._mixture)."""

import numpy as np
import pytest

import kvmodel
from kvmodel.instance._mixture import TAIL_BANDS, length_bands

M, G, O = "llama-3.1-8b", "h100-sxm", 128


def _est(**kw):
    return kvmodel.estimate(M, G, output_len=O, **kw)


def test_one_length_class_is_todays_result_exactly():
    a = _est(input_len=4096, request_rate=3.0)
    b = _est(input_len=4096, request_rate=3.0, prefix_classes=[(1.0, 0, "hbm", 4096)])
    for f in ("ttft_s", "ttft_p99_s", "tpot_s", "saturation_request_rate_per_s"):
        assert getattr(b, f) == pytest.approx(getattr(a, f), rel=1e-9), f


def test_two_equal_lengths_by_hand():
    """Two equally likely prompts of 1024 and 7168 tokens (mean 4096) at light load: each
    class's TTFT is (nearly) its own prompt's alone, so the mean is the average of the two
    single-length estimates and the p99 is the long prompt's; the mean exceeds the
    4096-token prompt's (prefill is convex in length)."""
    lam = 0.01
    cls = [(0.5, 0, "hbm", 1024), (0.5, 0, "hbm", 7168)]
    mix = _est(input_len=4096, request_rate=lam, prefix_classes=cls)
    short = _est(input_len=1024, request_rate=lam)
    long_ = _est(input_len=7168, request_rate=lam)
    mean = _est(input_len=4096, request_rate=lam)
    assert mix.ttft_s == pytest.approx((short.ttft_s + long_.ttft_s) / 2, rel=0.03)
    assert mix.ttft_p99_s == pytest.approx(long_.ttft_s, rel=0.05)
    assert mix.ttft_s > mean.ttft_s
    assert mix.tpot_s == pytest.approx(mean.tpot_s, rel=0.02)  # decode keeps the mean context


def test_p99_grows_with_the_length_spread():
    p99 = [_est(input_len=2048, request_rate=2.0, length_cv=cv).ttft_p99_s
           for cv in (0.0, 0.5, 1.0, 1.5)]
    assert np.all(np.diff(p99) > 0)


def test_array_length_cv_matches_scalars():
    cv = np.array([0.3, 1.2])
    v = _est(input_len=2048, request_rate=2.0, length_cv=cv)
    for i, c in enumerate(cv):
        e = _est(input_len=2048, request_rate=2.0, length_cv=float(c))
        assert v.ttft_p99_s[i] == pytest.approx(e.ttft_p99_s, rel=1e-9)
        assert v.ttft_s[i] == pytest.approx(e.ttft_s, rel=1e-9)


def test_lognormal_bands_average_to_one_and_hold_the_tail():
    bands = length_bands(1.3)
    assert sum(p for p, _ in bands) == pytest.approx(1.0)
    assert sum(p * m for p, m in bands) == pytest.approx(1.0)
    assert len(bands) == len(TAIL_BANDS) - 1
    assert [m for _, m in bands] == sorted(m for _, m in bands)
    assert all(m == pytest.approx(1.0) for _, m in length_bands(0.0))


def test_hit_classes_cross_with_length_cv():
    e = _est(input_len=4096, request_rate=2.0, length_cv=1.0,
             prefix_classes=[(0.5, 2048, "dram"), (0.5, 0, "hbm")])
    assert np.isfinite(e.ttft_p99_s) and e.ttft_p99_s > e.ttft_s


@pytest.mark.parametrize("classes,kw,match", [
    ([(1.0, 0, "hbm", 0)], {}, "input_len 0"),
    ([(1.0, 0, "hbm", "long")], {}, "input_len 'long'"),
    ([(1.0, 0, "hbm", 100)], {"length_cv": 0.5}, "length_cv must be 0"),
    ([(1.0, 200, "hbm", 100)], {}, "cached_prefix_len must be < input_len"),
])
def test_bad_length_classes_say_what_is_allowed(classes, kw, match):
    with pytest.raises(ValueError, match=match):
        _est(input_len=1024, request_rate=1.0, prefix_classes=classes, **kw)
