"""The simulator's shared level (central pool, P2P) and its network servers (kvmodel/sim/_sharing.py):
toy cases by hand, conservation of bytes, Little's law per server, monotonicity, degenerate cases."""

import numpy as np
import pytest

import kvmodel
from kvmodel.catalog.hardware import get_link, get_memory
from kvmodel.sim import SimP2P, SimPool, poisson_requests, simulate
from kvmodel.sim._path_server import PathServer
from kvmodel.sim._sharing import SharedLevel, VirtualPS
from kvmodel.workload._trace_types import Trace

M, G, BT = "llama-3.1-8b", "h100-sxm", 64
GB = 1e9


# ---- toy cases by hand: the SharedLevel alone (1 token = 1 GB, 1 token per block) -------------
def _pool_level(**kw):
    spec = SimPool(capacity_blocks=8, media_read_Bps=10 * GB, **kw)   # 10 GB/s: the bottleneck
    lvl = SharedLevel(spec, 2, block_tokens=1, tok_B=GB)
    lvl.lookup(0.0, 0, 0, [7], 0, 10)          # request 0 misses and puts block 7
    return lvl


def test_virtual_time_server_matches_the_path_server_job_by_job():
    rng = np.random.default_rng(7)
    t = np.cumsum(rng.exponential(1.0, 400))
    d = rng.exponential(0.8, 400) * (rng.random(400) > 0.1)   # some zero-demand jobs
    ref, fast = PathServer(), VirtualPS()
    for k in range(400):
        for s in (ref, fast):
            s.add(t[k], k, d[k])
        if k % 50 == 7:   # projections agree while jobs are in service
            proj = ref.finish_times()
            for key in list(fast.jobs)[:5]:
                assert fast.end(key) == pytest.approx(proj[key], rel=1e-9, abs=1e-12)
    ref.drain()
    fast.drain()
    ends = np.array([fast.done[k] for k in range(400)])
    assert np.allclose(ends, [ref.done[k] for k in range(400)], rtol=1e-9, atol=1e-12)
    assert fast.area == pytest.approx(ref.area) and fast.busy == pytest.approx(ref.busy)
    assert fast.area == pytest.approx(fast.sojourn, rel=1e-12) and fast.served == 400


def test_two_concurrent_1GB_pulls_over_one_10GBps_server_take_0_2s_each():
    lvl = _pool_level()
    assert lvl.lookup(0.0, 0, 1, [7], 0, 10) == 1 and lvl.lookup(0.0, 1, 2, [7], 0, 10) == 1
    p1, p2 = [1, 0, 0.0], [2, 0, 0.0]
    lvl.fetch(0.0, 1, p1)
    lvl.fetch(0.0, 2, p2)
    lvl.refresh(1)                               # the engine re-projects when it forms a step
    assert p1[2] == pytest.approx(0.2) and p2[2] == pytest.approx(0.2)


def test_a_lone_pull_takes_bytes_over_bandwidth_plus_the_lookup_round_trip():
    lvl = _pool_level(lookup_s=1e-3)
    lvl.lookup(0.0, 1, 1, [7], 0, 10)
    p = [1, 0, 0.0]
    lvl.fetch(0.5, 1, p)
    assert p[2] == pytest.approx(0.5 + 0.1 + 1e-3)
    # a slower client NIC is the bottleneck instead: 1 GB / 3.125 GB/s (25 GbE, TCP)
    lvl = _pool_level(client_nic="tcp-25g")
    lvl.lookup(0.0, 1, 1, [7], 0, 10)
    p = [1, 0, 0.0]
    lvl.fetch(0.0, 1, p)
    assert p[2] == pytest.approx(GB / get_link("tcp-25g").achieved_bw_Bps)


def test_pool_media_from_hardware_db_bound_the_servers():
    ssd = SimPool(nic="ib-ndr", nics=2, media="nvme-gen4", media_devices=2)
    drive = get_memory("nvme-gen4")                                  # 6.5 / 3.5 GB/s a drive
    assert ssd.server_Bps() == (2 * drive.read_bw_Bps, 2 * drive.write_bw_Bps)  # not the NICs
    dram = SimPool(nic="ib-ndr", nics=2, media="ddr5-4800", media_devices=16)
    assert dram.server_Bps() == (2 * get_link("ib-ndr").achieved_bw_Bps,) * 2
    with pytest.raises(ValueError, match="media='ddr5-4800'"):
        SimPool(media="ddr5-4800", media_read_Bps=1e9)


def test_a_put_into_a_nic_delays_a_pull_through_it():
    lvl = SharedLevel(SimP2P(capacity_blocks=8, client_nic="tcp-25g"), 3, 1, GB)
    owned = lambda o: next(b for b in range(100) if lvl._owners(b, b)[0] == o)  # noqa: E731
    a, b = owned(0), owned(1)
    lvl.lookup(0.0, 1, 0, [a], 0, 10)           # instance 1 computes block a, owned by 0
    lvl.lookup(0.0, 2, 1, [b], 0, 10)           # instance 2 computes block b, owned by 1
    lvl.put(0.0, 0)                              # 1 GB: tx[1] -> rx[0]
    assert lvl.lookup(0.0, 0, 2, [b], 0, 10) == 1
    p = [2, 0, 0.0]
    lvl.fetch(0.0, 2, p)                         # 1 GB: tx[1] -> rx[0], sharing both with the put
    assert p[2] == pytest.approx(2 * GB / get_link("tcp-25g").achieved_bw_Bps)
    assert lvl.lookup(0.0, 0, 3, [a], 0, 10) == 1 and lvl.plan[3][0] == [("host[0]", GB)]


# ---- whole simulations ---------------------------------------------------------------------------
def _trace(n=300, lam=6.0, prefixes=6, pre=1024, own=256, seed=3):
    """Poisson arrivals; prompt = one of ``prefixes`` shared prefixes (Zipf-ish) + its own part."""
    base = poisson_requests(n, lam, pre + own, 8, seed=seed)
    rng = np.random.default_rng(seed)
    pick = np.minimum(rng.zipf(1.5, n) - 1, prefixes - 1)
    pb, ob = pre // BT, own // BT
    ids = np.concatenate([np.concatenate([k * 1000 + np.arange(pb), 10**6 + i * ob + np.arange(ob)])
                          for i, k in enumerate(pick)]).astype(np.int64)
    return Trace(base.arrival_s, base.input_len, base.output_len,
                 np.arange(n + 1, dtype=np.int64) * (pb + ob), ids, block_tokens=BT)


TR = _trace()
RUN = dict(instances=4, prefix_cache_blocks=20, block_tokens=BT)


def _run(sharing="none", spec=None, tr=TR, **kw):
    return simulate(M, G, tr, **(RUN | kw), sharing=sharing, sharing_spec=spec)


POOL = SimPool(capacity_blocks=400, servers=2, nic="tcp-25g", client_nic="tcp-25g", lookup_s=2e-4)
P2P = SimP2P(capacity_blocks=100, client_nic="tcp-25g", lookup_s=2e-4)


@pytest.fixture(scope="module")
def runs():
    return {"none": _run(), "pool": _run("central_pool", POOL), "p2p": _run("p2p", P2P)}


def test_shared_levels_add_hits_beyond_the_local_cache(runs):
    local = runs["none"].hit_ratio
    for mode, level in (("pool", "pool"), ("p2p", "peer")):
        h = runs[mode].hit_ratio_by_level()
        assert h["local"] == pytest.approx(local)     # same routing, same local cache
        assert h[level] > 0.05
        assert runs[mode].hit_ratio == pytest.approx(sum(h.values()))


def test_bytes_are_conserved_between_senders_and_receivers(runs):
    for mode in ("pool", "p2p"):
        net = runs[mode].network
        side = lambda pre, f: sum(s[f] for k, s in net.items() if k.startswith(pre))  # noqa: E731
        sent = side("pool_tx", "get_B") + side("tx", "get_B")
        assert sent > 0 and sent == pytest.approx(side("rx", "get_B"), rel=1e-12)
        put_in = side("pool_rx", "put_B") + side("rx", "put_B")
        assert put_in > 0 and side("tx", "put_B") == pytest.approx(put_in, rel=1e-12)
        b = runs[mode].shared_bytes()
        assert b["got"] == pytest.approx(b["received"]) and b["put"] == pytest.approx(b["stored"])
        assert (b["host"] > 0) == (mode == "p2p")
    r = runs["pool"]
    assert 0 < r.pool_blocks_got <= r.pool_blocks_put
    block_B = BT * 131072.0                            # llama-3.1-8b bf16: 128 KiB per token
    got = sum(s["get_B"] for k, s in r.network.items() if k.startswith("pool_tx"))
    assert got <= r.level_hit_blocks["pool"] * block_B * (1 + 1e-12)


def test_littles_law_holds_on_every_network_server(runs):
    for mode in ("pool", "p2p"):
        stats = runs[mode].network_stats()
        assert any(s["mean_jobs"] > 0 for s in stats.values())
        for name, s in stats.items():
            assert s["little_rel_err"] < 1e-9, name
            assert 0.0 <= s["util"] <= 1.0 and s["mean_jobs"] >= s["util"] - 1e-12


def test_the_pool_metadata_round_trip_is_paid_by_misses_too():
    first = lambda rtt: _run("central_pool", SimPool(capacity_blocks=400, lookup_s=rtt)).ttft_s[0]  # noqa: E731
    assert first(0.01) - first(0.0) == pytest.approx(0.01)   # request 0 finds nothing anywhere


def test_pool_with_capacity_zero_is_sharing_none_exactly(runs):
    r = _run("central_pool", SimPool(capacity_blocks=0, lookup_s=1e-3))
    ref = runs["none"]
    for f in ("ttft_s", "e2e_s", "cached_tokens", "instance"):
        assert np.array_equal(getattr(r, f), getattr(ref, f)), f
    assert r.hit_blocks == ref.hit_blocks and r.level_hit_blocks == {"pool": 0}
    assert all(s["jobs"] == 0 for s in r.network.values())


def test_pool_with_capacity_zero_behind_a_dram_tier_is_sharing_none_exactly():
    kw = dict(cache_tier="dram", prefix_cache_blocks=40)
    r, ref = _run("central_pool", SimPool(capacity_blocks=0), **kw), _run(**kw)
    for f in ("ttft_s", "e2e_s", "cached_tokens", "path_busy_s", "path_sojourn_s"):
        assert np.array_equal(getattr(r, f), getattr(ref, f)), f
    assert r.saved_B == ref.saved_B > 0 and r.hit_blocks == ref.hit_blocks > 0


def test_a_local_dram_hit_and_a_pool_fetch_both_gate_the_first_chunk():
    """Request 1 hits 16 blocks in its DRAM tier (a few ms to load) and 4 in the pool (under
    1 ms to move, then a 1 s lookup). Requests 2 and 3 arrive while its tier load runs and
    re-project the path: request 1 still waits for the lookup, not only for its tier load."""
    chain = np.arange(20, dtype=np.int64)
    tr = Trace(np.array([0.0, 5.0, 5.0015, 5.002]), np.full(4, 20 * BT + 1), np.full(4, 4),
               np.arange(5, dtype=np.int64) * 20, np.tile(chain, 4), block_tokens=BT)
    kw = dict(instances=1, cache_tier="dram", prefix_cache_blocks=16, block_tokens=BT)

    def run(rtt):
        spec = SimPool(capacity_blocks=100, lookup_s=rtt)
        return simulate(M, G, tr, **kw, sharing="central_pool", sharing_spec=spec)
    slow, fast = run(1.0), run(0.0)
    assert slow.hit_ratio_by_level() == pytest.approx({"local": 48 / 80, "pool": 12 / 80})
    assert fast.ttft_s[1] < 0.1 and slow.path_jobs[0] >= 6   # loads and saves on the path
    d = slow.ttft_s[1] - fast.ttft_s[1]           # the lookup lies on request 1's critical path
    assert 0.99 < d <= 1.0 + 1e-9


def test_p2p_with_one_instance_moves_nothing_over_the_network():
    one = dict(instances=1, prefix_cache_blocks=10)
    ref = _run(**one)
    r = _run("p2p", SimP2P(capacity_blocks=0), **one)
    assert np.array_equal(r.ttft_s, ref.ttft_s) and r.hit_blocks == ref.hit_blocks
    # with a partition: a second, inclusive LRU level of the one instance. LRU stacks nest, so
    # local + partition hits = the hits of one LRU of the partition's size; all from the host
    big = _run("p2p", SimP2P(capacity_blocks=60), **one)
    single = _run(instances=1, prefix_cache_blocks=60)
    assert big.hit_blocks == single.hit_blocks
    assert big.level_hit_blocks["peer"] == 0 and big.level_hit_blocks["peer_local"] > 0
    assert all(s["get_B"] == 0 and s["put_B"] == 0 for k, s in big.network.items()
               if not k.startswith("host"))


def test_more_network_bandwidth_is_never_slower():
    slow_tr = _trace(n=200, lam=12.0)
    out = []
    for nic, n in (("tcp-25g", 1), ("tcp-25g", 2), ("roce-100g", 1), ("ib-ndr", 1)):
        spec = SimPool(capacity_blocks=400, servers=1, nics=n, nic=nic, client_nic=nic)
        r = _run("central_pool", spec, tr=slow_tr)
        out.append((r.ttft_mean_s, r.ttft_p99_s))
    for a, b in zip(out, out[1:]):
        assert b[0] <= a[0] * (1 + 1e-9) and b[1] <= a[1] * (1 + 1e-9), out


def test_more_replicas_never_make_the_hottest_owner_hotter():
    shares = []
    for r_ in (1, 2, 4):
        spec = SimP2P(capacity_blocks=200, placement="prefix", replication=r_)
        net = _run("p2p", spec).network
        sent = [s["get_B"] for k, s in net.items() if k.startswith("tx")]
        shares.append(max(sent) / sum(sent) if sum(sent) else 0.0)
    assert shares[0] >= shares[1] >= shares[2], shares


def test_bad_sharing_arguments_name_the_field():
    with pytest.raises(ValueError, match="sharing='pool'"):
        _run("pool")
    with pytest.raises(ValueError, match="sharing_spec"):
        _run("p2p", POOL)
    with pytest.raises(ValueError, match="replication=5"):
        _run("p2p", SimP2P(replication=5))
    with pytest.raises(ValueError, match="placement"):
        SimP2P(placement="ring")
    with pytest.raises(ValueError, match="nic='eth-7g'"):
        SimPool(nic="eth-7g")
    with pytest.raises(ValueError, match="capacity_blocks=-1"):
        SimPool(capacity_blocks=-1)


# ---- pool put admission ----------------------------------------------------------------------
def test_a_full_put_queue_drops_the_put_by_hand():
    lvl = SharedLevel(SimPool(capacity_blocks=8, media_read_Bps=10 * GB, put_queue_limit=1),
                      2, block_tokens=1, tok_B=GB)
    lvl.lookup(0.0, 0, 0, [7], 0, 10)            # empty put queue: admitted, block 7 stored
    lvl.put(0.0, 0)                              # its 1 GB put: 0.1 s at 10 GB/s
    lvl.lookup(0.05, 1, 1, [8], 0, 10)           # one put in service = the limit: dropped
    assert lvl.lru.contains(7) and not lvl.lru.contains(8) and 1 not in lvl.puts
    assert lvl.put_blocks == dict(offered=2, admitted=1, dropped=1, evicted=0)
    lvl.lookup(0.2, 1, 2, [8], 0, 10)            # the queue drained: offered again, admitted
    assert lvl.lru.contains(8) and lvl.puts[2] == [("pool_rx[0]", GB), ("tx[1]", GB)]
    lvl.lookup(0.3, 0, 3, [7, 9], 0, 10)         # a hit refreshes; only 9 is a put
    assert lvl.put_blocks["offered"] == 4 and lvl.levels["pool"] == 1


def test_put_admission_share_is_a_fixed_hash_of_the_request():
    def dropped(seed_shift):
        lvl = SharedLevel(SimPool(capacity_blocks=10**6, put_admission=0.3), 1, 1, GB)
        for rid in range(2000):
            lvl.lookup(0.0, 0, rid, [rid + seed_shift], 0, 10)
        return lvl.put_blocks["dropped"]
    d = dropped(10**7)
    assert d == dropped(10**7) and abs(d / 2000 - 0.7) < 0.04       # repeatable, ~1 - 0.3
    with pytest.raises(ValueError, match="put_admission"):
        SimPool(put_admission=1.5)
    with pytest.raises(ValueError, match="put_queue_limit"):
        SimPool(put_queue_limit=0)


def _sessions(n=400, lam=30.0):
    return kvmodel.synthetic_trace(n, seed=5, rate_per_s=lam, session_fraction=1.0, turns_mean=2,
                                   think_time_s=2.0, system_prompt_tokens=0,
                                   user_tokens_mean=512, output_tokens_mean=64, block_tokens=BT)


def _put_run(tr, **kw):
    spec = SimPool(**(dict(capacity_blocks=10**6, nic="roce-400g", client_nic="roce-400g",
                           media_write_Bps=2 * GB) | kw))
    return simulate("gpt-j-6b", G, tr, instances=4, prefix_cache_blocks=20, block_tokens=BT,
                    sharing="central_pool", sharing_spec=spec)


def test_puts_are_conserved_offered_admitted_dropped_evicted():
    r = _put_run(_sessions(), capacity_blocks=200, put_queue_limit=4)
    p = r.pool_puts
    assert p["dropped"] > 0 and p["evicted"] > 0
    assert p["offered"] == p["admitted"] + p["dropped"]
    assert p["admitted"] == p["evicted"] + p["resident"] and p["resident"] == 200
    block_B = BT * 458752.0                                   # gpt-j-6b bf16: 448 KiB a token
    stored = sum(s["put_B"] for k, s in r.network.items() if k.startswith("pool_rx"))
    assert stored == pytest.approx(p["admitted"] * block_B, rel=1e-12)
    assert r.pool_blocks_put <= p["admitted"]                 # distinct blocks ever stored


def test_more_put_capacity_never_admits_less_nor_lowers_the_hit_at_scale():
    tr = _sessions(800)
    runs = [_put_run(tr, put_queue_limit=k) for k in (1, 2, 4, 8, 16)]
    admitted = [r.pool_puts["admitted"] for r in runs]
    assert all(b >= a for a, b in zip(admitted, admitted[1:])), admitted
    unlimited = _put_run(tr)                                  # no limit: every put written
    assert unlimited.pool_puts["dropped"] == 0
    assert all(unlimited.hit_ratio > r.hit_ratio for r in runs)
    # which requests a queue limit drops (and so their reuse) varies from limit to limit: the
    # hit moves by a few points between neighbouring limits, monotone over x4 bandwidth steps
    by_bw = [_put_run(tr, put_queue_limit=2, media_write_Bps=x * GB) for x in (0.5, 2.0, 8.0, 32.0)]
    for f in (lambda r: r.pool_puts["admitted"], lambda r: r.hit_ratio):
        vals = [f(r) for r in by_bw]
        assert all(b >= a for a, b in zip(vals, vals[1:])), vals
