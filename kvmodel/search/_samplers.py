"""A TPE sampler whose cost per trial does not grow with the study: Optuna's ``TPESampler``
shown a bounded window of the history.

Optuna's TPE refits its two Parzen estimators on every finished trial at every ask, in Python
loops over trials and parameters, so a study of n trials costs O(n^2): on 2 cores about 10 s
for 1,000 trials of a 5-parameter toy before any objective runs (``benchmarks/search_speed.py``).
:class:`WindowedTPESampler` passes the unmodified Optuna algorithm a view of the study holding

* the ``elite`` best finished trials (feasible first, by objective; infeasible ones by total
  constraint violation; several objectives: by non-domination rank), kept incrementally, and
* the ``recent`` newest finished trials.

TPE's "good" set l(x) is the best ``gamma(n) = min(ceil(n / 10), 25)`` trials; with
``elite >= gamma(elite + recent)`` those are exactly the best trials of the whole study, so l(x)
is unchanged by the window (below ``elite + recent`` finished trials nothing is dropped at all).
Only the "bad" density g(x) is estimated from the elite remainder plus the recent trials, the
ones Optuna's default weights favour anyway (they ramp older trials down). The cost per ask is
then bounded by the window size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["WindowedTPESampler", "violation", "pareto_ranks"]

_FINISHED = None  # resolved lazily to (COMPLETE, PRUNED); Optuna is imported only when used


def violation(trial: Any) -> float:
    """Total positive constraint violation Optuna recorded for a trial (0 = feasible)."""
    c = trial.system_attrs.get("constraints")
    if c is None:
        return 0.0
    return float(sum(max(float(x), 0.0) for x in c))


def pareto_ranks(values: np.ndarray) -> np.ndarray:
    """Non-domination rank (0 = Pareto front) of each row of ``values`` (all minimised)."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=int)
    v = np.asarray(values, dtype=float)
    le = np.all(v[:, None, :] <= v[None, :, :], axis=2)
    lt = np.any(v[:, None, :] < v[None, :, :], axis=2)
    dominates = le & lt                     # [i, j]: i dominates j
    rank = np.full(n, -1)
    left = np.ones(n, dtype=bool)
    r = 0
    while left.any():
        dominated = dominates[left][:, left].any(axis=0)
        idx = np.flatnonzero(left)[~dominated]
        rank[idx] = r
        left[idx] = False
        r += 1
    return rank


class _Window:
    """A read-only view of a study that lists only the given finished trials."""

    def __init__(self, study: Any, trials: list) -> None:
        self._study, self._trials = study, trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = False, states: Any = None, use_cache: bool = False):
        ts = self._trials if states is None else [t for t in self._trials if t.state in states]
        if deepcopy:
            import copy
            return copy.deepcopy(ts)
        return ts

    def get_trials(self, deepcopy: bool = True, states: Any = None):
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self):
        return self._get_trials(deepcopy=True)


def _make_class():
    import optuna

    class WindowedTPESampler(optuna.samplers.TPESampler):
        """Optuna's TPESampler over a bounded window of the history (see the module docstring).
        ``elite`` and ``recent`` size the window; every other argument is TPESampler's."""

        def __init__(self, *args: Any, elite: int = 25, recent: int = 75, **kw: Any) -> None:
            if elite < 1 or recent < 1:
                raise ValueError(f"elite={elite}, recent={recent}: both must be >= 1")
            super().__init__(*args, **kw)
            self.elite_size, self.recent_size = int(elite), int(recent)
            self._elite: list = []
            self._seen: set[int] = set()
            self._view: tuple[int, Any] | None = None

        # -- the window ----------------------------------------------------------------------
        def _key_sort(self, study: Any, trials: list) -> list:
            """``trials`` best first: feasible by objective(s), then infeasible by violation."""
            ok = [violation(t) <= 0 and t.values is not None for t in trials]
            feas = [t for t, f in zip(trials, ok) if f]
            infeas = sorted((t for t, f in zip(trials, ok) if not f), key=violation)
            signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0
                              for d in study.directions])
            if feas:
                v = np.array([t.values for t in feas], dtype=float) * signs
                if len(signs) == 1:
                    order = np.argsort(v[:, 0], kind="stable")
                else:
                    order = np.lexsort((v[:, 0], pareto_ranks(v)))
                feas = [feas[i] for i in order]
            return feas + infeas

        def _window(self, study: Any) -> Any:
            states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            trials = study._get_trials(deepcopy=False, states=states, use_cache=True)
            if len(trials) <= self.elite_size + self.recent_size:
                return study
            new = [t for t in trials if t.number not in self._seen]
            if new:
                self._seen.update(t.number for t in new)
                self._elite = self._key_sort(study, self._elite + new)[:self.elite_size]
            keep = {t.number: t for t in self._elite}
            keep.update((t.number, t) for t in trials[-self.recent_size:])
            return _Window(study, [keep[k] for k in sorted(keep)])

        def _view_for(self, study: Any, trial: Any) -> Any:
            if self._view is None or self._view[0] != trial.number:
                self._view = (trial.number, self._window(study))
            return self._view[1]

        # -- TPESampler entry points, fed the window ---------------------------------------
        def infer_relative_search_space(self, study: Any, trial: Any):
            return super().infer_relative_search_space(self._view_for(study, trial), trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any):
            return super().sample_relative(self._view_for(study, trial), trial, search_space)

        def sample_independent(self, study: Any, trial: Any, param_name: str, dist: Any):
            return super().sample_independent(self._view_for(study, trial), trial, param_name,
                                              dist)

    return WindowedTPESampler


_CLASS: list = []


def WindowedTPESampler(*args: Any, **kw: Any) -> Any:  # noqa: N802 (a class factory)
    """Build the windowed TPE sampler (the class is created on first use so that importing
    kvmodel.search does not import Optuna)."""
    if not _CLASS:
        _CLASS.append(_make_class())
    return _CLASS[0](*args, **kw)


def gamma_exact(elite: int, recent: int) -> bool:
    """True when the window keeps TPE's good set exact: elite >= min(ceil(window/10), 25)."""
    return elite >= min(math.ceil((elite + recent) / 10), 25)
