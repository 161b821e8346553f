"""Running Optuna studies over a :class:`~kvmodel.search.Space` (Optuna is imported lazily)."""

from __future__ import annotations

import copy
import math
import multiprocessing as mp
import signal
import sys
import threading
import time
from typing import Any

from kvmodel.search._objectives import (
    CONSTRAINTS,
    OBJECTIVES,
    check_names,
    evaluate_point,
    objective_label,
    recorded_only,
)
from kvmodel.search._samplers import WindowedTPESampler, constraint_values
from kvmodel.search._space import Space, load_space
from kvmodel.search._storage import DEFAULT_STORAGE, open_storage, sync

__all__ = ["run", "make_sampler", "suggest", "SAMPLERS", "constraints_of", "Progress",
           "SearchError", "SearchInterrupted", "MAX_CONSECUTIVE_FAILS"]

SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
GRID_MAX_POINTS = 2_000_000   # the grid sampler lists every point; same cap as grid_search
MAX_CONSECUTIVE_FAILS = 20    # FAIL trials in a row (non-finite objective) that stop a search
STOP_GRACE_S = 10.0           # after forwarding a signal, workers left running are killed


class SearchError(ValueError):
    """A search that cannot go on (every trial fails, a worker failed, a study mismatch)."""


class SearchInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM stopped :func:`run`: every worker finished the trial it was running,
    wrote it and flushed the storage; rerunning the same call resumes the study."""

    def __init__(self, signum: int, study_name: str, storage: Any, complete: int) -> None:
        self.signum, self.study_name, self.storage, self.complete = (signum, study_name,
                                                                       storage, complete)
        where = storage if isinstance(storage, str) else type(storage).__name__
        super().__init__(f"interrupted by {signal.Signals(signum).name}: study {study_name!r} "
                         f"holds {complete} complete trial(s) in {where}; rerun the same "
                         f"command to resume it")


class _Stop:
    """Context manager: SIGINT and SIGTERM set ``signum``, which the loops check between
    trials (a second SIGINT raises KeyboardInterrupt at once). Installed in the main thread
    only (elsewhere, e.g. in the Streamlit app, signals are left alone)."""

    def __init__(self) -> None:
        self.signum, self.old = 0, {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "_Stop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)


def constraints_of(trial: Any) -> list[float]:
    """Constraint values (<= 0 satisfied) a trial recorded (``user_attrs["constraints"]``, or
    Optuna's ``system_attrs["constraints"]`` in older studies); a trial without them (failed
    before evaluating) counts as violating the fit constraint."""
    c = constraint_values(trial)
    return [1.0] + [0.0] * (len(CONSTRAINTS) - 1) if c is None else c


def make_sampler(name: str, space: Space, seed: int | None = 0) -> Any:
    """The Optuna sampler ``name`` (:data:`SAMPLERS`), constraint-aware where Optuna supports it
    (tpe, nsga2, gp); random and grid record the constraints without steering by them."""
    import warnings

    import optuna
    if name not in SAMPLERS:
        raise ValueError(f"sampler={name!r}; allowed: {SAMPLERS}")
    if name == "tpe":  # Optuna's TPE on a bounded window of the history, fed new trials every
        # 4 draws, every 8 once the study holds elite + recent trials (see _samplers). No
        # constant liar: workers persist finished trials only, so a mirror never holds another
        # worker's RUNNING trial to lie about.
        return WindowedTPESampler(seed=seed, constraints_func=constraints_of, multivariate=True,
                                  group=True, n_startup_trials=20, elite=25, recent=75,
                                  refit_every=4, refit_every_full=8)
    # constraints_func: deprecated in Optuna 5 (FutureWarning) in favour of per-key
    # Trial.set_constraint; it still works up to Optuna 7 and reads kvmodel's own copy of the
    # constraints (user_attrs), so the warning is silenced here, only around construction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _optuna_sampler(name, space, seed)


def _optuna_sampler(name: str, space: Space, seed: int | None) -> Any:
    import optuna
    s = optuna.samplers
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
    if space.grid_size() > GRID_MAX_POINTS:
        raise ValueError(f"sampler 'grid': space {space.name!r} has {space.grid_size():,} "
                         f"grid points, more than {GRID_MAX_POINTS:,}; narrow the ranges "
                         f"or use tpe / nsga2 / random")
    return s.GridSampler({d.name: d.grid_values() for d in space.dims}, seed=seed)


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
         "max_rate_at_slo", "tier_utilisation", "prefill_instances", "decode_instances",
         "gpus_per_instance", "spec_tpot_factor", "spec_accepted_tokens", "ep_alltoall_share")


def _objective(space: Space):
    def objective(trial):
        out = evaluate_point(space, suggest(trial, space))
        m = {k: out.metrics[k] for k in _KEEP if k in out.metrics}
        m |= {k: v for k, v in out.metrics.items() if k.startswith("hit_")}
        m = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in m.items()}
        trial.set_user_attr("constraints", list(out.constraints))
        trial.set_user_attr("metrics", m | {"reason": out.reason, "feasible": out.feasible})
        if not all(math.isfinite(v) for v in out.values):
            trial.set_user_attr("fail_reason", f"non-finite objective value(s) {out.values} "
                                               f"({out.reason or 'no reason given'})")
            return None
        return out.values if len(out.values) > 1 else out.values[0]
    return objective


def _create(space: Space, storage: Any, study_name: str, sampler: Any) -> Any:
    import optuna
    st = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler,
                             load_if_exists=True,
                             directions=[OBJECTIVES[m].direction for m in space.metrics])
    attrs = st.user_attrs
    if "kvmodel_space" not in attrs:
        st.set_user_attr("kvmodel_space", space.name)
        st.set_user_attr("kvmodel_space_sha256", space.digest)
        st.set_user_attr("metrics", list(space.metrics))
        st.set_user_attr("constraints", list(CONSTRAINTS))
        st.set_user_attr("recorded_only", recorded_only(space))
    else:
        _check_same_space(attrs, space, study_name)
        if list(attrs.get("metrics", [])) != list(space.metrics):
            raise SearchError(f"study {study_name!r} exists with objectives "
                              f"{attrs.get('metrics')}, not {list(space.metrics)}")
        if "kvmodel_space_sha256" not in attrs:  # a study from before the digest existed
            st.set_user_attr("kvmodel_space_sha256", space.digest)
    _name_metrics(st, space.metrics)
    return st


def _check_same_space(attrs: dict, space: Space, study_name: str) -> None:
    """Refuse to add trials of ``space`` to a study run on another space (name or content)."""
    name, digest = attrs["kvmodel_space"], attrs.get("kvmodel_space_sha256")
    if name != space.name or (digest is not None and digest != space.digest):
        raise SearchError(
            f"study {study_name!r} was run on space {name!r} (sha256 {str(digest)[:12]}), not "
            f"on space {space.name!r} (sha256 {space.digest[:12]}); its trials would mix two "
            f"spaces: give another study name (--study-name) or another storage")


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
    from kvmodel.search._report import best_trials
    best = best_trials(study, top=1)
    if not best:
        return "- (no feasible trial yet)"
    v = best[0].values
    return ", ".join(f"{x:.4g}" for x in v) + (" (Pareto)" if len(v) > 1 else "")


def _worker(space: Space, storage: Any, name: str, sampler: str, seed: int | None,
            total: int, quota: int) -> None:
    """One worker process of :func:`run` (SIGINT / SIGTERM: finish the trial, flush, exit 0;
    a search error: one line on stderr, exit 3)."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _Stop() as stop:
        try:
            store = open_storage(storage)
            st = _create(space, store, name, None)
            _loop(st, store, space, sampler, seed, total, None, stop, quota)
        except SearchError as exc:
            print(f"kvmodel search worker: {exc}", file=sys.stderr, flush=True)
            sys.exit(3)


class _Mirror:
    """The in-memory study the sampler works on, kept in step with the persistent one.

    Each finished trial is written to the persistent storage in one operation (a trial
    created from a template: one journal line, one SQL transaction), not the ten or so writes
    of Optuna's define-by-run trial (create, each parameter, attributes, state). A worker
    killed mid-trial therefore leaves nothing behind: the trial it was running is simply
    redone. Trials other workers finished are copied in before every ask, so a sampler sees
    the whole study. ``storage`` is the storage object ``persist`` was opened on; only public
    storage methods are used.
    """

    def __init__(self, persist: Any, storage: Any, sampler: Any) -> None:
        import optuna
        self.persist, self.store = persist, storage
        self.sid = storage.get_study_id_from_name(persist.study_name)
        self.known: set = set()          # numbers of persistent trials handled
        self.pending: set = set()        # (RDB) numbers seen unfinished, to look at again
        self.seen, self.cursor = 0, 0
        self.same = isinstance(storage, optuna.storages.InMemoryStorage)
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
            self.n_complete = len(self.persist.get_trials(deepcopy=False, states=done))
            return self.n_complete
        if isinstance(self.store, optuna.storages.RDBStorage):
            new = self._new_rdb()
        else:  # journal: its in-memory replay is already incremental; trials are appended
            listed = self.store.get_all_trials(self.sid, deepcopy=False, states=done)
            new, self.cursor = listed[self.cursor:], len(listed)
        for t in new:
            if t.number not in self.known:
                self.known.add(t.number)
                self.n_complete += 1
                self.mem.add_trial(t)
        return self.n_complete

    def _new_rdb(self) -> list:
        """COMPLETE trials numbered after the last look (and those unfinished then): a count
        query, then one lookup per new trial, instead of reloading the study."""
        import optuna
        n = self.store.get_n_trials(self.sid)
        out = []
        for number in sorted(self.pending | set(range(self.seen, n))) if n > self.seen \
                else sorted(self.pending):
            if number in self.known:
                continue
            t = self.store.get_trial(
                self.store.get_trial_id_from_study_id_trial_number(self.sid, number))
            if not t.state.is_finished():
                self.pending.add(number)
                continue
            self.pending.discard(number)
            if t.state == optuna.trial.TrialState.COMPLETE:
                out.append(t)
        self.seen = max(self.seen, n)
        return out

    def push(self, trial: Any) -> None:
        """Write a finished trial of the mirror to the persistent storage, with its
        constraints also where Optuna and optuna-dashboard look (``system_attrs``)."""
        if self.same:
            return
        cons = trial.user_attrs.get("constraints")
        if (cons is not None and "constraints" not in trial.system_attrs
                and trial.state.name in ("COMPLETE", "PRUNED")):
            trial = copy.copy(trial)
            trial.system_attrs = {**trial.system_attrs, "constraints": tuple(cons)}
        tid = self.store.create_new_trial(self.sid, template_trial=trial)
        number = self.store.get_trial_number_from_id(tid)
        self.known.add(number)
        if trial.state.name == "COMPLETE":
            self.n_complete += 1


def _loop(st: Any, store: Any, space: Space, sampler: str, seed: int | None, total: int,
          bar: "Progress | None", stop: "_Stop | None" = None, quota: int | None = None) -> None:
    """Ask, evaluate, tell and persist until the study holds ``total`` COMPLETE trials, this
    process has completed ``quota`` of them, or ``stop`` caught a signal. ``store``: the
    storage object ``st`` was opened on."""
    mirror = _Mirror(st, store, None)
    done = mirror.n_complete
    if done >= total:
        return
    if seed is not None and done:  # a resumed study must not replay the first run's draws
        seed = (seed * 1_000_003 + done) % 2**31
    mirror.mem.sampler = make_sampler(sampler, space, seed)
    objective = _objective(space)
    try:
        _ask_tell(mirror, objective, total, bar, stop, total - done if quota is None else quota)
    finally:
        sync(store)


def _ask_tell(mirror: _Mirror, objective: Any, total: int, bar: Any, stop: Any,
              quota: int) -> None:
    """The trial loop. A FAIL trial (non-finite objective) is stored but not counted; after
    :data:`MAX_CONSECUTIVE_FAILS` in a row the search stops with :class:`SearchError`."""
    import optuna
    done, mine, fails = mirror.n_complete, 0, 0
    while done < total and mine < quota and not (stop and stop.signum):
        trial = mirror.mem.ask()
        try:
            value = objective(trial)
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            mirror.push(mirror.mem.tell(trial, state=optuna.trial.TrialState.FAIL))
            raise
        if value is None:
            frozen = mirror.mem.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            frozen = mirror.mem.tell(trial, value)
        mirror.push(frozen)
        fails = fails + 1 if frozen.state.name == "FAIL" else 0
        mine += fails == 0
        if fails >= MAX_CONSECUTIVE_FAILS:
            raise SearchError(f"{fails} trials in a row failed, stopping; the last: "
                              f"{frozen.user_attrs.get('fail_reason', 'no reason recorded')}")
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
    in the others' finished trials before every ask; the trials still to run are split between
    them in quotas, so the study ends with exactly ``n_trials`` COMPLETE trials. Infeasible
    configurations are COMPLETE trials with violated constraints (user attributes
    ``constraints`` and ``metrics["reason"]``); a trial with a non-finite objective is stored
    as FAIL, not counted, and :data:`MAX_CONSECUTIVE_FAILS` of them in a row raise
    :class:`SearchError`. The study records its space's name and sha256
    (:func:`~kvmodel.search.space_digest`); resuming it with another space raises
    :class:`SearchError`. SIGINT / SIGTERM (forwarded to the workers) end the running trials,
    flush the storage and raise :class:`SearchInterrupted` (the CLI exits 130).
    """
    import optuna
    space = load_space(space)
    check_names(space)
    for arg, v in (("n_trials", n_trials), ("workers", workers)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{arg}={v!r}: must be an integer >= 1")
    name = study_name or space.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(storage)
    st = _create(space, store, name, None)
    done = _n_complete(st)
    if done >= n_trials:
        return st
    bar = Progress(n_trials, done) if progress else None
    with _Stop() as stop:
        if workers <= 1:
            _loop(st, store, space, sampler, seed, n_trials, bar, stop)
        else:
            _run_workers(space, storage, name, sampler, seed, n_trials, workers, bar, stop,
                         n_trials - done)
            st = optuna.load_study(study_name=name, storage=open_storage(storage))
        if stop.signum:
            if bar is not None:
                bar.stream.write("\n")
            raise SearchInterrupted(stop.signum, name, storage or DEFAULT_STORAGE,
                                    _n_complete(st))
    return st


def _run_workers(space, storage, name, sampler, seed, total, workers, bar, stop, todo) -> None:
    """Start ``workers`` processes sharing ``todo`` trials (quotas differ by at most one, so
    the study ends with exactly ``total`` COMPLETE trials); forward SIGINT / SIGTERM to them."""
    if storage is not None and not isinstance(storage, str):
        raise ValueError("workers > 1 needs storage as a path or URL (each process opens it)")
    ctx = mp.get_context("spawn")
    quotas = [todo // workers + (i < todo % workers) for i in range(workers)]
    procs = [ctx.Process(target=_worker, args=(space, storage or DEFAULT_STORAGE, name, sampler,
                                               None if seed is None else seed + i, total, q))
             for i, q in enumerate(quotas) if q > 0]
    # children start with SIGINT ignored (a Ctrl-C while they import is not a traceback);
    # each worker installs its own handlers before its first trial
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if stop.old else None
    try:
        for p in procs:
            p.start()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    _watch(procs, storage, name, bar, stop)
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad and not stop.signum:
        raise SearchError(f"{len(bad)} search worker(s) failed (exit codes {bad}; their "
                          f"messages are above)")


def _watch(procs: list, storage: Any, name: str, bar: Any, stop: _Stop) -> None:
    """Wait for the workers, drawing progress; on a signal, forward SIGTERM to them and kill
    those still running :data:`STOP_GRACE_S` later."""
    st, forwarded = None, None
    while any(p.is_alive() for p in procs):
        time.sleep(0.1 if stop.signum else 0.5)
        if stop.signum and forwarded is None:
            forwarded = time.monotonic()
            for p in procs:
                if p.is_alive():
                    p.terminate()
        if forwarded is not None and time.monotonic() - forwarded > STOP_GRACE_S:
            for p in procs:
                if p.is_alive():
                    p.kill()
        if bar is not None and not stop.signum:
            import optuna
            st = st or optuna.load_study(study_name=name, storage=open_storage(storage))
            bar.update(_n_complete(st), st, force=True)
    for p in procs:
        p.join()
