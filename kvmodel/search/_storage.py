"""Where studies live.

* ``None`` or a plain file path (default ``kvmodel-search.journal``): Optuna's journal file
  format (``JournalStorage`` over :class:`JournalFile`, our own ``BaseJournalBackend`` with
  group commit) — embedded, nothing to start, append-only, safe for several processes on one
  machine (an ``flock`` on the file, whole-line ``O_APPEND`` writes), readable by
  optuna-dashboard and ``optuna.load_study``, and the fastest embedded choice: each finished
  trial is one appended line instead of SQL transactions (measured: see
  ``benchmarks/search_speed.py``).
  Every line is written to the operating system before the call returns, so a killed worker
  (SIGKILL) loses nothing it finished; ``fsync`` (durability against a power cut or kernel
  crash) runs at most once per ``FSYNC_EVERY_S`` second(s) and when the run ends, instead of on
  every line — on this project's machines one fsync took 0.4-4 ms, as long as a whole trial. A
  last line cut short (a crash or power cut mid-write) is removed, with a
  :class:`JournalRepaired` warning, when the file is opened (:func:`repair_torn_tail`); left
  there, the next append would glue onto it and break every later load.
* ``sqlite:///file.db``: Optuna's RDB storage on SQLite (always works; slower per trial).
* any other SQLAlchemy URL (``postgresql+psycopg://user@host/db``, ``mysql+pymysql://...``):
  RDB storage with a heartbeat, for many worker processes on one or many machines; a trial
  whose worker died is marked FAIL by the next worker after the grace period.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_STORAGE", "open_storage", "is_url", "JournalFile", "sync",
           "repair_torn_tail", "JournalRepaired", "StorageError"]

DEFAULT_STORAGE = "kvmodel-search.journal"
HEARTBEAT_S = 10
GRACE_S = 30
FSYNC_EVERY_S = 1.0


def _journal_file_class():
    import fcntl
    import json
    import os
    import time

    from optuna.storages.journal import BaseJournalBackend

    class JournalFile(BaseJournalBackend):
        """Optuna's journal file format behind the public ``BaseJournalBackend`` interface, with
        its own lock and group commit. Each append is one ``write`` of whole lines to a file
        opened with ``O_APPEND``, under an exclusive ``flock`` on the journal file itself, so
        appends of several processes never interleave; it reaches the operating system before
        the call returns (safe against SIGKILL) and is fsync'ed when ``fsync_every_s`` has
        passed since the last fsync (and by :meth:`sync`). Readers take no lock: a last line
        without its newline is a write in progress, read again next time."""

        def __init__(self, file_path: str, fsync_every_s: float = FSYNC_EVERY_S) -> None:
            self.path, self.fsync_every_s = str(file_path), float(fsync_every_s)
            self._synced, self._dirty = time.monotonic(), False
            self._offsets = [0]          # byte offset of each log number read so far
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            with self._locked():         # a writer appends whole lines under the lock: a
                repair_torn_tail(self.path)  # partial last line seen under it is torn

        def _locked(self):
            import contextlib

            @contextlib.contextmanager
            def held():
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            return held()

        def read_logs(self, log_number_from: int):
            n = min(log_number_from, len(self._offsets) - 1)   # the first line read is n
            with open(self.path, "rb") as f:
                f.seek(self._offsets[n])
                data = f.read()
            for line in data[:data.rfind(b"\n") + 1].splitlines(keepends=True):
                if n + 1 == len(self._offsets):
                    self._offsets.append(self._offsets[n] + len(line))
                if n >= log_number_from:
                    yield json.loads(line)
                n += 1

        def append_logs(self, logs: list) -> None:
            text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
            with self._locked():
                data = memoryview(text.encode("utf-8"))
                while data:
                    data = data[os.write(self._fd, data):]
                if time.monotonic() - self._synced >= self.fsync_every_s:
                    os.fsync(self._fd)
                    self._synced, self._dirty = time.monotonic(), False
                else:
                    self._dirty = True

        def sync(self) -> None:
            """fsync what was appended since the last fsync."""
            if self._dirty:
                os.fsync(self._fd)
                self._synced, self._dirty = time.monotonic(), False

        def __del__(self) -> None:
            fd, self._fd = getattr(self, "_fd", -1), -1
            if fd >= 0:
                os.close(fd)

    return JournalFile


_JOURNAL: list = []
_BACKENDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # storage -> JournalFile


def repair_torn_tail(path: Any, chunk: int = 1 << 16) -> int:
    """Cut a journal file after its last newline (the bytes after it are a record whose write
    was cut short), with a warning; returns the number of bytes removed. Call it under the
    journal's lock. Without this, the next append would glue a record onto the torn bytes and
    every later load would fail with a JSON error."""
    import os
    import warnings
    with open(path, "r+b") as f:
        size = end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            k = f.read(end - start).rfind(b"\n")
            if k >= 0:
                end = start + k + 1
                break
            end = start
        if end == size:
            return 0
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())
    warnings.warn(f"{path}: removed a torn last record ({size - end} byte(s) after the last "
                  f"complete line, from a write cut short); the trials before it are kept",
                  JournalRepaired, stacklevel=2)
    return size - end


class JournalRepaired(UserWarning):
    """A journal file's torn last record was removed on open."""


def JournalFile(file_path: str, fsync_every_s: float = FSYNC_EVERY_S):  # noqa: N802
    """A group-commit journal file backend (class built on first use: Optuna loads lazily)."""
    if not _JOURNAL:
        _JOURNAL.append(_journal_file_class())
    return _JOURNAL[0](file_path, fsync_every_s)


def sync(storage) -> None:
    """fsync a journal-file storage opened by :func:`open_storage` (no-op for others)."""
    backend = _BACKENDS.get(storage)
    if backend is not None:
        backend.sync()


def is_url(storage: Any) -> bool:
    return isinstance(storage, str) and "://" in storage


class StorageError(ValueError):
    """A storage that cannot be opened (bad URL, missing driver or file, server down)."""


def _rdb(url: str, **kw: Any) -> Any:
    import warnings

    import optuna
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, **kw)
    except Exception as exc:  # sqlalchemy's ArgumentError, NoSuchModuleError, OperationalError..
        raise StorageError(f"storage {url!r}: cannot open it ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); give a journal "
                           f"file path, sqlite:///FILE or a SQLAlchemy URL such as "
                           f"postgresql+psycopg://user@host/db") from None


def _missing(storage: Any) -> "Path | None":
    """The file a path or sqlite URL names when it does not exist (else None)."""
    if not isinstance(storage, (str, Path)):
        return None
    s = str(storage)
    if is_url(s) and not s.startswith("sqlite:///"):
        return None
    path = Path(s[len("sqlite:///"):] if is_url(s) else s)
    return None if path.exists() or s == "sqlite:///:memory:" else path


def open_storage(storage: Any = None, heartbeat: bool = True, create: bool = True) -> Any:
    """An Optuna storage object for ``storage`` (None, a path, a URL, or a storage object).
    ``create=False``: a missing journal or SQLite file is a :class:`StorageError` (read-only
    use: nothing is created)."""
    import optuna
    if storage is None:
        storage = DEFAULT_STORAGE
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not create and _missing(storage) is not None:
        raise StorageError(f"storage {str(storage)!r}: no such file ({_missing(storage)})")
    if is_url(storage):
        kw: dict[str, Any] = {}
        if heartbeat and not storage.startswith("sqlite"):
            kw = dict(heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        return _rdb(storage, **kw)
    path = Path(storage)
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return _rdb(f"sqlite:///{path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalStorage
    backend = JournalFile(str(path))
    opened = JournalStorage(backend)
    _BACKENDS[opened] = backend
    return opened
