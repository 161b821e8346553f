"""Study: KV sharing -- none vs central pool vs peer-to-peer -- across cluster sizes (4-64 DGX H100
instances of Llama-3.1-70B fp8 TP8) and network speeds (RoCE 100/200/400/800 Gb/s), with
round-robin and bounded prefix-affinity routing, on the Mooncake conversation trace, each cluster
loaded near its capacity.

Method (public API: kvmodel.evaluate, kvmodel.search.max_rate_at_slo / run / export):

1. Grid. instances x NIC x architecture x routing, evaluated directly with
   :func:`kvmodel.evaluate`. Architectures: ``none``; ``pool-1x4TB`` (one pool server, 4 TB
   DRAM, 2 NICs); ``pool-n/8x2TB`` (ceil(n/8) servers of 2 TB, 2 NICs each); ``p2p-r1`` and
   ``p2p-r2`` (rendezvous placement, replication 1 / 2). Pool NICs run at the swept NIC speed, as
   do the instances' NICs. Routings: ``round_robin`` and ``prefix_affinity_bounded`` at each
   epsilon of EPSILONS (an architecture's best routing is taken by its max rate at the SLOs).
   Local DRAM and SSD stay at the DGX H100 defaults.
2. Load. For each size, the baseline rate R_n is the largest request rate at which ``none``
   (best routing) meets the SLOs (p99 TTFT <= 3 s, p99 TPOT <= 50 ms; bisection,
   ``search.max_rate_at_slo``). Every configuration is evaluated at 50 %, 80 % and 95 % of R_n
   and at its own max rate at the SLOs ("max"); goodput per $ at that rate is the headline.
3. Sensitivity (on unless ``--no-light``): the same grid with DRAM-light instances (256 GB
   local DRAM per instance, no local SSD) at one NIC, where local capacity limits hits.
4. ``--sim``: no sharing, replayed by the discrete-event simulator (exact routing rules) at 0.95
   R_n, to check the closed form's hit ratio and imbalance under bounded affinity.
5. Optuna: a short TPE study per size over the built-in space ``kv-sharing`` at 0.95 R_n
   (objective: throughput at the SLOs), for the journal / trials.csv / HTML deliverable.

    python studies/search_kv_sharing.py [--sizes 4 8 16 32 64] [--trials 25] [--sim] [--quick]

Writes under studies/results/search_kv_sharing/: grid.csv (every evaluated point), best.csv
(each architecture's best routing per size and NIC), winners.csv, sim_check.csv (``--sim``),
kv_sharing.html (max rate and goodput/$ vs instances per NIC, winner maps, p99 TTFT vs load),
optuna_best.csv and optuna_n<N>/ (study.journal, trials.csv, plots).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from pathlib import Path

import kvmodel
from kvmodel import search

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_common import HERE, write_rows  # noqa: E402

TRACE = "mooncake-conversation"  # built-in trace (kvmodel traces)
OUT = HERE / "results" / "search_kv_sharing"
SPACE = "kv-sharing"
SIZES = (4, 8, 16, 32, 64)
NICS = ("roce-100g", "roce-200g", "roce-400g", "roce-800g")
ARCHS = ("none", "pool-1x4TB", "pool-n/8x2TB", "p2p-r1", "p2p-r2")
EPSILONS = (0.05, 0.1, 0.25, 0.5)
LOADS = (0.5, 0.8, 0.95)
LIGHT = dict(dram_B=256e9, ssd_B=0.0)      # DRAM-light instances of the sensitivity sweep
TB = 1e12


# ---- configurations --------------------------------------------------------------------------
def cluster(space, n: int, nic: str, arch: str, routing: str, eps: float = 0.25,
            local: dict | None = None) -> kvmodel.Cluster:
    """The Cluster of one grid point (model/GPU/TP/precision from the space's fixed part)."""
    f = space.fixed
    kw = dict(model=f["model"], gpu=f["gpu"], tp=f["tp"], precision=f["precision"], instances=n,
              nic=nic, routing=routing, epsilon=eps, **(local or {}))
    if arch == "none":
        return kvmodel.Cluster(**kw, sharing="none")
    if arch.startswith("pool"):
        servers, dram = (1, 4 * TB) if arch == "pool-1x4TB" else (math.ceil(n / 8), 2 * TB)
        return kvmodel.Cluster(**kw, sharing="central_pool",
                               pool=kvmodel.PoolSpec(servers=servers, dram_B=dram, nic=nic, nics=2))
    if arch.startswith("p2p"):
        return kvmodel.Cluster(**kw, sharing="p2p", p2p=kvmodel.P2PSpec(
            placement="rendezvous", replication=int(arch[-1])))
    raise ValueError(arch)


def routings(epsilons=EPSILONS) -> list[tuple[str, float]]:
    return [("round_robin", 0.25)] + [("prefix_affinity_bounded", e) for e in epsilons]


def workload(space, trace=None) -> kvmodel.Workload:
    """The space's workload (Mooncake conversation trace, its SLOs); the rate is set per point."""
    trace = trace if trace is not None else kvmodel.load_trace(TRACE)
    return kvmodel.Workload(trace, ttft_slo_s=space.slo["ttft_s"], tpot_slo_s=space.slo["tpot_s"])


def at_rate(w: kvmodel.Workload, rate: float) -> kvmodel.Workload:
    w2 = dataclasses.replace(w, request_rate=rate, _profile=w._profile)  # share the reuse profile
    object.__setattr__(w2, "top", w.top_block_share)
    return w2


def point(c: kvmodel.Cluster, w: kvmodel.Workload, space, rate: float) -> dict:
    """One evaluation's scalars (p99 percentiles against the space's SLOs)."""
    r = kvmodel.evaluate(c, at_rate(w, rate))
    h = r.hit_ratio
    remote = h.get("pool", 0.0) + h.get("peer", 0.0)
    ok = bool(r.stable and r.ttft_p99_s <= space.slo["ttft_s"] and r.tpot_p99_s <= space.slo["tpot_s"])
    return dict(rate=rate, per_instance_rate_per_s=rate / c.instances, stable=bool(r.stable), meets_slo=ok,
                ttft_p99_s=r.ttft_p99_s, tpot_p99_s=r.tpot_p99_s, goodput_per_s=r.goodput_per_s,
                cost_usd_per_h=r.cost_usd_per_h,
                goodput_per_dollar=r.goodput_per_s * 3600 / r.cost_usd_per_h,
                hit_total=sum(h.values()), hit_local=sum(h.values()) - remote, hit_remote=remote,
                imbalance=r.imbalance, pool_nic_util=r.utilisation.get("pool_nic", 0.0),
                peer_nic_util=r.utilisation.get("peer_nic_hottest", 0.0), reason=r.reason)


# ---- sweep -----------------------------------------------------------------------------------
def sweep(w, space, sizes=SIZES, nics=NICS, archs=ARCHS, epsilons=EPSILONS, loads=LOADS,
          local: dict | None = None, baselines: dict | None = None) -> tuple[list[dict], dict]:
    """Every (size, NIC, architecture, routing) at each load of the size's baseline rate and at
    its own max rate at the SLOs. Returns (rows, {size: baseline rate}). ``baselines`` given:
    use those rates (e.g. the default-node baseline for the DRAM-light sensitivity)."""
    rows, base = [], dict(baselines or {})
    tag = "default node" if not local else "dram %.0f GB, ssd %.0f GB" % (local["dram_B"] / 1e9,
                                                                         local["ssd_B"] / 1e9)
    for n in sizes:
        configs = [(nic, a, r, e) for nic in nics for a in archs for r, e in routings(epsilons)]
        mr = {k: search.max_rate_at_slo(cluster(space, n, *k, local=local),
                                        at_rate(w, 0.9 * n), space) for k in configs}
        if n not in base:
            base[n] = max(v for (nic, a, r, e), v in mr.items() if a == "none")
        for k in configs:
            nic, a, r, e = k
            c = cluster(space, n, *k, local=local)
            head = dict(local=tag, instances=n, nic=nic, arch=a, sharing=c.sharing, routing=r,
                        epsilon=e if r == "prefix_affinity_bounded" else "",
                        pool_servers=c.pool.servers if c.sharing == "central_pool" else "",
                        pool_TB=c.pool.servers * c.pool.dram_B / TB if c.sharing == "central_pool" else "",
                        replication=c.p2p.replication if c.sharing == "p2p" else "",
                        baseline_rate=base[n], max_rate_at_slo=mr[k])
            for f in loads:
                rows.append(head | dict(load=f"{f:.0%}") | point(c, w, space, f * base[n]))
            if mr[k] > 0:
                rows.append(head | dict(load="max") | point(c, w, space, mr[k]))
    return rows, base


def best_rows(rows: list[dict]) -> list[dict]:
    """Each (local, size, NIC, architecture)'s best routing by max rate at the SLOs: its goodput/$
    at that rate, its p99 TTFT at each load of the baseline, and the max rate under round robin."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["local"], r["instances"], r["nic"], r["arch"]), []).append(r)
    out = []
    for (local, n, nic, a), rs in groups.items():
        top = max(rs, key=lambda r: (r["max_rate_at_slo"], r["routing"] == "round_robin"))
        same = {r["load"]: r for r in rs if (r["routing"], r["epsilon"]) == (top["routing"], top["epsilon"])}
        ref = same.get("max", same[next(iter(same))])
        out.append(dict(local=local, instances=n, nic=nic, arch=a, routing=top["routing"],
                        epsilon=top["epsilon"], baseline_rate=top["baseline_rate"],
                        max_rate_at_slo=top["max_rate_at_slo"],
                        per_instance_max_rate=top["max_rate_at_slo"] / n,
                        max_rate_round_robin=max(r["max_rate_at_slo"] for r in rs
                                                 if r["routing"] == "round_robin"),
                        goodput_per_dollar=same["max"]["goodput_per_dollar"] if "max" in same else 0.0,
                        cost_usd_per_h=ref["cost_usd_per_h"], hit_total=ref["hit_total"],
                        hit_remote=ref["hit_remote"], imbalance=ref["imbalance"],
                        net_util_at_max=max(ref["pool_nic_util"], ref["peer_nic_util"]))
                   | {f"ttft_p99_at_{f}": same[f]["ttft_p99_s"] if f in same else math.nan
                      for f in (f"{x:.0%}" for x in LOADS)})
    return out


TIE = 0.01   # architectures within 1 % of the best goodput/$ share the cell


def winners(best: list[dict], tie: float = TIE) -> list[dict]:
    """Per (local, size, NIC): the architecture with the highest goodput/$ at its max rate, those
    within ``tie`` of it (co-winners), and the gain over no sharing."""
    groups: dict[tuple, dict[str, dict]] = {}
    for b in best:
        groups.setdefault((b["local"], b["instances"], b["nic"]), {})[b["arch"]] = b
    out = []
    for (local, n, nic), g in groups.items():
        ranked = sorted(g.values(), key=lambda b: -b["goodput_per_dollar"])
        w = ranked[0]
        co = [b["arch"] for b in ranked if b["goodput_per_dollar"] >= (1 - tie) * w["goodput_per_dollar"]]
        rest = [b for b in ranked if b["arch"] not in co]
        none = g.get("none", w)
        out.append(dict(local=local, instances=n, nic=nic, winner=w["arch"], routing=w["routing"],
                        epsilon=w["epsilon"], goodput_per_dollar=w["goodput_per_dollar"],
                        co_winners=" ".join(co), tie="none" in co,
                        gain_over_none=w["goodput_per_dollar"] / none["goodput_per_dollar"] - 1
                        if none["goodput_per_dollar"] > 0 else math.inf,
                        next_best=rest[0]["arch"] if rest else "",
                        margin_over_next=w["goodput_per_dollar"] / rest[0]["goodput_per_dollar"] - 1
                        if rest and rest[0]["goodput_per_dollar"] > 0 else math.nan))
    return out


# ---- simulator check -------------------------------------------------------------------------
def sim_check(w, space, best: list[dict], nic: str, load: float = 0.95) -> list[dict]:
    """No sharing, each size's best routing and least_loaded, replayed by the discrete-event
    simulator (exact routing rules, one LRU per instance of the node's DRAM share, arrivals of
    the trace compressed to ``load`` x the baseline rate): hit ratio, request imbalance and TTFT
    percentiles beside the closed form's at the same rate."""
    from kvmodel.sim import simulate
    f, tr = space.fixed, w.trace
    span = float(tr.arrival_s[-1] - tr.arrival_s[0])
    node = kvmodel.get_node(kvmodel.tiers.default_node_for_gpu(f["gpu"]))
    block_B = tr.block_tokens * kvmodel.get_model(f["model"]).kv_bytes_per_token("fp8")
    blocks = int(node.host_dram_B / max(1, node.gpus_per_node // f["tp"]) / block_B)
    out = []
    for b in best:
        if b["local"] != "default node" or b["nic"] != nic or b["arch"] != "none":
            continue
        n, rate = b["instances"], load * b["baseline_rate"]
        t = dataclasses.replace(tr, arrival_s=(tr.arrival_s - tr.arrival_s[0]) * len(tr) / span / rate)
        for routing, eps in ((b["routing"], b["epsilon"] or 0.25), ("least_loaded", 0.25)):
            cf = point(cluster(space, n, nic, "none", routing, eps), w, space, rate)
            r = simulate(f["model"], f["gpu"], t, instances=n, tp=f["tp"], precision=f["precision"],
                         routing=routing, epsilon=eps, prefix_cache_blocks=blocks, cache_tier="dram",
                         node=node.key)
            cnt = r.requests_per_instance
            out.append(dict(instances=n, rate=rate, routing=routing,
                            epsilon=eps if routing == "prefix_affinity_bounded" else "",
                            hit_closed_form=cf["hit_total"], hit_sim=r.hit_blocks / r.total_blocks,
                            imbalance_closed_form=cf["imbalance"], imbalance_sim=cnt.max() * n / cnt.sum(),
                            ttft_p99_closed_form=cf["ttft_p99_s"], ttft_p50_sim=r.stat("ttft", "p50"),
                            ttft_p90_sim=r.stat("ttft", "p90"), ttft_p99_sim=r.stat("ttft", "p99"),
                            sim_wall_s=r.wall_s))
    return out


# ---- Optuna ----------------------------------------------------------------------------------
def optuna_studies(base_rates: dict, trials: int, out: Path = OUT,
                   objective: str = "throughput_at_slo") -> list[dict]:
    """A short TPE study per size over the built-in space ``kv-sharing`` (instances fixed, rate
    0.95 of the size's baseline: a configuration that cannot carry it is infeasible). At a fixed
    rate every feasible configuration has about the same goodput/$, so the default objective
    is the throughput at the SLOs (bisection per trial)."""
    sp = search.load_space(SPACE)
    rows = []
    for n, rate in base_rates.items():
        space = dataclasses.replace(
            sp, name=f"kv-sharing-n{n}", fixed=sp.fixed | {"instances": n}, metrics=(objective,),
            dims=tuple(d for d in sp.dims if d.name != "instances"),
            workload=sp.workload | {"request_rate": round(0.95 * rate, 3)})
        d = out / f"optuna_n{n}"
        d.mkdir(parents=True, exist_ok=True)
        st = search.run(space, n_trials=trials, storage=str(d / "study.journal"),
                        study_name=f"kv-sharing-n{n}-{objective}-rate{0.95 * rate:.3f}", sampler="tpe")
        search.export(st, d)
        best = search.best_trials(st, top=1)
        if best:
            t = best[0]
            m = t.user_attrs["metrics"]
            rows.append(dict(instances=n, rate=0.95 * rate, trials=len(st.trials),
                             feasible=sum(search.is_feasible(x) for x in st.trials),
                             objective=objective, value=t.values[0],
                             max_rate_at_slo=m.get("max_rate_at_slo", ""),
                             cost_usd_per_h=m.get("cost_usd_per_h", ""),
                             params=" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in t.params.items())))
    return rows


# ---- figures ---------------------------------------------------------------------------------
def figures(best: list[dict], win: list[dict], rows: list[dict], path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    default = [b for b in best if b["local"] == "default node"]
    nics = list(dict.fromkeys(b["nic"] for b in default))
    archs = list(dict.fromkeys(b["arch"] for b in default))
    colors = dict(zip(ARCHS, ("#444444", "#1f77b4", "#17becf", "#d62728", "#ff7f0e")))
    parts = []
    for metric, title in (("per_instance_max_rate", "max request rate at the SLOs per instance (req/s)"),
                          ("goodput_per_dollar", "goodput per $ at each architecture's max rate (req/$)")):
        fig = make_subplots(rows=1, cols=len(nics), subplot_titles=nics, shared_yaxes=True)
        for j, nic in enumerate(nics, 1):
            for a in archs:
                pts = sorted((b["instances"], b[metric], b["routing"], b["epsilon"])
                             for b in default if b["nic"] == nic and b["arch"] == a)
                fig.add_trace(go.Scatter(
                    x=[p[0] for p in pts], y=[p[1] for p in pts], name=a, legendgroup=a,
                    showlegend=j == 1, mode="lines+markers", line=dict(color=colors.get(a)),
                    text=[f"{p[2]} {p[3]}" for p in pts]), row=1, col=j)
            fig.update_xaxes(type="log", tickvals=sorted({b["instances"] for b in default}),
                             title_text="instances", row=1, col=j)
        fig.update_layout(title=title + " -- best routing per architecture", height=420)
        parts.append(fig)
    classes = list(ARCHS) + ["tie with none"]
    palette = [colors[x] for x in ARCHS] + ["#bbbbbb"]
    for local in dict.fromkeys(x["local"] for x in win):
        ws = [x for x in win if x["local"] == local]
        ns = sorted({x["instances"] for x in ws})
        nn = list(dict.fromkeys(x["nic"] for x in ws))
        cell = {(x["instances"], x["nic"]): x for x in ws}

        def label(x):
            r = "RR" if x["routing"] == "round_robin" else f"PAB {x['epsilon']:g}"
            head = ("tie: " if x["tie"] else "") + x["co_winners"].replace(" ", ", ")
            return (f"{head}<br>best {x['winner']} ({r})<br>{x['gain_over_none']:+.1%} vs none"
                    + (f"<br>{x['margin_over_next']:+.1%} vs {x['next_best']}" if x["next_best"] else ""))
        z = [[classes.index("tie with none" if cell[n, nic]["tie"] else cell[n, nic]["winner"])
              for n in ns] for nic in nn]
        k = len(classes) - 1
        fig = go.Figure(go.Heatmap(z=z, x=[str(n) for n in ns], y=nn,
                                   text=[[label(cell[n, nic]) for n in ns] for nic in nn],
                                   texttemplate="%{text}", zmin=0, zmax=k, showscale=False,
                                   colorscale=[[i / k, c] for i, c in enumerate(palette)]))
        fig.update_layout(title=f"winner map: goodput/$ at each architecture's max rate at the SLOs "
                                f"({local}; co-winners within {TIE:.0%})",
                          xaxis_title="instances", yaxis_title="NIC", height=420)
        parts.append(fig)
    # p99 TTFT vs load, one NIC, best routing of each architecture
    nic = "roce-400g" if "roce-400g" in nics else nics[0]
    pick = {(b["instances"], b["arch"]): (b["routing"], b["epsilon"]) for b in default if b["nic"] == nic}
    ns = sorted({b["instances"] for b in default})
    fig = make_subplots(rows=1, cols=len(ns), subplot_titles=[f"{n} instances" for n in ns],
                        shared_yaxes=True)
    for j, n in enumerate(ns, 1):
        for a in archs:
            rs = [r for r in rows if r["local"] == "default node" and r["instances"] == n and r["nic"] == nic
                  and r["arch"] == a and (r["routing"], r["epsilon"]) == pick[n, a] and r["load"] != "max"]
            fig.add_trace(go.Scatter(x=[r["rate"] / r["baseline_rate"] for r in rs],
                                     y=[min(r["ttft_p99_s"], 10.0) for r in rs], name=a, legendgroup=a,
                                     showlegend=j == 1, mode="lines+markers",
                                     line=dict(color=colors.get(a))), row=1, col=j)
        fig.update_xaxes(title_text="load / baseline", row=1, col=j)
    fig.update_layout(title=("p99 TTFT (s, capped at 10) at 50/80/95 % of the no-sharing baseline "
                             f"rate, {nic}"),
                      height=380)
    parts.append(fig)
    html = [parts[0].to_html(full_html=False, include_plotlyjs="cdn")]
    html += [p.to_html(full_html=False, include_plotlyjs=False) for p in parts[1:]]
    path.write_text("<html><head><meta charset='utf-8'><title>KV sharing</title></head><body>"
                    + "\n".join(html) + "</body></html>")


# ---- report ----------------------------------------------------------------------------------
def short_routing(b: dict) -> str:
    return "RR" if b["routing"] == "round_robin" else f"PAB{b['epsilon']:g}"


def print_summary(best: list[dict], win: list[dict], local: str = "default node") -> None:
    bs = [b for b in best if b["local"] == local]
    nics = list(dict.fromkeys(b["nic"] for b in bs))
    archs = list(dict.fromkeys(b["arch"] for b in bs))
    sizes = sorted({b["instances"] for b in bs})
    cell = {(b["instances"], b["nic"], b["arch"]): b for b in bs}
    print(f"\n[{local}] max rate at the SLOs, req/s: best routing (routing) | round robin")
    for nic in dict.fromkeys((nics[0], nics[-1])):
        print(f"  {nic:10s}" + "".join(f"{x:>23s}" for x in archs))
        for n in sizes:
            print(f"  n={n:<8d}" + "".join(
                f"{cell[n, nic, x]['max_rate_at_slo']:7.1f} ({short_routing(cell[n, nic, x]):>7s}) |"
                f"{cell[n, nic, x]['max_rate_round_robin']:5.1f}" for x in archs))
    print(f"[{local}] best goodput/$ at each architecture's max rate (co-winners within {TIE:.0%}), "
          "gain over none")
    for n in sizes:
        cells: dict[tuple, list[str]] = {}
        for x in (x for x in win if x["local"] == local and x["instances"] == n):
            key = ("tie with none" if x["tie"] else x["co_winners"], round(x["goodput_per_dollar"], 1),
                   round(x["gain_over_none"], 3))
            cells.setdefault(key, []).append(x["nic"].removeprefix("roce-"))
        print(f"  n={n:<3d} " + " | ".join(f"{'/'.join(v)}: {k[0]} {k[1]:.1f} req/$ {k[2]:+.1%}"
                                          for k, v in cells.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--nics", nargs="+", default=list(NICS))
    ap.add_argument("--trials", type=int, default=25, help="Optuna trials per size (0: skip)")
    ap.add_argument("--objective", default="throughput_at_slo",
                    help="Optuna objective (throughput_at_slo or goodput_per_dollar)")
    ap.add_argument("--light-nic", default="roce-400g", help="NIC of the DRAM-light sensitivity sweep")
    ap.add_argument("--no-light", action="store_true", help="skip the DRAM-light sensitivity sweep")
    ap.add_argument("--sim", action="store_true",
                    help="also replay no-sharing routing in the discrete-event simulator (~2 min)")
    ap.add_argument("--quick", action="store_true", help="sizes 4 8, two NICs, one epsilon, 4 trials")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    eps = EPSILONS
    if a.quick:
        a.sizes, a.nics, a.trials, eps = [4, 8], ["roce-100g", "roce-800g"], min(a.trials, 4), (0.25,)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    space = search.load_space(SPACE)
    w = workload(space)
    rows, base = sweep(w, space, a.sizes, a.nics, epsilons=eps)
    print(f"grid: {len(rows)} points in {time.perf_counter() - t0:.0f} s")
    print("baseline (no sharing, best routing) max rate at SLO: " + ", ".join(
        f"n={n}: {r:.2f} req/s ({r / n:.2f}/instance)" for n, r in base.items()))
    light_tag = ""
    if not a.no_light:
        light, _ = sweep(w, space, a.sizes, [a.light_nic], epsilons=eps, local=LIGHT, baselines=base)
        rows += light
        light_tag = light[0]["local"]
        print(f"+ DRAM-light sweep: {len(light)} points, {time.perf_counter() - t0:.0f} s so far")
    best = best_rows(rows)
    win = winners(best)
    write_rows(out / "grid.csv", rows)
    write_rows(out / "best.csv", best)
    write_rows(out / "winners.csv", win)
    figures(best, win, rows, out / "kv_sharing.html")
    print_summary(best, win)
    if not a.no_light:
        print_summary(best, win, local=light_tag)
    if a.sim:
        t1 = time.perf_counter()
        sim = sim_check(w, space, best, a.light_nic if a.light_nic in a.nics else a.nics[0])
        write_rows(out / "sim_check.csv", sim)
        print(f"\nsimulator check, no sharing at 0.95 x baseline ({time.perf_counter() - t1:.0f} s): "
              "hit ratio / request imbalance / p99 TTFT, closed form -> simulator")
        for r in sim:
            print(f"  n={r['instances']:<3d} {r['routing']:24s} {r['epsilon']!s:5s} "
                  f"hit {r['hit_closed_form']:.3f}->{r['hit_sim']:.3f}  "
                  f"imbalance {r['imbalance_closed_form']:.3f}->{r['imbalance_sim']:.3f}  "
                  f"p99 TTFT {r['ttft_p99_closed_form']:.2f}->{r['ttft_p99_sim']:.2f} s "
                  f"(sim p50 {r['ttft_p50_sim']:.2f} s)")
    if a.trials > 0:
        warnings.filterwarnings("ignore", message=".*have less than 2 trials.*")
        t1 = time.perf_counter()
        opt = optuna_studies(base, a.trials, out, a.objective)
        if opt:
            write_rows(out / "optuna_best.csv", opt)
        print(f"\nOptuna TPE, {a.trials} trials per size, space {SPACE} at 0.95 x baseline, objective "
              f"{a.objective} ({time.perf_counter() - t1:.0f} s); best trial:")
        for r in opt:
            rate = float(r['max_rate_at_slo'] or 0)
            print(f"  n={r['instances']:<3d} {r['value']:9.4g}  max rate {rate:6.1f} req/s "
                  f"({r['feasible']}/{r['trials']} feasible)  {r['params']}")
    print(f"\nwrote {out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
