"""KV-cache tiers of a node and the transfer paths from each tier to a GPU's HBM.

A :class:`TransferPath` is a chain of ``hardware_db`` links (PCIe, NVLink-C2C, CXL, NIC/RDMA)
behind a source device (DRAM, CXL expander, NVMe, remote memory). Moving ``n`` transfers of
``s`` bytes costs ``n·s / B + ceil(n / in_flight) · λ(s)``: ``B`` is the narrowest sustained
bandwidth along the chain (each hop's measured large-transfer bandwidth, the source device's
share, divided among concurrent users and, with both directions busy, each hop's measured
bidirectional efficiency); ``λ(s)`` is
the per-transfer setup cost of the slowest hop, taken from its measured size–bandwidth curve
where one exists (``λ(s) = s/B_curve(s) − s/B_max``), else from its latency. Transfers in
flight together hide each other's setup cost. A path to a shared file system or object store
also pays a per-request metadata cost (open / lookup / first byte) that nothing hides.

:func:`node_tiers` builds HBM / DRAM / CXL / SSD / remote / file / object tiers of a node
template; :func:`storage_tier` one file or object tier from a ``hardware_db`` storage entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.base.schema import STORAGE_FAMILIES
from kvmodel.catalog.hardware import LinkSpec, current, get_gpu, get_link, get_memory, get_node, list_entries

__all__ = ["TransferPath", "Tier", "TIER_KINDS", "STORAGE_TIER_KINDS", "node_tiers",
           "default_node_for_gpu", "storage_tier", "transfer_seconds", "nic_aggregate_Bps",
           "queue_depth", "transport_link", "TRANSPORTS", "ssd_drives"]

STORAGE_TIER_KINDS = STORAGE_FAMILIES  # "file" (Lustre, Weka, 3FS, NFS) and "object" (S3-class)
TIER_KINDS = ("hbm", "dram", "cxl", "ssd", "remote") + STORAGE_TIER_KINDS
TRANSPORTS = ("rdma", "tcp")
_MEMO_MAX = 256  # memoised scalar bandwidths / setups per path


def _hop_setup_s(link: LinkSpec, size_B):
    """Per-transfer setup cost of one hop at transfer size ``size_B`` (seconds, >= 0)."""
    c = link.size_bandwidth
    if c is None:
        return link.latency_s + 0.0 * size_B
    x, y = np.log(np.asarray(c.x)), np.asarray(c.y)
    size = np.maximum(np.asarray(size_B, dtype=float), 1.0)
    bw = np.interp(np.log(size), x, y)
    bw = np.where(size < c.x[0], y[0] * size / c.x[0], bw)  # below the curve: setup-bound
    setup = np.maximum(size / bw - size / link.achieved_bw_Bps, link.latency_s)
    return setup if np.ndim(setup) else float(setup)


def nic_aggregate_Bps(link: LinkSpec, nics):
    """Achieved bandwidth of ``nics`` NICs of ``link`` used together on one node: the link's
    ``multi_nic_bandwidth`` measurements give the per-NIC efficiency (interpolated in log n,
    held outside the points); without them, ``nics`` times one NIC's achieved bandwidth."""
    c = link.quantities.get("multi_nic_bandwidth")
    if c is None:
        return link.achieved_bw_Bps * nics
    x, y = np.asarray(c.x), np.asarray(c.y)
    eff = y / (x * link.achieved_bw_Bps)
    n = np.maximum(np.asarray(nics, dtype=float), 1.0)
    out = link.achieved_bw_Bps * nics * np.interp(np.log(n), np.log(x), eff)
    return out if np.ndim(out) else float(out)


def _q(spec, name: str, default):
    """An optional quantity of a hardware entry (SI value), or ``default``."""
    q = spec.quantities.get(name)
    return default if q is None else q.si


def _hop_Bps(link: LinkSpec, both: bool = False, copy: str = "dma") -> float:
    """One hop's sustained bandwidth per direction: its measured large-transfer rate, times
    its ``kernel_copy_efficiency`` for SM-kernel copies, times its ``bidirectional_efficiency``
    while the other direction moves too (a half-duplex hop without one: half)."""
    bw = link.achieved_bw_Bps * (_q(link, "kernel_copy_efficiency", 1.0) if copy == "kernel" else 1.0)
    if both:
        bw *= _q(link, "bidirectional_efficiency", 0.5 if link.duplex == "half" else 1.0)
    return bw


def queue_depth(spec, default: float = 8.0) -> float:
    """Transfers a device or link keeps in flight together (its ``queue_depth``: copy engines
    for host<->GPU copies, outstanding RDMA work requests for NICs, cuFile I/O depth for
    NVMe), or ``default`` where the entry records none."""
    return _q(spec, "queue_depth", default)


_PATH_MEMOS: dict = {}  # (path, its links' ids) -> memo of scalar bandwidths and setups


def _shared_memo(path) -> dict:
    """The memo of paths equal to ``path`` over the very same link objects (a link's
    ``quantities`` take no part in equality; the key holds the path, so the ids stay valid)."""
    try:
        key = (path, tuple(map(id, path.links)))
        memo = _PATH_MEMOS.get(key)
    except TypeError:  # an unhashable field: this path alone
        return {}
    if memo is None:
        if len(_PATH_MEMOS) >= _MEMO_MAX:
            _PATH_MEMOS.clear()
        memo = _PATH_MEMOS[key] = {}
    return memo


@dataclass(frozen=True)
class TransferPath:
    """Links crossed from a tier to one GPU, in order, and the source's bandwidth share."""

    name: str
    links: tuple[LinkSpec, ...]
    source_Bps: float = float("inf")   # read bandwidth of the source available to this GPU
    source_latency_s: float = 0.0      # device access latency (DRAM ns, NVMe tens of us)
    source_write_Bps: float | None = None  # write bandwidth of the source (None: as read)
    serial_setup: bool = False  # staged copy: the source's latency adds to the hops' setup
    in_flight: float | None = None  # queue depth of the engine posting the transfers (None: 8)
    gpu_copy: bool = False  # the GPU copies (DMA engine or SM kernel) from host-mapped memory
    request_s: float = 0.0  # per-request metadata cost of the source (open / lookup / first byte)

    def _memo(self, key: tuple, compute):
        """``compute()`` memoised by ``key`` of Python scalars on this (frozen) path, shared by
        equal paths over the same link objects (a new configuration rebuilds its tiers' paths,
        equal to the last one's, and evaluates them at the same few sizes many times)."""
        memo = self.__dict__.get("_memo_")
        if memo is None:
            memo = _shared_memo(self)
            object.__setattr__(self, "_memo_", memo)
        out = memo.get(key)
        if out is None:
            out = compute()
            if len(memo) < _MEMO_MAX:
                memo[key] = out
        return out

    def bandwidth_Bps(self, concurrent=1.0, both_directions: bool = False, direction: str = "read",
                      copy: str = "dma"):
        """Sustained bandwidth for large transfers, shared by ``concurrent`` users; ``direction``
        ``"write"`` is limited by the source devices' write bandwidth, ``"both"`` (equal bytes
        each way at once, as ``both_directions``) by the slower of read and write and each hop's
        bidirectional efficiency; ``copy="kernel"`` uses SM-copy rates where the GPU copies."""
        if type(concurrent) is float:
            return self._memo(("bw", concurrent, both_directions, direction, copy),
                              lambda: self._bandwidth_Bps(concurrent, both_directions, direction, copy))
        return self._bandwidth_Bps(concurrent, both_directions, direction, copy)

    def _bandwidth_Bps(self, concurrent, both_directions: bool, direction: str, copy: str):
        both = both_directions or direction == "both"
        copy = copy if self.gpu_copy else "dma"
        hop = min(_hop_Bps(l, both, copy) for l in self.links) if self.links else float("inf")
        src = self.source_Bps
        if direction in ("write", "both") and self.source_write_Bps is not None:
            src = min(src, self.source_write_Bps) if direction == "both" else self.source_write_Bps
        return xp.minimum(hop, src) / concurrent

    def setup_s(self, transfer_B):
        """Per-transfer setup: the slowest of the source's latency and each hop's setup (a
        staged path, ``serial_setup``, pays the source's latency on top of the hops')."""
        if type(transfer_B) is float:
            return self._memo(("setup", transfer_B), lambda: self._setup_s(transfer_B))
        return self._setup_s(transfer_B)

    def _setup_s(self, transfer_B):
        hops = [_hop_setup_s(l, transfer_B) for l in self.links]
        out = (0.0 if self.serial_setup else self.source_latency_s) + 0.0 * transfer_B
        for h in hops:
            out = xp.maximum(out, h)
        return out + self.source_latency_s if self.serial_setup else out

    def kernel_setup_s(self) -> float:
        """Setup of one SM copy kernel moving every descriptor of a call: the hops' kernel
        launch cost (``kernel_copy_latency``; else their latency), at least the source's."""
        lat = [_q(l, "kernel_copy_latency", l.latency_s) for l in self.links]
        return max([self.source_latency_s] + lat)

    def time_s(self, nbytes, transfer_B, in_flight=None, concurrent=1.0):
        """Seconds to move ``nbytes`` as transfers of ``transfer_B`` bytes (no software cost;
        :func:`transfer_seconds` adds the connector's)."""
        n = xp.ceil(nbytes / transfer_B)
        bw = self.bandwidth_Bps(concurrent)
        if not xp.any_true(bw > 0):  # a path with no bandwidth (e.g. a tier of zero devices)
            return xp.where(nbytes > 0, float("inf"), 0.0)
        q = (self.in_flight or 8.0) if in_flight is None else in_flight
        meta = xp.where(nbytes > 0, self.request_s, 0.0)
        return nbytes / bw + xp.ceil(n / q) * self.setup_s(transfer_B) + meta


@dataclass(frozen=True)
class Tier:
    """A KV tier: its kind, capacity (bytes per node) and the path to each GPU (None = HBM)."""

    kind: str
    capacity_B: float
    path: TransferPath | None
    price_per_B: float = 0.0
    device: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    write_Bps: float = float("inf")  # what the tier's devices absorb in writes, whole node


def default_node_for_gpu(gpu: str) -> str | None:
    """The first node template built from this GPU, if any (memoised in the catalog)."""
    return current().cached("default_node_for_gpu", gpu, lambda: _first_node(gpu))


def _first_node(gpu: str) -> str | None:
    for key in list_entries("node"):
        if get_node(key).gpu == gpu:
            return key
    return None


def _dram(node, gpu, dram_B) -> Tier:
    mem = get_memory(node.host_memory)
    host = get_link(gpu.host_link)
    share = mem.socket_read_bw_Bps * node.cpus / node.gpus_per_node
    write = mem.socket_read_bw_Bps * mem.write_bw_Bps / mem.read_bw_Bps * node.cpus
    path = TransferPath(f"{mem.key} -> {host.key}", (host,), share, mem.latency_s,
                        write / node.gpus_per_node, in_flight=queue_depth(host), gpu_copy=True)
    cap = node.host_dram_B if dram_B is None else dram_B
    return Tier("dram", cap, path, mem.price_per_B, mem.key, write_Bps=write)


def _cxl(gpu, node, cxl_B, device: str, link: str) -> Tier:
    """CXL expanders, each behind its own link: the node's CXL bandwidth is the expanders'
    count times the narrower of one device and one link, shared by the node's GPUs."""
    mem, host, cxl = get_memory(device), get_link(gpu.host_link), get_link(link)
    devices = max(1.0, np.ceil(cxl_B / mem.capacity_B)) if cxl_B else 0.0
    share = min(mem.read_bw_Bps, cxl.achieved_bw_Bps) * devices / node.gpus_per_node
    wshare = min(mem.write_bw_Bps, cxl.achieved_bw_Bps) * devices / node.gpus_per_node
    path = TransferPath(f"{device} x{devices:g} -> {link} -> {host.key}", (host,), share,
                        max(mem.latency_s, cxl.latency_s), wshare, in_flight=queue_depth(host),
                        gpu_copy=True)
    meta = {"devices": devices, "link": cxl.key,
            "device_read_Bps": min(mem.read_bw_Bps, cxl.achieved_bw_Bps),
            "device_write_Bps": min(mem.write_bw_Bps, cxl.achieved_bw_Bps)}
    return Tier("cxl", cxl_B, path, mem.price_per_B, device, meta,
                write_Bps=meta["device_write_Bps"] * devices)


def _nvme_rate_Bps(mem, name: str, fallback: float) -> float:
    """A drive's measured rate through GPUDirect Storage where recorded, else its datasheet."""
    q = mem.quantities.get(name)
    return fallback if q is None else q.si


def ssd_drives(node, mem, ssd_B: Any) -> Any:
    """Drives holding ``ssd_B`` bytes of one node (scalar or array, at least one): up to what
    the node ships, its own drives (``nvme_capacity / nvme_drives`` each, e.g. a DGX H100's eight
    3.84 TB drives, not four of the catalog's 7.68 TB model); beyond it, the shipped drives plus
    drives of ``mem`` (the catalog model) for the rest."""
    per = node.nvme_capacity_B / node.nvme_drives if node.nvme_drives > 0 else mem.capacity_B
    own = np.minimum(np.ceil(np.asarray(ssd_B, dtype=float) / per - 1e-9), node.nvme_drives)
    extra = np.maximum(np.asarray(ssd_B, dtype=float) - node.nvme_capacity_B, 0.0)
    n = np.maximum(1.0, own + np.ceil(extra / mem.capacity_B - 1e-9))
    return float(n) if np.ndim(n) == 0 else n


def _ssd(gpu, node, ssd_B, nvme: str | None, gds: bool | None = None) -> Tier:
    """Local NVMe. With GPUDirect Storage drives DMA straight into HBM; without it every byte
    lands in a DRAM bounce buffer first (written, then read again by the host-to-GPU copy):
    DRAM carries twice the bytes and each transfer pays the drive's and the copy's setup."""
    mem, host = get_memory(nvme or node.nvme), get_link(gpu.host_link)
    drives = node.nvme_drives if ssd_B is None else ssd_drives(node, mem, ssd_B)
    gds = node.quantities.get("gds", True) if gds is None else gds
    read = _nvme_rate_Bps(mem, "gds_read_bandwidth", mem.read_bw_Bps)  # the drive's measured rate
    write = _nvme_rate_Bps(mem, "gds_write_bandwidth", mem.write_bw_Bps)
    share, wshare = read * drives / node.gpus_per_node, write * drives / node.gpus_per_node
    bounce = float("inf")
    if gds:
        path = TransferPath(f"{mem.key} x{drives:g} -> {host.key} (GPUDirect Storage)", (host,),
                            share, mem.latency_s, wshare, in_flight=queue_depth(mem))
    else:
        dram = get_memory(node.host_memory)
        bounce = dram.socket_read_bw_Bps * node.cpus / node.gpus_per_node / 2.0
        path = TransferPath(f"{mem.key} x{drives:g} -> {dram.key} bounce -> {host.key}", (host,),
                            min(share, bounce), mem.latency_s, min(wshare, bounce), serial_setup=True,
                            in_flight=min(queue_depth(mem), queue_depth(host)))
    meta = {"drives": drives, "gds": gds, "device_read_Bps": read, "device_write_Bps": write,
            "source_cap_Bps": bounce}
    return Tier("ssd", node.nvme_capacity_B if ssd_B is None else ssd_B, path, mem.price_per_B,
                mem.key, meta, write_Bps=write * drives)


def transport_link(nic: str | LinkSpec, transport: str = "rdma") -> LinkSpec:
    """The link a ``transport`` runs on over NIC ``nic``: ``"rdma"`` the NIC itself, ``"tcp"``
    its kernel-TCP transport (the entry's ``tcp_link``, at its measured share of the NIC)."""
    link = get_link(nic)
    if transport not in TRANSPORTS:
        raise ValueError(f"transport={transport!r}: must be one of {TRANSPORTS}")
    if transport == "rdma" or link.family == "tcp":
        return link
    tcp = link.quantities.get("tcp_link")
    if tcp is None:
        have = sorted(k for k in list_entries("link") if get_link(k).quantities.get("tcp_link"))
        raise ValueError(f"transport='tcp': link {link.key!r} records no tcp_link; links with one: "
                         f"{', '.join(have)}")
    return get_link(tcp)


def _remote(gpu, node, remote_B, nic: str | None, transport: str = "rdma") -> Tier:
    link, host = transport_link(nic or node.nic_link, transport), get_link(gpu.host_link)
    agg = nic_aggregate_Bps(link, node.nics)
    path = TransferPath(f"remote DRAM -> {link.key} -> {host.key}", (link, host), agg / node.gpus_per_node,
                        in_flight=queue_depth(link))
    return Tier("remote", remote_B, path, 0.0, link.key, write_Bps=agg)


_STORAGE_ARG = {"file": "file_system", "object": "object_store"}  # node_tiers' argument per kind


def _storage_system(system: str, kind: str):
    """The ``hardware_db`` memory entry of a file system / object store, checked against the
    tier kind (``"file"`` needs family ``file``, ``"object"`` family ``object``); errors name
    node_tiers' argument (``file_system=`` / ``object_store=``)."""
    arg = _STORAGE_ARG[kind]
    try:
        mem = get_memory(system) if isinstance(system, str) else None
    except KeyError:
        mem = None
    if mem is not None and mem.family == kind:
        return mem
    have = ", ".join(k for k in list_entries("memory") if get_memory(k).family == kind)
    if mem is None:
        raise ValueError(f"{arg}={system!r}: unknown {kind} entry; known: {have}")
    raise ValueError(f"{arg}={system!r} has family {mem.family!r}, not {kind!r}; "
                     f"{kind} entries: {have}")


def _storage_link(mem, nic: str | None) -> LinkSpec:
    """The network link a storage client reaches ``mem`` over: ``nic`` (over kernel TCP where the
    entry's own ``client_link`` is a TCP link, e.g. S3 over HTTPS; a NIC without a TCP transport,
    e.g. InfiniBand, leaves such a store on its ``client_link``), else that ``client_link``."""
    client = get_link(mem.quantities["client_link"])
    if nic is None:
        return client
    if client.family != "tcp":
        return get_link(nic)
    link = get_link(nic)
    if link.family == "tcp":
        return link
    return transport_link(link, "tcp") if "tcp_link" in link.quantities else client


def _storage(gpu, node, cap_B, system: str, nic: str | None, kind: str) -> Tier:
    """A shared file system or object store reached over the node's NICs: the client's measured
    read / write bandwidth per node (capped by the NICs), the per-IO latency (hidden by the
    client's queue depth) and a per-request metadata cost (open / lookup / first byte)."""
    mem = _storage_system(system, kind)
    link, host = _storage_link(mem, nic), get_link(gpu.host_link)
    nics = nic_aggregate_Bps(link, node.nics)
    read, write = min(mem.read_bw_Bps, nics), min(mem.write_bw_Bps, nics)
    meta_s = mem.quantities["metadata_latency"].si
    path = TransferPath(f"{mem.key} -> {link.key} x{node.nics} -> {host.key}", (link, host),
                        read / node.gpus_per_node, mem.latency_s, write / node.gpus_per_node,
                        in_flight=queue_depth(mem), request_s=meta_s)
    meta = {"system": mem.key, "link": link.key, "client_read_Bps": read,
            "client_write_Bps": write, "metadata_s": meta_s}
    return Tier(kind, cap_B, path, mem.price_per_B, mem.key, meta, write_Bps=write)


def storage_tier(system: str, capacity_B: float, *, node: str | None = None,
                 gpu: str | None = None, nic: str | None = None) -> Tier:
    """A ``file`` or ``object`` tier (by the family of ``hardware_db`` memory entry ``system``,
    e.g. ``"fs-3fs"``, ``"s3-standard"``) of ``capacity_B`` bytes for a node template, usable
    as ``estimate(..., cache_tier=...)``. ``nic`` replaces the entry's ``client_link``."""
    known = [k for k in list_entries("memory") if get_memory(k).family in STORAGE_TIER_KINDS]
    if not isinstance(system, str) or system.lower() not in known:
        raise ValueError(f"system={system!r}: not a file system or object store; known: "
                         f"{', '.join(known)}")
    kind = get_memory(system).family
    return node_tiers(node, gpu, nic=nic, **{f"{kind}_B": capacity_B,
                                              _STORAGE_ARG[kind]: system})[kind]


def node_tiers(node: str | None = None, gpu: str | None = None, *, dram_B: float | None = None,
               cxl_B: float = 0.0, ssd_B: float | None = None, remote_B: float = 0.0,
               cxl_device: str = "cxl-micron-cz120", cxl_link: str = "cxl2-x8",
               nic: str | None = None, nvme: str | None = None,
               gds: bool | None = None, transport: str = "rdma", file_B: float = 0.0,
               file_system: str = "fs-3fs", object_B: float = 0.0,
               object_store: str = "s3-standard") -> dict[str, Tier]:
    """KV tiers of one node: HBM (all GPUs), host DRAM, CXL expanders, local NVMe, remote memory,
    a shared file system (``file``) and an object store (``object``).

    Capacities default to the node template (DRAM, NVMe) and zero (CXL, remote, file, object);
    ``nvme`` and ``nic`` swap the drive model and the NIC link; ``gds`` (default: the node's,
    else True) whether NVMe reads use GPUDirect Storage or a DRAM bounce buffer; ``transport``
    (``"rdma"`` or ``"tcp"``) what carries the remote tier over the NICs; ``file_system`` and
    ``object_store`` name ``hardware_db`` memory entries of family ``file`` / ``object``
    (``kvmodel hardware memory``), reached over their ``client_link`` (or ``nic``). Each path's
    in-flight depth is the queue depth of the engine that posts its transfers (GPU copy engines
    for DRAM and CXL, cuFile's NVMe queue for SSD, RDMA work requests for the NIC, the storage
    client's outstanding I/Os). Each path's source bandwidth is the per-GPU share when all GPUs
    of the node load at once.
    """
    if node is None:
        if gpu is None:
            raise ValueError("node_tiers needs a node template or a gpu")
        node = default_node_for_gpu(gpu)
        if node is None:
            raise ValueError(f"no node template uses gpu {gpu!r}; pass node=")
    n = get_node(node)
    g = get_gpu(gpu or n.gpu)
    if gds is not None and not isinstance(gds, bool):
        raise TypeError(f"gds={gds!r}: expected True (GPUDirect Storage), False (DRAM bounce) or None")
    for name, v in (("dram_B", dram_B), ("cxl_B", cxl_B), ("ssd_B", ssd_B), ("remote_B", remote_B),
                    ("file_B", file_B), ("object_B", object_B)):
        if v is not None and (not np.isfinite(v) or v < 0):
            raise ValueError(f"{name}={v!r}: must be a finite number >= 0 (bytes)")
    return {
        "hbm": Tier("hbm", g.hbm_capacity_B * n.gpus_per_node, None, 0.0, g.key),
        "dram": _dram(n, g, dram_B),
        "cxl": _cxl(g, n, cxl_B, cxl_device, cxl_link),
        "ssd": _ssd(g, n, ssd_B, nvme, gds),
        "remote": _remote(g, n, remote_B, nic, transport),
        "file": _storage(g, n, file_B, file_system, nic, "file"),
        "object": _storage(g, n, object_B, object_store, nic, "object"),
    }


from kvmodel.tiers.transfers import transfer_seconds  # noqa: E402  (uses the classes above)
