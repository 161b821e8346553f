"""Search: read Optuna studies (best configurations, Pareto front, parallel coordinates,
parameter importances) and, when ``kvmodel.search`` is installed, launch a short study."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

import _common as ui
import pandas as pd
import streamlit as st

RESULTS = ui.REPO_DIR / "studies" / "results"
STORAGE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".journal", ".log")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
FALLBACK_STORAGE = "kvmodel-search.journal"
ALLOWED = ("a journal file path (e.g. studies/results/x.journal), a SQLite file (.db, .sqlite, "
           ".sqlite3) or an SQLAlchemy URL (sqlite:///path.db, postgresql+psycopg://user@host/db, "
           "mysql+pymysql://user@host/db)")
PENDING = "search_show_study"  # session key: the study to select on the next run (after a launch)


def search_module() -> tuple[Any | None, str]:
    """(``kvmodel.search``, "") if importable, else (None, why). Imported lazily."""
    try:
        return importlib.import_module("kvmodel.search"), ""
    except ImportError as exc:
        return None, f"`kvmodel.search` is not installed ({exc})"
    except Exception as exc:  # a half-written module must not take the page down
        return None, f"`kvmodel.search` failed to import: {type(exc).__name__}: {exc}"


def discovered() -> list[str]:
    """Study storages found in the repository root and under studies/results."""
    found = [p for p in ui.REPO_DIR.glob("*") if p.suffix in STORAGE_SUFFIXES]
    if RESULTS.is_dir():
        found += [p for p in RESULTS.rglob("*") if p.suffix in STORAGE_SUFFIXES]
    return sorted(str(p.relative_to(ui.REPO_DIR)) for p in found if p.is_file())


def resolve(text: str, must_exist: bool = True) -> tuple[str, str]:
    """(storage: an RDB URL, or an absolute file path of a SQLite/journal file, error)."""
    s = text.strip()
    if not s:
        return "", "Give a storage URL or a file path."
    if "://" in s:
        path = Path(s.removeprefix("sqlite:///"))
        if s.startswith("sqlite:///") and must_exist and not path.is_file():
            return "", f"No SQLite file at {path}"
        return s, ""
    p = Path(s).expanduser()
    p = p if p.is_absolute() else ui.REPO_DIR / p
    if must_exist and not p.is_file():
        return "", f"No study storage at {p}"
    return str(p), ""


@st.cache_resource(show_spinner=False, max_entries=8)
def storage(spec: str) -> Any:
    """The Optuna storage object of a URL or a file path (SQLite by suffix, else journal)."""
    import optuna

    if "://" not in spec and Path(spec).suffix in SQLITE_SUFFIXES:
        spec = f"sqlite:///{spec}"
    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    Path(spec).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(spec))


def storage_error(spec: str, exc: BaseException) -> str:
    """What went wrong opening ``spec`` (first line of the back end's message) and what is allowed."""
    lines = str(exc).strip().splitlines()
    return (f"Cannot open the storage {spec!r} ({type(exc).__name__}: {lines[0] if lines else ''})."
            f" Allowed: {ALLOWED}.")


def read_summaries(spec: str) -> tuple[list[Any], str]:
    """(summaries of the studies in ``spec``, "") or ([], why it cannot be read).

    The storage is user input and each back end raises its own exception types (SQLAlchemy,
    psycopg, json, UnicodeDecodeError of a binary file), so every Exception becomes a message."""
    import optuna

    try:
        return optuna.get_all_study_summaries(storage=storage(spec), include_best_trial=False), ""
    except Exception as exc:  # noqa: BLE001 (see the docstring)
        return [], storage_error(spec, exc)


def unit_of(mod: Any | None, name: str) -> str:
    """The unit of an objective or metric column ("" when unknown)."""
    obj = getattr(mod, "OBJECTIVES", {}).get(name)
    if obj is not None:
        return obj.unit
    for suffix, unit in (("_tok_per_s", "tok/s"), ("_per_s", "req/s"), ("_s", "s"),
                         ("_Bps", "B/s"), ("_B", "B"), ("_rps", "req/s"), ("_usd_per_h", "$/h"),
                         ("_usd_per_mtok", "$/Mtok"), ("cost_per_hour", "$/h"),
                         ("cost_per_mtok", "$/Mtok")):
        if name.endswith(suffix):
            return unit
    return ""


def unit_label(mod: Any | None, name: str) -> str:
    unit = unit_of(mod, name)
    return f"{name} ({unit})" if unit else name


def units(mod: Any | None, columns: Any) -> dict[str, str]:
    """Formatting units of the columns the table formatter knows (others: plain numbers)."""
    out = {c: unit_of(mod, str(c)) for c in columns}
    return {c: u for c, u in out.items() if u in ui.FORMATS}


def objective_names(study: Any) -> list[str]:
    n = len(study.directions)
    names = study.user_attrs.get("metrics") or study.metric_names or []
    return list(names) if len(names) == n else [f"objective {i}" for i in range(n)]


def feasible(t: Any) -> bool:
    c = t.user_attrs.get("constraints")
    return c is None or all(x <= 0 for x in c)


def best(study: Any, mod: Any | None) -> list[Any]:
    if mod is not None and hasattr(mod, "best_trials") and "kvmodel_space" in study.user_attrs:
        return mod.best_trials(study=study, top=10)
    if len(study.directions) > 1:
        return [t for t in study.best_trials if feasible(t)]
    import optuna
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if feasible(t)]
    sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(done, key=lambda t: sign * t.value)[:10]


def trial_rows(trials: list[Any], names: list[str]) -> pd.DataFrame:
    rows = []
    for t in trials:
        m = t.user_attrs.get("metrics", {})
        rows.append(dict(trial=t.number, **dict(zip(names, t.values or [])), **t.params,
                         **{k: v for k, v in m.items() if k not in ("reason", "feasible")}))
    return pd.DataFrame(rows)


def plots(study: Any, names: list[str], idx: int) -> list[tuple[str, Callable[[], Any]]]:
    import optuna.visualization as vis

    multi = len(names) > 1
    kw: dict[str, Any] = dict(target=lambda t: t.values[idx], target_name=names[idx]) if multi else {}
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    cons = [t.user_attrs.get("constraints") for t in done]
    pareto_kw: dict[str, Any] = {}
    if cons and all(c is not None and len(c) == len(cons[0]) for c in cons):
        pareto_kw["constraints_func"] = lambda t: list(t.user_attrs["constraints"])
    out: list[tuple[str, Callable[[], Any]]] = []
    if multi and len(names) <= 3:
        out.append(("Pareto front",
                    lambda: vis.plot_pareto_front(study, target_names=names, **pareto_kw)))
    else:
        out.append(("Optimization history", lambda: vis.plot_optimization_history(study, **kw)))
    out.append(("Parallel coordinates", lambda: vis.plot_parallel_coordinate(study, **kw)))
    out.append(("Parameter importances", lambda: vis.plot_param_importances(study, **kw)))
    return out


@st.cache_data(show_spinner="Plotting…", max_entries=32)
def figure(spec: str, name: str, n_trials: int, title: str, idx: int,
           _make: Callable[[], Any]) -> tuple[Any, str]:
    return ui.guarded(_make)


def show_study(spec: str, name: str, mod: Any | None) -> None:
    import optuna

    study = optuna.load_study(study_name=name, storage=storage(spec))
    names = objective_names(study)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    st.caption(f"{len(done)} complete trials of {len(study.trials)}, "
               f"{sum(feasible(t) for t in done)} feasible; objectives: "
               + ", ".join(f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions)))
    if not done:
        st.info("No complete trials yet.")
        return
    st.subheader("Pareto front (feasible)" if len(names) > 1 else "Best feasible configurations")
    top = trial_rows(best(study, mod), names)
    if top.empty:
        st.warning("No feasible trial: every configuration violates a constraint (SLO, fit, "
                   "stability, budget or tier bandwidth).")
    else:
        ui.show_table(top, f"{name}_best", "best", units=units(mod, top.columns))
    idx = 0
    if len(names) > 1:
        idx = names.index(ui.select("Objective for the single-target plots", names, "objective",
                                    names[0], format_func=lambda n: unit_label(mod, n)))
    for i, (title, make) in enumerate(plots(study, names, idx)):
        st.subheader(title)
        fig, err = figure(spec, name, len(study.trials), title, idx, make)
        if err:
            st.info(f"{title} not available: {err}")
            continue
        ui.show_chart(fig, f"{name}_{title.lower().replace(' ', '_')}", f"plot{i}")
    with st.expander("All trials"):
        ours = mod is not None and hasattr(mod, "rows") and "kvmodel_space" in study.user_attrs
        rows = pd.DataFrame(mod.rows(study=study)) if ours else study.trials_dataframe()
        ui.show_table(rows, f"{name}_trials", "trials")


def launch(mod: Any, target: str) -> None:
    """Run ``kvmodel.search.run`` in chunks so that a progress bar can follow it."""
    spaces = mod.builtin_spaces() if hasattr(mod, "builtin_spaces") else []
    if not hasattr(mod, "run") or not spaces:
        st.info("This version of kvmodel.search offers no `run` / built-in spaces to launch.")
        return
    with st.form("launch"):
        c = st.columns(4)
        space = c[0].selectbox("Space", spaces, index=spaces.index("tier-sizing-small")
                               if "tier-sizing-small" in spaces else 0)
        samplers = list(getattr(mod, "SAMPLERS", ("tpe",)))
        sampler = c[1].selectbox("Sampler", samplers)
        n = int(c[2].number_input("Trials", 1, 2000, 50))
        name = c[3].text_input("Study name (empty: the space's name)", "")
        submitted = st.form_submit_button("Run")
    if not submitted:
        return
    _, err = read_summaries(target)
    if err or not run_chunks(mod, target, space, sampler, n, name):
        if err:
            st.error(err)
        return
    st.session_state["search_done"] = f"Study {(name or space)!r} holds {n} complete trials."
    # the Study selectbox exists already in this run: select the new study on the next one
    st.session_state[PENDING] = name or space
    storage.clear()
    st.rerun()


def run_chunks(mod: Any, target: str, space: str, sampler: str, n: int, name: str) -> bool:
    """Run ``kvmodel.search.run`` in chunks under a progress bar; False (and an error) if it fails."""
    bar = st.progress(0.0, text=f"0 / {n} trials")
    step = max(1, n // 20)
    for k in [*range(step, n, step), n]:
        try:
            mod.run(space=space, n_trials=k, storage=target, study_name=name or None,
                    sampler=sampler)
        except Exception as exc:  # noqa: BLE001 (storage back ends raise their own types)
            st.error(f"The study failed on {target!r}: {type(exc).__name__}: "
                     f"{(str(exc).strip().splitlines() or [''])[0]}")
            return False
        bar.progress(k / n, text=f"{k} / {n} trials")
    return True


GRID_LIMIT = 500_000  # points; tier-sizing's 381,480 take a few seconds


def grid(mod: Any) -> None:
    """Evaluate every grid point of a built-in space in numpy (``kvmodel.search.grid_search``)."""
    if not (hasattr(mod, "grid_search") and hasattr(mod, "builtin_spaces")):
        return
    st.header("Exhaustive grid")
    st.caption("Every grid point of a space, evaluated in numpy: structural choices as groups, "
               f"capacities and pool / P2P sizes as columns (up to {GRID_LIMIT:,} points).")
    spaces = mod.builtin_spaces()
    c = st.columns([2, 1, 1])
    space = ui.select("Space", spaces, "grid_space", "tier-sizing-small", where=c[0])
    top = ui.number("Best points to list", "grid_top", 20, 1, 500, where=c[1])
    c[2].write("")  # aligns the button with the inputs
    if c[2].button("Evaluate the grid", key="grid_go"):
        st.query_params["grid"] = space  # the results are part of the link
    if st.query_params.get("grid") != space:
        return
    g, err = grid_result(mod, space, ui.catalog_key())
    if err:
        st.error(err)
        return
    grid_results(g, space, top, mod)


@st.cache_resource(show_spinner="Evaluating the grid…", max_entries=4)
def grid_result(_mod: Any, space: str, catalog_key: int) -> tuple[Any, str]:
    return ui.guarded(_mod.grid_search, space=space, max_points=GRID_LIMIT)


def grid_results(g: Any, space: str, top: int, mod: Any) -> None:
    c = st.columns(4)
    c[0].metric("points", f"{len(g.points):,}")
    c[1].metric("feasible", f"{int(g.feasible.sum()):,}")
    c[2].metric("groups (evaluate() calls)", f"{g.groups:,}")
    c[3].metric("points / s", f"{g.points_per_s:,.0f}")
    metrics = list(g.space.metrics)
    rows = [dict(g.points[i]) | {unit_label(mod, m): float(g.values[i, k])
                                 for k, m in enumerate(metrics)} for i in g.top(top)]
    if not rows:
        st.warning("No feasible grid point: every point violates a constraint.")
        return
    ui.show_table(pd.DataFrame(rows), f"grid_{space}", "grid")


def main() -> None:
    st.title("Search")
    st.caption("Optuna studies over tier sizes, routing and P:D split, written by "
               "`kvmodel.search` or any Optuna storage (journal / SQLite file, or an RDB URL).")
    if "search_done" in st.session_state:
        st.success(st.session_state.pop("search_done"))
    if PENDING in st.session_state:  # before the Study selectbox is created
        st.session_state["study"] = st.session_state.pop(PENDING)
    mod, why = search_module()
    found = discovered()
    default = found[0] if found else getattr(mod, "DEFAULT_STORAGE", FALLBACK_STORAGE)
    text = ui.text("Storage (file path, relative to the repository, or URL)", "storage", default,
                   help="found: " + (", ".join(found) or "none"))
    if mod is None:
        st.info(f"{why}: existing studies can be read here, but not launched.")
    readable = studies(text, mod)
    if mod is not None:
        st.header("Launch a short study")
        target, terr = resolve(text, must_exist=False)
        if terr or not readable:
            st.info(terr or "Launching needs a storage that can be read: fix the storage above.")
        else:
            launch(mod, target)
        grid(mod)


def studies(text: str, mod: Any | None) -> bool:
    """Show the studies of the storage named by ``text``; False when it exists but is unreadable."""
    spec, err = resolve(text)
    if err:
        st.info(err + " — launch a study below (with kvmodel.search) or point to another storage.")
        return True
    summaries, lerr = read_summaries(spec)
    if lerr:
        st.error(lerr)
    elif not summaries:
        st.info("The storage holds no studies yet.")
    else:
        names = [s.study_name for s in summaries]
        show_study(spec, ui.select("Study", names, "study", names[-1]), mod)
    return not lerr

main()
