"""Study: which router wins where -- every routing policy of the registry (round robin,
least loaded, bounded prefix affinity, and the load-aware closed forms of dynamo, llm-d,
SGLang and Mooncake at their registry defaults) over load (30-95 % of saturation) x instance
count x trace, for Llama-3.1-70B fp8 TP8 on DGX H100 with no KV sharing and a DRAM-light
local prefix cache (256 GB of DRAM per instance, no HBM share, no SSD), so locality matters.

Method (public API: kvmodel.evaluate, kvmodel.cluster.max_rate_at_slo, kvmodel.sim.simulate):

1. Saturation. For each (trace, instances), each router's largest stable rate (bisection with
   the SLOs switched off); the cell's saturation rate R_sat is the best router's.
2. Grid. Every router at LOADS x R_sat: mean and p99 TTFT, hit ratio and request imbalance of
   the closed form. The winner per cell is the router with the lowest p99 TTFT (an unstable
   router counts as infinite); its margin over the runner-up and over round robin is reported.
3. Spot check (``--sim``, on by default): the discrete-event simulator running each router's
   exact rule on a few cells (same instances, one DRAM LRU per instance of the same size,
   Poisson arrivals at the cell's rate, seeded), to confirm the winner and the hit ratio.

Traces: the Mooncake conversation trace (built in) and a synthetic shared-system-prompt trace
(64 system prompts of 8k tokens with Zipf(1) popularity, 20 % multi-turn sessions).

    python studies/router_choice.py [--sizes 4 8 16 32] [--quick] [--no-sim]

Writes studies/results/router_choice/: saturation.csv, grid.csv, winners.csv, sim_check.csv,
sim_winners.csv.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

import kvmodel
from kvmodel.cluster import max_rate_at_slo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_common import HERE, write_rows  # noqa: E402

OUT = HERE / "results" / "router_choice"
MODEL, GPU, TP, PRECISION = "llama-3.1-70b", "h100-sxm", 8, "fp8"
DRAM_B = 256e9                 # local prefix cache per instance (DRAM-light node)
SIZES = (4, 8, 16, 32)
LOADS = (0.3, 0.5, 0.7, 0.85, 0.95)
ROUTERS = (("round_robin", 0.25), ("least_loaded", 0.25), ("prefix_affinity_bounded", 0.1),
           ("dynamo", 0.25), ("llmd", 0.25), ("sglang", 0.25), ("mooncake", 0.25))
SIM_CELLS = ((8, 0.5), (8, 0.85))   # (instances, load) replayed by the simulator per trace


def traces(n_synthetic: int = 8000) -> dict[str, kvmodel.Trace]:
    """The two traces of the study (the synthetic one is seeded)."""
    return {"mooncake-conversation": kvmodel.load_trace("mooncake-conversation"),
            "shared-system-prompt": kvmodel.synthetic_trace(
                n_synthetic, seed=1, n_system_prompts=64, system_prompt_tokens=8192,
                zipf_alpha=1.0, session_fraction=0.2, user_tokens_mean=1024,
                output_tokens_mean=256, name="shared-system-prompt")}


def cluster(n: int, routing: str, eps: float) -> kvmodel.Cluster:
    return kvmodel.Cluster(MODEL, GPU, instances=n, tp=TP, precision=PRECISION, routing=routing,
                           epsilon=eps, hbm_cache_fraction=0.0, dram_B=DRAM_B, ssd_B=0.0)


def short(routing: str) -> str:
    return {"round_robin": "RR", "prefix_affinity_bounded": "PAB0.1",
            "least_loaded": "LL"}.get(routing, routing)


def saturation(w: kvmodel.Workload, n: int, routers=ROUTERS) -> dict[str, float]:
    """Each router's largest stable rate (req/s), SLOs off."""
    return {r: float(max_rate_at_slo(cluster(n, r, e), w.with_rate(0.5 * n), ttft_slo_s=1e9,
                                     tpot_slo_s=1e9)) for r, e in routers}


def grid(name: str, w: kvmodel.Workload, sizes=SIZES, loads=LOADS, routers=ROUTERS):
    """(saturation rows, grid rows) of one trace."""
    sat_rows, rows = [], []
    for n in sizes:
        sat = saturation(w, n, routers)
        r_sat = max(sat.values())
        sat_rows += [dict(trace=name, instances=n, routing=short(r), saturation_rate=v,
                          of_best=v / r_sat) for r, v in sat.items()]
        for f in loads:
            for r, e in routers:
                x = kvmodel.evaluate(cluster(n, r, e), w.with_rate(f * r_sat))
                inf = not x.stable
                rows.append(dict(trace=name, instances=n, load=f, rate=f * r_sat,
                                 routing=short(r), stable=bool(x.stable),
                                 ttft_mean_s=math.inf if inf else x.ttft_s,
                                 ttft_p99_s=math.inf if inf else x.ttft_p99_s,
                                 hit=sum(x.hit_ratio.values()), imbalance=x.imbalance))
    return sat_rows, rows


def winners(rows: list[dict]) -> list[dict]:
    """Per (trace, instances, load): the router with the lowest p99 TTFT and its margins."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["trace"], r["instances"], r["load"]), []).append(r)
    out = []
    for (t, n, f), rs in cells.items():
        rk = sorted(rs, key=lambda r: (r["ttft_p99_s"], r["ttft_mean_s"]))
        rr = next(r for r in rs if r["routing"] == "RR")
        out.append(dict(trace=t, instances=n, load=f, winner=rk[0]["routing"],
                        p99_s=rk[0]["ttft_p99_s"], runner_up=rk[1]["routing"],
                        margin_over_runner_up=_rel(rk[1], rk[0]), margin_over_rr=_rel(rr, rk[0]),
                        unstable=" ".join(r["routing"] for r in rs if not r["stable"]),
                        distinct_p99=len({round(r["ttft_p99_s"], 3) for r in rs})))
    return out


def _rel(a: dict, b: dict) -> float:
    """How much worse ``a``'s p99 TTFT is than ``b``'s (fraction; inf when ``a`` is unstable)."""
    return a["ttft_p99_s"] / b["ttft_p99_s"] - 1 if math.isfinite(a["ttft_p99_s"]) else math.inf


# ---- simulator spot check --------------------------------------------------------------------
def poisson(trace: kvmodel.Trace, rate: float, seed: int = 0) -> kvmodel.Trace:
    """The trace in its order with seeded Poisson arrivals at ``rate`` (the closed form's
    open-loop arrival process; the trace's own arrivals are burstier)."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, len(trace))
    return dataclasses.replace(trace, arrival_s=np.cumsum(gaps) - gaps[0])


def sim_check(name: str, w: kvmodel.Workload, grid_rows: list[dict], cells=SIM_CELLS,
              routers=ROUTERS) -> list[dict]:
    """Each router's exact rule in the simulator at the cells' rates, beside the closed form."""
    from kvmodel.sim import simulate
    block_B = w.trace.block_tokens * kvmodel.get_model(MODEL).kv_bytes_per_token(PRECISION)
    out = []
    for n, f in cells:
        cf = {r["routing"]: r for r in grid_rows if (r["instances"], r["load"]) == (n, f)}
        if not cf:
            continue
        rate = next(iter(cf.values()))["rate"]
        tr = poisson(w.trace, rate)
        for r, e in routers:
            s = simulate(MODEL, GPU, tr, instances=n, tp=TP, precision=PRECISION, routing=r,
                         epsilon=e, prefix_cache_blocks=int(DRAM_B / block_B), cache_tier="dram")
            c = cf[short(r)]
            out.append(dict(trace=name, instances=n, load=f, rate=rate, routing=short(r),
                            hit_closed=c["hit"], hit_sim=s.hit_ratio,
                            ttft_mean_closed=c["ttft_mean_s"], ttft_mean_sim=s.ttft_mean_s,
                            ttft_p99_closed=c["ttft_p99_s"], ttft_p99_sim=s.ttft_p99_s,
                            imbalance_closed=c["imbalance"],
                            imbalance_sim=float(s.requests_per_instance.max() * n
                                                / s.requests_per_instance.sum()),
                            sim_wall_s=s.wall_s))
    return out


def sim_winners(sim: list[dict], win: list[dict]) -> list[dict]:
    """Per spot-checked cell: the simulator's best router by p99 and by mean TTFT, beside the
    closed form's winner."""
    cells: dict[tuple, list[dict]] = {}
    for r in sim:
        cells.setdefault((r["trace"], r["instances"], r["load"]), []).append(r)
    cf = {(x["trace"], x["instances"], x["load"]): x["winner"] for x in win}
    return [dict(trace=t, instances=n, load=f, closed_form_winner=cf.get((t, n, f), ""),
                 sim_winner_p99=min(rs, key=lambda r: r["ttft_p99_sim"])["routing"],
                 sim_winner_mean=min(rs, key=lambda r: r["ttft_mean_sim"])["routing"],
                 sim_p99_of_closed_form_winner=next((r["ttft_p99_sim"] for r in rs
                                                     if r["routing"] == cf.get((t, n, f))), np.nan),
                 sim_best_p99=min(r["ttft_p99_sim"] for r in rs))
            for (t, n, f), rs in cells.items()]


# ---- report ----------------------------------------------------------------------------------
def print_summary(sat: list[dict], win: list[dict], sim: list[dict]) -> None:
    print("\nsaturation rate (req/s) per router, and the best router's")
    for t in dict.fromkeys(s["trace"] for s in sat):
        for n in sorted({s["instances"] for s in sat if s["trace"] == t}):
            ss = [s for s in sat if (s["trace"], s["instances"]) == (t, n)]
            print(f"  {t:22s} n={n:<3d} " + " ".join(f"{s['routing']}={s['saturation_rate']:.1f}"
                                                     for s in ss))
    print("\nwinner by p99 TTFT per (trace, instances, load): winner p99, +% runner-up, +% RR")
    for x in win:
        print(f"  {x['trace']:22s} n={x['instances']:<3d} {x['load']:.0%}: {x['winner']:7s} "
              f"{x['p99_s']:6.2f} s, {x['runner_up']:7s} {x['margin_over_runner_up']:+7.1%}, "
              f"RR {x['margin_over_rr']:+8.1%}; {x['distinct_p99']} distinct"
              + (f"; unstable: {x['unstable']}" if x["unstable"] else ""))
    if sim:
        print("\nsimulator spot check (exact rules, Poisson arrivals): closed form -> simulator")
        for r in sim:
            print(f"  {r['trace']:22s} n={r['instances']} {r['load']:.0%} {r['routing']:7s} "
                  f"hit {r['hit_closed']:.3f}->{r['hit_sim']:.3f}  imbalance "
                  f"{r['imbalance_closed']:.3f}->{r['imbalance_sim']:.3f}  mean TTFT "
                  f"{r['ttft_mean_closed']:.2f}->{r['ttft_mean_sim']:.2f} s  p99 "
                  f"{r['ttft_p99_closed']:.2f}->{r['ttft_p99_sim']:.2f} s")
        for x in sim_winners(sim, win):
            print(f"  {x['trace']:22s} n={x['instances']} {x['load']:.0%}: closed-form winner "
                  f"{x['closed_form_winner']} (sim p99 {x['sim_p99_of_closed_form_winner']:.2f} s); "
                  f"simulator's best p99 {x['sim_winner_p99']} ({x['sim_best_p99']:.2f} s), "
                  f"best mean {x['sim_winner_mean']}")


def markdown(sat: list[dict], win: list[dict], sim: list[dict] = ()) -> str:
    """The .md write-up's tables: saturation per router (best in bold), winner per cell, and
    the simulator spot check (hit ratio, mean and p99 TTFT, closed form -> simulator)."""
    rs = list(dict.fromkeys(s["routing"] for s in sat))
    cells: dict[tuple, dict] = {}
    for s in sat:
        cells.setdefault((s["trace"], s["instances"]), {})[s["routing"]] = s["saturation_rate"]
    out = ["| trace | n | " + " | ".join(rs) + " |", "|---|---:|" + "---:|" * len(rs)]
    out += [f"| {t} | {n} | " + " | ".join(("**%.1f**" if d[r] == max(d.values()) else "%.1f") % d[r]
                                          for r in rs) + " |" for (t, n), d in cells.items()]
    loads = list(dict.fromkeys(x["load"] for x in win))
    out += ["", "| trace | n | " + " | ".join(f"{f:.0%}" for f in loads) + " |",
            "|---|---:|" + "---|" * len(loads)]
    by: dict[tuple, dict] = {}
    for x in win:
        by.setdefault((x["trace"], x["instances"]), {})[x["load"]] = x

    def fmt(x):
        m = x["margin_over_runner_up"]
        return (f"{x['winner']} {x['p99_s']:.2f} s, +{m:.0%} {x['runner_up']}" if math.isfinite(m)
                else f"{x['winner']} {x['p99_s']:.2f} s (others unstable)")
    out += [f"| {t} | {n} | " + " | ".join(fmt(d[f]) for f in loads) + " |" for (t, n), d in by.items()]
    if sim:
        out += ["", "| trace | load | router | hit | mean TTFT s | p99 TTFT s |",
                "|---|---:|---|---|---|---|"]
        out += [f"| {r['trace']} | {r['load']:.0%} | {r['routing']} | {r['hit_closed']:.3f} → "
                f"{r['hit_sim']:.3f} | {r['ttft_mean_closed']:.2f} → {r['ttft_mean_sim']:.2f} | "
                f"{r['ttft_p99_closed']:.2f} → {r['ttft_p99_sim']:.2f} |" for r in sim]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--quick", action="store_true", help="sizes 8, loads 0.5 0.85, no simulator")
    ap.add_argument("--no-sim", action="store_true", help="skip the simulator spot check")
    ap.add_argument("--markdown", action="store_true", help="also print the write-up's tables")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    loads = LOADS
    if a.quick:
        a.sizes, loads, a.no_sim = [8], (0.5, 0.85), True
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sat, rows, sim = [], [], []
    for name, tr in traces().items():
        w = kvmodel.Workload(tr)
        s, g = grid(name, w, a.sizes, loads)
        sat, rows = sat + s, rows + g
        if not a.no_sim:
            sim += sim_check(name, w, g)
        print(f"{name}: {time.perf_counter() - t0:.0f} s so far")
    win = winners(rows)
    for fname, table in (("saturation", sat), ("grid", rows), ("winners", win), ("sim_check", sim),
                         ("sim_winners", sim_winners(sim, win))):
        if table:
            write_rows(out / f"{fname}.csv", table)
    print_summary(sat, win, sim)
    if a.markdown:
        print("\n" + markdown(sat, win, sim))
    print(f"\nwrote {out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
