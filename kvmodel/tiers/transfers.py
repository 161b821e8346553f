"""Seconds to move KV along a tier's path, with the software (connector) that moves it.

``transfer_seconds`` is the one transfer formula the instance, cluster and simulator share::

    t = per_request                                           (software, once per request)
        + metadata                                             (the source's per-request cost)
        + nbytes / (B · efficiency / concurrent)               (the path's sustained bandwidth)
        + max(n_desc · per_block,                              (descriptors posted by software ...
              ceil(n_desc / in_flight) · λ(transfer_B))        (... while the engines set up earlier ones)

``n_desc = ceil(nbytes / transfer_B)`` descriptors of ``transfer_B`` bytes; ``B`` is the path's
narrowest read (``direction="read"``), write (``"write"``) or concurrent both-ways (``"both"``:
each hop at its measured bidirectional efficiency) bandwidth; ``λ`` the path's per-transfer
setup cost (:meth:`TransferPath.setup_s`); ``in_flight`` defaults to the path's queue depth;
``metadata`` the path's ``request_s`` per request (a file system's open / lookup, an object
store's first byte; 0 for device and memory tiers).
With ``copy="kernel"`` on a path the GPU copies (DRAM, CXL), one SM gather kernel moves every
descriptor: one launch replaces the ``ceil(n_desc / in_flight)`` DMA setups and the hop runs at
its SM-copy rate, which wins for many small blocks. The ``ideal`` connector (zero software
cost, efficiency 1, DMA copies) gives exactly :meth:`TransferPath.time_s`.

Posting and setup overlap: a connector posts descriptors asynchronously (one batched driver call,
``cuMemcpyBatchAsync``, or a loop of async posts) while the copy engines / NIC set up and run
those already posted, so the slower of the two paces the descriptors -- a pipeline, not a sum.
The connector's ``per_block`` is measured on batched copies end to end (vLLM PR #40549: 4096
copies of 4 KB in 10.5 ms), i.e. it already contains the engines' per-copy work; adding the
path's single-copy setup on top (the H200 ``copy_`` curve: ~10.5 us per isolated call) counted it
twice (predicted 17.5 ms for that measurement).
"""

from __future__ import annotations

import math
from typing import Any

from kvmodel.base import xp as xp
from kvmodel.catalog.hardware import ConnectorSpec, get_connector

__all__ = ["transfer_seconds", "DIRECTIONS", "COPIES", "DEFAULT_IN_FLIGHT"]

DIRECTIONS = ("read", "write", "both")
COPIES = ("dma", "kernel")
DEFAULT_IN_FLIGHT = 8.0  # a bare TransferPath without a queue depth (tiers set theirs)


def _path_of(tier_or_path: Any):
    """``(path, kind)`` of a :class:`Tier` (path None = HBM) or a bare :class:`TransferPath`."""
    if hasattr(tier_or_path, "links"):
        return tier_or_path, ""
    if hasattr(tier_or_path, "kind") and hasattr(tier_or_path, "path"):
        return tier_or_path.path, tier_or_path.kind
    raise TypeError(f"tier_or_path={tier_or_path!r}: expected a Tier or a TransferPath")


def _check(direction: str, in_flight, concurrent, copy: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: must be one of {DIRECTIONS}")
    if copy not in COPIES:
        raise ValueError(f"copy={copy!r}: must be one of {COPIES} (copy engine or SM kernel)")
    if in_flight is not None and not xp.any_true(in_flight >= 1):
        raise ValueError(f"in_flight={in_flight!r}: must be >= 1 (transfers in flight together)")
    if not xp.any_true(concurrent > 0):
        raise ValueError(f"concurrent={concurrent!r}: must be > 0 (users sharing the path)")


def _setups_s(path, n, transfer_B, in_flight, copy: str):
    """Setup seconds not hidden by bandwidth: ``ceil(n / in_flight)`` DMA setups, or one SM
    copy kernel's launch where the GPU copies with a kernel."""
    if copy == "kernel" and path.gpu_copy:
        return xp.where(n > 0, path.kernel_setup_s(), 0.0)
    q = (path.in_flight or DEFAULT_IN_FLIGHT) if in_flight is None else in_flight
    return xp.ceil(n / q) * path.setup_s(transfer_B)


def transfer_seconds(tier_or_path, nbytes, transfer_B, *, connector: str | ConnectorSpec = "ideal",
                     in_flight=None, concurrent=1.0, direction: str = "read", catalog=None,
                     requests=1.0, copy: str | None = None):
    """Seconds to move ``nbytes`` as descriptors of ``transfer_B`` bytes over a tier's path.

    ``connector`` (a ``hardware_db/connectors.toml`` key or spec) adds its per-request and
    per-descriptor costs and scales the path bandwidth by its efficiency; ``in_flight`` is the
    number of transfers outstanding together (None: the path's queue depth); ``concurrent`` users
    share the bandwidth; ``direction="write"`` uses the devices' write bandwidth, ``"both"``
    moves ``nbytes`` each way at once (a save beside a load); ``requests`` is how many
    requests' loads the call moves (each pays the per-request cost); ``copy`` (``"dma"`` or
    ``"kernel"``; None: the connector's ``copy`` if it has one, else DMA) how the GPU copies
    where it does (ignored on paths another engine moves: NVMe via GDS, NICs). An HBM tier
    (no path) costs 0. Vectorised over ``nbytes``, ``transfer_B``, ``in_flight``, ``concurrent``.
    """
    path, _kind = _path_of(tier_or_path)
    conn = get_connector(connector, catalog)
    copy = (getattr(conn, "copy", None) or "dma") if copy is None else copy
    _check(direction, in_flight, concurrent, copy)
    if path is None:
        return 0.0 * nbytes
    n = xp.ceil(nbytes / transfer_B)
    bw = path.bandwidth_Bps(concurrent, direction=direction, copy=copy) * conn.bandwidth_efficiency
    if not xp.any_true(bw > 0):  # a path with no bandwidth (e.g. a tier of zero devices)
        return xp.where(nbytes > 0, float("inf"), 0.0)
    moves = nbytes > 0
    posting = xp.where(moves, n * conn.per_block_s, 0.0)
    descriptors = xp.maximum(posting, _setups_s(path, n, transfer_B, in_flight, copy))
    per_request = requests * (conn.per_request_s + getattr(path, "request_s", 0.0))
    if type(per_request) is float and per_request == 0.0 and math.copysign(1.0, per_request) > 0:
        return nbytes / bw + descriptors + 0.0  # no software cost: the same +0.0 everywhere
    software = xp.where(moves, per_request, 0.0)
    return nbytes / bw + descriptors + software
