"""Built-in traces: bundled, checksummed, loadable by name everywhere; a missing trace is a loud
error in the library, the CLI and the search; a copy of the repository with nothing beside it
has everything it needs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from kvmodel import search
from kvmodel.cli import main
from kvmodel.workload.traces import BUILTIN, DATA_DIR, TraceNotFoundError, builtin_path, load_trace


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_file_is_the_published_one(name):
    """Size and sha256 equal the upstream files' (kvmodel/_data/traces/README.md lists them)."""
    b = BUILTIN[name]
    data = b.path.read_bytes()
    assert len(data) == b.size_B
    assert hashlib.sha256(data).hexdigest() == b.sha256
    readme = (DATA_DIR / "README.md").read_text()
    assert b.sha256 in readme and f"`{name}`" in readme and b.file in readme


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_loads_by_name_like_its_file(name):
    b = BUILTIN[name]
    by_name = load_trace(name)
    by_path = load_trace(b.path)
    assert by_name.name == name and by_path.name == b.file
    assert len(by_name) == b.requests
    np.testing.assert_array_equal(by_name.arrival_s, by_path.arrival_s)
    np.testing.assert_array_equal(by_name.input_len, by_path.input_len)
    np.testing.assert_array_equal(by_name.block_ids, by_path.block_ids)
    assert (by_name.unique_blocks > 0) == b.prefix_hashes


def test_licences_ship_beside_the_data():
    assert "Apache License" in (DATA_DIR / "LICENSE-APACHE").read_text()
    readme = (DATA_DIR / "README.md").read_text()
    assert "CC BY 4.0" in readme and "creativecommons.org/licenses/by/4.0" in readme
    assert "Splitwise" in readme and "Mooncake" in readme
    assert {b.licence for b in BUILTIN.values()} == {"Apache-2.0", "CC-BY-4.0"}


def test_old_space_spelling_still_loads():
    assert builtin_path("mooncake:conversation") == BUILTIN["mooncake-conversation"].path


def test_missing_trace_names_the_file_and_the_builtins(tmp_path):
    with pytest.raises(TraceNotFoundError) as err:
        load_trace(tmp_path / "conversation_trace.jsonl")
    msg = str(err.value)
    assert "conversation_trace.jsonl" in msg and all(n in msg for n in BUILTIN)
    assert isinstance(err.value, FileNotFoundError)  # callers catching FileNotFoundError keep working
    with pytest.raises(TraceNotFoundError, match="is a directory"):
        load_trace(tmp_path)
    with pytest.raises(KeyError, match="mooncake-conversation"):
        builtin_path("mooncake-chat")


def test_cli_lists_and_summarises(capsys):
    assert main(["traces"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in BUILTIN) and "Apache-2.0" in out and "CC-BY-4.0" in out
    assert main(["traces", "mooncake-synthetic"]) == 0
    out = capsys.readouterr().out
    assert "3,993 requests" in out and BUILTIN["mooncake-synthetic"].sha256 in out


def test_cli_missing_trace_exits_non_zero(capsys):
    assert main(["traces", "no-such-trace.jsonl"]) != 0
    err = capsys.readouterr().err
    assert "no-such-trace.jsonl" in err and "mooncake-conversation" in err


def _space_with_trace(tmp_path: Path, trace: str) -> Path:
    src = (Path(search.__file__).parent / "spaces" / "tier-sizing.toml").read_text()
    text, n = re.subn(r'(?m)^trace = .*$', f'trace = "{trace}"', src)
    assert n == 1
    path = tmp_path / "missing.toml"
    path.write_text(text)
    return path


def test_search_and_grid_fail_fast_on_a_missing_trace(tmp_path, capsys):
    """No trial is stored as infeasible: the run stops before its first trial."""
    import optuna
    space = _space_with_trace(tmp_path, "gone.jsonl")
    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(TraceNotFoundError, match="gone.jsonl"):
        search.run(str(space), n_trials=3, storage=storage)
    assert all(len(optuna.load_study(study_name=s.study_name, storage=storage).trials) == 0
               for s in optuna.get_all_study_summaries(storage))
    with pytest.raises(TraceNotFoundError, match="mooncake-conversation"):
        search.grid_search(str(space))
    journal = tmp_path / "s.journal"
    assert main(["search", "--space", str(space), "--n-trials", "2", "--storage", str(journal),
                 "--no-progress"]) != 0
    assert "gone.jsonl" in capsys.readouterr().err
    assert main(["search", "grid", "--space", str(space)]) != 0
    assert "gone.jsonl" in capsys.readouterr().err


def test_space_trace_relative_to_its_file(tmp_path):
    """A trace path in a space file is read relative to the file (here a copy of a built-in)."""
    shutil.copy(BUILTIN["mooncake-synthetic"].path, tmp_path / "mine.jsonl")
    space = search.load_space(str(_space_with_trace(tmp_path, "mine.jsonl")))
    from kvmodel.search._objectives import check_trace, workload_for
    check_trace(space)
    assert len(workload_for(space).trace) == BUILTIN["mooncake-synthetic"].requests


def test_no_code_reads_a_sibling_shared_folder():
    """Users never have ../shared: no source, test, study, benchmark or app file refers to it."""
    pattern = re.compile(r"""shared["']?\s*/\s*["']?traces|["']shared["']\s*\)?\s*/|/work/shared""")
    offenders = []
    for top in ("kvmodel", "app", "tests", "benchmarks", "studies"):
        for path in (ROOT / top).rglob("*"):
            if path.suffix in (".py", ".toml") and path != Path(__file__).resolve() \
                    and pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


_FRESH = textwrap.dedent("""
    import json, sys, optuna
    import kvmodel
    from kvmodel import search
    out = {"file": kvmodel.__file__, "traces": {}, "spaces": {}}
    for name in kvmodel.workload.traces.BUILTIN:
        out["traces"][name] = len(kvmodel.load_trace(name))
    for name in search.builtin_spaces():
        st = search.run(name, n_trials=6, storage=optuna.storages.InMemoryStorage(), seed=0)
        out["spaces"][name] = sum(search.is_feasible(t) for t in st.trials)
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_fresh_copy_without_siblings_has_traces_and_feasible_spaces(tmp_path):
    """The repository copied alone (no ../shared beside it) loads every built-in trace and
    finds feasible trials in every built-in space."""
    copy = tmp_path / "kvmodel-checkout"
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.journal", "results",
                                    ".pytest_cache", ".hypothesis")
    for top in ("kvmodel", "hardware_db", "app", "pyproject.toml", "README.md"):
        src = ROOT / top
        (shutil.copytree(src, copy / top, ignore=ignore) if src.is_dir()
         else shutil.copy(src, copy / top))
    assert not (copy.parent / "shared").exists()
    env = dict(os.environ, PYTHONPATH=str(copy))
    env.pop("KVMODEL_TRACE_DIR", None)
    run = subprocess.run([sys.executable, "-c", _FRESH], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(copy)
    assert out["traces"] == {n: b.requests for n, b in BUILTIN.items()}
    assert set(out["spaces"]) == set(search.builtin_spaces())
    assert all(n > 0 for n in out["spaces"].values()), out["spaces"]
