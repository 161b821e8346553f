"""The open loop's expected prefill chunk count over a mixture of prompts
(kvmodel.instance._openloop.chunk_count): E[ceil(n_j/b)], not ceil(E[n]/b)."""

import numpy as np
import pytest

import kvmodel
from kvmodel.instance._openloop import chunk_count


def test_one_length_is_its_ceiling():
    assert chunk_count(13000.0, 8000.0) == 2.0
    assert chunk_count(5000.0, 8000.0) == 1.0
    assert chunk_count(np.array([100.0, 8000.0, 8001.0]), 8000.0).tolist() == [1.0, 1.0, 2.0]


def test_classes_count_each_prompt_whole_chunks():
    # 13k and 3k prompts, half each: mean 8k fits one 8k chunk, but the 13k prompt runs two
    cls = (np.array([0.5, 0.5]), np.array([13000.0, 3000.0]))
    assert chunk_count(8000.0, 8000.0, cls) == pytest.approx(1.5)
    # a fixed prompt above the budget is 2 chunks whatever the budget's slack (no n/b)
    one = (np.array([1.0]), np.array([13000.0]))
    assert chunk_count(13000.0, np.array([6500.0, 8000.0, 12999.0]), one).tolist() == [2.0] * 3


def test_classes_broadcast_over_budgets_and_configurations():
    pi = np.array([[0.2, 0.8], [0.6, 0.4]])  # 2 configurations x 2 classes
    n = np.array([[9000.0, 1000.0], [9000.0, 1000.0]])
    b = np.array([[8000.0], [4000.0]])  # 2 budgets x 1 (broadcast over configurations)
    got = chunk_count(None, b, (pi, n))
    want = [[0.2 * 2 + 0.8, 0.6 * 2 + 0.4], [0.2 * 3 + 0.8, 0.6 * 3 + 0.4]]
    assert got == pytest.approx(np.array(want))


def test_mean_ttft_falls_smoothly_as_hits_take_the_mean_below_the_budget():
    """Hit classes of a 9216-token prompt (6K cached in HBM, or a miss): as the hit share grows
    the mean uncached prompt crosses the token budget; mean TTFT falls without a jump there
    (the mean prompt's ceil(n̄/b) dropped 2 -> 1 and moved the busy steps' arithmetic)."""
    p = np.linspace(0.0, 0.5, 26)
    ttft = np.array([kvmodel.estimate(
        "llama-3.1-8b", "h100-sxm", input_len=9216, output_len=128, request_rate=2.5,
        prefix_classes=[(float(h), 6144, "hbm"), (1.0 - float(h), 0, "hbm")]).ttft_s for h in p])
    assert np.all(np.isfinite(ttft))
    assert np.all(np.diff(ttft) < 0)  # the mean prompt's count: +1.6 % at a 20 % hit share
