"""Study: KV sharing -- none vs central pool vs peer-to-peer -- across cluster sizes (4-64 DGX H100
instances of Llama-3.1-70B fp8 TP8) and network speeds (25 GbE TCP, RoCE 100/200/400/800 Gb/s),
under every routing policy of the registry (cache-blind, bounded affinity, and the load-aware
dynamo / llmd / sglang / mooncake closed forms), on the Mooncake conversation trace.

Method (public API: kvmodel.evaluate, kvmodel.search.max_rate_at_slo):

1. Grid. instances x NIC x architecture x routing, each evaluated with :func:`kvmodel.evaluate`.
   Architectures (:data:`ARCHS`): ``none``; central pools with the pool's real terms (metadata
   round trip per request, gets and puts on the server NICs, DRAM bandwidth, SSD at SSD speed):
   ``pool-1x4TB`` (one server, 4 TB DRAM), ``pool-n/8x2TB`` (ceil(n/8) servers of 2 TB),
   ``pool-rack+SSD`` (one server per rack of 8 nodes, 1 TB DRAM + 15.36 TB SSD, scope "rack");
   every pool server has 2 NICs of the swept speed. P2P over the instances' DRAM: placement per
   block hash (``p2p-block-r1`` / ``-r2``: rendezvous, replication 1 / 2), per prefix hash
   (``p2p-prefix-r1``) and writer-owned with a directory (``p2p-dir-r1``, one key-value round
   trip per request with a peer hit). Routings (:data:`ROUTINGS`): round robin, bounded prefix
   affinity at each epsilon of EPSILONS, least_loaded, dynamo, llmd, sglang, mooncake at their
   registry defaults. An architecture is scored with its best routing (by max rate at the SLOs).
2. Load. Each configuration's own max request rate at the SLOs (p99 TTFT <= 6 s, p99 TPOT
   <= 50 ms, the ``kv-sharing`` space's; bisection) is the capacity; goodput per $ at that rate
   is the headline. At the max rate the network utilisations (pool NIC out/in, hottest peer NIC,
   peer NIC in) and, at 3 % above it, what breaks first (``limit``) say which term decides. p99
   TTFT at 50/80/95 % of the no-sharing baseline R_n (best routing) is recorded too.
3. Cost. Every pool pays its media plus hardware_db's sourced server and NIC + switch-port
   prices (``calibration.toml``: ``pool_server_price``, ``pool_nic_price`` +
   ``pool_switch_port_price``; the ``PoolSpec.server_cost_usd`` / ``port_cost_usd`` defaults),
   amortised like the media; the sensitivity arch ``pool-n/8x2TB$`` (excluded from the winner
   map) charges twice those prices (:data:`HIGH_PRICES`).

    python studies/search_kv_sharing.py [--sizes 4 8 16 32 64] [--nics ...] [--quick]

Writes under studies/results/search_kv_sharing/: grid.csv (every evaluated point), best.csv
(each architecture's best routing per size and NIC), winners.csv, crossovers.csv (per NIC and
sharing family, the smallest size where sharing wins), routers.csv (max rate of every routing
per size, NIC and architecture).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import kvmodel
from kvmodel import search
from kvmodel.catalog import get_calibration

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_common import HERE, write_rows  # noqa: E402

TRACE = "mooncake-conversation"  # built-in trace (kvmodel traces)
OUT = HERE / "results" / "search_kv_sharing"
SPACE = "kv-sharing"
SIZES = (4, 8, 16, 32, 64)
NICS = ("tcp-25g", "roce-100g", "roce-200g", "roce-400g", "roce-800g")
EPSILONS = (0.05, 0.1, 0.25)
LOADS = (0.5, 0.8, 0.95)
LOAD_AWARE = ("least_loaded", "dynamo", "llmd", "sglang", "mooncake")
TB = 1e12
# cost sensitivity only: twice hardware_db's sourced pool prices (server without media; NIC +
# switch port), e.g. a vendor-configured server and optics instead of street prices
_CAL = get_calibration()
HIGH_PRICES = dict(server_cost_usd=2.0 * _CAL["pool_server_price"].si,
                   port_cost_usd=2.0 * (_CAL["pool_nic_price"].si + _CAL["pool_switch_port_price"].si))
PRICED = "pool-n/8x2TB$"


def _pool(servers, dram, ssd=0.0, **kw):
    return lambda n, nic: dict(sharing="central_pool", pool=kvmodel.PoolSpec(
        servers=servers(n), dram_B=dram, ssd_B=ssd, nic=nic, nics=2, **kw))


def _p2p(placement, replication):
    return lambda n, nic: dict(sharing="p2p", p2p=kvmodel.P2PSpec(placement=placement,
                                                                   replication=replication))


ARCHS = {
    "none": lambda n, nic: dict(sharing="none"),
    "pool-1x4TB": _pool(lambda n: 1, 4 * TB),
    "pool-n/8x2TB": _pool(lambda n: math.ceil(n / 8), 2 * TB),
    "pool-rack+SSD": _pool(lambda n: 1, 1 * TB, 15.36 * TB, scope="rack", rack_nodes=8),
    "p2p-block-r1": _p2p("rendezvous", 1),
    "p2p-block-r2": _p2p("rendezvous", 2),
    "p2p-prefix-r1": _p2p("prefix_hash", 1),
    "p2p-dir-r1": _p2p("directory", 1),
    PRICED: _pool(lambda n: math.ceil(n / 8), 2 * TB, **HIGH_PRICES),
}


def routings(epsilons=EPSILONS, load_aware=LOAD_AWARE) -> list[tuple[str, float]]:
    """(routing, epsilon) pairs of the grid; epsilon matters for the bounded affinity only."""
    return ([("round_robin", 0.25)] + [("prefix_affinity_bounded", e) for e in epsilons]
            + [(r, 0.25) for r in load_aware])


def family(arch: str) -> str:
    return arch.split("-")[0]


# ---- configurations --------------------------------------------------------------------------
def cluster(space, n: int, nic: str, arch: str, routing: str, eps: float = 0.25) -> kvmodel.Cluster:
    """The Cluster of one grid point (model/GPU/TP/precision from the space's fixed part)."""
    f = space.fixed
    return kvmodel.Cluster(model=f["model"], gpu=f["gpu"], tp=f["tp"], precision=f["precision"],
                           instances=n, nic=nic, routing=routing, epsilon=eps, **ARCHS[arch](n, nic))


def workload(space, trace=None) -> kvmodel.Workload:
    """The space's workload (Mooncake conversation trace, its SLOs); the rate is set per point."""
    trace = trace if trace is not None else kvmodel.load_trace(TRACE)
    return kvmodel.Workload(trace, ttft_slo_s=space.slo["ttft_s"], tpot_slo_s=space.slo["tpot_s"])


def _limit(r, space) -> str:
    """What fails first just above the max rate: an unstable queue, or which SLO."""
    if not r.stable:
        return str(r.reason).replace("unstable: ", "")
    miss = [k for k, v, s in (("p99 TTFT", r.ttft_p99_s, space.slo["ttft_s"]),
                              ("p99 TPOT", r.tpot_p99_s, space.slo["tpot_s"])) if v > s]
    return " + ".join(miss) or "none"


def point(c: kvmodel.Cluster, w: kvmodel.Workload, space, rate: float) -> dict:
    """One evaluation's scalars (p99 percentiles against the space's SLOs)."""
    r = kvmodel.evaluate(c, w.with_rate(rate))
    h, u = r.hit_ratio, r.utilisation
    remote = h.get("pool", 0.0) + h.get("peer", 0.0)
    ok = bool(r.stable and r.ttft_p99_s <= space.slo["ttft_s"] and r.tpot_p99_s <= space.slo["tpot_s"])
    return dict(rate=rate, per_instance_rate_per_s=rate / c.instances, stable=bool(r.stable),
                meets_slo=ok, ttft_p99_s=r.ttft_p99_s, tpot_p99_s=r.tpot_p99_s,
                goodput_per_s=r.goodput_per_s, cost_usd_per_h=r.cost_usd_per_h,
                goodput_per_dollar=r.goodput_per_s * 3600 / r.cost_usd_per_h,
                hit_total=sum(h.values()), hit_local=sum(h.values()) - remote, hit_remote=remote,
                imbalance=r.imbalance,
                net_out_util=max(u.get("pool_nic", 0.0), u.get("peer_nic_hottest", 0.0)),
                net_in_util=max(u.get("pool_nic_in", 0.0), u.get("peer_nic_in", 0.0)),
                reason=r.reason)


# ---- sweep -----------------------------------------------------------------------------------
def sweep(w, space, sizes=SIZES, nics=NICS, archs=tuple(ARCHS), routes=None,
          loads=LOADS) -> tuple[list[dict], dict]:
    """Every (size, NIC, architecture, routing) at its own max rate at the SLOs ("max") and at
    each load of the size's no-sharing baseline. Returns (rows, {size: baseline rate})."""
    routes = routes or routings()
    rows, base = [], {}
    for n in sizes:
        configs = [(nic, a, r, e) for nic in nics for a in archs for r, e in routes]
        mr = {k: search.max_rate_at_slo(cluster(space, n, *k), w.with_rate(0.9 * n), space)
              for k in configs}
        base[n] = max([v for k, v in mr.items() if k[1] == "none"] or [max(mr.values())])
        for k in configs:
            nic, a, r, e = k
            c = cluster(space, n, *k)
            head = dict(instances=n, nic=nic, arch=a, sharing=c.sharing, routing=r,
                        epsilon=e if r == "prefix_affinity_bounded" else "",
                        baseline_rate=base[n], max_rate_at_slo=mr[k],
                        limit=_limit(kvmodel.evaluate(c, w.with_rate(1.03 * max(mr[k], 0.01))), space))
            rows += [head | dict(load=f"{f:.0%}") | point(c, w, space, f * base[n]) for f in loads]
            if mr[k] > 0:
                rows.append(head | dict(load="max") | point(c, w, space, mr[k]))
    return rows, base


def label(r: dict) -> str:
    """Short name of a row's routing: RR, PAB0.05, dynamo, ..."""
    return {"round_robin": "RR", "prefix_affinity_bounded": f"PAB{r['epsilon']:g}"
            if r["epsilon"] != "" else "PAB"}.get(r["routing"], r["routing"])


def best_rows(rows: list[dict]) -> list[dict]:
    """Each (size, NIC, architecture)'s best routing by max rate at the SLOs (ties: the
    cheaper-to-run rule first, round robin before the others): its goodput/$ at that rate, the
    terms that decide it, its p99 TTFT at each load of the baseline, and the round-robin rate."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["instances"], r["nic"], r["arch"]), []).append(r)
    out = []
    for (n, nic, a), rs in groups.items():
        top = max(rs, key=lambda r: (round(r["max_rate_at_slo"], 6), r["routing"] == "round_robin"))
        same = {r["load"]: r for r in rs if label(r) == label(top)}
        ref = same.get("max", same[next(iter(same))])
        out.append(dict(instances=n, nic=nic, arch=a, routing=label(top),
                        baseline_rate=top["baseline_rate"], max_rate_at_slo=top["max_rate_at_slo"],
                        per_instance_max_rate=top["max_rate_at_slo"] / n,
                        max_rate_round_robin=max(r["max_rate_at_slo"] for r in rs
                                                 if r["routing"] == "round_robin"),
                        goodput_per_dollar=same["max"]["goodput_per_dollar"] if "max" in same else 0.0,
                        cost_usd_per_h=ref["cost_usd_per_h"], hit_total=ref["hit_total"],
                        hit_remote=ref["hit_remote"], imbalance=ref["imbalance"],
                        net_out_util=ref["net_out_util"], net_in_util=ref["net_in_util"],
                        limit=top["limit"])
                   | {f"ttft_p99_at_{f:.0%}": same[f"{f:.0%}"]["ttft_p99_s"] for f in LOADS})
    return out


TIE = 0.01   # architectures within 1 % of the best goodput/$ share the cell


def winners(best: list[dict], tie: float = TIE) -> list[dict]:
    """Per (size, NIC): the architecture with the highest goodput/$ at its max rate (the priced
    sensitivity arch excluded), co-winners within ``tie``, and the gain over no sharing."""
    groups: dict[tuple, dict[str, dict]] = {}
    for b in best:
        if b["arch"] != PRICED:
            groups.setdefault((b["instances"], b["nic"]), {})[b["arch"]] = b
    out = []
    for (n, nic), g in groups.items():
        ranked = sorted(g.values(), key=lambda b: -b["goodput_per_dollar"])
        w, none = ranked[0], g.get("none", ranked[0])
        co = [b["arch"] for b in ranked if b["goodput_per_dollar"] >= (1 - tie) * w["goodput_per_dollar"]]
        rest = [b for b in ranked if b["arch"] not in co]
        out.append(dict(instances=n, nic=nic, winner=w["arch"], routing=w["routing"],
                        goodput_per_dollar=w["goodput_per_dollar"], co_winners=" ".join(co),
                        tie="none" in co, gain_over_none=_gain(w, none),
                        best_pool=_best(g, "pool"), best_p2p=_best(g, "p2p"),
                        pool_vs_none=_gain(g[_best(g, "pool")], none) if _best(g, "pool") else math.nan,
                        p2p_vs_none=_gain(g[_best(g, "p2p")], none) if _best(g, "p2p") else math.nan,
                        next_best=rest[0]["arch"] if rest else "",
                        margin_over_next=_gain(w, rest[0]) if rest else math.nan))
    return out


def _gain(a: dict, b: dict) -> float:
    return a["goodput_per_dollar"] / b["goodput_per_dollar"] - 1 if b["goodput_per_dollar"] > 0 else math.inf


def _best(g: dict, fam: str) -> str:
    cands = [b for a, b in g.items() if family(a) == fam]
    return max(cands, key=lambda b: b["goodput_per_dollar"])["arch"] if cands else ""


def crossovers(win: list[dict], tie: float = TIE) -> list[dict]:
    """Per NIC and sharing family: the smallest size where the family's best beats no sharing
    by more than ``tie`` (goodput/$), and the gain there and at the largest size."""
    out = []
    for nic in dict.fromkeys(x["nic"] for x in win):
        ws = sorted((x for x in win if x["nic"] == nic), key=lambda x: x["instances"])
        for fam in ("pool", "p2p"):
            key = f"{fam}_vs_none"
            first = next((x for x in ws if x[key] > tie), None)
            out.append(dict(nic=nic, family=fam, crossover_instances=first["instances"] if first else "",
                            gain_at_crossover=first[key] if first else math.nan,
                            arch_at_crossover=first[f"best_{fam}"] if first else "",
                            largest_instances=ws[-1]["instances"], gain_at_largest=ws[-1][key],
                            arch_at_largest=ws[-1][f"best_{fam}"]))
    return out


def router_table(rows: list[dict]) -> list[dict]:
    """Max rate at the SLOs of every routing, per (size, NIC, architecture)."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = (r["instances"], r["nic"], r["arch"])
        out.setdefault(key, dict(instances=key[0], nic=key[1], arch=key[2]))[label(r)] = r["max_rate_at_slo"]
    return list(out.values())


# ---- report ----------------------------------------------------------------------------------
def print_summary(best: list[dict], win: list[dict], cross: list[dict], routers: list[dict]) -> None:
    nics = list(dict.fromkeys(b["nic"] for b in best))
    archs = list(dict.fromkeys(b["arch"] for b in best))
    sizes = sorted({b["instances"] for b in best})
    cell = {(b["instances"], b["nic"], b["arch"]): b for b in best}
    print("\nmax rate at the SLOs, req/s (best routing) [limit just above it]")
    for nic in dict.fromkeys((nics[0], nics[-1])):
        print(f"  {nic}")
        for n in sizes:
            print(f"  n={n:<3d}" + "".join(
                f" {a}={cell[n, nic, a]['max_rate_at_slo']:.1f}({cell[n, nic, a]['routing']})"
                for a in archs))
            print("        limits: " + "; ".join(f"{a}: {cell[n, nic, a]['limit']}" for a in archs
                                               if a != "none"))
    print(f"\nwinner per cell (goodput/$ at the max rate; co-winners within {TIE:.0%})")
    for x in win:
        print(f"  n={x['instances']:<3d} {x['nic']:10s} {x['co_winners']:40s} {x['routing']:8s} "
              f"{x['goodput_per_dollar']:6.1f} req/$ {x['gain_over_none']:+.1%} vs none "
              f"(pool {x['pool_vs_none']:+.1%}, p2p {x['p2p_vs_none']:+.1%})")
    print("\ncrossovers (smallest size where the family beats none by > 1 % goodput/$)")
    for c in cross:
        print(f"  {c['nic']:10s} {c['family']:5s} from n={c['crossover_instances']!s:3s} "
              f"({c['gain_at_crossover']:+.1%}, {c['arch_at_crossover']}); at n={c['largest_instances']}: "
              f"{c['gain_at_largest']:+.1%} ({c['arch_at_largest']})")
    if any(b["arch"] == PRICED for b in best):
        print(f"\npool at twice the sourced prices {HIGH_PRICES}: goodput/$ sourced -> doubled, vs none")
        for n in sizes:
            for nic in nics:
                p, q, z = (cell[n, nic, a] for a in ("pool-n/8x2TB", PRICED, "none"))
                extra = q["cost_usd_per_h"] - p["cost_usd_per_h"]
                print(f"  n={n:<3d} {nic:10s} {p['goodput_per_dollar']:.1f} -> "
                      f"{q['goodput_per_dollar']:.1f} req/$ (none {z['goodput_per_dollar']:.1f}; "
                      f"+{extra:.2f} $/h)")


def markdown(best: list[dict], win: list[dict], sizes=(16, 32, 64)) -> str:
    """The .md write-up's tables: max rate per (NIC, size) and architecture, and the winner map."""
    archs = [a for a in dict.fromkeys(b["arch"] for b in best) if a != PRICED]
    nics = list(dict.fromkeys(b["nic"] for b in best))
    cell = {(b["instances"], b["nic"], b["arch"]): b for b in best}
    lines = ["| NIC | n | " + " | ".join(archs) + " |", "|---|---:|" + "---:|" * len(archs)]
    lines += [f"| {nic} | {n} | " + " | ".join(f"{cell[n, nic, a]['max_rate_at_slo']:.1f}" for a in archs)
              + " |" for nic in nics for n in sizes if (n, nic, archs[0]) in cell]
    ns = sorted({x["instances"] for x in win})
    w = {(x["instances"], x["nic"]): x for x in win}
    lines += ["", "| n | " + " | ".join(nics) + " |", "|---:|" + "---|" * len(nics)]
    for n in ns:
        lines.append(f"| {n} | " + " | ".join(
            "tie" if w[n, nic]["tie"] else
            f"{'P2P' if family(w[n, nic]['winner']) == 'p2p' else 'pool'} {w[n, nic]['gain_over_none']:+.1%}"
            f" (pool {w[n, nic]['pool_vs_none']:+.1%})" for nic in nics) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--nics", nargs="+", default=list(NICS))
    ap.add_argument("--quick", action="store_true",
                    help="sizes 8 32, NICs tcp-25g roce-400g, one epsilon, no load-aware routers")
    ap.add_argument("--markdown", action="store_true", help="also print the write-up's tables")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    routes = routings()
    if a.quick:
        a.sizes, a.nics, routes = [8, 32], ["tcp-25g", "roce-400g"], routings((0.1,), ())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    space = search.load_space(SPACE)
    rows, base = sweep(workload(space), space, a.sizes, a.nics, routes=routes)
    print(f"grid: {len(rows)} points in {time.perf_counter() - t0:.0f} s")
    print("baseline (no sharing, best routing) max rate at SLO: " + ", ".join(
        f"n={n}: {r:.2f} req/s ({r / n:.2f}/instance)" for n, r in base.items()))
    best = best_rows(rows)
    win = winners(best)
    cross = crossovers(win)
    routers = router_table(rows)
    for name, table in (("grid", rows), ("best", best), ("winners", win), ("crossovers", cross),
                        ("routers", routers)):
        write_rows(out / f"{name}.csv", table)
    print_summary(best, win, cross, routers)
    if a.markdown:
        print("\n" + markdown(best, win))
    print(f"\nwrote {out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
