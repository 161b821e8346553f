"""Running Optuna studies over a :class:`~kvmodel.search.Space` (Optuna is imported lazily)."""

from __future__ import annotations

import math
import multiprocessing as mp
import sys
import time
from typing import Any

from ._objectives import CONSTRAINTS, OBJECTIVES, check_names, evaluate_point, recorded_only
from ._space import Space, load_space
from ._storage import DEFAULT_STORAGE, open_storage

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
    if name == "tpe":
        return s.TPESampler(seed=seed, constraints_func=constraints_of, multivariate=True,
                            group=True, n_startup_trials=20)
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


_KEEP = ("ttft_s", "ttft_p90_s", "ttft_p99_s", "tpot_s", "tpot_p99_s", "output_tok_s",
         "goodput_rps", "cost_per_hour", "cost_per_mtok", "stable", "imbalance",
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
    return st


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


def _worker(space: Space, storage: Any, name: str, sampler: str, seed: int, total: int) -> None:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = _create(space, open_storage(storage), name, make_sampler(sampler, space, seed))
    cb = optuna.study.MaxTrialsCallback(total, states=(optuna.trial.TrialState.COMPLETE,))
    st.optimize(_objective(space), n_trials=total, callbacks=[cb])


def run(space: Any, n_trials: int = 100, storage: Any = None, study_name: str | None = None,
        sampler: str = "tpe", seed: int | None = 0, workers: int = 1,
        progress: bool = False) -> Any:
    """Run (or resume) a study until it holds ``n_trials`` COMPLETE trials; returns the
    ``optuna.Study``.

    ``space``: a :class:`Space`, file path, built-in name or dict. ``storage``: None (the
    journal file ``kvmodel-search.journal``), a path, ``sqlite:///...``, any Optuna RDB URL,
    or an Optuna storage object. ``study_name`` defaults to the space's name; rerunning with the
    same storage and name continues the study (trials of a killed worker are redone).
    ``workers`` > 1 starts that many processes on the same storage (path or URL only), seeds
    ``seed + i``. Infeasible configurations are COMPLETE trials with violated constraints
    (user attributes ``constraints`` and ``metrics["reason"]``).
    """
    import optuna
    space = load_space(space)
    check_names(space)
    name = study_name or space.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = _create(space, open_storage(storage), name, make_sampler(sampler, space, seed))
    done = _n_complete(st)
    if done >= n_trials:
        return st
    bar = Progress(n_trials, done) if progress else None
    if workers <= 1:
        st.optimize(_objective(space), n_trials=n_trials - done, callbacks=[bar] if bar else [])
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
            bar.draw(_n_complete(st), _best_text(st))
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} search worker(s) failed (exit codes {bad})")
