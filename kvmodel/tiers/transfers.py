"""Seconds to move KV along a tier's path, with the software (connector) that moves it.

``transfer_seconds`` is the one transfer formula the instance, cluster and simulator share::

    t = per_request + n_desc · per_block                       (software, not hidden in flight)
        + nbytes / (B · efficiency / concurrent)               (the path's sustained bandwidth)
        + ceil(n_desc / in_flight) · λ(transfer_B)             (setup of the path, hidden in flight)

``n_desc = ceil(nbytes / transfer_B)`` descriptors of ``transfer_B`` bytes; ``B`` is the path's
narrowest read (``direction="read"``) or write (``"write"``) bandwidth; ``λ`` the path's
per-transfer setup cost (:meth:`TransferPath.setup_s`). The ``ideal`` connector (zero software
cost, efficiency 1) gives exactly :meth:`TransferPath.time_s`.
"""

from __future__ import annotations

from typing import Any

from kvmodel.base import xp as xp
from kvmodel.catalog.hardware import ConnectorSpec, get_connector

__all__ = ["transfer_seconds", "DIRECTIONS", "DEFAULT_IN_FLIGHT"]

DIRECTIONS = ("read", "write")
DEFAULT_IN_FLIGHT = 8.0


def _path_of(tier_or_path: Any):
    """``(path, kind)`` of a :class:`Tier` (path None = HBM) or a bare :class:`TransferPath`."""
    if hasattr(tier_or_path, "links"):
        return tier_or_path, ""
    if hasattr(tier_or_path, "kind") and hasattr(tier_or_path, "path"):
        return tier_or_path.path, tier_or_path.kind
    raise TypeError(f"tier_or_path={tier_or_path!r}: expected a Tier or a TransferPath")


def _check(direction: str, in_flight, concurrent) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: must be one of {DIRECTIONS}")
    if in_flight is not None and not xp.any_true(in_flight >= 1):
        raise ValueError(f"in_flight={in_flight!r}: must be >= 1 (transfers in flight together)")
    if not xp.any_true(concurrent > 0):
        raise ValueError(f"concurrent={concurrent!r}: must be > 0 (users sharing the path)")


def transfer_seconds(tier_or_path, nbytes, transfer_B, *, connector: str | ConnectorSpec = "ideal",
                     in_flight=None, concurrent=1.0, direction: str = "read", catalog=None,
                     requests=1.0):
    """Seconds to move ``nbytes`` as descriptors of ``transfer_B`` bytes over a tier's path.

    ``connector`` (a ``hardware_db/connectors.toml`` key or spec) adds its per-request and
    per-descriptor costs and scales the path bandwidth by its efficiency; ``in_flight`` is the
    number of transfers outstanding together (None: the path's queue depth); ``concurrent`` users
    share the bandwidth; ``direction="write"`` uses the devices' write bandwidth; ``requests``
    is how many requests' loads the call moves (each pays the per-request cost). An HBM tier
    (no path) costs 0. Vectorised over ``nbytes``, ``transfer_B``, ``in_flight``, ``concurrent``.
    """
    path, _kind = _path_of(tier_or_path)
    _check(direction, in_flight, concurrent)
    if path is None:
        return 0.0 * nbytes
    conn = get_connector(connector, catalog)
    q = DEFAULT_IN_FLIGHT if in_flight is None else in_flight
    n = xp.ceil(nbytes / transfer_B)
    bw = path.bandwidth_Bps(concurrent, direction=direction) * conn.bandwidth_efficiency
    if not xp.any_true(bw > 0):  # a path with no bandwidth (e.g. a tier of zero devices)
        return xp.where(nbytes > 0, float("inf"), 0.0)
    wire = nbytes / bw + xp.ceil(n / q) * path.setup_s(transfer_B)
    software = xp.where(nbytes > 0, requests * conn.per_request_s + n * conn.per_block_s, 0.0)
    return wire + software
