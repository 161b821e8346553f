"""Speed of the one-pass exact LRU hit-ratio curve on the Mooncake traces.

    python benchmarks/reuse_speed.py [--step 1000] [--check] [--json FILE]

Prints, per trace: requests, blocks, unique blocks, seconds for the whole single-instance LRU
curve (capacities 0..unique step --step) and the curve at a few capacities. --check also
replays LRU once at a mid capacity and compares (and times the replay). Then times the README's
``hit_ratio_curve`` calls as written (conversation trace, 201 capacities): exact, analytic,
8 instances with bounded prefix affinity (replayed per capacity) and S3-FIFO (replayed per
capacity). --json also writes these figures (seconds) to FILE.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import kvmodel
from kvmodel.workload._reuse_analytic import analytic_hit_ratio_curve, reuse_profile
from kvmodel.workload._reuse_exact import exact_hit_ratio_curve, replay
from kvmodel.workload._trace_types import Trace
from kvmodel.workload.traces import DATA_DIR

TRACES = DATA_DIR  # the built-in traces bundled in the package


def load_chains(path: Path) -> Trace:
    """Mooncake JSONL -> Trace of its hash_ids chains (the real loader lives elsewhere)."""
    with open(path) as f:
        chains = [json.loads(line)["hash_ids"] for line in f if line.strip()]
    return Trace.from_lists(chains, name=path.stem)


def bench(trace: Trace, step: int, check: bool) -> dict:
    caps = np.arange(0, trace.unique_blocks + 1, step)
    t0 = time.perf_counter()
    exact_hit_ratio_curve(trace, caps)
    dt = time.perf_counter() - t0
    print(f"{trace.name}: {len(trace)} requests, {trace.total_blocks} blocks, "
          f"{trace.unique_blocks} unique; exact LRU curve ({len(caps)} capacities): {dt:.3f} s")
    for frac in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0):
        c = int(frac * trace.unique_blocks)
        print(f"    C={c:>7d} ({frac:>4.0%} of unique): hit ratio "
              f"{exact_hit_ratio_curve(trace, [c])[0]:.4f}")
    if check:
        c = trace.unique_blocks // 10
        t0 = time.perf_counter()
        r = replay(trace, c).hit_ratio
        print(f"    check: LRU replay at C={c}: {r:.6f} ({time.perf_counter() - t0:.3f} s), "
              f"curve {exact_hit_ratio_curve(trace, [c])[0]:.6f}")
    return dict(requests=len(trace), blocks=int(trace.total_blocks),
                unique_blocks=int(trace.unique_blocks), capacities=len(caps), exact_curve_s=dt)


def _timed(fn, *args, **kw) -> float:
    t0 = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - t0


def readme_calls(name: str = "mooncake-conversation") -> dict:
    """Seconds of each ``hit_ratio_curve`` call of the README, as written there."""
    trace = kvmodel.load_trace(name)
    cap = np.arange(0, 200_001, 1000)
    out = dict(capacities=len(cap))
    out["exact_s"] = _timed(kvmodel.hit_ratio_curve, trace, cap)
    out["analytic_s"] = _timed(kvmodel.hit_ratio_curve, trace, cap, method="analytic")
    prof = reuse_profile(trace)
    out["analytic_on_profile_s"] = _timed(analytic_hit_ratio_curve, prof, cap)
    out["routed_capacities"] = len(cap[::40])
    out["routed_8x_bounded_s"] = _timed(kvmodel.hit_ratio_curve, trace, cap[::40], instances=8,
                                        routing="prefix_affinity_bounded", epsilon=0.25)
    out["s3fifo_capacities"] = len(cap[:20])
    out["s3fifo_s"] = _timed(kvmodel.hit_ratio_curve, trace, cap[:20], eviction="s3fifo")
    for k, v in out.items():
        print(f"README call {k}: {v:.3f}" if k.endswith("_s") else f"README call {k}: {v}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--step", type=int, default=1000)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures (seconds) to this file")
    args = ap.parse_args()
    out = {name: bench(load_chains(TRACES / name), args.step, args.check)
           for name in ("conversation_trace.jsonl", "synthetic_trace.jsonl")}
    out["readme_calls"] = readme_calls()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
