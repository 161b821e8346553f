"""Shared KV paths as processor-sharing servers (kvmodel/instance/_paths.py) in estimate."""

import numpy as np
import pytest

import kvmodel
from kvmodel.catalog.hardware import LinkSpec
from kvmodel.instance._paths import PathLoad, ps_closed_factor, ps_open_delay, ps_wait_prob
from kvmodel.sim._path_server import PathServer
from kvmodel.tiers import Tier, TransferPath

M, G = "llama-3.1-8b", "h100-sxm"
GB = 1e9


def _toy_tier(bw=10 * GB, write=None, duplex="full"):
    link = LinkSpec("toy", "toy link", "pcie", bw, 0.0, duplex, bw, None)
    path = TransferPath("toy", (link,), source_Bps=float("inf"), source_write_Bps=write)
    return Tier("dram", 1e15, path, device="toy-dram")


# ---- hand goldens ---------------------------------------------------------------------------
def test_two_concurrent_loads_on_one_10GBps_link_take_twice_as_long():
    nbytes = 5 * GB
    alone = nbytes / (10 * GB)
    load = PathLoad([(_toy_tier(), nbytes)], [])
    assert load.read["link toy"] == pytest.approx(alone)
    # closed loop of 2 clients always on the path (no think time): utilisation 1
    assert alone * ps_closed_factor(1.0, 2.0) == pytest.approx(2 * nbytes / (10 * GB))
    # the simulator's server: both end at 2 x bytes / 10 GB/s
    s = PathServer()
    s.add(0.0, "a", alone)
    s.add(0.0, "b", alone)
    assert s.finish_times() == pytest.approx({"a": 2 * alone, "b": 2 * alone})


def test_processor_sharing_server_by_hand():
    s = PathServer()
    s.add(0.0, "a", 1.0)      # alone until 0.5, then shares with b
    s.add(0.5, "b", 1.0)
    ends = s.finish_times()   # a: 0.5 left at half speed -> 1.5; b: 0.5 left alone -> 2.0
    assert ends == pytest.approx({"a": 1.5, "b": 2.0})
    s.drain()
    assert s.done == pytest.approx({"a": 1.5, "b": 2.0})
    assert s.area == pytest.approx(s.sojourn) == pytest.approx(1.5 + 1.5)  # Little, exactly
    assert s.busy == pytest.approx(2.0)


def test_open_loop_closed_forms():
    assert ps_open_delay(1.0, 0.5) == pytest.approx(1.0)          # D U / (1 - U)
    assert np.isinf(ps_open_delay(1.0, 1.0))
    assert ps_closed_factor(0.0, 4.0) == 1.0 and ps_closed_factor(1.0, 4.0) == 4.0
    assert ps_wait_prob(0.0) == 0.0 and ps_wait_prob(1.0) == 1.0


def test_writes_share_media_and_half_duplex_links_not_full_duplex_ones():
    full = PathLoad([(_toy_tier(), 1 * GB)], [(_toy_tier(), 1 * GB)])
    half = PathLoad([(_toy_tier(duplex="half"), 1 * GB)], [(_toy_tier(duplex="half"), 1 * GB)])
    assert full.queued("link toy") == pytest.approx(0.1)
    assert half.queued("link toy") == pytest.approx(0.2)
    assert full.utilisation(5.0)["link toy"] == pytest.approx(0.5)
    assert half.utilisation(5.0)["link toy"] == pytest.approx(1.0)


# ---- estimate ---------------------------------------------------------------------------------
LONG = dict(input_len=100_000, output_len=128, cached_prefix_len=99_000, cache_tier="ssd")


def test_bar_four_concurrent_long_prefixes_on_one_nvme_at_least_double_ttft():
    one = kvmodel.estimate(M, G, concurrency=1, **LONG)
    four = kvmodel.estimate(M, G, concurrency=4, **LONG)
    assert four.ttft_s >= 2.0 * one.ttft_s
    # the same loads queue harder on the drive ("best" itself loads less as the drive fills:
    # tests/instance/test_best_contended.py)
    one, four = (kvmodel.estimate(M, G, concurrency=c, prefix_policy="load", **LONG)
                 for c in (1, 4))
    dev = [k for k in four.path_utilisation if "device" in k]
    assert dev and four.path_utilisation[dev[0]] > one.path_utilisation[dev[0]]


def test_single_client_is_unchanged_by_the_path_model():
    # one client never queues behind itself: its saves end before its next load
    a = kvmodel.estimate(M, G, concurrency=1, **LONG)
    b = kvmodel.estimate(M, G, concurrency=1, kv_save=0.0, **LONG)
    assert a.ttft_s == b.ttft_s and a.tpot_s == b.tpot_s


@pytest.mark.parametrize("mode", ["concurrency", "request_rate"])
def test_more_concurrent_loads_never_faster(mode):
    xs = [1, 2, 4, 8, 16] if mode == "concurrency" else [0.05, 0.1, 0.2, 0.3, 0.4]
    ttft = [kvmodel.estimate(M, G, **{mode: x}, **LONG).ttft_s for x in xs]
    assert all(b >= a for a, b in zip(ttft, ttft[1:])), ttft
    arr = kvmodel.estimate(M, G, **{mode: np.array(xs, dtype=float)}, **LONG).ttft_s
    np.testing.assert_allclose(arr, ttft, rtol=1e-6)


@pytest.mark.parametrize("mode", [dict(concurrency=8), dict(request_rate=2.0), dict(batch="max")])
def test_faster_link_never_slower(mode):
    kw = dict(input_len=20_000, output_len=64, cached_prefix_len=16_000, **mode)
    slow = kvmodel.estimate(M, G, cache_tier=_toy_tier(10 * GB), **kw)
    fast = kvmodel.estimate(M, G, cache_tier=_toy_tier(20 * GB), **kw)
    assert fast.ttft_s <= slow.ttft_s
    # the same loads keep a faster link less busy ("best" may load more over it)
    slow, fast = (kvmodel.estimate(M, G, cache_tier=_toy_tier(bw), prefix_policy="load", **kw)
                  for bw in (10 * GB, 20 * GB))
    assert fast.path_utilisation["link toy"] <= slow.path_utilisation["link toy"]


def test_open_loop_over_path_capacity_is_unstable_naming_the_segment():
    kw = dict(input_len=16_896, output_len=16, cached_prefix_len=16_384, cache_tier="ssd",
              prefix_policy="load")
    e1 = kvmodel.estimate(M, G, request_rate=1.0, **kw)
    u1 = max(e1.path_utilisation.values())
    e = kvmodel.estimate(M, G, request_rate=np.array([0.5, 1.2]) / u1, **kw)
    assert list(e.stable) == [True, False]
    assert "ssd: device" in e.reason[1] and "over capacity" in e.reason[1]
    assert np.isinf(e.ttft_s[1])


def test_saves_show_in_breakdown_and_load_the_path():
    kw = dict(request_rate=0.25, **LONG)
    with_save = kvmodel.estimate(M, G, **kw)
    no_save = kvmodel.estimate(M, G, kv_save=0.0, **kw)
    op = with_save.breakdown["step"]["kv_save"]
    per_tok = kvmodel.estimate(M, G).kv_B_per_token
    assert op["bytes"] == pytest.approx(1000 * per_tok)   # the 1,000 new tokens, one GPU
    assert op["time_s"] == 0.0                            # the ideal connector saves async
    assert no_save.breakdown["step"]["kv_save"]["bytes"] == 0.0
    dev = [k for k in with_save.path_utilisation if "device" in k][0]
    assert with_save.path_utilisation[dev] > no_save.path_utilisation[dev]
    assert with_save.ttft_s > no_save.ttft_s


def test_kv_save_must_be_a_fraction():
    with pytest.raises(ValueError, match="kv_save"):
        kvmodel.estimate(M, G, kv_save=1.5, **LONG)


def test_littles_law_on_the_path_queue():
    """Open loop, reads only: jobs on the path = rate x time on the path = U / (1 - U)."""
    tier = _toy_tier(10 * GB)
    D = 2 * GB / (10 * GB)
    load = PathLoad([(tier, 2 * GB)], [])
    for lam in (1.0, 2.5, 4.0):
        delay, _ = load.delay(lam)
        U = lam * D
        assert lam * (D + delay) == pytest.approx(U / (1 - U))


def test_sync_saves_add_latency_async_ones_only_load_and_efficiency_shares_the_path():
    import dataclasses

    from kvmodel.catalog.hardware import get_connector
    ideal = get_connector("ideal")
    sync = dataclasses.replace(ideal, key="ideal-sync", save_sync=True)
    half = dataclasses.replace(ideal, key="ideal-half", bandwidth_efficiency=0.5)
    kw = dict(request_rate=0.1, prefix_policy="load", **LONG)
    a = kvmodel.estimate(M, G, **kw)
    s = kvmodel.estimate(M, G, connector=sync, **kw)
    h = kvmodel.estimate(M, G, connector=half, **kw)
    save_s = s.breakdown["step"]["kv_save"]["time_s"]
    assert save_s > 0 and s.ttft_s == pytest.approx(a.ttft_s + save_s)
    assert s.path_utilisation == pytest.approx(a.path_utilisation)
    for k, u in a.path_utilisation.items():
        assert h.path_utilisation[k] == pytest.approx(2 * u)
