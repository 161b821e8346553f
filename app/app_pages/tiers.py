"""Tiers & reuse: hit ratio vs capacity split over tiers, TTFT vs cached prefix, break-even."""

from __future__ import annotations

import dataclasses
from typing import Any

import _common as ui
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import kvmodel
from kvmodel.catalog.hardware import raw_entry
from kvmodel.catalog.models import BYTES_PER_ELEMENT
from kvmodel.instance.breakeven import recompute_coefficients

GB = 1e9  # display unit (SI, as everywhere in kvmodel)
DASHES = ["dot", "dash", "dashdot", "longdash", "longdashdot"]  # tiers stay apart where they overlap
MARKERS = ["circle-open", "square-open", "diamond-open", "triangle-up-open", "x"]


# ---- shared inputs -------------------------------------------------------------------------------
def node_inputs() -> dict[str, Any]:
    c = st.columns(3)
    model = ui.select("Model", ui.model_options(), "model", "llama-3.1-70b", where=c[0])
    node = ui.select("Node template", kvmodel.list_entries(section="node"), "node", "dgx-h100", where=c[1])
    precision = ui.select("Precision (weights)", list(BYTES_PER_ELEMENT), "precision", "fp8",
                          where=c[2])
    n = kvmodel.get_node(key=node)
    base, err = ui.guarded(kvmodel.estimate, model=model, gpu=n.gpu, tp=n.gpus_per_node, precision=precision)
    if err or not base.feasible:
        st.error(f"{model} on {n.gpus_per_node}× {n.gpu} ({precision}): "
                 f"{err or base.reason}")
        st.stop()
    kvp = base.inputs["kv_precision"]
    st.caption(f"{n.name}: {n.gpus_per_node}× {n.gpu}, TP{n.gpus_per_node}; KV cache {kvp}, "
               f"{base.kv_B_per_token:,.0f} B/token; KV pool "
               f"{ui.fmt_bytes(base.kv_capacity_tokens * base.kv_B_per_token)}")
    return dict(model=model, node=node, gpu=n.gpu, num_gpus=n.gpus_per_node, precision=precision,
                kv_precision=kvp, kv_B_per_token=base.kv_B_per_token,
                kv_pool_B=base.kv_capacity_tokens * base.kv_B_per_token)


def tier_inputs(cfg: dict[str, Any]) -> dict[str, Any]:
    default_tiers = kvmodel.node_tiers(node=cfg["node"])
    hbm_share = next(f.default for f in dataclasses.fields(kvmodel.Cluster)
                     if f.name == "hbm_cache_fraction")
    st.markdown("**Tier capacities** (whole node; defaults from the node template)")
    c = st.columns(5)
    top = ui.MAX_CAPACITY_GB
    hbm = ui.number("HBM prefix cache (GB)", "hbm_gb", round(cfg["kv_pool_B"] * hbm_share / GB, 1),
                    0.0, top, where=c[0], help="part of the KV pool kept for cached prefixes")
    dram = ui.number("Host DRAM (GB)", "dram_gb", round(default_tiers["dram"].capacity_B / GB, 1),
                     0.0, top, where=c[1])
    cxl = ui.number("CXL memory (GB)", "cxl_gb", 0.0, 0.0, top, where=c[2])
    ssd = ui.number("NVMe SSD (GB)", "ssd_gb", round(default_tiers["ssd"].capacity_B / GB, 1),
                    0.0, top, where=c[3])
    remote = ui.number("Remote memory (GB)", "remote_gb", 0.0, 0.0, top, where=c[4])
    tiers, err = ui.guarded(kvmodel.node_tiers, node=cfg["node"], dram_B=dram * GB, cxl_B=cxl * GB,
                            ssd_B=ssd * GB, remote_B=remote * GB)
    if err:
        st.error(f"Tiers: {err}")
        st.stop()
    tiers["hbm"] = dataclasses.replace(tiers["hbm"], capacity_B=hbm * GB)
    return {k: t for k, t in tiers.items() if t.capacity_B > 0}


# ---- hit ratio vs capacity -----------------------------------------------------------------------
@st.cache_data(show_spinner="Splitting hits across tiers…", max_entries=32)
def placement(trace_key: str, _trace: Any, _tiers: list[Any], tier_key: tuple, block_B: float,
              block_rate: float, inclusive: bool, method: str,
              catalog_key: int) -> tuple[list[dict], float, list[int]]:
    p = kvmodel.place(trace=_trace, tiers=_tiers, block_bytes=block_B, block_rate=block_rate,
                      inclusive=inclusive, method=method)
    edges = np.asarray(p.capacity_blocks if inclusive else np.cumsum(p.capacity_blocks))
    return p.table(), p.miss_fraction, edges.astype(int).tolist()


def hit_ratio_section(cfg: dict[str, Any], tiers: dict[str, Any]) -> None:
    st.header("Hit ratio vs capacity")
    key, trace = ui.trace_picker("t_")
    if trace is None:
        return
    c = st.columns(3)
    method = ui.radio("Method", ["exact", "analytic"], "method", "exact", where=c[0],
                      help="exact: one-pass stack distances over the trace; analytic: TTL/Che "
                           "approximation on its reuse profile")
    points = ui.number("Curve points", "points", 60, 5, 400, where=c[1])
    inclusive = ui.checkbox("Inclusive tiers", "inclusive", False, where=c[2])
    top = ui.unique_blocks(key, trace)
    caps = tuple(np.unique(np.linspace(0, top, points).astype(np.int64)).tolist())
    curve = ui.hit_curve(key, trace, caps, method)
    block_B = trace.block_tokens * cfg["kv_B_per_token"]
    block_rate = kvmodel.Workload(trace=trace).rate * float(np.mean(trace.blocks_per_request))
    order = [k for k in ("hbm", "dram", "cxl", "ssd", "remote") if k in tiers]
    tier_key = (cfg["node"],) + tuple((k, tiers[k].capacity_B) for k in order)
    if order:
        table, miss, edges = placement(key, trace, [tiers[k] for k in order], tier_key, block_B,
                                       block_rate, inclusive, method, ui.catalog_key())
    else:  # every capacity 0: an empty cache, every block a miss
        table, miss, edges = [], 1.0, []
        st.info("Every tier capacity is 0: the cache is empty and every prefix block is "
                "recomputed.")
    df = pd.DataFrame({"capacity_blocks": caps, "capacity_GB": np.asarray(caps) * block_B / GB,
                       "hit_ratio": curve})
    fig = go.Figure(go.Scatter(x=df["capacity_GB"], y=df["hit_ratio"], mode="lines",
                               name=f"{method} hit ratio", customdata=df["capacity_blocks"],
                               hovertemplate="%{x:.4g} GB (%{customdata} blocks): %{y:.3f}"))
    for tier, edge in zip(order, edges):
        if 0 < edge <= caps[-1]:
            fig.add_trace(go.Scatter(x=[edge * block_B / GB] * 2, y=[0, 1], mode="lines",
                                     name=f"{tier} edge", line=dict(dash="dot")))
    fig.update_layout(xaxis_title=f"KV capacity (GB of {cfg['model']} {cfg['kv_precision']} KV)",
                      yaxis_title="block hit ratio", height=380, margin=dict(t=30, b=10))
    left, right = st.columns([3, 2])
    with left:
        ui.show_chart(fig, "hit_ratio_vs_capacity", "hit")
        ui.download_table(df, "hit_ratio_vs_capacity", "hit")
    with right:
        st.markdown(f"**Hits by tier** ({'inclusive' if inclusive else 'exclusive'}, "
                    f"{trace.block_tokens}-token blocks of {ui.fmt_bytes(block_B)})")
        tdf = pd.DataFrame(table + [dict(tier="miss (recompute)", hit_fraction=miss)])
        ui.show_table(tdf, "hits_by_tier", "tiers",
                      units={"hit_fraction": "%", "utilisation": "%"})
        st.metric("Total hit ratio", f"{1 - miss:.3f}")


# ---- TTFT vs cached prefix -----------------------------------------------------------------------
def ttft_section(cfg: dict[str, Any], tiers: dict[str, Any]) -> None:
    st.header("TTFT vs cached prefix length")
    c = st.columns(5)
    I = ui.number("Prompt tokens", "ttft_in", 8704, 2, ui.MAX_TOKENS, where=c[0], step=512)
    O = ui.number("Output tokens", "ttft_out", 64, 1, ui.MAX_TOKENS, where=c[1])
    policy = ui.select("Prefix policy", ["load", "best", "split"], "policy", "load", where=c[2],
                       help="load: always load the cached prefix; best/split: kvmodel's choice")
    n = ui.number("Points", "ttft_pts", 33, 2, 400, where=c[3])
    connector = ui.connector_select("ttft_connector", where=c[4])
    P = np.unique(np.linspace(0, I - 1, n).astype(np.int64))
    common = dict(tp=cfg["num_gpus"], precision=cfg["precision"], input_len=I, output_len=O)
    base, err = ui.guarded(kvmodel.estimate, model=cfg["model"], gpu=cfg["gpu"], **common)
    if err or not base.feasible:
        st.error(f"Cannot estimate: {err or base.reason}")
        return
    df = pd.DataFrame({"cached_prefix_len": P, "recompute_ttft_s": base.ttft_s})
    fig = go.Figure(go.Scatter(x=P, y=np.full(len(P), base.ttft_s * 1e3), name="recompute all",
                               line=dict(dash="dash", color="black")))
    # HBM first, as a wide pale band: the other tiers' dashed lines drawn over it stay visible
    # where they coincide with it, and HBM shows around them
    shown = sorted(tiers.items(), key=lambda kt: kt[0] != "hbm")
    for i, (kind, tier) in enumerate(shown):
        e, err = ui.guarded(kvmodel.estimate, model=cfg["model"], gpu=cfg["gpu"], cached_prefix_len=P,
                            cache_tier=tier, prefix_policy=policy, **common,
                            **ui.estimate_connector_kw(connector))
        if err:
            st.warning(f"{kind}: {err}")
            continue
        df[f"{kind}_ttft_s"] = ui.finite(e.ttft_s)
        hbm = kind == "hbm"
        fig.add_trace(go.Scatter(
            x=P, y=np.asarray(e.ttft_s) * 1e3, name=f"{kind}: {tier.device}",
            line=dict(dash="solid" if hbm else DASHES[i % len(DASHES)], width=9 if hbm else 2),
            opacity=0.45 if hbm else 1.0, mode="lines" if hbm else "lines+markers",
            marker=dict(symbol=MARKERS[i % len(MARKERS)], size=7)))
    fig.update_layout(xaxis_title="cached prefix (tokens)", yaxis_title="TTFT (ms)", height=400,
                      margin=dict(t=30, b=10))
    fig.update_yaxes(rangemode="tozero")
    ui.show_chart(fig, "ttft_vs_cached_prefix", "ttft")
    ui.download_table(df, "ttft_vs_cached_prefix", "ttft")


# ---- break-even ----------------------------------------------------------------------------------
@st.cache_data(show_spinner="Break-even bandwidth…", max_entries=64)
def break_even(model: str, gpu: str, n: int, P: tuple[int, ...], precision: str, kvp: str,
               ideal: bool, catalog_key: int) -> list[float]:
    return np.asarray(kvmodel.break_even_bandwidth(model=model, gpu=gpu, num_gpus=n, prefix_len=np.array(P),
                                                   precision=precision, kv_precision=kvp,
                                                   ideal=ideal), dtype=float).tolist()


def break_even_section(cfg: dict[str, Any], tiers: dict[str, Any]) -> None:
    st.header("Load vs recompute break-even")
    mpe = raw_entry(section="model", key=cfg["model"]).get("max_position_embeddings") or 131072
    c = st.columns(2)
    ideal = ui.checkbox("Mooncake Eq. 2 assumptions (peak FLOP/s, linear recompute)", "ideal",
                        False, where=c[0])
    top = ui.number("Longest prefix (tokens)", "be_max", int(min(mpe, ui.MAX_TOKENS)), 256,
                    ui.MAX_TOKENS, where=c[1])  # Llama 4 Scout: 10,485,760 positions
    P = tuple(np.unique(np.geomspace(128, top, 60).astype(np.int64)).tolist())
    lib = dict(model=cfg["model"], gpu=cfg["gpu"], num_gpus=cfg["num_gpus"],
               precision=cfg["precision"], kv_precision=cfg["kv_precision"], ideal=ideal)
    B, err = ui.guarded(break_even, n=lib["num_gpus"], P=P, kvp=lib["kv_precision"],
                        catalog_key=ui.catalog_key(),
                        **{k: lib[k] for k in ("model", "gpu", "precision", "ideal")})
    if err:
        st.error(f"Break-even: {err}")
        return
    fig = go.Figure(go.Scatter(x=P, y=np.asarray(B) / GB, name="B*(P): loading wins above",
                               line=dict(color="black", width=3)))
    rows = []
    for i, (kind, tier) in enumerate(tiers.items()):
        if tier.path is None:
            continue
        bw = float(tier.path.bandwidth_Bps()) * cfg["num_gpus"]
        pstar, perr = ui.guarded(kvmodel.break_even_context_len, bandwidth_Bps=bw, **lib)
        rows.append({"tier": kind, "path": tier.path.name, "node bandwidth": bw,
                     "loading wins beyond": perr or pstar_text(float(pstar))})
        fig.add_trace(go.Scatter(x=[P[0], P[-1]], y=[bw / GB] * 2, mode="lines",
                                 line=dict(dash=DASHES[i % len(DASHES)], width=2),
                                 name=f"{kind} {bw / GB:.3g} GB/s"))
    fig.update_xaxes(type="log", title="prefix length P (tokens)")
    fig.update_yaxes(type="log", title="aggregate load bandwidth (GB/s)")
    fig.update_layout(height=420, margin=dict(t=30, b=10))
    left, right = st.columns([3, 2])
    with left:
        ui.show_chart(fig, "break_even", "be")
        ui.download_table(pd.DataFrame({"prefix_len": P, "break_even_Bps": B}), "break_even", "be")
    with right:
        formulas(cfg, ideal)
    if rows:  # full width: the path column is long
        st.markdown("Per tier: loading beats recomputing for prefixes longer than")
        ui.show_table(pd.DataFrame(rows), "break_even_by_tier", "be_tiers",
                      units={"node bandwidth": "B/s"})


def pstar_text(pstar: float) -> str:
    """P* as the table shows it: tokens, or what an infinite / zero P* means."""
    if pstar == 0:
        return "0 tokens (always load)"
    return ui.fmt_num(pstar, "tokens") if np.isfinite(pstar) else "never (always recompute)"


def formulas(cfg: dict[str, Any], ideal: bool) -> None:
    tex = kvmodel.break_even_formulas()["latex"]
    st.latex(r"t_{\mathrm{rec}}(P) = " + tex["t_recompute"] + r",\quad t_{\mathrm{load}} = "
             + tex["t_load"])
    st.latex(r"B^*(P) = " + tex["B_star"])
    st.latex(r"P^* = " + tex["P_star"])
    coef, err = ui.guarded(recompute_coefficients, model=cfg["model"], gpu=cfg["gpu"],
                           num_gpus=cfg["num_gpus"], precision=cfg["precision"],
                           kv_precision=cfg["kv_precision"], ideal=ideal)
    if not err:
        c0, tau, alpha, k = coef
        st.caption(f"Fitted to the roofline: c₀ = {ui.fmt_time(c0)}, τ = {tau:.3e} s/token, "
                   f"α = {alpha:.3e} s/token², k = {k:,.0f} B/token")


def main() -> None:
    st.title("Tiers & reuse")
    st.caption("Where cached prefixes live (HBM, DRAM, CXL, SSD, remote), how often they hit, "
               "and whether loading them beats recomputing.")
    cfg = node_inputs()
    tiers = tier_inputs(cfg)
    hit_ratio_section(cfg, tiers)
    ttft_section(cfg, tiers)
    break_even_section(cfg, tiers)


main()
