"""Trace.tick_s / Trace.spread_ticks: a trace quantised to timestamp ticks, its requests spread
over each tick in file order (hand-computed toys, invariants, the bundled Mooncake trace)."""

from __future__ import annotations

import numpy as np
import pytest

import kvmodel
from kvmodel.workload import Trace


def _toy(arrivals) -> Trace:
    n = len(arrivals)
    return Trace.from_lists([[i] for i in range(n)], input_len=[100] * n, output_len=[10] * n,
                            arrival_s=list(arrivals), name="toy")


def test_even_spread_by_hand():
    # ticks of 3 s: three requests at 0, two at 3, one at 6 -> r/m of the tick
    t = _toy([0, 0, 0, 3, 3, 6])
    assert t.tick_s() == pytest.approx(3.0)
    s = t.spread_ticks()
    np.testing.assert_allclose(s.arrival_s, [0, 1, 2, 3, 4.5, 6])
    assert s.name == "toy~spread" and len(s) == len(t)
    np.testing.assert_array_equal(s.block_ids, t.block_ids)
    np.testing.assert_array_equal(s.input_len, t.input_len)


def test_ticks_with_jitter_and_multiples():
    # published ticks carry a few ms of jitter, and empty ticks leave gaps of whole multiples
    t = _toy([0, 0, 2.997, 3.0 * 3 + 0.002, 3.0 * 3 + 0.002])
    assert t.tick_s() == pytest.approx(2.997)
    s = t.spread_ticks()
    np.testing.assert_allclose(s.arrival_s, [0, 2.997 / 2, 2.997, 9.002, 9.002 + 2.997 / 2])


def test_seeded_spread_stays_in_its_tick_sorted_and_reproducible():
    t = _toy([0] * 5 + [3] * 4 + [6] * 3)
    a = t.spread_ticks(seed=7)
    b = t.spread_ticks(seed=7)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    assert np.all(np.diff(a.arrival_s) >= 0)
    base = t.arrival_s
    assert np.all((a.arrival_s >= base) & (a.arrival_s < base + 3.0))
    assert not np.array_equal(a.arrival_s, t.spread_ticks(seed=8).arrival_s)


def test_no_ties_is_returned_as_is():
    t = _toy([0.0, 0.5, 2.0])
    assert t.tick_s() is None
    assert t.spread_ticks() is t


def test_bad_ticks_name_the_field():
    t = _toy([0, 0, 3, 3])
    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "3"):
        with pytest.raises(ValueError, match="tick_s"):
            t.spread_ticks(tick_s=bad)
    with pytest.raises(ValueError, match="smallest gap"):   # would reorder the requests
        t.spread_ticks(tick_s=3.5)
    with pytest.raises(ValueError, match="not multiples of one tick"):
        _toy([0, 0, 2, 5]).tick_s()
    with pytest.raises(ValueError, match="one timestamp"):
        _toy([1, 1, 1]).tick_s()
    # an explicit tick works where none can be detected
    np.testing.assert_allclose(_toy([1, 1]).spread_ticks(tick_s=2.0).arrival_s, [1, 2])


def test_mooncake_conversation_ticks():
    """The bundled trace's 3 s ticks (~10 requests each): spreading keeps order, count per tick
    and rate, and removes the bursts (requests per second: index of dispersion 7.9 -> < 1)."""
    t = kvmodel.load_trace("mooncake-conversation")
    tick = t.tick_s()
    assert tick == pytest.approx(3.0, abs=0.005)
    s = t.spread_ticks()
    assert np.all(np.diff(s.arrival_s) >= 0)
    assert np.all((s.arrival_s >= t.arrival_s) & (s.arrival_s < t.arrival_s + tick))
    assert len(np.unique(s.arrival_s)) == len(s)

    def dispersion(a):
        c = np.bincount(a.astype(int))
        return c.var() / c.mean()
    assert dispersion(t.arrival_s) > 5 and dispersion(s.arrival_s) < 1


def test_cluster_vs_sim_arrivals():
    """benchmarks/cluster_vs_sim.py's --arrivals: as published, spread, or seeded Poisson at the
    trace's mean rate with the request order kept."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "cluster_vs_sim.py"
    spec = importlib.util.spec_from_file_location("cluster_vs_sim", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    t = kvmodel.load_trace("mooncake-conversation").window(0, 3000)
    assert m.with_arrivals(t, "trace") is t
    np.testing.assert_array_equal(m.with_arrivals(t, "spread").arrival_s,
                                  t.spread_ticks().arrival_s)
    p = m.with_arrivals(t, "poisson", seed=3)
    assert p.arrival_s[0] == 0 and np.all(np.diff(p.arrival_s) > 0)
    np.testing.assert_array_equal(p.input_len, t.input_len)
    gaps = np.diff(p.arrival_s)
    assert gaps.mean() == pytest.approx(t.arrival_s[-1] / (len(t) - 1), rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.06)   # exponential gaps
    with pytest.raises(ValueError, match="allowed: trace, spread, poisson"):
        m.with_arrivals(t, "bursty")
