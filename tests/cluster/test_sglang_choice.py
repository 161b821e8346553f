"""sglang's smallest-tree rule balances the work it has sent, not the work left
(kvmodel.cluster._routing_queue, *Work sent*): the heavy-traffic blend of its wait factor."""

from __future__ import annotations

import numpy as np
import pytest

from kvmodel.cluster._routing_queue import routed_law, tree_factor, wait_factors

MIX = (0.35, 0.0, 0.0, 0.65)  # the 85 % referee's replay: prefix-matched d = 1, else all 4


def test_tree_factor_hand_values():
    # q = tree·ρ² = 0.6·0.25 = 0.15: 0.85·0.2 + 0.15·0.7 = 0.275
    assert tree_factor(0.2, 0.5, 0.6, 0.7) == pytest.approx(0.275, rel=1e-12)
    # ρ = 0.9, tree 1: q = 0.81: 0.19·0.1 + 0.81·0.5 = 0.424
    assert tree_factor(0.1, 0.9, 1.0, 0.5) == pytest.approx(0.424, rel=1e-12)


def test_tree_factor_limits():
    rho = np.linspace(0.0, 0.99, 34)
    fw, _ = wait_factors(MIX, rho)
    assert np.array_equal(tree_factor(fw, rho, 0.0, 0.63), fw)  # no tree share: today's law
    assert tree_factor(0.3, 0.0, 1.0, 0.9) == 0.3  # no load: the choice law
    assert tree_factor(0.3, 1.0, 1.0, 0.9) == pytest.approx(0.9)  # saturation: the spread
    w0, p0 = routed_law(MIX, 1.0, 0.5, rho=0.7)
    assert routed_law(MIX, 1.0, 0.5, rho=0.7, tree=(0.0, 0.8)) == (w0, p0)


def test_tree_factor_monotone_in_load():
    """Between the choice law and the spread; the routed wait of an M/M/1-scaled instance
    (ρ/(1 − ρ) times the factor) rises with the load, the more so the larger the tree share."""
    rho = np.linspace(0.05, 0.97, 93)
    fw, _ = wait_factors(MIX, rho)
    lo = tree_factor(fw, rho, 0.3, 0.63)
    hi = tree_factor(fw, rho, 0.65, 0.63)
    assert np.all(lo >= fw - 1e-15) and np.all(hi >= lo - 1e-15) and np.all(hi <= 0.63 + 1e-15)
    for f in (fw, lo, hi):
        assert np.all(np.diff(rho / (1.0 - rho) * f) > 0)


def test_tree_factor_rejects_bad_input():
    for tree, spread in ((-0.1, 0.5), (1.2, 0.5), (0.5, 1.5), (0.5, "x"), (0.5, np.nan)):
        with pytest.raises(ValueError, match="tree|spread"):
            tree_factor(0.2, 0.5, tree, spread)


def _queued_work_autocorr(routing: str, lag: int) -> float:
    """Autocorrelation over ``lag`` routing decisions of each instance's queued prefill work
    less the instances' mean, seen at each decision (simulator, the 85 % referee, seed 0)."""
    from kvmodel.policies import ROUTING
    from kvmodel.sim import simulate
    from tests.policies import test_routing_vs_sim as cells
    cls = ROUTING[routing].sim
    seen: list = []
    orig = cls.choose

    def choose(self, req, view):
        seen.append(np.asarray(view.queued_prefill_tokens, float))
        return orig(self, req, view)
    _, trace, blocks, _ = cells.make_setting(0.85, True)
    cls.choose = choose
    try:
        simulate(cells.M, cells.G, trace(0), instances=cells.N, tp=1, precision="bf16",
                 routing=routing, prefix_cache_blocks=blocks, cache_tier="dram", seed=0)
    finally:
        cls.choose = orig
    d = np.array(seen)
    d -= d.mean(axis=1, keepdims=True)
    return float(np.corrcoef(d[:-lag].ravel(), d[lag:].ravel())[0, 1])


@pytest.mark.slow
def test_tree_leaves_queued_work_uncorrected():
    """The simulator's evidence for the law: an instance slow to clear its queue stays behind
    under sglang (its queued-work excess 100 decisions later still correlates 0.53, seed 0)
    while dynamo's least-work-left rule evens it out within ~10 decisions (0.03)."""
    assert _queued_work_autocorr("sglang", 100) > 0.3
    assert _queued_work_autocorr("dynamo", 100) < 0.15
