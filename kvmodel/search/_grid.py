"""Exhaustive grid over a small space, and how close Optuna gets to its optimum.

The grid enumerates every active combination once (a conditional dimension expands only under
its parents' ``when`` values), as a numpy structured array, and evaluates each point with the
same :func:`evaluate_point` the studies use (``kvmodel.evaluate`` is a scalar closed form of
about 1-2 ms; the trace's reuse profile and the per-instance capacity probe are computed once
and cached, so points/s is about 1/evaluate-time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._objectives import OBJECTIVES, Outcome, check_names, evaluate_point
from ._space import Space, load_space

__all__ = ["grid_points", "grid_search", "GridResult", "compare_with_grid"]


def grid_points(space: Space, n_float: int = 5) -> list[dict[str, Any]]:
    """Every active combination of the space's grid values (dimension order), each once."""
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
class GridResult:
    points: list[dict[str, Any]]
    values: np.ndarray         # [n_points, n_metrics]
    feasible: np.ndarray       # [n_points] bool
    outcomes: list[Outcome]
    seconds: float

    @property
    def points_per_s(self) -> float:
        return len(self.points) / max(self.seconds, 1e-12)

    def best(self, metric: int = 0) -> tuple[dict[str, Any], float] | None:
        """The feasible point with the best value of objective ``metric`` (None if none)."""
        if not self.feasible.any():
            return None
        v = np.where(self.feasible, self.values[:, metric], np.nan)
        i = int(np.nanargmax(v) if self._sign(metric) < 0 else np.nanargmin(v))
        return self.points[i], float(self.values[i, metric])

    def _sign(self, metric: int) -> float:
        return self.sign[metric]

    sign: tuple = ()


def grid_search(space: Any, n_float: int = 5, max_points: int = 1_000_000) -> GridResult:
    """Evaluate every grid point of ``space`` (raises ValueError beyond ``max_points``)."""
    space = load_space(space)
    check_names(space)
    pts = grid_points(space, n_float)
    if len(pts) > max_points:
        raise ValueError(f"grid of {len(pts)} points exceeds max_points={max_points}")
    t0 = time.perf_counter()
    outs = [evaluate_point(space, p) for p in pts]
    dt = time.perf_counter() - t0
    vals = np.array([o.values for o in outs], dtype=float).reshape(len(pts), len(space.metrics))
    feas = np.array([o.feasible for o in outs], dtype=bool)
    sign = tuple(-1.0 if OBJECTIVES[m].direction == "maximize" else 1.0 for m in space.metrics)
    return GridResult(pts, vals, feas, outs, dt, sign)


def compare_with_grid(space: Any, budgets: tuple[int, ...] = (25, 50, 100, 200),
                      sampler: str = "tpe", seeds: tuple[int, ...] = (0, 1, 2),
                      grid: GridResult | None = None) -> list[dict[str, Any]]:
    """For each trial budget: Optuna's best feasible value (first objective, in-memory studies,
    one per seed) vs the grid optimum; ``gap`` is the relative shortfall (0 = found it)."""
    import optuna
    from ._report import best_trials
    from ._study import run
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
