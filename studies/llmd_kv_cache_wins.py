"""Study: llm-d "KV-Cache Wins You Can See" -- precise vs approximate vs load vs random routing.

Published (llm-d blog, Ayoub et al., 2025-09-24, llm-d.ai/blog/kvcache-wins-you-can-see,
"Performance Results" summary table and Appendix A.1/A.2; full per-QPS tables in the benchmark
report it links, llm-d/llm-d-kv-cache-manager ``benchmarking/73-capacity/README.md``):

* Setup: 8 vLLM pods, each 2x H100 (16 GPUs), model "Qwen/Qwen-32B" in the blog appendix,
  ``Qwen/Qwen3-32B`` in the benchmark report's inference-perf config; each pod holds a
  307,328-token KV cache.
* Workload (inference-perf ``shared_prefix``): 150 groups x 5 prompts, system prompt 6,000
  tokens, question 1,200 tokens, output 1,000 tokens (``ignore_eos``); Poisson stages: warm-up
  15 QPS x 50 s, then 3, 10, 15, 20, 22, 25, 30, 35, 40, 43, 46, 49, 52, 55, 57, 60 QPS
  (durations 20-38 s, :data:`LADDER`). Resident prefixes = 150 x 12,000 = 1.8 M tokens = 73 %
  of the cluster's KV.
* Summary across QPS (output tok/s | TTFT p90 s | TTFT mean s): precise 8730.0 | 0.542 | 0.298;
  approximate ("estimated") 6944.4 | 31.083 | 13.316; load 4428.7 (blog) / 4266.4 (report) |
  94.865 | 46.987; random 4428.7 | 92.551 | 45.281.

Model (public API only): :func:`kvmodel.sim.simulate` with 8 instances of ``qwen3-32b`` on
``h100-sxm``, TP2, bf16, framework ``vllm``; the workload is built exactly (750 distinct prompts,
64-token hash blocks as the llm-d indexer's ``blockSize: 64``) as a public
:class:`kvmodel.Trace`, plus the closest :func:`kvmodel.synthetic_trace` (unique user turns --
no per-user prompt repeats) as a second workload. Routing map:

* precise -> ``llmd`` (exact cache view, weights prefix 3 / kv-util 2 / queue 2 = the report's
  precise-scheduling EndpointPickerConfig);
* approximate -> :class:`ApproxPrefix` defined here (a :class:`kvmodel.policies.routing.RoutingPolicy`
  subclass): the llm-d approximate prefix scorer -- a router-side LRU of routed block hashes per
  pod (``lruCapacityPerServer`` 31,250 blocks of 64 tokens = 2.0 M tokens, far above the real
  307 k cache, so it believes evicted prefixes are still cached) with weights 1/1/1 as in the
  report's estimated-scheduling config. The registry's policies all see the exact cache, so this
  needed a custom policy; ``prefix_affinity_bounded`` is printed as a second "approximate" row;
* load -> ``least_loaded``; random -> ``random``.

Prefix cache: the simulator's cache is a dedicated HBM partition (vLLM shares one pool), set to
``--cache-fraction`` (default 0.3) of the instance's KV capacity.

    python studies/llmd_kv_cache_wins.py [--scale 0.25] [--out studies/results/llmd_kv_cache_wins]

``--scale`` multiplies every stage duration (default 0.25 keeps the run short; 1.0 = the
published ladder). Writes summary.csv, per_stage.csv and llmd_kv_cache_wins.html.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np

import kvmodel
from kvmodel.policies.routing import RoutingPolicy
from kvmodel.sim import simulate

HERE = Path(__file__).resolve().parent
MODEL, GPU, TP, N_INST, FRAMEWORK = "qwen3-32b", "h100-sxm", 2, 8, "vllm"
GROUPS, PER_GROUP, SYS_TOK, Q_TOK, OUT_TOK, BLOCK = 150, 5, 6000, 1200, 1000, 64
WARMUP = (15.0, 50.0)
LADDER = [(3, 20), (10, 20), (15, 20), (20, 38), (22, 34), (25, 30), (30, 25), (35, 21), (40, 38),
          (43, 36), (46, 33), (49, 30), (52, 29), (55, 27), (57, 26), (60, 25)]
# policy -> (output tok/s, TTFT p90 s, TTFT mean s), blog summary table / report summary
PUBLISHED = {"precise": (8730.0, 0.542, 0.298), "approximate": (6944.4, 31.083, 13.316),
             "load": (4428.7, 94.865, 46.987), "random": (4428.7, 92.551, 45.281)}
PUBLISHED_AT_QPS = {  # report per-QPS tables, TTFT p90 (s): QPS 10, 20, 40, 60
    "precise": (0.600, 0.600, 0.488, 0.500), "approximate": (0.499, 0.600, 43.018, 50.226),
    "load": (4.124, 77.707, 100.911, 110.184), "random": (1.398, 70.273, 101.272, 105.988)}


# ------------------------------------------------------------------------------ workload

def stages(scale: float) -> list[tuple[float, float]]:
    return [(r, d * scale) for r, d in [WARMUP, *LADDER]]


def arrivals(scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Poisson arrivals stage by stage; returns (arrival_s, stage index)."""
    rng = np.random.default_rng(seed)
    t0, out, idx = 0.0, [], []
    for k, (rate, dur) in enumerate(stages(scale)):
        t = t0 + np.cumsum(rng.exponential(1.0 / rate, int(rate * dur * 1.5) + 10))
        t = t[t < t0 + dur]
        out.append(t)
        idx.append(np.full(len(t), k))
        t0 += dur
    return np.concatenate(out), np.concatenate(idx)


def exact_trace(scale: float = 0.25, seed: int = 0) -> tuple[kvmodel.Trace, np.ndarray]:
    """The inference-perf shared_prefix workload: 750 fixed prompts (group prefix + user
    question), each request one of them uniformly at random."""
    arr, stage = arrivals(scale, seed)
    rng = np.random.default_rng(seed + 1)
    prompt = rng.integers(0, GROUPS * PER_GROUP, len(arr))
    L = SYS_TOK + Q_TOK
    nb, shared = math.ceil(L / BLOCK), SYS_TOK // BLOCK       # 113 blocks, 93 shared per group
    chains = []
    for p in prompt.tolist():
        g, u = divmod(p, PER_GROUP)
        chains.append([g * 1000 + j for j in range(shared)]
                      + [10**6 + p * 1000 + j for j in range(nb - shared)])
    trace = kvmodel.Trace.from_lists(chains, input_len=[L] * len(arr), output_len=[OUT_TOK] * len(arr))
    trace = kvmodel.Trace(arr, trace.input_len, trace.output_len, trace.block_offsets,
                          trace.block_ids, BLOCK, "llm-d 73-capacity shared_prefix")
    return trace, stage


def synthetic(n: int, rate: float, seed: int = 0) -> kvmodel.Trace:
    """Closest kvmodel.synthetic_trace: 150 uniform system prompts of 6000 tokens, one-turn
    sessions, geometric user (mean 1200) and output (mean 1000) lengths."""
    return kvmodel.synthetic_trace(n, seed=seed, rate_per_s=rate, n_system_prompts=GROUPS,
                                   system_prompt_tokens=SYS_TOK, zipf_alpha=0.0,
                                   session_fraction=0.0, user_tokens_mean=Q_TOK,
                                   output_tokens_mean=OUT_TOK, block_tokens=BLOCK)


# ------------------------------------------------------------------------------ routing

class ApproxPrefix(RoutingPolicy):
    """llm-d approximate prefix-cache scorer: per-pod LRU of block hashes the router itself
    sent there (capacity ``lru_blocks``), scored as matched leading blocks / prompt blocks,
    plus llm-d's kv-cache-utilization and queue scorers; max weighted score. Needs the trace
    to look up a request's hash chain from ``req.index`` (RouteRequest carries no hashes)."""

    name = "llmd_approx"

    def __init__(self, trace: kvmodel.Trace, lru_blocks: int = 31250,
                 weights: tuple[float, float, float] = (1.0, 1.0, 1.0), seed: int = 0):
        self.trace, self.cap, self.w, self.seed = trace, int(lru_blocks), weights, seed
        self.reset(0)

    def reset(self, n_instances, n_requests=None):
        self.lru = [OrderedDict() for _ in range(n_instances)]
        self.rng = np.random.default_rng(self.seed)

    def choose(self, req, view):
        if len(self.lru) != view.n:
            self.reset(view.n)
        chain = self.trace.hash_ids(req.index).tolist()
        nb = max(len(chain), 1)
        q = view.waiting
        lo, hi = min(q), max(q)
        scores = []
        for i in range(view.n):
            m = 0
            for h in chain:
                if h not in self.lru[i]:
                    break
                m += 1
            queue = 1.0 if hi == lo else (hi - q[i]) / (hi - lo)
            scores.append(self.w[0] * m / nb + self.w[1] * (1 - view.kv_usage[i]) + self.w[2] * queue)
        top = max(scores)
        best = [i for i, s in enumerate(scores) if s == top]
        i = best[0] if len(best) == 1 else int(self.rng.choice(best))
        lru = self.lru[i]
        for h in chain:
            lru[h] = None
            lru.move_to_end(h)
        while len(lru) > self.cap:
            lru.popitem(last=False)
        return i


def policies(trace) -> dict[str, tuple[str, object, dict | None]]:
    return {"precise": ("precise", "llmd", None),
            "approximate": ("approximate", ApproxPrefix(trace), None),
            "approximate (prefix_affinity_bounded)": ("approximate", "prefix_affinity_bounded", None),
            "load": ("load", "least_loaded", None),
            "random": ("random", "random", None)}


# ------------------------------------------------------------------------------ run

def cache_blocks(fraction: float) -> int:
    e = kvmodel.estimate(MODEL, GPU, tp=TP, precision="bf16", input_len=SYS_TOK + Q_TOK,
                         output_len=OUT_TOK, framework=FRAMEWORK)
    return int(fraction * e.kv_capacity_tokens / BLOCK)


def run(trace, stage, cache_fraction: float = 0.3, names=None):
    blocks = cache_blocks(cache_fraction)
    rows, per_stage = [], []
    for label, (pub, routing, params) in policies(trace).items():
        if names and label not in names:
            continue
        r = simulate(MODEL, GPU, trace, instances=N_INST, tp=TP, precision="bf16",
                     framework=FRAMEWORK, routing=routing, routing_params=params,
                     prefix_cache_blocks=blocks)
        # leave out the warm-up stage (index 0), as the published per-QPS tables do
        keep = r.served & (stage >= 1) if stage is not None else r.served
        t = r.ttft_s[keep]
        done = r.arrival_s[keep] + r.e2e_s[keep]
        span = done.max() - r.arrival_s[keep].min()
        tok_s = float(r.output_len[keep].sum() / span)
        hit = r.cached_tokens[keep].sum() / r.input_len[keep].sum()
        rows.append(dict(policy=label, published_as=pub, pub_tok_s=PUBLISHED[pub][0],
                         model_tok_s=tok_s, pub_ttft_p90=PUBLISHED[pub][1],
                         model_ttft_p90=float(np.percentile(t, 90)), pub_ttft_mean=PUBLISHED[pub][2],
                         model_ttft_mean=float(t.mean()), model_token_hit=float(hit),
                         model_tpot_mean=r.stat("tpot")))
        if stage is not None:
            for k in np.unique(stage[keep]):
                m = keep & (stage == k)
                per_stage.append(dict(policy=label, qps=stages(1.0)[k][0],
                                      ttft_p90=float(np.percentile(r.ttft_s[m], 90)),
                                      ttft_mean=float(r.ttft_s[m].mean())))
    return rows, per_stage


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot(path: Path, per_stage: list[dict]) -> None:
    import plotly.graph_objects as go
    fig = go.Figure()
    for pol in dict.fromkeys(r["policy"] for r in per_stage):
        pts = [r for r in per_stage if r["policy"] == pol]
        fig.add_trace(go.Scatter(x=[p["qps"] for p in pts], y=[p["ttft_p90"] for p in pts],
                                 name=f"model {pol}"))
    qps = (10, 20, 40, 60)
    for pub, v in PUBLISHED_AT_QPS.items():
        fig.add_trace(go.Scatter(x=qps, y=v, mode="markers", name=f"published {pub}"))
    fig.update_layout(title="llm-d 73-capacity workload: TTFT p90 vs QPS (Qwen3-32B, 8x TP2 H100)",
                      xaxis_title="QPS (stage)", yaxis_title="TTFT p90 (s)", yaxis_type="log")
    fig.write_html(path, include_plotlyjs="cdn")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.25, help="stage-duration multiplier")
    ap.add_argument("--cache-fraction", type=float, default=0.3)
    ap.add_argument("--synthetic", action="store_true", help="also run the synthetic_trace workload")
    ap.add_argument("--out", default=str(HERE / "results" / "llmd_kv_cache_wins"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    trace, stage = exact_trace(a.scale)
    print(f"workload: {len(trace)} requests over {trace.arrival_s[-1]:.0f} s (scale {a.scale})")
    rows, per_stage = run(trace, stage, a.cache_fraction)
    print(f"{'policy':40s} {'tok/s pub':>9s} {'model':>7s} {'p90 pub':>8s} {'model':>7s} "
          f"{'mean pub':>8s} {'model':>7s} {'hit':>5s}")
    for r in rows:
        print(f"{r['policy']:40s} {r['pub_tok_s']:9.0f} {r['model_tok_s']:7.0f} "
              f"{r['pub_ttft_p90']:8.3f} {r['model_ttft_p90']:7.3f} {r['pub_ttft_mean']:8.3f} "
              f"{r['model_ttft_mean']:7.3f} {r['model_token_hit']:5.2f}")
    write_csv(out / "summary.csv", rows)
    write_csv(out / "per_stage.csv", per_stage)
    print("TTFT p90 by stage (model | published at QPS 10/20/40/60):")
    for pol in dict.fromkeys(r["policy"] for r in per_stage):
        m = {p["qps"]: p["ttft_p90"] for p in per_stage if p["policy"] == pol}
        pub = PUBLISHED_AT_QPS[policies(trace)[pol][0]]
        print(f"  {pol:40s} " + "  ".join(f"{q}: {m.get(q, float('nan')):.2f}|{v:.2f}"
                                          for q, v in zip((10, 20, 40, 60), pub)))
    if a.synthetic:
        syn = synthetic(len(trace), len(trace) / trace.arrival_s[-1])
        srows, _ = run(syn, None, a.cache_fraction)
        write_csv(out / "summary_synthetic.csv", srows)
        print("synthetic_trace workload (unique questions, geometric lengths, mean rate):")
        for r in srows:
            print(f"  {r['policy']:40s} tok/s {r['model_tok_s']:7.0f}  p90 {r['model_ttft_p90']:7.3f}"
                  f"  mean {r['model_ttft_mean']:7.3f}  hit {r['model_token_hit']:.2f}")
    plot(out / "llmd_kv_cache_wins.html", per_stage)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
