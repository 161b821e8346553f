"""Design-space search: Optuna studies over serving configurations under SLOs and cost.

::

    from kvmodel import search
    space = search.load_space("tier-sizing")          # built-in name, TOML path, or dict
    study = search.run(space, n_trials=500, storage="tier.journal", sampler="tpe")
    print(search.show(study))                         # best feasible trials / Pareto front
    search.export(study, "results/tier")              # trials.csv + plotly HTML
    g = search.grid_search("tier-sizing-small")       # exhaustive grid of a small space

A space (:mod:`kvmodel.search._space`) is data: dimensions as ranges or choices, conditional
on other dimensions; fixed model / workload / SLOs / budget; one objective or several (Pareto).
Every trial is evaluated with :func:`kvmodel.evaluate`; SLO, fit, stability, budget and tier
bandwidth are Optuna constraints (<= 0 satisfied), so infeasible trials stay in the study with
their reason. ``DIMENSIONS`` says what each dimension maps to, including those evaluate() does
not model. Optuna is imported only when a study runs.
"""

from __future__ import annotations

from typing import Any

from kvmodel.search._grid import GridResult, compare_with_grid, grid_points, grid_search
from kvmodel.search._objectives import (
    CONSTRAINTS,
    OBJECTIVES,
    Outcome,
    evaluate_point,
    max_rate_at_slo,
    objective_label,
)
from kvmodel.search._report import best_trials, export, is_feasible, pareto_front, rows
from kvmodel.search._space import (
    DIMENSIONS,
    Dim,
    Space,
    SpaceError,
    builtin_spaces,
    load_space,
    space_digest,
    space_from_dict,
)
from kvmodel.search._storage import DEFAULT_STORAGE, open_storage
from kvmodel.search._study import (
    SAMPLERS,
    Progress,
    SearchError,
    SearchInterrupted,
    make_sampler,
    run,
)

__all__ = ["run", "show", "load", "export", "load_space", "space_from_dict", "builtin_spaces",
           "Space", "Dim", "SpaceError", "DIMENSIONS", "OBJECTIVES", "objective_label", "CONSTRAINTS",
           "SAMPLERS",
           "Outcome", "evaluate_point", "max_rate_at_slo", "best_trials", "pareto_front", "rows",
           "is_feasible", "grid_points", "grid_search", "GridResult", "compare_with_grid",
           "open_storage", "DEFAULT_STORAGE", "make_sampler", "Progress", "SearchError",
           "SearchInterrupted", "space_digest"]


def load(storage: Any = None, study_name: str | None = None) -> Any:
    """The ``optuna.Study`` named ``study_name`` in ``storage`` (the only one when None)."""
    import optuna
    st = open_storage(storage, heartbeat=False, create=False)
    if study_name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
        if len(names) != 1:
            raise ValueError(f"storage {storage!r} holds studies {names}; give study_name"
                             if names else f"storage {storage!r} holds no study")
        study_name = names[0]
    return optuna.load_study(study_name=study_name, storage=st)


def show(study: Any = None, storage: Any = None, study_name: str | None = None,
         top: int = 10) -> str:
    """Text report of a study (object, or loaded from ``storage``/``study_name``)."""
    from kvmodel.search._report import show as _show
    return _show(study if study is not None else load(storage, study_name), top)
