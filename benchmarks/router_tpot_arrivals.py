"""p99 TPOT per router, closed form against the simulator under three arrival processes.

    python benchmarks/router_tpot_arrivals.py [--cells 4:0.85 8:1.0] [--routers ...]
                                              [--seeds 1] [--epsilon 0.25] [--windows]

Each cell ``N:R`` is N instances of Llama-3.1-70B fp8 TP8 (one per DGX H100, RoCE 400G, the HBM
prefix share 0.3, no DRAM/SSD tier, no sharing: ``benchmarks/cluster_vs_sim.py``'s mapping) at
R requests/s per instance on the Mooncake conversation trace. The simulator replays the trace's
arrivals three ways (``cluster_vs_sim.with_arrivals``): ``trace``, its timestamps as
published (3 s ticks of ~10 simultaneous requests); ``spread``, each tick's requests spread
over the tick; ``poisson``, seeded exponential gaps at the same rate (``--seeds`` pooled by
their mean). The closed form reads the published trace (its figures move < 1 % with the
others). Printed per router: the closed form's p99 and mean TPOT and p99 TTFT, then the
simulator's under each arrival process, and closed / sim - 1 against ``poisson`` (the
closed form's own assumption). ``--windows``: also, from the Poisson run, the uncached prompt
tokens per second an instance prefills during a request's decode window over the instance's
mean rate (each prompt's work spread evenly over its own queue-exit .. first-token interval),
for requests with 2-50 output tokens (mean, p99) and with > 200 (mean, sd): how much of the
instance's prefill the rule lets into short requests' windows (1 for a random sample).

What it measured (stop 26, 71eaf79's model, 2 cores, 97 s for the default cells): the
published ticks alone lift the simulated p99 TPOT on 4 instances 1.3-3.4x (sglang 60 -> 195
ms against Poisson arrivals). Against Poisson arrivals, closed / sim - 1 on 4 | 8 | 32
(``--cells 32:1.45``) instances: round robin 0 | -4 | -5 %, sglang -38 | -16 | +8 %, mooncake
-35 | -21 | -21 %, random -25 | -25 | +26 %, bounded affinity (eps 0.25) +111 | +114 | +3 %,
least_loaded +75 | +165 | +224 %, dynamo -62 | -68 | -67 %, llmd -59 | -67 | -67 %: the law's
one number per rule (``kvmodel.cluster._work_smoothing``: 1 for a work signal, 0 without)
is right for round robin and sglang only. ``--windows`` (8 | 32 instances) shows why: the
prefill in 2-50-token requests' decode windows is 0.38 | 0.34 of the instance's mean under
sglang, 0.38 | 0.48 least_loaded, 0.38 | 0.53 round robin, 0.39 | 0.46 mooncake, 0.49 | 0.60
bounded affinity, 0.66 | 0.71 random, 0.81 | 0.84 llmd, 0.88 | 0.86 dynamo.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster_vs_sim import _configs, at_rate, with_arrivals  # noqa: E402

import kvmodel  # noqa: E402
from kvmodel.policies import ROUTING  # noqa: E402
from kvmodel.sim import simulate  # noqa: E402

MODEL, GPU, LINK = "llama-3.1-70b", "h100-sxm", "roce-400g"
ARRIVALS = ("trace", "spread", "poisson")


def cell(trace: kvmodel.Trace, n: int, per: float, routing: str, eps: float,
         seeds: int, windows: bool = False) -> dict:
    """One router on ``n`` instances at ``per`` requests/s each: closed form and simulator."""
    a = argparse.Namespace(gpu=GPU, tp=8, precision="fp8", model=MODEL, instances=n,
                           routing=routing, hbm_fraction=0.3, local_dram_GB=0.0, lookup_s=0.0,
                           pool_servers=1, pool_GB=2000.0, pool_nics=2, dram_GB=0.0, seed=0)
    c, kw = _configs(a, trace, LINK)["none"]
    c = dataclasses.replace(c, epsilon=eps)
    kw["epsilon"] = eps
    e = kvmodel.evaluate(c, kvmodel.Workload(at_rate(trace, per * n)))
    out = dict(closed_p99=float(e.tpot_p99_s), closed_mean=float(e.tpot_s),
               closed_ttft_p99=float(e.ttft_p99_s))
    for kind in ARRIVALS:
        runs = [simulate(MODEL, GPU, at_rate(with_arrivals(trace, kind, s), per * n),
                         **dict(kw, seed=s)) for s in range(seeds if kind == "poisson" else 1)]
        out[kind] = float(np.mean([r.tpot_p99_s for r in runs]))
        out[kind + "_ttft_p99"] = float(np.mean([r.ttft_p99_s for r in runs]))
    out["windows"] = window_exposure(runs[0], n) if windows else None
    return out


def window_exposure(r, n: int) -> dict:
    """Prompt tokens/s each served request's instance prefills during its decode window, over
    that instance's mean rate: for 2-50 output tokens (mean, p99) and > 200 (mean, sd)."""
    k = r.served
    inst, arr, q = r.instance[k], r.arrival_s[k], r.queue_s[k]
    p0, p1 = arr + q, arr + r.ttft_s[k]                   # each prompt's prefill interval
    d0, d1 = p1, arr + r.e2e_s[k]                         # each request's decode window
    work, out = (r.input_len - r.cached_tokens)[k].astype(float), r.output_len[k]
    seen = np.zeros(len(arr))
    for i in range(n):
        m = np.flatnonzero(inst == i)
        dur = np.maximum(p1[m] - p0[m], 1e-9)
        ov = np.clip(np.minimum(p1[m][None, :], d1[m][:, None])
                     - np.maximum(p0[m][None, :], d0[m][:, None]), 0.0, None)
        seen[m] = (ov * (work[m] / dur)[None, :]).sum(1) / np.maximum(d1[m] - d0[m], 1e-9)
    mean = (np.bincount(inst, weights=work, minlength=n) / (arr.max() - arr.min()))[inst]
    x = seen / mean
    short, long_ = (out >= 2) & (out <= 50), out > 200
    return dict(short=x[short].mean(), short_p99=np.percentile(x[short], 99),
                long=x[long_].mean(), long_sd=x[long_].std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="+", default=["4:0.85", "8:1.0"], metavar="N:R")
    ap.add_argument("--routers", nargs="+", default=[r for r in ROUTING if r != "prefix_affinity"])
    ap.add_argument("--seeds", type=int, default=1, help="Poisson streams pooled")
    ap.add_argument("--epsilon", type=float, default=0.25, help="bounded affinity's load bound")
    ap.add_argument("--windows", action="store_true",
                    help="also the prefill a request's decode window sees (Poisson run)")
    a = ap.parse_args()
    trace = kvmodel.load_trace("mooncake-conversation")
    t0 = time.perf_counter()
    for spec in a.cells:
        n, per = int(spec.split(":")[0]), float(spec.split(":")[1])
        print(f"\n{n} x {MODEL} fp8 TP8 at {per:g} req/s per instance; p99 TPOT ms (p99 TTFT s): "
              "closed | sim trace / spread / poisson | closed vs poisson")
        for r in a.routers:
            x = cell(trace, n, per, r, a.epsilon, a.seeds, a.windows)
            sims = " / ".join(f"{x[k] * 1e3:6.1f} ({x[k + '_ttft_p99']:.2f})" for k in ARRIVALS)
            print(f"  {r:24s} {x['closed_p99'] * 1e3:6.1f} ({x['closed_ttft_p99']:.2f}) "
                  f"mean {x['closed_mean'] * 1e3:5.1f} | {sims} | "
                  f"{x['closed_p99'] / x['poisson'] - 1:+.2f}", flush=True)
            if x["windows"]:
                v = x["windows"]
                print(f"  {'':24s} prefill in decode windows / instance mean: 2-50 tokens "
                      f"{v['short']:.2f} (p99 {v['short_p99']:.1f}), > 200 tokens {v['long']:.2f} "
                      f"(sd {v['long_sd']:.2f})", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
