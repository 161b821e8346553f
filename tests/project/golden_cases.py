"""Golden results: estimates, cluster evaluations, simulator runs and search trials recorded
before a refactor, so a change that must not alter behaviour can be checked number for number.

``python tests/project/golden_cases.py --record`` rewrites ``tests/data/golden.json`` (do that only in a
commit that changes behaviour on purpose, and say why); ``--check`` prints how many values are
bit-identical and the largest relative difference. ``tests/project/test_golden.py`` runs the same
comparison in the suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden.json"


def _plain(x: Any) -> Any:
    """Nested dicts/lists of Python floats, ints, bools, strings and None."""
    if hasattr(x, "to_dict"):
        return _plain(x.to_dict())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _plain({f.name: getattr(x, f.name) for f in dataclasses.fields(x)})
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_plain(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    return x if x is None or isinstance(x, str) else repr(x)


def estimates() -> dict[str, Any]:
    import kvmodel
    out: dict[str, Any] = {}
    cases = [
        ("llama-3.1-8b", "h100-sxm", dict(tp=1, precision="bf16", input_len=2048, output_len=128, batch=1)),
        ("llama-3.1-8b", "a100-sxm-80gb",
         dict(tp=1, precision="bf16", input_len=1024, output_len=256, batch=16)),
        ("llama-3.1-70b", "h100-sxm",
         dict(tp=8, precision="fp8", input_len=2048, output_len=128, batch="max")),
        ("llama-3.1-70b", "h200-sxm",
         dict(tp=4, precision="fp8", input_len=8000, output_len=500, concurrency=32)),
        ("llama-3.1-70b", "h100-sxm",
         dict(tp=8, precision="fp8", input_len=4096, output_len=256, request_rate=3.0)),
        ("llama-3.1-70b", "h100-sxm", dict(tp=8, precision="fp8", input_len=8192, output_len=256, batch="max",
                                           cached_prefix_len=6000, cache_tier="dram")),
        ("llama-3.1-70b", "h100-sxm", dict(tp=8, precision="fp8", input_len=8192, output_len=256, batch=8,
                                           cached_prefix_len=6000, cache_tier="ssd", prefix_policy="split")),
        ("mixtral-8x7b", "h100-sxm",
         dict(tp=2, precision="bf16", input_len=1024, output_len=128, batch="max")),
        ("deepseek-v3", "h200-sxm", dict(tp=8, precision="fp8", input_len=2048, output_len=256, batch=32)),
        ("qwen3-32b", "mi300x", dict(tp=1, precision="bf16", input_len=4096, output_len=512, request_rate=0.5,
                                     arrival_cv=2.0, length_cv=0.5)),
        ("llama-2-13b", "h100-sxm", dict(tp=1, precision="bf16", input_len=10532, output_len=40,
                                         request_rate=1.45)),
        ("llama-3.1-8b", "h100-sxm", dict(tp=1, precision="bf16", input_len=np.array([512, 2048, 8192]),
                                          output_len=128, batch="max", framework="vllm")),
        ("llama-3.1-8b", "l40s", dict(tp=1, precision="fp8", input_len=1024, output_len=128,
                                      concurrency=np.array([1, 8, 64]))),
    ]
    for i, (m, g, kw) in enumerate(cases):
        out[f"{i}:{m}@{g}"] = _plain(kvmodel.estimate(m, g, **kw))
    return out


def clusters() -> dict[str, Any]:
    import kvmodel
    from kvmodel import Cluster, P2PSpec, PoolSpec, Workload
    tr = kvmodel.load_trace("mooncake-conversation")
    w = Workload(tr, request_rate=10.0, ttft_slo_s=2.0, tpot_slo_s=0.1)
    base = dict(model="llama-3.1-8b", gpu="h100-sxm", instances=4, tp=1, precision="bf16")
    out: dict[str, Any] = {}
    for routing in sorted(kvmodel.ROUTING_POLICIES):
        for sharing in ("none", "central_pool", "p2p"):
            c = Cluster(**base, routing=routing, sharing=sharing)
            out[f"{routing}/{sharing}"] = _plain(kvmodel.evaluate(c, w))
    ws = Workload(kvmodel.synthetic_trace(1500, seed=2, rate_per_s=8.0))  # exact replays are slow
    for ev in ("lru", "fifo", "lfu", "s3fifo", "arc", "lru-admit-reuse"):
        c = Cluster(**base, routing="prefix_affinity_bounded", eviction=ev, sharing="p2p")
        out[f"eviction/{ev}"] = _plain(kvmodel.evaluate(c, ws))
    for pl in ("rendezvous", "consistent_hash", "directory"):
        c = Cluster(**base, sharing="p2p", p2p=P2PSpec(placement=pl, lookup_latency_s=1e-4, replication=2))
        out[f"p2p/{pl}"] = _plain(kvmodel.evaluate(c, w))
    c = Cluster(model="llama-3.1-70b", gpu="h100-sxm", tp=8, precision="fp8", prefill_instances=2,
                decode_instances=2, sharing="central_pool", pool=PoolSpec(servers=2, ssd_B=4e12))
    out["pd/pool"] = _plain(kvmodel.evaluate(c, Workload(tr, request_rate=2.0)))
    c = Cluster(**base, routing="prefix_affinity", sharing="none",
                hbm_cache_fraction=np.array([0.1, 0.3, 0.6]), dram_B=np.array([[0.0], [1e11]]))
    out["vector"] = _plain(kvmodel.evaluate(c, Workload(tr, request_rate=np.array([[[2.0]], [[20.0]]]))))
    return out


def simulations() -> dict[str, Any]:
    import kvmodel
    from kvmodel import sim
    small = kvmodel.synthetic_trace(300, seed=1, rate_per_s=4.0)
    out: dict[str, Any] = {}
    for routing in ("round_robin", "prefix_affinity_bounded", "dynamo"):
        r = sim.simulate("llama-3.1-8b", "h100-sxm", small, instances=2, tp=1, routing=routing,
                         prefix_cache_blocks=100)
        d = _plain(r)
        d.pop("wall_s", None)
        d.pop("wall_time_s", None)
        out[routing] = d
    r = sim.simulate("llama-3.1-8b", "h100-sxm", sim.poisson_requests(200, 5.0, 1024, 128, seed=3))
    d = _plain(r)
    d.pop("wall_s", None)
    d.pop("wall_time_s", None)
    out["poisson"] = d
    return out


def trials() -> dict[str, Any]:
    import optuna

    from kvmodel import search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        for name, sampler, n in (("tier-sizing-small", "tpe", 40), ("kv-sharing", "tpe", 25),
                                 ("tier-sizing-small", "random", 10), ("pd-routing", "nsga2", 12)):
            st = search.run(name, n_trials=n, storage=str(Path(d) / f"{name}-{sampler}.journal"),
                            sampler=sampler, seed=0)
            out[f"{name}/{sampler}"] = [
                {"params": _plain(t.params), "values": _plain(t.values),
                 "constraints": _plain(t.user_attrs.get("constraints", t.system_attrs.get("constraints"))),
                 "state": t.state.name}
                for t in st.trials]
        g = search.grid_search("tier-sizing-small")
        out["grid/tier-sizing-small"] = _plain({k: v for k, v in vars(g).items()
                                                if k != "seconds"
                                                and isinstance(v, (int, float, str, np.ndarray, list))})
    return out


SECTIONS = {"estimates": estimates, "clusters": clusters, "simulations": simulations, "trials": trials}


def compute() -> dict[str, Any]:
    return {k: f() for k, f in SECTIONS.items()}


def _sum(parts) -> tuple[int, int, float, list[str]]:
    n, same, rel, bad = 0, 0, 0.0, []
    for pn, ps, pr, pb in parts:
        n, same, rel, bad = n + pn, same + ps, max(rel, pr), bad + pb
    return n, same, rel, bad


def compare(a: Any, b: Any, path: str = "") -> tuple[int, int, float, list[str]]:
    """(values compared, values bit-identical, largest relative difference, mismatches);
    ``a`` is the reference: keys only ``b`` has are ignored."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) - set(b):  # new keys (a result field added later) are allowed
            return 1, 0, math.inf, [f"{path}: keys {sorted(set(a) - set(b))} missing"]
        return _sum(compare(a[k], b[k], f"{path}/{k}") for k in a)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return 1, 0, math.inf, [f"{path}: length {len(a)} != {len(b)}"]
        return _sum(compare(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        b = float(b)
        if a == b or (math.isnan(a) and math.isnan(b)):
            return 1, 1, 0.0, []
        if math.isfinite(a) and math.isfinite(b):
            rel = abs(a - b) / max(abs(a), abs(b))
            return 1, 0, rel, ([] if rel <= 1e-9 else [f"{path}: {a!r} != {b!r}"])
        return 1, 0, math.inf, [f"{path}: {a!r} != {b!r}"]
    return (1, 1, 0.0, []) if a == b else (1, 0, math.inf, [f"{path}: {a!r} != {b!r}"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", action="store_true")
    g.add_argument("--check", action="store_true")
    a = p.parse_args(argv)
    now = compute()
    if a.record:
        GOLDEN.write_text(json.dumps(now, indent=0, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
        return 0
    ref = json.loads(GOLDEN.read_text())
    n, same, rel, bad = compare(ref, now)
    print(f"{same}/{n} values bit-identical; largest relative difference {rel:.3g}")
    for m in bad[:20]:
        print("  ", m)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    raise SystemExit(main())
