"""Measurement tables: CSVs read with their required columns checked, and the error report the
fidelity commands print."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

__all__ = ["read_csv", "ErrorReport"]


def read_csv(path: Path, columns: Iterable[str]) -> list[dict[str, str]]:
    """Rows of the CSV at ``path`` as dicts; a missing required column is a ValueError naming
    the file and the columns."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(columns) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        return list(reader)


@dataclass
class ErrorReport:
    """Predicted rows of a measurement table (each a dict with its ``ape``: absolute percentage
    error as a fraction), the reasons rows were skipped, and how many rows the table had."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    total: int = 0

    def ape(self, split: str | None = None) -> np.ndarray:
        """APE of every predicted row (of one ``split`` when given)."""
        return np.array([r["ape"] for r in self.rows if split is None or r.get("split") == split])

    def groups(self, by: str) -> dict[str, tuple[int, float, float]]:
        """{group: (n, median APE, mean APE)} over predicted rows."""
        g: dict[str, list[float]] = defaultdict(list)
        for r in self.rows:
            g[r[by]].append(r["ape"])
        return {k: (len(v), float(np.median(v)), float(np.mean(v))) for k, v in sorted(g.items())}
