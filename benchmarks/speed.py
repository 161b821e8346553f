"""Speed of kvmodel.estimate: median microseconds per scalar call, configurations/s vectorised.

    python benchmarks/speed.py [--points 100000 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import kvmodel


def scalar_us(repeats: int = 2000, **kw) -> float:
    kvmodel.estimate(**kw)  # warm caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        kvmodel.estimate(**kw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def vector_rate(n: int, **kw) -> float:
    rng = np.random.default_rng(0)
    I = rng.integers(16, 32_000, n)
    O = rng.integers(16, 4_000, n)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        kvmodel.estimate(input_len=I, output_len=O, **kw)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, nargs="+", default=[100_000, 1_000_000])
    a = ap.parse_args()
    base = dict(model="llama-3.1-70b", gpu="h100-sxm", tp=8, precision="fp8")
    print("scalar estimate, median of 2000 calls:")
    for label, mode in (("batch=1", dict(batch=1)), ('batch="max"', dict(batch="max")),
                        ("concurrency=32", dict(concurrency=32))):
        print(f"  {label:16s} {scalar_us(**base, input_len=2048, output_len=128, **mode):8.1f} us")
    moe = dict(model="mixtral-8x7b", gpu="h200-sxm", tp=2, precision="fp8")
    print(f"  {'MoE batch=1':16s} {scalar_us(**moe, input_len=2048, output_len=128):8.1f} us")
    print("vectorised estimate (random input/output lengths), best of 3:")
    for n in a.points:
        for label, mode in (("batch=1", dict(batch=1)), ('batch="max"', dict(batch="max")),
                            ("concurrency=32", dict(concurrency=32))):
            print(f"  {n:>9,d} points {label:16s} {vector_rate(n, **base, **mode) / 1e6:8.2f} M configs/s")


if __name__ == "__main__":
    main()
