"""Study: one global KV pool vs per-node local caches (10 prefill nodes, Mooncake conversation trace).

How much does pooling the same total capacity help, against 10 local caches under random or
cache-aware routing? A model-only study: no published end-to-end result is compared here (the
Mooncake paper's own pool-vs-local figures are reserved for independent validation, see
VALIDATION_RESERVED.md in the project's shared folder).

Model (public API):

1. Hit ratio vs capacity on the Mooncake conversation trace (12,031 requests, 512-token
   blocks): :func:`kvmodel.hit_ratio_curve` for 10 local caches of C/10 blocks each
   (``instances=10``, routings ``random`` and ``prefix_affinity_bounded``) vs one global LRU of
   the same total C (``instances=1``), exact (replay) and analytic (TTL/Che).
2. Prefill time: :class:`kvmodel.Cluster` with 10 instances of ``llama-3.1-70b`` TP8 bf16 on
   ``a800-sxm-80gb``/``dgx-a100`` evaluated with :func:`kvmodel.evaluate` at the trace's own
   rate, ``sharing="none"`` (each node's DRAM share) vs ``sharing="central_pool"`` (local DRAM
   0, a pool of the same total bytes). Prefill computation = uncached prompt tokens
   (1 - block hit ratio); TTFT from the closed form.

    python studies/mooncake_pool_vs_local.py [--out studies/results/mooncake_pool_vs_local]

Writes hit_ratio.csv, cluster.csv and pool_vs_local.html.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import kvmodel

HERE = Path(__file__).resolve().parent
TRACE = "mooncake-conversation"  # built-in trace (kvmodel traces)
N = 10
MODEL, GPU, NODE = "llama-3.1-70b", "a800-sxm-80gb", "dgx-a100"


def hit_curves(trace, total_blocks: np.ndarray) -> dict[str, np.ndarray]:
    out = {"total_blocks": total_blocks}
    out["global_exact"] = kvmodel.hit_ratio_curve(trace, total_blocks)
    out["global_analytic"] = kvmodel.hit_ratio_curve(trace, total_blocks, method="analytic")
    for r in ("random", "prefix_affinity_bounded"):
        out[f"local_{r}_exact"] = kvmodel.hit_ratio_curve(trace, total_blocks, instances=N, routing=r)
        out[f"local_{r}_analytic"] = kvmodel.hit_ratio_curve(trace, total_blocks, instances=N,
                                                             routing=r, method="analytic")
    return out


def cluster_rows(trace, dram_per_node_GB: list[float], routing: str = "random") -> list[dict]:
    w = kvmodel.Workload(trace, ttft_slo_s=30.0, tpot_slo_s=0.1)
    rows = []
    for gb in dram_per_node_GB:
        base = dict(model=MODEL, gpu=GPU, node=NODE, instances=N, tp=8, precision="bf16",
                    routing=routing, hbm_cache_fraction=0.0, ssd_B=0.0)
        local = kvmodel.evaluate(kvmodel.Cluster(**base, sharing="none", dram_B=gb * 1e9), w)
        pool = kvmodel.evaluate(kvmodel.Cluster(
            **base, sharing="central_pool", dram_B=0.0,
            pool=kvmodel.PoolSpec(servers=N, dram_B=gb * 1e9, nic="roce-400g", nics=8)), w)
        h_l, h_p = sum(local.hit_ratio.values()), sum(pool.hit_ratio.values())
        rows.append(dict(dram_per_node_GB=gb, hit_local=h_l, hit_pool=h_p,
                         hit_gain=h_p / h_l if h_l > 0 else float("inf"),
                         prefill_saved=1 - (1 - h_p) / (1 - h_l),
                         ttft_local_s=local.ttft_s, ttft_pool_s=pool.ttft_s,
                         ttft_saved=(1 - pool.ttft_s / local.ttft_s if np.isfinite(local.ttft_s)
                                     else float("nan")),
                         pool_nic_util=pool.utilisation.get("pool_nic", 0.0)))
    return rows


def write_csv(path: Path, columns: dict | list) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if isinstance(columns, dict):
            w.writerow(list(columns))
            w.writerows(zip(*(np.asarray(v).tolist() for v in columns.values())))
        else:
            w.writerow(list(columns[0]))
            w.writerows([list(r.values()) for r in columns])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "results" / "mooncake_pool_vs_local"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    trace = kvmodel.load_trace(TRACE)
    total = np.unique(np.geomspace(100, 200_000, 25).astype(np.int64))
    h = hit_curves(trace, total)
    write_csv(out / "hit_ratio.csv", h)
    blk_GB = trace.block_tokens * kvmodel.get_model(MODEL).kv_bytes_per_token("bf16") / 1e9
    print(f"hit ratio, 10 local caches vs one global cache of the same total (block = {blk_GB:.3f} GB bf16)")
    print(f"{'total blocks':>12s} {'global':>7s} {'local rnd':>9s} {'local aff':>9s} {'gain rnd':>8s} "
          f"{'gain aff':>8s} {'prefill saved rnd':>17s} | analytic gain rnd")
    for i in range(0, len(total), 3):
        g, lr = h["global_exact"][i], h["local_random_exact"][i]
        la = h["local_prefix_affinity_bounded_exact"][i]
        ga = h["global_analytic"][i] / max(h["local_random_analytic"][i], 1e-12)
        print(f"{total[i]:12d} {g:7.3f} {lr:9.3f} {la:9.3f} {g / max(lr, 1e-12):8.2f} "
              f"{g / max(la, 1e-12):8.2f} {1 - (1 - g) / (1 - lr):17.2f} | {ga:6.2f}")
    gain_r = h["global_exact"] / np.maximum(h["local_random_exact"], 1e-12)
    gain_a = h["global_exact"] / np.maximum(h["local_prefix_affinity_bounded_exact"], 1e-12)
    saved_r = 1 - (1 - h["global_exact"]) / (1 - h["local_random_exact"])
    ok = h["local_random_exact"] > 0.01   # ignore ratios of near-zero hit ratios
    print(f"max hit-ratio gain (local >1% hits): random routing {gain_r[ok].max():.2f}, "
          f"cache-aware routing {gain_a[ok].max():.2f}")
    print(f"max prefill computation saved (random routing): {saved_r.max():.2f}")
    rows = cluster_rows(trace, [10, 50, 100, 250, 500, 1000])
    write_csv(out / "cluster.csv", rows)
    print("kvmodel.evaluate, 10 x llama-3.1-70b TP8 bf16 on A800, trace rate, random routing:")
    print(f"{'DRAM/node GB':>12s} {'hit local':>9s} {'hit pool':>8s} {'gain':>5s} {'prefill saved':>13s} "
          f"{'TTFT local':>10s} {'TTFT pool':>9s} {'TTFT saved':>10s}")
    for r in rows:
        print(f"{r['dram_per_node_GB']:12.0f} {r['hit_local']:9.3f} {r['hit_pool']:8.3f} "
              f"{r['hit_gain']:5.2f} {r['prefill_saved']:13.2f} {r['ttft_local_s']:10.3f} "
              f"{r['ttft_pool_s']:9.3f} {r['ttft_saved']:10.2f}")
    import plotly.graph_objects as go
    fig = go.Figure()
    for k, v in h.items():
        if k != "total_blocks":
            fig.add_trace(go.Scatter(x=total, y=v, name=k))
    fig.update_layout(title="Mooncake conversation trace: global pool vs 10 local caches",
                      xaxis_title="total capacity (512-token blocks)", xaxis_type="log",
                      yaxis_title="block hit ratio")
    fig.write_html(out / "pool_vs_local.html", include_plotlyjs="cdn")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
