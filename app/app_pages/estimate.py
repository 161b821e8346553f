"""Estimate: one serving instance -> TTFT / TPOT / throughput, per-op breakdown, memory, roofline."""

from __future__ import annotations

from typing import Any

import _common as ui
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import kvmodel
from kvmodel.catalog.models import BYTES_PER_ELEMENT
from kvmodel.instance.seam import compute_precision

OP_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "star", "cross", "x", "pentagon",
              "hexagon", "triangle-down"]
MODES = {"batch N": "batch", "max (continuous batching)": "max", "concurrency N": "concurrency",
         "request rate λ": "rate"}


def inputs() -> dict[str, Any]:
    c = st.columns(4)
    kw: dict[str, Any] = dict(
        model=ui.select("Model", ui.model_options(), "model", "llama-3.1-70b", where=c[0]),
        gpu=ui.select("GPU", ui.gpu_options(), "gpu", "h100-sxm", where=c[1]),
        precision=ui.select("Precision (weights)", list(BYTES_PER_ELEMENT), "precision", "fp8",
                            where=c[2]),
        framework=ui.select("Framework", kvmodel.list_entries(section="framework"), "framework",
                            "tensorrt-llm", where=c[3]),
    )
    c = st.columns(4)
    kw["tp"] = ui.number("TP", "tp", 8, 1, ui.MAX_TP, where=c[0])
    kw["pp"] = ui.number("PP", "pp", 1, 1, ui.MAX_TP, where=c[1])
    kw["input_len"] = ui.number("Input tokens", "input_len", 2048, 1, ui.MAX_TOKENS, where=c[2],
                                step=256)
    kw["output_len"] = ui.number("Output tokens", "output_len", 128, 1, ui.MAX_TOKENS, where=c[3],
                                 step=64)
    c = st.columns([3, 1])
    mode = MODES[ui.radio("Mode", list(MODES), "mode", "batch N", where=c[0])]
    ui.drop(*{"batch": ("clients", "rate"), "max": ("n", "clients", "rate"),
              "concurrency": ("n", "rate"), "rate": ("n", "clients")}[mode])
    if mode == "batch":
        kw["batch"] = ui.number("Batch N", "n", 1, 1, ui.MAX_BATCH, where=c[1])
    elif mode == "max":
        kw["batch"] = "max"
    elif mode == "concurrency":
        kw["concurrency"] = ui.number("Clients N", "clients", 16, 1, ui.MAX_BATCH, where=c[1])
    else:
        kw["request_rate"] = ui.number("Requests/s λ", "rate", 1.0, 1e-6, ui.MAX_RATE_PER_S, where=c[1],
                                       format="%.3f")
    return kw


def headline(e: Any) -> None:
    if e.mode == "rate" and not e.stable:
        unstable(e)
        return
    c = st.columns(5)
    c[0].metric("TTFT (ms)", ui.fmt_ms(e.ttft_s))
    c[1].metric("TPOT (ms)", ui.fmt_ms(e.tpot_s))
    c[2].metric("E2E (s)", ui.fmt_time(e.e2e_s))
    c[3].metric("Output (tok/s)", ui.fmt_num(e.output_tok_per_s))
    c[4].metric("Batch (sequences)", ui.fmt_num(e.batch))

    def fmt(k: str, v: float) -> str:
        return {"output_tok_per_s": lambda x: ui.fmt_num(x, "tok/s"), "e2e_s": ui.fmt_time}.get(
            k, ui.fmt_ms)(v)

    band = ", ".join(f"{k.removesuffix('_s')} {fmt(k, lo)}–{fmt(k, hi)}"
                     for k, (lo, hi) in e.interval.items())
    if band:
        st.caption(f"10th–90th percentile band from the calibration residuals: {band}")
    if e.mode in ("concurrency", "rate"):
        queueing(e)


def queueing(e: Any) -> None:
    """Percentiles, saturation rate and queueing delay of the open / closed loop modes."""
    st.markdown("**Latency percentiles**")
    rows = [{"metric": m.upper(), **{f"p{q}": getattr(e, f"{m}_p{q}_s") for q in (50, 90, 99)}}
            for m in ("ttft", "tpot", "e2e")]
    shown = pd.DataFrame([{k: v if k == "metric" else (ui.fmt_time if r["metric"] == "E2E"
                                                        else ui.fmt_ms)(v) for k, v in r.items()}
                          for r in rows])
    st.dataframe(shown, hide_index=True, key="table_pct")
    ui.download_table(pd.DataFrame(rows), "percentiles", "pct")
    c = st.columns(3)
    c[0].metric("Saturation rate (req/s)", ui.fmt_num(e.saturation_request_rate_per_s))
    c[1].metric("Mean queueing delay (ms)", ui.fmt_ms(e.queue_wait_s))
    c[2].metric("P(request waits)", ui.fmt_pct(e.queue_wait_prob))


def unstable(e: Any) -> None:
    """An open loop above saturation: no latencies (they grow without bound), say why."""
    lam = e.inputs["request_rate"]
    sat = e.saturation_request_rate_per_s
    st.error(
        f"**Unstable: {ui.fmt_num(lam, 'req/s')} offered, but this instance saturates at "
        f"{ui.fmt_num(sat, 'req/s')}** (utilisation {ui.fmt_pct(lam / sat) if sat > 0 else '∞'}). "
        "Requests arrive faster than they can be served, so the queue and every latency grow "
        "without bound: no TTFT, TPOT or batch to show. Lower the request rate below the "
        "saturation rate, or add GPUs (TP / PP), a smaller model or precision.")
    c = st.columns(3)
    c[0].metric("Offered rate (req/s)", ui.fmt_num(lam))
    c[1].metric("Saturation rate (req/s)", ui.fmt_num(sat))
    c[2].metric("Throughput at saturation (tok/s)", ui.fmt_num(e.output_tok_per_s))


def memory(e: Any, gpu: str) -> None:
    st.subheader("Memory fit (per GPU)")
    hbm = kvmodel.get_gpu(key=gpu).hbm_capacity_B
    c = st.columns(4)
    c[0].metric("HBM", ui.fmt_bytes(hbm))
    c[1].metric("Weights", ui.fmt_bytes(e.weights_B_per_gpu))
    c[2].metric("KV capacity (tokens)", ui.fmt_num(e.kv_capacity_tokens))
    c[3].metric("Largest batch that fits (sequences)", ui.fmt_num(e.max_batch))
    st.progress(float(min(max(e.weights_B_per_gpu / hbm, 0.0), 1.0)),
                text=f"weights use {100 * e.weights_B_per_gpu / hbm:.1f} % of HBM")


BREAKDOWN_UNITS = {"flops": "FLOP", "bytes": "B", "time_s": "ms", "intensity_flop_per_B": "FLOP/B",
                   "attained_flop_s": "FLOP/s"}


def breakdown_table(e: Any) -> pd.DataFrame:
    rows = []
    for phase, ops in e.breakdown.items():
        for op, d in ops.items():
            f, b, t = float(d["flops"]), float(d["bytes"]), float(d["time_s"])
            rows.append(dict(phase=phase, op=op, flops=f, bytes=b, time_s=t, bound=d["bound"],
                             intensity_flop_per_B=f / b if b > 0 else None,
                             attained_flop_s=f / t if t > 0 and f > 0 else None))
    return pd.DataFrame(rows)


def breakdown_chart(df: pd.DataFrame) -> go.Figure:
    fig = go.Figure([go.Bar(name=ph, x=g["op"], y=g["time_s"] * 1e3,
                            customdata=g["bound"], hovertemplate="%{x}: %{y:.3g} ms (%{customdata})")
                     for ph, g in df.groupby("phase", sort=False)])
    fig.update_layout(barmode="group", yaxis_title="time per step (ms)", height=360,
                      margin=dict(t=30, b=10), legend_title="phase")
    return fig


def roof_precision(gpu: str, precision: str) -> str | None:
    """The GEMM precision the compute roof is drawn in for weights stored in ``precision``:
    weight-only formats (int4, mxfp4, nvfp4) in their native fp4 where the GPU has it, else
    dequantised to bf16 (as the estimate computes them); None without a peak for it."""
    g = kvmodel.get_gpu(key=gpu)
    p = compute_precision(g=g, p=precision)
    return p if p in g.peak_flops else None


def roofline_chart(df: pd.DataFrame, gpu: str, precision: str) -> go.Figure | None:
    g = kvmodel.get_gpu(key=gpu)
    cp = roof_precision(gpu, precision)
    if cp is None:
        return None
    compute = g.peak_flops[cp] * g.matmul_eff.get(cp, 1.0)
    roof = cp if cp == precision else f"{cp} (GEMMs on {precision} weights)"
    bw = g.hbm_bw_Bps * g.hbm_eff
    pts = df.dropna(subset=["intensity_flop_per_B", "attained_flop_s"])
    ridge = compute / bw
    lo = min([ridge] + pts["intensity_flop_per_B"].tolist()) / 10
    hi = max([ridge] + pts["intensity_flop_per_B"].tolist()) * 10
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo, ridge], y=[lo * bw, compute], mode="lines", name=(
        f"HBM roof {bw / 1e12:.3g} TB/s (peak × measured eff.)"), line=dict(color="gray")))
    fig.add_trace(go.Scatter(x=[ridge, hi], y=[compute, compute], mode="lines", name=(
        f"{roof} compute roof {compute / 1e12:.4g} TFLOP/s (peak × measured eff.)"),
        line=dict(color="black")))
    # one legend entry per op (symbol) and phase (colour): text labels of ops with nearby
    # intensities overlapped, a legend entry cannot
    ops = list(dict.fromkeys(pts["op"]))
    colours = {"prefill": "#1f77b4", "decode": "#d62728"}
    for (ph, op), grp in pts.groupby(["phase", "op"], sort=False):
        fig.add_trace(go.Scatter(
            x=grp["intensity_flop_per_B"], y=grp["attained_flop_s"], mode="markers",
            name=f"{op} ({ph})", legendgroup=ph, legendgrouptitle_text=f"{ph} ops",
            hovertemplate=f"{op} ({ph})" + ": %{x:.3g} FLOP/B, %{y:.3g} FLOP/s<extra></extra>",
            marker=dict(size=11, symbol=OP_SYMBOLS[ops.index(op) % len(OP_SYMBOLS)],
                        color=colours.get(ph, "#2ca02c"), line=dict(width=1, color="white"))))
    fig.update_xaxes(type="log", title="arithmetic intensity (FLOP/byte)")
    fig.update_yaxes(type="log", title="attained FLOP/s (FLOPs / op time)")
    fig.update_layout(height=520, margin=dict(t=30, b=10), legend=dict(groupclick="toggleitem"))
    return fig


def main() -> None:
    st.title("Estimate")
    st.caption("One serving instance (`kvmodel.estimate`): latency, throughput, per-operator "
               "roofline breakdown and memory fit.")
    kw = inputs()
    e, err = ui.guarded(kvmodel.estimate, **kw)  # ~0.1 ms: no cache needed
    if err:
        st.error(f"Cannot estimate this configuration — {err}")
        return
    if not e.feasible:
        st.error(f"Infeasible: {e.reason}")
        memory(e, kw["gpu"])
        return
    headline(e)
    memory(e, kw["gpu"])
    df = breakdown_table(e)
    st.subheader("Per-operator breakdown (one step of each phase)")
    ui.show_chart(breakdown_chart(df), "breakdown", "breakdown")
    ui.show_table(df, "breakdown", "breakdown", units=BREAKDOWN_UNITS)  # full width: no cut-off
    st.subheader("Roofline")
    fig = roofline_chart(df, kw["gpu"], kw["precision"])
    if fig is None:
        st.info(f"No {kw['precision']} peak on {kw['gpu']}: no roofline to draw.")
    else:
        ui.show_chart(fig, "roofline", "roofline")
        st.caption("Points: FLOPs of each op divided by its modelled time (which includes kernel "
                   "launch latency and the calibrated serving efficiency factors), so ops sit "
                   "below the roofs.")


main()
