"""Study: prefill:decode ratio sweep at a fixed GPU budget (DistServe-style goodput).

Published: Zhong et al., "DistServe: Disaggregating Prefill and Decoding for Goodput-optimized
Large Language Model Serving", OSDI 2024, §1 / Fig. 1: a 13B LLM on one A100-80GB, Poisson
arrivals, input 512 / output 64 tokens, SLOs P90 TTFT 0.4 s and P90 TPOT 0.04 s (90 %
attainment). Stated in the text: colocated goodput 1.6 rps/GPU (TPOT-bound; TTFT alone would
allow ~3 rps); a prefill-only GPU sustains ~5.6 rps and a decode-only GPU ~10 rps; 2 prefill + 1
decode GPUs (2P1D) reach 10 rps = 3.3 rps/GPU, 2.1x colocated. (Numbers as written in the
paper's introduction; the curves of Fig. 1 are not read off here.)

Model (public API): :class:`kvmodel.Cluster` / :func:`kvmodel.evaluate` with ``llama-2-13b``
(13B, MHA) on ``a100-sxm-80gb``, TP1, fp16, a Poisson workload
(:func:`kvmodel.sim.poisson_requests`, 512/64 tokens, no prefix reuse), SLO TTFT 0.4 s / TPOT
0.04 s. Goodput of a configuration = the largest request rate whose SLO fraction
(``goodput_per_s / served_rate_per_s``, the closed form's P(TTFT<=SLO)·P(TPOT<=SLO)) is >= 0.9, found
by bisection. Configurations: colocated (N instances) and every xPyD with x + y = budget.
Note ``evaluate`` uses mean-based TTFT/TPOT distributions, not P90 measured from a run.

    python studies/pd_ratio_sweep.py [--budgets 3 4 8]

Writes pd_sweep.csv and pd_sweep.html under studies/results/pd_ratio_sweep/.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import kvmodel
from kvmodel.sim import poisson_requests

HERE = Path(__file__).resolve().parent
MODEL, GPU, PREC = "llama-2-13b", "a100-sxm-80gb", "fp16"
TTFT_SLO, TPOT_SLO, ATTAIN = 0.4, 0.04, 0.9
PUBLISHED = {"colocated rps/GPU": 1.6, "prefill-only rps": 5.6, "decode-only rps": 10.0,
             "2P1D rps/GPU": 3.3, "2P1D / colocated": 2.1}


def workload(rate: float) -> kvmodel.Workload:
    return kvmodel.Workload(poisson_requests(500, 1.0, 512, 64, seed=1), request_rate=rate,
                            ttft_slo_s=TTFT_SLO, tpot_slo_s=TPOT_SLO)


def ok(cluster: kvmodel.Cluster, rate: float) -> bool:
    r = kvmodel.evaluate(cluster, workload(rate))
    return r.stable and r.served_rate_per_s > 0 and r.goodput_per_s / r.served_rate_per_s >= ATTAIN


def max_rate(cluster: kvmodel.Cluster, hi: float = 200.0, iters: int = 30) -> float:
    lo = 0.0
    if not ok(cluster, 1e-3):
        return 0.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(cluster, mid) else (lo, mid)
    return lo


def cluster(p: int = 0, d: int = 0, n: int = 1) -> kvmodel.Cluster:
    return kvmodel.Cluster(MODEL, GPU, instances=n, tp=1, precision=PREC, prefill_instances=p,
                           decode_instances=d, dram_B=0.0, ssd_B=0.0)


def sweep(budget: int) -> list[dict]:
    rows = [dict(budget=budget, config=f"colocated x{budget}", prefill=0, decode=0,
                 rate=max_rate(cluster(n=budget)))]
    for p in range(1, budget):
        rows.append(dict(budget=budget, config=f"{p}P{budget - p}D", prefill=p, decode=budget - p,
                         rate=max_rate(cluster(p, budget - p))))
    for r in rows:
        r["rps_per_gpu"] = r["rate"] / budget
    return rows


def phase_limits() -> dict[str, float]:
    """Per-GPU rate a prefill-only / decode-only instance sustains within its own SLO."""
    def phase_ok(kind, rate):
        if kind == "prefill":
            e = kvmodel.estimate(MODEL, GPU, tp=1, precision=PREC, input_len=512, output_len=1,
                                 request_rate=rate)
            return bool(e.stable) and e.ttft_p90_s <= TTFT_SLO
        e = kvmodel.estimate(MODEL, GPU, tp=1, precision=PREC, input_len=512, output_len=64,
                             request_rate=rate, cached_prefix_len=511, cache_tier="hbm")
        return bool(e.stable) and e.tpot_p90_s <= TPOT_SLO
    out = {}
    for kind in ("prefill", "decode"):
        lo, hi = 0.0, 500.0
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if phase_ok(kind, mid) else (lo, mid)
        out[kind] = lo
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", type=int, nargs="+", default=[3, 4, 8])
    ap.add_argument("--out", default=str(HERE / "results" / "pd_ratio_sweep"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lim = phase_limits()
    co1 = max_rate(cluster(n=1))
    print(f"{MODEL} on {GPU}, 512/64 tokens, SLO TTFT {TTFT_SLO}s TPOT {TPOT_SLO}s @ {ATTAIN:.0%}")
    print(f"{'quantity':28s} {'published':>9s} {'model':>7s}")
    print(f"{'colocated rps/GPU':28s} {PUBLISHED['colocated rps/GPU']:9.1f} {co1:7.2f}")
    print(f"{'prefill-only rps (P90 TTFT)':28s} {PUBLISHED['prefill-only rps']:9.1f} {lim['prefill']:7.2f}")
    print(f"{'decode-only rps (P90 TPOT)':28s} {PUBLISHED['decode-only rps']:9.1f} {lim['decode']:7.2f}")
    rows = []
    for b in a.budgets:
        rows += sweep(b)
    r3 = {r["config"]: r for r in rows if r["budget"] == 3}
    if r3:
        print(f"{'2P1D rps/GPU':28s} {PUBLISHED['2P1D rps/GPU']:9.1f} {r3['2P1D']['rps_per_gpu']:7.2f}")
        print(f"{'2P1D / colocated':28s} {PUBLISHED['2P1D / colocated']:9.1f} "
              f"{r3['2P1D']['rps_per_gpu'] / max(co1, 1e-9):7.2f}")
    for b in a.budgets:
        sub = [r for r in rows if r["budget"] == b]
        best = max(sub, key=lambda r: r["rate"])
        print(f"budget {b} GPUs: " + ", ".join(f"{r['config']} {r['rps_per_gpu']:.2f}" for r in sub)
              + f"  -> best {best['config']}")
    with open(out / "pd_sweep.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import plotly.graph_objects as go
    fig = go.Figure()
    for b in a.budgets:
        sub = [r for r in rows if r["budget"] == b]
        fig.add_trace(go.Bar(x=[r["config"] for r in sub], y=[r["rps_per_gpu"] for r in sub],
                             name=f"{b} GPUs"))
    fig.add_hline(y=PUBLISHED["2P1D rps/GPU"], annotation_text="DistServe 2P1D 3.3 rps/GPU")
    fig.add_hline(y=PUBLISHED["colocated rps/GPU"], annotation_text="DistServe colocated 1.6 rps/GPU")
    fig.update_layout(title="Goodput per GPU vs P:D split (llama-2-13b, A100, 512/64)",
                      yaxis_title="goodput (rps/GPU, 90% SLO)")
    fig.write_html(out / "pd_sweep.html", include_plotlyjs="cdn")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
