"""Hardware: browse hardware_db with every number's source; describe and load a custom GPU."""

from __future__ import annotations

import json
import re
from typing import Any

import _common as ui
import pandas as pd
import streamlit as st

import kvmodel
from kvmodel.catalog.hardware import raw_entry

SECTIONS = ["gpu", "link", "memory", "node", "framework", "model", "calibration"]
KINDS = ["assumed", "datasheet", "measured"]  # the form starts as a what-if: assumed
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# ---- browse --------------------------------------------------------------------------------------
def _row(entry: str, field: str, v: Any, entry_source: str) -> dict[str, Any]:
    if isinstance(v, kvmodel.Quantity):
        return dict(entry=entry, field=field, value=v.value, unit=v.unit, kind=v.kind,
                    source=v.source, derivation=v.derivation, reason=v.reason,
                    note=v.note, date=v.date)
    if hasattr(v, "x_unit"):  # a sourced curve
        pts = ", ".join(f"{x:.3g}→{y:.3g}" for x, y in zip(v.x, v.y))
        return dict(entry=entry, field=field, value=f"curve: {pts}",
                    unit=f"{v.x_unit} → {v.y_unit}", kind=v.kind, source=v.source, note=v.note)
    if isinstance(v, (tuple, list)):
        v = ", ".join(map(str, v))
    return dict(entry=entry, field=field, value=str(v), unit="", kind="", source=entry_source)


def section_rows(section: str) -> list[dict[str, Any]]:
    rows = []
    for key in kvmodel.list_entries(section=section):
        e = raw_entry(section=section, key=key)
        src = e.get("source", "") if isinstance(e.get("source", ""), str) else ""
        for field, v in e.items():
            if field == "source" and isinstance(v, str):
                continue
            if isinstance(v, dict):
                rows += [_row(key, f"{field}.{k}", x, src) for k, x in v.items()]
            else:
                rows.append(_row(key, field, v, src))
    return rows


def browse() -> None:
    c = st.columns([3, 2])
    section = ui.radio("Section", SECTIONS, "section", "gpu", where=c[0])
    flt = ui.text("Filter (entry or field contains)", "filter", "", where=c[1])
    df = pd.DataFrame(section_rows(section))
    if flt:
        # plain text, not a regular expression: "[" or "(" are characters to find
        m = (df["entry"].str.contains(flt, case=False, regex=False)
             | df["field"].str.contains(flt, case=False, regex=False))
        df = df[m]
    df["value"] = df["value"].astype(str)
    st.caption(f"{df['entry'].nunique()} entries, {len(df)} values. kind: datasheet / measured / "
               "derived (with its arithmetic) / assumed (with its reason).")
    ui.show_table(df, f"hardware_{section}", "hw", height=480,
                  wide=["source", "derivation", "reason", "note"])


# ---- custom GPU ----------------------------------------------------------------------------------
def _q(value: float, unit: str, kind: str, source: str, reason: str) -> str:
    extra = f", reason = {json.dumps(reason)}" if kind == "assumed" else ""
    return (f"{{ value = {value!r}, unit = {json.dumps(unit)}, kind = {json.dumps(kind)}, "
            f"source = {json.dumps(source)}{extra} }}")


def gpu_toml(f: dict[str, Any]) -> str:
    """A hardware_db-format TOML entry from the form's fields (units as typed in the form)."""
    q = lambda v, u: _q(v, u, f["kind"], f["source"], f["reason"])  # noqa: E731
    eff = lambda v: _q(v, "1", "assumed", f["source"], f["eff_reason"])  # noqa: E731
    lines = [
        "schema_version = 1", f"[gpu.{f['key']}]", f"name = {json.dumps(f['name'])}",
        f"vendor = {json.dumps(f['vendor'])}", f"architecture = {json.dumps(f['architecture'])}",
        f"hbm_capacity = {q(f['hbm_GB'], 'GB')}", f"hbm_bandwidth = {q(f['hbm_TBps'], 'TB/s')}",
    ]
    lines += [f"peak_flops.{p} = {q(v, 'TFLOP/s')}" for p, v in f["peak"].items() if v > 0]
    lines += [
        f"matmul_efficiency = {eff(f['matmul_eff'])}", f"hbm_efficiency = {eff(f['hbm_eff'])}",
        f"scale_up_link = {json.dumps(f['scale_up_link'])}",
        f"scale_up_bandwidth = {q(f['scale_up_GBps'], 'GB/s')}",
        f"host_link = {json.dumps(f['host_link'])}",
        f"host_bandwidth = {q(f['host_GBps'], 'GB/s')}", f"tdp = {q(f['tdp_W'], 'W')}",
    ]
    return "\n".join(lines) + "\n"


def gpu_form(template: str) -> dict[str, Any] | None:
    g = kvmodel.get_gpu(key=template)
    links = kvmodel.list_entries(section="link")
    k = f"hwf_{template}_"
    with st.form(f"custom_gpu_{template}"):
        c = st.columns(4)
        f: dict[str, Any] = dict(
            key=c[0].text_input("Key", f"my-{template}", key=k + "key"),
            name=c[1].text_input("Name", f"Custom ({g.name})", key=k + "name"),
            vendor=c[2].selectbox("Vendor", ["nvidia", "amd"], index=int(g.vendor == "amd"),
                                  key=k + "vendor"),
            architecture=c[3].text_input("Architecture", g.architecture, key=k + "arch"))
        c = st.columns(4)
        f["hbm_GB"] = c[0].number_input("HBM capacity (GB)", 0.0, ui.MAX_CAPACITY_GB, g.hbm_capacity_B / 1e9,
                                        key=k + "hbm")
        f["hbm_TBps"] = c[1].number_input("HBM bandwidth (TB/s)", 0.0, ui.MAX_BANDWIDTH_GBPS / 1e3,
                                            g.hbm_bw_Bps / 1e12,
                                          key=k + "hbmbw")
        f["matmul_eff"] = c[2].number_input("Matmul efficiency", 0.0, 1.0,
                                            round(min(g.matmul_eff.values()), 3), key=k + "meff")
        f["hbm_eff"] = c[3].number_input("HBM efficiency", 0.0, 1.0, round(g.hbm_eff, 3),
                                         key=k + "beff")
        st.markdown("Dense peak TFLOP/s per precision (0 = not supported)")
        c = st.columns(len(g.peak_flops))
        f["peak"] = {p: c[i].number_input(p, 0.0, ui.MAX_TFLOPS, v / 1e12, key=k + "pk_" + p)
                     for i, (p, v) in enumerate(g.peak_flops.items())}
        c = st.columns(5)
        f["scale_up_link"] = c[0].selectbox("Scale-up link", links, links.index(g.scale_up_link),
                                            key=k + "sul")
        f["scale_up_GBps"] = c[1].number_input("Scale-up GB/s", 0.0, ui.MAX_BANDWIDTH_GBPS,
                                                 g.scale_up_bw_Bps / 1e9,
                                               key=k + "sub")
        f["host_link"] = c[2].selectbox("Host link", links, links.index(g.host_link), key=k + "hl")
        f["host_GBps"] = c[3].number_input("Host GB/s", 0.0, ui.MAX_BANDWIDTH_GBPS, g.host_bw_Bps / 1e9,
                                             key=k + "hb")
        f["tdp_W"] = c[4].number_input("TDP (W)", 0.0, ui.MAX_TDP_W, g.tdp_W, key=k + "tdp")
        c = st.columns(4)
        f["kind"] = c[0].selectbox("Kind of these numbers", KINDS, key=k + "kind")
        f["source"] = c[1].text_input("Source", "my own numbers", key=k + "src",
                                      help="e.g. vendor datasheet, table 1")
        f["reason"] = c[2].text_input("Reason (if assumed)", f"what-if variant of {template}",
                                      key=k + "reason")
        f["eff_reason"] = c[3].text_input("Why these efficiencies", f"like {template}",
                                          key=k + "effr")
        submitted = st.form_submit_button("Validate and load")
    return f if submitted else None


def load_custom(toml_text: str) -> None:
    keys, err = ui.register_hardware(toml_text)
    if err:
        st.error(f"kvmodel rejected the file (nothing was loaded): {err}")
        return
    hw = [h for h in st.session_state.get(ui.CUSTOM_HW, []) if not set(h["keys"]) & set(keys)]
    st.session_state[ui.CUSTOM_HW] = hw + [{"toml": toml_text, "keys": keys}]
    st.success(f"Loaded {', '.join(keys)} — now selectable on the other pages.")


def custom() -> None:
    st.header("Your own GPU")
    st.caption("Describe a GPU; it is written as a hardware_db TOML file, validated by "
               "`kvmodel.Catalog.with_file` and added to this browser session's catalog "
               "(other sessions do not see it).")
    template = ui.select("Start from", kvmodel.list_entries(section="gpu"), "template", "h100-sxm")
    f = gpu_form(template)
    if f is not None:
        if not KEY_RE.match(f["key"]):
            st.error(f"Key {f['key']!r}: use lower-case letters, digits, '-' and '_'")
        elif not f["source"].strip():
            st.error("Source: every number needs a source (e.g. the vendor datasheet).")
        elif f["kind"] == "assumed" and not f["reason"].strip():
            st.error("Reason: numbers of kind 'assumed' need a reason (e.g. 'what-if study').")
        else:
            text = gpu_toml(f)
            load_custom(text)
            with st.expander("Generated TOML"):
                st.code(text, language="toml")
    with st.expander("…or paste any hardware_db TOML (GPUs, links, memory, nodes)"):
        pasted = st.text_area("TOML", key="hw_paste", height=200)
        if st.button("Validate and load TOML", key="hw_paste_go") and pasted.strip():
            load_custom(pasted)
    loaded = st.session_state.get(ui.CUSTOM_HW, [])
    if loaded:
        st.info("Custom entries in this session: "
                + ", ".join(k for h in loaded for k in h["keys"]))


def main() -> None:
    st.title("Hardware")
    ui.ensure_custom_hardware()
    browse()
    custom()


main()
