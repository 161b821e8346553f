"""Reading studies back: best / Pareto trials (feasible only), tables, CSV and plotly HTML."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from kvmodel.search._objectives import objective_label

__all__ = ["kaleido_available", "IMAGE_FORMATS", "best_trials", "pareto_front", "rows", "show",
           "export", "is_feasible", "dominates"]


def is_feasible(trial: Any) -> bool:
    c = trial.user_attrs.get("constraints")
    return c is not None and all(x <= 0 for x in c)


def _signs(study: Any) -> list[float]:
    import optuna
    return [-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions]


def dominates(a: list[float], b: list[float]) -> bool:
    """a dominates b (both as minimisation vectors)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def _complete_feasible(study: Any) -> list[Any]:
    import optuna
    ts = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return [t for t in ts if is_feasible(t)]


def pareto_front(study: Any) -> list[Any]:
    """Feasible COMPLETE trials no other feasible trial dominates, sorted by the first value
    (duplicates of the same values are kept once)."""
    s = _signs(study)
    pts = sorted(((tuple(v * k for v, k in zip(t.values, s)), t) for t in _complete_feasible(study)),
                 key=lambda p: p[0])
    front, seen = [], set()
    for v, t in pts:
        if v in seen or any(dominates(list(f), list(v)) for f, _ in front):
            continue
        front = [(f, ft) for f, ft in front if not dominates(list(v), list(f))] + [(v, t)]
        seen.add(v)
    return [t for _, t in front]


def best_trials(study: Any, top: int = 10) -> list[Any]:
    """Single objective: the ``top`` best feasible trials; several: the Pareto front."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValueError(f"top={top!r}: must be an integer >= 0")
    if len(study.directions) > 1:
        return pareto_front(study)[:top] if top else pareto_front(study)
    k = _signs(study)[0]
    return sorted(_complete_feasible(study), key=lambda t: k * t.values[0])[:top]


def rows(study: Any) -> list[dict[str, Any]]:
    """One flat dict per trial: number, state, values, feasible, reason, params, metrics,
    constraints."""
    metrics = study.user_attrs.get("metrics", [f"value{i}" for i in range(len(study.directions))])
    cons = study.user_attrs.get("constraints", [])
    out = []
    for t in study.get_trials(deepcopy=False):
        r = {"number": t.number, "state": t.state.name, "feasible": is_feasible(t)}
        r |= dict(zip(metrics, t.values or [math.nan] * len(metrics)))
        r |= {f"param_{k}": v for k, v in t.params.items()}
        m = t.user_attrs.get("metrics", {})
        r |= {f"m_{k}": v for k, v in m.items() if k not in ("reason", "feasible")}
        r |= {f"c_{k}": v for k, v in zip(cons, t.user_attrs.get("constraints", []))}
        r["reason"] = m.get("reason", "")
        out.append(r)
    return out


def show(study: Any, top: int = 10) -> str:
    """A text report: counts, infeasibility reasons, and the best trials or the Pareto front."""
    import optuna
    metrics = study.user_attrs.get("metrics", ["value"])
    ts = study.get_trials(deepcopy=False)
    done = [t for t in ts if t.state == optuna.trial.TrialState.COMPLETE]
    feas = [t for t in done if is_feasible(t)]
    lines = [f"study {study.study_name!r}: {len(ts)} trials, {len(done)} complete, "
             f"{len(feas)} feasible; objectives "
             + ", ".join(objective_label(m) for m in metrics)]
    rec = study.user_attrs.get("recorded_only", [])
    if rec:
        lines.append(f"recorded but not modelled by evaluate(): {', '.join(rec)}")
    names = study.user_attrs.get("constraints", [])
    reasons: dict[str, int] = {}
    for t in done:
        if not is_feasible(t):
            c = t.user_attrs.get("constraints", [1.0])
            key = "+".join(n for n, v in zip(names, c) if v > 0) or "fit"
            reasons[key] = reasons.get(key, 0) + 1
    if reasons:
        lines.append("infeasible (violated constraints): "
                     + ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items())))
    best = best_trials(study, top)
    lines.append(("Pareto front" if len(metrics) > 1 else "best feasible trials") + ":")
    for t in best:
        vals = "  ".join(f"{m}={v:.4g}" for m, v in zip(metrics, t.values))
        ps = " ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
        lines.append(f"  #{t.number:<5d} {vals}   {ps}")
    if not best:
        lines.append("  (none feasible)")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def export(study: Any, out_dir: Any, html: bool = True,
           images: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write ``trials.csv`` (every trial, see :func:`rows`) and, with ``html``, plotly pages:
    ``pareto.html`` (several objectives) or ``history.html`` (one), ``parallel.html`` and
    ``importance.html``; each plot also as an image per format in ``images`` (default
    ``("png", "svg")`` when kaleido is installed, else none; asking for images without
    kaleido raises ImportError saying what to install). Returns {kind: path}, e.g.
    ``{"csv": ..., "history": ....html, "history.png": ...}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rs = rows(study)
    keys = list(dict.fromkeys(k for r in rs for k in r))
    paths = {"csv": out / "trials.csv"}
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rs)
    if images is None:
        images = IMAGE_FORMATS if kaleido_available() else ()
    elif images:
        _need_kaleido()
    if (html or images) and _complete_feasible(study):
        paths |= _plots(study, out, html, tuple(images))
    return paths


IMAGE_FORMATS = ("png", "svg")
KALEIDO_HINT = ("PNG/SVG export needs kaleido>=1 (pip install 'kvmodel[export]') and a Chrome or "
                "Chromium browser: a system one (e.g. Debian's chromium) is found by itself, "
                "else run 'plotly_get_chrome' once; the HTML pages open in any browser and "
                "save images from the plot's camera button")


def kaleido_available() -> bool:
    """Whether plotly can write static images (kaleido >= 1 importable)."""
    import importlib.util
    return importlib.util.find_spec("kaleido") is not None


def _need_kaleido() -> None:
    if not kaleido_available():
        raise ImportError(KALEIDO_HINT)


def _plots(study: Any, out: Path, html: bool = True,
           images: tuple[str, ...] = ()) -> dict[str, Path]:
    import optuna.visualization as vis

    from kvmodel.search._study import constraints_of
    metrics = [objective_label(m) for m in study.user_attrs.get("metrics", ["value"])]
    paths, figs = {}, {}
    if len(metrics) > 1:
        figs["pareto"] = vis.plot_pareto_front(study, target_names=metrics,
                                               constraints_func=constraints_of)
        target = {"target": lambda t: t.values[0], "target_name": metrics[0]}
    else:
        figs["history"] = vis.plot_optimization_history(study, target_name=metrics[0])
        target = {"target_name": metrics[0]}
    figs["parallel"] = vis.plot_parallel_coordinate(study, **target)
    try:
        figs["importance"] = vis.plot_param_importances(study, **target)
    except (RuntimeError, ValueError, ZeroDivisionError):
        pass  # too few distinct trials to rank parameters
    for k, f in figs.items():
        if html:
            paths[k] = out / f"{k}.html"
            f.write_html(paths[k], include_plotlyjs="cdn")
        for fmt in images:
            paths[f"{k}.{fmt}"] = out / f"{k}.{fmt}"
            f.write_image(paths[f"{k}.{fmt}"], format=fmt)
    return paths
