"""Central pool and P2P closed forms (kvmodel.cluster._sharing): hand-checked toy cases,
Little's law and an independent oracle for the queues, monotonicity and conservation."""

import dataclasses
import math

import numpy as np
import pytest

import kvmodel
from kvmodel import Cluster, P2PSpec, PoolSpec, Workload, evaluate
from kvmodel.catalog.hardware import get_calibration, get_link
from kvmodel.cluster import _sharing, cost_per_hour

BASE = dict(model="llama-3.1-8b", gpu="h100-sxm", instances=4, tp=1, precision="bf16")


@pytest.fixture(scope="module")
def workload():
    return Workload(kvmodel.synthetic_trace(600, seed=4, rate_per_s=4.0), request_rate=1.0)


def _pool(**kw):
    return Cluster(**BASE, sharing="central_pool", hbm_cache_fraction=0.0, dram_B=0.0,
                   ssd_B=0.0, pool=PoolSpec(**kw))


# ---- queues ----------------------------------------------------------------------------------
def test_ps_queue_littles_law_and_geometric_oracle():
    lam, S = 3.0, 0.2                      # rho = 0.6
    q = _sharing.ps_queue(lam, S, lam * S)
    assert q["L"] == pytest.approx(lam * q["response_s"])          # Little: L = lambda T
    # M/G/1-PS has the M/M/1 number-in-system law P(N = k) = (1 - rho) rho^k
    k = np.arange(2000)
    assert q["L"] == pytest.approx(np.sum(k * 0.4 * 0.6 ** k))
    assert q["wait_s"] == pytest.approx(q["response_s"] - S)
    assert q["p_wait"] == pytest.approx(0.6)


@pytest.mark.parametrize("sharing", ["central_pool", "p2p"])
def test_littles_law_on_every_queue_of_a_result(sharing, workload):
    c = Cluster(**BASE, sharing=sharing, dram_B=2e9, nic="tcp-25g",
                pool=PoolSpec(servers=1, nics=1, nic="tcp-25g", dram_B=1e10, ssd_B=1e10))
    r = evaluate(c, workload.with_rate(3.0))
    names = [k[len("queue_"):-len("_jobs_per_s")] for k in r.sharing if k.endswith("_jobs_per_s")]
    assert names and r.stable
    for q in names:
        lam, T = r.sharing[f"queue_{q}_jobs_per_s"], r.sharing[f"queue_{q}_response_s"]
        assert lam > 0 and T > 0
        assert r.sharing[f"queue_{q}_in_system"] == pytest.approx(lam * T, rel=1e-12)
        rho = r.utilisation[q]
        assert r.sharing[f"queue_{q}_in_system"] == pytest.approx(rho / (1 - rho), rel=1e-9)


def test_sum_quantile_matches_monte_carlo():
    rng = np.random.default_rng(0)
    n = 400_000
    a, ma, b, mb = 0.3, 0.05, 0.6, 0.2
    x = np.where(rng.random(n) < a, rng.exponential(ma, n), 0.0)
    y = np.where(rng.random(n) < b, rng.exponential(mb, n), 0.0)
    for p in (0.5, 0.9, 0.99):
        exact = _sharing.sum_wait_quantile(p, a, ma, b, mb)
        assert float(exact) == pytest.approx(np.quantile(x + y, p), rel=0.03, abs=2e-3)
        assert _sharing._quantile_scalar(p, a, ma, b, mb) == pytest.approx(
            float(exact) - float(_sharing._single_quantile(p, a, ma)), rel=1e-6, abs=1e-9)


def _quantile_bisection(p, a, ma, b, mb):
    """_quantile_scalar as it was written before its common case got a branch-free loop."""
    q = 1.0 - p

    def single(pp, pr, mm):
        return mm * math.log(pr / (1.0 - pp)) if pr > 1.0 - pp else 0.0
    ca, cb, cab = a * (1 - b), b * (1 - a), a * b
    same = abs(ma - mb) <= 1e-9 * max(ma, mb)
    alone = single(p, a, ma)
    lo, hi = max(alone, single(p, b, mb)), single(1 - q / 2, a, ma) + single(1 - q / 2, b, mb) + 1e-15
    for _ in range(32):
        mid = (lo + hi) / 2
        ea = math.exp(-mid / ma) if ma > 0 else 0.0
        eb = math.exp(-mid / mb) if mb > 0 else 0.0
        both = ((1 + mid / ma) * ea if ma > 0 else 0.0) if same else (ma * ea - mb * eb) / (ma - mb)
        lo, hi = (mid, hi) if ca * ea + cb * eb + cab * both > q else (lo, mid)
    return max(hi - alone, 0.0)


def test_quantile_scalar_is_the_plain_bisection_bit_for_bit():
    rng = np.random.default_rng(5)
    for _ in range(3000):
        p = float(rng.choice([0.5, 0.9, 0.99, rng.random()]))
        a, b = (float(rng.choice([0.0, 1.0, rng.random(), rng.random() ** 8])) for _ in "ab")
        ma = float(rng.choice([0.0, 10 ** rng.uniform(-7, 2)]))
        mb = float(rng.choice([10 ** rng.uniform(-7, 2), ma * (1 + rng.choice([0, 1e-10, 1e-3]))]))
        if b == 0.0:
            continue  # (delays() asks only where the network waits)
        assert _sharing._quantile_scalar(p, a, ma, b, mb) == _quantile_bisection(p, a, ma, b, mb)


def test_pool_nic_at_rho_065_has_a_tail_not_a_mean_shift(workload):
    """A single 25 GbE pool NIC near rho = 0.65: p99 grows by several service times, while
    the old M/D/1 mean shift moved every percentile by 0.93 service times."""
    c = _pool(servers=1, nics=1, nic="tcp-25g", dram_B=1e12)
    r1 = evaluate(c, workload)
    rate = workload.rate * 0.65 / r1.utilisation["pool_nic"]
    r = evaluate(c, workload.with_rate(rate))
    assert r.utilisation["pool_nic"] == pytest.approx(0.65, rel=1e-3)
    nic = get_link("tcp-25g").achieved_bw_Bps
    S = 0.65 / rate
    assert S == pytest.approx(r.hit_ratio["pool"] * workload.blocks_per_request
                              * r.sharing["pool_get_Bps"] / (rate * r.hit_ratio["pool"]
                                                              * workload.blocks_per_request)
                              / nic, rel=1e-9)
    inst = r.instances["instance"]
    mean_shift = r.ttft_s - inst.ttft_s - r.sharing["pool_metadata_s"]
    assert mean_shift == pytest.approx(0.65 * S / 0.35, rel=1e-6)   # PS: rho S / (1 - rho)
    p99_shift = r.ttft_p99_s - inst.ttft_p99_s - r.sharing["pool_metadata_s"]
    assert p99_shift > 3 * mean_shift


# ---- central pool ----------------------------------------------------------------------------
def test_pool_toy_utilisations_by_hand(workload):
    """1 server x 1 NIC: utilisation = rate x hit x blocks x block bytes / NIC bandwidth."""
    c = _pool(servers=1, nics=1, nic="roce-100g", dram_B=1e12)
    r = evaluate(c, workload)
    block_B = workload.trace.block_tokens * kvmodel.get_model(BASE["model"]).kv_bytes_per_token("bf16")
    per_req = workload.blocks_per_request * block_B
    nic = get_link("roce-100g").achieved_bw_Bps
    get = workload.rate * r.hit_ratio["pool"] * per_req
    put = workload.rate * (1 - sum(r.hit_ratio.values())) * per_req
    assert r.utilisation["pool_nic"] == pytest.approx(get / nic)
    assert r.utilisation["pool_nic_in"] == pytest.approx(put / nic)
    assert r.sharing["pool_get_Bps"] == pytest.approx(get)
    assert r.sharing["pool_put_Bps"] == pytest.approx(put)


def test_pool_puts_cover_gets(workload):
    """Bytes put into the pool over the trace >= bytes of distinct blocks got - capacity."""
    c = _pool(servers=1, nics=2, dram_B=2e9)
    r = evaluate(c, workload)
    span = workload.trace.arrival_s[-1] - workload.trace.arrival_s[0]
    T = len(workload.trace) / workload.rate
    block_B = r.sharing["pool_get_Bps"] / max(
        workload.rate * r.hit_ratio["pool"] * workload.blocks_per_request, 1e-30)
    distinct = len(np.unique(workload.trace.block_ids)) * block_B
    assert span > 0
    assert r.sharing["pool_put_Bps"] * T >= distinct - 2e9 - 1e-6


def test_pool_ssd_served_at_ssd_speed(workload):
    """Moving capacity from pool DRAM to pool SSD keeps the hit ratio, puts the reads on the
    SSDs and never makes TTFT faster."""
    dram = _pool(servers=1, nics=4, dram_B=4e9)
    ssd = dataclasses.replace(dram, pool=dataclasses.replace(dram.pool, dram_B=1e8, ssd_B=3.9e9))
    a, b = evaluate(dram, workload), evaluate(ssd, workload)
    assert b.hit_ratio["pool"] == pytest.approx(a.hit_ratio["pool"], abs=1e-9)
    assert b.sharing["pool_get_ssd"] > 0.5 * b.hit_ratio["pool"]
    assert "pool_ssd" in b.utilisation and "pool_ssd" not in a.utilisation
    assert b.ttft_s >= a.ttft_s


def test_pool_metadata_rtt_is_paid_by_every_request(workload):
    base = _pool(servers=2, dram_B=1e12, metadata_rtt_s=0.0)
    slow = dataclasses.replace(base, pool=dataclasses.replace(base.pool, metadata_rtt_s=1e-3))
    a, b = evaluate(base, workload), evaluate(slow, workload)
    for f in ("ttft_s", "ttft_p50_s", "ttft_p99_s"):
        assert getattr(b, f) - getattr(a, f) == pytest.approx(1e-3, rel=1e-6)
    default = evaluate(_pool(servers=2, dram_B=1e12), workload)
    assert default.sharing["pool_metadata_s"] == pytest.approx(
        get_calibration()["pool_metadata_rtt"].si)


def test_pool_full_cost_and_rack_scope(workload):
    c = _pool(servers=2, nics=2, dram_B=1e11)
    free = dataclasses.replace(c, pool=dataclasses.replace(c.pool, server_cost_usd=0.0,
                                                           port_cost_usd=0.0))
    priced = dataclasses.replace(c, pool=dataclasses.replace(c.pool, server_cost_usd=20000.0,
                                                             port_cost_usd=1000.0))
    hours = get_calibration()["hardware_amortization"].si
    extra = cost_per_hour(priced) - cost_per_hour(free)
    assert extra == pytest.approx(2 * (20000 + 2 * 1000) / hours)
    # defaults: hardware_db's sourced prices, 11,000 USD a server, 2,188 + 469 USD a port
    default = cost_per_hour(c) - cost_per_hour(free)
    assert default == pytest.approx(2 * (11000 + 2 * (2188 + 469)) / hours)
    big = dataclasses.replace(c, instances=16)
    rack = dataclasses.replace(big, pool=dataclasses.replace(big.pool, scope="rack", rack_nodes=1))
    nodes = math.ceil(16 / 8)
    assert cost_per_hour(rack) - cost_per_hour(big) == pytest.approx(
        (nodes - 1) * (cost_per_hour(c) - cost_per_hour(
            dataclasses.replace(c, sharing="none"))))
    r = evaluate(rack, workload)
    assert r.sharing["pool_racks"] == nodes
    with pytest.raises(ValueError, match="scope"):
        evaluate(dataclasses.replace(c, pool=dataclasses.replace(c.pool, scope="row")), workload)


# ---- P2P -------------------------------------------------------------------------------------
def _p2p(**kw):
    return Cluster(**BASE, sharing="p2p", dram_B=2e9, p2p=P2PSpec(**kw))


def test_more_replicas_never_hotter_owner(workload):
    hot = [evaluate(_p2p(placement=pl, replication=r), workload).sharing["peer_hot_owner_share"]
           for pl in ("rendezvous", "prefix_hash") for r in (1, 2, 4)]
    for i in (0, 3):
        assert hot[i] >= hot[i + 1] - 1e-12 >= hot[i + 2] - 2e-12
        assert hot[i + 2] >= 0.25 - 1e-12


def test_prefix_placement_concentrates_peer_traffic(workload):
    blk = evaluate(_p2p(placement="rendezvous"), workload).sharing["peer_hot_owner_share"]
    pre = evaluate(_p2p(placement="prefix_hash"), workload).sharing["peer_hot_owner_share"]
    assert pre > blk


def test_hash_local_share_is_r_over_n_under_round_robin(workload):
    r = evaluate(_p2p(placement="rendezvous"), workload)
    assert r.sharing["peer_local_share"] == pytest.approx(0.25, abs=0.08)
    assert r.hit_ratio["dram"] / (r.hit_ratio["dram"] + r.hit_ratio["peer"]) == pytest.approx(
        r.sharing["peer_local_share"])


def test_directory_under_affinity_keeps_hits_local(workload):
    c = dataclasses.replace(_p2p(placement="directory"), routing="prefix_affinity")
    r = evaluate(c, workload)
    rr = evaluate(_p2p(placement="directory"), workload)
    hashed = evaluate(dataclasses.replace(c, p2p=P2PSpec(placement="rendezvous")), workload)
    assert r.sharing["peer_local_share"] > rr.sharing["peer_local_share"]
    assert r.sharing["peer_local_share"] > hashed.sharing["peer_local_share"] + 0.05


@pytest.mark.parametrize("sharing", ["central_pool", "p2p"])
def test_more_network_bandwidth_never_slower(sharing, workload):
    w = workload.with_rate(2.0)
    res = []
    for nic in ("tcp-25g", "roce-100g", "roce-400g"):
        c = Cluster(**BASE, sharing=sharing, dram_B=2e9, nic=nic,
                    pool=PoolSpec(servers=1, nics=1, nic=nic, dram_B=1e11))
        res.append(evaluate(c, w))
    for a, b in zip(res, res[1:]):
        for f in ("ttft_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s"):
            assert getattr(b, f) <= getattr(a, f) + 1e-12, f


def test_churn_fields(workload):
    r1 = evaluate(_p2p(replication=1), workload)
    r2 = evaluate(_p2p(replication=2), workload)
    assert r1.sharing["churn_instance_loss_dip"] == pytest.approx(
        (r1.hit_ratio["dram"] + r1.hit_ratio["peer"]) / 4)
    assert r2.sharing["churn_instance_loss_dip"] == 0.0
    assert r2.sharing["churn_rereplicate_B"] == pytest.approx(4 * 2e9 / 2 / 4)
    assert r1.sharing["churn_scale_out_move_B"] == pytest.approx(4 * 2e9 / 5)
    assert evaluate(_p2p(placement="directory"), workload).sharing["churn_scale_out_move_B"] == 0
    assert 0 < r1.sharing["churn_rewarm_s"] < math.inf


def test_vector_equals_scalar(workload):
    reps = np.array([1.0, 2.0, 3.0])
    rate = np.array([[0.5], [1.5]])
    c = _p2p(replication=reps, placement="prefix_hash")
    v = evaluate(c, workload.with_rate(rate))
    for i in range(2):
        for j in range(3):
            s = evaluate(_p2p(replication=int(reps[j]), placement="prefix_hash"),
                         workload.with_rate(float(rate[i, 0])))
            for f in ("ttft_s", "ttft_p99_s", "ttft_p50_s"):
                assert getattr(v, f)[i, j] == pytest.approx(getattr(s, f), rel=1e-6), f
            for k, u in s.sharing.items():
                assert v.sharing[k][i, j] == pytest.approx(u, rel=1e-9), k


def test_pool_vector_equals_scalar(workload):
    ssd = np.array([0.0, 5e9, 2e10])
    servers = np.array([[1.0], [3.0]])
    c = _pool(servers=servers, nics=1, nic="roce-100g", dram_B=1e9, ssd_B=ssd)
    v = evaluate(c, workload.with_rate(2.0))
    for i in range(2):
        for j in range(3):
            s = evaluate(_pool(servers=int(servers[i, 0]), nics=1, nic="roce-100g", dram_B=1e9,
                               ssd_B=float(ssd[j])), workload.with_rate(2.0))
            for f in ("ttft_s", "ttft_p90_s", "ttft_p99_s", "cost_usd_per_h"):
                assert getattr(v, f)[i, j] == pytest.approx(getattr(s, f), rel=1e-6), f
            for k, u in s.utilisation.items():
                assert v.utilisation[k][i, j] == pytest.approx(u, rel=1e-9), k


def test_directory_pays_a_lookup_hashes_do_not(workload):
    rtt = get_calibration()["pool_metadata_rtt"].si
    for pl, extra in (("rendezvous", 0.0), ("directory", rtt)):
        a = evaluate(_p2p(placement=pl), workload)
        b = evaluate(_p2p(placement=pl, lookup_latency_s=0.0), workload)
        assert a.hit_ratio["peer"] > 0
        assert a.ttft_s - b.ttft_s == pytest.approx(extra, abs=1e-12)


# ---- pool put admission (PoolSpec.put_policy) ------------------------------------------------
def _chains(chains: list[list[int]]) -> kvmodel.Trace:
    """A trace of the given block chains, one request per second, 64-token blocks."""
    n = len(chains)
    offs = np.r_[0, np.cumsum([len(ch) for ch in chains])].astype(np.int64)
    return kvmodel.Trace(np.arange(n, dtype=float), np.array([64 * len(ch) + 1 for ch in chains]),
                         np.full(n, 8), offs, np.concatenate(chains).astype(np.int64),
                         block_tokens=64)


def test_put_loss_by_run_position_by_hand():
    # block 7 accessed 3 times: its hits are run positions 1 and 2, lost w.p. (1-a) and (1-a)^2
    prof = Workload(_chains([[7], [7], [7]])).profile
    h_top = 2 / 3                                         # 2 hits of 3 accesses
    for a in (0.5, 0.25, 0.9):
        want = ((1 - a) + (1 - a) ** 2) / 2
        assert _sharing.put_loss(prof, h_top, a) == pytest.approx(want, rel=1e-12)
    assert _sharing.put_loss(prof, h_top, 0.333) == pytest.approx(
        (0.667 + 0.667 ** 2) / 2, rel=1e-3)               # between grid points: interpolated
    assert _sharing.put_loss(prof, h_top, 1.0) == 0.0 and _sharing.put_loss(prof, h_top, 0.0) == 1.0
    # two blocks each reused once: every hit is a first re-access, lost w.p. 1 - a
    prof2 = Workload(_chains([[1], [2], [1], [2]])).profile
    assert _sharing.put_loss(prof2, 0.5, 0.3) == pytest.approx(0.7, rel=1e-12)


def test_finite_ps_blocking_matches_the_truncated_geometric_law():
    for rho in (0.3, 0.99, 1.0, 1.7, 40.0):
        for k in (1, 4, 16):
            pi = rho ** np.arange(k + 1, dtype=float)    # M/G/1-PS/K: P(N = j) ~ rho^j, j <= K
            assert _sharing.ps_block_prob(rho, k) == pytest.approx(pi[-1] / pi.sum(), rel=1e-9)
    rho = np.linspace(0.0, 5.0, 51)
    p = _sharing.ps_block_prob(rho, 8)
    assert np.all(np.diff(p) >= 0) and p[0] == 0.0                # more load, more drops
    assert np.all(_sharing.ps_block_prob(rho, 16) <= p + 1e-15)   # a longer queue drops less


@pytest.fixture(scope="module")
def sessions():
    """Two-turn sessions: every request's new KV is the next turn's prefix."""
    tr = kvmodel.synthetic_trace(1500, seed=5, rate_per_s=30.0, session_fraction=1.0,
                                 turns_mean=2, think_time_s=2.0, system_prompt_tokens=0,
                                 user_tokens_mean=512, output_tokens_mean=64, block_tokens=64)
    return Workload(tr)


def _ssd_pool(**kw):
    """Puts bound by one PM9A3-class drive's writes (3.5 GB/s), gets by 400 GbE out of DRAM."""
    base = dict(servers=1, nics=1, nic="roce-400g", dram_B=2e12, ssd_B=7.68e12,
                nvme="nvme-gen4", metadata_rtt_s=0.0)
    return Cluster("gpt-j-6b", "h100-sxm", instances=8, tp=1, precision="bf16",
                   sharing="central_pool", hbm_cache_fraction=0.02, dram_B=0.0, ssd_B=0.0,
                   nic="roce-400g", pool=PoolSpec(**(base | kw)))


def test_throttle_turns_an_overloaded_put_path_into_lost_hits(sessions):
    full = evaluate(_ssd_pool(), sessions)
    assert not full.stable and "pool_ssd_write" in full.reason        # write-through: unstable
    thr = evaluate(_ssd_pool(put_policy="throttle", put_queue_limit=8), sessions)
    d = thr.sharing
    assert thr.stable and thr.utilisation["pool_ssd_write"] < 1.0
    a, lost = d["pool_put_admitted"], d["pool_hit_lost"]
    assert 0 < a < 1 and lost > 0
    # the admission is the finite PS queue's fixed point at the offered put load
    cap = kvmodel.get_memory("nvme-gen4").write_bw_Bps                 # one drive
    rho = d["pool_put_offered_Bps"] / cap
    assert a == pytest.approx(1 - _sharing.ps_block_prob(rho, 8), abs=1e-6)
    # conservation: offered = written + dropped; what drops cost is exactly the pool hits lost
    assert d["pool_put_offered_Bps"] == pytest.approx(d["pool_put_Bps"] + d["pool_put_dropped_Bps"])
    assert d["pool_put_Bps"] == pytest.approx(a * d["pool_put_offered_Bps"], rel=1e-12)
    assert thr.hit_ratio["pool"] == pytest.approx(full.hit_ratio["pool"] - lost, rel=1e-12)
    assert thr.hit_ratio["hbm"] == full.hit_ratio["hbm"]                # local tiers untouched
    # dropped puts come back: the offered bytes grow by the lost hits plus local hits re-offered
    per_hit = sessions.rate * sessions.blocks_per_request * 64 * 458752.0   # gpt-j: 448 KiB/token
    loss = _sharing.put_loss(sessions.profile, sum(full.hit_ratio.values()), a)
    extra = (d["pool_put_offered_Bps"] - full.sharing["pool_put_Bps"]) / per_hit
    assert extra == pytest.approx(sum(full.hit_ratio.values()) * loss, rel=1e-9)


def test_more_admission_capacity_never_lowers_the_hit(sessions):
    def pool_hit(**kw):
        return evaluate(_ssd_pool(**kw), sessions).hit_ratio["pool"]
    by_k = [pool_hit(put_policy="throttle", put_queue_limit=k) for k in (1, 2, 4, 8, 32, 128)]
    assert all(b >= a for a, b in zip(by_k, by_k[1:])) and by_k[-1] > by_k[0], by_k
    by_drives = [pool_hit(put_policy="throttle", ssd_B=7.68e12 * k) for k in (1, 2, 3, 5)]
    assert all(b >= a for a, b in zip(by_drives, by_drives[1:])), by_drives
    by_share = [pool_hit(put_policy="fraction", put_admission=x) for x in (0.1, 0.4, 0.7, 1.0)]
    assert all(b > a for a, b in zip(by_share, by_share[1:])), by_share
    assert by_share[-1] == pool_hit()                                  # all admitted = "all"


def test_throttle_vector_equals_scalar(sessions):
    ssd = np.array([7.68e12, 1.536e13, 3.072e13])
    v = evaluate(_ssd_pool(put_policy="throttle", ssd_B=ssd), sessions)
    for j, s_B in enumerate(ssd):
        s = evaluate(_ssd_pool(put_policy="throttle", ssd_B=float(s_B)), sessions)
        assert v.hit_ratio["pool"][j] == pytest.approx(s.hit_ratio["pool"], rel=1e-9)
        for k in ("pool_put_admitted", "pool_put_Bps", "pool_hit_lost"):
            assert v.sharing[k][j] == pytest.approx(s.sharing[k], rel=1e-9), k
        assert v.ttft_s[j] == pytest.approx(s.ttft_s, rel=1e-6)


def test_put_policy_fields_are_checked_and_read_from_toml(tmp_path):
    for kw, field_ in ((dict(put_policy="drop"), "put_policy"), (dict(put_admission=0.0),
                       "put_admission"), (dict(put_queue_limit=0), "put_queue_limit")):
        with pytest.raises(ValueError, match=f"pool.{field_}"):
            _sharing.check_pool(PoolSpec(**kw))
    f = tmp_path / "c.toml"
    f.write_text('[cluster]\nmodel = "llama-3.1-8b"\ngpu = "h100-sxm"\nsharing = "central_pool"\n'
                 '[cluster.pool]\nput_policy = "throttle"\nput_queue_limit = 4\n')
    c, _ = kvmodel.cluster.load_cluster_config(f)
    assert (c.pool.put_policy, c.pool.put_queue_limit) == ("throttle", 4)
    assert PoolSpec().put_policy == "all"            # default: write-through, as before


def test_throttle_in_a_closed_loop_sizes_admission_at_the_loops_rate(sessions):
    loop = Workload(sessions.trace, concurrency=200, think_time_s=0.5)
    assert not evaluate(_ssd_pool(), loop).stable                    # write-through saturates
    r = evaluate(_ssd_pool(put_policy="throttle"), loop)
    assert r.stable and r.workload["load_mode"] == "concurrency"
    assert 0 < r.sharing["pool_put_admitted"] < 1 and r.utilisation["pool_ssd_write"] < 1
    # the loop's rate with the throttled hits; the admission was sized at the (higher) rate
    # of the unthrottled hits, so the put path is no fuller than that
    assert r.served_rate_per_s == pytest.approx(200 / (r.e2e_s + 0.5), rel=1e-9)


# ---- the room dropped puts leave in the pool's LRU ------------------------------------------
def _toy_room_table():
    """An LRU curve by hand: H(k) = k / 400 up to k = 200 blocks, then flat at 0.5."""
    prof = type("Prof", (), {"unique_blocks": 10_000, "_cache": {}})()
    return _sharing.pool_room_table(prof, lambda k: np.minimum(k, 200.0) / 400.0, ("toy",))


def test_pool_room_by_hand():
    table = _toy_room_table()
    # window of an admit-all LRU of k <= 200 blocks: tau = -400 ln(1 - k/400) accesses; with a
    # share a admitted the pool of C blocks reaches k' with k' + (1-a) 400 (1-k'/400) ln(1-k'/400)
    # = C; a = 0.5, C = 60: k' = 104.87 (Newton below), H = 0.26216 (the curve at C: 0.15)
    def g(k, a):
        return k + (1 - a) * 400 * (1 - k / 400) * math.log(1 - k / 400)
    k = 60.0
    for _ in range(30):
        k -= (g(k, 0.5) - 60) / (0.5 + 0.5 * -math.log(1 - k / 400))
    assert g(k, 0.5) == pytest.approx(60, abs=1e-9)
    assert k == pytest.approx(104.865, abs=1e-3)
    assert _sharing.pool_room_hit(table, 60.0, 0.5) == pytest.approx(k / 400, rel=2e-3)
    # all admitted: the curve itself; beyond the reuse (flat curve) the room buys nothing
    assert _sharing.pool_room_hit(table, 60.0, 1.0) == pytest.approx(0.15, rel=1e-3)
    assert _sharing.pool_room_hit(table, 5_000.0, 0.1) == pytest.approx(0.5, rel=1e-12)


def test_pool_room_grows_as_fewer_puts_enter_and_vectorises():
    table = _toy_room_table()
    a = np.array([1.0, 0.8, 0.5, 0.2, 0.05])
    h = _sharing.pool_room_hit(table, 60.0, a)
    assert np.all(np.diff(h) > 0) and h[-1] <= 0.5             # less admitted, more room
    caps = np.array([[10.0], [60.0], [150.0]])
    hv = _sharing.pool_room_hit(table, caps, a)                # [3, 5]
    assert hv.shape == (3, 5) and np.all(np.diff(hv, axis=0) >= 0)   # more capacity, more hits
    for i, c in enumerate(caps[:, 0]):
        for j, x in enumerate(a):
            assert hv[i, j] == pytest.approx(_sharing.pool_room_hit(table, c, x), rel=1e-12)


def test_a_capacity_bound_throttled_pool_keeps_blocks_longer(sessions):
    """A pool of ~680 blocks (20 GB of gpt-j KV) that the put path fills at a share a < 1: its
    hit is that of an admit-all LRU of more blocks (the room), less the lost hits."""
    kw = dict(dram_B=20e9, ssd_B=1e6)                          # one drive bounds the puts
    full = evaluate(_ssd_pool(**kw), sessions).hit_ratio
    thr = evaluate(_ssd_pool(put_policy="throttle", **kw), sessions)
    a, lost = thr.sharing["pool_put_admitted"], thr.sharing["pool_hit_lost"]
    assert 0 < a < 0.5 and lost > 0
    # without the room the pool would hit full - lost; with it, more (its reach grew)
    assert thr.hit_ratio["pool"] + lost > full["pool"] * 1.2
    big = evaluate(_ssd_pool(put_policy="throttle"), sessions)   # holds the working set
    assert big.hit_ratio["pool"] + big.sharing["pool_hit_lost"] == pytest.approx(
        evaluate(_ssd_pool(), sessions).hit_ratio["pool"], rel=1e-12)   # no room to gain
    dram = np.array([5e9, 20e9, 80e9])
    v = evaluate(_ssd_pool(put_policy="throttle", dram_B=dram, ssd_B=1e6), sessions)
    for j, d in enumerate(dram):
        s = evaluate(_ssd_pool(put_policy="throttle", dram_B=float(d), ssd_B=1e6), sessions)
        assert v.hit_ratio["pool"][j] == pytest.approx(s.hit_ratio["pool"], rel=1e-9)
    assert np.all(np.diff(v.hit_ratio["pool"]) > 0)
