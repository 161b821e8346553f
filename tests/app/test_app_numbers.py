"""The app's displayed numbers equal the library's (issue "A new user's first hour", section 2).

Every headline number (st.metric values, key table cells) of each page is recomputed here by
calling ``kvmodel`` directly with the same inputs and formatted with the app's own formatters,
so a swapped argument, a wrong mode string or a unit slip in the app fails a test. Also: every
library call in app/ passes its arguments by keyword, and ``kvmodel app`` builds a command line
that keeps Streamlit off the internet.
"""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import pytest

import kvmodel

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
ENTRY = APP / "streamlit_app.py"
sys.path.insert(0, str(APP))
import _common as ui  # noqa: E402  (the app's own formatters: compare like with like)

TIMEOUT = 60
M70 = dict(model="llama-3.1-70b", gpu="h100-sxm", tp=8, precision="fp8", input_len=2048,
           output_len=128)


def page(name: str, **params: str) -> AppTest:
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.switch_page(f"app_pages/{name}.py")
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


# ---- formatters (hand-checked values) ------------------------------------------------------------
def test_formatters_units_and_missing_cells():
    assert ui.fmt_ms(0.0188) == "18.8 ms" and ui.fmt_ms(2.4712) == "2,471 ms"
    assert ui.fmt_ms(math.inf) == "∞" and ui.fmt_ms(None) == ui.MISSING == "—"
    assert ui.fmt_money(30.372) == "$30.37" and ui.fmt_money(0.01234, "Mtok") == "$0.0123 / Mtok"
    assert ui.fmt_money(12345.6, "h") == "$12,346 / h"
    assert ui.fmt_si(1.029e15, "FLOP/s") == "1.03 PFLOP/s" and ui.fmt_si(512, "FLOP") == "512 FLOP"
    assert ui.fmt_cell(float("nan")) == "—" and ui.fmt_cell("") == "—" and ui.fmt_cell(True) == "True"
    assert ui.fmt_cell(3406906836850.0757, "B") == "3.41 TB"  # no raw floats in a table
    assert ui.fmt_cell(0.25, "%") == "25.0 %"


# ---- Estimate ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,params,lib", [
    ("batch N", {"n": "4"}, {"batch": 4}),
    ("max (continuous batching)", {}, {"batch": "max"}),
    ("concurrency N", {"clients": "16"}, {"concurrency": 16}),
])
def test_estimate_headline_equals_library(mode, params, lib):
    at = page("estimate", mode=mode, **params)
    e = kvmodel.estimate(**M70, **lib)
    m = metrics(at)
    assert m["TTFT (ms)"] == ui.fmt_ms(e.ttft_s) and m["TPOT (ms)"] == ui.fmt_ms(e.tpot_s)
    assert m["E2E (s)"] == ui.fmt_time(e.e2e_s)
    assert m["Output (tok/s)"] == ui.fmt_num(e.output_tok_per_s)
    assert m["Batch (sequences)"] == ui.fmt_num(e.batch)
    assert m["HBM"] == ui.fmt_bytes(kvmodel.get_gpu(key="h100-sxm").hbm_capacity_B)
    assert m["Weights"] == ui.fmt_bytes(e.weights_B_per_gpu)
    assert m["KV capacity (tokens)"] == ui.fmt_num(e.kv_capacity_tokens)
    assert m["Largest batch that fits (sequences)"] == ui.fmt_num(e.max_batch)
    bd = at.dataframe[-1].value  # per-operator breakdown: one cell per op and phase
    row = bd[(bd["phase"] == next(iter(e.breakdown))) & (bd["op"] == "mlp")].iloc[0]
    d = e.breakdown[row["phase"]]["mlp"]
    assert row["time_s"] == ui.fmt_ms(d["time_s"]) and row["bound"] == d["bound"]
    assert row["flops"] == ui.fmt_si(d["flops"], "FLOP") and row["bytes"] == ui.fmt_bytes(d["bytes"])


def test_estimate_request_rate_stable_shows_percentiles_and_saturation():
    at = page("estimate", mode="request rate λ", rate="5.0")
    e = kvmodel.estimate(**M70, request_rate=5.0)
    assert e.mode == "rate" and e.stable  # the page's mode string must be the library's
    m = metrics(at)
    assert m["TTFT (ms)"] == ui.fmt_ms(e.ttft_s) and m["Batch (sequences)"] == ui.fmt_num(e.batch)
    assert m["Saturation rate (req/s)"] == ui.fmt_num(e.saturation_request_rate_per_s)
    assert m["Mean queueing delay (ms)"] == ui.fmt_ms(e.queue_wait_s)
    assert m["P(request waits)"] == ui.fmt_pct(e.queue_wait_prob)
    pct = at.dataframe[0].value.set_index("metric")
    assert pct.loc["TTFT", "p99"] == ui.fmt_ms(e.ttft_p99_s)
    assert pct.loc["TPOT", "p50"] == ui.fmt_ms(e.tpot_p50_s)
    assert pct.loc["E2E", "p90"] == ui.fmt_time(e.e2e_p90_s)
    assert e.saturation_request_rate_per_s > 5.0 and not at.error


def test_estimate_request_rate_unstable_explains_and_hides_infinite_numbers():
    at = page("estimate", mode="request rate λ", rate="50")
    e = kvmodel.estimate(**M70, request_rate=50.0)
    assert not e.stable and math.isinf(e.ttft_s)
    msg = texts(at.error)
    assert "Unstable" in msg and ui.fmt_num(e.saturation_request_rate_per_s, "req/s") in msg
    assert "50 req/s" in msg
    m = metrics(at)
    assert "TTFT (ms)" not in m and "Batch (sequences)" not in m  # no ∞ beside "Batch 0"
    assert "∞" not in " ".join(m.values())
    assert m["Saturation rate (req/s)"] == ui.fmt_num(e.saturation_request_rate_per_s)
    assert m["Throughput at saturation (tok/s)"] == ui.fmt_num(e.output_tok_per_s)


# ---- Tiers & reuse -------------------------------------------------------------------------------
def test_tiers_break_even_table_equals_library_and_is_sane():
    at = page("tiers", t_src="synthetic", t_n="1000", points="5", ttft_pts="3", be_max="32768",
              hbm_gb="20", dram_gb="500", ssd_gb="1000")
    tiers = kvmodel.node_tiers(node="dgx-h100", dram_B=500e9, ssd_B=1000e9)
    table = next(d.value for d in at.dataframe if "loading wins beyond" in d.value.columns)
    assert list(table["tier"]) == ["dram", "ssd"]
    for _, row in table.iterrows():
        bw = float(tiers[row["tier"]].path.bandwidth_Bps()) * 8
        pstar = float(kvmodel.break_even_context_len(
            model="llama-3.1-70b", gpu="h100-sxm", bandwidth_Bps=bw, num_gpus=8,
            precision="fp8", kv_precision="fp8", ideal=False))
        assert 0 <= pstar < 1e7  # the swapped call gave ~6.7e27 tokens
        shown = row["loading wins beyond"]
        assert shown == ("0 tokens (always load)" if pstar == 0 else ui.fmt_num(pstar, "tokens"))
        assert row["node bandwidth"] == ui.fmt_bytes(bw) + "/s"


def test_tiers_break_even_with_a_slow_tier_is_the_library_token_count():
    """One 10 GB NVMe drive (6.5 GB/s per node) under Llama-3.1-8B: loading wins only beyond
    P* ~ 2e5 tokens (tau < k/B, so the quadratic attention term decides), the library's value."""
    at = page("tiers", model="llama-3.1-8b", t_src="synthetic", t_n="1000", points="5",
              ttft_pts="3", be_max="32768", dram_gb="0", ssd_gb="10")
    tier = kvmodel.node_tiers(node="dgx-h100", ssd_B=10e9)["ssd"]
    bw = float(tier.path.bandwidth_Bps()) * 8
    pstar = float(kvmodel.break_even_context_len(
        model="llama-3.1-8b", gpu="h100-sxm", bandwidth_Bps=bw, num_gpus=8, precision="fp8",
        kv_precision="fp8", ideal=False))
    assert 1e4 < pstar < 1e7
    table = next(d.value for d in at.dataframe if "loading wins beyond" in d.value.columns)
    assert table.set_index("tier").loc["ssd", "loading wins beyond"] == ui.fmt_num(pstar, "tokens")


# ---- Cluster -------------------------------------------------------------------------------------
def test_cluster_table_cells_equal_library():
    at = page("cluster", c_src="synthetic", c_n="1000", c_req_rate="2.0", sharing="none,p2p",
              routing="round_robin", sw_inst="2")
    w = kvmodel.Workload(trace=kvmodel.synthetic_trace(n_requests=1000), request_rate=2.0)
    r = kvmodel.evaluate(c=kvmodel.Cluster(model="llama-3.1-8b", gpu="h100-sxm", instances=4,
                                           tp=1, precision="fp8", sharing="p2p",
                                           routing="round_robin"), w=w)
    df = at.dataframe[0].value
    row = df[(df["sharing"] == "p2p") & (df["routing"] == "round_robin")].iloc[0]
    assert row["ttft_p99_s"] == ui.fmt_ms(r.ttft_p99_s) and row["tpot_s"] == ui.fmt_ms(r.tpot_s)
    assert row["cost_usd_per_mtok"] == ui.fmt_money(r.cost_usd_per_mtok, "Mtok")
    assert row["cost_usd_per_mtok"].startswith("$")
    assert row["hit_ratio"] == ui.fmt_pct(sum(r.hit_ratio.values()))


def test_cluster_unstable_configurations_are_one_message():
    at = page("cluster", c_src="synthetic", c_n="1000", c_req_rate="500", instances="1",
              sharing="none,central_pool,p2p", routing="round_robin,least_loaded",
              sw_inst="1,2")
    warns = [w.value for w in at.warning]
    assert len([w for w in warns if "configurations have no finite latency" in w]) <= 2
    first = next(w for w in warns if "configurations have no finite latency" in w)
    assert first.startswith("6 of 6") and "p2p / least_loaded" in first


# ---- Search --------------------------------------------------------------------------------------
def test_search_grid_results_are_in_the_link_and_equal_library(tmp_path):
    from kvmodel import search
    at = page("search", storage=str(tmp_path / "s.journal"), grid_space="tier-sizing-small",
              grid_top="3", grid="tier-sizing-small")  # a shared link: no click needed
    g = search.grid_search(space="tier-sizing-small")
    assert metrics(at)["points"] == f"{len(g.points):,}"
    df = at.dataframe[-1].value
    assert len(df) == 3
    assert df["goodput_per_dollar (req/$)"].iloc[0] == ui.fmt_num(g.best()[1])


def test_search_grid_button_puts_results_in_the_link(tmp_path):
    at = page("search", storage=str(tmp_path / "s.journal"), grid_top="2")
    assert "points" not in metrics(at)
    at.button(key="grid_go").click().run()
    assert not at.exception and at.query_params["grid"] in ("tier-sizing-small",
                                                            ["tier-sizing-small"])
    assert "points" in metrics(at) and len(at.dataframe[-1].value) == 2


# ---- Formulas ------------------------------------------------------------------------------------
def test_formulas_tab_comes_from_the_link():
    at = page("formulas", tab="Roofline")
    assert at.tabs[0].label == "Load vs recompute"
    state = at.session_state["tab"]
    assert state == "Roofline"


# ---- Hardware ------------------------------------------------------------------------------------
def test_hardware_default_custom_gpu_form_submits(fresh_catalog):
    at = page("hardware", section="gpu", filter="h100-sxm")
    at.button[0].click().run()  # the form exactly as it opens: no field touched
    assert not at.exception and not at.error, texts(at.error)
    assert "gpu.my-h100-sxm" in texts(at.success)
    cat = at.session_state[ui.CATALOG]
    g, h = kvmodel.get_gpu(key="my-h100-sxm", catalog=cat), kvmodel.get_gpu(key="h100-sxm")
    assert g.hbm_capacity_B == pytest.approx(h.hbm_capacity_B)


# ---- keyword calls, command line -----------------------------------------------------------------
LIBRARY_ROOTS = {"kvmodel", "mod", "search", "_mod"}  # kvmodel and kvmodel.search (as imported)
# the trace loaders are the trace engineer's (kvmodel.load_trace("mooncake-conversation")), not
# this check's to edit; load_trace takes a single name or path, so its order cannot drift
EXEMPT_FUNCTIONS = {"sample_trace", "trace_picker", "builtin_trace"}


def _library_names(tree: ast.Module) -> set[str]:
    """Names imported from kvmodel (``from kvmodel.x import f``)."""
    return {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
            and (n.module or "").startswith("kvmodel") for a in n.names}


def _positional_library_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = _library_names(tree)
    exempt = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
              and f.name in EXEMPT_FUNCTIONS for n in ast.walk(f)}
    bad = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call) or id(n) in exempt:
            continue
        root = n.func
        while isinstance(root, ast.Attribute):
            root = root.value
        library = (isinstance(root, ast.Name) and root.id in LIBRARY_ROOTS
                   and isinstance(n.func, ast.Attribute)) or (
            isinstance(n.func, ast.Name) and n.func.id in imported)
        guarded = isinstance(n.func, ast.Attribute) and n.func.attr == "guarded"
        if (library and n.args) or (guarded and len(n.args) > 1):
            bad.append(f"{path.name}:{n.lineno}: {ast.unparse(n)[:80]}")
    return bad


def test_every_library_call_in_the_app_is_by_keyword():
    files = [APP / "_common.py", *sorted((APP / "app_pages").glob("*.py"))]
    bad = [b for f in files for b in _positional_library_calls(f)]
    assert not bad, "positional arguments to library calls:\n" + "\n".join(bad)


def test_keyword_check_catches_a_positional_call(tmp_path):
    f = tmp_path / "p.py"
    f.write_text("import kvmodel\nfrom kvmodel.instance.breakeven import recompute_coefficients\n"
                 "x = kvmodel.break_even_context_len('m', 'g', 8, 1e9)\n"
                 "y = recompute_coefficients('m', gpu='g')\nz = ui.guarded(f, 1)\n")
    assert [b.split(":")[1] for b in _positional_library_calls(f)] == ["3", "4", "5"]


def test_kvmodel_app_turns_off_usage_statistics(monkeypatch):
    from kvmodel import cli
    seen = {}
    monkeypatch.setattr("subprocess.call", lambda cmd, env=None: seen.setdefault("cmd", cmd) and 0)
    assert cli.main(["app", "--port", "8612"]) == 0
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("streamlit_app.py")
    i = cmd.index("--browser.gatherUsageStats")
    assert cmd[i + 1] == "false"
    assert cmd[cmd.index("--server.port") + 1] == "8612"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
