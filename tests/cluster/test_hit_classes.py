"""Request-level hit classes of the cluster's instances (kvmodel.cluster._classes)."""

import numpy as np
import pytest

from kvmodel.cluster._classes import hit_classes, leading_reuse
from kvmodel.workload._trace_types import Trace


def _trace(chains, I, bt=100):
    n = len(chains)
    off = np.concatenate([[0], np.cumsum([len(c) for c in chains])])
    return Trace(np.arange(n, dtype=float), np.asarray(I), np.full(n, 10), off,
                 np.concatenate(chains).astype(np.int64), block_tokens=bt)


def test_leading_reuse_by_hand():
    # request 1 reuses blocks 1, 2 of request 0 (200 tokens); request 2 reuses block 1 then
    # breaks at 9 (100 tokens); request 3 starts with a new block (none); request 4 reuses all
    # four blocks of request 1 but is capped at its prompt length - 1 = 349 tokens
    tr = _trace([[1, 2, 3], [1, 2, 4, 5], [1, 9, 2], [7, 1], [1, 2, 4, 5]],
                [300, 400, 300, 200, 350])
    share, L = leading_reuse(tr)
    assert share == pytest.approx(3 / 5)
    assert L == pytest.approx((200 + 100 + 349) / 3)


def test_hit_classes_keep_the_mean_hit_and_split_by_level():
    tiers = {"hbm": "hbm", "dram": "dram", "pool": "pool"}
    hits = {"hbm": 0.2, "dram": 0.1, "pool": 0.0}
    cls = hit_classes(hits, tiers, 1000.0, (0.5, 800.0))
    probs = [c[0] for c in cls]
    assert sum(probs) == pytest.approx(1.0)
    # mean cached tokens = H·I = 300; hits take their whole 800-token run: P(hit) = 300/800
    assert sum(p * L for p, L, _ in cls) == pytest.approx(300.0, abs=1.0)
    assert probs[0] == pytest.approx(1 - 300 / 800)
    assert [c[2] for c in cls] == ["hbm", "hbm", "dram"]  # miss, then a class per level hit
    assert probs[1] / probs[2] == pytest.approx(2.0)
    # more hits than the runs allow: every reusable request hits, with a longer prefix
    cls = hit_classes({"hbm": 0.6}, tiers, 1000.0, (0.5, 800.0))
    assert cls[1][0] == pytest.approx(0.5) and cls[1][1] == 999.0
    assert hit_classes({"hbm": 0.0}, tiers, 1000.0, (0.5, 800.0)) is None


def test_hit_classes_vectorise():
    tiers = {"hbm": "hbm", "dram": "dram"}
    H = np.array([0.0, 0.1, 0.3])
    cls = hit_classes({"hbm": H, "dram": 0.5 * H}, tiers, 1000.0, (0.6, 900.0))
    total = sum(c[0] for c in cls)
    assert np.allclose(total, 1.0)
    mean_tok = sum(c[0] * c[1] for c in cls)
    assert np.allclose(mean_tok, 1.5 * H * 1000.0, atol=2.0)
