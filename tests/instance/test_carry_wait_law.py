"""The prefill carry-over wait's law (:func:`kvmodel.instance._openloop.overflow_wait`): its
mean is the larger of two readings (a prompt landing behind a carried step, probability p,
waits the token server's Kingman mean W; the fluid reading, W less the work that ends before
the own step, is met with probability ρ), and its probability must not jump where the two
readings cross. Before stop 23 it did (p to ρ): on 8 x Llama-3.1-70B TP8 under round robin at
1.6 requests/s per instance, p99 TTFT rose 5.61 -> 6.35 s for a 6 % larger DRAM cache
(studies/dram_for_slo.md)."""

import numpy as np
import pytest

import kvmodel
from kvmodel.instance._openloop import overflow_wait

ARGS = dict(lam=2.0, new=2000.0, t=0.05, var=1e-4, budget=8192.0, t_full=0.1, ca2=1.0, cs2=0.5)
RHO, W = 0.6, 0.3


def law(ahead):
    return overflow_wait(**ARGS, fluid=(RHO, W, ahead))


def test_the_readings_limits():
    mean, p_wait, p = law(10.0)  # the fluid reading negative: the carry's law alone
    assert 0.0 < p < RHO
    assert (mean, p_wait) == pytest.approx((p * W, p), rel=1e-12)
    mean, p_wait, _ = law(0.0)  # nothing ends before the own step: the fluid's law
    assert (mean, p_wait) == pytest.approx((W, RHO), rel=1e-12)


def test_probability_is_continuous_where_the_readings_cross():
    p = law(10.0)[2]
    cross = W * (1.0 - p)  # W - ahead = p W
    below, above = law(cross - 1e-9), law(cross + 1e-9)
    assert below[0] == pytest.approx(above[0], abs=1e-8)
    assert below[1] == pytest.approx(above[1], abs=1e-7)
    # and the mean once waiting is the longer reading's on both sides
    assert below[0] / below[1] == pytest.approx(max(W, (W - cross) / RHO), rel=1e-6)


def test_wait_law_is_monotone_in_the_work_ahead():
    aheads = np.linspace(0.0, W, 301)
    mean, p_wait, _ = law(aheads)
    assert np.all(np.diff(mean) <= 1e-15)
    assert np.all(np.abs(np.diff(p_wait)) < 0.01)  # no jump on a 0.001 s grid


def test_p99_ttft_never_rises_with_more_dram():
    """The studies/dram_for_slo.md case: more DRAM cache never lengthens p99 TTFT."""
    w = kvmodel.Workload(kvmodel.load_trace("mooncake-conversation"), request_rate=1.6 * 8)
    d = np.geomspace(8e9, 4096e9, 30)
    c = kvmodel.Cluster("llama-3.1-70b", "h100-sxm", instances=8, routing="round_robin",
                        dram_B=d, ssd_B=0.0)
    p99 = np.asarray(kvmodel.evaluate(c, w).ttft_p99_s)
    assert np.all(np.diff(p99) <= 1e-9), np.round(p99, 3)
