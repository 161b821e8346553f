"""Search spaces as data: a TOML file (or the same dict) naming dimensions, fixed parts, workload,
SLOs, budget and objectives, validated once into a frozen :class:`Space`.

File layout (``schema_version = 1``; every table and key below is the complete set — unknown keys
are errors that name the table and key)::

    schema_version = 1
    name = "tier-sizing"
    description = "..."

    [fixed]                 # dimension values that are not searched (any dimension name)
    model = "llama-3.1-70b"
    gpu = "h100-sxm"

    [workload]
    trace = "mooncake:conversation"   # a path (relative to the file), mooncake:conversation,
                                      # mooncake:synthetic, or "synthetic" (see [workload.synthetic])
    request_rate = 3.4                # requests/s; omitted: the trace's own rate
    synthetic = { n_requests = 2000, seed = 1 }   # kvmodel.synthetic_trace keyword arguments

    [slo]
    ttft_s = 2.0
    ttft_percentile = "p99"           # mean | p90 | p99
    tpot_s = 0.1
    tpot_percentile = "p99"           # mean | p99

    [budget]
    max_cost_per_hour = 400.0         # $/h, optional

    [objective]
    metrics = ["goodput_per_dollar"]  # one name: single objective; several: Pareto

    [dims.dram_GB_per_node]           # a range ...
    range = [0, 4096]
    step = 256                        # optional; ints when range and step are ints
    log = false                       # optional
    [dims.sharing]                    # ... or a set of choices
    choices = ["none", "central_pool", "p2p"]
    [dims.p2p_replication]
    range = [1, 4]
    when = { sharing = "p2p" }        # conditional: sampled only when sharing is p2p
                                      # (a list value means "any of")

The ``[workload]`` table may also set the load (kvmodel.Workload fields, :data:`LOAD_MODES`):
``concurrency`` (closed loop of that many clients) or ``burst`` (that many prompts at once),
``think_time_s`` and ``session_mode = "closed"`` (a session's turn waits for the previous
one). They describe the demand, not the design, so they are options of the space, never
searched: a search over them would choose the easiest demand rather than the best cluster for
a given one (compare demands with one study each). With ``concurrency`` or ``burst`` the
``request_rate`` is not given (the clients set the load) and the grid evaluates point by point.

Routing parameters are dimensions named ``<router>_<param>`` (:data:`ROUTING_PARAM_DIMS`, from
the routing registry: ``dynamo_overlap_score_weight``, ``llmd_prefix_weight``,
``sglang_balance_abs_threshold``, ...). Each must be conditional on its router (``when =
{ routing = "dynamo" }``, or routing fixed to it) and goes to ``Cluster.routing_params``; each
distinct value replays the router over the trace once (a step keeps the tables few).

DP attention and expert parallelism (``attention_dp``, ``ep``) need an MoE model: with a dense
model among the space's models they must be conditional on the MoE ones (``when = { model =
[...] }``). Speculative decoding is ``spec_method`` (none | mtp | draft) with ``spec_k``,
``spec_acceptance`` and ``spec_draft_model`` sampled only when it is on (their ``when`` names
spec_method, or it is fixed).

Dimension names are the keys of :data:`DIMENSIONS`, each documented with what it maps to in
the model (a dimension may be declared ``modelled=False``: kept in the study, ignored by
``kvmodel.evaluate``; every built-in dimension is modelled).
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvmodel.base.schema import typed_table
from kvmodel.cluster._sharing import PUT_POLICIES
from kvmodel.policies import CONNECTOR, EVICTION, P2P_PLACEMENT, ROUTING, SHARING

__all__ = ["Dim", "Space", "DIMENSIONS", "BOUNDS", "load_space", "space_from_dict",
           "builtin_spaces", "SpaceError", "space_digest", "ROUTING_PARAM_DIMS", "LOAD_MODES",
           "SPEC_METHODS", "SPEC_DIMS", "MOE_DIMS"]

SPACES_DIR = Path(__file__).resolve().parent / "spaces"


class SpaceError(ValueError):
    """A malformed space; the message names the file, table and dimension."""


@dataclass(frozen=True)
class DimInfo:
    kind: type              # int, float, str or bool
    maps_to: str            # what the value drives in the model
    modelled: bool = True   # False: recorded in the study, no effect on evaluate()


DIMENSIONS: dict[str, DimInfo] = {
    "model": DimInfo(str, "Cluster.model (catalog name)"),
    "gpu": DimInfo(str, "Cluster.gpu"),
    "node": DimInfo(str, "Cluster.node (node template; must carry the chosen gpu, else the fit "
                         "constraint fails)"),
    "precision": DimInfo(str, "Cluster.precision (weights; KV fp8 with fp8/fp4/int8 weights)"),
    "framework": DimInfo(str, "Cluster.framework"),
    "instances": DimInfo(int, "Cluster.instances (colocated), or prefill + decode instances"),
    "tp": DimInfo(int, "Cluster.tp"),
    "disaggregated": DimInfo(bool, "P/D disaggregation on/off"),
    "prefill_share": DimInfo(float, "P:D split: prefill_instances = clamp(round(share x "
                                    "instances), 1, instances - 1), decode = the rest"),
    "hbm_kv_fraction": DimInfo(float, "Cluster.hbm_cache_fraction (share of each instance's HBM "
                                      "KV pool kept as prefix cache)"),
    "dram_GB_per_node": DimInfo(float, "Cluster.dram_B = GB x 1e9 / instances per node"),
    "cxl_GB_per_node": DimInfo(float, "Cluster.cxl_B = GB x 1e9 / instances per node"),
    "ssd_TB_per_node": DimInfo(float, "Cluster.ssd_B = TB x 1e12 / instances per node"),
    "block_tokens": DimInfo(int, "reuse granularity: the trace's hash chains coarsened to "
                                 "blocks of this many tokens (a multiple of the trace's block)"),
    "placement": DimInfo(str, "inclusive | exclusive: exclusive = evaluate()'s cumulative split; "
                              "inclusive = each lower tier only adds capacity beyond the tier "
                              "above (effective capacities passed to evaluate(), cost on the "
                              "real ones)"),
    "write_policy": DimInfo(str, "through | back: tier write traffic from kvmodel.place() -> "
                                 "the tier_bandwidth constraint (latencies unaffected)"),
    "eviction": DimInfo(str, f"Cluster.eviction: {' | '.join(EVICTION)} (admission); "
                             "non-LRU hit curves are exact replays "
                             "at a few capacities, interpolated (built once per policy, about "
                             "2-3 s on the Mooncake trace)"),
    "sharing": DimInfo(str, f"Cluster.sharing: {' | '.join(SHARING)}"),
    "connector": DimInfo(str, "Cluster.connector: a KV connector of kvmodel.policies.CONNECTOR "
                              "(hardware_db/connectors.toml; 'ideal' = bytes / path bandwidth)"),
    "pool_servers": DimInfo(int, "PoolSpec.servers"),
    "pool_dram_GB": DimInfo(float, "PoolSpec.dram_B (per server)"),
    "pool_ssd_TB": DimInfo(float, "PoolSpec.ssd_B (per server)"),
    "pool_nic": DimInfo(str, "PoolSpec.nic (link name)"),
    "pool_nics": DimInfo(int, "PoolSpec.nics (per server)"),
    "p2p_replication": DimInfo(int, "P2PSpec.replication"),
    "p2p_placement": DimInfo(str, f"P2PSpec.placement: {' | '.join(P2P_PLACEMENT)} (local "
                                  "share and hottest owner measured on the trace's peer traffic)"),
    "p2p_lookup_us": DimInfo(float, "P2PSpec.lookup_latency_s = us x 1e-6"),
    "nic": DimInfo(str, "Cluster.nic (instance NIC link: network speed for P2P and P/D)"),
    "routing": DimInfo(str, f"Cluster.routing: {' | '.join(ROUTING)} (closed forms: "
                            + ", ".join(f"{n} -> {e.closed_form}" for n, e in ROUTING.items()
                                        if e.closed_form != n) + ")"),
    "epsilon": DimInfo(float, "Cluster.epsilon (load bound of prefix_affinity_bounded; the "
                              "load-aware routings take their own parameters)"),
    "pool_put_policy": DimInfo(str, f"PoolSpec.put_policy: {' | '.join(PUT_POLICIES)} (admission "
                                    "of puts of new KV; dropped puts lose the hits they would "
                                    "have served)"),
    "pool_put_admission": DimInfo(float, "PoolSpec.put_admission (share of puts admitted under "
                                         "put_policy fraction)"),
    "pool_put_queue_limit": DimInfo(int, "PoolSpec.put_queue_limit (puts queued at a pool server "
                                         "beyond which put_policy throttle drops new ones)"),
    "attention_dp": DimInfo(bool, "Cluster.attention_dp: DP attention with wide expert "
                                  "parallelism, each instance an EP group of ep GPUs (ep / tp "
                                  "attention ranks); MoE models only"),
    "ep": DimInfo(int, "Cluster.ep: with attention_dp the GPUs of each instance's EP group (a "
                       "multiple of tp), else experts split inside the TP group (divides tp); "
                       "MoE models only"),
    "spec_method": DimInfo(str, "Cluster.speculative['method']: none (off) | mtp | draft"),
    "spec_k": DimInfo(int, "Cluster.speculative['k']: drafted tokens per verify step "
                           "(sampled only under spec_method mtp or draft)"),
    "spec_acceptance": DimInfo(float, "Cluster.speculative['acceptance'] per drafted token (mtp "
                                      "without it: the calibration's mtp_acceptance; draft "
                                      "needs it)"),
    "spec_draft_model": DimInfo(str, "Cluster.speculative['draft_model']: a catalog model "
                                     "(spec_method draft only)"),
}
#: spec_method values; dimensions that configure speculation (need spec_method mtp or draft)
SPEC_METHODS = ("none", "mtp", "draft")
SPEC_DIMS = ("spec_k", "spec_acceptance", "spec_draft_model")
#: dimensions that need an MoE model (DP attention, expert parallelism)
MOE_DIMS = ("attention_dp", "ep")


def _routing_param_dims() -> dict[str, tuple[str, Any]]:
    """``<router>_<param>`` -> (router, registry Param) for every numeric parameter of a routing
    entry (not its seed, nor epsilon: the ``epsilon`` dimension)."""
    out = {}
    for router, entry in ROUTING.items():
        for prm in entry.params:
            if prm.kind in (int, float) and prm.name not in ("seed", "epsilon"):
                out[f"{router}_{prm.name}"] = (router, prm)
    return out


#: routing-parameter dimensions: name -> (router, registry Param); a value goes to
#: ``Cluster.routing_params`` when that router is the routing (its ``when`` must say so)
ROUTING_PARAM_DIMS = _routing_param_dims()
for _name, (_router, _prm) in ROUTING_PARAM_DIMS.items():
    DIMENSIONS[_name] = DimInfo(_prm.kind, f"Cluster.routing_params[{_prm.name!r}] of routing "
                                           f"{_router!r}: {_prm.description} ({_prm.unit}); "
                                           f"sampled only when routing = {_router!r}")

# Allowed values (inclusive) of the numeric dimensions. Lower bounds are physical (a count is
# >= 1, a capacity or latency >= 0, a share in [0, 1]); upper bounds lie far beyond any real
# deployment and keep every value far from float overflow in the model and in Optuna's Decimal
# step arithmetic (range = [0, 1e300] raised decimal.InvalidOperation there).
BOUNDS: dict[str, tuple[float, float]] = {
    "instances": (1, 1024), "tp": (1, 64), "prefill_share": (0.0, 1.0),
    "hbm_kv_fraction": (0.0, 1.0), "dram_GB_per_node": (0.0, 1e6), "cxl_GB_per_node": (0.0, 1e6),
    "ssd_TB_per_node": (0.0, 1e4), "block_tokens": (1, 1 << 20), "pool_servers": (1, 1024),
    "pool_dram_GB": (0.0, 1e6), "pool_ssd_TB": (0.0, 1e4), "pool_nics": (1, 64),
    "p2p_replication": (1, 64), "p2p_lookup_us": (0.0, 1e6), "epsilon": (0.0, 100.0),
    "pool_put_admission": (1e-6, 1.0), "pool_put_queue_limit": (1, 1 << 20),
    "ep": (1, 1024), "spec_k": (1, 16), "spec_acceptance": (0.0, 1.0),
}
# routing parameters: the registry's range (an open lower bound moved up by 1e-12; no upper
# bound: 1e6, far beyond any weight, threshold or time the policies use)
BOUNDS |= {n: ((p.low or 0.0) + (1e-12 if p.low_open else 0.0) if p.kind is float
               else int(p.low or 0) + int(p.low_open), 1e6 if p.high is None else p.high)
           for n, (_, p) in ROUTING_PARAM_DIMS.items()}
# Categorical dimensions whose values are policy names: allowed values are the registry's
POLICY_DIMS = {"routing": ROUTING, "sharing": SHARING, "eviction": EVICTION,
               "p2p_placement": P2P_PLACEMENT, "connector": CONNECTOR}
MAX_STEPS = 1e15   # (high - low) / step beyond this: Optuna's Decimal arithmetic breaks down

_TOP_KEYS = {"schema_version", "name", "description", "fixed", "workload", "slo", "budget",
             "objective", "dims"}
_WORKLOAD_KEYS = {"trace": str, "request_rate": float, "synthetic": dict, "concurrency": int,
                  "burst": int, "think_time_s": float, "session_mode": str}
#: [workload] keys of the closed-loop / burst / session modes (kvmodel.Workload fields): part
#: of the workload, not of the design, so options of a space rather than dimensions (a search
#: over them would pick the easiest demand instead of the best cluster for a given one)
LOAD_MODES = ("concurrency", "burst", "think_time_s", "session_mode")
_SLO_KEYS = {"ttft_s": float, "ttft_percentile": str, "tpot_s": float, "tpot_percentile": str}
_BUDGET_KEYS = {"max_cost_per_hour": float}
_OBJECTIVE_KEYS = {"metrics": list}
_DIM_KEYS = {"range", "step", "log", "choices", "when"}
# kvmodel.synthetic_trace keyword arguments: (kind, low, high); arrival is "poisson" | "bursty"
_SYNTHETIC: dict[str, tuple] = {
    "n_requests": (int, 1, 1_000_000), "seed": (int, 0, 2**63 - 1), "arrival": (str,),
    "rate_per_s": (float, 1e-9, 1e6), "burst_cv": (float, 1e-3, 1e3),
    "n_system_prompts": (int, 1, 1_000_000), "system_prompt_tokens": (int, 0, 1_000_000),
    "zipf_alpha": (float, 0.0, 100.0), "session_fraction": (float, 0.0, 1.0),
    "turns_mean": (float, 1.0, 1e3), "think_time_s": (float, 0.0, 1e6),
    "user_tokens_mean": (float, 1.0, 1e6), "output_tokens_mean": (float, 1.0, 1e6),
    "block_tokens": (int, 1, 1 << 20),
}
TTFT_PERCENTILES = ("mean", "p90", "p99")
TPOT_PERCENTILES = ("mean", "p99")


@dataclass(frozen=True)
class Dim:
    """One searched dimension: a range ``[low, high]`` (int or float, optional step / log) or a
    tuple of ``choices``; ``when`` maps parent dimensions to the values that activate it."""
    name: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple | None = None
    when: tuple[tuple[str, tuple], ...] = ()

    @property
    def is_int(self) -> bool:
        return self.choices is None and DIMENSIONS[self.name].kind is int

    def active(self, params: dict[str, Any]) -> bool:
        """True when every parent named in ``when`` is set to one of its listed values."""
        return all(p in params and params[p] in vals for p, vals in self.when)

    def grid_count(self, n_float: int = 5) -> int:
        """``len(self.grid_values(n_float))``, computed without building the list."""
        if self.choices is not None:
            return len(self.choices)
        if self.step is not None:
            return int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        if self.is_int:
            return int(self.high) - int(self.low) + 1
        return n_float

    def grid_values(self, n_float: int = 5) -> list:
        """The values a grid visits: the choices, every step, or ``n_float`` points."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is not None:
            k = int(math.floor((self.high - self.low) / self.step + 1e-9))
            vals = [self.low + i * self.step for i in range(k + 1)]
        elif self.is_int:
            vals = list(range(int(self.low), int(self.high) + 1))
        elif self.log:
            r = (self.high / self.low) ** (1 / max(n_float - 1, 1))
            vals = [self.low * r ** i for i in range(n_float)]
        else:
            vals = [self.low + (self.high - self.low) * i / max(n_float - 1, 1)
                    for i in range(n_float)]
        return [int(v) if self.is_int else float(v) for v in vals]


@dataclass(frozen=True)
class Space:
    """A validated search space (see the module docstring for the file format)."""
    name: str
    dims: tuple[Dim, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    slo: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, float] = field(default_factory=dict)
    metrics: tuple[str, ...] = ("goodput_per_dollar",)
    description: str = ""
    base_dir: str = "."

    def dim(self, name: str) -> Dim:
        return next(d for d in self.dims if d.name == name)

    def grid_size(self, n_float: int = 5) -> int:
        return math.prod(d.grid_count(n_float) for d in self.dims)

    @property
    def digest(self) -> str:
        """sha256 of the space's canonical content (see :func:`space_digest`)."""
        return space_digest(self)


def space_digest(space: Space) -> str:
    """sha256 (hex) of what a trial's result depends on: dimensions (in order), fixed values,
    workload, SLOs, budget and objectives -- not the name, description or file location."""
    content = {"dims": [[d.name, d.low, d.high, d.step, d.log, d.choices, d.when]
                        for d in space.dims],
               "fixed": space.fixed, "workload": space.workload, "slo": space.slo,
               "budget": space.budget, "metrics": space.metrics}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def builtin_spaces() -> list[str]:
    """Names of the example spaces shipped with the package."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.toml"))


def load_space(space: "str | Path | dict | Space") -> Space:
    """A :class:`Space` from a file path, a built-in name (:func:`builtin_spaces`), a dict in
    the file's layout, or a Space (returned as is). Raises :class:`SpaceError` naming the file
    and the offending table / dimension."""
    if isinstance(space, Space):
        return space
    if isinstance(space, dict):
        return space_from_dict(space, "<dict>", ".")
    p = Path(space)
    if not p.exists() and (SPACES_DIR / f"{space}.toml").exists():
        p = SPACES_DIR / f"{space}.toml"
    if not p.exists():
        raise SpaceError(f"space {str(space)!r}: no such file and not a built-in space "
                         f"(built-in: {', '.join(builtin_spaces())})")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{p}: not valid TOML: {exc}") from None
    return space_from_dict(data, str(p), str(p.resolve().parent))


def _typed(table: Any, schema: dict, where: str) -> dict:
    return typed_table(table, schema, where, SpaceError)


def _number(v: Any, where: str, lo: float, hi: float, kind: type = float) -> Any:
    """``v`` if it is a finite ``kind`` number in [lo, hi] (an int where a float is wanted is
    converted), else SpaceError naming ``where``, the value and the allowed range."""
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v) if abs(v) < 2**1000 else math.inf
    if not isinstance(v, kind) or isinstance(v, bool) or not math.isfinite(v) \
            or not lo <= v <= hi:
        raise SpaceError(f"{where} = {v!r}: must be a finite {kind.__name__} in [{lo:g}, {hi:g}]")
    return v


def _value(name: str, v: Any, where: str) -> Any:
    """Check one value against the dimension's kind and its :data:`BOUNDS`."""
    kind = DIMENSIONS[name].kind
    if name in BOUNDS:
        return _number(v, f"{where}: dimension {name!r}", *BOUNDS[name], kind=kind)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise SpaceError(f"{where}: dimension {name!r} takes {kind.__name__} values, got {v!r}")
    if name in POLICY_DIMS and v not in POLICY_DIMS[name]:
        raise SpaceError(f"{where}: dimension {name!r}: unknown value {v!r}; registered: "
                         f"{', '.join(POLICY_DIMS[name])}")
    if name == "spec_method" and v not in SPEC_METHODS:
        raise SpaceError(f"{where}: dimension {name!r}: unknown value {v!r}; allowed: "
                         f"{', '.join(SPEC_METHODS)}")
    if name == "pool_put_policy" and v not in PUT_POLICIES:
        raise SpaceError(f"{where}: dimension {name!r}: unknown value {v!r}; allowed: "
                         f"{', '.join(PUT_POLICIES)}")
    return v


def _dim(name: str, t: Any, where: str) -> Dim:
    """Validate one ``[dims.NAME]`` table."""
    if name not in DIMENSIONS:
        raise SpaceError(f"{where}: unknown dimension {name!r}; known: {sorted(DIMENSIONS)}")
    if not isinstance(t, dict):
        raise SpaceError(f"{where}: dimension {name!r} must be a table with range or choices")
    bad = set(t) - _DIM_KEYS
    if bad:
        raise SpaceError(f"{where}: dimension {name!r}: unknown key(s) {sorted(bad)}; "
                         f"allowed: {sorted(_DIM_KEYS)}")
    when = _when(name, t.get("when", {}), where)
    if ("range" in t) == ("choices" in t):
        raise SpaceError(f"{where}: dimension {name!r}: give exactly one of range or choices")
    if "choices" in t:
        ch = t["choices"]
        if not isinstance(ch, list) or not ch or len(set(map(repr, ch))) != len(ch):
            raise SpaceError(f"{where}: dimension {name!r}: choices must be a non-empty list "
                             f"of distinct values")
        extra = set(t) - {"choices", "when"}
        if extra:
            raise SpaceError(f"{where}: dimension {name!r}: {sorted(extra)} apply to ranges only")
        return Dim(name, choices=tuple(_value(name, v, where) for v in ch), when=when)
    return _range_dim(name, t, when, where)


def _range_dim(name: str, t: dict, when: tuple, where: str) -> Dim:
    kind = DIMENSIONS[name].kind
    r = t["range"]
    if kind not in (int, float):
        raise SpaceError(f"{where}: dimension {name!r} is categorical; use choices")
    if (not isinstance(r, list) or len(r) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r)):
        raise SpaceError(f"{where}: dimension {name!r}: range must be [low, high] numbers")
    lo, hi = (_value(name, x, where) for x in r)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise SpaceError(f"{where}: dimension {name!r}: range {r} needs low <= high, finite")
    step, log = t.get("step"), t.get("log", False)
    if step is not None:
        _number(step, f"{where}: dimension {name!r}: step", 0.0, 1e12)
        if step <= 0 or (hi - lo) / step > MAX_STEPS:
            raise SpaceError(f"{where}: dimension {name!r}: step = {step!r} must be > 0 and at "
                             f"least (high - low) / {MAX_STEPS:g}")
    if not isinstance(log, bool) or (log and (lo <= 0 or step is not None)):
        raise SpaceError(f"{where}: dimension {name!r}: log = true needs low > 0 and no step")
    if kind is int and step is not None and step != int(step):
        raise SpaceError(f"{where}: dimension {name!r}: integer dimension needs an integer step")
    return Dim(name, lo, hi, step, log, None, when)


def _when(name: str, w: Any, where: str) -> tuple:
    if not isinstance(w, dict):
        raise SpaceError(f"{where}: dimension {name!r}: when must be a table parent = value(s)")
    out = []
    for parent, vals in w.items():
        if parent not in DIMENSIONS:
            raise SpaceError(f"{where}: dimension {name!r}: when names unknown dimension "
                             f"{parent!r}")
        vals = tuple(vals) if isinstance(vals, list) else (vals,)
        out.append((parent, tuple(_value(parent, v, f"{where} when") for v in vals)))
    return tuple(out)


def space_from_dict(data: dict, where: str = "<dict>", base_dir: str = ".") -> Space:
    """Validate a space given in the file's layout (see the module docstring)."""
    if not isinstance(data, dict):
        raise SpaceError(f"{where}: expected a table")
    bad = set(data) - _TOP_KEYS
    if bad:
        raise SpaceError(f"{where}: unknown top-level key(s) {sorted(bad)}; "
                         f"allowed: {sorted(_TOP_KEYS)}")
    if data.get("schema_version", 1) != 1:
        raise SpaceError(f"{where}: schema_version={data['schema_version']!r}; supported: 1")
    dims = tuple(_dim(n, t, f"{where}: [dims.{n}]") for n, t in _table(data, "dims", where).items())
    fixed = {k: _value(k, v, f"{where}: [fixed].{k}") if k in DIMENSIONS else _unknown_fixed(k, where)
             for k, v in _table(data, "fixed", where).items()}
    _check_cross(dims, fixed, where)
    workload = _workload(_table(data, "workload", where), where)
    metrics = _metrics(_table(data, "objective", where), where)
    rated = {"throughput_at_slo", "requests_per_dollar_at_slo"} & set(metrics)
    if rated and ("concurrency" in workload or "burst" in workload):
        raise SpaceError(f"{where}: [objective].metrics {sorted(rated)} search the request "
                         f"rate; a closed-loop or burst [workload] sets no rate")
    return Space(name=str(data.get("name", Path(where).stem)), dims=dims, fixed=fixed,
                 workload=workload, slo=_slo(_table(data, "slo", where), where),
                 budget=_budget(_table(data, "budget", where), where), metrics=metrics,
                 description=str(data.get("description", "")), base_dir=base_dir)


def _table(data: dict, key: str, where: str) -> dict:
    t = data.get(key, {})
    if not isinstance(t, dict):
        raise SpaceError(f"{where}: [{key}] must be a table")
    return t


def _unknown_fixed(k: str, where: str):
    raise SpaceError(f"{where}: [fixed]: unknown dimension {k!r}; known: {sorted(DIMENSIONS)}")


def _check_cross(dims: tuple[Dim, ...], fixed: dict, where: str) -> None:
    names = [d.name for d in dims]
    for n in names:
        if n in fixed:
            raise SpaceError(f"{where}: dimension {n!r} is both searched and in [fixed]")
    for d in dims:
        for parent, _ in d.when:
            if parent not in names and parent not in fixed:
                raise SpaceError(f"{where}: [dims.{d.name}] when: parent {parent!r} is neither "
                                 f"a dimension nor fixed")
            if parent in names and names.index(parent) > names.index(d.name):
                raise SpaceError(f"{where}: [dims.{d.name}] when: parent {parent!r} must be "
                                 f"declared before it")
    for k in ("model", "gpu"):
        if k not in fixed and k not in names:
            raise SpaceError(f"{where}: dimension {k!r} must be fixed or searched")
    _check_routing_params(dims, fixed, where)
    _check_spec_dims(dims, fixed, where)
    _check_mtp(dims, fixed, where)


def _check_mtp(dims: tuple[Dim, ...], fixed: dict, where: str) -> None:
    """spec_method ``mtp`` only with models that ship MTP layers (``ModelSpec.mtp_layers``):
    every model it can be on with (the ``when`` of spec_method, else all of the space's)."""
    from kvmodel.catalog.models import get_model
    d = next((x for x in dims if x.name == "spec_method"), None)
    if "mtp" not in ((fixed.get("spec_method"),) if d is None else tuple(d.choices or ())):
        return
    md = next((x for x in dims if x.name == "model"), None)
    models = [fixed["model"]] if "model" in fixed else list(md.choices or ()) if md else []
    allowed = dict(d.when).get("model") if d is not None else None
    none = [m for m in (allowed or models) if not get_model(m).mtp_layers]
    if none:
        raise SpaceError(f"{where}: spec_method 'mtp' needs a model with MTP layers "
                         f"(mtp_layers > 0); {none} have none: make spec_method conditional "
                         f"on the MTP models (when = {{ model = [...] }}) or drop 'mtp'")


def _check_spec_dims(dims: tuple[Dim, ...], fixed: dict, where: str) -> None:
    """A speculation parameter (:data:`SPEC_DIMS`) is sampled only when speculation is on:
    spec_method fixed to mtp / draft (draft for spec_draft_model), or ``when = { spec_method =
    [...] }`` naming only those."""
    for name in SPEC_DIMS:
        on = ("draft",) if name == "spec_draft_model" else ("mtp", "draft")
        d = next((x for x in dims if x.name == name), None)
        if d is None:
            ok = name not in fixed or fixed.get("spec_method") in on
        else:
            cond = dict(d.when).get("spec_method")
            ok = fixed.get("spec_method") in on or (cond is not None and set(cond) <= set(on))
        if not ok:
            table = f"[dims.{name}]" if d is not None else f"[fixed].{name}"
            raise SpaceError(f"{where}: {table}: a speculative-decoding parameter: fix "
                             f"spec_method to one of {list(on)} or add when = {{ spec_method = "
                             f"{list(on)} }}")


def _check_routing_params(dims: tuple[Dim, ...], fixed: dict, where: str) -> None:
    """A routing-parameter dimension is sampled only when its router is the routing: routing
    fixed to it, or ``when = { routing = "<router>" }``; a fixed one needs its router fixed."""
    for d in dims:
        if d.name not in ROUTING_PARAM_DIMS:
            continue
        router = ROUTING_PARAM_DIMS[d.name][0]
        cond = dict(d.when).get("routing")
        if fixed.get("routing") != router and cond != (router,):
            raise SpaceError(f"{where}: [dims.{d.name}]: a parameter of routing {router!r}: "
                             f"fix routing = {router!r} or add when = {{ routing = "
                             f"\"{router}\" }}")
    for k in fixed:
        if k in ROUTING_PARAM_DIMS and fixed.get("routing") != ROUTING_PARAM_DIMS[k][0]:
            raise SpaceError(f"{where}: [fixed].{k}: a parameter of routing "
                             f"{ROUTING_PARAM_DIMS[k][0]!r}; fix routing to it as well")


def _workload(t: dict, where: str) -> dict:
    w = _typed(t, _WORKLOAD_KEYS, f"{where}: [workload]")
    if "trace" not in w:
        raise SpaceError(f"{where}: [workload].trace: missing (a path, mooncake:conversation, "
                         f"mooncake:synthetic or synthetic)")
    if "request_rate" in w:
        _number(w["request_rate"], f"{where}: [workload].request_rate (requests/s)", 1e-9, 1e6)
    if "synthetic" in w:
        w["synthetic"] = _synthetic(w["synthetic"], f"{where}: [workload].synthetic")
    _load_mode(w, where)
    return w


def _load_mode(w: dict, where: str) -> None:
    """Check the closed-loop / burst / session options of ``[workload]`` (:data:`LOAD_MODES`)."""
    for k in ("concurrency", "burst"):
        if k in w:
            _number(w[k], f"{where}: [workload].{k} (count)", 1, 10**7, kind=int)
    if "concurrency" in w and "burst" in w:
        raise SpaceError(f"{where}: [workload]: give at most one of concurrency or burst")
    if ("concurrency" in w or "burst" in w) and "request_rate" in w:
        raise SpaceError(f"{where}: [workload].request_rate: an open-loop rate; not with "
                         f"{'concurrency' if 'concurrency' in w else 'burst'} (the load then "
                         f"comes from the clients)")
    if "think_time_s" in w:
        _number(w["think_time_s"], f"{where}: [workload].think_time_s (seconds)", 0.0, 1e6)
    if w.get("session_mode", "open") not in ("open", "closed"):
        raise SpaceError(f"{where}: [workload].session_mode={w['session_mode']!r}; allowed: "
                         f"'open', 'closed'")


def _synthetic(t: dict, where: str) -> dict:
    """Check the kvmodel.synthetic_trace keyword arguments (names, kinds, ranges)."""
    bad = set(t) - set(_SYNTHETIC)
    if bad:
        raise SpaceError(f"{where}: unknown key(s) {sorted(bad)}; allowed: {sorted(_SYNTHETIC)}")
    for k, v in t.items():
        spec = _SYNTHETIC[k]
        if spec[0] is str and v not in ("poisson", "bursty"):
            raise SpaceError(f"{where}.{k} = {v!r}: allowed: 'poisson', 'bursty'")
        if spec[0] is not str:
            _number(v, f"{where}.{k}", spec[1], spec[2], kind=spec[0])
    return dict(t)


def _slo(t: dict, where: str) -> dict:
    s = {"ttft_s": 2.0, "ttft_percentile": "p99", "tpot_s": 0.1, "tpot_percentile": "p99"}
    s |= _typed(t, _SLO_KEYS, f"{where}: [slo]")
    if s["ttft_percentile"] not in TTFT_PERCENTILES:
        raise SpaceError(f"{where}: [slo].ttft_percentile={s['ttft_percentile']!r}; "
                         f"allowed: {TTFT_PERCENTILES}")
    if s["tpot_percentile"] not in TPOT_PERCENTILES:
        raise SpaceError(f"{where}: [slo].tpot_percentile={s['tpot_percentile']!r}; "
                         f"allowed: {TPOT_PERCENTILES}")
    for k in ("ttft_s", "tpot_s"):
        _number(s[k], f"{where}: [slo].{k} (seconds)", 1e-9, 1e6)
    return s


def _budget(t: dict, where: str) -> dict:
    b = _typed(t, _BUDGET_KEYS, f"{where}: [budget]")
    if "max_cost_per_hour" in b:
        _number(b["max_cost_per_hour"], f"{where}: [budget].max_cost_per_hour ($/h)", 1e-9, 1e12)
    return b


def _metrics(t: dict, where: str) -> tuple[str, ...]:
    from kvmodel.search._objectives import OBJECTIVES
    m = _typed(t, _OBJECTIVE_KEYS, f"{where}: [objective]").get("metrics", ["goodput_per_dollar"])
    if not m or any(x not in OBJECTIVES for x in m) or len(set(m)) != len(m):
        raise SpaceError(f"{where}: [objective].metrics={m!r}: distinct names from "
                         f"{sorted(OBJECTIVES)}")
    return tuple(m)
