"""Rewrite the README's generated sections from the code, the hardware database and the
recorded speed figures, so that every figure the README states is one the commands print.

    python benchmarks/update_readme.py            # re-render from the code + recorded speed JSON
    python benchmarks/update_readme.py --speed    # rerun the speed benchmarks first (minutes)
    python benchmarks/update_readme.py --check    # exit 1 and print a diff if the README is stale

Sections live between ``<!-- BEGIN generated:NAME -->`` and ``<!-- END generated:NAME -->``:
``fidelity`` (the tables ``kvmodel validate`` and ``kvmodel validate --holdout`` print, from
``kvmodel.instance.calibration.run_validation``), ``parameters`` (the fitted globals of
``hardware_db/calibration.toml``) and the ``speed-*`` sections, rendered from
``benchmarks/results/speed.json``, which ``--speed`` rewrites with the machine it ran on.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

README = ROOT / "README.md"
SPEED_JSON = ROOT / "benchmarks" / "results" / "speed.json"
SHARED_NOTE = ("shared 2-core machine (other engineers' jobs ran alongside), "
               "figures are conservative")
# key: (script, arguments); each script writes its figures with --json FILE
BENCHMARKS = {
    "estimate": ("speed.py", ["--points", "100000", "1000000"]),
    "reuse": ("reuse_speed.py", []),
    "reuse_analytic": ("reuse_analytic.py", ["--speed-only"]),
    "cluster": ("cluster_speed.py", []),
    "sim": ("sim_speed.py", []),
    "search": ("search_speed.py", ["--quick"]),
}
_UNITS = {"1": "", "us": " µs", "ms": " ms", "s": " s"}


# ---------------------------------------------------------------- formatting

def sig(x: float, digits: int = 2) -> str:
    """``x`` to ``digits`` significant figures, no exponent: 367.2 -> '370', 0.087 -> '0.087'."""
    if x == 0:
        return "0"
    r = float(f"{x:.{digits}g}")
    return f"{r:,.0f}" if abs(r) >= 10 ** (digits - 1) else f"{r:g}"


def time_str(seconds: float) -> str:
    """Seconds at the edge: '370 µs', '1.2 ms', '0.87 s' (2 significant figures)."""
    if seconds < 1e-3:
        return f"{sig(seconds * 1e6)} µs"
    if seconds < 0.1:
        return f"{sig(seconds * 1e3)} ms"
    return f"{sig(seconds)} s"


def rate_str(per_s: float, what: str = "configurations") -> str:
    if per_s >= 1e6:
        return f"{sig(per_s / 1e6)} million {what}/s"
    return f"{sig(per_s / 1e3)}k {what}/s"


def span(values, fmt) -> str:
    """'a u' when the formatted extremes agree, else 'a–b u' (min to max, unit said once)."""
    lo, hi = fmt(min(values)), fmt(max(values))
    if lo == hi:
        return lo
    (lo_num, lo_unit), hi_unit = lo.split(" ", 1), hi.split(" ", 1)[1]
    return f"{lo_num}–{hi}" if lo_unit == hi_unit else f"{lo}–{hi}"


def wrap(text: str) -> str:
    """A paragraph at the README's line width (never breaking inside a word or at a hyphen)."""
    return textwrap.fill(text, width=99, break_long_words=False, break_on_hyphens=False)


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


# ---------------------------------------------------------------- fidelity and parameters

def validation_reports() -> dict:
    """The reports ``kvmodel validate`` and ``kvmodel validate --holdout`` print."""
    from kvmodel.instance.calibration import default_data, holdout_data, run_validation
    return {"calibration": run_validation(default_data()),
            "held out": run_validation(holdout_data())}


def fidelity_rows(name: str, rep) -> list[str]:
    a = rep.ape()
    rows = [f"| {name} | all | all predicted rows | {a.size} | {pct(float(np.median(a)))} | "
            f"{pct(float(a.mean()))} |"]
    for by in ("metric", "gpu", "regime"):
        for key, (n, med, mean) in rep.groups(by).items():
            rows.append(f"| {name} | {by} | {key} | {n} | {pct(med)} | {pct(mean)} |")
    return rows


def coverage_line(name: str, rep) -> str:
    skipped = "; ".join(f"{why} ({n})" for why, n in rep.skipped.most_common())
    return textwrap.fill(f"- {name}: {len(rep.rows)} of {rep.total} rows predicted"
                         + (f". Skipped: {skipped}." if skipped else "."), width=99,
                         subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)


def render_fidelity(ctx: dict) -> str:
    reps = ctx["reports"]
    lines = [wrap("Current figures (absolute percentage error; `kvmodel validate` and "
                  "`kvmodel validate --holdout` print the same, with framework and source too):"),
             "",
             "| set | by | group | rows | median | mean |", "|---|---|---|---|---|---|"]
    for name, rep in reps.items():
        lines += fidelity_rows(name, rep)
    lines += ["", "Coverage:", ""] + [coverage_line(n, r) for n, r in reps.items()]
    return "\n".join(lines)


def render_parameters(ctx: dict) -> str:
    from kvmodel.instance.calibration import FIT_PARAMS
    model = ctx["calibration"]["calibration"]["model"]
    parts = [f"`{k}` {sig(model[k]['value'], 3)}{_UNITS[model[k]['unit']]}" for k in FIT_PARAMS]
    text = (f"The {len(parts)} global parameters of kind `derived` in "
            f"`hardware_db/calibration.toml` ({', '.join(parts)}) are fitted jointly by "
            f"`kvmodel calibrate --write`.")
    return wrap(text)


# ---------------------------------------------------------------- speed

def measured_on(speed: dict, full: bool = False) -> str:
    m = speed["machine"]
    if not full:
        return f"measured on {m['cpu']}, {m['cores']} cores, {speed['date']}; see Speed"
    return (f"measured on {m['cpu']}, {m['cores']} cores, Python {m['python']}, numpy "
            f"{m['numpy']}, {speed['date']}; {speed['note']}")


def render_speed_estimate(ctx: dict) -> str:
    s = ctx["speed"]
    e = s["estimate"]
    sc, vec = e["scalar_s"], e["vector_configs_per_s"]
    sizes = sorted(vec, key=int)
    mx = 'batch="max"'

    def rates(mode: str) -> str:
        return " / ".join(sig(vec[n][mode] / 1e6) for n in sizes)

    counts = " / ".join(f"{int(n):,d}" for n in sizes)
    text = (f"`kvmodel.estimate` (`python benchmarks/speed.py`): a scalar call takes "
            f"{time_str(sc['batch=1'])} (static batch=1), {time_str(sc[mx])} (`{mx}`), "
            f"{time_str(sc['MoE batch=1'])} (Mixtral, batch=1) and "
            f"{time_str(sc['concurrency=32'])} (closed loop, `concurrency=32`: a bracketed fixed "
            f"point). A vectorised call over {counts} random input/output lengths evaluates "
            f"{rates('batch=1')} million configurations/s at batch=1, {rates(mx)} million/s at "
            f"`{mx}` and {rates('concurrency=32')} million/s closed loop.")
    return wrap(f"All figures {measured_on(s, full=True)}.") + "\n\n" + wrap(text)


def render_speed_reuse(ctx: dict) -> str:
    s = ctx["speed"]
    r, ra = s["reuse"], s["reuse_analytic"]["conversation_trace.jsonl"]
    c = r["readme_calls"]
    one = ra["speed"]["single N=1"]
    text = (f"Speed of the calls above on the Mooncake conversation trace "
            f"(`python benchmarks/reuse_speed.py` and `benchmarks/reuse_analytic.py --speed-only`, "
            f"{measured_on(s)}): exact curve over {c['capacities']} capacities "
            f"{time_str(c['exact_s'])}; analytic {time_str(c['analytic_s'])}, most of it "
            f"extracting the trace's reuse profile (once per trace), after which a "
            f"curve costs {time_str(one['per_point_s'])} per capacity vectorised and "
            f"{time_str(one['one_point_call_s'])} per one-capacity call; 8 instances with bounded "
            f"prefix affinity, replayed once per capacity: {time_str(c['routed_8x_bounded_s'])} "
            f"for {c['routed_capacities']} capacities; `eviction=\"s3fifo\"` (like every non-LRU "
            f"policy, a replay per capacity — the slow path): {time_str(c['s3fifo_s'])} for "
            f"{c['s3fifo_capacities']} capacities. Whole single-instance exact curves: "
            f"{time_str(r['conversation_trace.jsonl']['exact_curve_s'])} conversation, "
            f"{time_str(r['synthetic_trace.jsonl']['exact_curve_s'])} synthetic trace.")
    return wrap(text)


def _cluster_times(cl: dict) -> str:
    """Per-evaluate time: a new configuration every call (when measured), and the same
    configuration again (its memoised prefix mixture reused)."""
    again = span(cl["evaluate_s"].values(), time_str)
    if "evaluate_new_config_s" not in cl:
        return again
    return (f"{span(cl['evaluate_new_config_s'].values(), time_str)} for a new configuration "
            f"each call ({again} when the same configuration is evaluated again)")


def render_speed_cluster(ctx: dict) -> str:
    s = ctx["speed"]
    cl, sim = s["cluster"], s["sim"]
    runs = sim["runs"]
    sims = ", ".join(f"{n} instances in {time_str(runs[n]['wall_s'])}"
                     for n in sorted(runs, key=int, reverse=True))
    text = (f"Speed (`python benchmarks/cluster_speed.py`, {measured_on(s)}): one `evaluate` "
            f"of a "
            f"{cl['instances']}-instance cluster takes {_cluster_times(cl)} "
            f"after the trace's reuse profile is extracted once ({time_str(cl['profile_s'])}); "
            f"capacities, HBM share, pool / P2P sizes and the request rate may be numpy arrays: "
            f"{cl['grid']:,d} configurations evaluate at "
            f"{span(cl['vector_configs_per_s'].values(), rate_str)}. "
            f"`python benchmarks/sim_speed.py` (the simulator, "
            f"{sim['model']} on the Mooncake conversation trace, {sim['requests']:,d} requests, "
            f"{sim['routing']} routing): {sims}.")
    return wrap(text)


def render_speed_search(ctx: dict) -> str:
    s = ctx["speed"]
    se = s["search"]
    g = se["grids"][se["space"]]
    runs = "; ".join(f"{r['sampler'].upper() if r['sampler'] == 'tpe' else 'NSGA-II'} with "
                     f"{r['workers']} worker{'s' if r['workers'] > 1 else ''} "
                     f"{time_str(r['seconds'])}" for r in se["runs"].values())
    two = " (2 workers on 2 shared cores: each process pays the one-off costs again)" if any(
        r["workers"] > 1 for r in se["runs"].values()) else ""
    text = (f"Speed (`python benchmarks/search_speed.py --quick`, {measured_on(s)}): "
            f"`grid_search(\"{se['space']}\")` evaluates {g['points']:,d} points in "
            f"{g['groups']} vectorised groups in {time_str(g['seconds'])}; "
            f"{se['trials']:,d} trials "
            f"of `{se['space']}` on the default journal file: {runs}{two}, after a one-off "
            f"{time_str(se['setup_s'])} per process to load the trace and extract its reuse "
            f"profile.")
    return wrap(text)


SECTIONS = {"fidelity": render_fidelity, "parameters": render_parameters,
            "speed-estimate": render_speed_estimate, "speed-reuse": render_speed_reuse,
            "speed-cluster": render_speed_cluster, "speed-search": render_speed_search}
CODE_SECTIONS = ("fidelity", "parameters")  # the rest are rendered from the recorded JSON


# ---------------------------------------------------------------- README sections

def context(speed_path: Path = SPEED_JSON, sections=tuple(SECTIONS)) -> dict:
    """What the renderers read; the validation runs only when a code section is asked for."""
    ctx: dict = {}
    if "fidelity" in sections:
        ctx["reports"] = validation_reports()
    if "parameters" in sections:
        from kvmodel.catalog.hardware import data_dir
        ctx["calibration"] = tomllib.loads((data_dir() / "calibration.toml").read_text())
    if any(n.startswith("speed") for n in sections):
        ctx["speed"] = json.loads(Path(speed_path).read_text())
    return ctx


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- BEGIN generated:{re.escape(name)} -->\n)(.*?)(<!-- END generated:"
                      rf"{re.escape(name)} -->)", re.S)


def section_body(text: str, name: str) -> str:
    """The text between a section's markers; ValueError naming the section when they are missing."""
    m = _pattern(name).search(text)
    if m is None:
        raise ValueError(f"README section {name!r}: markers <!-- BEGIN generated:{name} --> ... "
                         f"<!-- END generated:{name} --> not found (each on its own line)")
    return m.group(2)


def replace_section(text: str, name: str, body: str) -> str:
    section_body(text, name)  # raises when the markers are missing
    return _pattern(name).sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(3), text)


def render(text: str, sections=tuple(SECTIONS), speed_path: Path = SPEED_JSON) -> str:
    """``text`` with each named section re-rendered."""
    ctx = context(speed_path, sections)
    for name in sections:
        text = replace_section(text, name, SECTIONS[name](ctx))
    return text


def diff(old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        "README.md", "README.md (generated)"))


# ---------------------------------------------------------------- speed runs

def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(),
                numpy=np.__version__, load_average_at_start=list(os.getloadavg()))


def run_benchmark(script: str, args: list[str]) -> dict:
    """Run one benchmark in a fresh process on this tree; its --json figures."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)]
        print("running", " ".join(["python", f"benchmarks/{script}", *args]), flush=True)
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        return json.loads(out.read_text())


def record_speed(path: Path = SPEED_JSON) -> dict:
    speed = dict(machine=machine(), date=datetime.date.today().isoformat(), note=SHARED_NOTE,
                 commands={k: " ".join(["python", f"benchmarks/{s}", *a])
                           for k, (s, a) in BENCHMARKS.items()})
    for key, (script, args) in BENCHMARKS.items():
        speed[key] = run_benchmark(script, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(speed, indent=1) + "\n")
    return speed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speed", action="store_true", help="rerun the speed benchmarks first")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 with a diff if the README is stale")
    a = ap.parse_args(argv)
    if a.speed and a.check:
        ap.error("--speed rewrites the recorded figures; --check only compares")
    if a.speed:
        record_speed()
    old = README.read_text()
    new = render(old)
    if a.check:
        d = diff(old, new)
        print(d or "README.md is up to date", end="\n" if not d else "")
        return 1 if d else 0
    README.write_text(new)
    print("README.md is up to date" if new == old else "README.md rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
