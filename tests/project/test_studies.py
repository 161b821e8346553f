"""Smoke tests of the study scripts in studies/: import each and run its core on a tiny case."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

import kvmodel

STUDIES = Path(__file__).resolve().parents[2] / "studies"
TRACE = "mooncake-conversation"  # built-in trace


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"study_{name}", STUDIES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _small_trace(n: int = 300) -> kvmodel.Trace:
    """The first ``n`` requests of the built-in trace."""
    return kvmodel.load_trace(TRACE).window(0, n)


def test_pool_vs_local_core():
    m = _load("mooncake_pool_vs_local")
    tr = _small_trace()
    h = m.hit_curves(tr, np.array([50, 500, 5000]))
    assert np.all(h["global_exact"] >= h["local_random_exact"] - 1e-9)
    rows = m.cluster_rows(tr, [100])
    assert rows[0]["hit_pool"] >= rows[0]["hit_local"]


def test_pd_ratio_sweep_core():
    m = _load("pd_ratio_sweep")
    rows = m.sweep(3)
    assert [r["config"] for r in rows] == ["colocated x3", "1P2D", "2P1D"]
    assert all(r["rate"] >= 0 for r in rows)
    assert rows[2]["rate"] > rows[1]["rate"]   # prefill-heavy split wins at 512/64, as DistServe


KV_SHARING_COLUMNS = {
    "instances", "nic", "arch", "sharing", "routing", "epsilon", "baseline_rate", "max_rate_at_slo",
    "limit", "load", "rate", "per_instance_rate_per_s", "stable", "meets_slo", "ttft_p99_s",
    "tpot_p99_s", "goodput_per_s", "cost_usd_per_h", "goodput_per_dollar", "hit_total", "hit_local",
    "hit_remote", "imbalance", "net_out_util", "net_in_util", "reason"}


def test_search_kv_sharing_core(capsys):
    """search_kv_sharing.py's grid at 4 instances, one NIC, round robin and one epsilon: the
    columns, the load points, that with round robin every sharing architecture hits more and
    carries at least the no-sharing rate, and the summary tables."""
    from kvmodel import search
    m = _load("search_kv_sharing")
    space = search.load_space(m.SPACE)
    w = m.workload(space, kvmodel.load_trace(TRACE))
    rows, base = m.sweep(w, space, sizes=(4,), nics=("roce-400g",), routes=m.routings((0.25,), ()))
    assert set(base) == {4} and base[4] > 0
    assert all(set(r) == KV_SHARING_COLUMNS for r in rows)
    # every architecture x 2 routings x (50 / 80 / 95 % of the baseline + its own max rate)
    assert len(rows) == len(m.ARCHS) * 2 * (len(m.LOADS) + 1)
    assert {r["load"] for r in rows} == {"50%", "80%", "95%", "max"}
    assert all(r["meets_slo"] and r["max_rate_at_slo"] > 0 for r in rows if r["load"] == "max")
    assert base[4] == max(r["max_rate_at_slo"] for r in rows if r["arch"] == "none")

    def rr(arch, key):
        return next(r[key] for r in rows if r["arch"] == arch and r["routing"] == "round_robin"
                    and r["load"] == "50%")
    for arch in list(m.ARCHS)[1:]:
        assert rr(arch, "hit_total") >= rr("none", "hit_total") - 1e-9, arch
        assert rr(arch, "max_rate_at_slo") >= rr("none", "max_rate_at_slo"), arch
        assert (rr(arch, "hit_remote") > 0) and rr("none", "hit_remote") == 0
    # the assumed server/port prices only add cost
    assert rr(m.PRICED, "cost_usd_per_h") > rr("pool-n/8x2TB", "cost_usd_per_h")
    best = m.best_rows(rows)
    assert sorted(b["arch"] for b in best) == sorted(m.ARCHS)
    assert all(b["max_rate_at_slo"] >= b["max_rate_round_robin"] for b in best)
    win = m.winners(best)
    assert len(win) == 1 and win[0]["gain_over_none"] >= -m.TIE and m.PRICED not in win[0]["co_winners"]
    cross = m.crossovers(win)
    assert {c["family"] for c in cross} == {"pool", "p2p"}
    m.print_summary(best, win, cross, m.router_table(rows))
    assert "max rate at the SLOs" in capsys.readouterr().out


def test_search_kv_sharing_pool_puts_bind_on_25gbe():
    """On 25 GbE a one-server pool is capped by its NIC ingress (every recomputed block is put
    into the pool) where p99 TPOT does not bind first: under round robin. Under bounded
    affinity p99 TPOT binds first, at no sharing's rate (the router-dependent TPOT law: a
    length-blind router's Poisson arrivals leave prefill behind a first token). Either way the
    pool never beats no sharing on 25 GbE."""
    from kvmodel import search
    m = _load("search_kv_sharing")
    space = search.load_space(m.SPACE)
    w = m.workload(space, kvmodel.load_trace(TRACE))
    rows, base = m.sweep(w, space, sizes=(8,), nics=("tcp-25g",), archs=("none", "pool-1x4TB"),
                         routes=m.routings((0.1,), ()), loads=())
    pool = [r for r in rows if r["arch"] == "pool-1x4TB"]
    none = {r["routing"]: r for r in rows if r["arch"] == "none"}
    assert {r["routing"] for r in pool} == set(none) == {"round_robin", "prefix_affinity_bounded"}
    for r in pool:
        assert r["max_rate_at_slo"] <= none[r["routing"]]["max_rate_at_slo"] * (1 + 1e-9)
    nic = next(r for r in pool if r["routing"] == "round_robin")
    assert "pool_nic_in" in nic["limit"], nic["limit"]
    assert nic["max_rate_at_slo"] < 0.8 * base[8]


def test_router_choice_core(capsys):
    """router_choice.py on 4 instances of the shared-system-prompt trace (shortened), two loads,
    three routers: saturation per router, a winner per cell, the load-aware closed forms differ
    from round robin, and the simulator spot check runs each exact rule."""
    m = _load("router_choice")
    tr = m.traces(n_synthetic=600)["shared-system-prompt"]
    assert len(tr) == 600 and tr.name == "shared-system-prompt"
    w = kvmodel.Workload(tr)
    routers = (("round_robin", 0.25), ("prefix_affinity_bounded", 0.1), ("sglang", 0.25))
    sat, rows = m.grid("syn", w, sizes=(4,), loads=(0.5, 0.85), routers=routers)
    assert len(sat) == 3 and max(s["of_best"] for s in sat) == 1.0
    assert len(rows) == 2 * 3 and all(r["rate"] > 0 for r in rows)
    hits = {r["routing"]: r["hit"] for r in rows if r["load"] == 0.5}
    assert hits["PAB0.1"] > hits["RR"] and hits["sglang"] > hits["RR"]   # cache-aware hits more
    win = m.winners(rows)
    assert len(win) == 2 and all(x["winner"] in hits for x in win)
    sim = m.sim_check("syn", w, rows, cells=((4, 0.5),), routers=routers[:2])
    assert [r["routing"] for r in sim] == ["RR", "PAB0.1"]
    assert all(0 <= r["hit_sim"] <= 1 and r["ttft_mean_sim"] > 0 for r in sim)
    sw = m.sim_winners(sim, win)
    assert len(sw) == 1 and sw[0]["sim_winner_p99"] in ("RR", "PAB0.1")
    m.print_summary(sat, win, sim)
    assert "| syn | 4 |" in m.markdown(sat, win)
    assert "winner by p99 TTFT" in capsys.readouterr().out


def test_dram_for_slo_core(capsys):
    """dram_for_slo.py at one rate, bounded affinity: more DRAM never raises p99 TTFT, the
    smallest DRAM meeting a looser SLO is no larger than a tighter one's, and the no-DRAM max
    rate is below the 4 TB one."""
    m = _load("dram_for_slo")
    w = kvmodel.Workload(kvmodel.load_trace(TRACE), tpot_slo_s=m.TPOT_SLO)
    rows = m.grid(w, routers=m.ROUTERS[:1], rates=(1.3,))
    assert len(rows) == len(m.DRAM_B) * len(m.SSD_B)
    p99 = [r["ttft_p99_s"] for r in sorted(rows, key=lambda r: r["dram_GB"]) if r["ssd_TB"] == 0]
    # The p99 can rise by a few ms (< 0.5 %; 0.11 % here) between neighbouring DRAM sizes. Not
    # the hit classes (monotone by construction, tests/cluster/test_hit_class_monotone.py) but
    # the instance model's wait law and mean-prompt chunk count (named in that file's xfail).
    # More DRAM must still lower it overall (1.1 % here since the open loop's prefill wait counts
    # only the carry beyond a step's budget: the long prompts' own chunks set the p99; 10 % with
    # the Kingman wait on all the token work).
    assert all(b <= a * 1.005 for a, b in zip(p99, p99[1:]))
    assert p99[-1] < p99[0]
    needs = sorted(m.need(rows), key=lambda x: x["ttft_p99_slo_s"])
    # The TTFT SLO alone: a looser SLO never needs more DRAM, and the tightest needs some.
    d = [x["min_dram_GB_ttft_only"] for x in needs]
    assert d == sorted(d, reverse=True) and 0 < d[0] < np.inf
    # Adding the p99 TPOT SLO never lowers the need (here it binds at every size: bounded
    # affinity leaves prefill behind first tokens, tests/instance/test_tpot_router.py).
    assert all(x["min_dram_GB"] >= x["min_dram_GB_ttft_only"] for x in needs)
    assert all(x["min_ssd_TB"] >= x["min_ssd_TB_ttft_only"] for x in needs)
    ranges = m.rate_range(w, routers=m.ROUTERS[:1], slos=(4.0,))
    x = ranges[0]
    assert 0 < x["max_rate_per_instance_no_dram"] < x["max_rate_per_instance_max_dram"]
    assert 0 < x["max_rate_per_instance_no_dram_ttft_only"] < x["max_rate_per_instance_max_dram_ttft_only"]
    assert x["max_rate_per_instance_max_dram"] <= x["max_rate_per_instance_max_dram_ttft_only"]
    m.print_summary(needs, ranges)
    assert "smallest DRAM per node" in capsys.readouterr().out


def test_search_second_tier_objective_ranks_the_tiers(monkeypatch):
    """search_second_tier.py's one-tier sweep on the built-in space ``second-tier``: its TTFT
    objective is the mean, and it ranks each medium by size (more DRAM, CXL or SSD drives never
    raise it, and a second tier lowers it below HBM only), which the p99 no longer did."""
    from kvmodel import search
    monkeypatch.syspath_prepend(str(STUDIES))   # the script imports its sibling search_common
    m = _load("search_second_tier")
    space = search.load_space("second-tier")
    assert space.metrics == ("cost_per_hour", "ttft_mean") and space.slo["ttft_percentile"] == "p99"
    rows = m.one_tier_sweep(space)
    assert all(r["feasible"] for r in rows)
    for tier in m.DIMS:
        mean = [r["ttft_mean_s"] for r in rows if r["tier"] == tier]
        assert all(b <= a for a, b in zip(mean, mean[1:])), (tier, mean)
        assert mean[1] < 0.9 * mean[0] and mean[3] < mean[1], (tier, mean)
    p = {d: 0.0 for d in m.DIMS.values()} | {"placement": "exclusive", "write_policy": "back"}
    o = search.evaluate_point(space, p | {"dram_GB_per_node": 512.0})
    assert o.values[1] == o.metrics["ttft_s"]
