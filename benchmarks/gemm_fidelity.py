"""Operator-level check: the model's GEMM / attention / HBM times vs this project's H200
microbenchmark (hardware_db/measurements/h200_microbench_2026-11-26.json).

    python benchmarks/gemm_fidelity.py

Prints measured vs modelled time per shape and the median absolute percentage error by regime.
The measurement is eager PyTorch (cuBLAS, SDPA), so each kernel carries a launch gap that CUDA
graphs in serving engines remove; read small-shape errors with that in mind.
"""

from __future__ import annotations

import json
import statistics

from kvmodel.catalog.hardware import data_dir, get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance import _estimate
from kvmodel.instance._roofline import _op

DATA = data_dir() / "measurements" / "h200_microbench_2026-11-26.json"


def main() -> None:
    d = json.loads(DATA.read_text())
    cal = _estimate._params()
    s = _estimate._setup(get_model("llama-3.1-70b"), get_gpu("h200-sxm"),
                         get_framework("tensorrt-llm"), 8.0, 1.0, 1.0, "bf16", "bf16", cal)
    rows = []
    print(f"{'shape':14s} {'measured us':>12} {'model us':>10} {'err':>7}")
    for r in d["matmul"]:
        m, k, n = r["m"], r["k"], r["n"]
        op = _op(2.0 * m * k * n, 2.0 * (k * n + m * k + m * n), s, s.gemm_Fps, 1.0)
        rows.append(("GEMM M<=64" if m <= 64 else "GEMM M>=256", r["bf16_s"], op["time_s"]))
        print(f"{r['name']:14s} {r['bf16_s'] * 1e6:12.1f} {op['time_s'] * 1e6:10.1f} "
              f"{100 * (op['time_s'] / r['bf16_s'] - 1):+6.0f}%")
    for a in d["attention"]:
        print(f"{a['name']:14s} measured {a['tflops']:.0f} TFLOP/s, {a['kv_GBps']:.0f} GB/s KV; "
              f"model rates {s.attn_Fps / 1e12:.0f} TFLOP/s, {s.hbm_Bps / 1e9:.0f} GB/s")
    print(f"HBM read measured {d['hbm']['read_GBps']:.0f} GB/s; model effective "
          f"{s.hbm_Bps / 1e9:.0f} GB/s (datasheet x measured Dot efficiency x memory factor)")
    for regime in sorted({r[0] for r in rows}):
        errs = [abs(mod / meas - 1) for g, meas, mod in rows if g == regime]
        print(f"{regime:12s} median |error| {100 * statistics.median(errs):.0f}% over {len(errs)} shapes")


if __name__ == "__main__":
    main()
