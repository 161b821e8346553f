"""The simulator's KV reservation pool, rebuilt from its per-request records: admission is
strictly FCFS, the reserved tokens (prompt + output from admission to the last token) never
pass the pool, and their peak is the engine's own counter. benchmarks/kv_slot_occupancy.py
reads the router cells' slot waits from the same records, so they must be the engine's."""

import numpy as np
import pytest

from kvmodel.sim import poisson_requests, simulate

M, G = "llama-3.1-8b", "h100-sxm"


@pytest.fixture(scope="module")
def run():
    """One instance, prompts 1K-96K tokens (a few reserve a fifth of the pool), at a rate
    where the pool fills now and then: requests wait on it behind a large head."""
    rng = np.random.default_rng(3)
    n = 400
    inp = np.minimum(np.round(np.exp(rng.normal(np.log(8000.0), 1.1, n))), 96_000) + 1000
    return simulate(M, G, poisson_requests(n, 1.1, inp.astype(int), 300, seed=3))


def _reserved(s):
    """(event times, reserved tokens after each event) from admission and finish times."""
    arr = s.arrival_s
    on, off = arr + s.queue_s, arr + s.e2e_s
    r = (s.input_len + s.output_len).astype(float)
    t = np.concatenate([on, off])
    order = np.lexsort((np.concatenate([r, -r]), t))  # frees before takes at one instant
    return t[order], np.cumsum(np.concatenate([r, -r])[order])


def test_the_scenario_waits_on_the_pool(run):
    assert (run.queue_s > 1.0).mean() > 0.01


def test_admission_is_first_come_first_served(run):
    admit = run.arrival_s + run.queue_s
    assert np.all(np.diff(admit[np.argsort(run.arrival_s, kind="stable")]) >= 0.0)


def test_rebuilt_reservations_stay_in_the_pool_and_peak_at_the_engines_counter(run):
    _, level = _reserved(run)
    assert level.max() <= run.kv_capacity_tokens
    assert level.max() == pytest.approx(float(run.max_kv_tokens[0]), rel=1e-12)
    assert abs(level[-1]) < 1e-6  # every reservation released
