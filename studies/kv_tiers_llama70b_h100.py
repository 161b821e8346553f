"""Study: where should Llama-3.1-70B's KV cache live on an H100 node?

1. TTFT vs cached prefix length (prompt = prefix + 512 new tokens) when the prefix sits in HBM,
   host DRAM (PCIe Gen5), CXL
   expanders, Gen5 NVMe (GPUDirect Storage) or remote DRAM over 400G RDMA, against recomputing.
2. Hit ratio of the Mooncake conversation trace vs DRAM / CXL / SSD capacity in GB (exact LRU
   curve, one pass), with the analytic (TTL) curve beside it.

    python studies/kv_tiers_llama70b_h100.py [--out studies/results/kv_tiers]

Writes ttft_vs_prefix.csv, hit_ratio_vs_capacity.csv and kv_tiers.html (plotly).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import kvmodel

HERE = Path(__file__).resolve().parent
TRACE = "mooncake-conversation"  # built-in trace (kvmodel traces)
MODEL, GPU, NODE = "llama-3.1-70b", "h100-sxm", "dgx-h100"


def ttft_table(prefix: np.ndarray) -> dict[str, np.ndarray]:
    tiers = kvmodel.node_tiers(NODE, cxl_B=2e12, remote_B=4e12, nvme="nvme-gen5", nic="roce-400g")
    kw = dict(tp=8, precision="bf16", input_len=prefix + 512, output_len=64)  # 512 new tokens
    out = {"recompute": kvmodel.estimate(MODEL, GPU, **kw, cached_prefix_len=prefix,
                                         prefix_policy="recompute").ttft_s}
    for name in ("hbm", "dram", "cxl", "ssd", "remote"):
        tier = name if name == "hbm" else tiers[name]
        out[name] = kvmodel.estimate(MODEL, GPU, **kw, cached_prefix_len=prefix, cache_tier=tier,
                                     prefix_policy="load").ttft_s
    return out


def hit_table(trace, capacity_GB: np.ndarray) -> dict[str, np.ndarray]:
    block_B = trace.block_tokens * kvmodel.get_model(MODEL).kv_bytes_per_token("bf16")
    blocks = np.floor(capacity_GB * 1e9 / block_B).astype(np.int64)
    return {"blocks": blocks, "exact": kvmodel.hit_ratio_curve(trace, blocks),
            "analytic": kvmodel.hit_ratio_curve(trace, blocks, method="analytic")}


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(columns))
        w.writerows(zip(*(np.asarray(v).tolist() for v in columns.values())))


def plot(path: Path, prefix, ttft, cap, hits) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "TTFT vs cached prefix (Llama-3.1-70B, 8x H100, bf16)",
        "Mooncake conversation trace: hit ratio vs capacity"))
    for name, v in ttft.items():
        fig.add_trace(go.Scatter(x=prefix, y=v * 1e3, name=f"TTFT {name}"), row=1, col=1)
    for name in ("exact", "analytic"):
        fig.add_trace(go.Scatter(x=cap, y=hits[name], name=f"hit ratio ({name})"), row=1, col=2)
    fig.update_xaxes(title_text="cached prefix tokens", row=1, col=1)
    fig.update_yaxes(title_text="TTFT (ms)", row=1, col=1)
    fig.update_xaxes(title_text="KV capacity (GB, bf16 KV)", type="log", row=1, col=2)
    fig.update_yaxes(title_text="block hit ratio", row=1, col=2)
    fig.write_html(path, include_plotlyjs="cdn")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(HERE / "results" / "kv_tiers"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    prefix = np.arange(512, 32769, 512)
    ttft = ttft_table(prefix)
    write_csv(out / "ttft_vs_prefix.csv", {"prefix_tokens": prefix, **{f"ttft_s_{k}": v
                                                                         for k, v in ttft.items()}})
    trace = kvmodel.load_trace(TRACE)
    cap = np.geomspace(10, 40_000, 40)
    hits = hit_table(trace, cap)
    write_csv(out / "hit_ratio_vs_capacity.csv", {"capacity_GB": cap, **hits})
    plot(out / "kv_tiers.html", prefix, ttft, cap, hits)
    for p in (8192, 32768):
        i = int(np.searchsorted(prefix, p))
        print(f"prefix {p}: " + ", ".join(f"{k} {v[i] * 1e3:.0f} ms" for k, v in ttft.items()))
    for gb in (100, 1000, 10000):
        i = int(np.argmin(abs(cap - gb)))
        print(f"{cap[i]:.0f} GB: exact {hits['exact'][i]:.3f}, analytic {hits['analytic'][i]:.3f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
