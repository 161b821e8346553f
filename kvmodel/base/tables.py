"""CSV tables of measurements: read with their required columns checked."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

__all__ = ["read_csv"]


def read_csv(path: Path, columns: Iterable[str]) -> list[dict[str, str]]:
    """Rows of the CSV at ``path`` as dicts; a missing required column is a ValueError naming
    the file and the columns."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(columns) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        return list(reader)
