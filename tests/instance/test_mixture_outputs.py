"""Output-length classes in the open loop: ``prefix_classes`` entries carrying their own
output_len (kvmodel.instance._mixture, _estimate, _openloop.class_holds). Hand arithmetic on a
two-class toy, the identity with one output, conservation of the mean output, monotonicity of
the throughput-max, and the validation errors."""

import numpy as np
import pytest

import kvmodel
from kvmodel.instance import _openloop as ol
from kvmodel.instance._mixture import check_classes

M, G = "llama-3.1-8b", "h100-sxm"
KW = dict(input_len=1024, max_batch_size=64)  # the batch cap, not HBM, sets every class's batch


def _est(O, classes=None, rate=3.0, **kw):
    return kvmodel.estimate(M, G, output_len=O, request_rate=rate, prefix_classes=classes,
                            **dict(KW, **kw))


def test_class_holds_by_hand():
    """Two equally likely classes of 1000-token prompts, outputs 101 and 301 (mean 201):
    contexts c_k = 1000 + O_k/2 = 1050.5, 1150.5, their decode-step mean (weights π·(O_k − 1)
    = 50, 150) c̄ = (50·1050.5 + 150·1150.5)/200 = 1125.5; hold_k = h + amp·(S_k − S)
    + (O_k − O)·TPOT + (O_k − 1)·read·(c_k − c̄)."""
    h, amp, read, tpot = 5.0, 1.5, 1e-5, 0.02
    c_k, c = [1050.5, 1150.5], 1125.5
    holds = ol.class_holds(h, [1.0, 3.0], 2.0, 201.0, amp, read, c_k, c, [101.0, 301.0], tpot)
    assert holds[0] == pytest.approx(5.0 - 1.5 - 100 * 0.02 + 100 * 1e-5 * (-75.0))  # 1.425
    assert holds[1] == pytest.approx(5.0 + 1.5 + 100 * 0.02 + 300 * 1e-5 * 25.0)  # 8.575
    assert sum(holds) / 2 == pytest.approx(h)  # the classes' holds average to the mean hold


def test_throughput_max_is_the_harmonic_mix_of_the_classes_by_hand():
    """A request of class k takes O_k / tok_k seconds of the engine at saturation: the mixed
    request rate is 1/Σ π_k/r_k with r_k the class's own saturation rate (at the same batch)."""
    r1 = _est(100).saturation_request_rate_per_s
    r2 = _est(300).saturation_request_rate_per_s
    mix = _est(200, [(0.5, 0, "hbm", 1024, 100), (0.5, 0, "hbm", 1024, 300)])
    assert mix.saturation_request_rate_per_s == pytest.approx(1.0 / (0.5 / r1 + 0.5 / r2),
                                                              rel=1e-12)
    one = _est(200).saturation_request_rate_per_s  # decode time is convex in O: a spread costs
    assert mix.saturation_request_rate_per_s < one


@pytest.mark.parametrize("classes", [
    [(0.5, 0, "hbm", 1024, 200), (0.5, 0, "hbm", 1024)],
    [(0.25, 0, "hbm", 512, 200), (0.75, 0, "hbm", 1195, 200.0)],
])
def test_every_class_at_the_mean_output_is_todays_result_exactly(classes):
    old = [c[:4] for c in classes]
    for rate in (0.5, 3.0, 12.0):
        a, b = _est(200, old, rate), _est(200, classes, rate)
        for f in ("ttft_s", "ttft_p99_s", "tpot_s", "saturation_request_rate_per_s",
                  "e2e_s"):
            assert getattr(b, f) == getattr(a, f), (f, rate)


def test_longer_outputs_hold_the_slots_longer_and_conserve_the_mean():
    """Long prompts with long outputs (the Mooncake trace's bands): the KV reservations'
    spread grows, so the TTFT at a high load is not below one output's; TPOT reads the
    decode-weighted context, no less than one output's."""
    flat = [(0.5, 0, "hbm", 512), (0.5, 0, "hbm", 1536)]
    tied = [(0.5, 0, "hbm", 512, 100), (0.5, 0, "hbm", 1536, 300)]
    rate = 0.8 * _est(200, tied).saturation_request_rate_per_s
    a, b = _est(200, flat, rate), _est(200, tied, rate)
    assert b.tpot_s >= a.tpot_s
    assert b.ttft_s >= a.ttft_s


def test_a_longer_output_never_raises_the_throughput_max():
    rates = []
    for o2 in (100, 150, 200, 300, 500, 900):
        mean = 0.7 * 100 + 0.3 * o2
        rates.append(_est(mean, [(0.7, 0, "hbm", 800, 100), (0.3, 0, "hbm", 1580, o2)],
                          input_len=1034).saturation_request_rate_per_s)
    assert np.all(np.diff(rates) < 0), rates


def test_check_classes_keeps_old_tuples_and_takes_outputs():
    out = check_classes([(0.5, 0, "hbm"), (0.25, 10, "hbm", 100), (0.25, 10, "hbm", 100, 7)])
    assert [c[3:] for c in out] == [(None, None), (100.0, None), (100.0, 7.0)]


@pytest.mark.parametrize("bad", [0, 0.5, -3, float("inf"), float("nan"), "100", True,
                                 np.array([10.0, 20.0])])
def test_bad_output_len_names_field_value_and_range(bad):
    with pytest.raises(ValueError, match=r"prefix_classes\[1\] output_len .*>= 1"):
        check_classes([(0.5, 0, "hbm", 100, 10), (0.5, 0, "hbm", 100, bad)])


def test_classes_outputs_must_average_to_output_len():
    with pytest.raises(ValueError, match="mean output 200 must equal output_len=250"):
        _est(250, [(0.5, 0, "hbm", 1024, 100), (0.5, 0, "hbm", 1024, 300)])
    with pytest.raises(ValueError, match="single output_len"):
        _est(np.array([200, 300]), [(0.5, 0, "hbm", 1024, 100), (0.5, 0, "hbm", 1024, 300)])
