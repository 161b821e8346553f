"""The issue-13 referee's exact-rate arrivals (``benchmarks/queue_vs_sim.py --exact-rate``):
the same Poisson draws, rescaled so that the measured requests arrive at exactly the nominal
rate (a Poisson process conditioned on its count)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "queue_vs_sim.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("queue_vs_sim", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exact_rate_arrivals_realise_the_nominal_rate(bench, seed):
    n, k, lam = 4000, 400, 7.0
    plain = bench.trace(n, lam, 1024, 128, 0, seed).arrival_s
    exact = bench.trace(n, lam, 1024, 128, 0, seed, k).arrival_s
    assert (n - k - 1) / (exact[-1] - exact[k]) == pytest.approx(lam, rel=1e-12)
    assert (n - k - 1) / (plain[-1] - plain[k]) != pytest.approx(lam, rel=1e-3)  # sampled
    ratio = exact / plain  # the same draws, one time scale
    assert np.allclose(ratio, ratio[0], rtol=1e-12)


def test_exact_rate_keeps_the_shared_prefix_chains(bench):
    plain = bench.trace(50, 3.0, 9216, 128, 8192, 1)
    exact = bench.trace(50, 3.0, 9216, 128, 8192, 1, 5)
    assert np.array_equal(plain.block_ids, exact.block_ids)
    assert np.array_equal(plain.block_offsets, exact.block_offsets)
    assert np.array_equal(plain.input_len, exact.input_len)
