"""Hardware catalog: validated, frozen specs built once from ``hardware_db`` files.

Public entry points: :func:`get_gpu`, :func:`get_link`, :func:`get_memory`, :func:`get_node`,
:func:`get_framework`, :func:`list_entries`, :func:`load_hardware` (add a user file).
All spec attributes are SI floats (bytes, seconds, B/s, FLOP/s, W, USD); the sourced
:class:`Quantity` behind each number is in ``spec.quantities``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ._schema import (SCHEMAS, Curve, HardwareDBError, Quantity, RawDB, check_refs, load_file)

__all__ = [
    "GPUSpec", "LinkSpec", "MemorySpec", "NodeSpec", "FrameworkSpec", "HardwareDBError",
    "Quantity", "data_dir", "get_gpu", "get_link", "get_memory", "get_node", "get_framework",
    "get_calibration", "list_entries", "load_hardware", "raw_entry", "reset_catalog",
]


def data_dir() -> Path:
    """Folder of the bundled ``hardware_db`` (inside a wheel, or the checkout's top level)."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_hardware_db", here.parent / "hardware_db"):
        if (cand / "gpus.toml").is_file():
            return cand
    raise HardwareDBError(f"hardware_db not found next to {here} (broken installation)")


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class GPUSpec:
    key: str
    name: str
    vendor: str
    architecture: str
    hbm_capacity_B: float
    hbm_bw_Bps: float
    peak_flops: Mapping[str, float]
    matmul_eff: Mapping[str, float]
    hbm_eff: float
    scale_up_link: str
    scale_up_bw_Bps: float
    host_link: str
    host_bw_Bps: float
    tdp_W: float
    quantities: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def supports(self, precision: str) -> bool:
        return precision in self.peak_flops


@dataclass(frozen=True)
class LinkSpec:
    key: str
    name: str
    family: str
    bw_Bps: float
    latency_s: float
    duplex: str
    achieved_bw_Bps: float
    size_bandwidth: Curve | None
    quantities: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class MemorySpec:
    key: str
    name: str
    family: str
    capacity_B: float
    read_bw_Bps: float
    write_bw_Bps: float
    latency_s: float
    price_per_B: float
    socket_read_bw_Bps: float  # DDR: per socket (channels x per-channel); others: per device
    quantities: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class NodeSpec:
    key: str
    name: str
    gpu: str
    gpus_per_node: int
    host_dram_B: float
    host_memory: str
    nics: int
    nic_link: str
    cpus: int
    nvme_drives: int
    nvme: str
    nvme_capacity_B: float
    scale_up_link: str
    price_per_s: float
    quantities: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class FrameworkSpec:
    key: str
    name: str
    step_overhead_s: float
    quantities: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _matmul_eff(key: str, e: dict[str, Any]) -> dict[str, float]:
    """Achieved/peak per precision; a precision without a measurement borrows the nearest one."""
    peak = {p: q.si for p, q in e["peak_flops"].items()}
    ach = e.get("achieved_matmul_flops", {})
    eff = {p: ach[p].si / peak[p] for p in ach if p in peak}
    fallback = e["matmul_efficiency"].si if "matmul_efficiency" in e else None
    if not eff and fallback is None:
        raise HardwareDBError(f"[gpu.{key}]: needs achieved_matmul_flops or matmul_efficiency")
    # Same tensor-core datapath: fp16<->bf16; lower precisions borrow fp8, then bf16.
    order = {"fp16": ("bf16",), "bf16": ("fp16",), "fp8": ("int8", "bf16"), "int8": ("fp8", "bf16"),
             "fp4": ("fp6", "fp8", "bf16"), "fp6": ("fp4", "fp8", "bf16"), "tf32": ("bf16",),
             "fp32": ("bf16",)}
    for p in peak:
        if p in eff:
            continue
        if fallback is not None:
            eff[p] = fallback
            continue
        eff[p] = next((eff[o] for o in order.get(p, ()) if o in eff), min(eff.values()))
    return eff


def _gpu(key: str, e: dict[str, Any]) -> GPUSpec:
    if "achieved_hbm_bandwidth" in e:
        hbm_eff = e["achieved_hbm_bandwidth"].si / e["hbm_bandwidth"].si
    elif "hbm_efficiency" in e:
        hbm_eff = e["hbm_efficiency"].si
    else:
        raise HardwareDBError(f"[gpu.{key}]: needs achieved_hbm_bandwidth or hbm_efficiency")
    if not 0 < hbm_eff <= 1.0:
        raise HardwareDBError(f"[gpu.{key}]: HBM efficiency {hbm_eff:.3f} outside (0, 1]")
    eff = _matmul_eff(key, e)
    for p, v in eff.items():
        if not 0 < v <= 1.0:
            raise HardwareDBError(f"[gpu.{key}]: {p} matmul efficiency {v:.3f} outside (0, 1]")
    return GPUSpec(key, e["name"], e["vendor"], e["architecture"], e["hbm_capacity"].si,
                   e["hbm_bandwidth"].si, _frozen({p: q.si for p, q in e["peak_flops"].items()}),
                   _frozen(eff), hbm_eff, e["scale_up_link"], e["scale_up_bandwidth"].si,
                   e["host_link"], e["host_bandwidth"].si, e["tdp"].si, _frozen(e))


def _link(key: str, e: dict[str, Any]) -> LinkSpec:
    ach = e["achieved_bandwidth"].si if "achieved_bandwidth" in e else e["bandwidth"].si
    return LinkSpec(key, e["name"], e["family"], e["bandwidth"].si, e["latency"].si, e["duplex"],
                    ach, e.get("size_bandwidth"), _frozen(e))


def _memory(key: str, e: dict[str, Any]) -> MemorySpec:
    if "read_bandwidth_per_socket" in e:
        socket = e["read_bandwidth_per_socket"].si
    elif "channels_per_socket" in e:
        socket = e["read_bandwidth"].si * e["channels_per_socket"].si
    else:
        socket = e["read_bandwidth"].si
    return MemorySpec(key, e["name"], e["family"], e["capacity"].si, e["read_bandwidth"].si,
                      e["write_bandwidth"].si, e["latency"].si, e["price_per_gb"].si, socket,
                      _frozen(e))


def _node(key: str, e: dict[str, Any]) -> NodeSpec:
    return NodeSpec(key, e["name"], e["gpu"], int(e["gpus_per_node"].si), e["host_dram"].si,
                    e["host_memory"], int(e["nics"].si), e["nic_link"], int(e["cpus"].si),
                    int(e["nvme_drives"].si), e["nvme"],
                    e["nvme_capacity"].si, e["scale_up_link"], e["price_per_hour"].si, _frozen(e))


def _framework(key: str, e: dict[str, Any]) -> FrameworkSpec:
    return FrameworkSpec(key, e["name"], e["step_overhead"].si, _frozen(e))


_BUILDERS = {"gpu": _gpu, "link": _link, "memory": _memory, "node": _node, "framework": _framework}


class _Catalog:
    def __init__(self) -> None:
        self.raw = RawDB()
        self.specs: dict[str, dict[str, Any]] = {s: {} for s in SCHEMAS}
        self.frozen: dict[str, Any] = {}
        base = data_dir()
        files = sorted(base.glob("*.toml")) + sorted((base / "models").glob("*.toml"))
        extra = [Path(p) for p in os.environ.get("KVMODEL_HARDWARE", "").split(os.pathsep) if p]
        for path in files:
            load_file(path, self.raw)
        for path in extra:
            load_file(path, self.raw, replace=True)
        self._build()

    def _build(self) -> None:
        self.frozen = {}
        check_refs(self.raw)
        for section, build in _BUILDERS.items():
            for key, e in self.raw.entries[section].items():
                try:
                    self.specs[section][key] = build(key, e)
                except HardwareDBError as exc:
                    raise HardwareDBError(f"{self.raw.origin[(section, key)]}: {exc}") from None

    def add(self, path: Path) -> list[str]:
        before = {(s, k) for s in SCHEMAS for k in self.raw.entries[s]}
        saved = ({s: dict(e) for s, e in self.raw.entries.items()}, dict(self.raw.origin))
        try:
            load_file(path, self.raw, replace=True)
            self._build()
        except HardwareDBError:  # a rejected file leaves the catalog as it was
            self.raw.entries, self.raw.origin = saved
            self._build()
            raise
        return [f"{s}.{k}" for s in SCHEMAS for k in self.raw.entries[s]
                if (s, k) not in before or self.raw.origin[(s, k)] == str(path)]


_CATALOG: _Catalog | None = None
_GENERATION = [0]  # bumped whenever the catalog changes: caches of derived values key on it


def generation() -> int:
    """A counter that changes whenever the catalog changes (load_hardware, reset_catalog);
    caches of values derived from hardware entries include it in their key."""
    return _GENERATION[0]


def _catalog() -> _Catalog:
    global _CATALOG
    if _CATALOG is None:
        _CATALOG = _Catalog()
    return _CATALOG


def reset_catalog() -> None:
    """Forget user-added files; the next lookup reloads the bundled database."""
    global _CATALOG
    _CATALOG = None
    _GENERATION[0] += 1
    from . import models
    models._clear_cache()


def load_hardware(path: str | os.PathLike[str]) -> list[str]:
    """Validate a user file in the ``hardware_db`` format and add (or override) its entries.

    Returns the ``section.key`` names it defined. Errors name the file and field.
    """
    try:
        return _catalog().add(Path(path))
    finally:
        _GENERATION[0] += 1


def list_entries(section: str) -> list[str]:
    """Sorted keys of a section: gpu, link, memory, node, framework, model."""
    if section not in SCHEMAS:
        raise ValueError(f"section={section!r} not one of {sorted(SCHEMAS)}")
    return sorted(_catalog().raw.entries[section])


def raw_entry(section: str, key: str) -> Mapping[str, Any]:
    """The validated fields of one entry (quantities with their sources)."""
    return _frozen(_lookup_raw(section, key))


def _lookup_raw(section: str, key: str) -> dict[str, Any]:
    entries = _catalog().raw.entries[section]
    k = key.lower()
    if k not in entries:
        raise KeyError(f"unknown {section} {key!r}; known: {', '.join(sorted(entries))}")
    return entries[k]


def _get(section: str, key: Any) -> Any:
    if not isinstance(key, str):
        return key  # already a spec object (user-built)
    specs = _catalog().specs[section]
    if key in specs:
        return specs[key]
    _lookup_raw(section, key)
    return specs[key.lower()]


def get_gpu(key: str | GPUSpec) -> GPUSpec:
    return _get("gpu", key)


def get_link(key: str | LinkSpec) -> LinkSpec:
    return _get("link", key)


def get_memory(key: str | MemorySpec) -> MemorySpec:
    return _get("memory", key)


def get_node(key: str | NodeSpec) -> NodeSpec:
    return _get("node", key)


def get_framework(key: str | FrameworkSpec) -> FrameworkSpec:
    return _get("framework", key)


def get_calibration() -> Mapping[str, Quantity]:
    """The calibrated model parameters (``[calibration.model]`` in calibration.toml)."""
    cat = _catalog()
    if "calibration" not in cat.frozen:
        cat.frozen["calibration"] = _frozen(_lookup_raw("calibration", "model"))
    return cat.frozen["calibration"]
