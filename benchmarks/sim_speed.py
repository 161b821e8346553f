"""Speed of the reference discrete-event simulator on the Mooncake conversation trace.

    python benchmarks/sim_speed.py [--trace PATH] [--instances 16 4] [--routing round_robin]
                                   [--model llama-3.1-8b] [--gpu h100-sxm] [--cache-blocks 0]
                                   [--sharing none central_pool p2p] [--nic roce-400g]
                                   [--json FILE]

For each instance count: simulated engine steps, events (arrivals + instance events), steps
per second of wall time, wall seconds, and the headline latencies/throughput of the run.
--sharing runs each instance count once per sharing mode (kvmodel.sim._sharing): a central
pool of 2 servers x 1 NIC holding 4x the instances' total cache, or P2P with a DRAM partition
of 4x the local cache per instance, over ``--nic`` links (with ``--cache-blocks 0`` the shared
level alone). --json also writes the speed figures per instance count and mode (seconds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import kvmodel
from kvmodel.sim import SIM_ROUTINGS, SimP2P, SimPool, simulate

TRACE = "mooncake-conversation"  # built-in trace (kvmodel traces)


def _spec(mode: str, instances: int, args: argparse.Namespace):
    """The shared level's spec of ``mode`` (None for "none")."""
    per = max(args.cache_blocks, 10) * 4
    if mode == "central_pool":
        return SimPool(capacity_blocks=per * instances, servers=2, nic=args.nic,
                       client_nic=args.nic)
    return SimP2P(capacity_blocks=per, client_nic=args.nic) if mode == "p2p" else None


def bench(trace: kvmodel.Trace, instances: int, args: argparse.Namespace,
          mode: str = "none") -> dict:
    """Run one simulation and print its speed and summary."""
    t0 = time.perf_counter()
    r = simulate(args.model, args.gpu, trace, instances=instances, routing=args.routing,
                 prefix_cache_blocks=args.cache_blocks, sharing=mode,
                 sharing_spec=_spec(mode, instances, args))
    total = time.perf_counter() - t0
    lit = r.little()
    print(f"{instances:3d} instances, sharing {mode}: {r.steps:>9,d} steps, {r.events:>7,d} events, "
          f"{r.steps / r.wall_s:>12,.0f} steps/s, {r.events / r.wall_s:>9,.0f} events/s, "
          f"wall {r.wall_s:.2f} s (with setup {total:.2f} s)")
    print(f"     TTFT mean/p99 {r.ttft_mean_s:.3f}/{r.ttft_p99_s:.3f} s, TPOT mean/p99 "
          f"{r.tpot_mean_s * 1e3:.2f}/{r.tpot_p99_s * 1e3:.2f} ms, E2E mean {r.e2e_mean_s:.2f} s, "
          f"{r.output_tok_per_s:,.0f} output tok/s, hit ratio {r.hit_ratio:.3f}, "
          f"Little L={lit['L']:.2f} vs XW={lit['XW']:.2f}")
    return dict(steps=int(r.steps), events=int(r.events), wall_s=float(r.wall_s),
                with_setup_s=total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=TRACE, help="built-in trace name or trace file")
    ap.add_argument("--instances", type=int, nargs="+", default=[16, 4])
    ap.add_argument("--routing", choices=SIM_ROUTINGS, default="round_robin")
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--gpu", default="h100-sxm")
    ap.add_argument("--cache-blocks", type=int, default=0)
    ap.add_argument("--sharing", nargs="+", default=["none"],
                    choices=["none", "central_pool", "p2p"])
    ap.add_argument("--nic", default="roce-400g", help="link key of the network (sharing)")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    t0 = time.perf_counter()
    trace = kvmodel.load_trace(args.trace)
    print(f"{trace.name}: {len(trace):,d} requests, {trace.arrival_s[-1]:.0f} s of arrivals "
          f"(loaded in {time.perf_counter() - t0:.2f} s); {args.model} on {args.gpu}, "
          f"routing {args.routing}")
    out = dict(trace=trace.name, requests=len(trace), model=args.model, gpu=args.gpu,
               routing=args.routing, runs={str(n): bench(trace, n, args) for n in args.instances})
    shared = [m for m in args.sharing if m != "none"]
    if shared:
        out["sharing"] = {f"{m}/{n}": bench(trace, n, args, m) for m in shared
                          for n in args.instances}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
