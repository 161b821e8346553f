"""Validation: model vs published serving measurements (calibration and held-out sets)."""

from __future__ import annotations

import _common as ui
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

SETS = {"calibration": "calibration (the global parameters are fitted on it)",
        "held-out": "held-out (GPUs and frameworks the fit never sees)"}
GROUPS = ["gpu", "metric", "source", "framework", "regime", "model"]


def load(which: list[str]) -> pd.DataFrame:
    frames = []
    for w in which:
        rows, total, skipped = ui.validation_rows(w)
        st.caption(f"**{w}**: {len(rows)} of {total} rows predicted"
                   + ("; skipped: " + "; ".join(f"{n}× {why}" for why, n in skipped.items())
                      if skipped else ""))
        frames.append(pd.DataFrame(rows).assign(set=w))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def scatter(df: pd.DataFrame, color: str) -> go.Figure:
    lo = float(min(df["predicted"].min(), df["measured"].min())) / 1.5
    hi = float(max(df["predicted"].max(), df["measured"].max())) * 1.5
    fig = go.Figure(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = measured",
                               line=dict(color="gray", dash="dash")))
    for name, g in df.groupby(color, sort=True):
        fig.add_trace(go.Scatter(
            x=g["measured"], y=g["predicted"], mode="markers", name=str(name)[:40],
            customdata=np.stack([g["metric"], g["model"], g["gpu"], g["source"],
                                 100 * g["ape"]], axis=-1),
            hovertemplate="%{customdata[0]} %{customdata[1]} on %{customdata[2]}<br>"
                          "measured %{x:.4g}, predicted %{y:.4g} (%{customdata[4]:.1f} %)<br>"
                          "%{customdata[3]}<extra></extra>"))
    fig.update_xaxes(type="log", title="measured (SI: s or tokens/s)")
    fig.update_yaxes(type="log", title="predicted")
    fig.update_layout(height=520, margin=dict(t=30, b=10), legend_title=color)
    return fig


def error_table(df: pd.DataFrame, by: str) -> pd.DataFrame:
    g = df.groupby(["set", by])["ape"]
    out = pd.DataFrame({"n": g.size(), "median_ape_pct": 100 * g.median(),
                        "mean_ape_pct": 100 * g.mean()}).reset_index()
    return out.sort_values(["set", "median_ape_pct"])


def error_chart(t: pd.DataFrame, by: str) -> go.Figure:
    fig = go.Figure([go.Bar(name=s, x=g[by].astype(str).str[:40], y=g["median_ape_pct"],
                            customdata=g["n"], hovertemplate="%{x}: %{y:.1f} % (n=%{customdata})")
                     for s, g in t.groupby("set", sort=False)])
    fig.update_layout(barmode="group", yaxis_title="median absolute % error", height=380,
                      margin=dict(t=30, b=10))
    return fig


def main() -> None:
    st.title("Validation")
    st.caption("`kvmodel.validate()` over published serving measurements: every row with its "
               "source; absolute percentage error (APE) of the prediction.")
    c = st.columns([2, 1, 1])
    which = ui.multiselect("Data sets", list(SETS), "sets", list(SETS), where=c[0],
                           format_func=SETS.get)
    color = ui.select("Colour by", GROUPS, "color", "gpu", where=c[1])
    by = ui.select("Error by", GROUPS, "by", "gpu", where=c[2])
    if not which:
        st.info("Pick at least one data set.")
        return
    df = load(which)
    if df.empty:
        st.warning("No predicted rows.")
        return
    c = st.columns(len(which))
    for col, (s, g) in zip(c, df.groupby("set", sort=False)):
        col.metric(f"{s}: median APE", f"{100 * g['ape'].median():.1f} %",
                   help=f"mean {100 * g['ape'].mean():.1f} % over {len(g)} rows")
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Predicted vs measured")
        ui.show_chart(scatter(df, color), "validation_scatter", "scatter")
    with right:
        st.subheader(f"Error by {by}")
        t = error_table(df, by)
        ui.show_chart(error_chart(t, by), f"error_by_{by}", "errors")
        ui.show_table(t.rename(columns={"median_ape_pct": "median APE (%)",
                                        "mean_ape_pct": "mean APE (%)"}), f"error_by_{by}", "errors")
    st.subheader("All rows")
    cols = ["set", "id", "metric", "gpu", "model", "framework", "regime", "predicted", "measured",
            "ape", "source"]
    ui.show_table(df[cols], "validation_rows", "rows", units={"ape": "%"}, wide=["source"])


main()
