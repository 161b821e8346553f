"""Closed-loop arrivals of the simulator (kvmodel.sim._clients): N clients with think time,
closed multi-turn sessions; open-loop runs untouched."""

import dataclasses

import numpy as np
import pytest

import kvmodel
from kvmodel.sim import poisson_requests, simulate

M, G = "llama-3.1-8b", "h100-sxm"


def _varied(n: int) -> kvmodel.Trace:
    rng = np.random.default_rng(7)
    return poisson_requests(n, 20.0, rng.integers(256, 1025, n), rng.integers(16, 65, n), seed=2)


def _in_system(r) -> np.ndarray:
    """Requests sent and unfinished, just after each send (finishes before sends on ties)."""
    t = np.concatenate([r.arrival_s, r.finish_s])
    d = np.concatenate([np.ones(len(r.arrival_s)), -np.ones(len(r.finish_s))])
    o = np.lexsort((d, t))
    return np.cumsum(d[o])[d[o] > 0]


def test_open_loop_arguments_change_nothing():
    tr = _varied(300)
    a = simulate(M, G, tr, instances=2)
    b = simulate(M, G, tr, instances=2, concurrency=None, think_time_s=None, session_mode="open")
    for f in ("arrival_s", "ttft_s", "tpot_s", "e2e_s", "queue_s", "instance"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.arrival_s is not tr.arrival_s and np.array_equal(a.arrival_s, tr.arrival_s)


def test_enough_clients_without_think_time_are_a_burst():
    """N >= requests clients send everything at t = 0: the run of a trace arriving at 0."""
    tr = _varied(64)
    closed = simulate(M, G, tr, instances=2, concurrency=64)
    burst = simulate(M, G, dataclasses.replace(tr, arrival_s=np.zeros(64)), instances=2)
    assert np.array_equal(closed.arrival_s, np.zeros(64))
    for f in ("ttft_s", "e2e_s", "instance"):
        assert np.array_equal(getattr(closed, f), getattr(burst, f)), f


@pytest.mark.parametrize("N,Z", [(1, 0.0), (4, 0.0), (16, 0.3), (64, 1.0)])
def test_clients_are_a_closed_loop(N, Z):
    r = simulate(M, G, _varied(600), instances=2, concurrency=N, think_time_s=Z)
    assert _in_system(r).max() <= N
    # each send after the first N is some request's finish + Z (the client that freed up)
    later = np.sort(r.arrival_s)[N:]
    fin = np.sort(r.finish_s)
    assert np.allclose(later, fin[:len(later)] + Z)


@pytest.mark.parametrize("N,Z", [(8, 0.0), (32, 0.5)])
def test_littles_law_with_think_time(N, Z):
    """Over the steady window: N = X (R + Z), and the request-level L = X R."""
    r = simulate(M, G, _varied(1500), instances=2, concurrency=N, think_time_s=Z)
    order = np.argsort(r.arrival_s, kind="stable")
    keep = order[2 * N: len(order) - N]
    X = len(keep) / (r.arrival_s[order[len(order) - N]] - r.arrival_s[order[2 * N]])
    assert X * (float(np.mean(r.e2e_s[keep])) + Z) == pytest.approx(N, rel=0.03)
    assert r.little()["rel_err"] < 0.02


def test_closed_sessions_send_each_turn_think_time_after_the_previous_finished():
    tr = kvmodel.synthetic_trace(200, seed=5, rate_per_s=2.0, think_time_s=10.0,
                                 block_tokens=64)
    r = simulate(M, G, tr, instances=2, prefix_cache_blocks=200, session_mode="closed",
                 think_time_s=0.7)
    s = tr.session
    for sess in np.unique(s):
        turns = np.flatnonzero(s == sess)
        assert r.arrival_s[turns[0]] == tr.arrival_s[turns[0]]  # first turn: as the trace
        assert np.allclose(r.arrival_s[turns[1:]], r.finish_s[turns[:-1]] + 0.7)
    own = simulate(M, G, tr, instances=2, prefix_cache_blocks=200, session_mode="closed")
    for sess in np.unique(s):  # think_time_s=None: the trace's own gaps between turns
        turns = np.flatnonzero(s == sess)
        assert np.allclose(own.arrival_s[turns[1:]],
                           own.finish_s[turns[:-1]] + np.diff(tr.arrival_s[turns]))


def test_clients_run_sessions_one_after_another():
    tr = kvmodel.synthetic_trace(150, seed=6, rate_per_s=2.0, block_tokens=64)
    r = simulate(M, G, tr, instances=2, concurrency=4, think_time_s=0.2, session_mode="closed")
    assert _in_system(r).max() <= 4
    for sess in np.unique(tr.session):
        turns = np.flatnonzero(tr.session == sess)
        assert np.allclose(r.arrival_s[turns[1:]], r.finish_s[turns[:-1]] + 0.2)


@pytest.mark.parametrize("kw,match", [
    (dict(concurrency=0), "concurrency=0"), (dict(concurrency=2.0), "concurrency=2.0"),
    (dict(think_time_s=-1.0), "think_time_s=-1.0"),
    (dict(session_mode="half"), "allowed: \\('open', 'closed'\\)"),
])
def test_client_arguments_are_validated(kw, match):
    with pytest.raises(ValueError, match=match):
        simulate(M, G, _varied(10), **kw)


def test_closed_sessions_need_session_ids():
    with pytest.raises(ValueError, match="has no session ids"):
        simulate(M, G, _varied(10), session_mode="closed")
