"""AppTest widget sweep: on every page, each widget in turn (from the page's defaults) at its
minimum, its maximum and each option of every select / radio; the page reruns without an
uncaught exception. Then one test per reported failure (issue 15)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from apptests import ENTRY, ROOT, TIMEOUT, AppTest, page, ui  # noqa: F401

import kvmodel
from kvmodel import cluster as kcluster
from kvmodel.workload import traces as ktraces

KINDS = ("number_input", "selectbox", "radio", "multiselect", "checkbox")


def clean(at: AppTest, what: str = "") -> None:
    assert not at.exception, (what, [e.value for e in at.exception])


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def widgets(at: AppTest, skip: tuple[str, ...] = (),
            only: tuple[str, ...] = ()) -> list[tuple[str, int, Any]]:
    """(kind, index among that kind, element) of every sweepable widget on the page whose key
    is not in ``skip`` (and is in ``only`` when given)."""
    return [(kind, i, w) for kind in KINDS for i, w in enumerate(at.get(kind))
            if w.key not in skip and (not only or w.key in only)]


def signature(at: AppTest) -> list[tuple[str, str]]:
    return [(kind, w.key or w.label) for kind, _, w in widgets(at)]


def current(kind: str, w: Any) -> Any:
    """The widget's value in the form ``apply`` takes (an option's index for a select or radio);
    a widget inside a form that was never submitted has no state yet: its default then."""
    try:
        return w.index if kind in ("selectbox", "radio") else w.value
    except KeyError:
        return w.proto.default


def values(kind: str, w: Any) -> list[Any]:
    """The values to try: bounds of a number, the index of each other option of a select or
    radio, the other state of a checkbox, none and each chosen item alone of a multiselect."""
    now = current(kind, w)
    if kind == "number_input":
        assert w.max is not None, f"number input {w.label!r} ({w.key}) has no maximum"
        cast = int if w.proto.data_type == w.proto.INT else float
        return [cast(w.min), cast(w.max)]
    if kind == "checkbox":
        return [not now]
    if kind == "multiselect":  # options are display labels; values are what the page chose
        return [[]] + [[v] for v in now]
    return [i for i in range(len(w.options)) if i != now]


def apply(kind: str, w: Any, v: Any) -> None:
    if kind == "selectbox":
        w.select_index(v)
    elif kind == "radio":
        w.set_value(w.options[v])
    else:
        w.set_value(v)


def sweep(name: str, skip: tuple[str, ...] = (), only: tuple[str, ...] = (),
          **params: str) -> int:
    """Set each widget of the page to each of its values, one at a time from the defaults.

    One AppTest: after a case the widget goes back to its default together with the next case
    (one run per case); only a case that changed which widgets exist costs a run to restore."""
    at = page(name, **params)
    clean(at, (name, "defaults"))
    base, runs = signature(at), 0
    for kind, i, w in widgets(at, skip, only):
        default = current(kind, w)
        for v in values(kind, w):
            apply(kind, at.get(kind)[i], v)
            at.run()
            clean(at, (name, params, kind, w.key or w.label, v))
            runs += 1
            now = at.get(kind)
            if signature(at) != base or i >= len(now) or (now[i].key or now[i].label) != \
                    (w.key or w.label):
                at = page(name, **params)  # the case changed the page's layout: start afresh
                continue
            apply(kind, now[i], default)
    return runs


SYNTHETIC = tuple(f"c_{k}" for k in ("n", "seed", "arr", "rate", "bcv", "nsys", "systok", "zipf",
                                     "sess", "turns", "think", "utok", "otok"))
SWEEPS = [  # page, query parameters that show the widgets of another branch or keep runs short
    ("estimate", {}),
    ("estimate", {"mode": "concurrency N", "only": ("clients",)}),  # the widget of that mode
    ("estimate", {"mode": "request rate λ", "only": ("rate",)}),
    ("tiers", {"t_src": "synthetic", "t_n": "500", "points": "10", "ttft_pts": "5",
               "be_max": "16384"}),
    # the synthetic-trace widgets are one function (ui.synthetic_widgets), swept on tiers
    ("cluster", {"c_src": "synthetic", "c_n": "300", "sw_inst": "2,4", "skip": SYNTHETIC}),
    ("cluster", {"c_src": "synthetic", "c_n": "300", "knob": "network", "only": ("sw_nic",)}),
    ("validation", {}),  # formulas: tabs only (test_app_numbers opens each from the link)
    ("hardware", {}),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,params", SWEEPS, ids=[
    f"{n}-{'-'.join(v for v in p.values() if isinstance(v, str)) or 'defaults'}" for n, p in SWEEPS])
def test_every_widget_at_its_bounds_and_options(name, params):
    t0 = time.perf_counter()
    runs = sweep(name, **params)
    assert runs > 0
    # a guard against a runaway sweep inside CI's 90-minute budget, not a speed figure
    # (benchmarks/ measure speed): the cluster sweep takes 70-90 s alone and about twice that
    # under CI's coverage tracing on a slow 2-core machine (145 s in the stop-18 CI run)
    assert time.perf_counter() - t0 < 300, f"{name}: {runs} runs took too long for CI"


@pytest.mark.slow
def test_search_page_sweep(tmp_path):
    optuna = pytest.importorskip("optuna")
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(tmp_path / "t.journal"))),
                            study_name="toy", directions=["minimize", "minimize"],
                            sampler=optuna.samplers.RandomSampler(seed=0))
    s.optimize(lambda t: (t.suggest_float("x", 0, 2), t.suggest_int("k", 1, 3)), n_trials=8)
    assert sweep("search", storage=str(tmp_path / "t.journal")) > 0


# ---- maxima come from the library ----------------------------------------------------------------
def test_widget_maxima_are_the_library_caps_or_tighter():
    assert ui.MAX_INSTANCES == kcluster.MAX_INSTANCES and ui.MAX_TP == kcluster.MAX_TP
    assert ui.MAX_SYNTH_REQUESTS <= ktraces.MAX_SYNTHETIC_REQUESTS
    assert max(ui.MAX_SYNTH_TOKENS, ui.MAX_SYNTH_SYSTEM_TOKENS) <= ktraces.MAX_SYNTHETIC_TOKENS
    assert ui.MAX_SYNTH_REQUESTS * ui.MAX_SYNTH_TURNS <= ktraces.MAX_SYNTHETIC_TURNS
    at = page("cluster", c_src="synthetic", c_n="300", sw_inst="2")
    clean(at)
    assert at.number_input(key="instances").max == kcluster.MAX_INSTANCES
    assert at.number_input(key="tp").max == kcluster.MAX_TP
    assert at.number_input(key="c_otok").max <= ktraces.MAX_SYNTHETIC_TOKENS
    assert at.number_input(key="c_n").max <= ktraces.MAX_SYNTHETIC_REQUESTS


def test_a_link_beyond_a_maximum_is_clamped_to_it():
    at = page("cluster", c_src="synthetic", c_n="300", c_otok="1e15", instances="100000",
              c_req_rate="1e300", dram_gb="1e300", sw_inst="2")
    clean(at)
    assert at.number_input(key="c_otok").value == ui.MAX_SYNTH_TOKENS
    assert at.number_input(key="instances").value == kcluster.MAX_INSTANCES
    assert at.number_input(key="c_req_rate").value == ui.MAX_RATE_PER_S
    assert at.number_input(key="dram_gb").value == ui.MAX_CAPACITY_GB


@pytest.mark.parametrize("name,params", [
    ("estimate", {"tp": "inf", "input_len": "-inf", "n": "nan", "output_len": "1e400"}),
    ("tiers", {"hbm_gb": "inf", "points": "inf", "ttft_pts": "-1e300", "be_max": "1e400",
               "t_src": "synthetic", "t_n": "inf"}),
])
def test_non_finite_link_values_fall_back_or_clamp(name, params):
    at = page(name, **params)
    clean(at)
    for w in at.number_input:
        assert w.min <= w.value <= w.max, (w.key, w.value)


def test_sweep_values_beyond_the_maximum_are_ignored_with_a_warning():
    at = page("cluster", c_src="synthetic", c_n="300", sharing="none", routing="round_robin",
              sw_inst="2,100000")
    clean(at)
    assert "must be in [1, 4096]; ignoring [100000.0]" in texts(at.warning)
    assert list(at.dataframe[-1].value["value"]) == ["2"] * len(kcluster.SHARING)


# ---- Cluster: infeasible configurations are rows with their reason -------------------------------
@pytest.mark.parametrize("params,reason", [
    ({"gpu": "a100-sxm-80gb"}, "precision fp8 not supported"),
    ({"model": "deepseek-v3"}, "weights"),
    ({"model": "llama-3.1-405b"}, "weights"),
    ({"model": "falcon-180b"}, "weights"),
    ({"tp": "1024"}, "does not divide"),
])
def test_cluster_infeasible_configurations_show_their_reason(params, reason):
    at = page("cluster", c_src="synthetic", c_n="300", sw_inst="2", **params)
    clean(at)
    assert "configurations have no finite latency" in texts(at.warning)
    assert reason in texts(at.warning)
    df = at.dataframe[0].value
    assert df["reason"].str.contains(reason).all() and (df["ttft_p99_s"] == ui.MISSING).all()


def test_cluster_keeps_feasible_rows_beside_infeasible_ones():
    at = page("cluster", c_src="synthetic", c_n="300", sharing="none", routing="round_robin",
              knob="instances", sw_inst="1,2", tp="2", model="qwen3-8b")
    clean(at)
    sweep_df = at.dataframe[-1].value
    assert len(sweep_df) == 2 * len(kcluster.SHARING)


def test_cluster_absurd_rate_is_clamped_and_unstable():
    at = page("cluster", c_src="synthetic", c_n="300", sw_inst="2", c_req_rate="1e300")
    clean(at)
    assert "unstable" in texts(at.warning)


# ---- Search: second run, unreadable storages -----------------------------------------------------
def test_search_second_run_on_the_same_study(tmp_path):
    from kvmodel import search
    if not (hasattr(search, "run") and hasattr(search, "builtin_spaces")):
        pytest.skip("kvmodel.search offers no run/builtin_spaces")
    at = page("search", storage=str(tmp_path / "s.journal"))
    at.number_input[0].set_value(2)
    at.button[0].click().run()
    clean(at)
    at.button[0].click().run()  # the storage now holds the study: the Study selectbox exists
    clean(at)
    assert "holds 2 complete trials" in texts(at.success)
    assert at.selectbox(key="study").value == "tier-sizing-small"


def _binary(tmp_path: Path) -> str:
    p = tmp_path / "noise.bin"
    p.write_bytes(bytes(range(256)) * 8)
    return str(p)


@pytest.mark.parametrize("spec", ["bogus://x", "postgresql+psycopg://u@127.0.0.1:1/db", "binary",
                                  "README.md"])
def test_search_unreadable_storage_is_a_message(spec, tmp_path):
    spec = _binary(tmp_path) if spec == "binary" else spec
    at = page("search", storage=spec)
    clean(at)
    err = texts(at.error)
    assert f"Cannot open the storage {spec!r}" in err or "Cannot open the storage '" in err
    assert "Allowed: a journal file path" in err
    assert "Launching needs a storage that can be read" in texts(at.info)


# ---- Tiers: empty cache, absurd capacities -------------------------------------------------------
TIERS = {"t_src": "synthetic", "t_n": "500", "points": "10", "ttft_pts": "5", "be_max": "16384"}


def test_tiers_all_capacities_zero_is_an_empty_cache():
    at = page("tiers", hbm_gb="0", dram_gb="0", cxl_gb="0", ssd_gb="0", remote_gb="0", **TIERS)
    clean(at)
    assert "the cache is empty" in texts(at.info)
    assert next(m.value for m in at.metric if m.label == "Total hit ratio") == "0.000"


def test_tiers_absurd_capacity_is_bounded_by_the_widget():
    at = page("tiers", hbm_gb="1e300", **TIERS)
    clean(at)
    assert at.number_input(key="hbm_gb").value == ui.MAX_CAPACITY_GB
    assert not at.error
    trace = kvmodel.synthetic_trace(n_requests=500)
    ceiling = 1 - trace.unique_blocks / trace.total_blocks  # the cache holds every block
    assert next(m.value for m in at.metric if m.label == "Total hit ratio") == f"{ceiling:.3f}"


# ---- Hardware: the filter is plain text ----------------------------------------------------------
@pytest.mark.parametrize("flt", ["[", "(", "*", "a100["])
def test_hardware_filter_is_plain_text(flt):
    at = page("hardware", filter=flt)
    clean(at)
    assert len(at.dataframe[0].value) == 0
    at.text_input(key="filter").input("h100").run()
    clean(at)
    assert (at.dataframe[0].value["entry"].str.contains("h100")).all()
