"""The slot bound's rate in closed form (kvmodel/instance/_contended.py ``slot_bound``) and the
path's read delay with every segment at once (kvmodel/instance/_paths.py ``read_delay``),
checked against brute force: bisection of the fixed point, the segment-by-segment delay."""

import numpy as np
import pytest

from kvmodel.catalog.hardware import LinkSpec
from kvmodel.instance._contended import slot_bound
from kvmodel.instance._paths import PathLoad, ps_closed_factor, ps_open_delay, ps_wait_prob
from kvmodel.tiers import Tier, TransferPath

A, B, BMAX, STEP = 0.02, 3.0, 64.0, 0.05  # 1/X = A + B/b: an engine exactly affine in 1/b


def _serve(b, breakdown):
    """An engine with 1/X = A + B/b requests/s in b slots (1 token per request)."""
    return {"tok": 1.0 / (A + B / b), "tpot": STEP + 0.0 * b, "b": b}


def _bisect(held, lo=1e-9, hi=None):
    """Brute force: the rate X = 1/(A + B/b), b = clip(BMAX - held(X), 1, BMAX), by bisection
    (the gap X - engine(X) grows with X)."""
    hi = 1.0 / (A + B / BMAX) if hi is None else hi
    for _ in range(200):
        x = 0.5 * (lo + hi)
        b = min(max(BMAX - held(x), 1.0), BMAX)
        lo, hi = (x, hi) if x < 1.0 / (A + B / b) else (lo, x)
    return min(max(BMAX - held(0.5 * (lo + hi)), 1.0), BMAX)


def test_linear_hold_is_solved_exactly_in_one_step():
    """held = X·h: the quadratic A·h·X² − (A·bmax + B + h)·X + bmax = 0 by hand, h = 2 s."""
    h = 2.0
    calls = []

    def held(x, step):
        calls.append(x)
        return x * h
    b = slot_bound(_serve, held, BMAX, 1.0, False)["b"]
    p = A * BMAX + B + h
    x = (p - (p * p - 4.0 * A * h * BMAX) ** 0.5) / (2.0 * A * h)
    assert b == pytest.approx(BMAX - h * x, rel=1e-12)
    assert len(calls) == 2  # at x0 (the slots x0's loads leave), then at the root: no steps


@pytest.mark.parametrize("c", [30.0, 19.0, 17.0])
def test_hold_growing_with_the_rate_matches_bisection(c):
    """held = X·h(X), h growing as a queue's 1/(1 − X/c), near saturation at c = 17 (x0 is
    18.3 requests/s: the hold is cut off there)."""
    def hold(x):
        return x * 0.5 / max(1.0 - x / c, 1e-3)
    b = slot_bound(_serve, lambda x, step: np.vectorize(hold)(x) + 0.0, BMAX, 1.0, False)["b"]
    assert b == pytest.approx(_bisect(hold), rel=1e-9)


def test_elements_solve_alone_as_in_an_array():
    """Each element of an array: nothing held, linear, one slot left, an endless load, not a
    number (taken as nothing held), a hold growing with the rate."""
    hs = [lambda x: 0.0 * x, lambda x: 1.5 * x, lambda x: 1e4 * x, lambda x: np.inf + 0.0 * x,
          lambda x: np.nan + 0.0 * x, lambda x: x * 0.5 / (1.0 - x / 25.0)]

    def held(x, step):
        return np.array([h(v) for h, v in zip(hs, np.broadcast_to(x, (len(hs),)))])
    got = slot_bound(_serve, held, BMAX, 1.0, False)["b"]
    for k, h in enumerate(hs):
        alone = slot_bound(_serve, lambda x, step: h(x), BMAX, 1.0, False)["b"]
        assert got[k] == pytest.approx(alone, rel=1e-12)
        assert got[k] == pytest.approx(_bisect(lambda x: 0.0 if h(x) != h(x) else h(x)),
                                       rel=1e-9)
    assert got[0] == BMAX and got[2] == 1.0 and got[3] == 1.0 and got[4] == BMAX


def _tier(name, bw, write=None, duplex="full"):
    link = LinkSpec(name, "toy link", "pcie", bw, 0.0, duplex, bw, None)
    path = TransferPath(name, (link,), source_Bps=2.0 * bw, source_write_Bps=write)
    return Tier("dram", 1e15, path, device=f"{name}-dram")


def _by_segment(path, rate, clients):
    """Reference: each segment's delay and wait probability in turn, the slowest's kept (the
    first of equals; a delay not a number never)."""
    delay, busy = 0.0 * rate, 0.0 * rate
    for name in path.names:
        D, U = path.read[name], rate * path.queued(name)
        if clients is None:
            d, p = ps_open_delay(D, U), ps_wait_prob(U)
        else:
            d = D * (ps_closed_factor(U, clients) - 1.0)
            p = ps_wait_prob(U * (clients - 1.0) / clients)
        worse = d > delay
        delay, busy = np.where(worse, d, delay), np.where(worse, p, busy)
    return delay, busy


@pytest.mark.parametrize("clients", [None, 8.0, np.array([[2.0], [64.0], [1.0], [8.0]])])
def test_delays_of_every_segment_at_once_are_the_segment_by_segment_ones(clients):
    """Stacked segments give the segment loop's delay and wait probability bit for bit: scalar
    and array demands, a half-duplex link, over capacity (inf, open loop), ties (two equal
    links), rates not a number; scalars alone stay segment by segment."""
    nbytes = np.array([0.0, 1e9, 4e9, 2e10])
    path = PathLoad([(_tier("a", 1e10), nbytes), (_tier("b", 5e9, duplex="half"), 3e9),
                     (_tier("c", 1e10), nbytes)], [(_tier("b", 5e9, duplex="half"), 1e9)])
    for rate in (np.array([[0.0], [0.3], [1.0], [np.nan]]), np.array([0.1, 0.5, 2.0, 9.0])):
        want = _by_segment(path, rate, clients)
        for got in (path.delay(rate, clients), (path.read_delay(rate, clients), want[1])):
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    lone = PathLoad([(_tier("a", 1e10), 2e9)], [(_tier("a", 1e10), 1e9)])
    for rate in (0.0, 0.4, 4.0, 9.0):
        np.testing.assert_array_equal(lone.read_delay(rate, clients), _by_segment(lone, rate, clients)[0])
        np.testing.assert_array_equal(lone.delay(rate, clients), _by_segment(lone, rate, clients))
