"""The routed wait law reads each of the instance's two waits at its own server's utilisation
(kvmodel.cluster._routing_queue.routed_law, ``parts``): the prefill carry wait at the token
server's λ·new/μ, the KV-slot wait at λ/λ_sat, the two routed laws summed as the instance
sums them (kvmodel.instance._queueing.sum_wait_law). Hand arithmetic on the count law, the
identity with the one-part law, and the instance's parts adding up to its wait."""

import math

import pytest

import kvmodel
from kvmodel.cluster._routing_queue import routed_law
from kvmodel.instance._queueing import sum_wait_law

TWO = (0.0, 1.0)  # every request joins the shorter of two queues
RESIDUAL = 1.5  # a count signal (the factor does not depend on its value)


def _count_factor_two(rho: float) -> float:
    """W'/W of the count law with d = 2 by hand: s_k = ρ^(2^k − 1), a_k = s_k², W'/W =
    (ρ + Σ_{k≥2} a_k)·(1 − ρ)/ρ over M/M/1's (ρ + ρ²/(1 − ρ))·(1 − ρ)/ρ = 1."""
    tail = sum(rho ** (2 * (2 ** k - 1)) for k in range(2, 12))
    return (rho + tail) / (rho + rho * rho / (1.0 - rho))


def test_count_factor_by_hand():
    # ρ = 0.5: Σ_{k≥2} a_k = 0.5^6 + 0.5^14 + ... = 0.0156861; ρ = 0.85: 0.377150 + 0.102770
    # + 0.007631 + 0.000042 = 0.487593, over 0.85 + 0.7225/0.15 = 5.666667
    assert _count_factor_two(0.5) == pytest.approx(0.515686, abs=1e-6)
    assert _count_factor_two(0.85) == pytest.approx(0.236046, abs=1e-6)
    for rho in (0.5, 0.85):
        w, p = routed_law(TWO, 1.0, 0.4, RESIDUAL, rho)
        assert (w, p) == pytest.approx((_count_factor_two(rho), 0.4), rel=1e-6)


def test_each_part_at_its_own_utilisation():
    """A 0.8 s prefill wait (P 0.5, token server at 0.5) and a 1.0 s slot wait (P 0.4) at
    λ/λ_sat 0.85: the prefill part keeps 0.515686 of itself, the slot part 0.236046;
    the whole 1.8 s read at 0.85 would keep 0.236046 of all of it (0.4249 s)."""
    w1, w2 = 0.8 * 0.515686, 1.0 * 0.236046
    second = 2 * w1 * w1 / 0.5 + 2 * w2 * w2 / 0.4 + 2 * w1 * w2
    want = (w1 + w2, 2 * (w1 + w2) ** 2 / second)
    got = routed_law(TWO, 1.8, 0.6, RESIDUAL, 0.85, (0.8, 0.5, 0.5, 0.4))
    assert got == pytest.approx(want, rel=1e-5)
    assert got[0] == pytest.approx(0.648592, abs=1e-5)
    assert routed_law(TWO, 1.8, 0.6, RESIDUAL, 0.85)[0] == pytest.approx(1.8 * 0.236046,
                                                                          rel=1e-5)


@pytest.mark.parametrize("mix,residual", [(TWO, RESIDUAL), ((0.3, 0.0, 0.7), None)])
def test_no_slot_wait_is_the_prefill_law_alone(mix, residual):
    """With no slot wait the routed law is the prefill wait's, read at its token server's
    utilisation whatever λ/λ_sat is."""
    alone = routed_law(mix, 0.7, 0.45, residual, 0.45)
    for util in (0.6, 0.95):
        assert routed_law(mix, 0.7, 0.45, residual, util, (0.7, 0.45, 0.45, 0.0)) == \
            pytest.approx(alone, rel=1e-12)


def test_infinite_wait_stays_infinite():
    w, _ = routed_law(TWO, math.inf, 1.0, RESIDUAL, 0.9, (0.5, 0.5, 0.5, 1.0))
    assert w == math.inf


def test_instance_parts_add_up_to_its_wait():
    """The open loop's parts: the prefill wait plus the slot wait is ``queue_wait_s`` and
    their summed law's probability ``queue_wait_prob``; the prefill wait's server utilisation
    lies in (0, 1) below saturation."""
    e = kvmodel.estimate("llama-3.1-8b", "h100-sxm", input_len=4000, output_len=300,
                         request_rate=1.0, length_cv=1.0)
    w_pf, p_pf, rho_pf, p_slot = (float(v) for v in e.wait_parts)
    rate = 1.0 / e.saturation_request_rate_per_s
    assert 0.0 < rho_pf < 1.0 and 0.0 < rate < 1.0
    assert 0.0 < w_pf <= e.queue_wait_s
    assert sum_wait_law(w_pf, p_pf, e.queue_wait_s - w_pf, p_slot) == pytest.approx(
        (e.queue_wait_s, e.queue_wait_prob), rel=1e-12)
