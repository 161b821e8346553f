"""Cluster load modes (kvmodel.cluster._workloads): closed loop with think time, bursts and
closed multi-turn sessions: validation, Little's law, monotonicity, golden toys by hand, and
the closed forms against the reference simulator running the same workload."""

import dataclasses

import numpy as np
import pytest

import kvmodel
from kvmodel import estimate
from kvmodel.cluster import Cluster, Workload, evaluate, kv_capacity_tokens, load_cluster_config
from kvmodel.cluster._workloads import active_clients, burst_times
from kvmodel.sim import poisson_requests, simulate
from kvmodel.workload._sessions import closed_session_trace, reorder, session_turns
from kvmodel.workload.traces import infer_sessions

C8 = Cluster("llama-3.1-8b", "h100-sxm", instances=8, tp=1, precision="bf16")


def _varied(n: int, seed: int = 3) -> kvmodel.Trace:
    """Prompts 768..1280 and answers 64..192 tokens (mean 1024 / 128): clients desynchronise."""
    rng = np.random.default_rng(seed)
    return poisson_requests(n, 5.0, rng.integers(768, 1281, n), rng.integers(64, 193, n), seed=1)


@pytest.fixture(scope="module")
def trace():
    return poisson_requests(400, 5.0, 1024, 128, seed=1)


# ---- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,match", [
    (dict(request_rate=2.0, concurrency=4), "request_rate and concurrency"),
    (dict(concurrency=4, burst=4), "concurrency and burst"),
    (dict(concurrency=0), "Workload.concurrency=0"),
    (dict(concurrency=2.5), "Workload.concurrency=2.5"),
    (dict(burst=True), "Workload.burst=True"),
    (dict(concurrency=4, think_time_s=-1.0), "think_time_s=-1.0"),
    (dict(think_time_s=1.0), "applies to concurrency"),
    (dict(session_mode="sometimes"), "allowed: \\('open', 'closed'\\)"),
    (dict(burst=4, session_mode="closed"), "with burst"),
])
def test_load_fields_are_validated(trace, kw, match):
    with pytest.raises(ValueError, match=match):
        evaluate(C8, Workload(trace, **kw))


def test_array_fields_and_disaggregation_are_refused_with_a_reason(trace):
    with pytest.raises(ValueError, match="array-valued"):
        evaluate(dataclasses.replace(C8, dram_B=np.array([1e11, 2e11])),
                 Workload(trace, concurrency=8))
    pd = dataclasses.replace(C8, prefill_instances=2, decode_instances=2)
    with pytest.raises(ValueError, match="colocated clusters only"):
        evaluate(pd, Workload(trace, burst=8))


# ---- closed loop -----------------------------------------------------------------------------
@pytest.mark.parametrize("N,Z", [(1, 0.0), (8, 0.0), (12, 0.5), (64, 2.0), (300, 0.25)])
def test_littles_law_holds_exactly(trace, N, Z):
    r = evaluate(C8, Workload(trace, concurrency=N, think_time_s=Z))
    assert r.stable
    assert r.served_rate_per_s * (r.e2e_s + Z) == pytest.approx(N, rel=1e-12)
    assert r.output_tok_per_s == pytest.approx(r.served_rate_per_s * 128)
    assert r.workload["load_mode"] == "concurrency"
    a = r.workload["active_clients_per_instance"]
    assert 0 < a <= N / 8 + 1e-12


def test_without_think_time_an_instance_is_estimate_at_its_clients(trace):
    r = evaluate(C8, Workload(trace, concurrency=64))
    e = estimate("llama-3.1-8b", "h100-sxm", tp=1, precision="bf16", input_len=1024,
                 output_len=128, concurrency=8)
    assert r.ttft_s == pytest.approx(float(e.ttft_s), rel=1e-12)
    assert r.tpot_s == pytest.approx(float(e.tpot_s), rel=1e-12)
    assert r.served_rate_per_s == pytest.approx(8 * float(e.output_tok_per_s) / 128, rel=1e-9)


def test_more_clients_never_lower_throughput_or_ttft(trace):
    for Z in (0.0, 1.0):
        res = [evaluate(C8, Workload(trace, concurrency=N, think_time_s=Z))
               for N in (1, 4, 8, 16, 40, 64, 128, 256, 512)]
        X = np.array([r.served_rate_per_s for r in res])
        T = np.array([r.ttft_s for r in res])
        assert np.all(np.diff(X) >= -1e-9 * X[1:]), X
        assert np.all(np.diff(T) >= -1e-12), T


def test_think_time_lowers_the_load():
    """Thinking clients are not in service: fewer active clients, shorter responses."""
    w = Workload(poisson_requests(50, 5.0, 1024, 128, seed=1), concurrency=128)
    fast = evaluate(C8, w)
    slow = evaluate(C8, dataclasses.replace(w, think_time_s=3.0))
    assert slow.workload["active_clients_per_instance"] < 16
    assert slow.e2e_s < fast.e2e_s and slow.served_rate_per_s < fast.served_rate_per_s


def test_active_clients_fixed_point_by_hand():
    """R(k) = 1 + 0.1 (k - 1) s (k = 1..5), Z = 1 s, 4 clients: a (1 + 1/R(a)) = 4 with
    R(a) = 0.9 + 0.1 a  ->  0.1 a^2 + 0.9 a + a = 4 (0.9 + 0.1 a) ... solved:
    a^2 + 19 a - 36 - 4 a = 0 -> a^2 + 15 a - 36 = 0 -> a = (-15 + sqrt(369)) / 2."""
    ks = np.arange(1.0, 6.0)
    R = 1.0 + 0.1 * (ks - 1.0)
    a = active_clients(4.0, ks, R, 1.0)
    assert a == pytest.approx((-15 + 369 ** 0.5) / 2, rel=1e-9)
    # below one client: R(1) applies, a = n_c / (1 + Z / R(1))
    assert active_clients(1.5, ks, R, 1.0) == pytest.approx(0.75)
    assert active_clients(3.0, ks, R, 0.0) == 3.0


@pytest.mark.slow
@pytest.mark.parametrize("N", [8, 64, 256])
@pytest.mark.parametrize("Z", [0.0, 1.0])
def test_closed_loop_tracks_the_simulator(N, Z):
    """8 instances, least-loaded routing in the simulator (balanced clients); steady state
    (the first 2N and last N requests dropped). Seen: throughput within 2 %, mean TTFT
    within 14 % (N = 8: +13 %, the lone-request TTFT of the closed form)."""
    tr = _varied(max(1500, 20 * N))
    r = evaluate(C8, Workload(tr, concurrency=N, think_time_s=Z))
    s = simulate("llama-3.1-8b", "h100-sxm", tr, instances=8, concurrency=N, think_time_s=Z,
                 routing="least_loaded")
    order = np.argsort(s.arrival_s, kind="stable")
    keep = order[2 * N: len(order) - N]
    X = len(keep) / (s.arrival_s[order[len(order) - N]] - s.arrival_s[order[2 * N]])
    assert r.served_rate_per_s == pytest.approx(X, rel=0.10)
    assert r.ttft_s == pytest.approx(float(np.mean(s.ttft_s[keep])), rel=0.20)
    assert r.tpot_s == pytest.approx(float(np.mean(s.tpot_s[keep])), rel=0.10)
    assert X * (float(np.mean(s.e2e_s[keep])) + Z) == pytest.approx(N, rel=0.03)  # Little


# ---- burst -----------------------------------------------------------------------------------
def test_burst_times_by_hand():
    """4 prompts of 1000 new tokens, budget 2048 tokens per step: prompts 1-2 complete in step
    1 (2000 tokens), 3-4 in step 2 (the last, 1952 tokens). Full step 0.1 s, last 0.05 s,
    head 0.003 s; 3 output tokens, decode step 0.01 s."""
    ttft, dec = burst_times(4, 1000.0, 2048.0, 0.1, 0.05, 3.0, 0.01, 0.003)
    assert ttft.tolist() == pytest.approx([0.103, 0.103, 0.153, 0.153])
    # prompts 1-2 emit their second token during step 2 (0.05 s), then one decode step
    assert dec.tolist() == pytest.approx([0.06, 0.06, 0.02, 0.02])


def test_burst_of_four_in_one_step_equals_the_simulator_exactly():
    """4 prompts of 1024 tokens fit one step of the 8192-token budget: every TTFT is the
    request overhead plus that one step, as the simulator runs it."""
    tr = poisson_requests(4, 1.0, 1024, 16, seed=0)
    c1 = dataclasses.replace(C8, instances=1)
    r = evaluate(c1, Workload(tr, burst=4))
    at0 = dataclasses.replace(tr, arrival_s=np.zeros(4))
    s = simulate("llama-3.1-8b", "h100-sxm", at0)
    assert np.ptp(s.ttft_s) == 0.0
    assert r.ttft_s == pytest.approx(s.ttft_mean_s, rel=1e-9)
    assert r.ttft_p99_s == pytest.approx(r.ttft_s, rel=1e-12)
    assert r.workload["makespan_s"] == pytest.approx(float(np.max(s.e2e_s)), rel=1e-9)
    assert r.served_rate_per_s == pytest.approx(4 / r.workload["makespan_s"])


@pytest.mark.parametrize("N,I", [(64, 1024), (256, 1024), (256, 3000), (100, 700)])
def test_burst_tracks_the_simulator(N, I):
    """Seen: mean TTFT within 3 %, p99 within 2 %, makespan within 1 %."""
    tr = poisson_requests(N, 5.0, I, 128, seed=1)
    r = evaluate(C8, Workload(tr, burst=N))
    s = simulate("llama-3.1-8b", "h100-sxm", dataclasses.replace(tr, arrival_s=np.zeros(N)),
                 instances=8)
    assert r.ttft_s == pytest.approx(s.ttft_mean_s, rel=0.20)
    assert r.ttft_p99_s == pytest.approx(s.ttft_p99_s, rel=0.35)
    assert r.tpot_s == pytest.approx(s.tpot_mean_s, rel=0.15)
    assert r.workload["makespan_s"] == pytest.approx(s.busy_window_s[1], rel=0.10)


def test_bigger_bursts_wait_longer(trace):
    res = [evaluate(C8, Workload(trace, burst=N)) for N in (8, 64, 256, 1024, 4096)]
    for a, b in zip(res, res[1:]):
        assert b.ttft_s > a.ttft_s and b.ttft_p99_s >= a.ttft_p99_s
        assert b.workload["makespan_s"] > a.workload["makespan_s"]
    assert res[-1].workload["batch_limit"] < 4096 // 8  # the last one runs in waves


# ---- closed sessions -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sessions():
    return kvmodel.synthetic_trace(600, seed=4, rate_per_s=4.0, session_fraction=1.0,
                                   turns_mean=5, think_time_s=20.0, system_prompt_tokens=1024,
                                   user_tokens_mean=200, output_tokens_mean=100,
                                   block_tokens=64)


def test_closed_session_trace_sends_each_turn_after_the_previous_one(sessions):
    t = closed_session_trace(sessions, e2e_s=1.5, think_time_s=0.5)
    assert np.all(np.diff(t.arrival_s) >= 0)
    order, first, _ = session_turns(t)
    gaps = np.diff(t.arrival_s[order])[~first[1:]]
    assert gaps == pytest.approx(np.full(len(gaps), 2.0))
    # chains move with their requests: every request is one of the original ones
    key = {(int(s), int(i)): tuple(sessions.hash_ids(k)) for k, (s, i) in
           enumerate(zip(sessions.session, sessions.input_len))}
    assert all(key[(int(s), int(i))] == tuple(t.hash_ids(k))
               for k, (s, i) in enumerate(zip(t.session, t.input_len)))
    same = reorder(sessions, np.arange(len(sessions)))
    assert np.array_equal(same.block_ids, sessions.block_ids)


def test_closed_sessions_by_clients_run_sessions_back_to_back(sessions):
    t = closed_session_trace(sessions, e2e_s=1.0, think_time_s=0.0, clients=2)
    assert t.arrival_s[0] == 0.0 and t.arrival_s[1] == 0.0 and t.arrival_s[2] >= 1.0
    assert np.all(np.diff(np.unique(t.arrival_s)) >= 1.0 - 1e-9)  # 2 clients, 1 s per turn


def test_closed_sessions_hit_ratio_tracks_the_simulator(sessions):
    """One instance, an HBM prefix cache only. Seen (3000 requests): hit ratio within 0.03
    of the simulator for think times 2-60 s; here 600 requests, 0.05."""
    frac = 0.05
    c = dataclasses.replace(C8, instances=1, hbm_cache_fraction=frac, dram_B=0.0, ssd_B=0.0)
    w = Workload(sessions, session_mode="closed", think_time_s=20.0)
    r = evaluate(c, w)
    assert r.workload["session_mode"] == "closed" and r.workload["session_e2e_s"] > 0
    kvt = kv_capacity_tokens(c.model, c.gpu, 1, "bf16", round(w.input_len),
                                             round(w.output_len))
    s = simulate(c.model, c.gpu, sessions, prefix_cache_blocks=int(frac * kvt / 64),
                 session_mode="closed", think_time_s=20.0)
    assert sum(r.hit_ratio.values()) == pytest.approx(s.hit_ratio, abs=0.05)
    assert r.ttft_s == pytest.approx(s.ttft_mean_s, rel=0.20)


def test_closed_sessions_with_clients_obey_littles_law(sessions):
    r = evaluate(C8, Workload(sessions, concurrency=16, think_time_s=1.0, session_mode="closed"))
    assert r.served_rate_per_s * (r.e2e_s + 1.0) == pytest.approx(16, rel=1e-12)


# ---- configuration files ---------------------------------------------------------------------
def test_config_file_reads_the_load_fields(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[cluster]\nmodel = "llama-3.1-8b"\ngpu = "h100-sxm"\ntp = 1\n'
                 '[workload]\nconcurrency = 32\nthink_time_s = 1\nsession_mode = "closed"\n')
    _, wk = load_cluster_config(p)
    assert wk == {"concurrency": 32, "think_time_s": 1.0, "session_mode": "closed"}
    p.write_text('[cluster]\nmodel = "llama-3.1-8b"\ngpu = "h100-sxm"\n'
                 '[workload]\nburst = 8\nrequest_rate = 2.0\n')
    with pytest.raises(ValueError, match=r"c.toml: \[workload\]: request_rate and burst"):
        load_cluster_config(p)


# ---- sessions of traces without a session column ---------------------------------------------
def test_closed_sessions_need_session_ids(trace):
    with pytest.raises(ValueError, match="has no session ids"):
        evaluate(C8, Workload(trace, session_mode="closed"))


def test_inferred_sessions_recover_the_synthetic_conversations():
    st = kvmodel.synthetic_trace(2000, seed=1, block_tokens=64)
    bare = dataclasses.replace(st, session=None)
    inf = infer_sessions(bare).session
    pairs = set(zip(inf.tolist(), st.session.tolist()))
    true, found = len(set(st.session.tolist())), len(set(inf.tolist()))
    assert len(pairs) - found <= 0.01 * found       # an inferred session is one conversation
    assert true <= found <= 1.15 * true               # few conversations split
    assert infer_sessions(st) is st                   # a trace with sessions is kept


def test_builtin_mooncake_conversation_has_multi_turn_sessions():
    from kvmodel.workload.traces import load_trace
    turns = np.bincount(infer_sessions(load_trace("mooncake-conversation")).session)
    assert (turns > 1).sum() == 2223 and turns[turns > 1].sum() == 5531 and turns.max() == 17
