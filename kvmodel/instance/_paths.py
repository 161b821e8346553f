"""Shared KV paths as servers: every segment a tier load crosses queues all of an instance's
concurrent reads and writes.

A tier's :class:`~kvmodel.tiers.TransferPath` is a chain of segments: each link (GPU PCIe link,
CXL link, NIC) and the source device (DRAM share, CXL expanders, NVMe drives, pool server).
One request puts a *demand* on each segment: the seconds of the segment's whole bandwidth its
bytes need. Reads (prefix loads) and writes (saves of new KV) share a device's media and a
half-duplex link; on a full-duplex link they flow in opposite directions and do not delay each
other, so there a read queues behind reads only.

**Processor sharing**, not FCFS: DMA engines, NVMe queues and RDMA NICs interleave the
descriptors of every transfer in flight, so ``n`` concurrent transfers each progress at ``1/n``
of the bandwidth (two loads of ``x`` bytes on one 10 GB/s link both end at ``2x / 10 GB/s``).
Closed forms per segment of utilisation ``U`` and read demand ``D``:

* open loop (M/G/1-PS, insensitive to the demand's distribution): mean sojourn ``D / (1 − U)``,
  so the delay over an idle path is ``D·U / (1 − U)``; the delay is 0 with probability
  ``(1 − U)·e^−U`` (:func:`ps_wait_prob`) and otherwise taken as exponential, which gives the
  tail (PS tails have no closed form; against an M/D/1-PS simulation this law is within 2% at
  p90 and 10-30% high at p99, highest at low load);
* closed loop of ``a`` clients (Schweitzer's mean-value analysis, exact for ``a = 1`` and for
  ``a`` clients always on the path): a request sees the others' share ``U·(a−1)/a`` of the path
  busy, sojourn ``D / (1 − U·(a−1)/a)``.

The delay of the slowest segment is the load's delay (segments work as a pipeline, so only the
bottleneck's queue shows). A segment at ``U >= 1`` is over capacity: the open loop is unstable
and names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kvmodel.base import xp as xp

__all__ = ["Segment", "path_segments", "PathLoad", "ps_open_delay", "ps_closed_factor",
           "ps_wait_prob", "held_steps"]


@dataclass(frozen=True)
class Segment:
    """One server of a path: its name, read and write bandwidth (B/s, this GPU's share) and
    whether reads and writes share it (media, half-duplex link)."""

    name: str
    read_Bps: Any   # float, or an array where tier sizes vary per element
    write_Bps: Any
    shared: bool


def path_segments(tier: Any, efficiency=1.0) -> list[Segment]:
    """The segments of ``tier``'s path (links in order, then the source device); the connector's
    ``efficiency`` scales every bandwidth (the share of line rate its software achieves). Links
    are named by their key alone (``"link pcie5-x16"``: the GPU's one host link, whichever tier
    a load comes from), devices by tier and device (``"ssd: device nvme-gen4"``)."""
    path = tier.path
    segs = [Segment(f"link {l.key}", l.achieved_bw_Bps * efficiency,
                    l.achieved_bw_Bps * efficiency, l.duplex == "half") for l in path.links]
    src_w = path.source_Bps if path.source_write_Bps is None else path.source_write_Bps
    segs.append(Segment(f"{tier.kind}: device {tier.device or path.name}",
                        path.source_Bps * efficiency, src_w * efficiency, True))
    return segs


class PathLoad:
    """Per-request read and write demand (seconds) on each segment of the tiers an instance
    loads its prefixes from; segments of the same name (a mix of tiers over one PCIe link) add.

    ``read_B`` / ``write_B``: lists of (tier, bytes per request per GPU) pairs.
    """

    def __init__(self, reads: list, writes: list, efficiency=1.0):
        self.read: dict[str, Any] = {}
        self.write: dict[str, Any] = {}
        self.shared: dict[str, bool] = {}
        self._stacks: dict[int, tuple] = {}  # (read, queued) demands stacked (:meth:`read_delay`)
        segs: dict[int, tuple] = {}  # each tier's names, shared, read and write bandwidths, once
        for pairs, out, w in ((reads, self.read, 2), (writes, self.write, 3)):
            for tier, nbytes in pairs:
                if id(tier) not in segs:
                    gs = path_segments(tier, efficiency)
                    segs[id(tier)] = tuple([getattr(g, f) for g in gs]
                                           for f in ("name", "shared", "read_Bps", "write_Bps"))
                names, shared = segs[id(tier)][:2]
                for name, sh, d in zip(names, shared, _demands(nbytes, segs[id(tier)][w])):
                    out[name] = out[name] + d if name in out else d
                    self.shared[name] = sh
        for name in self.shared:
            self.read.setdefault(name, 0.0)
            self.write.setdefault(name, 0.0)

    @property
    def empty(self) -> bool:
        return not self.shared

    def queued(self, name: str):
        """Demand per request that a read queues behind: reads, plus writes where shared."""
        return self.read[name] + (self.write[name] if self.shared[name] else 0.0)

    def utilisation(self, rate) -> dict[str, Any]:
        """Busy fraction of each segment at ``rate`` requests/s (full-duplex links: the busier
        direction)."""
        out = {}
        for name in self.shared:
            r, w = rate * self.read[name], rate * self.write[name]
            out[name] = r + w if self.shared[name] else xp.maximum(r, w)
        return out

    def write_time(self):
        """Seconds one request's save takes alone (its slowest segment)."""
        return _max_over(self.write.values())

    def delay(self, rate, clients=None):
        """Mean extra seconds a read spends on the path at ``rate`` requests/s over an idle path,
        and the probability it waits at all: open loop (``clients`` None) or closed loop of
        ``clients``. Over capacity (open loop) gives inf. The slowest segment's, the first of
        equals (with arrays every segment at once: :meth:`_at_once`, the same numbers)."""
        delay, busy = 0.0 * rate, 0.0 * rate
        if self._at_once(rate, clients):
            d, U = self._stacked_delays(rate, clients)
            k = np.argmax(np.where(d == d, d, -np.inf), axis=0)[None]  # not a number: never
            p = ps_wait_prob(U if clients is None else U * (clients - 1.0) / clients)
            worse = np.take_along_axis(d, k, 0)[0] > delay
            return (np.where(worse, np.take_along_axis(d, k, 0)[0], delay),
                    np.where(worse, np.take_along_axis(np.broadcast_to(p, d.shape), k, 0)[0], busy))
        for d, U in self._delays(rate, clients):
            p = ps_wait_prob(U if clients is None else U * (clients - 1.0) / clients)
            worse = d > delay
            delay, busy = xp.where(worse, d, delay), xp.where(worse, p, busy)
        return delay, busy

    def read_delay(self, rate, clients=None):
        """:meth:`delay`'s mean extra seconds alone (not the probability of waiting)."""
        delay = 0.0 * rate
        if self._at_once(rate, clients):
            top = np.fmax.reduce(self._stacked_delays(rate, clients)[0], axis=0)  # NaN: none
            return np.where(top > delay, top, delay)
        for d, _ in self._delays(rate, clients):
            delay = xp.where(d > delay, d, delay)
        return delay

    def _at_once(self, rate, clients) -> bool:
        """Whether the delays are taken with every segment at once (:meth:`_stacked_delays`):
        where anything is an array (scalars: segment by segment, Python floats)."""
        return bool(self.shared) and xp.is_array(rate, clients, *self.read.values(),
                                                 *self.write.values())

    def _stacked_delays(self, rate, clients) -> tuple:
        """:meth:`_delays` of every segment stacked on a leading axis: (delays, utilisations)."""
        D, Q = self._stacked(max(np.ndim(rate), np.ndim(clients)))
        U = rate * Q
        return (ps_open_delay(D, U) if clients is None
                else D * (ps_closed_factor(U, clients) - 1.0)), U

    def _stacked(self, ndim: int) -> tuple:
        """(read demand, queued demand) of every segment, stacked on a leading axis and
        broadcast to one shape of at least ``ndim`` dimensions after it."""
        if ndim not in self._stacks:
            names = list(self.shared)
            both = np.broadcast_arrays(*[self.read[n] for n in names],
                                       *[self.queued(n) for n in names])
            lead = (len(names),) + (1,) * max(ndim - both[0].ndim, 0) + both[0].shape
            self._stacks[ndim] = tuple(np.array(both[k:k + len(names)], dtype=float).reshape(lead)
                                       for k in (0, len(names)))
        return self._stacks[ndim]

    def _delays(self, rate, clients):
        """(extra seconds of a read, utilisation) on each segment, as :meth:`delay` takes them."""
        for name in self.shared:
            D, U = self.read[name], rate * self.queued(name)
            if clients is None:
                yield ps_open_delay(D, U), U
            else:
                yield D * (ps_closed_factor(U, clients) - 1.0), U

    def over(self, rate):
        """Index (into :attr:`names`, 1-based) of the first segment at utilisation >= 1 (0: none)
        and its utilisation."""
        idx, util = 0 * rate, 0.0 * rate
        for k, (name, u) in enumerate(self.utilisation(rate).items(), start=1):
            hit = (u >= 1.0) & (idx == 0)
            idx, util = xp.where(hit, k, idx), xp.where(hit, u, util)
        return idx, util

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.shared)


def _demand(nbytes, bw):
    """Seconds of bandwidth ``bw`` that ``nbytes`` need; no bytes, no demand (even on a tier of
    zero devices, bandwidth 0: inf where bytes meet it)."""
    if not isinstance(bw, np.ndarray) and bw > 0:  # the common case: one positive bandwidth
        if isinstance(nbytes, np.ndarray):
            return np.where(nbytes > 0, nbytes / bw + 0.0, 0.0)
        return nbytes / bw + 0.0 if nbytes > 0 else 0.0
    safe = xp.where(bw > 0, bw, 1.0)
    return xp.where(nbytes > 0, nbytes / safe + xp.where(bw > 0, 0.0, np.inf), 0.0)


def _demands(nbytes, bws: list) -> list:
    """:func:`_demand` of ``nbytes`` on each bandwidth of ``bws``; an array of bytes is
    compared with 0 once (the positive quotient is itself: ``+ 0.0`` changes nothing there)."""
    if not isinstance(nbytes, np.ndarray):
        return [_demand(nbytes, bw) for bw in bws]
    pos = nbytes > 0
    return [np.where(pos, nbytes / bw, 0.0) if not isinstance(bw, np.ndarray) and bw > 0
            else _demand(nbytes, bw) for bw in bws]


def _max_over(values) -> Any:
    out = 0.0
    for v in values:
        out = xp.maximum(out, v)
    return out


def ps_open_delay(D, U):
    """M/G/1-PS: mean sojourn D/(1-U) minus the demand D; inf at U >= 1."""
    ok = U < 1.0
    return xp.where(ok, D * U / xp.where(ok, 1.0 - U, 1.0), np.inf)


def ps_wait_prob(U):
    """Probability that a transfer is slowed at all: the path is busy when it starts
    (probability U) or another transfer starts during its own service (Poisson starts at the
    path's rate: 1 - e^-U), i.e. ``1 - (1 - U)·e^-U``; within 5% of the M/D/1-PS simulation
    (:class:`kvmodel.sim._path_server.PathServer`) for U in [0.1, 0.9]."""
    U = xp.minimum(xp.maximum(U, 0.0), 1.0)
    return 1.0 - (1.0 - U) * np.exp(-U)


def ps_closed_factor(U, clients):
    """Schweitzer's stretch of a demand with ``clients`` in a closed loop and utilisation ``U``:
    ``1 / (1 − U·(a−1)/a)``; capped at ``a`` (every client on the path)."""
    seen = U * xp.maximum(clients - 1.0, 0.0) / clients
    return xp.minimum(1.0 / xp.maximum(1.0 - seen, 1.0 / clients), clients)


def held_steps(load_s, step, whole=True):
    """Mean engine steps a request's KV slot is held by its prefix load (``load_s``: the load's
    mean seconds on the path, wait + transfer) before its first chunk can run, with steps of
    ``step`` seconds.

    A load that precedes the compute (``whole``; vLLM's KV connector: blocks allocated, then
    the request waits in ``WAITING_FOR_REMOTE_KVS`` and is scheduled at the first step after
    the load reports done; :mod:`kvmodel.sim` alike) starts at a step boundary and its request
    joins at the first boundary after it ends: ``ceil(L / step)`` steps, whose mean over an
    exponential L of mean ``m = load_s / step`` is ``1 / (1 − e^(−1/m))`` (1 for a short
    load, ``m + 1/2`` for a long one). A layer-wise load runs inside the request's own chunk
    steps: it holds the slot its exposed seconds only, ``m`` steps. No load: 0."""
    m = load_s / step
    safe = xp.where(m > 0, m, 1.0)
    with np.errstate(divide="ignore"):  # an endless load (m = inf) holds its slot for ever
        joined = 1.0 / -np.expm1(-1.0 / safe)
    return xp.where(m > 0, xp.where(whole, joined, m), 0.0)
