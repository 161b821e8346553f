"""Schema-checked loading of ``hardware_db`` TOML files into plain validated values.

The schema of each section is a mapping field -> :class:`Field`. Validation happens once per file;
errors are :class:`HardwareDBError` naming the file, the entry and the field.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from kvmodel.base.units import UNITS, dimension_of, to_si

SCHEMA_VERSION = 1
KINDS = ("datasheet", "measured", "derived", "assumed")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "fp6", "fp4")
_QTY_KEYS = {"value", "unit", "kind", "source", "derivation", "reason", "date", "note"}
_CURVE_KEYS = {"x", "x_unit", "y", "y_unit", "kind", "source", "derivation", "reason", "note"}
_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


class HardwareDBError(ValueError):
    """A ``hardware_db`` file or entry that breaks the schema."""


def typed_table(table: Any, schema: Mapping[str, type], where: str,
                error: type[ValueError] = ValueError) -> dict[str, Any]:
    """Check a TOML table against ``{key: type}``: unknown keys, wrong types (a bool is not a
    number; an int is accepted, and converted, where a float is wanted) raise ``error`` naming
    ``where`` and the key. Used by the configuration files (cluster, search spaces)."""
    if not isinstance(table, dict):
        raise error(f"{where}: expected a table")
    unknown = set(table) - set(schema)
    if unknown:
        raise error(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(schema)}")
    out = {}
    for k, v in table.items():
        want = schema[k]
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
            raise error(f"{where}.{k}: expected {want.__name__}, got {v!r}")
        out[k] = v
    return out


@dataclass(frozen=True)
class Quantity:
    """One sourced number: ``si`` is the value in SI units; the rest is provenance."""

    si: float
    value: float
    unit: str
    kind: str
    source: str
    derivation: str = ""
    reason: str = ""
    date: str = ""
    note: str = ""


@dataclass(frozen=True)
class Curve:
    """A sourced curve (e.g. effective bandwidth vs transfer size), SI on both axes."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    x_unit: str
    y_unit: str
    kind: str
    source: str
    note: str = ""


@dataclass(frozen=True)
class Field:
    """Schema of one field: ``type`` is quantity | precisions | curve | str | int | bool | strlist."""

    type: str
    dim: str = ""
    required: bool = True
    positive: bool = True
    choices: tuple[str, ...] = ()
    ref: str = ""


def _q(dim: str, required: bool = True, positive: bool = True) -> Field:
    return Field("quantity", dim, required, positive)


def _s(required: bool = True, choices: tuple[str, ...] = (), ref: str = "") -> Field:
    return Field("str", required=required, choices=choices, ref=ref)


def _i(required: bool = True, positive: bool = True) -> Field:
    return Field("int", required=required, positive=positive)


# software on the KV path (hardware_db/connectors.toml): "ideal" is bytes / path bandwidth only
CONNECTOR_FAMILIES = ("ideal", "vllm-offload", "lmcache", "mooncake", "nixl", "sglang-hicache",
                      "dynamo-kvbm")

# where a framework's prefix cache keeps recurrent-state snapshots of hybrid models
# (kvmodel.catalog.models.SNAPSHOT_MODES documents each)
HYBRID_PREFIX_CACHES = ("block", "align", "interval", "node", "none")
#: a framework's ``kv_cache_auto``: what its default KV-cache dtype follows. ``quantised``: an
#: FP8 cache next to fp8/fp4/int8 checkpoints (TensorRT-LLM with NVIDIA ModelOpt checkpoints,
#: whose kv_cache_quant_algo is FP8); ``model_dtype``: the model's 16-bit dtype whatever the
#: weights (SGLang's ``kv_cache_dtype="auto"``)
KV_CACHE_AUTO = ("quantised", "model_dtype")

# shared file systems and object stores reached over the network (tiers "file" and "object")
STORAGE_FAMILIES = ("file", "object")

SCHEMAS: dict[str, dict[str, Field]] = {
    "gpu": {
        "name": _s(), "vendor": _s(choices=("nvidia", "amd", "huawei")), "architecture": _s(),
        "hbm_capacity": _q("bytes"), "hbm_bandwidth": _q("bandwidth"),
        "peak_flops": Field("precisions", "compute"),
        "achieved_matmul_flops": Field("precisions", "compute", required=False),
        # measured attention-kernel FLOP/s (replaces peak x matmul efficiency x the global
        # attention_efficiency_factor where the vendor's attention kernel has its own figure)
        "achieved_attention_flops": Field("precisions", "compute", required=False),
        # measured fused-MoE FLOP/s (routing, activation quantisation, grouped GEMMs, finalize
        # timed together): caps the expert GEMMs' rate of weights in that precision
        "achieved_moe_flops": Field("precisions", "compute", required=False),
        # the fused MoE's FLOP/s over achieved_moe_flops by routed rows per active expert (a
        # curve over tokens x top-k / experts hit: tile-quantised expert GEMMs and weight
        # streaming at few rows); absent: 1 at every size
        "fused_moe_rows_efficiency": Field("curve", required=False),
        # measured all-reduce bus bandwidth by group size (a curve over the GPU count): replaces
        # scale_up_bandwidth x collective_bandwidth_efficiency for collectives where given
        # (fully connected meshes: a small group reaches only its own peer links)
        "allreduce_bandwidth": Field("curve", required=False),
        # attention FLOP/s by query-key head dim (a curve over the head dim, 1 at the head dim
        # the attention rate was measured at, 128): scales the attention rate of models whose
        # head dim differs (gpt-oss: 64); absent: 1 at every head dim
        "attention_head_dim_efficiency": Field("curve", required=False),
        # prefill attention FLOP/s of sliding-window layers over the full-causal rate, by window
        "sliding_window_attention_efficiency": Field("curve", required=False),
        # host (CPU) time per scheduled sequence per step of a Python serving executor on this
        # GPU's host system, overlapped with the GPU step: a step lasts at least batch x this
        "host_sequence_time": _q("time", required=False),
        "matmul_efficiency": _q("dimensionless", required=False),
        "achieved_hbm_bandwidth": _q("bandwidth", required=False),
        "hbm_efficiency": _q("dimensionless", required=False),
        "scale_up_link": _s(ref="link"), "scale_up_bandwidth": _q("bandwidth"),
        "host_link": _s(ref="link"), "host_bandwidth": _q("bandwidth"),
        "tdp": _q("power"), "form_factor": _s(required=False), "note": _s(required=False),
    },
    "link": {
        "name": _s(), "family": _s(choices=("pcie", "nvlink", "nvlink-c2c", "infinity-fabric", "hccs",
                                            "cxl", "infiniband", "roce", "ethernet", "tcp")),
        "bandwidth": _q("bandwidth"), "latency": _q("time"),
        "duplex": _s(choices=("full", "half")),
        "achieved_bandwidth": _q("bandwidth", required=False),
        "size_bandwidth": Field("curve", required=False),
        "multi_nic_bandwidth": Field("curve", required=False),
        "queue_depth": _q("count", required=False),
        "bidirectional_efficiency": _q("dimensionless", required=False),
        "kernel_copy_efficiency": _q("dimensionless", required=False),
        "kernel_copy_latency": _q("time", required=False),
        "tcp_link": _s(required=False, ref="link"), "note": _s(required=False),
    },
    "memory": {
        "name": _s(), "family": _s(choices=("ddr4", "ddr5", "lpddr5x", "cxl", "nvme") + STORAGE_FAMILIES),
        "capacity": _q("bytes"), "read_bandwidth": _q("bandwidth"), "write_bandwidth": _q("bandwidth"),
        "latency": _q("time"), "channels_per_socket": _q("count", required=False),
        "read_bandwidth_per_socket": _q("bandwidth", required=False),
        "gds_read_bandwidth": _q("bandwidth", required=False),
        "gds_write_bandwidth": _q("bandwidth", required=False),
        "queue_depth": _q("count", required=False),
        # file / object tiers (STORAGE_FAMILIES): per-request open / lookup / first-byte cost and
        # the network the client reaches the service over (both required there)
        "metadata_latency": _q("time", required=False, positive=False),
        "client_link": _s(required=False, ref="link"),
        "price_per_gb": _q("money_per_byte"), "note": _s(required=False),
    },
    "node": {
        "name": _s(), "gpu": _s(ref="gpu"), "gpus_per_node": _q("count"), "cpu": _s(),
        "cpus": _q("count"), "host_dram": _q("bytes"), "host_memory": _s(ref="memory"),
        "nics": _q("count"), "nic_link": _s(ref="link"), "nvme_drives": _q("count"),
        "nvme": _s(ref="memory"), "nvme_capacity": _q("bytes"), "scale_up_link": _s(ref="link"),
        "price_per_hour": _q("money_rate"), "gds": Field("bool", required=False),
        "note": _s(required=False),
    },
    "framework": {
        "name": _s(), "step_overhead": _q("time"), "note": _s(required=False),
        "source": _s(required=False),
        # host time to issue one layer's kernels where they are launched one by one (eager or
        # piecewise graphs): a step takes at least num_layers x this (hidden under longer GPU work)
        "layer_dispatch": _q("time", required=False),
        # device time of the engine's top-k / top-p sampler per sampled sequence per vocabulary
        # entry (kvmodel.instance._sampling; charged for the calibration's sampled_sequence_share)
        "sampling_time": _q("time", required=False),
        # prefix caching of hybrid (recurrent-state) models: where the engine keeps state
        # snapshots (kvmodel.catalog.models.SNAPSHOT_MODES), their spacing inside a prompt
        # (tokens), and the source of both
        "hybrid_prefix_cache": _s(required=False, choices=HYBRID_PREFIX_CACHES),
        # what the default KV-cache dtype follows (kvmodel.catalog.models.KV_CACHE_AUTO);
        # absent: an FP8 cache next to quantised checkpoints
        "kv_cache_auto": _s(required=False, choices=KV_CACHE_AUTO),
        "hybrid_snapshot_interval": _q("count", required=False),
        # where the spacing follows the GPU's memory (the engines' prefill chunk defaults): y[i]
        # tokens on a GPU with less than x[i] memory (the first such tier), the interval above
        # the last; GPU keys listed in hybrid_snapshot_small_gpus take y[0] whatever their memory
        "hybrid_snapshot_interval_below": Field("curve", required=False),
        "hybrid_snapshot_small_gpus": Field("strlist", required=False),
        "hybrid_prefix_cache_source": _s(required=False),
        # the engine's own scheduler defaults where they differ from the calibration's
        # max_batch_size / max_num_tokens (kvmodel validate maps its rows with them):
        # max_num_seqs caps running sequences; chunked_prefill false runs whole prompts with a
        # step budget of the model's context length (max_position_embeddings)
        "max_num_seqs": _q("count", required=False),
        "chunked_prefill": Field("bool", required=False),
        # false: a step that runs prompts carries no decodes (a prefill-first scheduler), so
        # decoders wait while prompts are admitted (throughput-max and the simulator)
        "mixed_steps": Field("bool", required=False),
        # attention work per causal (query, key) pair of the engine's kernels (2: the causal
        # triangle is not skipped, every pair of the square is computed under a dense mask)
        "causal_attention_work": _q("dimensionless", required=False),
        # true: the engine copies each grouped-matmul output of its MoE layers once more
        # (vLLM-Ascend v0.9.1 torch.cat of npu_grouped_matmul's list; kvmodel.instance._roofline)
        "moe_gmm_output_copy": Field("bool", required=False),
        # trtllm-bench throughput (PyTorch backend) limits where the command gives none
        # (kvmodel.instance._trtllm_bench): its KV fraction default, the caps of its batch /
        # token heuristic, the defaults it takes for checkpoints the heuristic does not tune,
        # and the catalog models whose published checkpoints are such
        "bench_kv_cache_fraction": _q("dimensionless", required=False),
        "bench_batch_cap": _q("count", required=False),
        "bench_token_cap": _q("count", required=False),
        "bench_default_max_batch_size": _q("count", required=False),
        "bench_default_max_num_tokens": _q("count", required=False),
        "bench_untuned_models": Field("strlist", required=False),
        # catalog models whose MoE experts the engine runs as MXFP4 weights x MXFP8 activations
        # where the GPU has an FP4 tensor core: the expert GEMMs issue the FP8/FP6 MMA kind, so
        # they run at the GPU's fp8 rate, not its fp4 one (kvmodel.instance._roofline)
        "mxfp8_activation_moe_models": Field("strlist", required=False),
        # catalog models whose context attention the engine runs in BF16 over an FP8 KV cache
        # (attention projections unquantised: no FP8 context FMHA; kvmodel.instance._roofline)
        "bf16_context_attention_models": Field("strlist", required=False),
        # token rows of the smallest tile of the engine's FP8 (1-byte weight) linear GEMM kernel,
        # on the GPU architectures listed (absent: every one): a step of fewer tokens computes
        # the padded rows too (kvmodel.instance._roofline._linear_rows)
        "fp8_linear_tile_rows": _q("count", required=False),
        "fp8_linear_tile_architectures": Field("strlist", required=False),
        # how the KV pool is shared by full-attention and sliding-window layers: "window" (each
        # sliding layer holds its window, the rest is the full layers'), "equal_share" (one pool
        # per window size, each the same share of memory: TensorRT-LLM's KV cache manager)
        "sliding_window_pool": _s(required=False, choices=("window", "equal_share")),
    },
    "connector": {
        "name": _s(), "family": _s(choices=CONNECTOR_FAMILIES),
        "per_request": _q("time", positive=False), "per_block": _q("time", positive=False),
        "bandwidth_efficiency": _q("dimensionless"),
        "streaming": _s(choices=("layer", "before_prefill")), "save": _s(choices=("async", "sync")),
        "copy": _s(required=False, choices=("dma", "kernel")),
        "note": _s(required=False),
    },
    "calibration": {},  # free-form: every value is a quantity (checked in _parse_calibration)
    "model": {
        "name": _s(), "hf_id": _s(), "aliases": Field("strlist", required=False), "source": _s(),
        "attention": _s(choices=("mha", "gqa", "mqa", "mla")),
        "hidden_size": _i(), "num_layers": _i(), "num_attention_heads": _i(), "num_kv_heads": _i(),
        "head_dim": _i(), "intermediate_size": _i(), "vocab_size": _i(),
        "tie_word_embeddings": Field("bool", required=False), "mlp": _s(choices=("gated", "plain")),
        "max_position_embeddings": _i(required=False),
        "kv_lora_rank": _i(required=False), "q_lora_rank": _i(required=False, positive=False),
        "qk_nope_head_dim": _i(required=False), "qk_rope_head_dim": _i(required=False),
        "v_head_dim": _i(required=False),
        "num_experts": _i(required=False), "experts_per_token": _i(required=False),
        "moe_intermediate_size": _i(required=False),
        "num_shared_experts": _i(required=False, positive=False),
        "shared_expert_intermediate_size": _i(required=False, positive=False),
        "first_dense_layers": _i(required=False, positive=False),
        "moe_layer_step": _i(required=False), "sliding_window": _i(required=False),
        "attention_chunk_size": _i(required=False),
        # per-layer kinds (full / sliding / chunked / linear), repeated over the layers
        "layer_pattern": Field("strlist", required=False),
        "linear_num_key_heads": _i(required=False), "linear_num_value_heads": _i(required=False),
        "linear_key_head_dim": _i(required=False), "linear_value_head_dim": _i(required=False),
        "linear_conv_kernel_dim": _i(required=False),
        "index_head_dim": _i(required=False), "index_n_heads": _i(required=False),
        "index_topk": _i(required=False),
        # multi-token-prediction layers beside num_layers (config num_nextn_predict_layers)
        "mtp_layers": _i(required=False, positive=False),
        # precision of the linear-attention recurrent state the config names (mamba_ssm_dtype)
        "mamba_ssm_dtype": _s(required=False, choices=("fp32", "bf16", "fp16")),
        "note": _s(required=False),
    },
}


# physical range of a positive value per dimension, SI (lower, upper, unit shown): every entry
# of hardware_db lies 2-5 orders of magnitude inside; a value outside is a typo in value or unit
_BOUNDS = {"bytes": (1e3, 1e18, "B"), "bandwidth": (1e6, 1e16, "B/s"),
           "compute": (1e9, 1e19, "FLOP/s"), "time": (1e-12, 3600.0, "s"), "power": (1.0, 1e6, "W")}


def _check_range(where: str, value: float, unit: str, si: float) -> None:
    """A positive value of a bounded dimension must lie in :data:`_BOUNDS` (in SI)."""
    bounds = _BOUNDS.get(dimension_of(unit))
    if bounds is None or si <= 0:
        return
    lo, hi, si_unit = bounds
    if not lo <= si <= hi:
        raise _err(where, f"value {value:g} {unit} = {si:g} {si_unit} is outside the physical "
                   f"range [{lo:g}, {hi:g}] {si_unit}; check the value and unit")


def _err(where: str, msg: str) -> HardwareDBError:
    return HardwareDBError(f"{where}: {msg}")


def parse_quantity(raw: Any, where: str, dim: str, positive: bool = True) -> Quantity:
    """Validate one ``{value, unit, kind, source, ...}`` table into a :class:`Quantity`."""
    if not isinstance(raw, Mapping):
        raise _err(where, f"expected a table {{value, unit, kind, source}}, got {raw!r}")
    unknown = set(raw) - _QTY_KEYS
    if unknown:
        raise _err(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_QTY_KEYS)}")
    for k in ("value", "unit", "kind", "source"):
        if k not in raw or raw[k] in ("", None):
            raise _err(where, f"missing '{k}' (every number needs value, unit, kind and source)")
    value, unit, kind = raw["value"], raw["unit"], raw["kind"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _err(where, f"value must be a finite number, got {value!r}")
    if unit not in UNITS:
        raise _err(where, f"unknown unit {unit!r}; allowed: {', '.join(sorted(UNITS))}")
    if dim and dimension_of(unit) != dim:
        raise _err(where, f"unit {unit!r} is a {dimension_of(unit)}, expected a {dim}")
    if kind not in KINDS:
        raise _err(where, f"kind {kind!r} not one of {KINDS}")
    if kind == "derived" and not raw.get("derivation"):
        raise _err(where, "kind 'derived' needs 'derivation' (the arithmetic)")
    if kind == "assumed" and not raw.get("reason"):
        raise _err(where, "kind 'assumed' needs 'reason'")
    if unit.startswith("USD"):
        if not _DATE.match(str(raw.get("date", ""))):
            raise _err(where, f"prices need 'date' as YYYY-MM, got {raw.get('date')!r}")
    if positive and value <= 0:
        raise _err(where, f"must be > 0, got {value}")
    if value < 0:
        raise _err(where, f"must be >= 0, got {value}")
    _check_range(where, value, unit, to_si(value, unit))
    return Quantity(to_si(value, unit), float(value), unit, kind, str(raw["source"]),
                    str(raw.get("derivation", "")), str(raw.get("reason", "")),
                    str(raw.get("date", "")), str(raw.get("note", "")))


def _parse_curve(raw: Any, where: str) -> Curve:
    if not isinstance(raw, Mapping):
        raise _err(where, "expected a curve table {x, x_unit, y, y_unit, kind, source}")
    unknown = set(raw) - _CURVE_KEYS
    if unknown:
        raise _err(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_CURVE_KEYS)}")
    for k in ("x", "x_unit", "y", "y_unit", "kind", "source"):
        if k not in raw:
            raise _err(where, f"missing '{k}'")
    x, y = raw["x"], raw["y"]
    if not (isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and len(x) >= 1):
        raise _err(where, "x and y must be lists of the same non-zero length")
    if any((not isinstance(v, (int, float))) or v <= 0 for v in x + y):
        raise _err(where, "curve points must be positive numbers")
    for k in ("x_unit", "y_unit"):
        if raw[k] not in UNITS:
            raise _err(where, f"unknown {k} {raw[k]!r}")
    if raw["kind"] not in KINDS:
        raise _err(where, f"kind {raw['kind']!r} not one of {KINDS}")
    fx, fy = UNITS[raw["x_unit"]][1], UNITS[raw["y_unit"]][1]
    return Curve(tuple(v * fx for v in x), tuple(v * fy for v in y), raw["x_unit"], raw["y_unit"],
                 raw["kind"], str(raw["source"]), str(raw.get("note", "")))


def _parse_field(f: Field, raw: Any, where: str) -> Any:
    if f.type == "quantity":
        return parse_quantity(raw, where, f.dim, f.positive)
    if f.type == "precisions":
        if not isinstance(raw, Mapping) or not raw:
            raise _err(where, f"expected a table of precisions among {PRECISIONS}")
        bad = set(raw) - set(PRECISIONS)
        if bad:
            raise _err(where, f"unknown precision(s) {sorted(bad)}; allowed: {PRECISIONS}")
        return {p: parse_quantity(v, f"{where}.{p}", f.dim) for p, v in raw.items()}
    if f.type == "curve":
        return _parse_curve(raw, where)
    if f.type == "str":
        if not isinstance(raw, str) or not raw:
            raise _err(where, f"expected a non-empty string, got {raw!r}")
        if f.choices and raw not in f.choices:
            raise _err(where, f"{raw!r} not one of {f.choices}")
        return raw
    if f.type == "int":
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < (1 if f.positive else 0):
            raise _err(where, f"expected an integer >= {1 if f.positive else 0}, got {raw!r}")
        return raw
    if f.type == "bool":
        if not isinstance(raw, bool):
            raise _err(where, f"expected true/false, got {raw!r}")
        return raw
    if f.type == "strlist":
        if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
            raise _err(where, f"expected a list of strings, got {raw!r}")
        return tuple(raw)
    raise AssertionError(f.type)


def parse_entry(section: str, key: str, raw: Any, where: str) -> dict[str, Any]:
    """Validate one entry of ``section`` against its schema; returns field -> parsed value."""
    if not isinstance(raw, Mapping):
        raise _err(where, "expected a table")
    if section == "calibration":
        return {k: parse_quantity(v, f"{where}.{k}", "", positive=False) for k, v in raw.items()}
    schema = SCHEMAS[section]
    unknown = set(raw) - set(schema)
    if unknown:
        raise _err(where, f"unknown field(s) {sorted(unknown)}; allowed: {sorted(schema)}")
    out: dict[str, Any] = {}
    for name, f in schema.items():
        if name not in raw:
            if f.required:
                raise _err(f"{where}.{name}", "missing required field")
            continue
        out[name] = _parse_field(f, raw[name], f"{where}.{name}")
    return out


@dataclass
class RawDB:
    """Validated entries by section, before cross-references are resolved."""

    entries: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {s: {} for s in SCHEMAS})
    origin: dict[tuple[str, str], str] = field(default_factory=dict)


def load_file(path: Path, db: RawDB, replace: bool = False) -> None:
    """Parse and validate one TOML file into ``db`` (duplicate keys are errors unless ``replace``)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise HardwareDBError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise HardwareDBError(f"{path}: cannot read: {exc}") from None
    version = data.pop("schema_version", None)
    if version != SCHEMA_VERSION:
        raise HardwareDBError(f"{path}: schema_version must be {SCHEMA_VERSION}, got {version!r}")
    for section, entries in data.items():
        if section not in SCHEMAS:
            raise HardwareDBError(f"{path}: unknown section [{section}]; allowed: {sorted(SCHEMAS)}")
        if not isinstance(entries, Mapping):
            raise HardwareDBError(f"{path}: [{section}] must be a table of entries")
        for key, raw in entries.items():
            where = f"{path}: [{section}.{key}]"
            if key != key.lower():
                raise _err(where, "keys must be lowercase")
            if key in db.entries[section] and not replace:
                raise _err(where, f"duplicate key, already defined in {db.origin[(section, key)]}")
            db.entries[section][key] = parse_entry(section, key, raw, where)
            db.origin[(section, key)] = str(path)


def check_refs(db: RawDB) -> None:
    """Every ``ref`` field names an existing entry of its section."""
    for section, schema in SCHEMAS.items():
        for key, entry in db.entries[section].items():
            for name, f in schema.items():
                if f.ref and name in entry and entry[name] not in db.entries[f.ref]:
                    raise HardwareDBError(
                        f"{db.origin[(section, key)]}: [{section}.{key}].{name}: unknown {f.ref} "
                        f"{entry[name]!r}; known: {', '.join(sorted(db.entries[f.ref]))}")
