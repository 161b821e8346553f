"""kvmodel.search: spaces as data, objectives and constraints, samplers, storage, grid, CLI."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

import kvmodel
from kvmodel import search
from kvmodel.cli import main
from kvmodel.search._objectives import _coarsen
from kvmodel.search._study import constraints_of, make_sampler, suggest

ROOT = Path(__file__).resolve().parents[2]
SMALL = "tier-sizing-small"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _small(**over) -> search.Space:
    return dataclasses.replace(search.load_space(SMALL), **over)


# ---- spaces ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", search.builtin_spaces())
def test_builtin_spaces_load_and_name_known_things(name):
    s = search.load_space(name)
    search._objectives.check_names(s)
    assert s.dims and s.metrics and all(m in search.OBJECTIVES for m in s.metrics)


def test_tier_sizing_is_builtin_and_every_dimension_is_documented():
    assert "tier-sizing" in search.builtin_spaces()
    everything = search.load_space("everything")
    covered = {d.name for d in everything.dims} | set(everything.fixed)
    # routing parameters: every router's in tests/search/test_search_dimensions.py; connector:
    # tests/policies/test_connectors.py; DP attention / EP / speculation (MoE models, not the
    # dense model of this space): tests/search/test_search_wide_ep.py
    routers = set(search._space.ROUTING_PARAM_DIMS) - {"dynamo_overlap_score_weight"}
    wide = {"attention_dp", "ep", "spec_method", "spec_k", "spec_acceptance", "spec_draft_model"}
    assert covered >= set(search.DIMENSIONS) - {"pool_ssd_TB", "pool_nic", "pool_nics",
                                                 "p2p_placement", "p2p_lookup_us", "framework",
                                                 "connector"} - routers - wide
    assert all(info.maps_to for info in search.DIMENSIONS.values())
    assert all(info.modelled for info in search.DIMENSIONS.values())
    assert search._objectives.recorded_only(everything) == []


def test_eviction_dimension_changes_the_evaluation():
    s = _small(dims=(), fixed=dict(_small().fixed, instances=2, dram_GB_per_node=1.0,
                                   ssd_TB_per_node=0.0, hbm_kv_fraction=0.05))
    hits = {ev: search.evaluate_point(s, {"eviction": ev}).metrics
            for ev in ("lru", "fifo", "lru-admit-reuse")}
    total = {ev: sum(v for k, v in m.items() if k.startswith("hit_")) for ev, m in hits.items()}
    assert len({round(v, 6) for v in total.values()}) == 3, total


BAD = [
    ({"dims": {"dram_gb": {"range": [0, 1]}}}, "dram_gb"),
    ({"dims": {"dram_GB_per_node": {"range": [5, 1]}}}, "dram_GB_per_node"),
    ({"dims": {"dram_GB_per_node": {"range": [0, 1], "choices": [1]}}}, "dram_GB_per_node"),
    ({"dims": {"dram_GB_per_node": {"range": [0, 1], "stepp": 1}}}, "stepp"),
    ({"dims": {"tp": {"choices": [1, "two"]}}}, "'tp'"),
    ({"dims": {"sharing": {"range": [0, 1]}}}, "'sharing'"),
    ({"dims": {"p2p_replication": {"range": [1, 3], "when": {"sharng": "p2p"}}}}, "sharng"),
    ({"dims": {"p2p_replication": {"range": [1, 3], "when": {"sharing": "p2p"}}}}, "'sharing'"),
    ({"dims": {"routing": {"choices": ["random", "telepathy"]}}}, "'routing'"),
    ({"dims": {"instances": {"range": [1, 4], "log": True, "step": 1}}}, "'instances'"),
    ({"slo": {"ttft_percentile": "p95"}}, "ttft_percentile"),
    ({"objective": {"metrics": ["goodness"]}}, "goodness"),
    ({"fixed": {"gpuu": "h100-sxm"}}, "gpuu"),
    ({"dimz": {}}, "dimz"),
]


@pytest.mark.parametrize("patch,needle", BAD)
def test_bad_spaces_name_the_dimension(patch, needle):
    base = {"fixed": {"model": "llama-3.1-8b", "gpu": "h100-sxm"},
            "workload": {"trace": "synthetic"}}
    data = {k: (base.get(k, {}) | v) if isinstance(v, dict) else v for k, v in patch.items()}
    data = base | data
    with pytest.raises(search.SpaceError, match=needle):
        search._objectives.check_names(search.load_space(data))


def test_bad_space_file_names_file_and_dimension(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[fixed]\nmodel = "llama-3.1-8b"\ngpu = "h100-sxm"\n[workload]\n'
                 'trace = "synthetic"\n[dims.cxl_GB_per_node]\nrange = [0, "big"]\n')
    with pytest.raises(search.SpaceError, match=r"bad\.toml.*cxl_GB_per_node"):
        search.load_space(p)
    assert main(["search", "--space", str(p), "--n-trials", "1"]) == 2


def test_grid_points_expand_conditionals_once():
    s = search.load_space({"fixed": {"model": "llama-3.1-8b", "gpu": "h100-sxm"},
                           "workload": {"trace": "synthetic"},
                           "dims": {"sharing": {"choices": ["none", "central_pool", "p2p"]},
                                    "p2p_replication": {"range": [1, 3],
                                                        "when": {"sharing": "p2p"}}}})
    pts = search.grid_points(s)
    assert len(pts) == 2 + 3 and {"sharing": "none"} in pts
    assert sorted(p.get("p2p_replication", 0) for p in pts) == [0, 0, 1, 2, 3]


# ---- mapping onto the cluster model --------------------------------------------------------------
def test_point_maps_onto_cluster_per_instance():
    s = _small()
    w = search._objectives.workload_for(s)
    p = {"instances": 4, "dram_GB_per_node": 2048, "cxl_GB_per_node": 512,
         "ssd_TB_per_node": 7.68, "hbm_kv_fraction": 0.4}
    out = search.evaluate_point(s, p)
    c = kvmodel.Cluster("llama-3.1-8b", "h100-sxm", instances=4, tp=1, precision="fp8",
                        routing="prefix_affinity_bounded", hbm_cache_fraction=0.4,
                        dram_B=2048e9 / 8, cxl_B=512e9 / 8, ssd_B=7.68e12 / 8)
    r = kvmodel.evaluate(c, w)
    assert out.metrics["instances_per_node"] == 8
    assert out.metrics["goodput_per_s"] == pytest.approx(r.goodput_per_s)
    assert out.metrics["cost_usd_per_h"] == pytest.approx(r.cost_usd_per_h)
    assert out.values[0] == pytest.approx(r.goodput_per_s * 3600 / r.cost_usd_per_h)


def test_inclusive_never_beats_exclusive_and_costs_the_same():
    s = _small()
    p = {"instances": 2, "dram_GB_per_node": 1024, "cxl_GB_per_node": 512, "ssd_TB_per_node": 0.0,
         "hbm_kv_fraction": 0.4}
    ex = search.evaluate_point(s, p | {"placement": "exclusive"})
    inc = search.evaluate_point(s, p | {"placement": "inclusive"})
    def hits(o):
        return sum(v for k, v in o.metrics.items() if k.startswith("hit_"))
    assert hits(inc) <= hits(ex) + 1e-12
    assert inc.metrics["cost_usd_per_h"] == pytest.approx(ex.metrics["cost_usd_per_h"])


def test_block_coarsening_keeps_chained_prefixes():
    tr = kvmodel.Trace.from_lists([[1, 2, 3, 4, 5], [1, 2, 6]], block_tokens=512)
    c = _coarsen(tr, 1024)
    assert c.block_tokens == 1024 and [list(c.hash_ids(i)) for i in range(2)] == [[2, 4], [2]]


def test_infeasible_configurations_are_explained_not_raised():
    s = _small()
    too_big = search.evaluate_point(s, {"instances": 1} | {"hbm_kv_fraction": 0.1})
    assert isinstance(too_big.reason, str)
    bad_node = search.evaluate_point(dataclasses.replace(s, fixed=s.fixed | {"node": "dgx-h200"}), {})
    assert not bad_node.feasible and "carries" in bad_node.reason
    poor = search.evaluate_point(_small(budget={"max_cost_per_hour": 1.0}), {"instances": 8})
    assert not poor.feasible and "budget" in poor.reason and poor.constraints[4] > 0


# ---- samplers, constraints, Pareto -------------------------------------------------------------
TOY = {"fixed": {"model": "llama-3.1-8b", "gpu": "h100-sxm"}, "workload": {"trace": "synthetic"},
       "dims": {"dram_GB_per_node": {"range": [0, 10], "step": 1},
                "instances": {"range": [1, 5]}}}


def _toy(trial):
    """max x + n subject to x <= 7: the optimum is x = 7, n = 5 (value 12)."""
    p = suggest(trial, search.load_space(TOY))
    x, n = p["dram_GB_per_node"], p["instances"]
    trial.set_user_attr("constraints", [x - 7.0] + [0.0] * 5)
    return x + n


@pytest.mark.parametrize("name", search.SAMPLERS)
def test_toy_optimum_found_by_every_sampler(name):
    if name == "gp":  # about 1 s per trial on 2 CPU cores: fewer trials
        torch = pytest.importorskip("torch")
        torch.set_num_threads(1)
    space = search.load_space(TOY)
    st = optuna.create_study(direction="maximize", sampler=make_sampler(name, space, seed=1))
    st.optimize(_toy, n_trials={"grid": 66, "gp": 30}.get(name, 150))
    best = search.best_trials(st, top=1)[0]
    # GP returns stepped floats with rounding residue (6.999999999999999)
    assert best.params == {"dram_GB_per_node": pytest.approx(7.0), "instances": 5}
    assert best.values[0] == pytest.approx(12)
    assert all(t.params["dram_GB_per_node"] <= 7 + 1e-9 for t in st.trials
               if search.is_feasible(t))


def test_constraints_are_respected_and_infeasible_trials_kept():
    s = _small(budget={"max_cost_per_hour": 55.5})
    st = search.run(s, n_trials=40, storage=optuna.storages.InMemoryStorage(), sampler="tpe")
    ts = st.get_trials()
    assert len(ts) == 40 and all(t.state.name == "COMPLETE" for t in ts)
    feas = [t for t in ts if search.is_feasible(t)]
    infeas = [t for t in ts if not search.is_feasible(t)]
    assert feas and infeas
    for t in feas:
        m = t.user_attrs["metrics"]
        assert m["cost_usd_per_h"] <= 55.5 and m["ttft_p99_s"] <= 1.0 and m["tpot_p99_s"] <= 0.05
    assert all(t.user_attrs["metrics"]["reason"] for t in infeas)
    for t in search.best_trials(st):
        assert search.is_feasible(t)
    assert constraints_of(st.trials[0]) == st.trials[0].user_attrs["constraints"]


def test_pareto_front_is_non_dominated():
    s = _small(metrics=("goodput_rps", "cost_per_hour"))
    st = search.run(s, n_trials=60, storage=optuna.storages.InMemoryStorage(), sampler="nsga2")
    front = search.pareto_front(st)
    feas = [t for t in st.trials if search.is_feasible(t)]
    def key(t):
        return [-t.values[0], t.values[1]]
    assert front
    for f in front:
        assert not any(search._report.dominates(key(t), key(f)) for t in feas)
    for t in feas:
        assert t in front or any(search._report.dominates(key(f), key(t)) or key(f) == key(t)
                                 for f in front)


# ---- storage and resume ------------------------------------------------------------------------
def test_journal_default_storage_resumes(tmp_path):
    path = tmp_path / "s.journal"
    st = search.run(SMALL, n_trials=15, storage=str(path), sampler="random")
    first = {t.number: t.values for t in st.trials}
    st = search.run(SMALL, n_trials=25, storage=str(path), sampler="random")
    assert len(st.trials) == 25 and {t.number: t.values for t in st.trials[:15]} == first
    assert search.load(str(path)).study_name == SMALL


def _count_complete(url: str, name: str) -> int:
    try:
        st = optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return 0
    return sum(t.state.name == "COMPLETE" for t in st.get_trials(deepcopy=False))


@pytest.mark.slow
def test_sigkill_and_resume_with_sqlite_loses_no_completed_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    code = ("from kvmodel import search; search.run('tier-sizing-small', n_trials=100000, "
            f"storage={url!r}, sampler='random')")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path)
    deadline = time.time() + 60
    while _count_complete(url, SMALL) < 30 and time.time() < deadline:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    st = optuna.load_study(study_name=SMALL, storage=url)
    before = {t.number: t.values for t in st.trials if t.state.name == "COMPLETE"}
    assert len(before) >= 30
    st = search.run(SMALL, n_trials=len(before) + 10, storage=url, sampler="random")
    after = {t.number: t.values for t in st.trials if t.state.name == "COMPLETE"}
    assert len(after) == len(before) + 10
    assert all(after[k] == v for k, v in before.items())
    assert not any(t.state.name == "RUNNING" for t in st.trials)  # the killed trial left nothing


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("KVMODEL_TEST_POSTGRES_URL"),
                    reason="set KVMODEL_TEST_POSTGRES_URL (.ci/run starts a PostgreSQL server)")
def test_two_workers_share_a_postgres_study():
    url = os.environ["KVMODEL_TEST_POSTGRES_URL"]
    name = f"pg-{os.getpid()}-{time.time_ns()}"
    st = search.run(SMALL, n_trials=40, storage=url, study_name=name, sampler="tpe", workers=2)
    ts = st.get_trials()
    numbers = [t.number for t in ts]
    assert len(numbers) == len(set(numbers)) == max(numbers) + 1  # none duplicated, none lost
    done = [t for t in ts if t.state.name == "COMPLETE"]
    assert 40 <= len(done) <= 42  # each worker may finish one trial past the total
    optuna.delete_study(study_name=name, storage=url)


# ---- grid and reports --------------------------------------------------------------------------
def test_grid_search_optimum_and_optuna_gap():
    s = _small(dims=tuple(d if d.name != "dram_GB_per_node" else
                          dataclasses.replace(d, step=2048.0) for d in _small().dims))
    g = search.grid_search(s)
    assert len(g.points) == s.grid_size() == 4 * 3 * 4 * 4 * 3
    best, value = g.best()
    assert value == pytest.approx(np.max(g.values[g.feasible, 0]))
    assert search.evaluate_point(s, best).values[0] == pytest.approx(value)
    rep = search.compare_with_grid(s, budgets=(30,), seeds=(0,), grid=g)
    assert rep[0]["gap_mean"] >= -1e-9 and rep[0]["grid_points"] == len(g.points)


MIXED = {"fixed": {"model": "llama-3.1-8b", "gpu": "h100-sxm", "tp": 1, "precision": "fp8",
                   "routing": "prefix_affinity_bounded"},
         "workload": {"trace": "synthetic", "request_rate": 60.0,
                      "synthetic": {"n_requests": 800, "seed": 3, "system_prompt_tokens": 2048}},
         "slo": {"ttft_s": 0.6, "tpot_s": 0.04},
         "budget": {"max_cost_per_hour": 58.0},
         "dims": {"instances": {"choices": [2, 4]},
                  "sharing": {"choices": ["none", "central_pool", "p2p"]},
                  "pool_servers": {"range": [1, 2], "when": {"sharing": "central_pool"}},
                  "pool_dram_GB": {"choices": [64, 512], "when": {"sharing": "central_pool"}},
                  "p2p_replication": {"range": [1, 2], "when": {"sharing": "p2p"}},
                  "placement": {"choices": ["inclusive", "exclusive"]},
                  "hbm_kv_fraction": {"choices": [0.05, 0.5]},
                  "dram_GB_per_node": {"choices": [0, 16, 256]},
                  "cxl_GB_per_node": {"choices": [0, 64]}}}


def test_vectorised_grid_equals_scalar_evaluation_point_by_point():
    """Groups over sharing / pool / P2P / placement, capacities as numpy columns: every
    point's objective and constraint values equal the scalar evaluate_point's."""
    s = search.load_space(MIXED)
    g = search.grid_search(s)
    assert len(g.points) == len(search.grid_points(s)) == 2 * 2 * (1 + 4 + 2) * 2 * 3 * 2
    assert g.groups == 2 * 3 * 2  # instances x sharing x placement; pool and P2P sizes vectorised
    def key(p):
        return repr(sorted(p.items()))
    assert sorted(map(key, g.points)) == sorted(map(key, search.grid_points(s)))
    assert g.feasible.any() and not g.feasible.all()
    for i, p in enumerate(g.points):
        o = search.evaluate_point(s, p)
        np.testing.assert_allclose(g.values[i], o.values, rtol=1e-9)
        np.testing.assert_allclose(g.constraints[i], o.constraints, rtol=1e-9, atol=1e-12)
        assert g.feasible[i] == o.feasible
    assert g.outcome(int(np.argmin(g.feasible))).reason  # an infeasible point says why


def test_vectorised_max_rate_at_slo_equals_scalar_bisection():
    s = dataclasses.replace(search.load_space(MIXED),
                            metrics=("throughput_at_slo", "requests_per_dollar_at_slo"))
    s = dataclasses.replace(s, dims=tuple(d for d in s.dims if d.name in
                                          ("dram_GB_per_node", "hbm_kv_fraction")))
    g = search.grid_search(s)
    assert len(g.points) == 6 and g.groups == 1
    out_len = search._objectives.workload_for(s).output_len
    for i, p in enumerate(g.points):
        o = search.evaluate_point(s, p)
        np.testing.assert_allclose(g.values[i], o.values, rtol=1e-9)
        rate = o.metrics["max_rate_at_slo"]
        assert o.values == pytest.approx((rate * out_len, rate * 3600 / o.metrics["cost_usd_per_h"]))
    assert (g.values > 0).all()


def test_grid_of_a_third_of_a_million_points_is_vectorised():
    """tier-sizing on the synthetic trace: 8 instance counts x 381,480 / 8 capacity points,
    one evaluate() call per instance count."""
    s = dataclasses.replace(search.load_space("tier-sizing"),
                            workload={"trace": "synthetic",
                                      "synthetic": {"n_requests": 500, "seed": 1}})
    g = search.grid_search(s)
    assert len(g.points) == 8 * 5 * 33 * 17 * 17 and g.groups == 8
    assert np.isfinite(g.values).all() and g.best() is not None


def test_export_writes_csv_and_html(tmp_path):
    st = search.run(SMALL, n_trials=20, storage=optuna.storages.InMemoryStorage(), sampler="tpe")
    paths = search.export(st, tmp_path)
    text = paths["csv"].read_text().splitlines()
    assert len(text) == 21 and "goodput_per_dollar" in text[0] and "reason" in text[0]
    assert {"parallel", "history"} <= set(paths) and all(p.exists() for p in paths.values())


def test_cli_search_run_show_export(tmp_path, capsys):
    store = str(tmp_path / "s.journal")
    assert main(["search", "--space", SMALL, "--n-trials", "8", "--storage", store,
                 "--sampler", "random", "--no-progress", "--export", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "best feasible trials" in out and (tmp_path / "out" / "trials.csv").exists()
    assert main(["search", "show", "--storage", store, "--study-name", SMALL]) == 0
    assert "8 trials" in capsys.readouterr().out
    assert main(["search", "spaces"]) == 0 and "tier-sizing" in capsys.readouterr().out


def test_progress_bar_reports_trials_best_and_eta():
    import io
    buf = io.StringIO()
    bar = search.Progress(total=10, every_s=0.0, stream=buf)
    st = optuna.create_study(direction="maximize", sampler=make_sampler("random",
                                                                         search.load_space(TOY)))
    st.set_user_attr("metrics", ["x"])
    st.optimize(_toy, n_trials=10, callbacks=[bar])
    assert "10/10 trials" in buf.getvalue() and "best" in buf.getvalue() and "ETA" in buf.getvalue()


def test_import_kvmodel_does_not_import_optuna():
    code = "import sys, kvmodel; print('optuna' in sys.modules, 'kvmodel.search' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ---- windowed TPE, one write per trial, group commit -------------------------------------------
def _toy_float(trial):
    x = trial.suggest_float("x", 0.0, 10.0)
    y = trial.suggest_int("y", 0, 20, step=2)
    trial.set_user_attr("constraints", [x - 8.0])
    return -(x - 3.0) ** 2 - (y - 6) ** 2


def _tpe(**kw):
    return dict(seed=3, constraints_func=constraints_of, multivariate=True, n_startup_trials=10) | kw


def _plain_tpe(**kw):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constraints_func: FutureWarning in Optuna 5
        return optuna.samplers.TPESampler(**_tpe(constant_liar=False) | kw)


def test_windowed_tpe_is_optuna_tpe_until_the_window_fills():
    from kvmodel.search._samplers import WindowedTPESampler
    a = optuna.create_study(sampler=WindowedTPESampler(**_tpe(elite=10, recent=30)))
    b = optuna.create_study(sampler=_plain_tpe())
    a.optimize(_toy_float, n_trials=40)
    b.optimize(_toy_float, n_trials=40)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]


def test_window_keeps_the_true_elite_and_the_newest_trials():
    from kvmodel.search._samplers import WindowedTPESampler, gamma_exact, violation
    smp = WindowedTPESampler(**_tpe(elite=10, recent=20))
    st = optuna.create_study(direction="maximize", sampler=smp)
    sizes = []
    st.optimize(_toy_float, n_trials=120,
                callbacks=[lambda s, t: sizes.append(len(smp.window_trials()))])
    assert max(sizes) <= 10 + 20 + 20 // 3 and sizes[-1] >= 20
    smp.before_trial(st, st.trials[-1])          # merge the last trial as an ask would
    window = smp.window_trials()
    # the window's trials are lean copies: match them to the study's by parameters
    numbers = [next(t.number for t in st.trials if t.params == w.params) for w in window]
    assert numbers == sorted(numbers)
    assert set(range(100, 120)) <= set(numbers)                    # the 20 newest
    feas = sorted((t for t in st.trials if violation(t) <= 0), key=lambda t: -t.value)
    assert {t.number for t in feas[:10]} <= set(numbers)           # the 10 best feasible
    assert all(w.system_attrs["constraints"] == tuple(st.trials[n].user_attrs["constraints"])
               for w, n in zip(window, numbers))                   # constraints carried over
    assert gamma_exact(10, 20) and gamma_exact(25, 75) and not gamma_exact(5, 95)
    # TPE's good set (gamma = 3 for <= 30 trials) drawn from the window is the study's best 3
    ok = sorted((w for w in window if max(w.system_attrs["constraints"]) <= 0),
                key=lambda w: -w.value)
    assert [w.value for w in ok[:3]] == [t.value for t in feas[:3]]


def test_pareto_ranks_match_brute_force():
    from kvmodel.search._samplers import pareto_ranks
    rng = np.random.default_rng(0)
    v = rng.integers(0, 6, size=(40, 2)).astype(float)
    r = pareto_ranks(v)
    def dom(a, b):
        return np.all(a <= b) and np.any(a < b)
    front = {i for i in range(40) if not any(dom(v[j], v[i]) for j in range(40))}
    assert {i for i in range(40) if r[i] == 0} == front
    for i in range(40):  # every point of rank k > 0 is dominated by one of rank k - 1
        assert r[i] == 0 or any(dom(v[j], v[i]) and r[j] == r[i] - 1 for j in range(40))


def test_each_finished_trial_is_one_journal_line_and_resume_draws_anew(tmp_path):
    import json
    create_trial = 4   # Optuna's journal op code for a new trial (later op codes edit trials)
    path = tmp_path / "s.journal"
    search.run(SMALL, n_trials=10, storage=str(path), sampler="random")
    st = search.run(SMALL, n_trials=30, storage=str(path), sampler="random")
    logs = [json.loads(x) for x in path.read_text().splitlines()]
    trial_logs = [x for x in logs if x["op_code"] >= create_trial]
    assert [x["op_code"] for x in trial_logs] == [create_trial] * 30   # one line per trial
    assert all("datetime_start" in x for x in trial_logs)              # ... each a whole trial
    first = [t.params for t in st.trials[:10]]
    assert not any(t.params in first for t in st.trials[10:20])     # a new seed on resume
    assert all(t.state.name == "COMPLETE" for t in st.trials)
    assert optuna.load_study(study_name=SMALL, storage=search.open_storage(str(path))).trials \
        [5].user_attrs["metrics"] == st.trials[5].user_attrs["metrics"]


def test_journal_group_commit_writes_through_and_syncs(tmp_path):
    from kvmodel.search._storage import JournalFile
    b = JournalFile(str(tmp_path / "j"), fsync_every_s=3600.0)
    logs = [{"op_code": 0, "worker_id": "w", "study_name": f"s{i}", "directions": [1]}
            for i in range(3)]
    b.append_logs(logs[:1])
    assert b._dirty and list(JournalFile(str(tmp_path / "j")).read_logs(0)) == logs[:1]
    b.sync()
    assert not b._dirty
    b.append_logs(logs[1:])
    assert list(b.read_logs(0)) == logs and list(b.read_logs(2)) == logs[2:]
    assert list(b.read_logs(1)) == logs[1:] and list(b.read_logs(5)) == []
    with open(tmp_path / "j", "ab") as f:   # another writer's line, half written: not read yet
        f.write(b'{"op_code":0,"wor')
    assert list(b.read_logs(1)) == logs[1:]


def test_workers_see_each_others_trials(tmp_path):
    """Two mirrors on one journal: each copies in what the other finished before asking."""
    from kvmodel.search._study import _create, _Mirror
    space = search.load_space(SMALL)
    one, two = (search.open_storage(str(tmp_path / "w.journal")) for _ in range(2))
    a = _Mirror(_create(space, one, "w", None), one, optuna.samplers.RandomSampler(seed=1))
    b = _Mirror(_create(space, two, "w", None), two, optuna.samplers.RandomSampler(seed=2))
    for m in (a, a, b):
        t = m.mem.ask()
        t.suggest_float("x", 0, 1)
        m.mem.tell(t, 1.0)
        m.push(m.mem.trials[-1])
    assert a.pull() == b.pull() == 3
    assert len(a.mem.trials) == len(b.mem.trials) == 3


def test_window_elite_survives_trials_finishing_out_of_order():
    """Trials told out of ask order (parallel workers) still reach the elite."""
    from kvmodel.search._samplers import WindowedTPESampler
    smp = WindowedTPESampler(**_tpe(elite=3, recent=5))
    st = optuna.create_study(sampler=smp)
    held = [st.ask() for _ in range(3)]
    def f(t):
        t.set_user_attr("constraints", [0.0])
        return t.suggest_float("x", 0, 1) + 10.0
    for _ in range(12):
        st.optimize(f, n_trials=1)
    for t, v in zip(held, (-3.0, -2.0, -1.0)):  # the best three, finished last
        t.suggest_float("x", 0, 1)
        t.set_user_attr("constraints", [0.0])
        st.tell(t, v)
    for _ in range(12):                         # they fall out of the recent window ...
        st.optimize(f, n_trials=1)
    values = sorted(w.value for w in smp.window_trials())
    assert values[:3] == [-3.0, -2.0, -1.0]     # ... and stay in the elite


def test_refit_every_k_feeds_new_trials_once_per_k_draws_and_still_optimises():
    from kvmodel.search._samplers import WindowedTPESampler
    smp = WindowedTPESampler(**_tpe(elite=10, recent=30, refit_every=4))
    sizes = []
    st = optuna.create_study(direction="maximize", sampler=smp)
    st.optimize(_toy_float, n_trials=90,
                callbacks=[lambda s, t: sizes.append(len(smp.window_trials()))])
    assert sizes[:11] == list(range(11))       # start-up: every draw sees every trial
    runs = [len(list(g)) for _, g in itertools.groupby(sizes[11:])]
    assert max(runs) == 4 and len(runs) <= len(sizes[11:]) // 4 + 2  # then 4 trials at a time
    best = search.best_trials(st, top=1)[0]
    assert abs(best.params["x"] - 3.0) < 0.5 and best.params["y"] == 6
    for bad in (dict(refit_every=0), dict(elite=0), dict(constant_liar=True)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            WindowedTPESampler(**bad)


def test_batch_tpe_hook_exists_with_the_signature_kvmodel_overrides():
    """BatchTPESampler overrides one TPESampler method (pyproject pins Optuna to the versions
    that have it); if Optuna renames it, this fails instead of draws silently changing."""
    import inspect

    from kvmodel.search._samplers import HOOK
    method = getattr(optuna.samplers.TPESampler, HOOK)
    assert list(inspect.signature(method).parameters) == ["self", "samples", "mpe_below",
                                                          "mpe_above"]


class _FakeParzen:
    """log_pdf(samples) = scale * x: the acquisition l(x) / g(x) in logs is (a - b) * x."""
    def __init__(self, scale):
        self.scale = scale

    def log_pdf(self, samples):
        return self.scale * samples["x"]


def test_batch_tpe_returns_each_blocks_own_best_candidate():
    """k draws from one fit: block j's draw is the argmax of the acquisition over block j's
    n_ei candidates only (batch TPE: what k asks without new trials would return)."""
    from kvmodel.search._samplers import _batch_tpe_class
    smp = _batch_tpe_class()(3, n_ei_candidates=4, seed=0)
    x = np.array([1, 9, 2, 3,  8, 1, 0, 2,  5, 4, 6, 7,  99, 99, 99, 99], dtype=float)
    assert smp.k == 3
    smp.batching, smp.blocks, smp.extras = True, 3, []
    acq = smp._compute_acquisition_func({"x": x}, _FakeParzen(2.0), _FakeParzen(1.0))
    assert int(np.argmax(acq)) == 1                       # Optuna's argmax: block 0's best
    assert smp.extras == [[{"x": 8.0}, {"x": 7.0}]]       # blocks 1 and 2: their own best
    smp.batching, smp.extras = False, []                  # TPE's independent sampling:
    acq = smp._compute_acquisition_func({"x": x}, _FakeParzen(2.0), _FakeParzen(1.0))
    assert np.isinf(acq[4:]).all() and smp.extras == []   # one plain draw from block 0


def test_windowed_tpe_fits_once_per_k_draws_and_the_window_stays_bounded():
    """The per-ask cost does not grow with the study: one Parzen fit per refit_every draws
    (refit_every_full once the window is full), on a window of bounded size."""
    from kvmodel.search._samplers import WindowedTPESampler
    smp = WindowedTPESampler(**_tpe(elite=10, recent=30, refit_every=4, refit_every_full=8))
    st = optuna.create_study(direction="maximize", sampler=smp)
    fits, sizes = {}, []
    def cb(s, t):
        fits[len(s.trials)] = smp.fits
        sizes.append(len(smp.window_trials()))
    st.optimize(_toy_float, n_trials=300, callbacks=[cb])
    per_100 = [fits[n + 100] - fits[n] for n in (100, 200)]
    assert per_100 in ([12, 13], [13, 12], [13, 13], [12, 12]), per_100   # 100 / 8 each
    assert 7 <= fits[40] <= 9        # (40 - 10 start-up trials) / 4, before the window fills
    assert max(sizes) <= 10 + 30 + 30 // 3
    best = search.best_trials(st, top=1)[0]
    assert abs(best.params["x"] - 3.0) < 0.3 and best.params["y"] == 6


def test_resumed_tpe_search_continues_without_re_evaluating(tmp_path, monkeypatch):
    from kvmodel.search import _study
    calls = []
    real = _study.evaluate_point
    monkeypatch.setattr(_study, "evaluate_point", lambda sp, p: calls.append(p) or real(sp, p))
    path = str(tmp_path / "r.journal")
    first = [t.params for t in search.run(SMALL, n_trials=30, storage=path).trials]
    assert len(calls) == 30
    st = search.run(SMALL, n_trials=45, storage=path)
    assert len(calls) == 45                             # only the 15 new trials evaluated
    assert [t.params for t in st.trials[:30]] == first  # the stored ones kept as they were
    assert sum(t.state.name == "COMPLETE" for t in st.trials) == 45


def test_studies_open_in_optuna_dashboard(tmp_path):
    """optuna-dashboard's own API (its WSGI app, no server) lists the study and its trials
    with parameters, values and constraints from the default journal file."""
    import io
    import json
    dashboard = pytest.importorskip("optuna_dashboard")
    path = str(tmp_path / "s.journal")
    search.run(SMALL, n_trials=12, storage=path, sampler="tpe")
    app = dashboard.wsgi(search.open_storage(path))

    def get(url):
        status = []
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": url, "QUERY_STRING": "",
               "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "SERVER_NAME": "t",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
        body = b"".join(app(env, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200"), (status, body[:500])
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == [SMALL]
    study = get(f"/api/studies/{studies[0]['study_id']}")
    assert study["objective_names"] == ["goodput_per_dollar [req/$, maximise]"]  # not "Objective 0"
    assert len(study["trials"]) == 12
    t = study["trials"][0]
    assert t["state"] == "Complete" and t["params"] and t["values"]
    assert len(t["constraints"]) == len(search.CONSTRAINTS)


def test_cli_search_grid_prints_best_and_writes_every_point(tmp_path, capsys):
    import csv
    assert main(["search", "grid", "--space", SMALL, "--top", "2", "--export", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "960 points in 4 vectorised groups" in out and "best feasible by" in out
    g = search.grid_search(SMALL)
    with open(tmp_path / "grid.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(g.points) == 960
    for i in (0, 77, 959):  # rows follow the grid's point order
        p, row = g.points[i], table[i]
        assert all(float(row[k]) == pytest.approx(float(v)) for k, v in p.items())
        assert float(row["goodput_per_dollar"]) == pytest.approx(g.values[i, 0])
        assert row["feasible"] == str(bool(g.feasible[i]))
    top = g.top(5)
    vals = g.values[top, 0]
    assert list(vals) == sorted(vals, reverse=True) and vals[0] == g.best()[1]


def test_unstable_reason_is_prefixed_once():
    """An instance's reason already starts with 'unstable:'; the violation list does not add a
    second prefix, and a bare cluster reason gets one."""
    from kvmodel.search._objectives import _violations
    space = _small()
    base = {"stable": False, "ttft_p99_s": 1.0, "tpot_p99_s": 0.01, "cost_usd_per_h": 1.0,
            "ttft_s": 1.0, "tpot_s": 0.01, "ttft_p90_s": 1.0, "goodput_per_s": 0.0}
    for reason, want in (("unstable: 2.5 requests/s is beyond saturation",
                          "unstable: 2.5 requests/s is beyond saturation"),
                         ("network saturated: pool_nic utilisation 1.20",
                          "unstable: network saturated: pool_nic utilisation 1.20")):
        _, why = _violations(dict(base, reason=reason), space)
        assert why[0] == want
