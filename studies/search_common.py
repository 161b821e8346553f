"""Shared helper of the search_* studies: run a study into studies/results/<name>/ (journal
storage, trials.csv, plotly HTML) and print its report. Public API only."""

from __future__ import annotations

import csv
from pathlib import Path

from kvmodel import search

HERE = Path(__file__).resolve().parent


def run_and_export(space, name: str, n_trials: int, sampler: str = "tpe", out: Path | None = None):
    """Run (or resume) ``space`` for ``n_trials`` into results/<name>/study.journal; export."""
    out = out or HERE / "results" / name
    out.mkdir(parents=True, exist_ok=True)
    st = search.run(space, n_trials=n_trials, storage=str(out / "study.journal"), study_name=name,
                    sampler=sampler, progress=True)
    print(search.show(st, top=5))
    search.export(st, out)
    return st


def write_rows(path: Path, rows: list[dict]) -> None:
    """Write a list of equal-keyed dicts as a CSV table."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
