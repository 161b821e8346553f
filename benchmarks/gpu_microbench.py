"""GPU microbenchmarks for calibrating kvmodel (needs PyTorch with CUDA; not part of the tests).

Measures, on the GPU it runs on: dense bf16 and fp8 matmul throughput at square and serving
shapes (Llama-3.1-70B TP8 projections at token counts 1..8192), HBM read and copy bandwidth,
pinned host<->device copy bandwidth by transfer size, FlashAttention (SDPA) prefill and decode,
and per-kernel launch cost with and without CUDA graphs. Prints a table and writes JSON.

    python benchmarks/gpu_microbench.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

DEV = "cuda"


def timed(fn, iters: int = 20, warmup: int = 5) -> float:
    """Median seconds of ``fn`` measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def matmuls(res: dict) -> None:
    shapes = [("square", 8192, 8192, 8192)]
    # Llama-3.1-70B per TP8 rank: QKV 8192->1280, O 1024->8192, up+gate 8192->7168, down 3584->8192
    for m in (1, 16, 64, 256, 1024, 4096, 8192):
        shapes += [(f"qkv_m{m}", m, 8192, 1280), (f"o_m{m}", m, 1024, 8192),
                   (f"up_m{m}", m, 8192, 7168), (f"down_m{m}", m, 3584, 8192)]
    out = []
    for name, m, k, n in shapes:
        x = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
        w = torch.randn(n, k, device=DEV, dtype=torch.bfloat16)
        t = timed(lambda: x @ w.t())
        row = dict(name=name, m=m, k=k, n=n, bf16_s=t, bf16_tflops=2 * m * k * n / t / 1e12,
                   bf16_weight_GBps=2 * k * n / t / 1e9)
        try:
            if m % 16 == 0:
                xf, wf = x.to(torch.float8_e4m3fn), w.to(torch.float8_e4m3fn)
                one = torch.ones((), device=DEV)
                tf = timed(lambda: torch._scaled_mm(xf, wf.t(), scale_a=one, scale_b=one,
                                                    out_dtype=torch.bfloat16))
                row.update(fp8_s=tf, fp8_tflops=2 * m * k * n / tf / 1e12,
                           fp8_weight_GBps=k * n / tf / 1e9)
        except Exception as exc:  # fp8 not available on this GPU / torch
            row["fp8_error"] = str(exc)[:200]
        out.append(row)
    res["matmul"] = out


def hbm(res: dict) -> None:
    n = 2 * 1024**3 // 2  # 2 GiB of bf16
    x = torch.empty(n, device=DEV, dtype=torch.bfloat16).normal_()
    y = torch.empty_like(x)
    t_read = timed(lambda: x.sum(dtype=torch.float32))
    t_copy = timed(lambda: y.copy_(x))
    res["hbm"] = dict(bytes=2 * n, read_GBps=2 * n / t_read / 1e9,
                      copy_GBps_read_plus_write=4 * n / t_copy / 1e9)


def host_copies(res: dict) -> None:
    out = []
    for size in [4096 * 4**i for i in range(10)] + [2 * 1024**3]:
        h = torch.empty(size, dtype=torch.uint8, pin_memory=True)
        d = torch.empty(size, dtype=torch.uint8, device=DEV)
        h2d = timed(lambda: d.copy_(h, non_blocking=True))
        d2h = timed(lambda: h.copy_(d, non_blocking=True))
        out.append(dict(bytes=size, h2d_GBps=size / h2d / 1e9, d2h_GBps=size / d2h / 1e9,
                        h2d_s=h2d, d2h_s=d2h))
    res["host_copy"] = out


def attention(res: dict) -> None:
    import torch.nn.functional as F
    out = []
    for name, b, hq, hkv, sq, sk in [("prefill_4k", 1, 64, 8, 4096, 4096),
                                     ("prefill_16k", 1, 64, 8, 16384, 16384),
                                     ("decode_b64_ctx4k", 64, 64, 8, 1, 4096),
                                     ("decode_b256_ctx2k", 256, 64, 8, 1, 2048)]:
        q = torch.randn(b, hq, sq, 128, device=DEV, dtype=torch.bfloat16)
        k = torch.randn(b, hkv, sk, 128, device=DEV, dtype=torch.bfloat16)
        v = torch.randn_like(k)
        causal = sq > 1
        t = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                         enable_gqa=True), iters=10)
        pairs = b * hq * (sq * (sq + 1) / 2 if causal else sq * sk)
        out.append(dict(name=name, s=t, tflops=4 * pairs * 128 / t / 1e12,
                        kv_GBps=2 * b * hkv * sk * 128 * 2 / t / 1e9))
    res["attention"] = out


def launch(res: dict) -> None:
    x = torch.zeros(1, device=DEV)
    n = 1000

    def many():
        for _ in range(n):
            x.add_(1)
    t_eager = timed(many, iters=5) / n
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        many()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        many()
    t_graph = timed(g.replay, iters=5) / n
    res["launch"] = dict(eager_s_per_kernel=t_eager, graph_s_per_kernel=t_graph)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="gpu_microbench.json")
    a = ap.parse_args()
    p = torch.cuda.get_device_properties(0)
    res = {"device": torch.cuda.get_device_name(0), "sms": p.multi_processor_count,
           "total_memory_B": p.total_memory, "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d")}
    for step in (matmuls, hbm, host_copies, attention, launch):
        t0 = time.time()
        try:
            step(res)
        except Exception as exc:
            res[step.__name__ + "_error"] = repr(exc)[:300]
        print(f"{step.__name__}: {time.time() - t0:.1f}s", flush=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k != "matmul"}, indent=1))
    for r in res.get("matmul", []):
        print(f"{r['name']:12s} bf16 {r['bf16_tflops']:7.1f} TF/s {r['bf16_weight_GBps']:7.0f} GB/s"
              + (f"  fp8 {r['fp8_tflops']:7.1f} TF/s {r['fp8_weight_GBps']:7.0f} GB/s"
                 if 'fp8_tflops' in r else ""))


if __name__ == "__main__":
    main()
