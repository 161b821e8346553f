"""Command line: ``kvmodel estimate | validate | calibrate | hardware | models | cluster | search |
traces | app``.

Units are converted for people here (ms, GB, $/h); the library stays in SI.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

import numpy as np

__all__ = ["main"]


def _port(v: str) -> int:
    try:
        port = int(v)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"--port {v!r}: expected an integer in 1..65535")
    return port


def _batch(v: str) -> Any:
    if v == "max":
        return v
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch {v!r}: expected an integer or 'max'") from None


_DESCRIPTION = """kvmodel: analytical performance model of LLM serving with hierarchical and
peer-to-peer KV caches. Times are seconds inside the library; this command line prints TTFT and
TPOT in ms, rates per second, bytes with decimal prefixes (GB = 1e9 B) and money in US dollars.
Run 'kvmodel SUBCOMMAND --help' for each subcommand's options."""


def _precisions() -> list[str]:
    from kvmodel.catalog.models import BYTES_PER_ELEMENT
    return sorted(BYTES_PER_ELEMENT)


def _sub(sub: Any, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description or help)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kvmodel", description=_DESCRIPTION)
    p.add_argument("--hardware", action="append", default=[], metavar="FILE",
                   help="extra hardware_db TOML file, loaded before the subcommand runs "
                        "(repeatable; see README 'Your own hardware')")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="SUBCOMMAND")
    _estimate_parser(sub)
    v = _sub(sub, "validate", "model vs published serving measurements")
    v.add_argument("--data", default=None, help="CSV in the serving_calibration schema "
                   "(default: the bundled hardware_db/measurements/serving_calibration.csv)")
    v.add_argument("--holdout", action="store_true",
                   help="use the bundled held-out set (GPUs/frameworks never used for fitting)")
    v.add_argument("--rows", action="store_true", help="also list every row, worst first")
    v.add_argument("--tiers", action="store_true",
                   help="KV-path fidelity: the transfer model vs component measurements (--data: "
                        "a CSV in the kv_components schema; default the bundled "
                        "hardware_db/measurements/kv_components.csv)")
    c = _sub(sub, "calibrate", "fit the global efficiency parameters to measurements")
    c.add_argument("--data", default=None,
                   help="CSV in the serving_calibration schema (default: the bundled one)")
    c.add_argument("--write", action="store_true", help="write them into calibration.toml")
    h = _sub(sub, "hardware", "list hardware_db entries or show one with units and sources")
    h.add_argument("section", nargs="?", default="gpu",
                   choices=("gpu", "link", "memory", "node", "framework", "connector", "calibration"),
                   help="which table (default: %(default)s; choices: %(choices)s)")
    h.add_argument("key", nargs="?", help="entry to show (omitted: list the section's keys)")
    _sub(sub, "models", "list the LLM catalog (parameters, KV bytes per token)")
    k = _sub(sub, "cluster", "evaluate a cluster described in a TOML file")
    k.add_argument("--config", required=True,
                   help="cluster TOML ([cluster], [cluster.pool], [cluster.p2p], [workload]); "
                        "capacities in GB (1e9 B)")
    k.add_argument("--trace", default=None,
                   help="trace file or built-in trace name ('kvmodel traces'; default: "
                        "[workload].trace of the config)")
    k.add_argument("--json", action="store_true",
                   help="print every result field as JSON (SI units; inf as null)")
    _search_parser(sub)
    _traces_parser(sub)
    ap = sub.add_parser("app", help="open the Streamlit explorer (app/streamlit_app.py)")
    ap.add_argument("--port", type=_port, default=8501, help="HTTP port (default: %(default)s)")
    return p


def _estimate_parser(sub: Any) -> None:
    e = _sub(sub, "estimate", "TTFT / TPOT / throughput of one serving instance",
             "TTFT / TPOT / E2E latency and throughput of one serving instance (a TP x PP x EP "
             "group, replicated over --num-gpus). Static batch by default; --batch max, "
             "--concurrency N (closed loop) or --request-rate R (open loop) select the mode.")
    e.add_argument("--model", default="llama-3.1-70b",
                   help="catalog name ('kvmodel models') or config.json path (default: %(default)s)")
    e.add_argument("--gpu", default="h100-sxm",
                   help="GPU key ('kvmodel hardware gpu'; --hardware adds yours) "
                        "(default: %(default)s)")
    e.add_argument("--tp", type=int, default=8, help="tensor-parallel GPUs (default: %(default)s)")
    e.add_argument("--pp", type=int, default=1, help="pipeline stages (default: %(default)s)")
    e.add_argument("--ep", type=int, default=1,
                   help="expert-parallel ways inside the TP group, MoE only (default: %(default)s)")
    e.add_argument("--num-gpus", type=int, default=None,
                   help="GPUs in all, a multiple of tp*pp (default: tp*pp, one replica)")
    e.add_argument("--precision", default="fp8", choices=_precisions(),
                   help="weight and GEMM precision (default: %(default)s; choices: %(choices)s)")
    e.add_argument("--kv-precision", default=None, choices=_precisions(),
                   help="KV cache precision (default: as --precision; choices: %(choices)s)")
    e.add_argument("--input-len", type=int, default=2048,
                   help="prompt tokens per request (default: %(default)s)")
    e.add_argument("--output-len", type=int, default=128,
                   help="generated tokens per request (default: %(default)s)")
    e.add_argument("--batch", type=_batch, default=None,
                   help="static batch size, or 'max' for continuous batching at the largest "
                        "batch that fits (default: 1; not with --concurrency or --request-rate)")
    e.add_argument("--concurrency", type=int, default=None,
                   help="closed loop with N clients (default: off)")
    e.add_argument("--request-rate", type=float, default=None,
                   help="open loop, Poisson arrivals at this many requests/s (default: off)")
    e.add_argument("--arrival-cv", type=float, default=1.0,
                   help="coefficient of variation of inter-arrival times with --request-rate "
                        "(1 = Poisson; default: %(default)s)")
    e.add_argument("--framework", default="tensorrt-llm",
                   help="serving framework key: step overheads ('kvmodel hardware framework'; "
                        "default: %(default)s)")
    e.add_argument("--json", action="store_true",
                   help="print every result field as JSON (SI units: s, B, tokens/s; inf as null)")


def _search_parser(sub: Any) -> None:
    s = sub.add_parser("search", help="Optuna design-space search (run, or 'show' a study)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="kvmodel search --space SPACE --n-trials N: run or resume a\n"
                       "study; kvmodel search show --storage URL --study-name NAME: report it.",
                       epilog="objectives (a space's 'metrics'; identifier [unit, direction]):\n"
                       + _objective_help())
    s.add_argument("action", nargs="?", default="run", choices=("run", "show", "spaces", "grid"),
                   help="run (default) or resume a study; show one; list built-in spaces; "
                        "grid: evaluate every grid point of --space in numpy "
                        "(choices: %(choices)s)")
    s.add_argument("--space", help="space TOML file or built-in name (see 'search spaces')")
    s.add_argument("--n-trials", type=int, default=100,
                   help="run until the study holds this many complete trials "
                        "(default: %(default)s)")
    s.add_argument("--storage", default=None,
                   help="journal file path (default kvmodel-search.journal), sqlite:///FILE, "
                        "or an Optuna RDB URL (postgresql+psycopg://...)")
    s.add_argument("--study-name", default=None, help="default: the space's name")
    s.add_argument("--sampler", default="tpe", choices=("tpe", "nsga2", "gp", "random", "grid"),
                   help="Optuna sampler (default: %(default)s; choices: %(choices)s)")
    s.add_argument("--workers", type=int, default=1,
                   help="worker processes on the storage (default: %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="sampler seed (default: %(default)s)")
    s.add_argument("--top", type=int, default=10,
                   help="best trials to print (default: %(default)s)")
    s.add_argument("--export", default=None, metavar="DIR",
                   help="write trials.csv and plotly HTML (Pareto, parallel, importances), "
                        "plus PNG/SVG when kaleido is installed; with grid: grid.csv "
                        "(every point)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _objective_help() -> str:
    import textwrap

    from kvmodel.search._objectives import OBJECTIVES
    return "\n".join(f"  {o.label(k)}\n" + textwrap.fill(o.doc, 78, initial_indent=" " * 6,
                                                          subsequent_indent=" " * 6)
                     for k, o in OBJECTIVES.items())


def _traces_parser(sub: Any) -> None:
    t = sub.add_parser("traces", help="list the built-in request traces (name, size, licence, "
                       "source); 'traces NAME' summarises one",
                       description="Built-in traces ship inside the package; any command or "
                       "function that takes a trace accepts these names or a file path.")
    t.add_argument("name", nargs="?", default=None,
                   help="a built-in trace name or a trace file: print its summary "
                        "(requests, duration, rate, prompt/output lengths, distinct blocks)")


def _cmd_traces(a: argparse.Namespace) -> int:
    from kvmodel.workload.traces import BUILTIN, load_trace
    if a.name is None:
        print(f"{'name':23s} {'requests':>9s} {'size':>8s}  {'prefix ids':10s} {'licence':11s} source")
        for t in BUILTIN.values():
            print(f"{t.name:23s} {t.requests:9,d} {t.size_B / 1e6:6.2f} MB  "
                  f"{'yes' if t.prefix_hashes else 'no':10s} {t.licence:11s} {t.source}")
        print("load with kvmodel.load_trace(NAME); citations and sha256: kvmodel traces NAME")
        return 0
    tr = load_trace(a.name)
    if not len(tr):
        raise ValueError(f"trace {a.name!r} has no requests (a header and no rows?)")
    dur = float(tr.arrival_s[-1] - tr.arrival_s[0]) if len(tr) > 1 else 0.0
    print(f"{tr.name}: {len(tr):,} requests over {dur:,.0f} s "
          f"({len(tr) / dur if dur > 0 else float('nan'):.3g} requests/s)")
    print(f"  prompt tokens mean {tr.input_len.mean():,.0f} (max {tr.input_len.max():,d}); "
          f"output tokens mean {tr.output_len.mean():,.0f} (max {tr.output_len.max():,d})")
    print(f"  distinct {tr.block_tokens}-token prefix blocks: {tr.unique_blocks:,d}")
    if a.name in BUILTIN:
        b = BUILTIN[a.name]
        print(f"  file {b.file} ({b.size_B:,d} B, sha256 {b.sha256})\n  licence {b.licence}; "
              f"source {b.source}\n  cite: {b.citation}")
    return 0


def _fmt_num(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _print_estimate(e: Any) -> None:
    i = e.inputs
    print(f"{i['model']} on {i['num_gpus']:.0f}x {i['gpu']}  tp={i['tp']:.0f} pp={i['pp']:.0f} "
          f"ep={i['ep']:.0f}  weights {i['precision']}, KV {i['kv_precision']}  "
          f"in={i['input_len']:.0f} out={i['output_len']:.0f}  mode={e.mode} ({i['framework']})")
    if not e.feasible:
        print(f"INFEASIBLE: {e.reason}")
        return
    if not e.stable:
        print(f"UNSTABLE: request rate {i['request_rate']:.4g}/s is at or beyond saturation "
              f"({e.saturation_request_rate_per_s:.4g}/s): queues grow without bound")
    band = e.interval
    for name, unit, scale in (("ttft_s", "ms", 1e3), ("tpot_s", "ms", 1e3), ("e2e_s", "s", 1),
                              ("output_tok_per_s", "tok/s", 1)):
        v = getattr(e, name) * scale
        lo, hi = (b * scale for b in band.get(name, (np.nan, np.nan)))
        print(f"  {name:13s} {v:12.4g} {unit:6s} (calibration 10-90%: {lo:.4g} - {hi:.4g})")
    print(f"  p50/p90/p99: TTFT {e.ttft_p50_s * 1e3:.4g}/{e.ttft_p90_s * 1e3:.4g}/"
          f"{e.ttft_p99_s * 1e3:.4g} ms, TPOT {e.tpot_p50_s * 1e3:.4g}/{e.tpot_p90_s * 1e3:.4g}/"
          f"{e.tpot_p99_s * 1e3:.4g} ms; {'stable' if e.stable else 'UNSTABLE'}, saturation "
          f"{e.saturation_request_rate_per_s:.4g} requests/s")
    print(f"  batch {e.batch:.0f} (largest that fits {e.max_batch:.0f}); KV capacity "
          f"{e.kv_capacity_tokens:.0f} tokens; {e.kv_B_per_token:.0f} KV B/token; "
          f"weights {e.weights_B_per_gpu / 1e9:.2f} GB/GPU")
    for phase, ops in e.breakdown.items():
        print(f"\n  {phase} step, per GPU:  {'GFLOP':>10} {'MB':>10} {'time ms':>9}  bound")
        for op, d in ops.items():
            print(f"    {op:14s} {d['flops'] / 1e9:10.3g} {d['bytes'] / 1e6:10.4g} "
                  f"{d['time_s'] * 1e3:9.4f}  {d['bound']}")


def _cmd_estimate(a: argparse.Namespace) -> int:
    from kvmodel import estimate
    if a.batch is not None and (a.concurrency is not None or a.request_rate is not None):
        other = "--concurrency" if a.concurrency is not None else "--request-rate"
        raise ValueError(f"--batch {a.batch} with {other}: give one mode (--batch, --concurrency "
                         "or --request-rate), not two")
    e = estimate(a.model, a.gpu, tp=a.tp, pp=a.pp, ep=a.ep, num_gpus=a.num_gpus,
                 precision=a.precision, kv_precision=a.kv_precision, input_len=a.input_len,
                 output_len=a.output_len,
                 batch=1 if a.batch is None else a.batch,
                 concurrency=a.concurrency, request_rate=a.request_rate,
                 arrival_cv=a.arrival_cv, framework=a.framework)
    if a.json:
        print(json.dumps(e.to_dict(), indent=2, default=str))
    else:
        _print_estimate(e)
    return 0


def _cmd_validate_tiers(a: argparse.Namespace) -> int:
    from kvmodel.tiers.fidelity import run_tier_validation
    rep = run_tier_validation(a.data)
    print(rep.format())
    if a.rows:
        for r in sorted(rep.rows, key=lambda r: -r["ape"]):
            print(f"  {r['id']:28s} {r['split']:11s} {r['connector']:22s} {r['metric']:13s} "
                  f"pred {r['predicted']:10.4g} meas {r['measured']:10.4g} {100 * r['ape']:7.1f}%")
    return 0


def _cmd_validate(a: argparse.Namespace) -> int:
    from kvmodel.instance.calibration import holdout_data, run_validation
    if a.tiers:
        return _cmd_validate_tiers(a)
    rep = run_validation(holdout_data() if a.holdout else a.data)
    print(rep.format())
    if a.rows:
        for r in sorted(rep.rows, key=lambda r: -r["ape"]):
            print(f"  {r['id']} {r['metric']:12s} {r['model']:16s} {r['gpu']:14s} "
                  f"pred {r['predicted']:10.4g} meas {r['measured']:10.4g} {100 * r['ape']:6.1f}%")
    return 0


def _cmd_calibrate(a: argparse.Namespace) -> int:
    from kvmodel.instance.calibration import fit_calibration, write_calibration
    fitted, rep = fit_calibration(a.data)
    for k, v in fitted.items():
        print(f"  {k:28s} {v:.4g}")
    print(rep.format())
    if a.write:
        print(f"wrote {write_calibration(fitted, rep)}")
    return 0


_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))
_HUMAN = {"bytes": "B", "bandwidth": "B/s", "compute": "FLOP/s", "power": "W"}


def _human(si: float, dimension: str) -> str:
    """An SI value with a decimal prefix and unit (``3.35 TB/s``, ``989.5 TFLOP/s``); money as
    dollars, times in s/ms/us; up to T (1979 TFLOP/s, not 1.979 PFLOP/s)."""
    if dimension in _HUMAN:
        scale, p = next(((f, p) for f, p in _PREFIXES if abs(si) >= f), (1.0, ""))
        return f"{si / scale:.4g} {p}{_HUMAN[dimension]}"
    if dimension == "time":
        scale, u = next(((f, u) for f, u in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"))
                         if abs(si) >= f), (1e-9, "ns"))
        return f"{si / scale:.4g} {u}"
    money = {"money": ("$", 1.0, ""), "money_rate": ("$", 3600.0, "/h"),
             "money_per_byte": ("$", 1e9, "/GB")}
    if dimension in money:
        sym, f, suffix = money[dimension]
        return f"{sym}{si * f:.4g}{suffix}"
    return f"{si:.4g}"


def _quantity_line(name: str, q: Any) -> str:
    from kvmodel.base.units import dimension_of
    text = _human(q.si, dimension_of(q.unit))
    if q.unit not in text.split()[-1:] and dimension_of(q.unit) in _HUMAN:
        text += f" (= {q.value:g} {q.unit})"  # as sourced, e.g. 81559 MiB
    return f"{name:26s} {text:>30}  [{q.kind}] {q.source}"


def _cmd_hardware(a: argparse.Namespace) -> int:
    from kvmodel.base.schema import Quantity
    from kvmodel.catalog.hardware import list_entries, raw_entry
    if not a.key:
        print("\n".join(list_entries(a.section)))
        return 0
    for field, v in raw_entry(a.section, a.key).items():
        if isinstance(v, Quantity):
            print(_quantity_line(field, v))
        elif isinstance(v, dict):
            for p, q in v.items():
                print(_quantity_line(f"{field}.{p}", q))
        else:
            print(f"{field:26s} {v}")
    return 0


def _cmd_models(a: argparse.Namespace) -> int:
    from kvmodel.catalog.models import get_model, list_models
    print(f"{'key':18s} {'params':>9} {'active':>9} {'KV B/token bf16':>16}  attention")
    for k in list_models():
        m = get_model(k)
        print(f"{k:18s} {m.total_params / 1e9:8.1f}B {m.active_params / 1e9:8.1f}B "
              f"{m.kv_bytes_per_token('bf16'):16.0f}  {m.attention}")
    return 0


# (label, ClusterResult field, factor from SI, unit as printed)
_CLUSTER_ROWS = (("TTFT mean", "ttft_s", 1e3, "ms"), ("TTFT p99", "ttft_p99_s", 1e3, "ms"),
                 ("TPOT mean", "tpot_s", 1e3, "ms"), ("TPOT p99", "tpot_p99_s", 1e3, "ms"),
                 ("E2E mean", "e2e_s", 1.0, "s"), ("output tokens", "output_tok_per_s", 1.0, "tok/s"),
                 ("goodput", "goodput_per_s", 1.0, "req/s"),
                 ("cost", "cost_usd_per_h", 1.0, "$/h"),
                 ("cost per Mtok", "cost_usd_per_mtok", 1.0, "$/Mtok"),
                 ("load imbalance", "imbalance", 1.0, "x mean"))


def _cmd_cluster(a: argparse.Namespace) -> int:
    from pathlib import Path

    from kvmodel.cluster import Workload, evaluate, load_cluster_config
    from kvmodel.workload.traces import BUILTIN, load_trace
    c, wk = load_cluster_config(a.config)
    trace = a.trace or wk.pop("trace", None)
    wk.pop("trace", None)
    if trace is None:
        raise ValueError(f"no trace: give --trace or [workload].trace (a file or a built-in "
                         f"trace: {', '.join(BUILTIN)})")
    path = Path(trace)
    if trace not in BUILTIN and not path.is_absolute() and not path.exists():
        path = Path(a.config).resolve().parent / trace  # relative to the config file
    r = evaluate(c, Workload(load_trace(trace if trace in BUILTIN else path), **wk))
    if a.json:
        print(json.dumps(r.to_dict(), indent=2))
        return 0
    print(f"{c.model} on {c.gpu}: sharing={c.sharing} routing={c.routing} "
          f"{'stable' if r.stable else 'UNSTABLE: ' + r.reason}")
    for label, name, scale, unit in _CLUSTER_ROWS:
        print(f"  {label:22s} {getattr(r, name) * scale:12.4g} {unit}")
    print("  hit ratio by tier: " + ", ".join(f"{k} {v:.3f}" for k, v in r.hit_ratio.items()))
    if r.utilisation:
        print("  network: " + ", ".join(f"{k} {v:.3f}" for k, v in r.utilisation.items()))
    print("  closed forms: " + ", ".join(f"{k} {v}" for k, v in r.closed_forms.items()))
    if r.workload.get("load_mode", "rate") != "rate" or r.workload.get("session_mode") == "closed":
        print("  workload: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in r.workload.items()))
    return 0


def _check_search_args(a: argparse.Namespace) -> None:
    """Counts the search options take: --n-trials, --workers and --top are integers >= 1."""
    for flag, v in (("--n-trials", a.n_trials), ("--workers", a.workers), ("--top", a.top)):
        if v < 1:
            raise ValueError(f"search {flag} {v}: must be an integer >= 1")


def _cmd_search(a: argparse.Namespace) -> int:
    from kvmodel import search
    _check_search_args(a)
    try:
        return _search_action(a)
    except search.SearchInterrupted as exc:
        print(f"\nkvmodel: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\nkvmodel: interrupted", file=sys.stderr)
        return 130


def _search_action(a: argparse.Namespace) -> int:
    from kvmodel import search
    if a.action == "spaces":
        for name in search.builtin_spaces():
            print(f"{name:20s} {search.load_space(name).description}")
        return 0
    if a.action == "grid":
        return _search_grid(a)
    if a.action == "show":
        study = search.load(a.storage, a.study_name)
    else:
        if not a.space:
            raise ValueError("search: give --space FILE or a built-in name "
                             f"({', '.join(search.builtin_spaces())})")
        study = search.run(a.space, n_trials=a.n_trials, storage=a.storage,
                           study_name=a.study_name, sampler=a.sampler, seed=a.seed,
                           workers=a.workers, progress=not a.no_progress)
    print(search.show(study, top=a.top))
    if a.export:
        for kind, path in search.export(study, a.export).items():
            print(f"wrote {kind}: {path}")
        from kvmodel.search._report import KALEIDO_HINT, kaleido_available
        if not kaleido_available():
            print(f"no PNG/SVG written: {KALEIDO_HINT}")
    return 0


def _search_grid(a: argparse.Namespace) -> int:
    from kvmodel import search
    if not a.space:
        raise ValueError("search grid: give --space FILE or a built-in name")
    g = search.grid_search(a.space)
    sp = g.space
    print(f"grid {sp.name!r}: {len(g.points)} points in {g.groups} vectorised groups, "
          f"{g.seconds:.2f} s ({g.points_per_s:,.0f} points/s); {int(g.feasible.sum())} feasible")
    viol = (g.constraints > 0).sum(axis=0)
    print("  violations: " + (", ".join(f"{c} x{int(n)}" for c, n in zip(search.CONSTRAINTS, viol)
                                        if n) or "none"))
    print(f"best feasible by {search.objective_label(sp.metrics[0])}:")
    for i in g.top(a.top):
        vals = " ".join(f"{m}={_fmt_num(float(v))}" for m, v in zip(sp.metrics, g.values[i]))
        params = " ".join(f"{k}={_fmt_num(v)}" for k, v in g.points[i].items())
        print(f"  {vals}   {params}")
    if a.export:
        from pathlib import Path
        print(f"wrote csv: {g.to_csv(Path(a.export) / 'grid.csv')}")
    return 0


def _app_path():
    from pathlib import Path
    here = Path(__file__).resolve().parent
    for cand in (here / "_app" / "streamlit_app.py", here.parent / "app" / "streamlit_app.py"):
        if cand.is_file():
            return cand
    raise OSError(f"the explorer app was not found next to {here}")


def _cmd_app(a: argparse.Namespace) -> int:
    import os
    import subprocess
    from pathlib import Path
    env = dict(os.environ)
    if a.hardware:  # hand --hardware files on to the app's process
        extra = [str(Path(p).resolve()) for p in a.hardware]
        env["KVMODEL_HARDWARE"] = os.pathsep.join(
            [p for p in [env.get("KVMODEL_HARDWARE", "")] if p] + extra)
    # the app never reaches the internet: no usage statistics sent to Streamlit
    return subprocess.call([sys.executable, "-m", "streamlit", "run", str(_app_path()),
                            "--server.port", str(a.port), "--server.headless", "true",
                            "--browser.gatherUsageStats", "false"], env=env)


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    from kvmodel.catalog.hardware import HardwareDBError, load_hardware
    try:
        for path in a.hardware:
            load_hardware(path)
        return {"estimate": _cmd_estimate, "validate": _cmd_validate, "calibrate": _cmd_calibrate,
                "hardware": _cmd_hardware, "models": _cmd_models,
                "cluster": _cmd_cluster, "search": _cmd_search, "traces": _cmd_traces,
                "app": _cmd_app}[a.cmd](a)
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except (ValueError, KeyError, HardwareDBError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"kvmodel: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
