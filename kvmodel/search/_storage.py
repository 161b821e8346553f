"""Where studies live.

* ``None`` or a plain file path (default ``kvmodel-search.journal``): Optuna's journal file
  (``JournalStorage(JournalFileBackend(path))``) — embedded, nothing to start, append-only (a
  worker killed mid-write loses at most its last record), safe for several processes on one
  machine (file lock), and the fastest embedded choice: each trial appends a few log lines
  instead of running SQL transactions (measured: see ``benchmarks/search_speed.py``).
* ``sqlite:///file.db``: Optuna's RDB storage on SQLite (always works; slower per trial).
* any other SQLAlchemy URL (``postgresql+psycopg://user@host/db``, ``mysql+pymysql://...``):
  RDB storage with a heartbeat, for many worker processes on one or many machines; a trial
  whose worker died is marked FAIL by the next worker after the grace period.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_STORAGE", "open_storage", "is_url"]

DEFAULT_STORAGE = "kvmodel-search.journal"
HEARTBEAT_S = 10
GRACE_S = 30


def is_url(storage: Any) -> bool:
    return isinstance(storage, str) and "://" in storage


def open_storage(storage: Any = None, heartbeat: bool = True) -> Any:
    """An Optuna storage object for ``storage`` (None, a path, a URL, or a storage object)."""
    import optuna
    if storage is None:
        storage = DEFAULT_STORAGE
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if is_url(storage):
        kw: dict[str, Any] = {}
        if heartbeat and not storage.startswith("sqlite"):
            kw = dict(heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(storage, **kw)
    path = Path(storage)
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return optuna.storages.RDBStorage(f"sqlite:///{path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    return JournalStorage(JournalFileBackend(str(path)))
