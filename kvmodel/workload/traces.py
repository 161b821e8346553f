"""Request traces: loaders for public trace formats and a seeded synthetic workload generator.

Everything produces a :class:`~kvmodel.workload._trace_types.Trace` (arrival times in seconds from the
trace start, prompt/output token counts, CSR-stored prefix-block hash chains).

Supported file formats (``load_trace(path, format=...)``; ``format=None`` auto-detects)
-----------------------------------------------------------------------------------------

``"mooncake"`` -- Mooncake FAST'25 JSON Lines, one object per line::

    {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, ...]}

  ``timestamp`` is in milliseconds from the trace start (arrival_s = timestamp / 1000);
  ``hash_ids`` has one chained id per ``block_tokens`` (512) input tokens, the last block may be
  partial, so ``len(hash_ids) == ceil(input_length / block_tokens)`` is required.
  The published conversation trace's timestamps are quantised to 3 s ticks (~10 requests per
  tick at one instant). Loaded as published; :meth:`Trace.spread_ticks` spreads each tick's
  requests over the tick for a replay that should not run them as simultaneous bursts (the
  simulator's p99 TPOT on 4-8 instances depends on it, ``benchmarks/router_tpot_arrivals.py``).

``"azure"`` -- Azure LLM inference trace 2023 CSV with header
  ``TIMESTAMP,ContextTokens,GeneratedTokens``; ``TIMESTAMP`` is a wall-clock string such as
  ``2023-11-16 18:15:46.6805900`` (any 0-9 fractional digits, ``T`` or space separator, no time
  zone). Arrivals are seconds relative to the first accepted row (so they start at 0).
  **Azure traces carry no prefix information**: every request gets an empty hash chain
  (``block_offsets`` all 0, ``block_ids`` empty), so prefix-reuse models see no sharing.

``"generic"`` -- this package's own format, as CSV (with a header row) or JSON Lines:

  =============  ========  =========================================================
  column / key   required  meaning
  =============  ========  =========================================================
  ``arrival_s``  yes       arrival time, float seconds >= 0 from the trace start
  ``input_len``  yes       prompt tokens, integer >= 0
  ``output_len`` yes       generated tokens, integer >= 0
  ``hash_ids``   no        chained prefix-block ids, integers >= 0, exactly
                           ``ceil(input_len / block_tokens)`` of them. JSONL: a JSON list.
                           CSV: space-separated integers (``"0 7 9"``; a JSON list
                           ``"[0, 7, 9]"`` is accepted too); an empty cell is an empty list.
  ``session``    no        integer >= 0 naming the conversation the request belongs to
  =============  ========  =========================================================

  Optional columns are all-or-nothing: in CSV the header decides; in JSONL the first accepted
  record decides and every later record must agree. Extra columns/keys are ignored.
  Without ``hash_ids`` the trace has no prefix information (as for Azure).

Common rules for every format: blank lines are ignored; arrival times must be non-decreasing
in file order (an earlier time than the previous accepted request is an error, not re-sorted);
lengths must be non-negative integers. A malformed line raises ``ValueError`` naming the file,
line number and field, e.g. ``conv.jsonl: line 17: input_length='abc' must be a non-negative
integer``; with ``skip_bad=True`` it is skipped and counted in the :class:`LoadReport`.

Sessions: only ``generic`` files carry a ``session`` column; none of the built-in traces
does (Mooncake's and Azure's rows are single requests). :func:`infer_sessions` recovers the
conversations of a trace with prefix hashes from its chains (a turn extends the previous
turn's blocks): on ``mooncake-conversation`` it finds 2,223 multi-turn sessions holding 5,531
of the 12,031 requests (up to 17 turns), on ``mooncake-synthetic`` 268 holding 537 of 3,993;
Azure traces have no hashes, so every request stays a session of its own.
``synthetic_trace`` fills ``session`` itself.

Auto-detection: ``.jsonl``/``.json``/``.ndjson`` files (or any file whose first non-blank
character is ``{``) are JSON Lines: mooncake if the first record has ``timestamp``/
``input_length``, generic if it has ``arrival_s``. Otherwise CSV: azure if the header has
``TIMESTAMP`` and ``ContextTokens``, generic if it has ``arrival_s``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from kvmodel.workload._sessions import infer_sessions
from kvmodel.workload._trace_types import Trace

__all__ = ["load_trace", "load_trace_with_report", "LoadReport", "detect_format",
           "synthetic_trace", "FORMATS", "BUILTIN", "BuiltinTrace", "builtin_path",
           "resolve_trace", "TraceNotFoundError", "infer_sessions"]

FORMATS = ("mooncake", "azure", "generic")
MAX_REPORTED_ERRORS = 20
_JSON_SUFFIXES = {".jsonl", ".json", ".ndjson"}
_INT64_MAX = 2**63 - 1
_REQUIRED = {"mooncake": ("timestamp", "input_length", "output_length", "hash_ids"),
             "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
             "generic": ("arrival_s", "input_len", "output_len")}


# ---------------------------------------------------------------- built-in traces

DATA_DIR = Path(__file__).resolve().parents[1] / "_data" / "traces"


@dataclass(frozen=True)
class BuiltinTrace:
    """A public trace bundled inside the package (licence, citation and sha256 in
    ``kvmodel/_data/traces/README.md``)."""
    name: str
    file: str
    format: str
    requests: int
    size_B: int
    sha256: str
    licence: str
    source: str
    citation: str
    prefix_hashes: bool

    @property
    def path(self) -> Path:
        return DATA_DIR / self.file


_MOONCAKE = ("GitHub kvcache-ai/Mooncake FAST25-release/traces/ @ 3cca71da",
             "Qin et al., Mooncake: Trading More Storage for Less Computation, USENIX FAST 2025")
_AZURE = ("GitHub Azure/AzurePublicDataset data/ @ 79092101",
          "Patel et al., Splitwise: Efficient generative LLM inference using phase splitting, "
          "ISCA 2024")
BUILTIN: dict[str, BuiltinTrace] = {t.name: t for t in (
    BuiltinTrace("mooncake-conversation", "conversation_trace.jsonl", "mooncake", 12_031,
                 3_029_533, "b8cbb061a85206d729d91cdc2981f43c9e0d99209dce588d3af5f7934408b9df",
                 "Apache-2.0", *_MOONCAKE, True),
    BuiltinTrace("mooncake-synthetic", "synthetic_trace.jsonl", "mooncake", 3_993, 1_136_313,
                 "bd070915a98fc0ed264d7cfef2ce746002eb3076a695ec31ba2674c0111ec131",
                 "Apache-2.0", *_MOONCAKE, True),
    BuiltinTrace("azure-code-2023", "AzureLLMInferenceTrace_code.csv", "azure", 8_819, 320_117,
                 "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6",
                 "CC-BY-4.0", *_AZURE, False),
    BuiltinTrace("azure-conv-2023", "AzureLLMInferenceTrace_conv.csv", "azure", 19_366, 719_188,
                 "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8",
                 "CC-BY-4.0", *_AZURE, False),
)}
# earlier spellings (search spaces of kvmodel 0.1) -> built-in names
_ALIASES = {"mooncake:conversation": "mooncake-conversation",
            "mooncake:synthetic": "mooncake-synthetic"}


class TraceNotFoundError(FileNotFoundError):
    """A trace given by name or path that is neither a built-in trace nor an existing file."""


def builtin_path(name: str) -> Path:
    """Path of the bundled file of built-in trace ``name`` (KeyError listing the names)."""
    name = _ALIASES.get(name, name)
    if name not in BUILTIN:
        raise KeyError(f"trace {name!r} is not a built-in trace; built-in: {sorted(BUILTIN)}")
    path = BUILTIN[name].path
    if not path.is_file():
        raise TraceNotFoundError(f"built-in trace {name!r}: {path} is missing "
                                 f"(broken installation: reinstall kvmodel)")
    return path


def resolve_trace(trace: str | Path, base_dir: str | Path | None = None) -> tuple[Path, str]:
    """(file path, display name) of a built-in trace name or a trace file path.

    A name in :data:`BUILTIN` (or an earlier alias) wins over a file of the same name; a
    relative path is taken from ``base_dir`` when given. Raises :class:`TraceNotFoundError`
    naming the file and the built-in names when neither exists.
    """
    if isinstance(trace, str) and (trace in BUILTIN or trace in _ALIASES):
        name = _ALIASES.get(trace, trace)
        return builtin_path(name), name
    path = Path(trace)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        what = "is a directory, not a trace file" if path.is_dir() else "not found"
        raise TraceNotFoundError(f"trace {str(trace)!r}: {path} {what}; give a trace file "
                                 f"path or a built-in trace name: {', '.join(BUILTIN)}")
    return path, path.name


@dataclass
class LoadReport:
    """What :func:`load_trace_with_report` did: rows kept, rows skipped, first error messages."""
    path: str
    format: str
    rows: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # at most MAX_REPORTED_ERRORS messages


class _RowError(ValueError):
    """A problem with one input row (the caller adds file name and line number)."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(name: str, value: Any, need: str) -> _RowError:
    return _RowError(f"{name}={_short(value)} {need}")


# ---------------------------------------------------------------- field converters

def _json_int(rec: dict, name: str) -> int:
    value = _field(rec, name)
    if type(value) is not int or not 0 <= value <= _INT64_MAX:
        raise _bad(name, value, "must be a non-negative integer")
    return value


def _json_time(rec: dict, name: str) -> float:
    value = _field(rec, name)
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise _bad(name, value, "must be a finite non-negative number")
    return value


def _field(rec: dict, name: str) -> Any:
    try:
        return rec[name]
    except KeyError:
        raise _RowError(f"missing field {name!r}") from None


def _check_ids(name: str, value: Any) -> list[int]:
    """Return ``value`` if it is a list of ints in [0, 2**63); else raise naming the element."""
    if type(value) is not list:
        raise _bad(name, value, "must be a list of non-negative integers")
    if value and (not set(map(type, value)) <= {int} or min(value) < 0 or max(value) > _INT64_MAX):
        i, v = next((i, v) for i, v in enumerate(value)
                    if type(v) is not int or not 0 <= v <= _INT64_MAX)
        raise _RowError(f"{name}[{i}]={_short(v)} must be a non-negative 64-bit integer")
    return value


def _str_int(name: str, text: str) -> int:
    s = text.strip()
    if not (s.isascii() and s.isdigit()) or int(s) > _INT64_MAX:
        raise _bad(name, text, "must be a non-negative integer")
    return int(s)


def _str_time(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise _bad(name, text, "must be a finite non-negative number")
    return value


def _str_ids(name: str, text: str) -> list[int]:
    s = text.strip()
    if s.startswith("["):
        try:
            return _check_ids(name, json.loads(s))
        except json.JSONDecodeError:
            raise _bad(name, text, "is not a valid JSON list") from None
    return [_str_int(f"{name}[{i}]", tok) for i, tok in enumerate(s.split())]


def _json_object(line: str) -> dict:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _RowError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if type(rec) is not dict:
        raise _RowError(f"expected a JSON object, got {type(rec).__name__}")
    return rec


# ---------------------------------------------------------------- row parsers
# A row is (time, input_len, output_len, hash_ids or None, session or None).

_Row = tuple[float, int, int, "list[int] | None", "int | None"]


def _parse_mooncake(line: str) -> _Row:
    rec = _json_object(line)
    return (_json_time(rec, "timestamp"), _json_int(rec, "input_length"),
            _json_int(rec, "output_length"), _check_ids("hash_ids", _field(rec, "hash_ids")), None)


def _parse_generic_json(line: str) -> _Row:
    rec = _json_object(line)
    ids = _check_ids("hash_ids", rec["hash_ids"]) if "hash_ids" in rec else None
    sess = _json_int(rec, "session") if "session" in rec else None
    return (_json_time(rec, "arrival_s"), _json_int(rec, "input_len"),
            _json_int(rec, "output_len"), ids, sess)


def _generic_csv_parser(cols: dict[str, int]) -> Callable[[list[str]], _Row]:
    it, ii, io = cols["arrival_s"], cols["input_len"], cols["output_len"]
    ih, isess = cols.get("hash_ids"), cols.get("session")

    def parse(row: list[str]) -> _Row:
        ids = None if ih is None else _str_ids("hash_ids", row[ih])
        sess = None if isess is None else _str_int("session", row[isess])
        return (_str_time("arrival_s", row[it]), _str_int("input_len", row[ii]),
                _str_int("output_len", row[io]), ids, sess)
    return parse


_AZURE_TS = re.compile(r"\s*(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{0,9}))?\s*$")
_EPOCH = datetime(1970, 1, 1)


def _azure_seconds(text: str) -> tuple[int, float]:
    """Parse an Azure TIMESTAMP into (whole seconds since 1970, fraction); naive wall clock."""
    m = _AZURE_TS.match(text)
    try:
        dt = datetime.fromisoformat(f"{m[1]}T{m[2]}") if m else None
    except ValueError:
        dt = None
    if dt is None:
        raise _bad("TIMESTAMP", text, "must be a time like '2023-11-16 18:15:46.6805900'")
    frac = int(m[3]) / 10 ** len(m[3]) if m[3] else 0.0
    return (dt - _EPOCH) // timedelta(seconds=1), frac


def _azure_csv_parser(cols: dict[str, int]) -> Callable[[list[str]], _Row]:
    it, ii, io = cols["TIMESTAMP"], cols["ContextTokens"], cols["GeneratedTokens"]
    ref: list[int] = []  # whole seconds of the first parsed row, keeps float precision

    def parse(row: list[str]) -> _Row:
        whole, frac = _azure_seconds(row[it])
        if not ref:
            ref.append(whole)
        return (float(whole - ref[0]) + frac, _str_int("ContextTokens", row[ii]),
                _str_int("GeneratedTokens", row[io]), None, None)
    return parse


# ---------------------------------------------------------------- accumulation

@dataclass
class _Spec:
    """Per-format names used in messages; parsed times / time_divisor = seconds."""
    time_field: str
    input_field: str
    time_divisor: float = 1.0


_SPECS = {"mooncake": _Spec("timestamp", "input_length", 1000.0),
          "azure": _Spec("TIMESTAMP", "ContextTokens"),
          "generic": _Spec("arrival_s", "input_len")}


class _Builder:
    """Collects validated rows as Python lists; turns them into a Trace at the end."""

    def __init__(self, label: str, spec: _Spec, block_tokens: int, report: LoadReport,
                 skip_bad: bool) -> None:
        self.label, self.spec, self.bt, self.report, self.skip_bad = (
            label, spec, block_tokens, report, skip_bad)
        self.t: list[float] = []
        self.inp: list[int] = []
        self.out: list[int] = []
        self.nblk: list[int] = []
        self.ids: list[int] = []
        self.sess: list[int] = []
        self.has: tuple[bool, bool] | None = None  # (hash_ids present, session present)

    def add(self, row: _Row) -> None:
        """Check one parsed row against the trace so far and append it (raises _RowError)."""
        t, inp, out, ids, sess = row
        has = (ids is not None, sess is not None)
        if self.has is not None and has != self.has:
            k = 0 if has[0] != self.has[0] else 1
            name, was = ("hash_ids", "session")[k], "had" if self.has[k] else "lacked"
            raise _RowError(f"{name} must be given for every request or for none "
                            f"(the first accepted request {was} it)")
        if self.t and t < self.t[-1]:
            back = (self.t[-1] - t) / self.spec.time_divisor
            raise _RowError(f"{self.spec.time_field} goes back {back:.6g} s from the previous "
                            "accepted request (arrival times must be non-decreasing)")
        if ids is not None and len(ids) != -(-inp // self.bt):
            raise _RowError(f"hash_ids has {len(ids)} entries, expected ceil({self.spec.input_field}"
                            f"/{self.bt}) = ceil({inp}/{self.bt}) = {-(-inp // self.bt)}")
        self.has = has
        self.t.append(t)
        self.inp.append(inp)
        self.out.append(out)
        if ids is not None:
            self.nblk.append(len(ids))
            self.ids.extend(ids)
        if sess is not None:
            self.sess.append(sess)

    def fail(self, lineno: int, err: Exception) -> None:
        """Raise ValueError naming file and line, or record the skip when skip_bad."""
        msg = f"{self.label}: line {lineno}: {err}"
        if not self.skip_bad:
            raise ValueError(msg) from None
        self.report.skipped += 1
        if len(self.report.errors) < MAX_REPORTED_ERRORS:
            self.report.errors.append(msg)

    def build(self, name: str, relative: bool) -> Trace:
        """Convert the lists to arrays (seconds; shifted to start at 0 when ``relative``)."""
        n = len(self.t)
        t = np.array(self.t, dtype=np.float64) / self.spec.time_divisor
        if relative and n:
            t -= t[0]
        nblk = np.array(self.nblk if self.nblk else np.zeros(n), dtype=np.int64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(nblk, out=offsets[1:])
        session = np.array(self.sess, dtype=np.int64) if self.has and self.has[1] else None
        self.report.rows = n
        return Trace(t, np.array(self.inp, dtype=np.int64).reshape(n),
                     np.array(self.out, dtype=np.int64).reshape(n), offsets,
                     np.array(self.ids, dtype=np.int64), self.bt, name, session)


# ---------------------------------------------------------------- file reading

def _is_jsonl(path: Path, first_line: str) -> bool:
    if path.suffix.lower() in _JSON_SUFFIXES:
        return True
    return path.suffix.lower() != ".csv" and first_line.lstrip().startswith("{")


def _first_line(path: Path) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return next((line for line in f if line.strip()), "")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name}: not a UTF-8 text trace file (binary or another "
                         f"encoding): {exc}") from None


def detect_format(path: str | Path) -> str:
    """Return 'mooncake', 'azure' or 'generic' for ``path`` from its extension and first record.

    Raises ValueError (naming the file) when the file is empty or matches no known format.
    """
    path = Path(path)
    first = _first_line(path)
    if not first:
        raise ValueError(f"{path.name}: file is empty, cannot detect its trace format")
    if _is_jsonl(path, first):
        try:
            keys = set(json.loads(first))
        except (json.JSONDecodeError, TypeError):
            raise ValueError(f"{path.name}: first record is not a JSON object") from None
        found = ("mooncake" if keys & {"timestamp", "input_length"} else
                 "generic" if "arrival_s" in keys else None)
    else:
        keys = {c.strip() for c in next(csv.reader([first]))}
        found = ("azure" if {"TIMESTAMP", "ContextTokens"} <= keys else
                 "generic" if "arrival_s" in keys else None)
    if found is None:
        raise ValueError(f"{path.name}: unknown trace format (fields {sorted(keys)}); "
                         f"pass format= one of {FORMATS}")
    return found


def _json_rows(f, parse) -> Iterator[tuple[int, Callable[[], _Row]]]:
    for lineno, line in enumerate(f, 1):
        if line.strip():
            yield lineno, lambda line=line: parse(line)


def _csv_rows(f, fmt: str, label: str) -> Iterator[tuple[int, Callable[[], _Row]]]:
    reader = csv.reader(f)
    header = next((r for r in reader if any(c.strip() for c in r)), None)
    if header is None:
        return
    cols = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in _REQUIRED[fmt] if c not in cols]
    if missing:
        raise ValueError(f"{label}: line {reader.line_num}: header lacks column(s) {missing} "
                         f"required by the {fmt!r} format (header: {header})")
    parse = _azure_csv_parser(cols) if fmt == "azure" else _generic_csv_parser(cols)
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        yield reader.line_num, (lambda row=row: _checked_csv(row, len(header), parse))


def _checked_csv(row: list[str], width: int, parse) -> _Row:
    if len(row) != width:
        raise _RowError(f"expected {width} comma-separated fields, got {len(row)}")
    return parse(row)


def load_trace_with_report(path: str | Path, format: str | None = None, *, skip_bad: bool = False,
                           block_tokens: int = 512) -> tuple[Trace, LoadReport]:
    """Load a trace file and report what was skipped.

    ``format`` is 'mooncake', 'azure', 'generic' or None (auto-detect, see module docstring).
    Without ``skip_bad`` the first malformed line raises ValueError("<file>: line <n>: <field>...");
    with it, malformed lines are skipped, counted in ``report.skipped`` and the first
    MAX_REPORTED_ERRORS messages kept in ``report.errors``. A missing required CSV column or
    an undetectable format always raises. ``path`` may also be a built-in trace name
    (:data:`BUILTIN`, e.g. ``"mooncake-conversation"``); the trace is named after the built-in
    name or the file. A missing file raises :class:`TraceNotFoundError` (a FileNotFoundError)
    naming the file and the built-in names.
    """
    path, display = resolve_trace(path)
    if format is None and display in BUILTIN:
        format = BUILTIN[display].format
    fmt = format if format is not None else detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: must be one of {FORMATS} or None")
    if block_tokens < 1:
        raise ValueError(f"block_tokens={block_tokens}: must be >= 1")
    report = LoadReport(str(path), fmt)
    builder = _Builder(display, _SPECS[fmt], block_tokens, report, skip_bad)
    with open(path, encoding="utf-8", newline="") as f:
        json_like = fmt == "mooncake" or (fmt == "generic" and _is_jsonl(path, _first_line(path)))
        rows = (_json_rows(f, _parse_mooncake if fmt == "mooncake" else _parse_generic_json)
                if json_like else _csv_rows(f, fmt, path.name))
        try:
            for lineno, parse in rows:
                try:
                    builder.add(parse())
                except _RowError as err:
                    builder.fail(lineno, err)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path.name}: not UTF-8 text after {report.rows} requests "
                             f"(binary or another encoding): {exc}") from None
    return builder.build(display, relative=fmt == "azure"), report


def load_trace(path: str | Path, format: str | None = None, skip_bad: bool = False,
               block_tokens: int = 512) -> Trace:
    """Load a built-in trace by name (``"mooncake-conversation"``, ``"mooncake-synthetic"``,
    ``"azure-code-2023"``, ``"azure-conv-2023"``; see :data:`BUILTIN`) or a Mooncake / Azure /
    generic trace file as a :class:`Trace` (see module docstring).

    Same as :func:`load_trace_with_report` but returns only the trace; use that function to
    learn how many lines ``skip_bad=True`` skipped.
    """
    return load_trace_with_report(path, format, skip_bad=skip_bad, block_tokens=block_tokens)[0]


# ---------------------------------------------------------------- synthetic workloads

@dataclass(frozen=True)
class _Plan:
    """Per-turn arrays of the generated workload, before truncation (one entry per turn)."""
    arrival_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    session: np.ndarray
    system: np.ndarray       # system prompt index of the turn's session, -1 for none


# Size limits of synthetic_trace, checked before anything large is allocated.
MAX_SYNTHETIC_REQUESTS = 10_000_000
MAX_SYNTHETIC_TOKENS = 1_000_000       # per system prompt, mean user message, mean answer
MAX_SYNTHETIC_BLOCKS = 50_000_000      # prefix-block ids in the whole trace (400 MB of int64)
MAX_SYNTHETIC_TURNS = 20_000_000       # n_requests x turns_mean: turns planned before the cut


def _check_synth_args(n_requests: int, arrival: str, rate_per_s: float, burst_cv: float,
                      session_fraction: float, turns_mean: float, **nonneg: float) -> None:
    if isinstance(n_requests, bool) or not isinstance(n_requests, (int, np.integer)) or \
            not 0 <= n_requests <= MAX_SYNTHETIC_REQUESTS:
        raise ValueError(f"n_requests={n_requests!r}: must be an integer in "
                         f"[0, {MAX_SYNTHETIC_REQUESTS:,}]")
    for name in ("system_prompt_tokens", "user_tokens_mean", "output_tokens_mean"):
        if nonneg.get(name, 0) > MAX_SYNTHETIC_TOKENS:
            raise ValueError(f"{name}={nonneg[name]!r}: must be <= {MAX_SYNTHETIC_TOKENS:,} tokens")
    if nonneg.get("n_system_prompts", 0) > MAX_SYNTHETIC_REQUESTS:
        raise ValueError(f"n_system_prompts={nonneg['n_system_prompts']!r}: must be <= "
                         f"{MAX_SYNTHETIC_REQUESTS:,}")
    if not 1 <= turns_mean <= MAX_SYNTHETIC_TURNS / max(n_requests, 1):
        raise ValueError(f"turns_mean={turns_mean}: must be >= 1 and n_requests x turns_mean "
                         f"<= {MAX_SYNTHETIC_TURNS:,} (turns planned before the cut)")
    if arrival not in ("poisson", "bursty"):
        raise ValueError(f"arrival={arrival!r}: must be 'poisson' or 'bursty'")
    if not rate_per_s > 0 or not burst_cv > 0:
        raise ValueError(f"rate_per_s={rate_per_s}, burst_cv={burst_cv}: both must be > 0")
    if not 0 <= session_fraction <= 1:
        raise ValueError(f"session_fraction={session_fraction}: must be in [0, 1]")
    if not turns_mean >= 1:
        raise ValueError(f"turns_mean={turns_mean}: must be >= 1")
    for name, value in nonneg.items():
        if not value >= 0:
            raise ValueError(f"{name}={value}: must be >= 0")


def _session_starts(rng: np.random.Generator, m: int, arrival: str, rate: float,
                    cv: float) -> np.ndarray:
    """Start times of ``m`` sessions: Poisson or gamma(cv) renewal process at ``rate``, from 0."""
    mean = 1.0 / rate
    if arrival == "poisson":
        gaps = rng.exponential(mean, m)
    else:
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, mean / shape, m)
    return np.concatenate([[0.0], np.cumsum(gaps[:-1])]) if m else np.zeros(0)


def _per_session_cumsum(values: np.ndarray, first: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum of ``values`` restarted at each session's first turn."""
    c = np.cumsum(values)
    base = c[first] - values[first]
    return c - np.repeat(base, turns)


def _geometric(rng: np.random.Generator, mean: float, size: int) -> np.ndarray:
    """Integers >= 1 with the given mean (discrete exponential)."""
    return rng.geometric(1.0 / max(mean, 1.0), size).astype(np.int64)


def _plan(rng: np.random.Generator, m: int, arrival: str, rate_per_s: float, burst_cv: float,
          n_system_prompts: int, system_prompt_tokens: int, zipf_alpha: float,
          session_fraction: float, turns_mean: float, think_time_s: float,
          user_tokens_mean: float, output_tokens_mean: float) -> _Plan:
    """Draw ``m`` complete sessions (all their turns); the draw order fixes the seed contract."""
    mean_turns = 1.0 - session_fraction + session_fraction * turns_mean
    starts = _session_starts(rng, m, arrival, rate_per_s / mean_turns, burst_cv)
    multi = rng.random(m) < session_fraction
    turns = np.where(multi, _geometric(rng, turns_mean, m), 1).astype(np.int64)
    if n_system_prompts > 0 and system_prompt_tokens > 0:
        weights = 1.0 / np.arange(1, n_system_prompts + 1) ** zipf_alpha
        system = rng.choice(n_system_prompts, size=m, p=weights / weights.sum())
    else:
        system = np.full(m, -1)
    n_turns = int(turns.sum())
    first = np.cumsum(turns) - turns
    session = np.repeat(np.arange(m, dtype=np.int64), turns)
    think = rng.exponential(think_time_s, n_turns)
    think[first] = 0.0
    user = _geometric(rng, user_tokens_mean, n_turns)
    out = _geometric(rng, output_tokens_mean, n_turns)
    prefix = np.where(system >= 0, system_prompt_tokens, 0).astype(np.int64)
    arrival_s = starts[session] + _per_session_cumsum(think, first, turns)
    input_len = prefix[session] + _per_session_cumsum(user + out, first, turns) - out
    return _Plan(arrival_s, input_len, out, session, system[session])


class _BlockNamer:
    """Hands out chained block ids: one id per distinct (parent id, block content) pair.

    Block ``j`` of a request covers its tokens ``[j*B, min((j+1)*B, input_len))``. Content is
    the system prompt's (keyed by prompt index) while the block ends inside it, else the
    session's own (keyed by session); both keys include ``j`` and the block's token count, so
    a partial tail block differs from the full block a later turn has at the same position.
    """

    def __init__(self, block_tokens: int, system_prompt_tokens: int) -> None:
        self.bt, self.sys_tokens = block_tokens, system_prompt_tokens
        self.table: dict[tuple, int] = {}
        self.full: dict[int, list[int]] = {}  # session -> ids of its full blocks so far

    def _id(self, parent: int, content: tuple) -> int:
        return self.table.setdefault((parent, content), len(self.table))

    def _content(self, session: int, system: int, j: int, n_tok: int) -> tuple:
        if system >= 0 and j * self.bt + n_tok <= self.sys_tokens:
            return ("system", system, j, n_tok)
        return ("session", session, j, n_tok)

    def chain(self, session: int, system: int, n_tokens: int) -> list[int]:
        full = self.full.setdefault(session, [])
        n_full, rest = divmod(n_tokens, self.bt)
        for j in range(len(full), n_full):
            full.append(self._id(full[-1] if j else -1, self._content(session, system, j, self.bt)))
        ids = full[:n_full]
        if rest:
            ids.append(self._id(ids[-1] if n_full else -1,
                                self._content(session, system, n_full, rest)))
        return ids


def synthetic_trace(n_requests: int, *, seed: int = 0, arrival: str = "poisson",
                    rate_per_s: float = 1.0, burst_cv: float = 3.0, n_system_prompts: int = 8,
                    system_prompt_tokens: int = 2048, zipf_alpha: float = 1.0,
                    session_fraction: float = 0.5, turns_mean: float = 4.0,
                    think_time_s: float = 30.0, user_tokens_mean: float = 256.0,
                    output_tokens_mean: float = 256.0, block_tokens: int = 512,
                    name: str | None = None) -> Trace:
    """Seeded synthetic chat workload with shared system prompts and multi-turn sessions.

    Model: sessions start as a renewal process -- Poisson (``arrival="poisson"``) or gamma
    inter-arrivals with coefficient of variation ``burst_cv`` (``"bursty"``; cv > 1 is
    burstier than Poisson, ``burst_cv`` is ignored for Poisson) -- at rate
    ``rate_per_s / E[turns]``, so ``rate_per_s`` is the long-run request rate. A fraction
    ``session_fraction`` of sessions is multi-turn with a geometric number of turns of mean
    ``turns_mean``; the others have one turn. Each session opens with one of
    ``n_system_prompts`` system prompts of ``system_prompt_tokens`` tokens, chosen with Zipf
    popularity ``P(k) ~ 1/k**zipf_alpha`` (0 = uniform; 0 prompts or tokens = none). Turn k's
    prompt is turn k-1's prompt + its answer + a new user message, and arrives an exponential
    think time (mean ``think_time_s``, measured arrival to arrival) after turn k-1. User and
    answer lengths are geometric (at least 1 token) with the given means.

    Output: the first ``n_requests`` requests by arrival time (sessions still running at the
    cut lose their later turns), arrivals from 0, ``session`` filled (session index, in order
    of first arrival). Hash ids follow the chained-prefix convention (see :class:`_BlockNamer`):
    requests with the same system prompt share its full blocks, each turn's full blocks are a
    prefix of the next turn's chain, ``len(ids) == ceil(input_len / block_tokens)``, and ids are
    numbered in order of first appearance. The same arguments give identical arrays in any
    process (numpy ``default_rng(seed)``, no use of Python's salted ``hash``).
    """
    _check_synth_args(n_requests, arrival, rate_per_s, burst_cv, session_fraction, turns_mean,
                      n_system_prompts=n_system_prompts, system_prompt_tokens=system_prompt_tokens,
                      zipf_alpha=zipf_alpha, think_time_s=think_time_s,
                      user_tokens_mean=user_tokens_mean, output_tokens_mean=output_tokens_mean)
    if block_tokens < 1:
        raise ValueError(f"block_tokens={block_tokens}: must be >= 1")
    # n sessions always suffice: every session beyond the n-th starts after n requests arrived.
    plan = _plan(np.random.default_rng(seed), n_requests, arrival, rate_per_s, burst_cv,
                 n_system_prompts, system_prompt_tokens, zipf_alpha, session_fraction,
                 turns_mean, think_time_s, user_tokens_mean, output_tokens_mean)
    keep = np.argsort(plan.arrival_s, kind="stable")[:n_requests]
    blocks = int(np.sum(-(-plan.input_len[keep] // block_tokens)))
    if blocks > MAX_SYNTHETIC_BLOCKS:
        raise ValueError(f"synthetic_trace: these arguments make {blocks:,} prefix blocks of "
                         f"{block_tokens} tokens (limit {MAX_SYNTHETIC_BLOCKS:,}): lower "
                         f"n_requests, turns_mean or the token means, or raise block_tokens")
    namer = _BlockNamer(block_tokens, system_prompt_tokens)
    chains = [namer.chain(s, p, n) for s, p, n in zip(plan.session[keep].tolist(),
                                                      plan.system[keep].tolist(),
                                                      plan.input_len[keep].tolist())]
    offsets = np.zeros(n_requests + 1, dtype=np.int64)
    np.cumsum([len(c) for c in chains], out=offsets[1:])
    ids = np.fromiter((i for c in chains for i in c), dtype=np.int64, count=int(offsets[-1]))
    label = name if name is not None else f"synthetic(n={n_requests}, seed={seed}, {arrival})"
    return Trace(plan.arrival_s[keep], plan.input_len[keep], plan.output_len[keep], offsets, ids,
                 block_tokens, label, plan.session[keep])
