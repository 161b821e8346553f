"""Speed of the one-pass exact LRU hit-ratio curve on the Mooncake traces.

    python benchmarks/reuse_speed.py [--step 1000] [--check]

Prints, per trace: requests, blocks, unique blocks, seconds for the whole single-instance LRU
curve (capacities 0..unique step --step) and the curve at a few capacities. --check also
replays LRU once at a mid capacity and compares (and times the replay).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from kvmodel._reuse_exact import exact_hit_ratio_curve, replay
from kvmodel._trace_types import Trace
from kvmodel.traces import DATA_DIR

TRACES = DATA_DIR  # the built-in traces bundled in the package


def load_chains(path: Path) -> Trace:
    """Mooncake JSONL -> Trace of its hash_ids chains (the real loader lives elsewhere)."""
    with open(path) as f:
        chains = [json.loads(line)["hash_ids"] for line in f if line.strip()]
    return Trace.from_lists(chains, name=path.stem)


def bench(trace: Trace, step: int, check: bool) -> None:
    caps = np.arange(0, trace.unique_blocks + 1, step)
    t0 = time.perf_counter()
    curve = exact_hit_ratio_curve(trace, caps)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--step", type=int, default=1000)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    for name in ("conversation_trace.jsonl", "synthetic_trace.jsonl"):
        bench(load_chains(TRACES / name), args.step, args.check)


if __name__ == "__main__":
    main()
