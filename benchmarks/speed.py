"""Speed of kvmodel.estimate: median microseconds per scalar call, configurations/s vectorised.

    python benchmarks/speed.py [--points 100000 1000000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

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


def measure(points: list[int]) -> dict:
    """Scalar seconds per call and vectorised configurations/s (SI), keyed by mode label."""
    base = dict(model="llama-3.1-70b", gpu="h100-sxm", tp=8, precision="fp8")
    moe = dict(model="mixtral-8x7b", gpu="h200-sxm", tp=2, precision="fp8")
    modes = (("batch=1", dict(batch=1)), ('batch="max"', dict(batch="max")),
             ("concurrency=32", dict(concurrency=32)))
    scalar = {label: scalar_us(**base, input_len=2048, output_len=128, **m) * 1e-6
              for label, m in modes}
    scalar["MoE batch=1"] = scalar_us(**moe, input_len=2048, output_len=128) * 1e-6
    vector = {str(n): {label: vector_rate(n, **base, **m) for label, m in modes} for n in points}
    return dict(scalar_s=scalar, vector_configs_per_s=vector)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--json", type=Path, help="also write the figures (SI units) to this file")
    a = ap.parse_args()
    out = measure(a.points)
    print("scalar estimate, median of 2000 calls:")
    for label, s in out["scalar_s"].items():
        print(f"  {label:16s} {s * 1e6:8.1f} us")
    print("vectorised estimate (random input/output lengths), best of 3:")
    for n, rates in out["vector_configs_per_s"].items():
        for label, r in rates.items():
            print(f"  {int(n):>9,d} points {label:16s} {r / 1e6:8.2f} M configs/s")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
