"""prefix_policy="best" decided under the shared path's contention (kvmodel/instance/_contended.py)."""

from types import SimpleNamespace

import numpy as np
import pytest

import kvmodel
from kvmodel.catalog.hardware import LinkSpec
from kvmodel.instance import _contended
from kvmodel.instance._paths import PathLoad, ps_closed_factor
from kvmodel.tiers import Tier, TransferPath

M, G = "llama-3.1-8b", "h100-sxm"
GB = 1e9
# a long prefix on one NVMe: alone, loading it beats recomputing it by far
NVME = dict(input_len=32_768, output_len=128, cached_prefix_len=30_720, cache_tier="ssd")
POLICIES = ("load", "recompute", "split")


def _toy_tier(bw=10 * GB):
    link = LinkSpec("toy", "toy link", "pcie", bw, 0.0, "full", bw, None)
    path = TransferPath("toy", (link,), source_Bps=float("inf"))
    return Tier("dram", 1e15, path, device="toy-dram")


# ---- by hand ---------------------------------------------------------------------------------
def test_two_loads_on_a_10GBps_link_switch_best_to_recompute():
    """5 GB of prefix per request over one 10 GB/s link: 0.5 s alone, 1.0 s when two requests
    load at once (both always on the link: processor sharing halves each one's rate);
    recomputing the prefix takes 0.8 s, computing the new tokens 0.05 s; no overlap."""
    P, t_full, t_new = 1000.0, 0.8, 0.05
    D = PathLoad([(_toy_tier(), 5 * GB)], []).read["link toy"]
    assert D == pytest.approx(0.5)

    def build(policy, stretch=1.0):
        x = {"recompute": 0.0, "load": P}.get(policy, np.floor(
            t_full * P / (stretch * D + t_full - t_new)))  # prefill_choice's split balance
        return SimpleNamespace(loaded=x, P=P, t_load=D * x / P)

    def serve_with(clients):
        def serve(c):
            f = ps_closed_factor(1.0, clients)  # every client on the link: factor = clients
            comp = t_new + (t_full - t_new) * (1.0 - c.loaded / P)
            res = dict(ttft=f * c.t_load + comp, tok=1.0, stable=True,
                       path_delay=(f - 1.0) * c.t_load, path_util={"link toy": 0.5})
            return res, {"tok": 1.0}
        return serve

    alone = build("load")  # the uncontended choice: 0.55 s < 0.8 s
    res, _, loaded = _contended.choose(alone, build, serve_with(1.0), "concurrency", 1.0, 2.0)
    assert loaded == P and res["ttft"] == pytest.approx(0.5 + t_new)
    res, _, loaded = _contended.choose(alone, build, serve_with(2.0), "concurrency", 2.0, 2.0)
    # loading: 2 x 0.5 s + 0.05 s = 1.05 s; a split (no overlap) lies between; recompute 0.8 s
    assert loaded == 0.0 and res["ttft"] == pytest.approx(t_full)


# ---- estimate --------------------------------------------------------------------------------
def test_best_flips_away_from_loading_as_the_nvme_fills():
    e = kvmodel.estimate(M, G, concurrency=np.array([1.0, 4.0]), **NVME)
    assert e.prefix_loaded_tokens[0] == NVME["cached_prefix_len"]   # alone: load it all
    assert e.prefix_loaded_tokens[1] < NVME["cached_prefix_len"]    # 4 clients: load less
    load = kvmodel.estimate(M, G, concurrency=4, prefix_policy="load", **NVME)
    assert e.ttft_s[1] < 0.9 * load.ttft_s                         # and gain from it


@pytest.mark.parametrize("mode,xs", [("concurrency", [1, 2, 4, 8, 16]),
                                     ("request_rate", [0.25, 0.5, 0.75, 1.0])])
@pytest.mark.parametrize("tier", ["ssd", "cxl", "toy"])
def test_more_concurrency_never_loads_more(mode, xs, tier):
    kw = _kw(tier)
    loaded = [float(kvmodel.estimate(M, G, **{mode: x}, **kw).prefix_loaded_tokens) for x in xs]
    assert all(b <= a for a, b in zip(loaded, loaded[1:])), loaded


def test_engine_bound_rate_loads_everything_again():
    """Past the path-bound range the engine binds: on the toy link at 1.25 req/s a split leaves
    so much prefill that its queue (its own saturation 1.66 req/s) costs more than the load it
    saves, so "best" loads the whole prefix again (saturation 2.48 req/s)."""
    kw = _kw("toy")
    best = kvmodel.estimate(M, G, request_rate=1.25, **kw)
    split = kvmodel.estimate(M, G, request_rate=1.25, **dict(kw, prefix_policy="split"))
    assert float(best.prefix_loaded_tokens) == kw["cached_prefix_len"]
    assert best.ttft_s < split.ttft_s and best.saturation_request_rate_per_s > \
        split.saturation_request_rate_per_s


@pytest.mark.parametrize("mode", [dict(concurrency=8), dict(request_rate=1.0), dict(batch="max")])
@pytest.mark.parametrize("layout", ["contiguous", "per_layer"])
def test_a_slower_path_never_loads_more(mode, layout):
    kw = dict(NVME, kv_layout=layout, **mode)
    loaded = [float(kvmodel.estimate(M, G, **dict(kw, cache_tier=_toy_tier(bw * GB)))
                    .prefix_loaded_tokens) for bw in (40, 20, 10, 5, 2.5)]
    assert all(b <= a for a, b in zip(loaded, loaded[1:])), loaded
    assert loaded[-1] < loaded[0]


def test_beyond_the_kv_slots_loading_returns_as_throughput_sets_the_wait():
    """More clients than KV slots: a request's TTFT is mostly its wait for a slot, which the
    engine's throughput sets, and loading the prefix relieves the engine (the monotone law
    above holds while the path, not the engine, is the bottleneck)."""
    kw = dict(input_len=16_384, output_len=128, cached_prefix_len=8_192, cache_tier="ssd")
    few, many = (kvmodel.estimate(M, G, concurrency=c, **kw) for c in (16, 64))
    assert 16 < many.max_batch < 64  # 16 clients fit the KV slots, 64 wait for them
    assert few.prefix_loaded_tokens == 0 and many.prefix_loaded_tokens == 8_192
    rec = kvmodel.estimate(M, G, concurrency=64, prefix_policy="recompute", **kw)
    assert many.output_tok_per_s > rec.output_tok_per_s and many.ttft_s < rec.ttft_s


@pytest.mark.parametrize("mode", [dict(concurrency=2), dict(concurrency=8),
                                  dict(request_rate=0.5), dict(request_rate=1.0),
                                  dict(batch="max")])
@pytest.mark.parametrize("tier", ["ssd", "cxl", "toy"])
def test_best_never_worse_than_each_policy_under_the_same_contention(mode, tier):
    kw = _kw(tier)
    best = kvmodel.estimate(M, G, **mode, **kw)
    for pol in POLICIES:
        other = kvmodel.estimate(M, G, prefix_policy=pol, **mode, **kw)
        if other.stable:
            assert best.stable and best.ttft_s <= other.ttft_s * (1 + 1e-9), pol


@pytest.mark.parametrize("mode,xs", [("concurrency", [1.0, 2.0, 4.0, 16.0]),
                                     ("request_rate", [0.25, 0.75, 1.0, 3.0])])
def test_arrays_equal_the_scalar_loop(mode, xs):
    Ps = [0, 8_192, 30_720, 30_720]
    arr = kvmodel.estimate(M, G, **{mode: np.array(xs)}, **dict(NVME, cached_prefix_len=np.array(Ps)))
    for k, (x, P) in enumerate(zip(xs, Ps)):
        one = kvmodel.estimate(M, G, **{mode: x}, **dict(NVME, cached_prefix_len=P))
        assert arr.prefix_loaded_tokens[k] == one.prefix_loaded_tokens
        for f in ("ttft_s", "tpot_s", "output_tok_per_s", "saturation_request_rate_per_s"):
            np.testing.assert_allclose(getattr(arr, f)[k], getattr(one, f), rtol=1e-9)
        assert bool(np.broadcast_to(arr.stable, (len(xs),))[k]) == bool(one.stable)


def test_no_contention_keeps_the_uncontended_choice():
    # one client, a static batch, or a fixed policy: nothing changes
    for mode in (dict(concurrency=1), dict(batch=4)):
        e = kvmodel.estimate(M, G, **mode, **NVME)
        assert e.prefix_loaded_tokens == NVME["cached_prefix_len"]
    split = kvmodel.estimate(M, G, concurrency=8, prefix_policy="split", **NVME)
    assert 0 < split.prefix_loaded_tokens < NVME["cached_prefix_len"]


def _kw(tier):
    if tier == "cxl":
        return dict(NVME, cache_tier=kvmodel.node_tiers(gpu=G, cxl_B=512 * GB)["cxl"])
    if tier == "toy":  # a 10 GB/s link, per-layer layout: loading overlaps compute
        return dict(NVME, cache_tier=_toy_tier(), kv_layout="per_layer")
    return NVME
