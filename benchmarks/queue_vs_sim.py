"""Open-loop closed form (``kvmodel.estimate(..., request_rate=λ)``) against the reference
simulator (``kvmodel.sim.simulate``) from 30 % to 95 % of the saturation rate the closed form
reports (``estimate(..., batch="max").saturation_request_rate_per_s``), on H100 SXM.

    python benchmarks/queue_vs_sim.py [--n 3000] [--seed 1]

Cases: Llama-3.1-8B TP1 and Llama-3.1-70B TP8 with Poisson arrivals and fixed lengths, and an
8K prefix cached in HBM (every prompt shares its first 8192 tokens; the simulator's LRU holds
them, ``prefix_cache_blocks``). Prints mean and p99 TTFT and mean TPOT, closed form / simulator
and the relative error. Bars of issue 13: mean TTFT within 20 %, p99 within 35 %, TPOT 15 %.
"""

from __future__ import annotations

import argparse

import numpy as np

import kvmodel
from kvmodel.sim import poisson_requests, simulate
from kvmodel.workload._trace_types import Trace

GPU = "h100-sxm"
CASES = [("llama-3.1-8b", 1, 1024, 128, 0), ("llama-3.1-8b", 1, 2048, 256, 0),
         ("llama-3.1-70b", 8, 1024, 128, 0), ("llama-3.1-70b", 8, 2048, 256, 0),
         ("llama-3.1-8b", 1, 9216, 128, 8192)]
LOADS = (0.3, 0.5, 0.7, 0.85, 0.9, 0.95)
BLOCK = 512


def trace(n: int, lam: float, I: int, O: int, P: int, seed: int) -> Trace:
    """Poisson arrivals; with P > 0 every prompt's first P tokens are one shared block chain."""
    tr = poisson_requests(n, lam, I, O, seed=seed)
    if not P:
        return tr
    k = P // BLOCK
    chains = [np.concatenate([np.arange(k), [10**9 + i]]) for i in range(n)]
    return Trace(tr.arrival_s, tr.input_len, tr.output_len, np.arange(n + 1) * (k + 1),
                 np.concatenate(chains).astype(np.int64), block_tokens=BLOCK)


def row(model: str, tp: int, I: int, O: int, P: int, u: float, sat: float, n: int, seed: int):
    lam = u * sat
    e = kvmodel.estimate(model, GPU, tp=tp, input_len=I, output_len=O, cached_prefix_len=P,
                         request_rate=lam)
    extra = dict(prefix_cache_blocks=P // BLOCK + 2) if P else {}
    r = simulate(model, GPU, trace(n, lam, I, O, P, seed), tp=tp, **extra)
    pairs = ((e.ttft_s, r.stat("ttft", "mean")), (e.ttft_p99_s, r.stat("ttft", "p99")),
             (e.tpot_s, r.stat("tpot", "mean")))
    return " ".join(f"{a * 1e3:8.1f}/{b * 1e3:8.1f} {a / b - 1:+5.0%}" for a, b in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="simulated requests per point")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    print(f"closed form / simulator (ms) and relative error, {GPU}, {a.n} requests per point")
    print(f"{'case':<34}{'load':>5} {'mean TTFT':>22} {'p99 TTFT':>22} {'mean TPOT':>22}")
    for model, tp, I, O, P in CASES:
        sat = kvmodel.estimate(model, GPU, tp=tp, input_len=I, output_len=O,
                               cached_prefix_len=P, batch="max").saturation_request_rate_per_s
        name = f"{model} TP{tp} I={I} O={O}" + (f" P={P}" if P else "")
        for u in LOADS:
            print(f"{name:<34}{u:5.2f} {row(model, tp, I, O, P, u, sat, a.n, a.seed)}",
                  flush=True)


if __name__ == "__main__":
    main()
