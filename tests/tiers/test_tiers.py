"""KV tiers, transfer paths, load vs recompute, break-even."""

import numpy as np
import pytest
import sympy as sp

import kvmodel
from kvmodel.catalog.hardware import get_link
from kvmodel.instance import _estimate
from kvmodel.instance._prefix import pipeline_makespan
from kvmodel.instance.breakeven import break_even_formulas, recompute_coefficients
from kvmodel.tiers import TransferPath, node_tiers, transfer_seconds

KW = dict(model="llama-3.1-70b", gpu="h100-sxm", tp=8, precision="bf16", input_len=8192,
          output_len=64)


def test_transfer_path_golden():
    # one hop, no curve: PCIe Gen4 x16 (achieved 26.28 GB/s); source 10 GB/s is narrower
    pcie4 = get_link("pcie4-x16")
    p = TransferPath("toy", (pcie4,), source_Bps=10e9)
    assert p.bandwidth_Bps() == 10e9
    # 1 GB in 1 MB transfers, 8 in flight: 1e9/1e10 s + ceil(1000/8) x setup
    setup = p.setup_s(1e6)
    assert p.time_s(1e9, 1e6) == pytest.approx(0.1 + 125 * setup)
    assert p.time_s(1e9, 1e6, concurrent=2) == pytest.approx(0.2 + 125 * setup)


def test_measured_curve_gives_size_dependent_setup():
    p = TransferPath("pcie5", (get_link("pcie5-x16"),))
    # the H200 measurement: 4 KiB copies take ~13 us, 1 GiB copies run at ~55 GB/s
    assert p.setup_s(4096) == pytest.approx(13e-6, rel=0.1)
    assert p.time_s(2**30, 2**30, in_flight=1) == pytest.approx(2**30 / 55.36e9, rel=0.02)


def test_node_tiers_of_dgx_h100():
    t = node_tiers("dgx-h100", cxl_B=1e12, remote_B=1e12)
    assert set(t) == set(kvmodel.TIER_KINDS)
    assert t["hbm"].path is None
    bw = {k: t[k].path.bandwidth_Bps() for k in ("dram", "cxl", "ssd", "remote")}
    assert bw["dram"] == pytest.approx(55.43e9)        # PCIe Gen5 is narrower than DDR5 share
    assert bw["ssd"] < bw["cxl"] < bw["dram"]
    assert t["ssd"].capacity_B == pytest.approx(8 * 3.84e12)
    with pytest.raises(ValueError, match="cxl_B"):
        node_tiers("dgx-h100", cxl_B=-1)


def test_pipeline_makespan_golden():
    # 4 layers, load 4 s and compute 8 s: a=1, b=2 -> 1 + 2 + 3 x 2 = 9 s
    assert pipeline_makespan(4.0, 8.0, 4.0) == pytest.approx(9.0)
    assert pipeline_makespan(8.0, 4.0, 4.0) == pytest.approx(2 + 1 + 3 * 2)
    assert pipeline_makespan(0.0, 5.0, 4.0) == 5.0


def test_hbm_prefix_only_computes_new_tokens():
    full = kvmodel.estimate(**KW)
    hit = kvmodel.estimate(**KW, cached_prefix_len=8000)
    assert hit.ttft_s < 0.2 * full.ttft_s
    assert hit.breakdown["prefill"]["kv_load"]["time_s"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("tier", ["dram", "ssd", "remote"])
def test_policy_best_is_never_worse_than_either(tier):
    if tier == "remote":
        tier = node_tiers("dgx-h100", remote_B=1e12)["remote"]
    P = np.array([0, 512, 2048, 4096, 8000])
    out = {pol: kvmodel.estimate(**KW, cached_prefix_len=P, cache_tier=tier, prefix_policy=pol).ttft_s
           for pol in ("best", "load", "recompute", "split")}
    assert np.all(out["best"] <= out["load"] * (1 + 1e-12))
    assert np.all(out["best"] <= out["recompute"] * (1 + 1e-12))
    assert np.all(out["best"] <= out["split"] * (1 + 1e-12))
    # ttft identity: prefill breakdown (including the exposed load) sums to TTFT
    e = kvmodel.estimate(**KW, cached_prefix_len=4096, cache_tier=tier)
    req = _estimate._params()["request_overhead"]
    assert sum(o["time_s"] for o in e.breakdown["prefill"].values()) + req == pytest.approx(e.ttft_s)


def test_faster_tier_never_raises_ttft():
    P = np.array([256, 1024, 4096, 8000])
    ttft = {t: kvmodel.estimate(**KW, cached_prefix_len=P, cache_tier=t, prefix_policy="load").ttft_s
            for t in ("hbm", "dram", "ssd")}
    assert np.all(ttft["hbm"] <= ttft["dram"]) and np.all(ttft["dram"] <= ttft["ssd"])


def test_prefix_raises_throughput_and_keeps_littles_law():
    base = dict(KW, precision="fp8", output_len=256)
    cold = kvmodel.estimate(**base, batch="max")
    warm = kvmodel.estimate(**base, batch="max", cached_prefix_len=6000, cache_tier="dram")
    assert warm.output_tok_per_s > cold.output_tok_per_s
    c = kvmodel.estimate(**base, concurrency=16, cached_prefix_len=6000, cache_tier="ssd")
    assert c.output_tok_per_s / 256 * c.e2e_s == pytest.approx(16, rel=1e-6)


@pytest.mark.parametrize("kw,match", [
    (dict(cached_prefix_len=8192), "cached_prefix_len must be < input_len"),
    (dict(cached_prefix_len=100, cache_tier="tape"), "cache_tier='tape'"),
    (dict(cached_prefix_len=100, cache_tier="cxl"), "no cxl capacity"),
    (dict(cached_prefix_len=100, prefix_policy="guess"), "prefix_policy"),
    (dict(cached_prefix_len=100, kv_layout="zigzag"), "kv_layout"),
    (dict(cached_prefix_len=-1), "cached_prefix_len"),
])
def test_bad_prefix_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        kvmodel.estimate(**KW, **kw)


def test_per_layer_layout_and_compression():
    kw = dict(KW, cached_prefix_len=8000, cache_tier="ssd", prefix_policy="load")
    contiguous = kvmodel.estimate(**kw)
    # a per-layer layout posts 80x the descriptors: moving the bytes never gets faster, although
    # the prefill may (it streams layer by layer under the compute, NVMe queue depth 128)
    ssd, per_tok = node_tiers("dgx-h100")["ssd"], 327680.0 / 8  # 70B KV bytes per token per GPU
    nb, blk = 8000 * per_tok, 256 * per_tok
    assert transfer_seconds(ssd, nb, blk / 80) >= transfer_seconds(ssd, nb, blk)
    assert kvmodel.estimate(**kw, kv_compression=4.0).ttft_s <= contiguous.ttft_s


def test_custom_cxl_tier():
    t = node_tiers("dgx-h100", cxl_B=2e12)["cxl"]
    e = kvmodel.estimate(**KW, cached_prefix_len=4096, cache_tier=t)
    assert e.feasible and e.ttft_s > 0


# ---- break-even -------------------------------------------------------------------------------
def test_mooncake_eq2_minimum_bandwidth():
    # Mooncake (FAST'25) section 2.2: ~6 GB/s on 8x A800, ~19 GB/s on 8x H800, LLaMA3-70B, 8192
    a800 = kvmodel.break_even_bandwidth("llama-3.1-70b", "a800-sxm-80gb", 8, 8192, ideal=True)
    h800 = kvmodel.break_even_bandwidth("llama-3.1-70b", "h800-sxm", 8, 8192, ideal=True)
    assert a800 / 1e9 == pytest.approx(6.0, rel=0.1)
    assert h800 / 1e9 == pytest.approx(19.0, rel=0.1)


def test_closed_form_equals_roofline_and_sympy():
    P = np.array([4096.0, 8192.0, 16384.0])
    closed = kvmodel.break_even_bandwidth("llama-3.1-70b", "h100-sxm", 8, P)
    roof = kvmodel.break_even_bandwidth("llama-3.1-70b", "h100-sxm", 8, P, method="roofline")
    assert closed == pytest.approx(roof, rel=1e-6)
    c0, tau, alpha, k = recompute_coefficients("llama-3.1-70b", "h100-sxm", 8)
    f = break_even_formulas()
    sym = f["symbols"]
    value = f["exprs"]["B_star"].subs({sym["P"]: 8192, sym["k"]: k, sym["c0"]: c0,
                                       sym["tau"]: tau, sym["alpha"]: alpha})
    assert float(value) == pytest.approx(closed[1], rel=1e-9)
    assert "\\frac" in f["latex"]["P_star"]


def test_break_even_context_len_is_where_load_time_equals_recompute():
    c0, tau, alpha, k = recompute_coefficients("llama-3.1-70b", "h100-sxm", 8)
    B = 5e9
    P = float(kvmodel.break_even_context_len("llama-3.1-70b", "h100-sxm", B))
    assert k * P / B == pytest.approx(c0 + tau * P + alpha * P * P, rel=1e-9)
    assert float(kvmodel.break_even_context_len("llama-3.1-70b", "h100-sxm", 1e12)) == 0.0
    # more bandwidth, shorter break-even prefix
    Ps = kvmodel.break_even_context_len("llama-3.1-70b", "h100-sxm", np.array([2e9, 4e9, 8e9]))
    assert np.all(np.diff(Ps) <= 0)
    sympy_root = sp.solve(sp.Eq(k * sp.Symbol("P") / B, c0 + tau * sp.Symbol("P")
                                + alpha * sp.Symbol("P") ** 2), sp.Symbol("P"))
    assert max(float(r) for r in sympy_root) == pytest.approx(P, rel=1e-6)


# ---- multi-tier placement -----------------------------------------------------------------------
def _toy_trace():
    # 6 requests over chains a-b-c, a-b-d, e: hand-checkable reuse
    return kvmodel.Trace.from_lists([[1, 2, 3], [1, 2, 4], [5], [1, 2, 3], [1, 2, 4], [5]])


def test_placement_splits_hits_by_cumulative_capacity():
    from kvmodel.workload.placement import place
    tr = _toy_trace()
    hbm = kvmodel.Tier("hbm", 2.0, None)
    dram = node_tiers("dgx-h100", dram_B=3.0)["dram"]
    inc = place(tr, [hbm, dram], block_bytes=1.0, block_rate=10.0, method="exact")
    exc = place(tr, [hbm, dram], block_bytes=1.0, block_rate=10.0, inclusive=False, write="back",
                method="exact")
    def H(c):
        return float(kvmodel.hit_ratio_curve(tr, [c])[0])
    assert inc.hit_fraction.tolist() == pytest.approx([H(2), H(3) - H(2)])
    assert exc.hit_fraction.tolist() == pytest.approx([H(2), H(5) - H(2)])
    # conservation: served + recomputed = every access
    for p in (inc, exc):
        assert p.hit_fraction.sum() + p.miss_fraction == pytest.approx(1.0)
    assert exc.write_Bps[1] == pytest.approx((1 - H(2)) * 10.0)
    assert inc.write_Bps[1] == pytest.approx((1 - H(3)) * 10.0)


def test_placement_flags_unsustainable_write_traffic():
    from kvmodel.workload.placement import place
    tr = _toy_trace()
    ssd = node_tiers("dgx-h100", ssd_B=10.0)["ssd"]
    ok = place(tr, [kvmodel.Tier("hbm", 1.0, None), ssd], 1.0, block_rate=1e3, method="exact")
    bad = place(tr, [kvmodel.Tier("hbm", 1.0, None), ssd], 1e9, block_rate=1e3, method="exact")
    assert ok.sustainable.all() and not bad.sustainable[1]


def test_tier_mix_lies_between_its_parts():
    kw = dict(KW, input_len=33000, cached_prefix_len=32768, prefix_policy="load")
    dram, ssd = (kvmodel.estimate(**kw, cache_tier=t).ttft_s for t in ("dram", "ssd"))
    mix = kvmodel.estimate(**kw, cache_tier=[("dram", 0.5), ("ssd", 0.5)]).ttft_s
    assert dram <= mix <= ssd
    assert kvmodel.estimate(**kw, cache_tier=[("dram", 1.0)]).ttft_s == pytest.approx(dram)
    with pytest.raises(ValueError, match="sum to 1"):
        kvmodel.estimate(**kw, cache_tier=[("dram", 0.5), ("ssd", 0.2)])


def test_path_without_bandwidth_is_infinite_not_an_error():
    p = TransferPath("empty", (get_link("cxl2-x8"),), source_Bps=0.0)
    assert p.time_s(1e6, 1e5) == float("inf")
    assert p.time_s(0.0, 1e5) == 0.0
