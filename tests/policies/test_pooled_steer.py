"""The KV-slot steer of a load-aware router (kvmodel.instance._openloop.pooled_steer, issue
13): the share of a full pool's arrivals the router can still send elsewhere, P(another pool
has room | this one full) = 1 - P(S/n >= cap) / P(X >= cap), worked by hand on a toy whose
Gamma laws are exponential and Erlang-2; its limits; monotonicity in the rate on toy request
classes (slot_moments); and the router's share of the slow swings, 1 - 1/n."""

import math

import numpy as np
import pytest

from kvmodel import Cluster
from kvmodel.cluster._routing_load import routed_slot_steer
from kvmodel.instance._openloop import pooled_steer, slot_moments


def test_two_pools_by_hand():
    """Two pools (n = 2, steer 1 - 1/2 = 1/2), mean occupancy 2 r̄, index z = 2 (a Gamma of
    shape 1: exponential, P(X >= c) = exp(-c/2)), w3 = 2 (no slow swings: the index is the
    independent holds' own). The cluster's average S/2 has index z - steer·w3 = 1 (shape 2,
    scale 1: P(S/2 >= c) = (1 + c)·exp(-c)). Cap 4: P(X full) = e^-2 = 0.1353, P(both full)
    = 5e^-4 = 0.0916, the share sent elsewhere 1 - 5/e² = 0.3233. Cap 40 (light load):
    41·e^-20 = 8.5e-8 of the full pool's arrivals stay, the share is 1 to 1e-7. Cap 2 (the
    pool full at its mean): the narrower law's tail is the wider one, 3e^-2 > e^-1, nowhere
    to steer: 0."""
    steer = 1.0 - 1.0 / 2
    assert routed_slot_steer(Cluster("llama-3.1-8b", "h100-sxm", instances=2,
                                     routing="least_loaded"), None, 2) == steer
    assert pooled_steer(2.0, 2.0, 2.0, 4.0, steer) == pytest.approx(1.0 - 5.0 / math.e ** 2,
                                                                    rel=1e-9)
    assert pooled_steer(2.0, 2.0, 2.0, 40.0, steer) == pytest.approx(1.0 - 41.0 * math.exp(-20),
                                                                     rel=1e-12)
    assert pooled_steer(2.0, 2.0, 2.0, 2.0, steer) == 0.0
    arr = pooled_steer(np.full(3, 2.0), 2.0, 2.0, np.array([4.0, 40.0, 2.0]), steer)
    assert arr == pytest.approx([1.0 - 5.0 / math.e ** 2, 1.0 - 41.0 * math.exp(-20), 0.0])


def test_no_steer_no_share_and_a_deep_tail_steers_all():
    """steer 0 (round robin, random, one pool): the average's law is the pool's, share 0;
    a pool so far below its cap that both tails underflow: every arrival goes elsewhere."""
    assert pooled_steer(2.0, 2.0, 2.0, 4.0, 0.0) == 0.0
    assert float(pooled_steer(np.array([2.0]), 2.0, 2.0, 4.0, np.array([0.0]))[0]) == 0.0
    assert pooled_steer(2.0, 2.0, 2.0, 4000.0, 0.5) == 1.0


def _toy_moments(lam, steer):
    """Two request classes (1,000 and 3,000 reserved tokens, holds 10 and 20 s, prefill shots
    0.5 and 1 s, feedback gain 0.2 per request/s) at rates ``lam``: (mean, z, w1, w3)."""
    return slot_moments([0.5, 0.5], [1000.0, 3000.0], [10.0, 20.0], lam, 1.0, 0.2 * lam,
                        steer, [0.5, 1.0])


@pytest.mark.parametrize("n", [2, 4, 16])
def test_the_share_never_rises_with_the_rate(n):
    """On the toy classes (cap 36 r̄, the mean 17.5·λ r̄ fills it at λ = 2.06/s), the share
    is in [0, 1], 1 at light load, never rises with the rate, and the array path is the
    scalar one."""
    steer = 1.0 - 1.0 / n
    lam = np.linspace(0.05, 2.0, 40)
    mean, z, _, w3 = _toy_moments(lam, steer)
    got = pooled_steer(mean, z, w3, 36.0, steer)
    assert np.all((got >= 0.0) & (got <= 1.0))
    assert got[0] == pytest.approx(1.0) and got[-1] < 0.5
    assert np.all(np.diff(got) <= 1e-12), got
    one = []
    for x in lam:
        m, zz, _, w = (float(v) for v in _toy_moments(float(x), steer))
        one.append(pooled_steer(m, zz, w, 36.0, steer))
    assert one == pytest.approx(got, rel=1e-9, abs=1e-12)


def test_more_pools_steer_more():
    """At one rate, more pools to steer among leave a smaller share of the cluster's swing
    with each (1/n), so a full pool's arrivals find room more often."""
    shares = []
    for n in (2, 4, 16):
        mean, z, _, w3 = _toy_moments(1.5, 1.0 - 1.0 / n)
        shares.append(pooled_steer(mean, z, w3, 36.0, 1.0 - 1.0 / n))
    assert shares[0] < shares[1] < shares[2], shares
