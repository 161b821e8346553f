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

Most of what remains is fixed numpy overhead per fit (Parzen estimators, truncated-normal
masses, on the order of 8 ms per ask on 2 cores for five stepped parameters). With
``refit_every = k`` the estimators are fitted once per k draws and each of the k draws is the
best of its own ``n_ei_candidates`` candidates from that fit — exactly what k sequential asks
would return if no trial finished in between (batch TPE without a liar). ``kvmodel.search``
uses k = 4: 1,000 tier-sizing trials in about 6 s instead of 12 s, with the same gap to the
grid optimum (``benchmarks/search_speed.py``).
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

        def __init__(self, *args: Any, elite: int = 25, recent: int = 75, refit_every: int = 1,
                     **kw: Any) -> None:
            if elite < 1 or recent < 1:
                raise ValueError(f"elite={elite}, recent={recent}: both must be >= 1")
            if refit_every < 1:
                raise ValueError(f"refit_every={refit_every}: must be >= 1")
            super().__init__(*args, **kw)
            self.elite_size, self.recent_size = int(elite), int(recent)
            self.refit_every = int(refit_every)
            self._batches: dict = {}
            self._elite: list = []
            self._n_seen, self._last_seen = 0, -1      # finished trials merged into the elite
            self._n_space = 0                          # COMPLETE trials given to the space
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
            new = self._new(trials)
            if new:
                self._elite = self._key_sort(study, self._elite + new)[:self.elite_size]
            keep = {t.number: t for t in self._elite}
            keep.update((t.number, t) for t in trials[-self.recent_size:])
            return _Window(study, [keep[k] for k in sorted(keep)])

        def _new(self, trials: list) -> list:
            """Finished trials not merged yet. Sequential studies append them in number order;
            if that ever fails (a trial finishing out of order), rescan by number."""
            k = self._n_seen
            if k <= len(trials) and (k == 0 or trials[k - 1].number == self._last_seen):
                new = trials[k:]
            else:  # re-merging trials that lost before is harmless: they lose again
                have = {t.number for t in self._elite}
                new = [t for t in trials if t.number not in have]
            self._n_seen = len(trials)
            self._last_seen = trials[-1].number if trials else -1
            return new

        def _view_for(self, study: Any, trial: Any) -> Any:
            if self._view is None or self._view[0] != trial.number:
                self._view = (trial.number, self._window(study))
            return self._view[1]

        # -- TPESampler entry points, fed the window ---------------------------------------
        def infer_relative_search_space(self, study: Any, trial: Any):
            if not self._group:
                return super().infer_relative_search_space(self._view_for(study, trial), trial)
            # the group-decomposed search space accumulates a union: feed it only new trials
            done = study._get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,),
                                     use_cache=True)
            fresh = done[self._n_space:] if self._n_space <= len(done) else done
            self._n_space = len(done)
            return super().infer_relative_search_space(_Window(study, fresh), trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any):
            return super().sample_relative(self._view_for(study, trial), trial, search_space)

        def _sample(self, study: Any, trial: Any, search_space: Any) -> dict:
            """TPE's draw; with ``refit_every`` = k > 1 the Parzen estimators are fitted once
            per k draws of the same search space, and each of those k draws is the best of its
            own ``n_ei_candidates`` candidates from that fit (what k sequential asks would give
            if no trial finished in between)."""
            if self.refit_every == 1 or self._constant_liar:
                return super()._sample(study, trial, search_space)
            key = tuple(sorted((k, repr(d)) for k, d in search_space.items()))
            queue = self._batches.get(key)
            if not queue:
                queue = self._batches[key] = self._draw_batch(study, search_space)
            return queue.pop()

        def _draw_batch(self, study: Any, search_space: Any) -> list:
            from optuna.samplers._tpe import sampler as tpe
            states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            trials = study._get_trials(deepcopy=False, states=states, use_cache=True)
            if self._gamma is None:
                self._gamma = (tpe.default_gamma if len(study.directions) <= 1
                               else tpe.default_gamma_multiobjective)
            below, above = tpe._split_trials(study, trials, self._gamma(len(trials)))
            mpe_below = self._build_parzen_estimator(study, search_space, below, handle_below=True)
            mpe_above = self._build_parzen_estimator(study, search_space, above,
                                                     handle_below=False)
            k, m = self.refit_every, self._n_ei_candidates
            samples = mpe_below.sample(self._rng.rng, k * m)
            acq = self._compute_acquisition_func(samples, mpe_below, mpe_above).reshape(k, m)
            best = np.argmax(acq, axis=1) + m * np.arange(k)
            out = [{name: search_space[name].to_external_repr(samples[name][i].item())
                    for name in search_space} for i in best]
            return out[::-1]  # popped from the end: first group first

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
