"""Search speed: trials/s of the tier-sizing space (TPE and NSGA-II) on each storage, grid
points/s of the vectorised grid, and how close Optuna gets to the grid optimum per budget.

    python benchmarks/search_speed.py [--trials 1000] [--space tier-sizing] [--quick] [--json FILE]

Target (issue): 1,000 trials in <= 10 s on 2 cores with the default storage (journal file).
The first trial of a process also loads the trace and builds its reuse profile (about 1 s for
the Mooncake conversation trace) and the routing tables of each instance count; those one-off
costs are reported apart from the trial loop. With 2 workers each process pays them again
(inside the timed run). --json also writes the speed figures (seconds, per second) to FILE.
TPE's time above NSGA-II's is the sampler's: one Parzen fit per 4 draws (8 once the study holds
100 trials) on a bounded window of the history (kvmodel/search/_samplers.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

from kvmodel import search


def timed_run(space, n: int, sampler: str, storage, workers: int = 1) -> float:
    t0 = time.perf_counter()
    search.run(space, n_trials=n, storage=storage, study_name=f"bench-{sampler}-{workers}",
               sampler=sampler, workers=workers)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--space", default="tier-sizing")
    ap.add_argument("--quick", action="store_true",
                    help="skip SQLite and the Optuna-vs-grid comparison")
    ap.add_argument("--json", help="also write the speed figures to this file")
    a = ap.parse_args()
    out = dict(space=a.space, trials=a.trials, runs={}, grids={})
    space = search.load_space(a.space)
    t0 = time.perf_counter()
    search.evaluate_point(space, {d.name: d.grid_values()[0] for d in space.dims})
    out["setup_s"] = time.perf_counter() - t0
    print(f"{space.name}: trace + reuse profile (once per process) {out['setup_s']:.2f} s")
    t0 = time.perf_counter()
    for p in search.grid_points(dataclasses.replace(space, dims=tuple(
            d for d in space.dims if d.name == "instances"))):
        search.evaluate_point(space, p)  # routing tables per instance count, built once each
    print(f"  routing tables per instance count (once per process) {time.perf_counter() - t0:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"journal file (default)": os.path.join(tmp, "s.journal")}
        if not a.quick:
            stores["sqlite"] = f"sqlite:///{os.path.join(tmp, 's.db')}"
        for label, store in stores.items():
            for sampler, workers in (("tpe", 1), ("nsga2", 1), ("tpe", 2), ("nsga2", 2)):
                if workers > 1 and label != "journal file (default)":
                    continue
                dt = timed_run(space, a.trials, sampler, store, workers)
                out["runs"][f"{sampler} {label} {workers}"] = dict(
                    sampler=sampler, storage=label, workers=workers, seconds=dt)
                print(f"  {sampler:6s} {label:24s} {workers} worker(s) {a.trials} trials in "
                      f"{dt:6.2f} s = {a.trials / dt:6.1f} trials/s", flush=True)
    grids = {"tier-sizing-small": (20, 50, 100, 200), a.space: (100, 300, 1000)}
    for name, budgets in grids.items():
        g = search.grid_search(name)
        out["grids"][name] = dict(points=len(g.points), groups=g.groups, seconds=g.seconds)
        print(f"grid {name}: {len(g.points)} points in {g.groups} vectorised groups, "
              f"{g.seconds:.2f} s = {g.points_per_s:,.0f} points/s; optimum {g.best()[1]:.6g} "
              f"at {g.best()[0]}", flush=True)
        if a.quick:
            continue
        for sampler in ("tpe", "nsga2", "random"):
            for r in search.compare_with_grid(name, budgets=budgets, sampler=sampler, grid=g):
                print(f"  {sampler:6s} {r['trials']:4d} trials: best {r['found_mean']:.6g} "
                      f"(grid {r['grid_optimum']:.6g}), gap mean {100 * r['gap_mean']:.3f} % "
                      f"worst {100 * r['gap_worst']:.3f} % over 3 seeds", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
