"""Running Optuna studies over a :class:`~kvmodel.search.Space` (Optuna is imported lazily)."""

from __future__ import annotations

import math
import multiprocessing as mp
import sys
import time
from typing import Any

from ._samplers import WindowedTPESampler
from ._objectives import (CONSTRAINTS, OBJECTIVES, check_names, evaluate_point, objective_label,
                          recorded_only)
from ._space import Space, load_space
from ._storage import DEFAULT_STORAGE, open_storage, sync

__all__ = ["run", "make_sampler", "suggest", "SAMPLERS", "constraints_of", "Progress"]

SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")


def constraints_of(trial: Any) -> list[float]:
    """Constraint values (<= 0 satisfied) a trial recorded; a trial without them (failed before
    evaluating) counts as violating the fit constraint."""
    return list(trial.user_attrs.get("constraints", [1.0] + [0.0] * (len(CONSTRAINTS) - 1)))


def make_sampler(name: str, space: Space, seed: int | None = 0) -> Any:
    """The Optuna sampler ``name`` (:data:`SAMPLERS`), constraint-aware where Optuna supports it
    (tpe, nsga2, gp); random and grid record the constraints without steering by them."""
    import warnings
    import optuna
    s = optuna.samplers
    # constraints_func: deprecated in Optuna 5 in favour of per-key Trial.set_constraint (one
    # storage write per constraint); kept while it works, as it costs one write per trial
    warnings.filterwarnings("ignore", message=".*constraints_func.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*``group``.*")
    if name == "tpe":  # Optuna's TPE on a bounded window of the history, refitted every 4
        # draws (see _samplers). No constant liar: workers persist finished trials only, so a
        # mirror never holds another worker's RUNNING trial to lie about.
        return WindowedTPESampler(seed=seed, constraints_func=constraints_of, multivariate=True,
                                  group=True, n_startup_trials=20, elite=25, recent=75,
                                  refit_every=4, constant_liar=False)
    if name == "nsga2":
        return s.NSGAIISampler(seed=seed, constraints_func=constraints_of)
    if name == "gp":
        try:
            import torch  # noqa: F401  (GPSampler needs it)
        except ImportError:
            raise ValueError("sampler 'gp' needs PyTorch (pip install torch); "
                             "use tpe, nsga2, random or grid") from None
        return s.GPSampler(seed=seed, constraints_func=constraints_of)
    if name == "random":
        return s.RandomSampler(seed=seed)
    if name == "grid":
        return s.GridSampler({d.name: d.grid_values() for d in space.dims}, seed=seed)
    raise ValueError(f"sampler={name!r}; allowed: {SAMPLERS}")


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """Sample the space's active dimensions in declaration order (define-by-run: a conditional
    dimension is asked only when its parents take one of the ``when`` values)."""
    params: dict[str, Any] = {}
    for d in space.dims:
        if not d.active(space.fixed | params):
            continue
        if d.choices is not None:
            params[d.name] = trial.suggest_categorical(d.name, list(d.choices))
        elif d.is_int:
            params[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high),
                                               step=int(d.step or 1), log=d.log)
        else:
            params[d.name] = trial.suggest_float(d.name, d.low, d.high, step=d.step, log=d.log)
    return params


_KEEP = ("ttft_s", "ttft_p90_s", "ttft_p99_s", "tpot_s", "tpot_p99_s", "output_tok_per_s",
         "goodput_per_s", "cost_usd_per_h", "cost_usd_per_mtok", "stable", "imbalance",
         "max_rate_at_slo", "tier_utilisation", "prefill_instances", "decode_instances")


def _objective(space: Space):
    def objective(trial):
        out = evaluate_point(space, suggest(trial, space))
        m = {k: out.metrics[k] for k in _KEEP if k in out.metrics}
        m |= {k: v for k, v in out.metrics.items() if k.startswith("hit_")}
        m = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in m.items()}
        trial.set_user_attr("constraints", list(out.constraints))
        trial.set_user_attr("metrics", m | {"reason": out.reason, "feasible": out.feasible})
        return out.values if len(out.values) > 1 else out.values[0]
    return objective


def _create(space: Space, storage: Any, study_name: str, sampler: Any) -> Any:
    import optuna
    st = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler,
                             load_if_exists=True,
                             directions=[OBJECTIVES[m].direction for m in space.metrics])
    if "kvmodel_space" not in st.user_attrs:
        st.set_user_attr("kvmodel_space", space.name)
        st.set_user_attr("metrics", list(space.metrics))
        st.set_user_attr("constraints", list(CONSTRAINTS))
        st.set_user_attr("recorded_only", recorded_only(space))
    elif list(st.user_attrs.get("metrics", [])) != list(space.metrics):
        raise ValueError(f"study {study_name!r} exists with objectives "
                         f"{st.user_attrs.get('metrics')}, not {list(space.metrics)}")
    _name_metrics(st, space.metrics)
    return st


def _name_metrics(st: Any, metrics: Any) -> None:
    """Label the objectives with unit and direction in Optuna's ``metric_names`` (what
    optuna-dashboard shows instead of "Objective 0"); studies made before this get them when
    reopened. The stored identifiers (user attribute ``metrics``) are unchanged."""
    import warnings
    import optuna
    labels = [objective_label(m) for m in metrics]
    if st.metric_names != labels:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            st.set_metric_names(labels)


def _n_complete(study: Any) -> int:
    import optuna
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


class Progress:
    """Optuna callback drawing ``[####....] done/total best=... ETA`` on stderr at most every
    ``every_s`` seconds (trials done, best feasible value so far, time to go)."""

    def __init__(self, total: int, done: int = 0, every_s: float = 0.5, stream=sys.stderr):
        self.total, self.done0, self.every, self.stream = total, done, every_s, stream
        self.t0, self.last, self.n = time.perf_counter(), 0.0, 0

    def __call__(self, study: Any, trial: Any) -> None:
        self.n += 1
        now = time.perf_counter()
        if now - self.last >= self.every or self.done0 + self.n >= self.total:
            self.last = now
            self.draw(self.done0 + self.n, _best_text(study))

    def update(self, done: int, study: Any, force: bool = False) -> None:
        """Redraw with ``done`` trials finished (throttled to ``every_s`` unless ``force``)."""
        now = time.perf_counter()
        if force or now - self.last >= self.every or done >= self.total:
            self.last = now
            self.draw(done, _best_text(study))

    def draw(self, done: int, best: str) -> None:
        el = time.perf_counter() - self.t0
        rate = max(done - self.done0, 1) / max(el, 1e-9)
        eta = max(self.total - done, 0) / rate
        k = int(30 * min(done / max(self.total, 1), 1.0))
        self.stream.write(f"\r[{'#' * k}{'.' * (30 - k)}] {done}/{self.total} trials  "
                          f"{rate:.0f}/s  best {best}  ETA {eta:.0f}s ")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _best_text(study: Any) -> str:
    from ._report import best_trials
    best = best_trials(study, top=1)
    if not best:
        return "- (no feasible trial yet)"
    v = best[0].values
    return ", ".join(f"{x:.4g}" for x in v) + (" (Pareto)" if len(v) > 1 else "")


def _worker(space: Space, storage: Any, name: str, sampler: str, seed: int | None,
            total: int) -> None:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = _create(space, open_storage(storage), name, make_sampler(sampler, space, seed))
    _loop(st, space, sampler, seed, total, None)


class _Mirror:
    """The in-memory study the sampler works on, kept in step with the persistent one.

    Each finished trial is written to the persistent storage in one operation (a trial
    created from a template: one journal line, one SQL transaction), not the ten or so writes
    of Optuna's define-by-run trial (create, each parameter, attributes, state). A worker
    killed mid-trial therefore leaves nothing behind: the trial it was running is simply
    redone. Trials other workers finished are copied in before every ask, so a sampler sees
    the whole study.
    """

    def __init__(self, persist: Any, sampler: Any) -> None:
        import optuna
        self.persist, self.known, self.last_id, self.cursor = persist, set(), -1, 0
        self.same = isinstance(persist._storage, optuna.storages.InMemoryStorage)
        self.mem = persist if self.same else optuna.create_study(
            storage=optuna.storages.InMemoryStorage(), sampler=sampler,
            directions=persist.directions)
        self.n_complete = 0
        self.pull()

    def pull(self) -> int:
        """Copy in COMPLETE trials not seen yet; returns the persistent COMPLETE count."""
        import optuna
        done = (optuna.trial.TrialState.COMPLETE,)
        if self.same:
            self.n_complete = len(self.persist._get_trials(deepcopy=False, states=done))
            return self.n_complete
        store, sid = self.persist._storage, self.persist._study_id
        if isinstance(store, optuna.storages.RDBStorage):  # only rows newer than the last seen
            new = store._get_trials(sid, done, set(), self.last_id - 64)
        else:  # journal: its in-memory replay is already incremental; trials are appended
            listed = store.get_all_trials(sid, deepcopy=False, states=done)
            new, self.cursor = listed[self.cursor:], len(listed)
        for t in new:
            if t._trial_id not in self.known:
                self.known.add(t._trial_id)
                self.last_id = max(self.last_id, t._trial_id)
                self.mem.add_trial(t)
        self.n_complete = len(self.known)
        return self.n_complete

    def push(self, trial: Any) -> None:
        """Write a finished trial of the mirror to the persistent storage."""
        if self.same:
            return
        tid = self.persist._storage.create_new_trial(self.persist._study_id, template_trial=trial)
        self.last_id = max(self.last_id, tid)
        if trial.state.name == "COMPLETE":
            self.known.add(tid)
            self.n_complete += 1


def _loop(st: Any, space: Space, sampler: str, seed: int | None, total: int,
          bar: "Progress | None") -> None:
    """Ask, evaluate, tell and persist until the study holds ``total`` COMPLETE trials."""
    mirror = _Mirror(st, None)
    done = mirror.n_complete
    if done >= total:
        return
    if seed is not None and done:  # a resumed study must not replay the first run's draws
        seed = (seed * 1_000_003 + done) % 2**31
    mirror.mem.sampler = make_sampler(sampler, space, seed)
    objective = _objective(space)
    try:
        _ask_tell(mirror, objective, done, total, bar)
    finally:
        sync(st._storage)


def _ask_tell(mirror: _Mirror, objective: Any, done: int, total: int, bar: Any) -> None:
    import optuna
    while done < total:
        trial = mirror.mem.ask()
        try:
            value = objective(trial)
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            mirror.mem.tell(trial, state=optuna.trial.TrialState.FAIL)
            mirror.push(mirror.mem._storage.get_trial(trial._trial_id))
            raise
        mirror.mem.tell(trial, value)
        mirror.push(mirror.mem._storage.get_trial(trial._trial_id))
        done = mirror.pull()
        if bar is not None:
            bar.update(done, mirror.mem)


def run(space: Any, n_trials: int = 100, storage: Any = None, study_name: str | None = None,
        sampler: str = "tpe", seed: int | None = 0, workers: int = 1,
        progress: bool = False) -> Any:
    """Run (or resume) a study until it holds ``n_trials`` COMPLETE trials; returns the
    ``optuna.Study`` (on the given storage).

    ``space``: a :class:`Space`, file path, built-in name or dict. ``storage``: None (the
    journal file ``kvmodel-search.journal``), a path, ``sqlite:///...``, any Optuna RDB URL,
    or an Optuna storage object. ``study_name`` defaults to the space's name; rerunning with the
    same storage and name continues the study. The sampler works on an in-memory mirror of the
    study and each finished trial is written in one storage operation, so a killed worker loses
    only the trial it was running and leaves no RUNNING trial behind. ``workers`` > 1 starts
    that many processes on the same storage (path or URL only), seeds ``seed + i``; each copies
    in the others' finished trials before every ask. Infeasible configurations are COMPLETE
    trials with violated constraints (user attributes ``constraints`` and ``metrics["reason"]``).
    """
    import optuna
    space = load_space(space)
    check_names(space)
    name = study_name or space.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = _create(space, open_storage(storage), name, None)
    done = _n_complete(st)
    if done >= n_trials:
        return st
    bar = Progress(n_trials, done) if progress else None
    if workers <= 1:
        _loop(st, space, sampler, seed, n_trials, bar)
        return st
    _run_workers(space, storage, name, sampler, seed, n_trials, workers, bar)
    return optuna.load_study(study_name=name, storage=open_storage(storage))


def _run_workers(space, storage, name, sampler, seed, total, workers, bar) -> None:
    if storage is not None and not isinstance(storage, str):
        raise ValueError("workers > 1 needs storage as a path or URL (each process opens it)")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(space, storage or DEFAULT_STORAGE, name, sampler,
                                               None if seed is None else seed + i, total))
             for i in range(workers)]
    for p in procs:
        p.start()
    st = None
    while any(p.is_alive() for p in procs):
        time.sleep(0.5)
        if bar is not None:
            import optuna
            st = st or optuna.load_study(study_name=name, storage=open_storage(storage))
            bar.update(_n_complete(st), st, force=True)
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} search worker(s) failed (exit codes {bad})")
