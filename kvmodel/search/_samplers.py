"""A TPE sampler whose cost per trial does not grow with the study: Optuna's public
``TPESampler`` shown a bounded window of the history.

Optuna's TPE refits its two Parzen estimators on every finished trial at every ask, in Python
loops over trials and parameters, so a study of n trials costs O(n^2): on 2 cores about 10 s
for 1,000 trials of a 5-parameter toy before any objective runs (``benchmarks/search_speed.py``).
:class:`WindowedTPESampler` is a ``BaseSampler`` that delegates every draw to a plain
``TPESampler`` working on its own in-memory study (``InMemoryStorage``), the *window*, holding

* the ``elite`` best finished trials (feasible first, by objective; infeasible ones by total
  constraint violation; several objectives: by non-domination rank), kept incrementally, and
* the ``recent`` newest finished trials,

plus the trials finished since the window was last rebuilt: new trials are appended, and the
window is rebuilt from elite and recent once it holds ``recent // 3`` more than
``elite + recent``. The window's storage is an ``InMemoryStorage`` whose trial list kvmodel
edits in place (only the public ``get_all_trials`` is overridden), so appending and rebuilding
copy nothing. Window trials are lean copies, made once per trial: parameters, values and the
constraint values (Optuna's ``system_attrs["constraints"]`` of the copy), nothing else.

TPE's "good" set l(x) is the best ``gamma(n) = min(ceil(n / 10), 25)`` trials; with
``elite >= gamma(window)`` those are exactly the best trials of the whole study (every trial
that is, or was since the last rebuild, among the best is in the window), so l(x) is unchanged
by the window (below ``elite + recent`` finished trials nothing is dropped at all). Only the
"bad" density g(x) is estimated from the elite remainder plus the recent trials, the ones
Optuna's default weights favour anyway (they ramp older trials down). The cost per ask is then
bounded by the window size.

``refit_every = k``: finished trials reach the window once per k draws, so k consecutive draws
come from the same Parzen estimators, each the best of its own ``n_ei_candidates`` candidates:
batch TPE without a liar, what k sequential asks would return if no trial finished in between.
The estimators are fitted once per k draws: the inner sampler (``BatchTPESampler``) draws
``k * n_ei_candidates`` candidates from l(x) in its one fit, scores them all and returns the
best of each block of ``n_ei_candidates`` (the first now, the others queued for the next
asks; a window change drops the queue). Optuna's public API fits, draws and scores inside
every draw; the per-call overhead of those numpy steps on small arrays, not the arithmetic,
was most of the 9 ms an ask cost at 1,000 trials (2 cores), and is now paid once per k draws.
``refit_every_full`` (default ``refit_every``) replaces k once the study holds
``elite + recent`` finished trials: each refit then changes at most k of the window's >= 100
trials. ``kvmodel.search`` uses k = 4, then 8.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["WindowedTPESampler", "violation", "pareto_ranks"]


def constraint_values(trial: Any) -> "list[float] | None":
    """The constraint values (<= 0 satisfied) of a trial: ``user_attrs["constraints"]``, where
    kvmodel's objective stores them, else ``system_attrs["constraints"]`` (studies written
    before kvmodel kept its own copy, and Optuna's ``constraints_func`` samplers); None when the
    trial has neither."""
    c = trial.user_attrs.get("constraints")
    if c is None:
        c = trial.system_attrs.get("constraints")
    return None if c is None else [float(x) for x in c]


def violation(trial: Any) -> float:
    """Total positive constraint violation a trial recorded (0 = feasible or unconstrained)."""
    c = constraint_values(trial)
    return 0.0 if c is None else float(sum(max(x, 0.0) for x in c))


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



def _lean(trial: Any, constraints: "list[float] | None") -> Any:
    """A copy of a finished trial holding what TPE reads: parameters, values, constraints."""
    import optuna
    attrs = {} if constraints is None else {"constraints": tuple(constraints)}
    return optuna.trial.create_trial(state=trial.state, params=trial.params,
                                     distributions=trial.distributions, values=trial.values,
                                     system_attrs=attrs)


def _stored_constraints(trial: Any) -> tuple:
    """The inner TPE's ``constraints_func``: a window trial carries its constraints already
    (Optuna 4 reads them only when a constraints_func is set; the inner sampler's
    ``after_trial``, which would call it, is never run)."""
    return tuple(trial.system_attrs.get("constraints", ()))


def _make_class():
    import warnings

    import optuna

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    class WindowedTPESampler(optuna.samplers.BaseSampler):
        """Optuna's TPESampler over a bounded window of the history (see the module docstring).
        ``elite`` and ``recent`` size the window, ``refit_every`` (``refit_every_full`` once the
        study holds ``elite + recent`` finished trials) sets how often finished trials reach it
        and how many draws share one Parzen fit; ``fits`` counts the fits; ``constraints_func``
        (default: :func:`constraint_values`) gives a trial's constraint values; every other
        keyword argument is TPESampler's."""

        def __init__(self, *, seed: int | None = None, elite: int = 25, recent: int = 75,
                     refit_every: int = 1, refit_every_full: int | None = None,
                     n_startup_trials: int = 10, constraints_func: Any = None,
                     **tpe_kw: Any) -> None:
            refit_every_full = refit_every if refit_every_full is None else refit_every_full
            _check_window(elite, recent, refit_every, tpe_kw)
            _check_window(elite, recent, refit_every_full, {})
            self.elite_size, self.recent_size = int(elite), int(recent)
            self.refit_every, self.n_startup_trials = int(refit_every), int(n_startup_trials)
            self.refit_every_full = int(refit_every_full)
            self.constraints_func = constraints_func or constraint_values
            with warnings.catch_warnings():  # constraints_func: FutureWarning in Optuna 5;
                warnings.simplefilter("ignore", FutureWarning)  # group: ExperimentalWarning
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.tpe = _batch_tpe_class()(
                    max(self.refit_every, self.refit_every_full), seed=seed,
                    n_startup_trials=n_startup_trials,
                    constant_liar=False, constraints_func=_stored_constraints, **tpe_kw)
            self.window: Any = None          # the in-memory study TPE works on
            self._store: Any = None          # ... and its storage
            self._idle = optuna.samplers.RandomSampler()   # the window's own (unused) sampler
            self._multivariate = bool(tpe_kw.get("multivariate", False))
            self._group = bool(tpe_kw.get("group", False))
            self._elite: list = []
            self._n_seen, self._last_seen = 0, -1   # finished trials merged into the elite
            self._since, self._k = 0, self.refit_every   # draws since the refit, per refit
            self.generation = 0              # bumped whenever the window changes
            self.fits = 0                    # Parzen fits (TPE draws computed, not queued)
            self._space: Any = None          # (generation, relative search space)
            self._queue: list = []           # drawn, not yet returned: (generation, key, params)
            self._leans: dict = {}           # trial number -> its lean copy in the window

        # -- the window ----------------------------------------------------------------------
        def window_trials(self) -> list:
            """The lean trials TPE sees now, oldest first."""
            return [] if self.window is None else self.window.get_trials(deepcopy=False)

        def _key_sort(self, study: Any, trials: list) -> list:
            """``trials`` best first: feasible by objective(s), then infeasible by violation."""
            viol = [sum(max(x, 0.0) for x in (self.constraints_func(t) or ())) for t in trials]
            ok = [v <= 0 and t.values is not None for t, v in zip(trials, viol)]
            feas = [t for t, f in zip(trials, ok) if f]
            infeas = [t for _, t in sorted(((v, i), t) for i, (t, v, f)
                                           in enumerate(zip(trials, viol, ok)) if not f)]
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

        def _lean(self, trials: list) -> list:
            """Lean copies of ``trials``, made once per trial while it stays in the window."""
            out = []
            for t in trials:
                if t.number not in self._leans:
                    self._leans[t.number] = _lean(t, self.constraints_func(t))
                out.append(self._leans[t.number])
            return out

        def _refresh(self, study: Any) -> None:
            """Merge the finished trials of ``study`` into the elite and the window; rebuild
            the window from elite and recent trials when it holds too many."""
            trials = study.get_trials(deepcopy=False, states=finished)
            new = self._new(trials)
            if not new and self.window is not None:
                return
            self._elite = self._key_sort(study, self._elite + new)[:self.elite_size]
            cap = self.elite_size + self.recent_size + self.recent_size // 3
            if self.window is not None and len(self._store.trials) + len(new) <= cap:
                add = new
            else:
                keep = {t.number: t for t in self._elite}
                keep.update((t.number, t) for t in trials[-self.recent_size:])
                add = [keep[k] for k in sorted(keep)]
                self._leans = {k: v for k, v in self._leans.items() if k in keep}
                self._store = _window_storage_class()()
                optuna.create_study(storage=self._store, study_name="window",
                                    directions=study.directions, sampler=self._idle)
            for t in self._lean(add):  # numbered in window order, as add_trials would
                t.number = len(self._store.trials)
                self._store.trials.append(t)
            # a new Study object on the same storage each time: a Study caches its trial list
            # between its own ask/tell, which the window never calls
            self.window = optuna.study.Study("window", self._store, sampler=self._idle)
            self.generation += 1
            self._queue = []

        # -- BaseSampler, delegated to the TPESampler on the window --------------------------
        def before_trial(self, study: Any, trial: Any) -> None:
            if (self.window is None or self._since >= self._k
                    or len(self._store.trials) < self.n_startup_trials):
                self._refresh(study)
                self._since = 0
                full = self._n_seen >= self.elite_size + self.recent_size
                self._k = self.refit_every_full if full else self.refit_every
            self._since += 1
            self.tpe.before_trial(self.window, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict:
            if self._space is not None and self._space[0] == self.generation:
                return dict(self._space[1])  # the window (so its search space) is unchanged
            space = self._infer(trial)
            self._space = (self.generation, space)
            return dict(space)

        def _infer(self, trial: Any) -> dict:
            if self._group or not self._multivariate:  # TPE keeps the groups it samples by
                return self.tpe.infer_relative_search_space(self.window, trial)
            # TPE's own intersection remembers the trial numbers it has seen, and a rebuilt
            # window numbers its trials from 0 again: compute the window's intersection here
            space = optuna.search_space.intersection_search_space(
                self.window.get_trials(deepcopy=False,
                                       states=(optuna.trial.TrialState.COMPLETE,)))
            return {name: d for name, d in space.items() if not d.single()}

        def sample_relative(self, study: Any, trial: Any, search_space: dict) -> dict:
            """One of the ``refit_every`` draws made from one Parzen fit of this window: the
            first draw of a window fits and draws them all, the next ones are queued."""
            key = tuple(search_space.items())
            if self._queue and self._queue[0][:2] == (self.generation, key):
                return self._queue.pop(0)[2]
            self.tpe.extras = []
            self.tpe.batching, self.tpe.blocks = True, self._k - self._since + 1
            try:
                params = self.tpe.sample_relative(self.window, trial, search_space)
            finally:
                self.tpe.batching = False
            if params:
                self.fits += 1
            self._queue = [(self.generation, key, p)
                           for p in _merge_extras(self.tpe.extras, search_space)]
            return params

        def sample_independent(self, study: Any, trial: Any, param_name: str, dist: Any):
            return self.tpe.sample_independent(self.window, trial, param_name, dist)

        def reseed_rng(self) -> None:
            self.tpe.reseed_rng()

    return WindowedTPESampler


def _window_storage_class():
    """An ``InMemoryStorage`` whose one study's trials are the list ``trials``, which the
    window edits in place: appending a trial or rebuilding the window copies nothing
    (``Study.add_trials`` would validate and deep-copy every trial, every rebuild). Only the
    public storage method ``get_all_trials`` is overridden; the window's trials are lean,
    finished and never written through the storage."""
    if _STORAGE_CLASS:
        return _STORAGE_CLASS[0]
    import copy

    import optuna

    class WindowStorage(optuna.storages.InMemoryStorage):
        def __init__(self) -> None:
            super().__init__()
            self.trials: list = []

        def get_all_trials(self, study_id: int, deepcopy: bool = True,
                           states: Any = None) -> list:
            out = [t for t in self.trials if states is None or t.state in states]
            return copy.deepcopy(out) if deepcopy else out

    _STORAGE_CLASS.append(WindowStorage)
    return WindowStorage


_STORAGE_CLASS: list = []


def _merge_extras(extras: list, search_space: dict) -> list:
    """The queued draws: ``extras`` holds, per group TPE sampled (one ``_sample`` call each),
    the other blocks' winners in internal representation; draw j merges block j of every
    group, in external representation."""
    if not extras:
        return []
    n = min(len(e) for e in extras)
    return [{name: search_space[name].to_external_repr(v)
             for e in extras for name, v in e[j].items()} for j in range(n)]


def _batch_tpe_class():
    """Optuna's TPESampler drawing ``k * n_ei_candidates`` candidates from each Parzen fit.

    The one hook: ``TPESampler._compute_acquisition_func(samples, mpe_below, mpe_above)``, the
    method Optuna's TPE calls (Optuna 5.x, ``optuna/samplers/_tpe/sampler.py``) with the
    candidates it drew from l(x) and the two fitted estimators, whose argmax it returns. Here
    the candidates are ``k`` blocks of ``n_ei_candidates``; the override scores every block
    (public ``log_pdf`` of the estimators), keeps blocks 1..k-1's winners in ``extras`` and
    hides those blocks from Optuna's argmax, which thus returns block 0's winner. Each block's
    winner is one TPE draw: k draws from one fit. Outside a batched call (``batching`` False:
    TPE's independent sampling) only block 0 is scored: a plain TPE draw. The method's
    existence and signature are tested (tests/search/test_search.py); pyproject pins Optuna.
    """
    if _BATCH_CLASS:
        return _BATCH_CLASS[0]
    import optuna

    class BatchTPESampler(optuna.samplers.TPESampler):
        def __init__(self, k: int, *, n_ei_candidates: int = 24, **kw: Any) -> None:
            k = k if hasattr(optuna.samplers.TPESampler, HOOK) else 1  # no hook: plain TPE
            super().__init__(n_ei_candidates=n_ei_candidates * k, **kw)
            self.block, self.k = n_ei_candidates, k
            self.batching, self.blocks, self.extras = False, 1, []

        def _compute_acquisition_func(self, samples: dict, mpe_below: Any,
                                      mpe_above: Any) -> np.ndarray:
            m = self.block
            blocks = min(self.blocks, self.k) if self.batching else 1
            scored = {name: v[:m * blocks] for name, v in samples.items()}
            acq = np.full(next(iter(samples.values())).size, -np.inf)
            acq[:m * blocks] = mpe_below.log_pdf(scored) - mpe_above.log_pdf(scored)
            if self.batching:
                best = [j * m + int(np.argmax(acq[j * m:(j + 1) * m])) for j in range(1, blocks)]
                self.extras.append([{name: v[i].item() for name, v in samples.items()}
                                    for i in best])
            acq[m:] = -np.inf
            return acq

    _BATCH_CLASS.append(BatchTPESampler)
    return BatchTPESampler


_BATCH_CLASS: list = []
HOOK = "_compute_acquisition_func"   # the TPESampler method BatchTPESampler overrides


def _check_window(elite: int, recent: int, refit_every: int, tpe_kw: dict) -> None:
    if elite < 1 or recent < 1:
        raise ValueError(f"elite={elite}, recent={recent}: both must be >= 1")
    if refit_every < 1:
        raise ValueError(f"refit_every={refit_every}: must be >= 1")
    if tpe_kw.pop("constant_liar", False):
        raise ValueError("constant_liar=True: not supported; the window holds finished trials "
                         "only (kvmodel's workers never persist RUNNING trials); use False")


_CLASS: list = []


def WindowedTPESampler(*args: Any, **kw: Any) -> Any:  # noqa: N802 (a class factory)
    """Build the windowed TPE sampler (the class is created on first use so that importing
    kvmodel.search does not import Optuna)."""
    if not _CLASS:
        _CLASS.append(_make_class())
    return _CLASS[0](*args, **kw)


def gamma_exact(elite: int, recent: int) -> bool:
    """True when the window keeps TPE's good set exact: ``elite`` is at least TPE's
    ``gamma = min(ceil(n / 10), 25)`` of the largest window (``elite + recent + recent // 3``)."""
    return elite >= min(math.ceil((elite + recent + recent // 3) / 10), 25)
