"""Cluster closed form (``kvmodel.cluster.evaluate``) against the simulator (``kvmodel.sim.simulate``)
for KV sharing none / central_pool / p2p on a 25 GbE-class network and on InfiniBand NDR.

    python benchmarks/cluster_vs_sim.py [--trace mooncake-conversation] [--instances 16]
        [--speedup 1] [--links tcp-25g ib-ndr] [--model llama-3.1-8b] [--gpu h100-sxm]
        [--hbm-fraction 0.05] [--dram-GB 64] [--pool-servers 2] [--pool-GB 2000]
        [--routing round_robin] [--lookup-s 0] [--local-dram-GB 0] [--json FILE]
        [--tp 1] [--precision bf16] [--pool-nics 1] [--rate R] [--start 0] [--requests N]
        [--seed 0] [--at-max-rate F] [--sim-max-rate] [--slo-ttft 6] [--slo-tpot 0.05]
        [--arrivals trace|spread|poisson]

Same configuration on both sides. Mapping assumptions:
- TP ``--tp`` instances of ``--model`` at ``--precision`` on ``--gpu``'s default node
  (instances per node = GPUs per node / TP); the node's NICs are ``--links`` entry
  (``Cluster.nic``), each instance gets NICs / instances-per-node of them (``client_nics`` of
  the simulator's spec).
- ``Cluster.hbm_cache_fraction`` x KV capacity (tokens, ``kv_capacity_tokens``) / block tokens
  = the simulator's ``prefix_cache_blocks`` (LRU, HBM). No local DRAM/CXL/SSD tier on either
  side (``dram_B = ssd_B = 0``) except P2P, where ``dram_B`` per instance is the partition
  peers reach (``SimP2P.capacity_blocks``; the owner's own blocks load at the node DRAM path's
  bandwidth per instance, ``local_Bps``).
- Pool: ``PoolSpec(servers, dram_B, nic=link, nics)`` = ``SimPool(capacity_blocks = servers x
  dram_B / block bytes, servers, nics, nic, media=PoolSpec.memory, media_devices=DIMMs
  holding dram_B)`` (or ``sockets`` x the memory's per-socket bandwidth where PoolSpec has
  ``sockets``); metadata round trip ``--lookup-s`` on both sides (``PoolSpec.metadata_rtt_s``
  where the closed form has it; today's has no lookup, so keep 0 to compare with it). P2P:
  ``placement`` "rendezvous" (per block hash) = ``SimP2P(placement="block")``,
  ``lookup_latency_s`` = ``lookup_s`` = ``--lookup-s``, replication 1.
- ``--local-dram-GB`` > 0: the local cache is that much DRAM per instance instead of the HBM
  partition (``hbm_cache_fraction=0, dram_B`` = the simulator's ``cache_tier="dram"`` with
  ``prefix_cache_blocks`` = DRAM / block bytes, loaded over the node's DRAM path), for "none"
  and the pool; P2P is left out (its DRAM is the peers' partition on both sides).
- Routing ``--routing`` on both sides; arrivals of the trace compressed ``--speedup`` times
  (``Workload.request_rate`` = the compressed trace's rate).
- ``--arrivals``: ``trace`` (default) replays the timestamps as published (the Mooncake
  conversation trace's 3 s ticks run as ~10 simultaneous requests); ``spread`` spreads each
  tick's requests over the tick (:meth:`Trace.spread_ticks`); ``poisson`` draws seeded
  exponential gaps at the trace's mean rate (``--seed``), request order kept. The closed form
  reads the same trace (its figures barely move: it models Poisson-like arrivals either way).
- ``--start`` / ``--requests``: a window of the trace (another sample, or a shorter run);
  ``--rate``: its arrivals scaled to that mean rate; ``--at-max-rate F``: each configuration
  at F x its own closed-form max rate at p99 TTFT <= ``--slo-ttft`` and p99 TPOT <=
  ``--slo-tpot`` (the kv-sharing space's SLOs by default); ``--sim-max-rate``: also the
  simulator's max rate at the same SLOs (bisection, ~8 simulations). Each row also prints
  mean / p99 TPOT and the load imbalance: the closed form's, and the simulated busiest
  instance's requests, uncached prompt tokens and output tokens over the mean instance's.
  The KV-sharing study's cells (70B TP8): studies/search_kv_sharing.md, "Referee".
Bars of issue 13: mean TTFT within 20 %, p99 within 35 %, hit ratio within 0.02.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

import kvmodel
from kvmodel.catalog.hardware import get_memory, get_node
from kvmodel.catalog.models import get_model
from kvmodel.cluster import (
    Cluster,
    P2PSpec,
    PoolSpec,
    Workload,
    evaluate,
    kv_capacity_tokens,
    max_rate_at_slo,
)
from kvmodel.instance._paths import path_segments
from kvmodel.sim import SimP2P, SimPool, simulate
from kvmodel.sim._path_server import bottleneck
from kvmodel.tiers import default_node_for_gpu, node_tiers

BARS = dict(ttft=0.20, p99=0.35, hit=0.02)


def _compressed(trace: kvmodel.Trace, speedup: float) -> kvmodel.Trace:
    return dataclasses.replace(trace, arrival_s=trace.arrival_s / speedup)


def with_arrivals(trace: kvmodel.Trace, kind: str, seed: int = 0) -> kvmodel.Trace:
    """``trace`` with its arrivals as published ("trace"), spread over their timestamp ticks
    ("spread"), or redrawn as a seeded Poisson stream at the same mean rate ("poisson")."""
    if kind == "trace":
        return trace
    if kind == "spread":
        return trace.spread_ticks()
    if kind == "poisson":
        n = len(trace)
        mean_gap = float(trace.arrival_s[-1] - trace.arrival_s[0]) / max(n - 1, 1)
        gaps = np.random.default_rng(seed).exponential(mean_gap, n)
        gaps[0] = 0.0
        return dataclasses.replace(trace, arrival_s=np.cumsum(gaps), name=f"{trace.name}~poisson")
    raise ValueError(f"arrivals={kind!r}; allowed: trace, spread, poisson")


def at_rate(trace: kvmodel.Trace, rate: float) -> kvmodel.Trace:
    """``trace`` with its arrivals scaled so that its mean rate (requests / last arrival) is
    ``rate`` requests/s."""
    return _compressed(trace, rate / (len(trace) / float(trace.arrival_s[-1])))


def sim_imbalance(r) -> dict:
    """The simulated routing's load shares: the busiest instance's requests, uncached prompt
    tokens (prefill work) and output tokens over the mean instance's (1 = perfect balance)."""
    n = len(r.requests_per_instance)
    keep = r.served
    inst = r.instance[keep]
    per = lambda x: np.bincount(inst, weights=x[keep], minlength=n)  # noqa: E731
    shares = dict(requests=per(np.ones(len(keep))), prefill_tokens=per(
        (r.input_len - r.cached_tokens).astype(float)), output_tokens=per(r.output_len.astype(float)))
    return {k: float(v.max() / v.mean()) if v.mean() > 0 else 1.0 for k, v in shares.items()}


def _configs(a: argparse.Namespace, trace: kvmodel.Trace, link: str) -> dict:
    """Cluster and simulator arguments of each sharing mode on ``link``."""
    node = get_node(default_node_for_gpu(a.gpu))
    tp, prec = getattr(a, "tp", 1), getattr(a, "precision", "bf16")
    per_node = max(1, node.gpus_per_node // tp)        # instances per node
    block_B = trace.block_tokens * get_model(a.model).kv_bytes_per_token(prec)
    kv_tok = kv_capacity_tokens(a.model, a.gpu, tp, prec, round(float(trace.input_len.mean())),
                                round(float(trace.output_len.mean())))
    base = Cluster(a.model, a.gpu, instances=a.instances, tp=tp, precision=prec,
                   routing=a.routing, hbm_cache_fraction=a.hbm_fraction, dram_B=0.0,
                   ssd_B=0.0, nic=link)
    sim = dict(instances=a.instances, routing=a.routing, block_tokens=trace.block_tokens,
               prefix_cache_blocks=int(a.hbm_fraction * kv_tok / trace.block_tokens),
               tp=tp, precision=prec, seed=getattr(a, "seed", 0))
    if a.local_dram_GB > 0:       # a local DRAM tier instead of the HBM partition
        base = dataclasses.replace(base, hbm_cache_fraction=0.0, dram_B=a.local_dram_GB * 1e9)
        sim.update(prefix_cache_blocks=int(a.local_dram_GB * 1e9 / block_B), cache_tier="dram",
                   node=node.key)
    nic = dict(client_nic=link, client_nics=node.nics / per_node)
    names = {f.name for f in dataclasses.fields(PoolSpec)}
    extra = {"metadata_rtt_s": a.lookup_s} if "metadata_rtt_s" in names else {}
    pool = PoolSpec(servers=a.pool_servers, dram_B=a.pool_GB * 1e9, nic=link,
                    nics=getattr(a, "pool_nics", 1), **extra)
    mem = get_memory(pool.memory)
    media = (dict(media_read_Bps=pool.sockets * mem.socket_read_bw_Bps) if "sockets" in names
             else dict(media=pool.memory, media_devices=math.ceil(pool.dram_B / mem.capacity_B)))
    dram = bottleneck(path_segments(node_tiers(node.key, a.gpu)["dram"]))[0]
    out = {
        "none": (base, dict(sim)),
        "central_pool": (dataclasses.replace(base, sharing="central_pool", pool=pool), dict(
            sim, sharing="central_pool", sharing_spec=SimPool(
                capacity_blocks=int(pool.servers * pool.dram_B / block_B), servers=pool.servers,
                nics=pool.nics, nic=link, lookup_s=a.lookup_s, **media, **nic))),
        "p2p": (dataclasses.replace(base, sharing="p2p", dram_B=a.dram_GB * 1e9,
                                    p2p=P2PSpec(placement="rendezvous",
                                                lookup_latency_s=a.lookup_s)), dict(
            sim, sharing="p2p", sharing_spec=SimP2P(
                capacity_blocks=int(a.dram_GB * 1e9 / block_B), placement="block",
                local_Bps=1.0 / dram, lookup_s=a.lookup_s, **nic))),
    }
    if a.local_dram_GB > 0:
        del out["p2p"]
    return out


def closed_max_rate(c: Cluster, trace: kvmodel.Trace, slo: tuple[float, float]) -> float:
    """The closed form's max request rate with p99 TTFT and p99 TPOT within ``slo``."""
    w = Workload(trace)
    return float(max_rate_at_slo(c, w.with_rate(w.rate), "p99", "p99", *slo))


def sim_meets(r, slo: tuple[float, float]) -> bool:
    return r.ttft_p99_s <= slo[0] and r.tpot_p99_s <= slo[1]


def sim_max_rate(a, trace: kvmodel.Trace, kw: dict, slo: tuple[float, float], guess: float,
                 iters: int = 6) -> tuple[float, list]:
    """The simulator's max request rate with p99 TTFT and p99 TPOT within ``slo``: bisection
    on the trace's arrivals scaled to each rate, from the bracket [guess / 2, guess x 1.5]
    (widened while its top still meets the SLOs); the (rate, p99 TTFT, p99 TPOT) of each run."""
    runs = []

    def meets(rate):
        r = simulate(a.model, a.gpu, at_rate(trace, rate), **kw)
        runs.append((rate, r.ttft_p99_s, r.tpot_p99_s))
        return sim_meets(r, slo)

    lo, hi = guess / 2, guess * 1.5
    while meets(hi) and hi < 8 * guess:
        lo, hi = hi, hi * 1.5
    if not meets(lo):
        lo = 0.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo, runs


def _rel(model: float, ref: float) -> float:
    return (model - ref) / ref if ref else float("nan")


def compare(a: argparse.Namespace, trace: kvmodel.Trace, link: str, mode: str, c, kw) -> dict:
    """One configuration: closed form and simulation, their figures and relative errors."""
    w = Workload(trace)
    t0 = time.perf_counter()
    e = evaluate(c, w)
    t1 = time.perf_counter()
    r = simulate(a.model, a.gpu, trace, **kw)
    t2 = time.perf_counter()
    cf = dict(ttft=e.ttft_s, p99=e.ttft_p99_s, hit=sum(e.hit_ratio.values()),
              tpot=e.tpot_s, tpot_p99=e.tpot_p99_s, imbalance=e.imbalance)
    sm = dict(ttft=r.ttft_mean_s, p99=r.ttft_p99_s, hit=r.hit_ratio, tpot=r.tpot_mean_s,
              tpot_p99=r.tpot_p99_s, imbalance=sim_imbalance(r))
    err = dict(ttft=_rel(cf["ttft"], sm["ttft"]), p99=_rel(cf["p99"], sm["p99"]),
               hit=cf["hit"] - sm["hit"])
    ok = {k: abs(err[k]) <= BARS[k] for k in BARS}
    net, span = r.network_stats(), r.busy_window_s[1] - r.busy_window_s[0]
    owners = [v["get_B"] / v["Bps"] / span for n, v in r.network.items() if n.startswith("tx")]
    return dict(link=link, mode=mode, closed=cf, sim=sm, err=err, ok=ok, stable=bool(e.stable),
                closed_levels=dict(e.hit_ratio), sim_levels=r.hit_ratio_by_level(),
                closed_util=dict(e.utilisation),
                sim_util_max={k: max((v["util"] for n, v in net.items() if n.startswith(k)),
                                     default=0.0) for k in ("pool_tx", "pool_rx", "tx", "rx")},
                sim_peer_get_util_hottest=max(owners) if mode == "p2p" else 0.0,
                evaluate_s=t1 - t0, simulate_s=t2 - t1)


def _added(rows: list) -> None:
    """Sharing's change of mean TTFT against "none" on the same link, both sides: isolates
    the shared level's terms from the instance queue's own error."""
    base = {r["link"]: r for r in rows if r["mode"] == "none"}
    for r in rows:
        b = base.get(r["link"])
        if b is None or r is b:
            continue
        dc = r["closed"]["ttft"] - b["closed"]["ttft"]
        ds = r["sim"]["ttft"] - b["sim"]["ttft"]
        d99c, d99s = r["closed"]["p99"] - b["closed"]["p99"], r["sim"]["p99"] - b["sim"]["p99"]
        print(f"{r['link']:>9} {r['mode']:>12} | TTFT mean vs none: {dc * 1e3:+8.1f} ms closed, "
              f"{ds * 1e3:+8.1f} ms sim | p99 vs none: {d99c * 1e3:+8.1f} ms closed, "
              f"{d99s * 1e3:+8.1f} ms sim")


def run_cell(a: argparse.Namespace, trace: kvmodel.Trace, link: str, mode: str, c, kw) -> dict:
    """One configuration, at ``--at-max-rate`` x the closed form's max rate at the SLOs when
    given (else at ``trace``'s rate), and with ``--sim-max-rate`` the simulator's max rate."""
    slo = (a.slo_ttft, a.slo_tpot)
    mr = closed_max_rate(c, trace, slo) if a.at_max_rate or a.sim_max_rate else None
    tr = at_rate(trace, a.at_max_rate * mr) if a.at_max_rate else trace
    row = compare(a, tr, link, mode, c, kw) | dict(rate=len(tr) / float(tr.arrival_s[-1]),
                                                   closed_max_rate=mr)
    _print(row)
    if a.sim_max_rate:
        row["sim_max_rate"], row["sim_max_rate_runs"] = sim_max_rate(a, trace, kw, slo, mr)
        print(f"{'':23}max rate at p99 TTFT <= {slo[0]:g} s, p99 TPOT <= {slo[1] * 1e3:g} ms: "
              f"closed {mr:.2f} vs sim {row['sim_max_rate']:.2f} req/s "
              f"({_rel(mr, row['sim_max_rate']):+.1%})")
    return row


def _print(row: dict) -> None:
    c, s, e, ok = row["closed"], row["sim"], row["err"], row["ok"]
    mark = lambda k: "ok" if ok[k] else "FAIL"  # noqa: E731
    print(f"{row['link']:>9} {row['mode']:>12} | TTFT mean {c['ttft']:7.3f} vs {s['ttft']:7.3f} s "
          f"{e['ttft']:+7.1%} {mark('ttft'):4} | p99 {c['p99']:7.3f} vs {s['p99']:7.3f} s "
          f"{e['p99']:+7.1%} {mark('p99'):4} | hit {c['hit']:.3f} vs {s['hit']:.3f} "
          f"{e['hit']:+.3f} {mark('hit'):4} | sim {row['simulate_s']:.1f} s")
    si = s["imbalance"]
    print(f"{'':23}TPOT mean {c['tpot'] * 1e3:6.1f} vs {s['tpot'] * 1e3:6.1f} ms | p99 "
          f"{c['tpot_p99'] * 1e3:6.1f} vs {s['tpot_p99'] * 1e3:6.1f} ms | imbalance closed "
          f"{c['imbalance']:.3f}; sim busiest/mean: requests {si['requests']:.3f}, prefill "
          f"tokens {si['prefill_tokens']:.3f}, output tokens {si['output_tokens']:.3f}")
    fmt = lambda d: ", ".join(f"{k} {v:.3f}" for k, v in d.items() if v)  # noqa: E731
    hot = row["sim_peer_get_util_hottest"]
    print(f"{'':23}levels closed: {fmt(row['closed_levels'])}; sim: {fmt(row['sim_levels'])}; "
          f"util closed: {fmt(row['closed_util']) or '-'}; sim max: {fmt(row['sim_util_max']) or '-'}"
          + (f"; sim hottest owner (gets only) {hot:.3f}" if hot else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default="mooncake-conversation")
    ap.add_argument("--instances", type=int, default=16)
    ap.add_argument("--speedup", type=float, default=1.0, help="compress the trace's arrivals")
    ap.add_argument("--links", nargs="+", default=["tcp-25g", "ib-ndr"])
    ap.add_argument("--modes", nargs="+", default=["none", "central_pool", "p2p"])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--gpu", default="h100-sxm")
    ap.add_argument("--routing", default="round_robin")
    ap.add_argument("--hbm-fraction", type=float, default=0.05)
    ap.add_argument("--dram-GB", type=float, default=64.0, help="P2P DRAM per instance")
    ap.add_argument("--pool-servers", type=int, default=2)
    ap.add_argument("--pool-GB", type=float, default=1000.0, help="pool DRAM per server")
    ap.add_argument("--lookup-s", type=float, default=0.0, help="metadata / directory RTT")
    ap.add_argument("--local-dram-GB", type=float, default=0.0,
                    help="local DRAM cache per instance instead of the HBM partition")
    ap.add_argument("--tp", type=int, default=1, help="GPUs per instance")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--pool-nics", type=int, default=1, help="NICs per pool server")
    ap.add_argument("--rate", type=float, help="request rate, req/s (instead of --speedup)")
    ap.add_argument("--start", type=int, default=0, help="first request of the trace window")
    ap.add_argument("--requests", type=int, help="requests in the window (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="the simulator's routing seed")
    ap.add_argument("--at-max-rate", type=float, metavar="F",
                    help="run each configuration at F x its closed-form max rate at the SLOs")
    ap.add_argument("--sim-max-rate", action="store_true",
                    help="also bisect the simulator's max rate at the SLOs (~8 runs each)")
    ap.add_argument("--slo-ttft", type=float, default=6.0, help="p99 TTFT SLO, s (kv-sharing's)")
    ap.add_argument("--slo-tpot", type=float, default=0.05, help="p99 TPOT SLO, s (kv-sharing's)")
    ap.add_argument("--json", type=Path, help="also write the rows to this file")
    ap.add_argument("--arrivals", choices=("trace", "spread", "poisson"), default="trace",
                    help="timestamps as published, spread over their ticks, or seeded Poisson")
    a = ap.parse_args()
    trace = with_arrivals(kvmodel.load_trace(a.trace).window(a.start, a.requests), a.arrivals,
                          a.seed)
    trace = at_rate(trace, a.rate) if a.rate else _compressed(trace, a.speedup)
    print(f"{trace.name} x{a.speedup:g}: {len(trace):,d} requests at "
          f"{len(trace) / trace.arrival_s[-1]:.2f}/s on {a.instances} x {a.model} TP{a.tp} "
          f"{a.precision} {a.gpu}, routing {a.routing}, seed {a.seed}; closed form vs simulator, "
          f"relative error of the closed form")
    rows = [run_cell(a, trace, link, mode, c, kw) for link in a.links
            for mode, (c, kw) in _configs(a, trace, link).items() if mode in a.modes]
    _added(rows)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
