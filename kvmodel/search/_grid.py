"""Exhaustive grid over a small space, evaluated in numpy, and how close Optuna gets to it.

The grid visits every active combination once: a conditional dimension expands only under its
parents' ``when`` values. Dimensions split in two:

* **shared** ones — categorical and structural choices (model, GPU, instances, TP, sharing,
  routing, ...) and any dimension another one is conditional on — are enumerated in Python,
  one *group* per combination;
* **vectorised** ones (:data:`VECTOR_DIMS`: tier capacities, HBM share, pool and P2P sizes) form
  the cartesian product of their grid values inside each group, as flat numpy columns, and the
  whole group is one call of the array-polymorphic :func:`kvmodel.evaluate`.

So a 10^6-point grid over capacities costs as many ``evaluate`` calls as it has groups. Points
are never materialised as dicts unless asked for (``GridResult.points[i]``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kvmodel.search._objectives import (
    CONSTRAINTS,
    OBJECTIVES,
    VECTOR_DIMS,
    Outcome,
    check_names,
    evaluate_columns,
    evaluate_point,
)
from kvmodel.search._space import Space, load_space

__all__ = ["grid_points", "grid_groups", "grid_search", "GridResult", "compare_with_grid"]


def grid_points(space: Space, n_float: int = 5) -> list[dict[str, Any]]:
    """Every active combination of the space's grid values (dimension order), each once, as
    dicts (small spaces; :func:`grid_groups` is the columnar form)."""
    pts: list[dict[str, Any]] = [{}]
    for d in space.dims:
        nxt = []
        vals = d.grid_values(n_float)
        for p in pts:
            if d.active(space.fixed | p):
                nxt.extend(p | {d.name: v} for v in vals)
            else:
                nxt.append(p)
        pts = nxt
    return pts


@dataclass(frozen=True)
class Group:
    """Grid points sharing every non-vectorised dimension: ``shared`` values plus flat
    ``columns`` (equal lengths) of the vectorised ones, in dimension order."""
    shared: dict[str, Any]
    columns: dict[str, np.ndarray]
    size: int

    def point(self, i: int) -> dict[str, Any]:
        return self.shared | {k: v[i].item() for k, v in self.columns.items()}


def _vectorised(space: Space) -> set[str]:
    w = space.workload
    if "concurrency" in w or "burst" in w or w.get("session_mode") == "closed":
        return set()   # evaluate() takes arrays for open-loop rates only: point by point
    parents = {p for d in space.dims for p, _ in d.when}
    return {d.name for d in space.dims if d.name in VECTOR_DIMS and d.name not in parents}


def grid_groups(space: Space, n_float: int = 5, max_points: int | None = None) -> list[Group]:
    """The grid as groups (see the module docstring); same points and order-independent
    content as :func:`grid_points`. Raises ValueError as soon as the grid is known to exceed
    ``max_points`` (before building it)."""
    vec = _vectorised(space)

    def too_big(n: int) -> None:
        if max_points is not None and n > max_points:
            raise ValueError(f"space {space.name!r}: grid exceeds max_points={max_points} "
                             f"(at least {n} points); narrow the ranges or use a sampler")
    shared_pts: list[dict[str, Any]] = [{}]
    for d in space.dims:
        if d.name in vec:
            continue
        nxt = []
        count, vals = d.grid_count(n_float), None
        for p in shared_pts:
            if d.active(space.fixed | p):
                too_big(len(nxt) + count)  # counted before the values are built
                vals = vals or d.grid_values(n_float)
                nxt.extend(p | {d.name: v} for v in vals)
            else:
                nxt.append(p)
        shared_pts = nxt
    groups, total = [], 0
    for p in shared_pts:
        dims = [d for d in space.dims if d.name in vec and d.active(space.fixed | p)]
        if not dims:
            groups.append(Group(p, {}, 1))
            continue
        total += math.prod(d.grid_count(n_float) for d in dims)
        too_big(total)
        axes = [np.asarray(d.grid_values(n_float)) for d in dims]
        mesh = np.meshgrid(*axes, indexing="ij")
        cols = {d.name: m.ravel() for d, m in zip(dims, mesh)}
        groups.append(Group(p, cols, int(mesh[0].size)))
    return groups


class _Points(Sequence):
    """The grid's points as a lazy sequence of dicts."""

    def __init__(self, groups: list[Group]) -> None:
        self.groups = groups
        self.starts = np.cumsum([0] + [g.size for g in groups])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = int(i) + (len(self) if i < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(i)
        g = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.groups[g].point(i - int(self.starts[g]))


@dataclass(frozen=True)
class GridResult:
    """Every grid point's objective values [n, metrics], constraint values [n, constraints]
    and feasibility; ``points[i]`` is point i as a dict, ``outcome(i)`` its full scalar
    evaluation (metrics and the reason it is infeasible)."""
    space: Space
    points: Sequence[dict[str, Any]]
    values: np.ndarray
    constraints: np.ndarray
    feasible: np.ndarray
    seconds: float
    groups: int
    sign: tuple = ()

    @property
    def points_per_s(self) -> float:
        return len(self.points) / max(self.seconds, 1e-12)

    def outcome(self, i: int) -> Outcome:
        return evaluate_point(self.space, self.points[i])

    def top(self, n: int = 10, metric: int = 0) -> list[int]:
        """Indices of the ``n`` best feasible points by objective ``metric``."""
        v = np.where(self.feasible, self.sign[metric] * self.values[:, metric], np.inf)
        k = min(n, int(self.feasible.sum()))
        if k == 0:
            return []
        idx = np.argpartition(v, k - 1)[:k]
        return [int(i) for i in idx[np.argsort(v[idx], kind="stable")]]

    def to_csv(self, path: Any) -> Path:
        """Write every point: its dimension values, objective values, constraint values
        (<= 0 satisfied) and feasibility, one row each."""
        import csv
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        dims = [d.name for d in self.space.dims]
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(dims + list(self.space.metrics) + [f"c_{c}" for c in CONSTRAINTS]
                       + ["feasible"])
            start = 0
            for g in self.points.groups:
                cols = [g.columns[d].tolist() if d in g.columns else [g.shared.get(d, "")] * g.size
                        for d in dims]
                stop = start + g.size
                w.writerows(zip(*cols, *self.values[start:stop].T.tolist(),
                                *self.constraints[start:stop].T.tolist(),
                                self.feasible[start:stop].tolist()))
                start = stop
        return path

    def best(self, metric: int = 0) -> tuple[dict[str, Any], float] | None:
        """The feasible point with the best value of objective ``metric`` (None if none)."""
        if not self.feasible.any():
            return None
        v = np.where(self.feasible, self.sign[metric] * self.values[:, metric], np.inf)
        i = int(np.argmin(v))
        return self.points[i], float(self.values[i, metric])


def grid_search(space: Any, n_float: int = 5, max_points: int = 2_000_000) -> GridResult:
    """Evaluate every grid point of ``space`` (raises ValueError beyond ``max_points``)."""
    space = load_space(space)
    check_names(space)
    groups = grid_groups(space, n_float, max_points)
    t0 = time.perf_counter()
    vals, cons = [], []
    for g in groups:
        v, c, _ = evaluate_columns(space, g.shared | g.columns, g.size)
        vals.append(v)
        cons.append(c)
    dt = time.perf_counter() - t0
    values = np.concatenate(vals) if vals else np.zeros((0, len(space.metrics)))
    constraints = np.concatenate(cons) if cons else np.zeros((0, len(CONSTRAINTS)))
    sign = tuple(-1.0 if OBJECTIVES[m].direction == "maximize" else 1.0 for m in space.metrics)
    return GridResult(space, _Points(groups), values, constraints,
                      np.all(constraints <= 0, axis=1), dt, len(groups), sign)


def compare_with_grid(space: Any, budgets: tuple[int, ...] = (25, 50, 100, 200),
                      sampler: str = "tpe", seeds: tuple[int, ...] = (0, 1, 2),
                      grid: GridResult | None = None) -> list[dict[str, Any]]:
    """For each trial budget: Optuna's best feasible value (first objective, in-memory studies,
    one per seed) vs the grid optimum; ``gap`` is the relative shortfall (0 = found it)."""
    import optuna

    from kvmodel.search._report import best_trials
    from kvmodel.search._study import run
    space = load_space(space)
    grid = grid or grid_search(space)
    best = grid.best()
    if best is None:
        raise ValueError(f"space {space.name!r}: no feasible grid point to compare with")
    opt, sign = best[1], grid.sign[0]
    out = []
    for n in budgets:
        found = []
        for s in seeds:
            st = run(space, n_trials=n, storage=optuna.storages.InMemoryStorage(),
                     study_name=f"cmp-{n}-{s}", sampler=sampler, seed=s)
            b = best_trials(st, top=1)
            found.append(b[0].values[0] if b else np.nan)
        gaps = [sign * (f - opt) / abs(opt) if opt else np.nan for f in found]
        out.append({"trials": n, "sampler": sampler, "grid_optimum": opt,
                    "found_mean": float(np.nanmean(found)), "gap_mean": float(np.nanmean(gaps)),
                    "gap_worst": float(np.nanmax(gaps)), "grid_points": len(grid.points)})
    return out
