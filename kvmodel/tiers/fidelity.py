"""Fidelity report of the KV path against component-level transfer measurements.

``run_tier_validation()`` predicts every row of a CSV in the schema of
``hardware_db/measurements/kv_components.csv`` (copy bandwidth vs block size, transfer-engine
and NIXL/UCX benchmarks, GDS reads/writes, CXL, NVMe) with :func:`connector_transfer_s` and
reports absolute percentage error by connector, path and split (median and mean), plus coverage.
The ``split`` column is fixed in the data, by source, before any comparison: ``calibration``
rows come from sources that also feed a ``hardware_db`` number, ``holdout`` rows from sources
no number was taken from (never tuned to).

CSV columns: ``id``; ``path`` (``>``-separated hops, each ``memory:<key>`` -- a source device,
read or write bandwidth by direction -- or ``link:<key>``; empty when the source does not say);
``lanes`` (identical parallel paths the bytes are split over, e.g. NICs); ``connector``;
``transfer_B`` (bytes per transfer/descriptor); ``nbytes`` (bytes moved per stream);
``concurrency`` (streams sharing the path); ``direction`` (read = into the GPU/reader, write =
into the device); ``metric`` (``seconds`` per stream, or aggregate ``bandwidth_Bps``);
``value``; ``split``; ``source``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

import kvmodel.tiers as _tiers
from kvmodel.base.tables import ErrorReport, read_csv
from kvmodel.catalog.hardware import data_dir, get_link, get_memory

__all__ = ["connector_transfer_s", "path_from_spec", "load_component_rows", "component_data",
           "run_tier_validation", "TierValidationReport"]

COLUMNS = ("id", "path", "lanes", "connector", "transfer_B", "nbytes", "concurrency",
           "direction", "metric", "value", "split", "source")
METRICS = ("seconds", "bandwidth_Bps")
SPLITS = ("calibration", "holdout")
DIRECTIONS = ("read", "write")


def component_data() -> Path:
    """The bundled component measurements (``hardware_db/measurements/kv_components.csv``)."""
    return data_dir() / "measurements" / "kv_components.csv"


def connector_transfer_s(path, nbytes, transfer_B, *, connector="ideal", in_flight=None,
                         concurrent=1.0, direction="read", catalog=None):
    """Seconds to move ``nbytes`` as transfers of ``transfer_B`` over ``path`` with
    ``connector``: :func:`kvmodel.tiers.transfer_seconds` (one request's load)."""
    return _tiers.transfer_seconds(path, nbytes, transfer_B, connector=connector,
                                   in_flight=in_flight, concurrent=concurrent,
                                   direction=direction, catalog=catalog)


def path_from_spec(spec: str, direction: str = "read") -> "_tiers.TransferPath":
    """A :class:`TransferPath` from ``memory:<key>>link:<key>>...`` (see the module doc)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: must be one of {DIRECTIONS}")
    links, src_bw, src_lat, meta, depth = [], float("inf"), 0.0, 0.0, None
    for hop in filter(None, (h.strip() for h in spec.split(">"))):
        kind, _, key = hop.partition(":")
        if kind == "memory":
            m = get_memory(key)
            src_bw = m.read_bw_Bps if direction == "read" else m.write_bw_Bps
            src_lat = m.latency_s
            if m.family in _tiers.STORAGE_TIER_KINDS:  # file systems / object stores
                meta, depth = m.quantities["metadata_latency"].si, _tiers.queue_depth(m)
        elif kind == "link":
            links.append(get_link(key))
        else:
            raise ValueError(f"path={spec!r}: hop {hop!r} must be 'memory:<key>' or 'link:<key>'")
    if not links and src_bw == float("inf"):
        raise ValueError(f"path={spec!r}: no hop (expected 'memory:<key>' and/or 'link:<key>')")
    return _tiers.TransferPath(spec, tuple(links), src_bw, src_lat, source_write_Bps=src_bw,
                               in_flight=depth, request_s=meta)


def _check_row(p: Path, i: int, r: dict[str, str]) -> None:
    for col, allowed in (("metric", METRICS), ("split", SPLITS), ("direction", DIRECTIONS)):
        if r[col] not in allowed:
            raise ValueError(f"{p}: line {i}: {col}={r[col]!r}: must be one of {allowed}")
    for col in ("lanes", "transfer_B", "nbytes", "concurrency", "value"):
        try:
            ok = float(r[col]) > 0
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{p}: line {i}: {col}={r[col]!r}: must be a positive number")


def load_component_rows(path: str | Path | None = None) -> list[dict[str, str]]:
    """Read and check a component-measurement CSV; errors name the file, line and column."""
    p = Path(path) if path else component_data()
    rows = read_csv(p, COLUMNS)
    for i, r in enumerate(rows, start=2):
        _check_row(p, i, r)
    return rows


def predict_row(r: dict[str, str], catalog=None) -> float:
    """The model's value of one row, in the row's metric."""
    lanes, conc = float(r["lanes"]), float(r["concurrency"])
    nbytes = float(r["nbytes"]) / lanes
    path = path_from_spec(r["path"], r["direction"])
    t = float(connector_transfer_s(path, nbytes, float(r["transfer_B"]), connector=r["connector"],
                                   concurrent=conc, direction=r["direction"], catalog=catalog))
    return t if r["metric"] == "seconds" else conc * float(r["nbytes"]) / t


@dataclass
class TierValidationReport(ErrorReport):
    """``transfer_seconds`` against component measurements (``kvmodel validate --tiers``)."""

    def format(self) -> str:
        lines = [f"coverage: {len(self.rows)} of {self.total} rows predicted"]
        lines += [f"  skipped {n:3d}: {why}" for why, n in self.skipped.most_common()]
        for by in ("split", "connector", "path"):
            lines.append(f"\nabsolute % error by {by}:  {'n':>4} {'median':>8} {'mean':>8}")
            for k, (n, med, mean) in self.groups(by).items():
                lines.append(f"  {k[:60]:60s} {n:4d} {100 * med:7.1f}% {100 * mean:7.1f}%")
        for split in SPLITS:
            a = self.ape(split)
            if a.size:
                lines.append(f"{split}: n={a.size} median {100 * np.median(a):.1f}% "
                             f"mean {100 * a.mean():.1f}%")
        return "\n".join(lines)


def run_tier_validation(path: str | Path | None = None,
                        rows: Iterable[dict[str, str]] | None = None,
                        catalog=None) -> TierValidationReport:
    """The transfer model over component measurements (see the module doc)."""
    rows = list(rows) if rows is not None else load_component_rows(path)
    rep = TierValidationReport(total=len(rows))
    for r in rows:
        if not r["path"].strip():
            rep.skipped["path not stated by the source (NIC or device unknown)"] += 1
            continue
        pred, meas = predict_row(r, catalog), float(r["value"])
        rep.rows.append(dict(id=r["id"], connector=r["connector"], path=r["path"],
                             split=r["split"], metric=r["metric"], predicted=pred,
                             measured=meas, ape=abs(pred - meas) / meas))
    return rep
