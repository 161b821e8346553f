"""Fidelity report and calibration against published serving measurements.

``run_validation(path)`` predicts every supported row of a CSV in the schema of
``hardware_db/measurements/serving_calibration.csv`` and reports absolute percentage error by
metric, GPU, framework and source (median and mean), plus coverage (rows skipped and why).
``fit_calibration()`` fits the few global efficiency parameters marked *fit* in
``calibration.toml`` by least squares on log(predicted / measured) — never per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from kvmodel.base.tables import ErrorReport, read_csv
from kvmodel.catalog.hardware import data_dir, get_calibration, get_framework, get_gpu, raw_entry
from kvmodel.catalog.models import get_model
from kvmodel.instance import _estimate, _trtllm_bench

__all__ = ["run_validation", "fit_calibration", "ValidationReport", "load_rows", "FIT_PARAMS"]

FIT_PARAMS = ("gemm_efficiency_factor", "memory_efficiency_factor", "collective_latency",
              "kernel_latency", "sequence_overhead", "request_overhead")
# Physical ranges the fit may not leave. gemm/memory factors: fractions of the GPU's own
# measured best-case efficiency. collective_latency <= 15 us: a latency-bound ring all-reduce on
# 8 GPUs takes 2(n-1) = 14 NVLink hops of 0.83 us (links.toml nvlink4 latency) plus a launch;
# serving engines use one-shot custom all-reduce kernels for small messages, which need fewer.
# (NCCL's own 1 MiB all-reduce on 8x H100 takes 42 us: 1.75 MiB / 43.7 GB/s busbw, Azure ND H100
# v5 row of hardware_measurements.csv; letting the fit reach that makes the held-out error worse.)
# kernel_latency <= 15 us: a GEMM at serving shapes on H200 costs its roofline time plus about
# 17-22 us in eager PyTorch, of which ~8 us is the eager launch gap that CUDA graphs remove
# (hardware_db/measurements/h200_microbench_2026-11-26.json). Host costs: up to 20 us per
# sequence per step and 20 ms per request.
_BOUNDS = {"gemm_efficiency_factor": (0.3, 1.0), "memory_efficiency_factor": (0.5, 1.0),
           "collective_latency": (2e-6, 15e-6), "kernel_latency": (0.0, 15e-6),
           "sequence_overhead": (0.0, 20e-6), "request_overhead": (0.0, 20e-3)}
_SCALE = {"gemm_efficiency_factor": 1.0, "memory_efficiency_factor": 1.0,
          "collective_latency": 1e-5, "kernel_latency": 1e-5,
          "sequence_overhead": 1e-5, "request_overhead": 1e-3}
_COLUMNS = ("id", "model", "gpu", "num_gpus", "tp", "pp", "ep", "precision", "input_len",
            "output_len", "mode", "mode_value", "metric", "stat", "value", "framework", "source")


def default_data() -> Path:
    return data_dir() / "measurements" / "serving_calibration.csv"


def holdout_data() -> Path:
    """Published rows on GPUs and frameworks the calibration never sees (never fitted)."""
    return data_dir() / "measurements" / "holdout_serving.csv"


def load_rows(path: str | Path | None = None) -> list[dict[str, str]]:
    """Read and check a calibration CSV; errors name the line and column."""
    p = Path(path) if path else default_data()
    rows = read_csv(p, _COLUMNS)
    for i, r in enumerate(rows, start=2):
        try:
            if float(r["value"]) <= 0:
                raise ValueError
        except ValueError:
            raise ValueError(f"{p}: line {i}: value={r['value']!r} must be a positive number") from None
    return rows


def framework_key(name: str) -> str:
    """The ``frameworks.toml`` key of a row's engine string. MindIE has no entry: its rows map
    to ``"mindie"`` and are reported as not supported rather than predicted as another engine."""
    n = name.lower()
    if "mindie" in n:
        return "mindie"
    if "vllm-ascend" in n or "vllm ascend" in n:
        return "vllm-ascend"
    if "vllm" in n:
        return "vllm"
    if "sglang" in n:
        return "sglang"
    return "tensorrt-llm"  # TensorRT-LLM, NeMo (TRT-LLM path), NIM (TRT-LLM backend)


def scheduler_kwargs(framework: str, model: str) -> dict[str, Any]:
    """``estimate`` limits from the engine's own scheduler defaults, where its
    ``frameworks.toml`` entry states them (else none: the calibration's defaults apply).

    ``max_num_seqs`` caps the batch (``max_batch_size``). ``chunked_prefill = false``: whole
    prompts run in one step, the engine raising its token budget to the model's context length
    (vLLM's rule when chunking is off), so ``max_num_tokens`` is the model's
    ``max_position_embeddings`` where its entry has one."""
    try:
        q = get_framework(framework).quantities
    except KeyError:  # an engine without an entry (MindIE): estimate reports it unsupported
        return {}
    out: dict[str, Any] = {}
    if "max_num_seqs" in q:
        out["max_batch_size"] = int(q["max_num_seqs"].si)
    if q.get("chunked_prefill", True) is False:
        try:
            ctx = raw_entry("model", get_model(model).key).get("max_position_embeddings")
        except (KeyError, ValueError):  # unknown model: estimate reports it unsupported
            ctx = None
        if ctx:
            out["max_num_tokens"] = int(ctx)
    return out


def bench_kwargs(r: dict[str, str], kw: dict[str, Any]) -> dict[str, Any]:
    """A trtllm-bench PyTorch-backend row's own ``max_batch_size`` / ``max_num_tokens``: the
    benchmark's heuristic and defaults (:func:`kvmodel.instance._trtllm_bench.bench_limits`),
    which perf-overview's commands leave in force; none for other rows or an unknown model."""
    name = r["framework"].lower()
    if "trtllm-bench" not in name or "pytorch" not in name:
        return {}
    try:
        m, g = get_model(kw["model"]), get_gpu(kw["gpu"])
    except (KeyError, ValueError):  # estimate reports it unsupported
        return {}
    mbs, mnt = _trtllm_bench.bench_limits(m, g, get_framework(kw["framework"]), kw["tp"], kw["pp"],
                                          kw["precision"], kw["input_len"], kw["output_len"])
    return {"max_batch_size": mbs, "max_num_tokens": mnt}


def row_kwargs(r: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
    """Map a row to ``estimate`` keyword arguments, or (None, why it is not supported)."""
    mode, metric = r["mode"], r["metric"]
    if metric not in _estimate.METRICS:
        return None, f"metric {metric} not modelled"
    if mode == "throughput_max" and metric in ("ttft_s", "e2e_s"):
        return None, "throughput_max latency depends on the benchmark's request count (not in data)"
    if mode == "throughput_max" and metric == "tpot_s":
        return None, ("online-serving TPOT at saturation depends on the engine's max_batch_size "
                      "(not stated)")
    if not r["precision"]:
        return None, "precision not stated by the source"
    kw: dict[str, Any] = dict(model=r["model"], gpu=r["gpu"], tp=int(r["tp"]), pp=int(r["pp"] or 1),
                              num_gpus=int(r["num_gpus"]), precision=r["precision"],
                              input_len=int(r["input_len"]), output_len=int(r["output_len"]),
                              framework=framework_key(r["framework"]))
    if r["ep"]:
        kw["ep"] = int(r["ep"])
    kw.update(scheduler_kwargs(kw["framework"], r["model"]))
    kw.update(bench_kwargs(r, kw))
    if mode == "throughput_max":
        kw["batch"] = "max"
    elif mode == "batch":
        kw["batch"] = int(float(r["mode_value"]))
    elif mode == "concurrency":
        kw["concurrency"] = int(float(r["mode_value"]))
    elif mode == "request_rate":
        kw["request_rate"] = float(r["mode_value"])
    else:
        return None, f"mode {mode} not modelled"
    return kw, ""


@dataclass
class ValidationReport(ErrorReport):
    """The serving model against published serving measurements (``kvmodel validate``)."""

    def format(self) -> str:
        lines = [f"coverage: {len(self.rows)} of {self.total} rows predicted"]
        for why, n in self.skipped.most_common():
            lines.append(f"  skipped {n:3d}: {why}")
        for by in ("metric", "gpu", "framework", "source", "regime"):
            lines.append(f"\nabsolute % error by {by}:  {'n':>4} {'median':>8} {'mean':>8}")
            for k, (n, med, mean) in self.groups(by).items():
                lines.append(f"  {k[:70]:70s} {n:4d} {100 * med:7.1f}% {100 * mean:7.1f}%")
        a = self.ape()
        if a.size:
            lines.append(f"\nall: n={a.size} median {100 * np.median(a):.1f}% mean {100 * a.mean():.1f}%")
        return "\n".join(lines)


def _regime(r: dict[str, str]) -> str:
    return {"throughput_max": "throughput", "batch": "static batch",
            "concurrency": "closed loop", "request_rate": "open loop"}.get(r["mode"], r["mode"])


def run_validation(path: str | Path | None = None, rows: Iterable[dict[str, str]] | None = None,
                   calibration: dict[str, float] | None = None) -> ValidationReport:
    """The model over serving measurements; ``calibration`` (name -> SI value) overrides the
    active catalog's calibration parameters."""
    rows = list(rows) if rows is not None else load_rows(path)
    rep = ValidationReport(total=len(rows))
    for r in rows:
        kw, why = row_kwargs(r)
        if kw is None:
            rep.skipped[why] += 1
            continue
        try:
            e = _estimate.estimate(**kw, calibration=calibration)
        except (KeyError, ValueError) as exc:
            rep.skipped[f"input not supported: {exc}"[:100]] += 1
            continue
        if not e.feasible:
            rep.skipped[f"model says infeasible: {e.reason}"[:100]] += 1
            continue
        if not e.stable:
            rep.skipped["model says unstable at this request rate (published run was not)"] += 1
            continue
        pred, meas = float(getattr(e, _estimate.METRIC_FIELDS[r["metric"]])), float(r["value"])
        rep.rows.append(dict(id=r["id"], metric=r["metric"], gpu=r["gpu"], model=r["model"],
                             framework=framework_key(r["framework"]), source=r["source"][:70],
                             regime=_regime(r), predicted=pred, measured=meas,
                             ape=abs(pred - meas) / meas, log_ratio=math.log(pred / meas)))
    return rep


def fit_calibration(path: str | Path | None = None) -> tuple[dict[str, float], ValidationReport]:
    """Least-squares fit of ``FIT_PARAMS`` on log(pred/measured) over all supported rows."""
    from scipy.optimize import least_squares

    rows = load_rows(path)
    base = {k: q.si for k, q in get_calibration().items()}
    lo = np.array([_BOUNDS[k][0] for k in FIT_PARAMS])
    hi = np.array([_BOUNDS[k][1] for k in FIT_PARAMS])
    scale = np.array([_SCALE[k] for k in FIT_PARAMS])

    def residuals(x: np.ndarray) -> np.ndarray:
        trial = dict(zip(FIT_PARAMS, x * scale))
        return np.array([r["log_ratio"] for r in run_validation(rows=rows, calibration=trial).rows])

    x0 = np.clip(np.array([base[k] for k in FIT_PARAMS]) / scale, lo / scale, hi / scale)
    sol = least_squares(residuals, x0, bounds=(lo / scale, hi / scale), loss="soft_l1",
                        f_scale=0.2, diff_step=1e-3)
    fitted = dict(zip(FIT_PARAMS, (sol.x * scale).tolist()))
    rep = run_validation(rows=rows, calibration=fitted)
    return fitted, rep


def interval_ratios(rep: ValidationReport, min_rows: int = 5) -> dict[str, tuple[float, float]]:
    """10th/90th percentile of measured/predicted per metric (pooled when a metric has few rows)."""
    from kvmodel.instance._estimate import METRICS

    pooled = np.exp(-np.array([r["log_ratio"] for r in rep.rows]))
    out = {}
    for metric in METRICS:
        ratios = np.exp(-np.array([r["log_ratio"] for r in rep.rows if r["metric"] == metric]))
        use = ratios if ratios.size >= min_rows else pooled
        out[metric] = (float(np.quantile(use, 0.1)), float(np.quantile(use, 0.9)))
    return out


def write_calibration(fitted: dict[str, float], rep: ValidationReport, path: Path | None = None,
                      data_name: str = "hardware_db/measurements/serving_calibration.csv") -> Path:
    """Rewrite the fitted parameters and error bands in ``calibration.toml`` (kind 'derived')."""
    from kvmodel.base.schema import HardwareDBError

    p = path or data_dir() / "calibration.toml"
    a = rep.ape()
    how = (f"least squares (soft-L1) on log(predicted/measured) over {a.size} rows of {data_name}; "
           f"all fitted jointly; median APE after fit {100 * np.median(a):.1f}%")
    units = {"gemm_efficiency_factor": ("1", 1.0), "memory_efficiency_factor": ("1", 1.0),
             "collective_latency": ("us", 1e-6), "kernel_latency": ("us", 1e-6),
             "sequence_overhead": ("us", 1e-6), "request_overhead": ("ms", 1e-3)}
    lines = {}
    for k, v in fitted.items():
        unit, f = units[k]
        lo, hi = (b / f for b in _BOUNDS[k])
        lines[k] = (f'{k} = {{ value = {v / f:.4g}, unit = "{unit}", kind = "derived", '
                    f'source = "kvmodel calibrate (kvmodel/_validate.py fit_calibration)", '
                    f'derivation = "{how}; bounds [{lo:g}, {hi:g}] {unit}" }}')
    for metric, (lo, hi) in interval_ratios(rep).items():
        for q, v in (("p10", lo), ("p90", hi)):
            name = f"interval_{metric}_{q}"
            lines[name] = (f'{name} = {{ value = {v:.4f}, unit = "1", kind = "derived", '
                           f'source = "kvmodel calibrate residuals on {data_name}", '
                           f'derivation = "{q[1:]}th percentile of measured/predicted for {metric} '
                           f'(pooled over all metrics when fewer than 5 rows)" }}')
    text = p.read_text().splitlines()
    done = set()
    for i, line in enumerate(text):
        name = line.split("=", 1)[0].strip()
        if name in lines:
            text[i] = lines[name]
            done.add(name)
    text += [lines[k] for k in lines if k not in done]
    p.write_text("\n".join(text) + "\n")
    from kvmodel.catalog.hardware import reset_catalog
    reset_catalog()
    try:
        from kvmodel.catalog.hardware import get_calibration
        get_calibration()
    except HardwareDBError as exc:  # pragma: no cover - would mean we wrote a bad file
        raise RuntimeError(f"wrote an invalid {p}: {exc}") from exc
    return p
