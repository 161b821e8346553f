"""Cluster: KV sharing architectures and routing policies side by side, and one-knob sweeps."""

from __future__ import annotations

import dataclasses
from typing import Any

import _common as ui
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

import kvmodel
from kvmodel.catalog.models import BYTES_PER_ELEMENT
from kvmodel.policies import ROUTING, SHARING

GB = 1e9  # display unit
# bounded affinity's slack is a fraction above the mean load: beyond instances - 1 it bounds nothing
MAX_EPSILON = float(ui.MAX_INSTANCES)
NETWORK_FAMILIES = ("infiniband", "roce", "ethernet", "tcp")
METRICS = {  # result column -> (chart label with its unit, factor from the SI value)
    "ttft_s": ("TTFT mean (ms)", 1e3), "ttft_p50_s": ("TTFT p50 (ms)", 1e3),
    "ttft_p99_s": ("TTFT p99 (ms)", 1e3), "goodput_per_s": ("goodput (req/s)", 1.0),
    "cost_usd_per_mtok": ("cost ($ / Mtok)", 1.0),
}
RESULTS = ("ttft_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_s", "tpot_p99_s",
           "goodput_per_s", "output_tok_per_s", "cost_usd_per_h", "cost_usd_per_mtok", "imbalance")
UNITS = {"ttft_s": "ms", "ttft_p50_s": "ms", "ttft_p90_s": "ms", "ttft_p99_s": "ms",
         "tpot_s": "ms", "tpot_p99_s": "ms", "goodput_per_s": "req/s", "output_tok_per_s": "tok/s",
         "cost_usd_per_h": "$/h", "cost_usd_per_mtok": "$/Mtok", "hit_ratio": "%", "dram_B": "B"}


def label(col: str) -> str:
    return METRICS[col][0]


def _field_default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


# starting request rate per built-in trace (else the trace's own rate): the Mooncake conversation
# trace arrives at 3.4 req/s, light for 4 instances; at 10 req/s round robin without sharing
# is ~50 % slower at p99 than sharing or affinity routing (llama-3.1-8b, 4 x H100)
DEFAULT_RATE = {"mooncake-conversation": 10.0}


def reuse_ceiling_note(w: Any, df: pd.DataFrame) -> None:
    """Say so when every configuration already reaches the trace's maximum hit ratio (every
    repeated prefix block hits): sharing cannot add hits, only move where they are served."""
    tr = w.trace
    if tr.total_blocks == 0 or "hit_ratio" not in df or df["hit_ratio"].isna().any():
        return
    ceiling = 1.0 - tr.unique_blocks / tr.total_blocks
    if (pd.to_numeric(df["hit_ratio"]) >= ceiling - 0.005).all():
        st.info(f"All sharing modes reach the trace's maximum hit ratio {ceiling:.2f} (every "
                f"repeated prefix block hits); differences come from where hits are served, "
                f"load balance and cost, not from more hits.")


def workload_inputs() -> tuple[str, Any]:
    st.subheader("Workload")
    key, trace = ui.trace_picker("c_", allow_upload=True)
    if trace is None:
        return "", None
    own = kvmodel.Workload(trace=trace).rate
    start = DEFAULT_RATE.get(key, round(own, 3))
    c = st.columns(3)
    start = min(max(start, 1e-6), ui.MAX_RATE_PER_S)
    rate = ui.number("Request rate (req/s)", "c_req_rate", start, 1e-6, ui.MAX_RATE_PER_S, where=c[0],
                     format="%.3f", help=f"the trace's own rate is {own:.3g} req/s"
                     + (f"; the default {start:g} req/s loads the default cluster enough for "
                        "tiers, sharing and routing to matter" if key in DEFAULT_RATE else ""))
    slo = {k: float(_field_default(kvmodel.Workload, k)) for k in ("ttft_slo_s", "tpot_slo_s")}
    ttft = ui.number("TTFT SLO (s)", "c_ttft_slo", slo["ttft_slo_s"], 1e-6, ui.MAX_TIME_S, where=c[1],
                     format="%.3f")
    tpot = ui.number("TPOT SLO (s)", "c_tpot_slo", slo["tpot_slo_s"], 1e-6, ui.MAX_TIME_S, where=c[2],
                     format="%.3f")
    return key, ui.workload(key, trace, rate, ttft, tpot)


def network_links() -> list[str]:
    return [k for k in kvmodel.list_entries(section="link")
            if kvmodel.get_link(key=k).family in NETWORK_FAMILIES]


def cluster_inputs() -> dict[str, Any]:
    st.subheader("Cluster")
    c = st.columns(6)
    base = dict(
        model=ui.select("Model", ui.model_options(), "model", "llama-3.1-8b", where=c[0]),
        gpu=ui.select("GPU", ui.gpu_options(), "gpu", "h100-sxm", where=c[1]),
        precision=ui.select("Precision", list(BYTES_PER_ELEMENT), "precision", "fp8", where=c[2]),
        instances=ui.number("Instances", "instances", 4, 1, ui.MAX_INSTANCES, where=c[3]),
        tp=ui.number("TP", "tp", 1, 1, ui.MAX_TP, where=c[4]),
        epsilon=ui.number("Balance ε", "epsilon", float(_field_default(kvmodel.Cluster, "epsilon")),
                          0.0, MAX_EPSILON, where=c[5], help="bounded prefix affinity slack"),
    )
    c = st.columns(4)
    dram = ui.number("DRAM per instance (GB, 0 = node share)", "dram_gb", 0.0, 0.0,
                     ui.MAX_CAPACITY_GB, where=c[0])
    if dram > 0:
        base["dram_B"] = dram * GB
    nic = ui.select("NIC link", ["node default"] + network_links(), "nic", "node default", where=c[1])
    if nic != "node default":
        base["nic"] = nic
    base["hbm_cache_fraction"] = ui.number(
        "HBM share kept as prefix cache", "hbm_frac",
        float(_field_default(kvmodel.Cluster, "hbm_cache_fraction")), 0.0, 0.99, where=c[2])
    base["connector"] = ui.connector_select("connector", where=c[3])
    return base


@st.cache_data(show_spinner="Evaluating clusters…", max_entries=256)
def evaluate(wkey: str, _w: Any, rate: float, slos: tuple[float, float],
             cfg: tuple[tuple[str, Any], ...], catalog_key: int) -> dict[str, Any]:
    """One row of results (or the error message) for a cluster configuration."""
    c, err = ui.guarded(kvmodel.Cluster, **dict(cfg))
    r, err = (None, err) if err else ui.guarded(kvmodel.evaluate, c=c, w=_w)
    if err:
        return dict(cfg, stable=False, reason=err)
    d = r.to_dict()
    row = dict(cfg)
    row.update({k: d[k] for k in RESULTS + ("stable", "reason")})
    row["hit_ratio"] = sum(d["hit_ratio"].values())
    row.update({f"hit_{k}": v for k, v in d["hit_ratio"].items()})
    return row


def run_grid(wkey: str, w: Any, configs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per configuration; every result column present (missing where a configuration
    is infeasible or failed: its ``reason`` says why)."""
    rows = [evaluate(wkey, w, w.rate, (w.ttft_slo_s, w.tpot_slo_s), tuple(sorted(cfg.items())),
                     ui.catalog_key())
            for cfg in configs]
    df = pd.DataFrame(rows)
    for col in RESULTS + ("hit_ratio",):
        if col not in df:
            df[col] = float("nan")
    df["reason"] = df["reason"].fillna("")
    for col in METRICS:
        if col in df:
            df[col] = df[col].map(ui.finite)
    return df


def compare_section(wkey: str, w: Any, base: dict[str, Any]) -> None:
    st.header("Sharing × routing")
    c = st.columns([3, 1])
    sharing = ui.multiselect("Sharing", list(SHARING), "sharing", list(SHARING), where=c[0])
    metric = ui.select("Chart metric", list(METRICS), "c_metric", "ttft_p99_s", where=c[1],
                       format_func=label)
    # full width: three or more policy chips never hide behind the widget's edge
    routing = ui.multiselect("Routing", list(ROUTING), "routing",
                             ["round_robin", "least_loaded", "prefix_affinity_bounded"])
    closed_form_note(routing)
    if not sharing or not routing:
        st.info("Pick at least one sharing architecture and one routing policy.")
        return
    df = run_grid(wkey, w, [dict(base, sharing=s, routing=r) for s in sharing for r in routing])
    unstable_warning(df)
    reuse_ceiling_note(w, df)
    scale = METRICS[metric][1]
    if not has_values(df, [metric]):
        st.info(f"No configuration has a finite {label(metric)}: no chart to draw.")
    else:
        compare_chart(df, metric, scale)
    cols = ["sharing", "routing", "ttft_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_s",
            "goodput_per_s",
            "cost_usd_per_mtok", "hit_ratio", "imbalance", "stable", "reason"]
    ui.show_table(df[[c for c in cols if c in df]], "cluster_compare", "compare", units=UNITS,
                  wide=["reason"])


def closed_form_note(routings: list[str]) -> None:
    """Say which routings the closed form evaluates as another one (same numbers)."""
    merged = [f"{r} → {ROUTING[r].closed_form}" for r in routings
              if r in ROUTING and ROUTING[r].closed_form != r]
    if merged:
        st.caption("Evaluated in closed form as: " + ", ".join(merged) + " (their own rules "
                   "run only in the simulator, `kvmodel.sim`).")


def has_values(df: pd.DataFrame, cols: list[str]) -> bool:
    """Whether any of ``cols`` holds a finite number (else a chart would be empty)."""
    return bool(pd.DataFrame({c: pd.to_numeric(df[c]) for c in cols}).notna().to_numpy().any())


def compare_chart(df: pd.DataFrame, metric: str, scale: float) -> None:
    fig = go.Figure([go.Bar(name=s, x=g["routing"], y=pd.to_numeric(g[metric]) * scale)
                     for s, g in df.groupby("sharing", sort=False)])
    fig.update_layout(barmode="group", yaxis_title=label(metric), height=380,
                      margin=dict(t=30, b=10), legend_title="sharing")
    ui.show_chart(fig, "cluster_compare", "compare")


def unstable_warning(df: pd.DataFrame) -> None:
    """One message for every unstable or failed configuration (grouped by reason)."""
    bad = df[~df["stable"].astype(bool)]
    if bad.empty:
        return
    lines = []
    for reason, g in bad.groupby("reason", sort=False):
        cases = ", ".join(f"{r['sharing']} / {r['routing']}" + (
            f" @ {r['value']}" if "value" in g else "") for _, r in g.iterrows())
        lines.append(f"- {reason or 'unstable'}: {cases}")
    st.warning(f"{len(bad)} of {len(df)} configurations have no finite latency (shown as ∞ / "
               "missing below):\n" + "\n".join(lines))


def sweep_values(knob: str) -> list[Any]:
    if knob == "instances":
        return [int(v) for v in ui.int_list("Instances (comma-separated)", "sw_inst", "1,2,4,8,16",
                                            minimum=1, maximum=ui.MAX_INSTANCES)]
    if knob == "network":
        return ui.multiselect("NIC links", network_links(), "sw_nic",
                              ["roce-100g", "roce-200g", "roce-400g", "roce-800g"])
    return ui.int_list("DRAM per instance (GB)", "sw_dram", "50,100,200,500,1000", minimum=0,
                       maximum=ui.MAX_CAPACITY_GB)


def sweep_section(wkey: str, w: Any, base: dict[str, Any]) -> None:
    st.header("Sweep one knob")
    c = st.columns(2)
    knob = ui.radio("Knob", ["instances", "network", "DRAM"], "knob", "instances", where=c[0])
    routing = ui.select("Routing", list(ROUTING), "sw_routing",
                        "prefix_affinity_bounded", where=c[1])
    closed_form_note([routing])
    values = sweep_values(knob)
    if not values:
        st.info("Give at least one value to sweep.")
        return
    field = {"instances": "instances", "network": "nic", "DRAM": "dram_B"}[knob]
    scale = GB if knob == "DRAM" else 1
    configs = [dict(base, routing=routing, sharing=s, **{field: v * scale if knob == "DRAM" else v})
               for s in SHARING for v in values]
    df = run_grid(wkey, w, configs)
    df["value"] = [v for _ in SHARING for v in values]
    unstable_warning(df)
    if has_values(df, list(METRICS)):
        ui.show_chart(sweep_chart(df, knob), f"sweep_{knob}", "sweep")
    ui.show_table(df, f"sweep_{knob}", "sweep", wide=["reason"],
                  units=UNITS | {c: "%" for c in df.columns if c.startswith("hit_")})
    if knob == "DRAM":
        st.caption("DRAM values in GB (1 GB = 1e9 B).")


def sweep_chart(df: pd.DataFrame, knob: str) -> go.Figure:
    rows = (len(METRICS) + 1) // 2
    fig = make_subplots(rows=rows, cols=2, subplot_titles=[label(c) for c in METRICS])
    for i, (col, (_, scale)) in enumerate(METRICS.items()):
        for j, (s, g) in enumerate(df.groupby("sharing", sort=False)):
            fig.add_trace(go.Scatter(x=g["value"], y=pd.to_numeric(g[col]) * scale, name=s,
                                     legendgroup=s,
                                     showlegend=i == 0, mode="lines+markers",
                                     line=dict(color=f"hsl({120 * j},60%,40%)",
                                               dash=("solid", "dash", "dot")[j % 3]),
                                     marker=dict(symbol=("circle", "square", "diamond")[j % 3],
                                                 size=8 - 2 * (j % 3))),
                          row=i // 2 + 1, col=i % 2 + 1)
    fig.update_xaxes(title_text={"instances": "instances", "network": "NIC link",
                                 "DRAM": "DRAM per instance (GB)"}[knob])
    fig.update_yaxes(rangemode="tozero")  # a 0.1 ms wobble must not look like a trend
    fig.update_layout(height=280 * rows, margin=dict(t=40, b=10))
    return fig


def main() -> None:
    st.title("Cluster")
    st.caption("`kvmodel.evaluate`: N instances sharing KV through local tiers only, a central "
               "pool or peer to peer, under a routing policy; latency, goodput under SLOs, $/Mtok. "
               "TTFT is reported as mean, p50, p90 and p99.")
    wkey, w = workload_inputs()
    if w is None:
        return
    base = cluster_inputs()
    compare_section(wkey, w, base)
    sweep_section(wkey, w, base)


main()
