"""Analytic (Che/TTL) prefix-cache hit ratio vs exact LRU replay on the Mooncake traces.

Prints, per trace, routing and instance count, the max |analytic - exact| block hit ratio over
~10 capacities (exact = the OrderedDict oracle of tests/workload/test_reuse_analytic.py, run in a
process pool), then the analytic evaluation speed. Usage:
    .venv/bin/python benchmarks/reuse_analytic.py [--quick] [--speed-only] [--json FILE]

--speed-only skips the exact replays (the error check); --json also writes the speed figures
(seconds) per trace to FILE.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kvmodel.workload._reuse_analytic import (  # noqa: E402
    _back,
    _pairs,
    _prefix_max,
    _solve_mixture,
    analytic_hit_ratio_curve,
    reuse_profile,
)
from kvmodel.workload._trace_types import Trace  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "oracle", ROOT / "tests" / "workload" / "test_reuse_analytic.py")
oracle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracle)

TRACES = ("conversation_trace.jsonl", "synthetic_trace.jsonl")
CASES = [(1, "single"), (4, "random"), (4, "round_robin"), (4, "prefix_affinity"),
         (4, "prefix_affinity_bounded"), (16, "random"), (16, "round_robin"),
         (16, "prefix_affinity"), (16, "prefix_affinity_bounded")]
_CHAINS: dict[str, list] = {}
QUICK = False


def _exact(args) -> float:
    name, cap, n, routing = args
    if name not in _CHAINS:
        _CHAINS[name] = oracle.load_chains(name)
    return oracle.lru_replay(_CHAINS[name], cap, n, routing)


def prefix_rule_check(trace: Trace) -> int:
    """Accesses whose chain prefix-max gap differs from their own gap (0: rule is implied)."""
    pr = _pairs(trace.block_offsets, trace.block_ids)
    gap = _back(pr, 1)[0][pr["pair_of"]]
    pm = _prefix_max(gap, pr["req"], pr["ticks"])
    return int(np.sum(pm != gap))


def speed(prof, n_caps: int = 1000, reps: int = 50) -> dict:
    """Seconds of the first call, per point vectorised and per 1-point call, per routing."""
    caps = np.geomspace(10, prof.unique_blocks, n_caps)
    out = {}
    for n, routing in [(1, "single"), (16, "random"), (16, "round_robin"),
                       (16, "prefix_affinity")]:
        prof._cache.clear()
        t0 = time.perf_counter()
        analytic_hit_ratio_curve(prof, caps, instances=n, routing=routing)  # builds caches
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(reps):
            analytic_hit_ratio_curve(prof, caps, instances=n, routing=routing)
        per = (time.perf_counter() - t0) / reps / n_caps
        t0 = time.perf_counter()
        for c in caps[:100]:
            analytic_hit_ratio_curve(prof, [c], instances=n, routing=routing)
        single = (time.perf_counter() - t0) / 100
        print(f"  speed {routing:>24s} N={n:2d}: first call {first * 1e3:7.1f} ms; "
              f"{1 / per:,.0f} points/s vectorised ({per * 1e6:.2f} us/pt); "
              f"{single * 1e6:.0f} us per 1-point call")
        out[f"{routing} N={n}"] = dict(first_call_s=first, per_point_s=per, one_point_call_s=single)
    return out


def accuracy(pool, name: str, prof) -> None:
    """Max and mean |analytic - exact| per routing case (exact: LRU replays in the pool)."""
    u = prof.unique_blocks
    caps = np.unique(np.geomspace(u / 200, u, 6 if QUICK else 10).astype(int))
    print(f"  capacities: {caps.tolist()}")
    jobs = [(name, int(c), n, r) for n, r in CASES for c in caps]
    t0 = time.perf_counter()
    exact = np.array(list(pool.map(_exact, jobs, chunksize=1))).reshape(len(CASES), -1)
    print(f"  exact replays: {len(jobs)} in {time.perf_counter() - t0:.1f} s")
    for (n, routing), ex in zip(CASES, exact):
        an = analytic_hit_ratio_curve(prof, caps, instances=n, routing=routing)
        err = an - ex
        i = int(np.argmax(np.abs(err)))
        print(f"  {routing:>24s} N={n:2d}: max|err| {abs(err[i]):.4f} at C={caps[i]} "
              f"(analytic {an[i]:.4f} exact {ex[i]:.4f}); mean|err| {np.mean(np.abs(err)):.4f}")
        if routing == "round_robin":
            mix = _solve_mixture(prof, np.floor(caps / n), n) / prof.total_accesses
            print(f"  {'round_robin as mixture':>24s} N={n:2d}: max|err| "
                  f"{np.max(np.abs(mix - ex)):.4f}")


def main(speed_only: bool = False) -> dict:
    pool = None if speed_only else ProcessPoolExecutor(max_workers=os.cpu_count())
    out = {}
    for name in TRACES:
        trace = Trace.from_lists(oracle.load_chains(name), name=name)
        t0 = time.perf_counter()
        prof = reuse_profile(trace)
        t_prof = time.perf_counter() - t0
        u = prof.unique_blocks
        print(f"\n{name}: {len(trace)} requests, {prof.total_accesses} blocks, {u} unique; "
              f"cold-only ceiling {1 - u / prof.total_accesses:.4f}; profile {t_prof:.2f} s; "
              f"prefix-max != own gap for {prefix_rule_check(trace)} accesses")
        if pool is not None:
            accuracy(pool, name, prof)
        out[name] = dict(profile_s=t_prof, speed=speed(prof))
    if pool is not None:
        pool.shutdown()
    return out


if __name__ == "__main__":
    QUICK = "--quick" in sys.argv
    figures = main(speed_only="--speed-only" in sys.argv)
    if "--json" in sys.argv:
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps(figures, indent=1))
