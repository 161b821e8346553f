"""Non-LRU hit-ratio curves for the closed-form model: build time, call time, accuracy.

For each eviction policy and each case (N=1 single, N=8 prefix_affinity_bounded) on the
Mooncake conversation trace, prints
  (a) the one-off build time of the policy's grid (exact replays; the analytic LRU tables and
      the routing footprint are warmed first, as the cluster model has them anyway),
  (b) the per-call time once cached (4 capacities, as cluster._hits asks, and 1000),
  (c) max |interpolated - exact| over ~20 off-grid capacities (log-uniform per-instance
      capacities between 3 and saturation, exact = kvmodel.workload._reuse_exact.replay), next to the
      same grid interpolated linearly in log c ("log") and as the analytic LRU times the
      interpolated ratio policy/LRU ("ratio"), to back the interpolation choice.
Usage:
    .venv/bin/python benchmarks/policy_curve.py [--grid-points 4 [6 8 ...]] [--tests 20]
        [--policies fifo lfu ...] [--workers 2]
(--workers: processes for the exact replays of (c) only; builds are timed sequentially.)
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kvmodel  # noqa: E402
from kvmodel.workload._policy_curve import (  # noqa: E402
    DEFAULT_GRID_POINTS,
    EVICTIONS,
    _lru,
    _saturation,
    policy_curve_table,
    policy_hit_ratio_curve,
)
from kvmodel.workload._reuse_analytic import reuse_profile  # noqa: E402
from kvmodel.workload._reuse_exact import replay  # noqa: E402

TRACE = "mooncake-conversation"  # built-in trace (kvmodel traces)
CASES = [(1, "single"), (8, "prefix_affinity_bounded")]
EPS = 0.25
_TR = {}


def _exact(args) -> float:
    ev, n, routing, c = args
    if "tr" not in _TR:
        _TR["tr"] = kvmodel.load_trace(TRACE)
    tr = _TR["tr"]
    return replay(tr, int(c) * n, n, routing, 0, ev, EPS).hit_blocks / tr.total_blocks


def _alternatives(tab, prof, c):
    """The same grid interpolated linearly in log c, and as A(c) * interpolated h/A."""
    g, h, al = tab.per_instance, tab.hit_ratio, tab.lru
    k = np.clip(np.searchsorted(g, c, side="right") - 1, 0, len(g) - 2)
    lo, hi = np.maximum(g[k], 1.0), g[k + 1]
    t = np.clip(np.log(np.maximum(c, 1.0) / lo) / np.log(hi / lo), 0, 1)
    log = h[k] + t * (h[k + 1] - h[k])
    a = _lru(prof, c, tab.instances, tab.routing, EPS)
    ok = (al[k] > 0) & (al[k + 1] > 0)
    r_lo = h[k] / np.where(ok, al[k], 1.0)
    r_hi = h[k + 1] / np.where(ok, al[k + 1], 1.0)
    ratio = np.where(ok, a * (r_lo + t * (r_hi - r_lo)), log)
    return log, ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid-points", type=int, nargs="+", default=[DEFAULT_GRID_POINTS])
    ap.add_argument("--tests", type=int, default=20)
    ap.add_argument("--policies", nargs="+", default=[e for e in EVICTIONS if e != "lru"])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    tr = kvmodel.load_trace(TRACE)
    print(f"{TRACE}: {len(tr)} requests, {tr.total_blocks} block accesses, "
          f"{tr.unique_blocks} distinct blocks")
    rng = np.random.default_rng(7)
    pool = ProcessPoolExecutor(args.workers) if args.workers > 1 else None
    for n, routing in CASES:
        prof = reuse_profile(tr)
        t0 = time.perf_counter()
        policy_hit_ratio_curve(tr, prof, [1000 * n], n, routing, EPS, "lru")
        for ev in ("fifo", "lru-admit-reuse"):
            _saturation(tr, prof, n, routing, EPS, ev, 0)
        print(f"\nN={n} {routing}: analytic LRU tables + footprint warm-up "
              f"{time.perf_counter() - t0:.2f} s (shared by all policies)")
        tables = {}
        for gp in args.grid_points:
            for ev in args.policies:
                tables[gp, ev] = policy_curve_table(tr, prof, n, routing, EPS, ev, grid_points=gp)
        # (c) exact replays at off-grid per-instance capacities, per policy
        jobs, tests = [], {}
        for ev in args.policies:
            top = max(tables[gp, ev].per_instance[-1] for gp in args.grid_points)
            on = set().union(*(tables[gp, ev].per_instance.tolist() for gp in args.grid_points))
            cs = np.unique(np.round(np.exp(rng.uniform(np.log(3), np.log(top), 3 * args.tests))))
            cs = np.array([c for c in cs if c not in on][:args.tests], dtype=np.float64)
            tests[ev] = cs
            jobs += [(ev, n, routing, c) for c in cs]
        vals = list(pool.map(_exact, jobs, chunksize=1) if pool else map(_exact, jobs))
        exact, i = {}, 0
        for ev in args.policies:
            exact[ev] = np.array(vals[i:i + len(tests[ev])])
            i += len(tests[ev])
        print(f"{'policy':16s} {'K':>3s} {'build s':>8s} {'s/replay':>8s} {'call4 us':>9s} "
              f"{'call1k us':>9s} {'max err':>8s} {'log':>7s} {'ratio':>7s} {'max gap':>8s}")
        for gp in args.grid_points:
            for ev in args.policies:
                tab = tables[gp, ev]
                caps4 = np.array([2000.0, 9000.0, 30000.0, 90000.0]) * n
                caps1k = np.linspace(0, 1.2 * tab.capacities[-1], 1000)
                call = []
                for caps in (caps4, caps1k):
                    reps = 2000 if len(caps) < 10 else 300
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        policy_hit_ratio_curve(tr, prof, caps, n, routing, EPS, ev,
                                               grid_points=gp)
                    call.append((time.perf_counter() - t0) / reps * 1e6)
                c = tests[ev]
                got = policy_hit_ratio_curve(tr, prof, c * n, n, routing, EPS, ev, grid_points=gp)
                log, ratio = _alternatives(tab, prof, c)
                e = [np.max(np.abs(x - exact[ev])) for x in (got, log, ratio)]
                print(f"{ev:16s} {tab.replays:3d} {tab.build_s:8.2f} "
                      f"{tab.build_s / tab.replays:8.2f} {call[0]:9.1f} {call[1]:9.1f} "
                      f"{e[0]:8.4f} {e[1]:7.4f} {e[2]:7.4f} {np.max(np.diff(tab.hit_ratio)):8.4f}")
    if pool:
        pool.shutdown()


if __name__ == "__main__":
    main()
