"""From a point of a space to a cluster evaluation: objectives and constraints.

:func:`evaluate_point` turns the sampled ``params`` plus the space's fixed parts into a
:class:`kvmodel.Cluster` and :class:`kvmodel.Workload`, runs :func:`kvmodel.evaluate`, and
returns an :class:`Outcome` with the objective values (in ``space.metrics`` order) and the
constraint values (in :data:`CONSTRAINTS` order, Optuna's convention: <= 0 is satisfied). A
configuration that cannot run (weights do not fit, node without the GPU, unstable, network
saturated) is never an exception: it is an outcome with violated constraints and a ``reason``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import kvmodel
from kvmodel import cluster as _cl
from kvmodel.catalog.models import BYTES_PER_ELEMENT
from kvmodel.cluster._sharing import PUT_POLICIES
from kvmodel.search._space import (
    DIMENSIONS,
    LOAD_MODES,
    MOE_DIMS,
    POLICY_DIMS,
    ROUTING_PARAM_DIMS,
    Space,
    SpaceError,
)
from kvmodel.tiers import default_node_for_gpu
from kvmodel.workload.traces import BUILTIN, TraceNotFoundError, resolve_trace

__all__ = ["OBJECTIVES", "objective_label", "CONSTRAINTS", "Outcome", "evaluate_point",
           "evaluate_columns", "workload_for", "check_names", "check_trace", "BIG", "VECTOR_DIMS"]

BIG = 1e9            # stands for an infinite cost or latency in objective values
CONSTRAINTS = ("fit", "stable", "ttft_slo", "tpot_slo", "budget", "tier_bandwidth")


@dataclass(frozen=True)
class Objective:
    """One row of the objective table: how a trial's metrics become the objective value, the
    value's unit (as printed) and whether larger is better. The key in :data:`OBJECTIVES` is
    the identifier stored in studies and never changes; :attr:`label` is what people read
    (CLI output, Optuna's ``metric_names`` shown by optuna-dashboard)."""
    direction: str                                   # "maximize" | "minimize"
    value: Callable[[dict, Space, Any], float]       # (metrics, space, workload) -> value
    unit: str
    doc: str

    def label(self, name: str) -> str:
        """``name [unit, maximise|minimise]``, e.g. ``goodput_per_dollar [req/$, maximise]``."""
        verb = "maximise" if self.direction == "maximize" else "minimise"
        return f"{name} [{self.unit}, {verb}]"


def objective_label(name: str) -> str:
    """Display label of objective ``name`` (the identifier itself when unknown)."""
    return OBJECTIVES[name].label(name) if name in OBJECTIVES else name


# objective values work on scalars and on numpy arrays alike (the vectorised grid)
def _ratio(num, den, zero):
    """num / den where den > 0, else ``zero`` (no division by zero warnings)."""
    den = np.asarray(den, dtype=float)
    ok = den > 0
    return np.where(ok, np.asarray(num, dtype=float) / np.where(ok, den, 1.0), zero)


def _goodput_per_dollar(m, s, w):
    return _ratio(np.asarray(m["goodput_per_s"]) * 3600.0, m["cost_usd_per_h"], 0.0)


def _cost_per_good_mtok(m, s, w):
    tok_h = np.asarray(m["goodput_per_s"], dtype=float) * w.output_len * 3600.0
    return np.minimum(_ratio(m["cost_usd_per_h"], tok_h / 1e6, BIG), BIG)


def _ttft_p99(m, s, w):
    return np.minimum(m["ttft_p99_s"], BIG)


def _ttft_mean(m, s, w):
    return np.minimum(m["ttft_s"], BIG)


OBJECTIVES: dict[str, Objective] = {
    "goodput_per_dollar": Objective("maximize", _goodput_per_dollar, "req/$",
                                    "requests served within both SLOs per dollar"),
    "cost_per_mtok": Objective("minimize", _cost_per_good_mtok, "$/Mtok",
                               "dollars per million output tokens served within the SLOs"),
    "throughput_at_slo": Objective("maximize",
                                   lambda m, s, w: np.asarray(m["max_rate_at_slo"]) * w.output_len,
                                   "tok/s", "output tokens/s at the largest request rate whose "
                                   "TTFT/TPOT percentiles meet the SLOs (bisection)"),
    "requests_per_dollar_at_slo": Objective(
        "maximize", lambda m, s, w: _ratio(np.asarray(m["max_rate_at_slo"]) * 3600.0,
                                           m["cost_usd_per_h"], 0.0),
        "req/$", "capacity per dollar: the largest request rate meeting the SLOs "
                      "(bisection) x 3600 / cost per hour -- unlike goodput per $ at a fixed "
                      "rate, it rewards tiers that raise the SLO-limited capacity"),
    "ttft_p99": Objective("minimize", _ttft_p99, "s", "p99 TTFT at the workload's fixed rate"),
    "ttft_mean": Objective("minimize", _ttft_mean, "s",
                           "mean TTFT at the workload's fixed rate (every request's prefill "
                           "and wait counted once: ranks what a cache tier saves when the p99 "
                           "is set by the longest uncached prompts)"),
    "cost_per_hour": Objective("minimize", lambda m, s, w: m["cost_usd_per_h"], "$/h",
                               "hardware cost"),
    "goodput_rps": Objective("maximize", lambda m, s, w: m["goodput_per_s"], "req/s",
                             "requests/s within both SLOs"),
}


@dataclass(frozen=True)
class Outcome:
    values: tuple[float, ...]       # one per space.metrics
    constraints: tuple[float, ...]  # one per CONSTRAINTS; <= 0 satisfied
    metrics: dict[str, Any]         # the cluster result's scalars (+ derived counts)
    reason: str                     # why infeasible ("" when feasible)

    @property
    def feasible(self) -> bool:
        return all(c <= 0 for c in self.constraints)


# ---- workload --------------------------------------------------------------------------------
_TRACES: dict[tuple, Any] = {}
_WORKLOADS: dict[tuple, Any] = {}


def _load_trace(spec: dict, base_dir: str):
    """The space's trace: ``"synthetic"`` (with ``[workload.synthetic]``), a built-in trace name
    (``kvmodel traces``) or a file path relative to the space file. A trace that cannot be found
    raises :class:`kvmodel.workload.traces.TraceNotFoundError` (never recorded as an infeasible trial)."""
    name = spec["trace"]
    if name == "synthetic":
        kw = dict(spec.get("synthetic", {}))
        n = kw.pop("n_requests", 2000)
        try:
            return kvmodel.synthetic_trace(int(n), **kw)
        except ValueError as exc:
            raise SpaceError(f"[workload].synthetic: {exc}") from None
    path, display = resolve_trace(name, base_dir)
    if display in BUILTIN:
        return kvmodel.load_trace(display)
    return kvmodel.load_trace(path)


def check_trace(space: Space) -> None:
    """Fail fast (before any trial) when the space's trace is neither a built-in trace nor an
    existing file: :class:`kvmodel.workload.traces.TraceNotFoundError` naming the space, the file and the
    built-in names."""
    name = space.workload.get("trace", "synthetic")
    if name == "synthetic":
        return
    try:
        resolve_trace(name, space.base_dir)
    except TraceNotFoundError as exc:
        raise TraceNotFoundError(f"space {space.name!r}: [workload].{exc}") from None


def _coarsen(trace, block_tokens: int):
    """The trace with blocks of ``block_tokens`` tokens: ids are chained (an id stands for the
    whole prefix up to its block), so a coarse block is the fine id ending it; a trailing
    partial coarse block is not cacheable and is dropped."""
    k = block_tokens // trace.block_tokens
    lens = np.diff(trace.block_offsets)
    pos = np.arange(len(trace.block_ids)) - np.repeat(trace.block_offsets[:-1], lens)
    keep = (pos + 1) % k == 0
    offs = np.concatenate([[0], np.cumsum(lens // k)]).astype(np.int64)
    return dataclasses.replace(trace, block_offsets=offs, block_ids=trace.block_ids[keep],
                               block_tokens=block_tokens)


def workload_for(space: Space, block_tokens: int | None = None):
    """The space's :class:`kvmodel.Workload` (cached per process: the reuse profile is built
    once per trace and block size)."""
    spec, slo = space.workload, space.slo
    tkey = (repr(sorted(spec.items())), space.base_dir)
    if tkey not in _TRACES:
        _TRACES[tkey] = _load_trace(spec, space.base_dir)
    base = _TRACES[tkey]
    bt = block_tokens or base.block_tokens
    key = (tkey, bt, spec.get("request_rate"), slo["ttft_s"], slo["tpot_s"],
           tuple(spec.get(k) for k in LOAD_MODES))
    if key not in _WORKLOADS:
        if bt % base.block_tokens:
            raise ValueError(f"block_tokens={bt}: must be a multiple of the trace's "
                             f"{base.block_tokens}-token blocks")
        tr = base if bt == base.block_tokens else _coarsen(base, bt)
        _WORKLOADS[key] = kvmodel.Workload(tr, request_rate=spec.get("request_rate"),
                                           ttft_slo_s=slo["ttft_s"], tpot_slo_s=slo["tpot_s"],
                                           **{k: spec[k] for k in LOAD_MODES if k in spec})
    return _WORKLOADS[key]


# ---- configuration ---------------------------------------------------------------------------
# weight precisions a space may name: every format of the catalog, weight-only ones included
# (int4 / mxfp4 / nvfp4), except the accumulation-only fp32 and tf32
WEIGHT_PRECISIONS = tuple(sorted(set(BYTES_PER_ELEMENT) - {"fp32", "tf32"}))


def check_names(space: Space) -> None:
    """Raise :class:`SpaceError` naming the dimension when a choice or fixed value is not a
    known model / GPU / node / link / routing / sharing / policy, and
    :class:`kvmodel.workload.traces.TraceNotFoundError` when the space's trace cannot be found (so a run
    or a grid fails before its first trial)."""
    check_trace(space)
    known = {"model": kvmodel.list_models(), "gpu": kvmodel.list_entries("gpu"),
             "node": kvmodel.list_entries("node"), "nic": kvmodel.list_entries("link"),
             "pool_nic": kvmodel.list_entries("link"), "placement": ("inclusive", "exclusive"),
             "write_policy": ("through", "back"),
             **{k: tuple(reg) for k, reg in POLICY_DIMS.items()},
             "precision": WEIGHT_PRECISIONS, "pool_put_policy": PUT_POLICIES,
             "framework": kvmodel.list_entries("framework"),
             "spec_draft_model": kvmodel.list_models()}
    values = {k: [v] for k, v in space.fixed.items()}
    values |= {d.name: list(d.choices) for d in space.dims if d.choices is not None}
    for name, vals in values.items():
        for v in vals:
            if name in known and v not in known[name]:
                raise SpaceError(f"{space.name}: dimension {name!r}: unknown value {v!r}; "
                                 f"known: {sorted(known[name])}")
    _check_moe(space)


def _can_enable(space: Space, name: str) -> bool:
    """Whether DP attention / expert parallelism ``name`` can be on in some point (DP
    attention True, ep above 1)."""
    def on(v):
        return v is True if name == "attention_dp" else v > 1
    if name in space.fixed:
        return on(space.fixed[name])
    d = next((x for x in space.dims if x.name == name), None)
    if d is None:
        return False
    return any(on(v) for v in d.choices) if d.choices else d.high > 1


def _check_moe(space: Space) -> None:
    """DP attention and expert parallelism (:data:`MOE_DIMS`) only with MoE models: every
    model they can be on with (the ``when`` of their dimension, else all of the space's)."""
    models = ([space.fixed["model"]] if "model" in space.fixed
              else list(space.dim("model").choices or ()))
    for name in MOE_DIMS:
        if not _can_enable(space, name):
            continue
        d = next((x for x in space.dims if x.name == name), None)
        allowed = dict(d.when).get("model") if d is not None else None
        dense = [m for m in (allowed or models) if not kvmodel.get_model(m).is_moe]
        if dense:
            raise SpaceError(f"{space.name}: dimension {name!r} needs an MoE model; "
                             f"{dense} dense: make it conditional on the MoE models "
                             f"(when = {{ model = [...] }}) or drop it")


def _gpus_per_instance(c: dict) -> int:
    """GPUs of one instance: the EP group with DP attention, else the TP group."""
    return int(c.get("ep", 1) if c.get("attention_dp", False) else c.get("tp", 8))


def _per_node(c: dict) -> tuple[str, Any, int]:
    key = c.get("node") or default_node_for_gpu(c["gpu"])
    if key is None:
        raise ValueError(f"no node template carries gpu {c['gpu']!r}; fix dimension 'node'")
    node = kvmodel.get_node(key)
    if node.gpu != c["gpu"]:
        raise ValueError(f"node template {key!r} carries {node.gpu}, not {c['gpu']}")
    return key, node, max(1, node.gpus_per_node // _gpus_per_instance(c))


def _span(c: dict, node) -> int:
    """Whole nodes one instance spans (kvmodel.cluster._nodes_per_instance): an EP group with
    DP attention wider than a node several, else 1."""
    if not c.get("attention_dp", False):
        return 1
    return max(1, -(-_gpus_per_instance(c) // node.gpus_per_node))


def _speculative(p: dict) -> dict | None:
    """``Cluster.speculative`` from the spec_* dimensions (None: spec_method none or absent)."""
    method = p.get("spec_method", "none")
    if method == "none":
        return None
    spec = {"method": method, "k": int(p.get("spec_k", 1))}
    if "spec_acceptance" in p:
        spec["acceptance"] = p["spec_acceptance"]
    if method == "draft" and "spec_draft_model" in p:
        spec["draft_model"] = p["spec_draft_model"]
    return spec


def _cluster_kwargs(p: dict) -> tuple[dict, dict]:
    """Cluster keyword arguments from the dimension values; plus derived counts to record."""
    key, node, per_node = _per_node(p)
    kw = {k: p[k] for k in ("model", "gpu", "node", "precision", "framework", "instances", "tp",
                            "sharing", "routing", "epsilon", "nic", "eviction", "connector",
                            "attention_dp", "ep") if k in p}
    if _speculative(p) is not None:
        kw["speculative"] = _speculative(p)
    kw["hbm_cache_fraction"] = p.get("hbm_kv_fraction", 0.3)
    for dim, field_, scale in (("dram_GB_per_node", "dram_B", 1e9), ("cxl_GB_per_node", "cxl_B", 1e9),
                               ("ssd_TB_per_node", "ssd_B", 1e12)):
        if dim in p:  # per instance: x nodes it spans (a DP-attention group wider than a node)
            kw[field_] = p[dim] * scale * _span(p, node) / per_node
    derived = {"node": key, "instances_per_node": per_node,
               "gpus_per_instance": _gpus_per_instance(p)}
    n = int(p.get("instances", 8))
    if p.get("disaggregated", False):
        if n < 2:
            raise ValueError(f"disaggregated needs instances >= 2, got {n}")
        pre = min(max(round(p.get("prefill_share", 0.5) * n), 1), n - 1)
        kw |= {"prefill_instances": pre, "decode_instances": n - pre}
        derived |= {"prefill_instances": pre, "decode_instances": n - pre}
    pool = {f: p[d] * s for d, f, s in (("pool_servers", "servers", 1), ("pool_dram_GB", "dram_B", 1e9),
                                        ("pool_ssd_TB", "ssd_B", 1e12), ("pool_nic", "nic", None),
                                        ("pool_nics", "nics", 1)) if d in p and s is not None}
    pool |= {"nic": p["pool_nic"]} if "pool_nic" in p else {}
    pool |= {f: p[d] for d, f in (("pool_put_policy", "put_policy"),
                                  ("pool_put_admission", "put_admission"),
                                  ("pool_put_queue_limit", "put_queue_limit")) if d in p}
    routing_params = {prm.name: p[d] for d, (router, prm) in ROUTING_PARAM_DIMS.items()
                      if d in p and p.get("routing") == router}
    if routing_params:
        kw["routing_params"] = routing_params
    p2p = {f: p[d] * s for d, f, s in (("p2p_replication", "replication", 1),
                                       ("p2p_lookup_us", "lookup_latency_s", 1e-6)) if d in p}
    p2p |= {"placement": p["p2p_placement"]} if "p2p_placement" in p else {}
    kw |= {"pool": kvmodel.PoolSpec(**pool), "p2p": kvmodel.P2PSpec(**p2p)}
    return kw, derived


def _same(v):
    """A 0-d array back to a Python float (the scalar path keeps scalar fields)."""
    return float(v) if np.ndim(v) == 0 else v


# ---- evaluation ------------------------------------------------------------------------------
def _raw(r) -> dict:
    """The cluster result's fields as they are (arrays stay arrays, inf stays inf)."""
    return {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}


def _percentile(m: dict, space: Space) -> tuple[float, float]:
    return (m[_cl.TTFT_PERCENTILES[space.slo["ttft_percentile"]]],
            m[_cl.TPOT_PERCENTILES[space.slo["tpot_percentile"]]])


def max_rate_at_slo(c, w, space: Space, iters: int = 12):
    """Largest request rate whose TTFT/TPOT percentiles meet the space's SLOs
    (:func:`kvmodel.cluster.max_rate_at_slo` with the space's percentiles and targets)."""
    slo = space.slo
    return _cl.max_rate_at_slo(c, w, slo["ttft_percentile"], slo["tpot_percentile"],
                               slo["ttft_s"], slo["tpot_s"], iters=iters)


def _constraint_values(m: dict, space: Space) -> list:
    """Constraint values in :data:`CONSTRAINTS` order (<= 0 satisfied), scalars or arrays."""
    ttft, tpot = _percentile(m, space)
    slo = space.slo
    budget = space.budget.get("max_cost_per_hour")
    return [np.zeros(np.shape(m["stable"])), np.where(m["stable"], 0.0, 1.0),
            np.minimum(np.asarray(ttft) / slo["ttft_s"] - 1.0, BIG),
            np.minimum(np.asarray(tpot) / slo["tpot_s"] - 1.0, BIG),
            np.asarray(m["cost_usd_per_h"]) / budget - 1.0 if budget else
            np.full(np.shape(m["stable"]), -1.0),
            np.asarray(m.get("tier_utilisation", 0.0)) - 1.0]


def _violations(m: dict, space: Space) -> tuple[list[float], list[str]]:
    cons = [float(x) for x in _constraint_values(m, space)]
    ttft, tpot = _percentile(m, space)
    slo = space.slo
    reason = str(m["reason"])  # the instance's reasons already start with "unstable:"
    why = [] if m["stable"] else [reason if reason.startswith("unstable") else
                                  f"unstable: {reason}"]
    if m["stable"] and cons[2] > 0:
        why.append(f"TTFT {slo['ttft_percentile']} {ttft:.3g} s > SLO {slo['ttft_s']:g} s")
    if m["stable"] and cons[3] > 0:
        why.append(f"TPOT {slo['tpot_percentile']} {tpot:.3g} s > SLO {slo['tpot_s']:g} s")
    if cons[4] > 0:
        why.append(f"cost {m['cost_usd_per_h']:.4g} $/h > budget "
                   f"{space.budget['max_cost_per_hour']:g} $/h")
    if cons[5] > 0:
        why.append(f"tier path utilisation {m['tier_utilisation']:.2f} > 1 (write policy)")
    return cons, why


def _infeasible(space: Space, reason: str, derived: dict) -> Outcome:
    worst = tuple(0.0 if OBJECTIVES[k].direction == "maximize" else BIG for k in space.metrics)
    return Outcome(worst, (1.0,) + (0.0,) * (len(CONSTRAINTS) - 1), dict(derived), reason)


def _at(p: dict, i: int) -> dict:
    """Point ``i`` of a parameter dict whose vectorised values are flat arrays."""
    return {k: (v[i].item() if isinstance(v, np.ndarray) else v) for k, v in p.items()}


def _metrics(space: Space, p: dict) -> tuple[dict, Any, Any, Any]:
    """The cluster result's metrics for ``params`` p (scalars, or flat arrays in the
    vectorisable dimensions): (metrics, evaluated cluster, workload, real cluster)."""
    kw, derived = _cluster_kwargs(p)
    w = workload_for(space, p.get("block_tokens"))
    real = kvmodel.Cluster(**kw)
    c = _cl.inclusive_tiers(real, w) if p.get("placement") == "inclusive" else real
    r = kvmodel.evaluate(c, w)
    m = {k: v for k, v in _raw(r).items() if not isinstance(v, dict)} | derived
    m |= {f"hit_{k}": v for k, v in r.hit_ratio.items()} | _instance_options(r)
    if c is not real:
        m["cost_usd_per_h"] = _same(_cl.cost_per_hour(real))
        m["cost_usd_per_mtok"] = _same(np.minimum(_ratio(
            m["cost_usd_per_h"], np.asarray(m["output_tok_per_s"]) * 3600 / 1e6, math.inf),
            math.inf))
    if "write_policy" in p:
        inclusive = p.get("placement") == "inclusive"
        n_pts = max((np.size(v) for v in p.values() if isinstance(v, np.ndarray)), default=0)
        if n_pts:  # kvmodel.place is scalar: one call per point
            m["tier_utilisation"] = np.array([_cl.tier_utilisation(
                kvmodel.Cluster(**_cluster_kwargs(_at(p, i))[0]), w, p["write_policy"],
                inclusive) for i in range(n_pts)])
        else:
            m["tier_utilisation"] = _cl.tier_utilisation(real, w, p["write_policy"], inclusive)
    if {"throughput_at_slo", "requests_per_dollar_at_slo"} & set(space.metrics):
        if np.ndim(m["stable"]) == 0 and not m["stable"]:
            m["max_rate_at_slo"] = 0.0
        else:
            m["max_rate_at_slo"] = _same(np.where(m["stable"], max_rate_at_slo(c, w, space), 0.0))
    return m, c, w, real


def _instance_options(r) -> dict[str, Any]:
    """What DP attention and speculation do on the (decode-side) instance: the speculative
    TPOT factor and accepted tokens per step, the all-to-all's share of a step."""
    e = r.instances.get("decode", r.instances.get("instance"))
    out = {}
    if getattr(e, "speculative", None):
        out |= {"spec_tpot_factor": e.speculative["tpot_factor"],
                "spec_accepted_tokens": e.speculative["accepted_tokens"]}
    if getattr(e, "wide_ep", None):
        out["ep_alltoall_share"] = e.wide_ep["alltoall_share"]
    return out


def evaluate_point(space: Space, params: dict[str, Any]) -> Outcome:
    """Evaluate one configuration: ``params`` (the sampled dimensions) over ``space.fixed``."""
    p = dict(space.fixed) | dict(params)
    try:
        m, c, w, real = _metrics(space, p)
    except ValueError as exc:
        return _infeasible(space, f"does not fit: {exc}", _derived(p))
    except ArithmeticError as exc:  # a model failure is recorded as such, never as a result
        return _infeasible(space, f"evaluate() failed: {type(exc).__name__}: {exc}", _derived(p))
    m = {k: (_same(v) if isinstance(v, np.ndarray) else v) for k, v in m.items()}
    cons, why = _violations(m, space)
    values = tuple(float(OBJECTIVES[k].value(m, space, w)) for k in space.metrics)
    return Outcome(values, tuple(float(x) for x in cons), m, "; ".join(why))


def evaluate_columns(space: Space, params: dict[str, Any], n: int) -> tuple[np.ndarray,
                                                                           np.ndarray, str]:
    """Vectorised evaluation of ``n`` configurations: ``params`` maps dimensions to scalars
    (shared) or flat arrays of length n (only :data:`VECTOR_DIMS`). Returns objective values
    [n, len(space.metrics)], constraint values [n, len(CONSTRAINTS)] and, when the shared
    part cannot run at all, the reason (every point then violates the fit constraint)."""
    p = dict(space.fixed) | dict(params)
    try:
        m, c, w, real = _metrics(space, p)
    except (ValueError, ArithmeticError) as exc:
        out = _infeasible(space, f"does not fit: {exc}", {})
        return (np.tile(out.values, (n, 1)), np.tile(out.constraints, (n, 1)), out.reason)
    values = np.stack([np.broadcast_to(np.asarray(OBJECTIVES[k].value(m, space, w), float), (n,))
                       for k in space.metrics], axis=1)
    cons = np.stack([np.broadcast_to(np.asarray(x, float), (n,))
                     for x in _constraint_values(m, space)], axis=1)
    return values, cons, ""


def _derived(p: dict) -> dict:
    try:
        return _cluster_kwargs(p)[1]
    except ValueError:
        return {}


# dimensions whose values evaluate() takes as arrays (capacities, pool and P2P sizes)
VECTOR_DIMS = ("hbm_kv_fraction", "dram_GB_per_node", "cxl_GB_per_node", "ssd_TB_per_node",
               "pool_servers", "pool_dram_GB", "pool_ssd_TB", "pool_nics", "p2p_replication",
               "p2p_lookup_us")


def recorded_only(space: Space) -> list[str]:
    """Dimensions of the space that evaluate() does not model (kept in the study only)."""
    names = [d.name for d in space.dims] + list(space.fixed)
    return [n for n in names if not DIMENSIONS[n].modelled]
