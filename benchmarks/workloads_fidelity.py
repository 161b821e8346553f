"""Closed-loop, burst and closed-session closed forms of ``kvmodel.cluster.evaluate`` against
the reference simulator running the same workload (llama-3.1-8b, H100 SXM, TP1, bf16).

    python benchmarks/workloads_fidelity.py

Closed loop: 8 instances, N clients (think time Z), prompts 768..1280 / answers 64..192 tokens,
steady state (first 2N and last N requests dropped), simulator routing least_loaded and
round_robin. Burst: N prompts at t = 0 on 8 instances. Sessions: one instance with an HBM
prefix cache, synthetic multi-turn chat, turns sent Z after the previous one finished.
Prints model / simulator and the relative error of each figure.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import kvmodel
from kvmodel.cluster import Cluster, Workload, evaluate, kv_capacity_tokens
from kvmodel.sim import poisson_requests, simulate

C8 = Cluster("llama-3.1-8b", "h100-sxm", instances=8, tp=1, precision="bf16")


def _err(a: float, b: float) -> str:
    return f"{a:.4g} / {b:.4g} ({100 * (a / b - 1):+.1f}%)"


def closed_loop() -> None:
    rng = np.random.default_rng(3)
    print("closed loop: N Z routing | X req/s | mean TTFT s | mean TPOT s")
    for Z in (0.0, 1.0):
        for N in (8, 64, 256):
            n = max(1500, 20 * N)
            tr = poisson_requests(n, 5.0, rng.integers(768, 1281, n), rng.integers(64, 193, n),
                                  seed=1)
            r = evaluate(C8, Workload(tr, concurrency=N, think_time_s=Z))
            for routing in ("least_loaded", "round_robin"):
                s = simulate(C8.model, C8.gpu, tr, instances=8, concurrency=N, think_time_s=Z,
                             routing=routing)
                o = np.argsort(s.arrival_s, kind="stable")
                keep = o[2 * N: n - N]
                X = len(keep) / (s.arrival_s[o[n - N]] - s.arrival_s[o[2 * N]])
                print(f"  {N:4d} {Z:3.1f} {routing:12s} | {_err(r.served_rate_per_s, X)} | "
                      f"{_err(r.ttft_s, s.ttft_s[keep].mean())} | "
                      f"{_err(r.tpot_s, s.tpot_s[keep].mean())}")


def burst() -> None:
    print("burst: N I | mean TTFT s | p99 TTFT s | makespan s")
    for N, I in ((4, 1024), (64, 1024), (256, 1024), (256, 3000), (2000, 2000)):
        tr = poisson_requests(N, 5.0, I, 128, seed=1)
        r = evaluate(C8, Workload(tr, burst=N))
        s = simulate(C8.model, C8.gpu, dataclasses.replace(tr, arrival_s=np.zeros(N)),
                     instances=8)
        print(f"  {N:5d} {I:5d} | {_err(r.ttft_s, s.ttft_mean_s)} | "
              f"{_err(r.ttft_p99_s, s.ttft_p99_s)} | "
              f"{_err(r.workload['makespan_s'], s.busy_window_s[1])}")


def sessions() -> None:
    tr = kvmodel.synthetic_trace(3000, seed=4, rate_per_s=4.0, session_fraction=1.0,
                                 turns_mean=6, think_time_s=20.0, system_prompt_tokens=1024,
                                 user_tokens_mean=200, output_tokens_mean=100, block_tokens=64)
    print("closed sessions: cache Z | hit ratio open model / sim | closed model / sim | TTFT")
    for frac in (0.02, 0.05):
        c = dataclasses.replace(C8, instances=1, hbm_cache_fraction=frac, dram_B=0.0, ssd_B=0.0)
        w = Workload(tr)
        kvt = kv_capacity_tokens(c.model, c.gpu, 1, "bf16", round(w.input_len),
                                 round(w.output_len))
        blocks = int(frac * kvt / tr.block_tokens)
        so = simulate(c.model, c.gpu, tr, prefix_cache_blocks=blocks)
        ro = sum(evaluate(c, w).hit_ratio.values())
        for Z in (2.0, 20.0, 60.0):
            rc = evaluate(c, Workload(tr, session_mode="closed", think_time_s=Z))
            sc = simulate(c.model, c.gpu, tr, prefix_cache_blocks=blocks, session_mode="closed",
                          think_time_s=Z)
            print(f"  {blocks:4d} blocks {Z:4.0f} s | {ro:.3f} / {so.hit_ratio:.3f} | "
                  f"{sum(rc.hit_ratio.values()):.3f} / {sc.hit_ratio:.3f} | "
                  f"{_err(rc.ttft_s, sc.ttft_mean_s)}")


if __name__ == "__main__":
    closed_loop()
    burst()
    sessions()
