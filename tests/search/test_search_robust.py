"""Bad inputs and faults in the search layer (reliability audit): non-finite and out-of-range
space values, trials that always fail, a study reused with another space, signals, the CLI."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from kvmodel import search
from kvmodel.cli import main
from kvmodel.search import _study
from kvmodel.search._space import SPACES_DIR

ROOT = Path(__file__).resolve().parents[2]
SMALL = "tier-sizing-small"
SMALL_TOML = SPACES_DIR / f"{SMALL}.toml"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _small_dict() -> dict:
    return tomllib.loads(SMALL_TOML.read_text())


def _patched(path: tuple, value) -> dict:
    """The built-in small space as a dict with the value at ``path`` replaced."""
    d = _small_dict()
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return d


# ---- 1. a NaN in a space file ----------------------------------------------------------------
def test_nan_slo_in_a_space_file_is_rejected_before_any_trial(tmp_path, capsys):
    """The audit's repro: ttft_s = nan and request_rate = 0.5 ran forever storing FAIL trials."""
    text = SMALL_TOML.read_text().replace("ttft_s = 1.0", "ttft_s = nan") \
        .replace("request_rate = 12.0", "request_rate = 0.5")
    assert "ttft_s = nan" in text and "request_rate = 0.5" in text
    (tmp_path / "nan.toml").write_text(text)
    store = tmp_path / "x.journal"
    assert main(["search", "--space", str(tmp_path / "nan.toml"), "--n-trials", "5",
                 "--storage", str(store)]) == 2
    err = capsys.readouterr().err
    assert "ttft_s" in err and "nan" in err and "finite" in err
    assert not store.exists()


def _nan_outcome(space, params):
    return search.Outcome(values=(math.nan,), constraints=(0.0,) * len(search.CONSTRAINTS),
                          metrics={}, reason="")


def test_a_search_whose_every_trial_fails_stops_with_a_clear_error(monkeypatch):
    """Trials with a non-finite objective are FAIL and not counted; the loop ends after
    MAX_CONSECUTIVE_FAILS of them in a row instead of running forever."""
    monkeypatch.setattr(_study, "evaluate_point", _nan_outcome)
    store = optuna.storages.InMemoryStorage()
    with pytest.raises(search.SearchError, match=r"20 trials in a row failed.*non-finite"):
        search.run(SMALL, n_trials=5, storage=store, sampler="random")
    st = optuna.load_study(study_name=SMALL, storage=store)
    assert [t.state.name for t in st.trials] == ["FAIL"] * _study.MAX_CONSECUTIVE_FAILS


def test_sporadic_failures_do_not_stop_the_search_and_are_not_counted(monkeypatch):
    calls = []

    def every_third_fails(space, params):
        calls.append(1)
        return _nan_outcome(space, params) if len(calls) % 3 == 0 else real(space, params)
    real = _study.evaluate_point
    monkeypatch.setattr(_study, "evaluate_point", every_third_fails)
    st = search.run(SMALL, n_trials=10, storage=optuna.storages.InMemoryStorage(),
                    sampler="random")
    states = [t.state.name for t in st.trials]
    assert states.count("COMPLETE") == 10 and states.count("FAIL") == 4  # trials 3, 6, 9, 12


# ---- 5. range checks ---------------------------------------------------------------------------
BAD_VALUES = [
    (("dims", "instances", "choices"), [0, -4], "instances", "0"),
    (("dims", "dram_GB_per_node", "range"), [-4096, -1024], "dram_GB_per_node", "-4096"),
    (("dims", "hbm_kv_fraction", "choices"), [1.5], "hbm_kv_fraction", "1.5"),
    (("workload", "request_rate"), math.nan, "request_rate", "nan"),
    (("workload", "request_rate"), math.inf, "request_rate", "inf"),
    (("workload", "synthetic", "n_requests"), -5, "n_requests", "-5"),
    (("budget", "max_cost_per_hour"), -100.0, "max_cost_per_hour", "-100"),
    (("fixed", "tp"), 0, "'tp'", "0"),
    (("dims", "dram_GB_per_node", "step"), math.nan, "dram_GB_per_node.*step", "nan"),
    (("dims", "dram_GB_per_node", "range"), [0, 1e300], "dram_GB_per_node", "1e\\+300"),
    (("workload", "synthetic", "n_requestz"), 5, "n_requestz", "n_requests"),
    (("slo", "tpot_s"), -math.inf, "tpot_s", "-inf"),
]


@pytest.mark.parametrize("path,value,field,shown", BAD_VALUES)
def test_out_of_range_values_name_field_value_and_allowed_range(path, value, field, shown):
    with pytest.raises(search.SpaceError, match=rf"{field}.*{shown}") as exc:
        search.load_space(_patched(path, value))
    if "n_requestz" not in path:
        assert "must be" in str(exc.value)   # the allowed range or kind follows


def test_tiny_step_is_counted_not_built_by_the_grid(monkeypatch):
    """step = 1e-9 on [0, 4096] GB is 4.1e12 points: the max_points guard must fire before the
    value list exists (it used to exhaust memory)."""
    s = search.load_space(_patched(("dims", "dram_GB_per_node", "step"), 1e-9))
    big = s.dim("dram_GB_per_node")
    assert big.grid_count() >= 4_095_999_999_999      # floor(4096 / 1e-9) + 1, up to rounding
    built = []
    real = search.Dim.grid_values
    monkeypatch.setattr(search.Dim, "grid_values",
                        lambda d, n=5: built.append(d.name) or real(d, n))
    with pytest.raises(ValueError, match="max_points"):
        search.grid_search(s)
    assert "dram_GB_per_node" not in built
    with pytest.raises(ValueError, match="grid points"):
        search.make_sampler("grid", s)


@pytest.mark.parametrize("name", search.builtin_spaces())
def test_grid_count_equals_the_length_of_the_grid_values(name):
    for d in search.load_space(name).dims:
        assert d.grid_count() == len(d.grid_values()), d.name


# ---- 2. one study, one space -----------------------------------------------------------------
def test_space_digest_is_content_not_spelling():
    a = search.load_space(SMALL)
    assert search.load_space(_small_dict()).digest == a.digest   # file == dict
    assert dataclasses.replace(a, description="other words").digest == a.digest
    assert dataclasses.replace(a, slo=a.slo | {"ttft_s": 2.0}).digest != a.digest


def test_a_study_refuses_trials_of_another_space(tmp_path):
    store = str(tmp_path / "s.journal")
    search.run(SMALL, n_trials=3, storage=store, sampler="random")
    other = _patched(("slo", "ttft_s"), 2.0)               # same name, other content
    with pytest.raises(search.SearchError, match=rf"'{SMALL}' \(sha256 \w{{12}}\), not on "
                                                 rf"space '{SMALL}' \(sha256 \w{{12}}\)"):
        search.run(other, n_trials=5, storage=store, sampler="random")
    renamed = _small_dict() | {"name": "tier-sizing-copy"}  # same content, other name
    with pytest.raises(search.SearchError, match="tier-sizing-copy"):
        search.run(renamed, n_trials=5, storage=store, study_name=SMALL, sampler="random")
    st = search.run(SMALL, n_trials=5, storage=store, sampler="random")  # the same: resumes
    assert len(st.trials) == 5
    assert st.user_attrs["kvmodel_space_sha256"] == search.load_space(SMALL).digest


# ---- 6. command line ---------------------------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["--n-trials", "-5"], "--n-trials -5"), (["--workers", "0"], "--workers 0"),
    (["--top", "-3"], "--top -3")])
def test_cli_rejects_non_positive_counts(tmp_path, capsys, args, needle):
    store = tmp_path / "s.journal"
    assert main(["search", "--space", SMALL, "--storage", str(store), *args]) == 2
    assert needle in capsys.readouterr().err and not store.exists()


@pytest.mark.parametrize("store", ["missing.journal", "sqlite:///missing.db"])
def test_cli_show_on_a_missing_storage_errs_and_creates_nothing(tmp_path, capsys, store,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "show", "--storage", store]) == 2
    assert "no such file" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_cli_bad_storage_url_is_an_error_not_a_traceback(capsys):
    assert main(["search", "--space", SMALL, "--storage", "bogus://x", "--n-trials", "2"]) == 2
    assert "'bogus://x': cannot open it" in capsys.readouterr().err


def test_two_workers_stop_at_exactly_n_trials(tmp_path):
    st = search.run(SMALL, n_trials=41, storage=str(tmp_path / "w.journal"), sampler="random",
                    workers=2)
    states = [t.state.name for t in st.trials]
    assert states == ["COMPLETE"] * 41


# ---- 3. signals ----------------------------------------------------------------------------
def _complete(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        st = optuna.load_study(study_name=SMALL, storage=search.open_storage(str(store)))
    except KeyError:
        return 0
    return sum(t.state.name == "COMPLETE" for t in st.get_trials(deepcopy=False))


@pytest.mark.slow
@pytest.mark.parametrize("sig,workers", [(signal.SIGINT, 2), (signal.SIGTERM, 2),
                                         (signal.SIGINT, 1)])
def test_signal_stops_the_search_cleanly_and_it_resumes(tmp_path, sig, workers):
    store = tmp_path / "s.journal"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "kvmodel.cli", "search", "--space", SMALL,
                             "--n-trials", "1000000", "--workers", str(workers), "--storage",
                             str(store), "--sampler", "random", "--no-progress"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while _complete(store) < 20 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "rerun the same command to resume" in err
    n = _complete(store)
    assert n >= 20 and f"holds {n} complete trial(s)" in err  # the workers stopped writing
    st = search.run(SMALL, n_trials=n + 3, storage=str(store), sampler="random")
    assert [t.state.name for t in st.trials] == ["COMPLETE"] * (n + 3)


# ---- 7. property: any mutation is rejected by name or evaluates cleanly ------------------------
def _leaves(d: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _leaves(v, prefix + (k,))
        elif isinstance(v, list) and k in ("choices", "range"):
            out += [prefix + (k, i) for i in range(len(v))]
        elif k not in ("schema_version", "name", "description"):
            out.append(prefix + (k,))
    return out


BASE = _small_dict()
LEAVES = _leaves(BASE)
TABLES = [(), ("fixed",), ("workload",), ("workload", "synthetic"), ("slo",), ("budget",),
          ("dims", "instances")]
JUNK = [math.nan, math.inf, -math.inf, -1, -5, 0, 0.0, 1e300, 10**30, -1e-9, 0.5, 3, 1e5,
        "x", True, [], {}]


def _mutate(data: dict, path: tuple, value) -> None:
    node = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _named_in(path: tuple, message: str) -> bool:
    names = [p for p in path if isinstance(p, str) and p not in ("choices", "range", "dims")]
    return names[-1] in message


def _corners(space: search.Space) -> list[dict]:
    """Two points: every dimension at its first choice / low end, then last / high end."""
    pick = [lambda d: d.choices[0] if d.choices else d.low,
            lambda d: d.choices[-1] if d.choices else d.high]
    pts = []
    for f in pick:
        p = {}
        for d in space.dims:
            if d.active(space.fixed | p):
                v = f(d)
                p[d.name] = int(v) if d.is_int else v
        pts.append(p)
    return pts


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(hs.lists(hs.tuples(hs.sampled_from(LEAVES), hs.sampled_from(JUNK)), min_size=1,
                max_size=2),
       hs.one_of(hs.none(), hs.sampled_from(TABLES)))
def test_mutated_space_is_rejected_by_name_or_evaluates_to_finite_results(mutations, extra):
    data = copy.deepcopy(BASE)
    for path, value in mutations:
        _mutate(data, path, value)
    if extra is not None:
        _mutate(data, extra + ("bogus_key",), 1)
    try:
        space = search.load_space(data)
        search._objectives.check_names(space)
        outcomes = [search.evaluate_point(space, p) for p in _corners(space)]
    except (ValueError, KeyError, TypeError, FileNotFoundError) as exc:
        # FileNotFoundError: kvmodel.workload.traces.TraceNotFoundError, a trace name that is
        # neither built in nor a file (its message names the trace)
        named = [p for p, _ in mutations] + ([] if extra is None else [extra + ("bogus_key",)])
        assert any(_named_in(p, str(exc)) for p in named), (mutations, extra, str(exc))
        return
    for o in outcomes:
        assert all(math.isfinite(v) for v in o.values + o.constraints), (mutations, o)
        assert o.feasible == all(c <= 0 for c in o.constraints)
        assert (o.reason == "") == o.feasible, (mutations, o.reason)


# ---- kvmodel uses Optuna's public API only --------------------------------------------------
def _optuna_private_names(tmp: Path) -> set[str]:
    """Private (``_x``, not dunder) names Optuna's classes and objects carry: class members of
    every public Optuna class, plus instance attributes of a live study, trial and storages."""
    import inspect

    from optuna.storages import journal
    def private(names):
        return {n for n in names if n.startswith("_") and not n.startswith("__")}
    out: set[str] = set()
    for mod in (optuna.study, optuna.trial, optuna.storages, optuna.samplers, journal,
                optuna.distributions, optuna.pruners, optuna.search_space):
        for obj in vars(mod).values():
            if inspect.isclass(obj) and obj.__module__.startswith("optuna"):
                out |= private(dir(obj))
    st = optuna.create_study(storage=journal.JournalStorage(
        journal.JournalFileBackend(str(tmp / "p.journal"))))
    trial = st.ask()
    frozen = st.tell(trial, 1.0)
    for obj in (st, trial, frozen, st._storage, optuna.samplers.TPESampler(),
                optuna.storages.InMemoryStorage(), optuna.storages.RDBStorage("sqlite://")):
        out |= private(vars(obj))
    return out


def _own_self_attrs(tree) -> set[tuple[int, str]]:
    """(class line, attribute) of every ``self._x = ...`` a class body assigns itself."""
    import ast
    own = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for node in ast.walk(cls):
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name) and node.value.id == "self"):
                own.add((cls.lineno, node.attr))
    return own


def _private_optuna_uses(source: str, names: set[str]) -> list[str]:
    """Lines of ``source`` that import a private Optuna module or name, reach a private name
    through ``optuna.``, or touch an attribute Optuna keeps private (``study._storage``) other
    than one its own class assigns on ``self``."""
    import ast
    tree = ast.parse(source)
    own = _own_self_attrs(tree)
    ours = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
            and (n.level or (n.module or "").startswith("kvmodel")) for a in n.names}
    classes = [(c.lineno, c.end_lineno) for c in ast.walk(tree) if isinstance(c, ast.ClassDef)]
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optuna"):
            parts = node.module.split(".") + [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            parts = [p for a in node.names if a.name.startswith("optuna")
                     for p in a.name.split(".")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            root = node
            while isinstance(root, ast.Attribute):
                root = root.value
            on_optuna = isinstance(root, ast.Name) and root.id == "optuna"
            mine = isinstance(node.value, ast.Name) and node.value.id == "self" and any(
                a <= node.lineno <= b and (a, node.attr) in own for a, b in classes)
            mine = mine or isinstance(root, ast.Name) and root.id in ours  # kvmodel's modules
            parts = [node.attr] if (on_optuna or node.attr in names) and not mine else []
        else:
            continue
        if any(p.startswith("_") and not p.startswith("__") for p in parts):
            bad.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return bad


def test_kvmodel_and_the_app_use_no_private_optuna_name(tmp_path):
    names = _optuna_private_names(tmp_path)
    assert {"_storage", "_study_id", "_trial_id", "_get_trials", "_rng"} <= names
    old = ("from optuna.samplers._tpe import sampler as tpe\n"
           "import optuna.storages.journal._storage\n"
           "from optuna.study import _constrained_optimization\n"
           "x = optuna.samplers._tpe.sampler._split_trials\n"
           "y = study._storage.create_new_trial(study._study_id)\n"
           "z = store._get_trials(sid)\n"
           "w = [t._trial_id for t in trials]\n"
           "class S(optuna.samplers.TPESampler):\n"
           "    def f(self):\n"
           "        return self._rng.rng\n"
           "class Mine:\n"
           "    def __init__(self):\n"
           "        self._rng = 1\n"
           "    def g(self):\n"
           "        return self._rng, self.__class__\n"
           "from . import _estimate\n"
           "s = _estimate._params()\n")
    found = _private_optuna_uses(old, names)
    lines = sorted({int(f.split(":")[0].split()[1]) for f in found})
    assert lines == [1, 2, 3, 4, 5, 6, 7, 10], found     # not Mine's own self._rng
    bad = {}
    for path in sorted([*(ROOT / "kvmodel").rglob("*.py"), *(ROOT / "app").rglob("*.py")]):
        uses = _private_optuna_uses(path.read_text(), names)
        if uses:
            bad[str(path.relative_to(ROOT))] = uses
    assert not bad, bad
