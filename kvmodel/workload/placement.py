"""Multi-tier placement: which tier serves each prefix hit, and the traffic each tier absorbs.

With LRU tiers and the inclusion property, the blocks a hierarchy holds are the top of one LRU
stack, so the hit ratio curve ``H(C)`` of the trace splits across tiers (fastest first):

* inclusive: tier i holds the top ``C_i`` blocks (its own capacity); it serves
  ``H(C_i) − H(C_{i−1})`` of all block accesses (the ones the faster tiers miss);
* exclusive: tier i holds stack positions ``(ΣC_<i, ΣC_≤i]`` and serves
  ``H(ΣC_≤i) − H(ΣC_<i)``.

Writes (block bytes per second at a block access rate ``λ``): write-through inserts a block
into every tier that misses it, so tier i absorbs ``(1 − H(C_i))·λ`` (inclusive); write-back
writes a block into the next tier only when evicted from the one above, ``(1 − H(ΣC_<i))·λ``
(exclusive); an admission filter that writes only a fraction ``admit`` of those blocks scales
the writes (its effect on the hit ratio is the eviction policy's curve, ``method``). Reads are
the hits a tier serves. A tier's path sustains the traffic when reads plus writes (both
directions on half-duplex links) stay under its bandwidth, and the devices' media (read
bandwidth for reads, write bandwidth for writes: NVMe writes are slower than reads) keep up.
Conservation: every block written to a tier is later evicted from it or still held, and the
blocks it serves are hits on blocks it holds (``tests/workload/test_placement.py`` replays it).
Known limit: a tier of only a few request chains re-writes blocks a request's own refresh
evicts, which ``1 − H`` does not count (4–10% more writes at 50–200 blocks for chains of up
to 45 blocks in that test; within 1% from 400 blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kvmodel.tiers import Tier
from kvmodel.workload.reuse import hit_ratio_curve

__all__ = ["Placement", "place"]


@dataclass(frozen=True)
class Placement:
    tiers: tuple[str, ...]
    capacity_blocks: np.ndarray   # per tier
    hit_fraction: np.ndarray      # of all block accesses, served by each tier
    miss_fraction: float          # recomputed
    read_Bps: np.ndarray          # per tier, whole node
    write_Bps: np.ndarray
    path_Bps: np.ndarray          # per tier, whole node (inf for HBM)
    utilisation: np.ndarray       # (read + write) / path bandwidth
    sustainable: np.ndarray       # utilisation <= 1

    def table(self) -> list[dict[str, Any]]:
        """One row per tier, SI numbers (bytes/s); formatting is the caller's (CLI, app)."""
        return [dict(tier=t, capacity_blocks=int(c), hit_fraction=float(h), read_Bps=float(r),
                     write_Bps=float(w), utilisation=float(u), sustainable=bool(ok))
                for t, c, h, r, w, u, ok in zip(self.tiers, self.capacity_blocks, self.hit_fraction,
                                                self.read_Bps, self.write_Bps, self.utilisation,
                                                self.sustainable)]


def place(trace: Any, tiers: list[Tier], block_bytes: float, block_rate: float = 0.0,
          inclusive: bool = True, write: str = "through", method: str = "analytic",
          gpus_per_node: int = 8, admit: float = 1.0) -> Placement:
    """Split the hit ratio of ``trace`` over ``tiers`` (fastest first) and size their traffic.

    ``block_bytes``: KV bytes of one block for the whole node; ``block_rate``: block accesses
    per second the node serves (request rate × blocks per request); ``admit``: the fraction of
    new blocks the tiers' admission filter writes (1: all).
    """
    if write not in ("through", "back"):
        raise ValueError(f"write={write!r}; allowed: 'through', 'back'")
    if block_bytes <= 0 or block_rate < 0:
        raise ValueError("block_bytes must be > 0 and block_rate >= 0")
    if not (isinstance(admit, (int, float)) and 0.0 <= admit <= 1.0):
        raise ValueError(f"admit={admit!r}: the fraction of new blocks written must be in [0, 1]")
    if not tiers:
        raise ValueError("tiers: give at least one tier, fastest first")
    cap = np.array([np.floor(t.capacity_B / block_bytes) for t in tiers])
    if not np.all(np.isfinite(cap)):
        raise ValueError(f"tiers: capacities must be finite, got "
                         f"{[t.capacity_B for t in tiers]} bytes")
    edge = cap if inclusive else np.cumsum(cap)
    above = np.concatenate([[0.0], np.maximum.accumulate(edge)[:-1]])
    # a cache of 2**53 blocks or more holds every block of any trace that fits in memory, so
    # the hit ratio is the same as at 2**53: query there (int64 would overflow near 9.2e18)
    query = np.minimum(np.concatenate([edge, above]), 2.0**53).astype(np.int64)
    H = hit_ratio_curve(trace, query, method=method)
    H_edge, H_above = H[: len(tiers)], H[len(tiers):]
    H_edge = np.maximum.accumulate(H_edge)
    served = np.maximum(H_edge - np.concatenate([[0.0], H_edge[:-1]]), 0.0)
    insert = (1.0 - H_edge) if write == "through" else (1.0 - H_above)
    insert[0] = 1.0 - H_edge[0] if write == "through" else insert[0]
    read = served * block_rate * block_bytes
    wr = insert * block_rate * block_bytes * admit
    path = np.array([np.inf if t.path is None else t.path.bandwidth_Bps() * gpus_per_node
                     for t in tiers])
    dev_w = np.array([t.write_Bps for t in tiers])
    both = np.array([t.path is not None and any(l.duplex == "half" for l in t.path.links)
                     for t in tiers])
    link = np.where(both, (read + wr) / path, np.maximum(read, wr) / path)
    device = read / path + wr / dev_w  # a device's reads and writes share its media
    util = np.where(np.isinf(path), 0.0, np.maximum(link, device))
    return Placement(tuple(t.kind for t in tiers), cap, served, float(1.0 - H_edge[-1]), read, wr,
                     path, util, util <= 1.0)
