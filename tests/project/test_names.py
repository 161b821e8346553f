"""Units and names: result-field suffixes and their deprecation aliases, to_dict from the
fields, objective labels in Optuna's metric_names, clear errors for missing precisions."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
from conftest import TOY_GPU

import kvmodel
from kvmodel import search
from kvmodel.cli import main
from kvmodel.sim import SimResult, poisson_requests, simulate

SUFFIX = re.compile(r"(_s|_per_s|_B|_Bps|_usd_per_h|_usd_per_mtok|_per_token|_per_gpu)$")


@pytest.fixture(scope="module")
def results():
    e = kvmodel.estimate("llama-3.1-8b", "h100-sxm", tp=1, precision="fp8", request_rate=5.0)
    w = kvmodel.Workload(kvmodel.synthetic_trace(800, seed=3), request_rate=2.0)
    c = kvmodel.evaluate(kvmodel.Cluster("llama-3.1-8b", "h100-sxm", instances=2, tp=1), w)
    s = simulate("llama-3.1-8b", "h100-sxm", poisson_requests(60, 5.0, 512, 16, seed=1))
    return {"Estimate": e, "ClusterResult": c, "SimResult": s}


def test_every_old_name_warns_and_equals_the_new_one(results):
    assert sum(len(type(r).RENAMED) for r in results.values()) >= 20
    for r in results.values():
        for old, new in type(r).RENAMED.items():
            with pytest.warns(DeprecationWarning, match=rf"\.{new}\b"):
                v = getattr(r, old)
            assert v == getattr(r, new), (old, new)
            if hasattr(r, "to_dict"):
                d = r.to_dict()
                assert old not in d and old not in list(d) and f'"{old}"' not in json.dumps(d)
                with pytest.warns(DeprecationWarning, match=f"'{new}'"):
                    assert d[old] == d[new]  # old key lookups still work for one release


def test_aliases_are_read_only(results):
    with pytest.raises(AttributeError):
        results["Estimate"].output_tok_per_s = 1.0


def test_renamed_fields_follow_the_suffix_convention(results):
    for r in results.values():
        assert all(SUFFIX.search(new) for new in type(r).RENAMED.values()), type(r).RENAMED


def test_to_dict_is_every_field_and_json_safe(results):
    e = results["Estimate"]
    d = e.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(e)}
    assert "queue_wait_s" in d and "queue_wait_prob" in d  # the hand-written list dropped them
    unstable = kvmodel.estimate("llama-3.1-8b", "h100-sxm", tp=1, request_rate=1e6)
    assert unstable.ttft_s == math.inf and not unstable.stable
    du = unstable.to_dict()
    assert du["ttft_s"] is None and du["ttft_p99_s"] is None
    json.dumps(du, allow_nan=False)
    c = results["ClusterResult"]
    dc = c.to_dict()
    assert set(dc) == {f.name for f in dataclasses.fields(c)}
    assert dc["instances"]["instance"]["ttft_s"] == pytest.approx(
        c.instances["instance"].ttft_s)
    json.dumps(dc, allow_nan=False)


def test_vector_estimate_to_dict_lists_with_none_for_inf():
    e = kvmodel.estimate("llama-3.1-8b", "h100-sxm", tp=1, request_rate=np.array([1.0, 1e6]))
    d = e.to_dict()
    assert d["ttft_s"][0] == pytest.approx(float(e.ttft_s[0])) and d["ttft_s"][1] is None
    json.dumps(d, allow_nan=False)


def test_sim_summary_uses_the_new_names(results):
    s = results["SimResult"]
    d = s.summary()
    assert d["ttft_p99_s"] == s.ttft_p99_s and d["output_tok_per_s"] == s.output_tok_per_s
    assert d["request_throughput_per_s"] == s.request_throughput_per_s
    assert not set(SimResult.RENAMED) & set(d)


# ---- objective labels --------------------------------------------------------------------------
def test_objective_table_labels():
    assert search.OBJECTIVES["goodput_per_dollar"].label("goodput_per_dollar") == \
        "goodput_per_dollar [req/$, maximise]"
    assert search.OBJECTIVES["cost_per_hour"].label("cost_per_hour") == \
        "cost_per_hour [$/h, minimise]"
    for name, o in search.OBJECTIVES.items():
        assert o.unit and o.doc and o.direction in ("maximize", "minimize"), name


def test_a_new_study_has_metric_names_with_units():
    s = dataclasses.replace(search.load_space("tier-sizing-small"),
                            metrics=("goodput_per_dollar", "cost_per_hour"))
    st = search.run(s, n_trials=2, storage=kvmodel_memory(), sampler="random")
    assert st.metric_names == ["goodput_per_dollar [req/$, maximise]",
                               "cost_per_hour [$/h, minimise]"]
    assert st.user_attrs["metrics"] == ["goodput_per_dollar", "cost_per_hour"]  # ids unchanged


def test_reopening_an_unlabelled_study_labels_it(tmp_path):
    import optuna
    path = str(tmp_path / "old.journal")
    store = search.open_storage(path)
    optuna.create_study(storage=store, study_name="tier-sizing-small", directions=["maximize"])
    assert optuna.load_study(study_name="tier-sizing-small", storage=store).metric_names is None
    st = search.run("tier-sizing-small", n_trials=1, storage=path, sampler="random")
    assert st.metric_names == ["goodput_per_dollar [req/$, maximise]"]


def kvmodel_memory():
    import optuna
    return optuna.storages.InMemoryStorage()


# ---- precisions a custom GPU lacks ------------------------------------------------------------
def test_missing_precision_is_an_infeasible_reason_not_a_keyerror(toy_gpu):
    e = kvmodel.estimate("llama-3.1-8b", "toy", tp=1, precision="fp16")  # toy has bf16 only
    assert not e.feasible
    assert e.reason == "precision fp16 not supported on toy (supports bf16)"
    assert e.ttft_s == math.inf
    ok = kvmodel.estimate("llama-3.1-8b", "toy", tp=1, precision="bf16")
    assert bool(ok.feasible) and ok.ttft_s < math.inf


def test_missing_precision_in_the_cli(tmp_path, fresh_catalog, capsys):
    p = tmp_path / "toy.toml"
    p.write_text(TOY_GPU)
    assert main(["--hardware", str(p), "estimate", "--model", "llama-3.1-8b", "--gpu", "toy",
                 "--tp", "1", "--precision", "fp16"]) == 0
    out = capsys.readouterr()
    assert "INFEASIBLE: precision fp16 not supported on toy (supports bf16)" in out.out
    assert "error" not in out.err


# ---- search export: images with kaleido, a clear message without ------------------------------
def test_export_without_kaleido_writes_html_and_says_why(tmp_path, monkeypatch, capsys):
    from kvmodel.search import _report
    monkeypatch.setattr(_report, "kaleido_available", lambda: False)
    st = search.run("tier-sizing-small", n_trials=6, storage=kvmodel_memory(), sampler="random")
    paths = search.export(st, tmp_path)
    assert "history" in paths and not any(k.endswith((".png", ".svg")) for k in paths)
    with pytest.raises(ImportError, match=r"kvmodel\[export\]"):
        search.export(st, tmp_path, images=("png",))
    store = str(tmp_path / "s.journal")
    assert main(["search", "--space", "tier-sizing-small", "--n-trials", "4", "--storage", store,
                 "--sampler", "random", "--no-progress", "--export", str(tmp_path / "o")]) == 0
    assert "no PNG/SVG written: PNG/SVG export needs kaleido>=1" in capsys.readouterr().out


def test_export_images_with_kaleido(tmp_path):
    pytest.importorskip("kaleido")
    st = search.run("tier-sizing-small", n_trials=6, storage=kvmodel_memory(), sampler="random")
    paths = search.export(st, tmp_path, html=False, images=("png", "svg"))
    assert paths["history.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths["history.svg"].read_bytes()[:500]


# ---- CLI: help and human units -----------------------------------------------------------------
def _subparsers():
    import argparse

    from kvmodel.cli import _parser
    p = _parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return p, sub.choices


def test_every_option_of_every_subcommand_says_meaning_default_and_choices():
    p, subs = _subparsers()
    for name, sp in subs.items():
        for a in sp._actions:
            if a.dest == "help":
                continue
            assert a.help, (name, a.dest)
            if a.choices:
                assert "%(choices)s" in a.help or all(str(c) in a.help for c in a.choices), \
                    (name, a.dest)
            if a.default not in (None, False) and not a.required:
                assert "%(default)s" in a.help or "default" in a.help, (name, a.dest)
        text = sp.format_help()
        assert "%(" not in text, name


def test_estimate_help_lists_precision_choices_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["estimate", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal width
    assert "(default: fp8; choices: bf16, fp16" in out and "(default: 2048)" in out


def test_top_level_help_has_no_restructuredtext(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and "estimate" in out and "search" in out


def test_search_help_lists_objectives_with_units(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name, o in search.OBJECTIVES.items():
        assert o.label(name) in out


def test_hardware_gpu_prints_human_units(capsys):
    assert main(["hardware", "gpu", "h100-sxm"]) == 0
    out = capsys.readouterr().out
    line = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    assert "3.35 TB/s" in line["hbm_bandwidth"]
    assert "989.5 TFLOP/s" in line["peak_flops.bf16"]
    # 81559 MiB = 81559 * 2**20 B = 85.52e9 B: decimal GB, with the sourced value beside it
    assert "85.52 GB (= 81559 MiB)" in line["hbm_capacity"]
    assert "700 W" in line["tdp"]
    assert "e+" not in out.split("[")[0]


@pytest.mark.parametrize("si, dim, text", [(3.35e12, "bandwidth", "3.35 TB/s"),
                                            (1.979e15, "compute", "1979 TFLOP/s"),
                                            (2e-6, "time", "2 us"), (0.25, "time", "250 ms"),
                                            (98.0 / 3600, "money_rate", "$98/h"),
                                            (80e9, "bytes", "80 GB")])
def test_human_units(si, dim, text):
    from kvmodel.cli import _human
    assert _human(si, dim) == text
