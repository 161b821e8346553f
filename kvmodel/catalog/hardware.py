"""Hardware catalog: validated, frozen specs built once from ``hardware_db`` files.

Public entry points: :class:`Catalog` (a set of entries, passed to the library as
``catalog=``), :func:`get_gpu`, :func:`get_link`, :func:`get_memory`, :func:`get_node`,
:func:`get_framework`, :func:`list_entries` (each takes ``catalog=``; default: the active
catalog, see :func:`use_catalog`), :func:`load_hardware` / :func:`reset_catalog` (add a user
file to / reset the default catalog).
All spec attributes are SI floats (bytes, seconds, B/s, FLOP/s, W, USD); the sourced
:class:`Quantity` behind each number is in ``spec.quantities``.
"""

from __future__ import annotations

import functools
import itertools
import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, TypeVar

from kvmodel.base.schema import (
    SCHEMAS,
    STORAGE_FAMILIES,
    Curve,
    HardwareDBError,
    Quantity,
    RawDB,
    check_refs,
    load_file,
)

__all__ = [
    "GPUSpec", "LinkSpec", "MemorySpec", "NodeSpec", "FrameworkSpec", "HardwareDBError",
    "Quantity", "ConnectorSpec", "get_connector", "data_dir", "get_gpu", "get_link", "get_memory",
    "get_node", "get_framework",
    "get_calibration", "list_entries", "load_hardware", "raw_entry", "reset_catalog",
    "Catalog", "current", "use_catalog", "catalog_arg",
]


def data_dir() -> Path:
    """Folder of the bundled ``hardware_db`` (inside a wheel, or the checkout's top level)."""
    here = Path(__file__).resolve().parents[1]  # the kvmodel package
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

    def achieved_flops(self, precision: str) -> float:
        """Dense GEMM FLOP/s reached at ``precision``: the datasheet peak x the measured
        matmul efficiency."""
        return self.peak_flops[precision] * self.matmul_eff[precision]


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
class ConnectorSpec:
    """Software that moves KV between a tier and HBM (``hardware_db/connectors.toml``).

    ``per_request_s``: fixed cost per request and tier load (lookup, metadata, RPC);
    ``per_block_s``: cost per transfer descriptor (block or block x layer) that is not hidden
    by transfers in flight; ``bandwidth_efficiency``: achievable share (0..1] of the path's
    sustained bandwidth; ``streaming``: ``"layer"`` (layer l's KV arrives while layer l-1
    computes) or ``"before_prefill"`` (the whole load precedes the prefill); ``save_sync``:
    whether saving new KV blocks the request; ``copy``: ``"dma"`` (copy engines) or ``"kernel"``
    (an SM gather kernel, one launch per layer) where the GPU copies from host memory."""
    key: str
    name: str
    family: str
    per_request_s: float
    per_block_s: float
    bandwidth_efficiency: float
    streaming: str
    save_sync: bool
    copy: str = "dma"  # how the GPU moves host-memory KV: copy engines ("dma") or an SM kernel
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
    if e["family"] in STORAGE_FAMILIES:  # a shared file system / object store: how to reach it
        for name in ("metadata_latency", "client_link"):
            if name not in e:
                raise HardwareDBError(f"[memory.{key}].{name}: required for family "
                                      f"{e['family']!r} (one of {STORAGE_FAMILIES})")
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


def _connector(key: str, e: dict[str, Any]) -> ConnectorSpec:
    eff = e["bandwidth_efficiency"].si
    if not 0.0 < eff <= 1.0:
        raise HardwareDBError(f"connector.{key}.bandwidth_efficiency = {eff:g}: must be in (0, 1]")
    return ConnectorSpec(key, e["name"], e["family"], e["per_request"].si, e["per_block"].si, eff,
                         e["streaming"], e["save"] == "sync", e.get("copy", "dma"), _frozen(e))


_BUILDERS = {"gpu": _gpu, "link": _link, "memory": _memory, "node": _node, "framework": _framework,
             "connector": _connector}


_IDS = itertools.count(1)


class Catalog:
    """Hardware entries, models and calibration: an immutable set of validated ``hardware_db``
    files, plus the caches of values derived from them.

    ``Catalog.default()`` is the bundled database (and the files in ``$KVMODEL_HARDWARE``);
    ``cat.with_file(path)`` returns a new catalog with a user file added (its entries override
    those of the same key; ``new.added`` names them) and leaves ``cat`` as it was, also when
    the file is rejected. Pass a catalog to the library (``estimate(..., catalog=cat)``,
    ``evaluate(cluster, workload, catalog=cat)``, ``get_gpu(name, catalog=cat)``) or make it
    the active one for a block (``with use_catalog(cat): ...``).

    Caching has one scheme: every value derived from the entries (specs, models, the
    calibration's SI numbers, the cluster layer's capacities and tiers) is memoised in the
    catalog object itself (:meth:`cached`), so a new catalog starts with empty caches and
    nothing is ever invalidated. ``version`` is unique per catalog (a cache key for caches
    outside the library, e.g. Streamlit's).
    """

    def __init__(self, raw: RawDB, files: tuple[Path, ...] = (), added: tuple[str, ...] = ()):
        check_refs(raw)
        self._raw, self.files, self.added = raw, files, added
        self.version = next(_IDS)
        self._memo: dict[str, dict[Any, Any]] = {}
        self._specs: dict[str, dict[str, Any]] = {s: {} for s in SCHEMAS}
        for section, build in _BUILDERS.items():
            for key, e in raw.entries[section].items():
                try:
                    self._specs[section][key] = build(key, e)
                except HardwareDBError as exc:
                    raise HardwareDBError(f"{raw.origin[(section, key)]}: {exc}") from None

    @classmethod
    def bundled(cls) -> "Catalog":
        """A new catalog of the bundled ``hardware_db`` plus the files in ``$KVMODEL_HARDWARE``."""
        raw = RawDB()
        base = data_dir()
        for path in sorted(base.glob("*.toml")) + sorted((base / "models").glob("*.toml")):
            load_file(path, raw)
        extra = tuple(Path(p) for p in os.environ.get("KVMODEL_HARDWARE", "").split(os.pathsep)
                      if p)
        for path in extra:
            load_file(path, raw, replace=True)
        return cls(raw, extra)

    @classmethod
    def default(cls) -> "Catalog":
        """The process-wide default catalog (built on first use; :func:`load_hardware` adds
        files to it, :func:`reset_catalog` forgets them)."""
        if _DEFAULT[0] is None:
            _DEFAULT[0] = cls.bundled()
        return _DEFAULT[0]

    def with_file(self, path: str | os.PathLike[str]) -> "Catalog":
        """A new catalog with the entries of a user file in the ``hardware_db`` format added
        (or overriding); ``.added`` lists its ``section.key`` names. Errors name the file and
        field; ``self`` never changes."""
        path = Path(path)
        raw = RawDB({s: dict(e) for s, e in self._raw.entries.items()}, dict(self._raw.origin))
        load_file(path, raw, replace=True)
        before = self._raw.entries
        added = tuple(f"{s}.{k}" for s in SCHEMAS for k in raw.entries[s]
                      if k not in before[s] or raw.origin[(s, k)] == str(path))
        return Catalog(raw, self.files + (path,), added)

    load = with_file

    # ---- look-ups -------------------------------------------------------------------------
    def entries(self, section: str) -> list[str]:
        """Sorted keys of a section: gpu, link, memory, node, framework, model, calibration."""
        if section not in SCHEMAS:
            raise ValueError(f"section={section!r} not one of {sorted(SCHEMAS)}")
        return sorted(self._raw.entries[section])

    def raw(self, section: str, key: str) -> dict[str, Any]:
        """The validated fields of one entry (KeyError naming the known keys)."""
        if section not in SCHEMAS:
            raise ValueError(f"section={section!r} not one of {sorted(SCHEMAS)}")
        entries = self._raw.entries[section]
        k = key.lower()
        if k not in entries:
            raise KeyError(f"unknown {section} {key!r}; known: {', '.join(sorted(entries))}")
        return entries[k]

    def spec(self, section: str, key: Any) -> Any:
        """The frozen spec of an entry (a spec object passes through unchanged)."""
        if not isinstance(key, str):
            return key  # already a spec object (user-built)
        specs = self._specs[section]
        if key in specs:
            return specs[key]
        self.raw(section, key)
        return specs[key.lower()]

    @property
    def calibration(self) -> Mapping[str, Quantity]:
        """The calibrated model parameters (``[calibration.model]`` in calibration.toml)."""
        return self.cached("calibration", None, lambda: _frozen(self.raw("calibration", "model")))

    def params(self) -> dict[str, float]:
        """The calibration as SI floats (shared: do not modify)."""
        return self.cached("calibration_si", None,
                           lambda: {k: q.si for k, q in self.calibration.items()})

    def cached(self, name: str, key: Any, compute: Callable[[], Any], maxsize: int = 4096) -> Any:
        """``compute()`` memoised in this catalog under (``name``, ``key``); a table that
        outgrows ``maxsize`` starts again (bounded memory in long searches)."""
        table = self._memo.setdefault(name, {})
        try:
            return table[key]
        except KeyError:
            pass
        if len(table) >= maxsize:
            table.clear()
        value = table[key] = compute()
        return value

    def __repr__(self) -> str:
        extra = ", ".join(str(p) for p in self.files)
        return f"Catalog(version={self.version}, files=[{extra}])"


_DEFAULT: list[Catalog | None] = [None]
_ACTIVE: ContextVar[Catalog | None] = ContextVar("kvmodel_catalog", default=None)


def current() -> Catalog:
    """The active catalog: the one of the innermost :func:`use_catalog` block (of this thread
    or task), else the default one."""
    cat = _ACTIVE.get()
    if cat is None:  # the default catalog, built on first use (Catalog.default)
        cat = _DEFAULT[0]
        return Catalog.default() if cat is None else cat
    return cat


@contextmanager
def use_catalog(catalog: Catalog | None) -> Iterator[Catalog]:
    """Make ``catalog`` the active one inside the block (None: leave the active one)."""
    if catalog is None:
        yield current()
        return
    if not isinstance(catalog, Catalog):
        raise TypeError(f"catalog={catalog!r}: expected a kvmodel.Catalog or None")
    token = _ACTIVE.set(catalog)
    try:
        yield catalog
    finally:
        _ACTIVE.reset(token)


F = TypeVar("F", bound=Callable[..., Any])


def catalog_arg(fn: F) -> F:
    """Decorator: the function takes ``catalog=`` (a :class:`Catalog` or None) and runs with
    it active, so that every look-up it makes, however deep, uses that catalog."""
    @functools.wraps(fn)
    def run(*args: Any, catalog: Catalog | None = None, **kwargs: Any) -> Any:
        if catalog is None:
            return fn(*args, **kwargs)
        with use_catalog(catalog):
            return fn(*args, **kwargs)
    return run  # type: ignore[return-value]


def reset_catalog() -> None:
    """Forget the files added to the default catalog; the next lookup reloads the bundled
    database (other catalogs are not affected)."""
    _DEFAULT[0] = None


def load_hardware(path: str | os.PathLike[str]) -> list[str]:
    """Validate a user file in the ``hardware_db`` format and add (or override) its entries in
    the default catalog (``Catalog.with_file`` for a catalog of your own).

    Returns the ``section.key`` names it defined. Errors name the file and field; a rejected
    file leaves the catalog as it was.
    """
    cat = Catalog.default().with_file(path)
    _DEFAULT[0] = cat
    return list(cat.added)


def list_entries(section: str, catalog: Catalog | None = None) -> list[str]:
    """Sorted keys of a section: gpu, link, memory, node, framework, model."""
    return (catalog or current()).entries(section)


def raw_entry(section: str, key: str, catalog: Catalog | None = None) -> Mapping[str, Any]:
    """The validated fields of one entry (quantities with their sources)."""
    return _frozen((catalog or current()).raw(section, key))


def get_gpu(key: str | GPUSpec, catalog: Catalog | None = None) -> GPUSpec:
    return (catalog or current()).spec("gpu", key)


def get_link(key: str | LinkSpec, catalog: Catalog | None = None) -> LinkSpec:
    return (catalog or current()).spec("link", key)


def get_memory(key: str | MemorySpec, catalog: Catalog | None = None) -> MemorySpec:
    return (catalog or current()).spec("memory", key)


def get_node(key: str | NodeSpec, catalog: Catalog | None = None) -> NodeSpec:
    return (catalog or current()).spec("node", key)


def get_framework(key: str | FrameworkSpec, catalog: Catalog | None = None) -> FrameworkSpec:
    return (catalog or current()).spec("framework", key)


def get_connector(key: str | ConnectorSpec, catalog: Catalog | None = None) -> ConnectorSpec:
    """A KV connector of ``hardware_db/connectors.toml`` (``kvmodel hardware connector``)."""
    return (catalog or current()).spec("connector", key)


def get_calibration(catalog: Catalog | None = None) -> Mapping[str, Quantity]:
    """The calibrated model parameters (``[calibration.model]`` in calibration.toml)."""
    return (catalog or current()).calibration
