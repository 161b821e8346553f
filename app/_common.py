"""Shared widgets, formatting and cached loaders of the kvmodel explorer.

Widgets here keep their value in ``st.query_params`` (read on first render, written on every
run) so that a page's link reproduces the view. Loaders wrap slow public ``kvmodel`` calls in
``st.cache_data`` / ``st.cache_resource``; nothing in this module models anything.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import streamlit as st

import kvmodel
from kvmodel import cluster as _cluster
from kvmodel.catalog.hardware import Catalog, use_catalog
from kvmodel.workload import traces as _traces

APP_DIR = Path(__file__).resolve().parent
REPO_DIR = APP_DIR.parent
DEFAULT_TRACE = "mooncake-conversation"  # a built-in trace (kvmodel.workload.traces.BUILTIN)
CUSTOM_HW = "custom_hardware"  # st.session_state key: [{"toml": str, "keys": ["gpu.my-gpu"]}]
CATALOG = "kvmodel_catalog"  # st.session_state key: this session's kvmodel.Catalog
TRACE_SUFFIXES = ["jsonl", "json", "ndjson", "csv"]

# ---- widget maxima -------------------------------------------------------------------------------
# Every size-like input has a maximum. Where kvmodel has a cap the widget uses it (or is tighter):
# _cluster.MAX_INSTANCES / MAX_TP, _traces.MAX_SYNTHETIC_*. The others are the app's
# own bounds, far above any deployment, that keep every computation finite and bounded in memory
# (a capacity of 1e300 GB overflows the int64 block counts; a rate of 1e300 req/s is no workload).
MAX_INSTANCES = _cluster.MAX_INSTANCES  # instances of one cluster
MAX_TP = _cluster.MAX_TP                # GPUs in one tensor-parallel group (also PP)
MAX_RATE_PER_S = 1e6        # request rates (req/s)
MAX_CAPACITY_GB = 1e6       # memory or storage capacity of one instance or node (GB): 1 PB
MAX_TOKENS = 10_000_000     # prompt, output and prefix lengths (tokens)
MAX_BATCH = 1_000_000       # sequences in a batch; closed-loop clients
MAX_TIME_S = 3600.0         # SLOs and think times (s)
MAX_SEED = 2**32 - 1
MAX_BANDWIDTH_GBPS = 1e6    # custom hardware: link and memory bandwidths (GB/s; TB/s for HBM)
MAX_TFLOPS = 1e6            # custom hardware: peak TFLOP/s per precision
MAX_TDP_W = 1e5             # custom hardware: board power (W)
# synthetic traces: the library allows 1e6-token means (MAX_SYNTHETIC_TOKENS) and 1e7 requests,
# which take minutes and gigabytes; the app stays at sizes that answer within seconds
MAX_SYNTH_REQUESTS = min(200_000, _traces.MAX_SYNTHETIC_REQUESTS)
MAX_SYNTH_TOKENS = min(32_768, _traces.MAX_SYNTHETIC_TOKENS)  # mean user / output tokens
MAX_SYNTH_SYSTEM_TOKENS = min(131_072, _traces.MAX_SYNTHETIC_TOKENS)
MAX_SYNTH_SYSTEM_PROMPTS = min(100_000, _traces.MAX_SYNTHETIC_REQUESTS)
MAX_SYNTH_TURNS = 100.0     # mean turns (library: n_requests x turns <= MAX_SYNTHETIC_TURNS)


# ---- query-parameter backed widgets --------------------------------------------------------------
def _coerce(raw: str, default: Any, options: Sequence[Any] | None = None,
            lo: float | None = None, hi: float | None = None) -> Any:
    """A query-parameter string as the type of ``default``; ``default`` when it does not parse."""
    try:
        if isinstance(default, bool):
            value: Any = raw.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, int):
            value = int(float(raw))
        elif isinstance(default, float):
            value = float(raw)
            if not math.isfinite(value):
                return default
        elif isinstance(default, (list, tuple)):
            value = [x for x in raw.split(",") if x]
        else:
            value = raw
    except (ValueError, OverflowError):  # "abc"; "inf" for an integer
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = min(max(value, lo if lo is not None else value), hi if hi is not None else value)
    if options is not None:
        if isinstance(value, list):
            value = [x for x in value if x in options]
        elif value not in options:
            return default
    return value


def _dump(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _seed(key: str, default: Any, options: Sequence[Any] | None = None,
          lo: float | None = None, hi: float | None = None) -> None:
    """Put the widget's starting value into session state: query parameter, else default."""
    if key in st.session_state:
        cur = st.session_state[key]
        ok = type(cur) is type(default)
        if ok and options is not None:
            ok = all(x in options for x in cur) if isinstance(cur, list) else cur in options
        if ok and lo is not None and not isinstance(cur, (list, str)):
            ok = cur >= lo and (hi is None or cur <= hi)
        if ok:
            return
    raw = st.query_params.get(key)
    st.session_state[key] = default if raw is None else _coerce(raw, default, options, lo, hi)


def _publish(key: str, value: Any) -> Any:
    text = _dump(value)
    if st.query_params.get(key) != text:
        st.query_params[key] = text
    return value


def select(label: str, options: Iterable[Any], key: str, default: Any = None, where: Any = st,
           **kw: Any) -> Any:
    opts = list(options)
    default = default if default in opts else opts[0]
    _seed(key, default, opts)
    return _publish(key, where.selectbox(label, opts, key=key, **kw))


def radio(label: str, options: Iterable[Any], key: str, default: Any = None, where: Any = st,
          **kw: Any) -> Any:
    opts = list(options)
    default = default if default in opts else opts[0]
    _seed(key, default, opts)
    return _publish(key, where.radio(label, opts, key=key, horizontal=True, **kw))


def multiselect(label: str, options: Iterable[Any], key: str, default: Sequence[Any],
                where: Any = st, **kw: Any) -> list[Any]:
    opts = list(options)
    _seed(key, [d for d in default if d in opts], opts)
    return _publish(key, where.multiselect(label, opts, key=key, **kw))


def number(label: str, key: str, default: int | float, min_value: int | float,
           max_value: int | float, where: Any = st, **kw: Any) -> Any:
    """A number input with both bounds (a link's out-of-range value is clamped to them)."""
    if isinstance(default, float):
        min_value = None if min_value is None else float(min_value)
        max_value = None if max_value is None else float(max_value)
    _seed(key, default, lo=min_value, hi=max_value)
    return _publish(key, where.number_input(label, min_value=min_value, max_value=max_value,
                                            key=key, **kw))


def drop(*keys: str) -> None:
    """Forget query parameters of widgets the current view does not show."""
    for k in keys:
        if k in st.query_params:
            del st.query_params[k]


def checkbox(label: str, key: str, default: bool, where: Any = st, **kw: Any) -> bool:
    _seed(key, default)
    return _publish(key, where.checkbox(label, key=key, **kw))


def text(label: str, key: str, default: str, where: Any = st, **kw: Any) -> str:
    _seed(key, default)
    return _publish(key, where.text_input(label, key=key, **kw))


def int_list(label: str, key: str, default: str, where: Any = st, minimum: float = 0,
             maximum: float = math.inf) -> list[float]:
    """Comma-separated numbers in [minimum, maximum]; a clear warning for the others (and no
    values at all when the text does not parse)."""
    raw = text(label, key, default, where=where)
    try:
        vals = [float(x) for x in raw.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        st.warning(f"{label}: '{raw}' is not a comma-separated list of numbers")
        return []
    ok = [math.isfinite(v) and minimum <= v <= maximum for v in vals]
    if not all(ok):
        st.warning(f"{label}: values must be in [{minimum:g}, {maximum:g}]; ignoring "
                   f"{[v for v, good in zip(vals, ok) if not good]}")
    return [v for v, good in zip(vals, ok) if good]


def defaults_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """Keyword defaults of a library function (widget defaults without copying constants)."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


# ---- formatting ----------------------------------------------------------------------------------
MISSING = "—"  # a cell or metric with no value (None / NaN); ∞ stays ∞ (unstable, infeasible)


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def fmt_time(seconds: float) -> str:
    if _missing(seconds):
        return MISSING
    s = float(seconds)
    if not math.isfinite(s):
        return "∞"
    if s >= 1.0:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_ms(seconds: float) -> str:
    """Milliseconds always (TTFT, TPOT): one scale for a column or a row of metrics."""
    if _missing(seconds):
        return MISSING
    ms = float(seconds) * 1e3
    if not math.isfinite(ms):
        return "∞"
    return f"{ms:,.0f} ms" if abs(ms) >= 1e3 else f"{ms:.3g} ms"


def _special(x: Any) -> str | None:
    """The cell text of a missing or non-finite value ("—", "∞"); None for a finite number."""
    if _missing(x):
        return MISSING
    return None if math.isfinite(float(x)) else "∞"


def fmt_num(x: float, unit: str = "") -> str:
    if (special := _special(x)) is not None:
        return special
    x = float(x)
    body = f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"
    return f"{body}{(' ' + unit) if unit else ''}"


def fmt_si(x: float, unit: str) -> str:
    """SI prefix for big counts and rates: 1.03e15 FLOP/s -> "1.03 PFLOP/s"."""
    if (special := _special(x)) is not None:
        return special
    x = float(x)
    for div, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def fmt_money(x: float, per: str = "") -> str:
    """US dollars: $0.0123, $1.23, $12,345 (per e.g. "Mtok", "h")."""
    if (special := _special(x)) is not None:
        return special
    x = float(x)
    body = f"${x:,.0f}" if abs(x) >= 1e3 else (f"${x:.2f}" if abs(x) >= 1 else f"${x:.3g}")
    return body + (f" / {per}" if per else "")


def fmt_bytes(b: float) -> str:
    if _missing(b):
        return MISSING
    b = float(b)
    if not math.isfinite(b):
        return "∞"
    for div, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(b) >= div:
            return f"{b / div:.3g} {unit}"
    return f"{b:.3g} B"


def fmt_pct(fraction: float) -> str:
    return MISSING if _missing(fraction) else f"{100 * float(fraction):.1f} %"


FORMATS: dict[str, Callable[[Any], str]] = {  # unit of a table column -> its formatter
    "s": fmt_time, "ms": fmt_ms, "B": fmt_bytes, "$": fmt_money, "%": fmt_pct,
    "$/Mtok": lambda x: fmt_money(x, "Mtok"), "$/h": lambda x: fmt_money(x, "h"),
    "B/s": lambda x: fmt_bytes(x) + "/s" if not _missing(x) and math.isfinite(float(x)) else fmt_num(x),
    "FLOP": lambda x: fmt_si(x, "FLOP"), "FLOP/s": lambda x: fmt_si(x, "FLOP/s"),
    "FLOP/B": lambda x: fmt_num(x, "FLOP/B"), "tokens": lambda x: fmt_num(x, "tokens"),
    "req/s": lambda x: fmt_num(x, "req/s"), "tok/s": lambda x: fmt_num(x, "tok/s"),
    "": fmt_num,
}


def fmt_cell(x: Any, unit: str = "") -> str:
    """One table cell as text with its unit; "—" for a missing value."""
    if _missing(x):
        return MISSING
    if isinstance(x, (bool, np.bool_, str)):
        return str(x) if x != "" else MISSING
    if isinstance(x, (int, float, np.integer, np.floating)):
        return FORMATS[unit](x)
    return str(x)


def readable(df: Any, units: dict[str, str] | None = None) -> Any:
    """A table for the eye: numbers formatted with their units, missing cells "—".
    Columns not in ``units`` keep numbers as numbers (formatted without a unit)."""
    units = units or {}
    out = df.copy()
    for c in out.columns:
        out[c] = [fmt_cell(v, units.get(c, "")) for v in out[c]]
    return out


def finite(x: Any) -> Any:
    """inf/nan -> None so charts draw gaps and CSV cells stay empty."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        return float(arr) if math.isfinite(float(arr)) else None
    return [float(v) if math.isfinite(v) else None for v in arr]


# ---- downloads -----------------------------------------------------------------------------------
def download_table(df: Any, name: str, key: str, where: Any = st) -> None:
    where.download_button(f"Download {name}.csv", df.to_csv(index=False).encode(),
                          file_name=f"{name}.csv", mime="text/csv", key=f"dl_csv_{key}",
                          on_click="ignore")


def download_chart(fig: Any, name: str, key: str, where: Any = st) -> None:
    """Self-contained HTML of a plotly figure, generated only when clicked."""
    where.download_button(f"Download {name}.html",
                          lambda: fig.to_html(include_plotlyjs=True, full_html=True),
                          file_name=f"{name}.html", mime="text/html", key=f"dl_html_{key}",
                          on_click="ignore")


def show_chart(fig: Any, name: str, key: str) -> None:
    st.plotly_chart(fig, key=f"chart_{key}", width="stretch")
    download_chart(fig, name, key)


def column_config(df: Any, wide: Sequence[str] = ()) -> dict[str, Any]:
    """Column widths from the longest text of each column, so names and units are not cut off
    (``wide`` columns, e.g. sources and reasons, get at least 320 px)."""
    cfg = {}
    for c in df.columns:
        longest = max([len(str(c))] + [len(str(v)) for v in df[c].head(200)])
        px = max(7 * longest + 28, 70)
        cfg[c] = st.column_config.Column(width=min(max(px, 320), 560) if c in wide else min(px, 260))
    return cfg


def show_table(df: Any, name: str, key: str, units: dict[str, str] | None = None,
               wide: Sequence[str] = (), where: Any = st, **kw: Any) -> None:
    """The table as readable text (units, "—" for missing); the CSV keeps the raw SI numbers."""
    view = readable(df, units)
    where.dataframe(view, hide_index=True, key=f"table_{key}", column_config=column_config(view, wide),
                    **kw)
    download_table(df, name, key, where=where)


# ---- guarded library calls -----------------------------------------------------------------------
def guarded(fn: Callable[..., Any], /, **kwargs: Any) -> tuple[Any, str]:
    """(result, "") or (None, message): bad input becomes a message, never a traceback.
    Arguments by keyword only, so that their order can never drift from the library's."""
    try:
        return fn(**kwargs), ""
    except (ValueError, KeyError, TypeError, ArithmeticError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return None, f"{type(exc).__name__}: {msg}"


# ---- user hardware (Hardware page) ---------------------------------------------------------------
# Custom hardware is per browser session: the Hardware page adds a file to this session's
# kvmodel.Catalog (kept in st.session_state), the entry script runs every page inside
# ``session_catalog()`` so that every library call of the page uses it, and caches shared by all
# sessions (st.cache_data) take ``catalog_key()`` as an argument.
def catalog() -> Catalog:
    """This session's catalog: the bundled one plus the custom hardware loaded here."""
    return st.session_state.get(CATALOG) or Catalog.default()


def catalog_key() -> int:
    """Key of this session's catalog for st.cache_data (unique per catalog)."""
    return catalog().version


@contextmanager
def session_catalog() -> Iterator[Catalog]:
    """Run the block (a page) with this session's catalog active for every kvmodel call."""
    with use_catalog(catalog=catalog()) as cat:
        yield cat


def ensure_custom_hardware() -> list[str]:
    """``section.key`` names of this session's custom hardware (kept in its own catalog:
    nothing another session does can remove it)."""
    return [k for hw in st.session_state.get(CUSTOM_HW, []) for k in hw["keys"]]


def register_hardware(toml_text: str) -> tuple[list[str], str]:
    """Validate a hardware TOML (``kvmodel.Catalog.with_file``) and add it to this session's
    catalog: (keys, "") or ([], error). A rejected file changes no catalog."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "custom_hardware.toml"
        path.write_text(toml_text, encoding="utf-8")
        try:
            cat = catalog().with_file(path)
        except (kvmodel.HardwareDBError, ValueError, KeyError, TypeError) as exc:
            return [], str(exc).replace(str(path), "custom_hardware.toml")
    st.session_state[CATALOG] = cat
    return list(cat.added), ""


def gpu_options() -> list[str]:
    ensure_custom_hardware()
    return kvmodel.list_entries(section="gpu")


def model_options() -> list[str]:
    return kvmodel.list_models()


# ---- traces and reuse (cached) -------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the built-in trace…", max_entries=8)
def builtin_trace(name: str) -> tuple[Any, str]:
    """(trace, error message) of a built-in trace; never a silent substitute."""
    try:
        return kvmodel.load_trace(name), ""
    except (OSError, ValueError, KeyError) as exc:
        return None, str(exc)


@st.cache_resource(show_spinner="Generating the synthetic trace…", max_entries=16)
def synthetic(params: tuple[tuple[str, Any], ...]) -> Any:
    return kvmodel.synthetic_trace(**dict(params))


@st.cache_resource(show_spinner="Reading the uploaded trace…", max_entries=8)
def uploaded_trace(data: bytes, name: str, skip_bad: bool) -> tuple[Any, Any, str]:
    """(trace, load report, error message) of uploaded bytes, checked by ``kvmodel``."""
    suffix = Path(name).suffix or ".jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            trace, report = kvmodel.load_trace_with_report(path=path, skip_bad=skip_bad)
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            return None, None, str(exc).replace(str(path), name)
    if len(trace) == 0:
        return None, report, f"{name}: no requests in the file"
    return trace, report, ""


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:12]


@st.cache_data(show_spinner=False, max_entries=64)
def unique_blocks(trace_key: str, _trace: Any) -> int:
    return int(_trace.unique_blocks)


@st.cache_data(show_spinner="Computing the hit-ratio curve…", max_entries=64)
def hit_curve(trace_key: str, _trace: Any, caps: tuple[int, ...], method: str) -> list[float]:
    return np.asarray(kvmodel.hit_ratio_curve(trace=_trace, capacities_blocks=np.asarray(
        caps, dtype=np.int64), method=method), dtype=float).tolist()


@st.cache_resource(show_spinner="Extracting the workload's reuse profile…", max_entries=16)
def workload(trace_key: str, _trace: Any, request_rate: float | None, ttft_slo_s: float,
             tpot_slo_s: float) -> Any:
    return kvmodel.Workload(trace=_trace, request_rate=request_rate, ttft_slo_s=ttft_slo_s,
                            tpot_slo_s=tpot_slo_s)


def synthetic_widgets(prefix: str, where: Any = st, n_default: int = 5000) -> tuple[str, Any]:
    """Widgets for every parameter of ``kvmodel.synthetic_trace``; (cache key, trace)."""
    d = defaults_of(kvmodel.synthetic_trace)
    c = where.columns(4)
    p: dict[str, Any] = {
        "n_requests": number("requests", f"{prefix}n", n_default, 1, MAX_SYNTH_REQUESTS,
                             where=c[0], step=500),
        "seed": number("seed", f"{prefix}seed", int(d["seed"]), 0, MAX_SEED, where=c[1]),
        "arrival": select("arrival", ["poisson", "bursty"], f"{prefix}arr", d["arrival"], where=c[2]),
        "rate_per_s": number("rate (req/s)", f"{prefix}rate", float(d["rate_per_s"]), 1e-3,
                             MAX_RATE_PER_S, where=c[3]),
        "burst_cv": number("burst CV", f"{prefix}bcv", float(d["burst_cv"]), 0.01, 100.0,
                           where=c[0]),
        "n_system_prompts": number("system prompts", f"{prefix}nsys", int(d["n_system_prompts"]),
                                   0, MAX_SYNTH_SYSTEM_PROMPTS, where=c[1]),
        "system_prompt_tokens": number("system prompt tokens", f"{prefix}systok",
                                       int(d["system_prompt_tokens"]), 0, MAX_SYNTH_SYSTEM_TOKENS,
                                       where=c[2]),
        "zipf_alpha": number("Zipf α", f"{prefix}zipf", float(d["zipf_alpha"]), 0.0, 10.0,
                             where=c[3]),
        "session_fraction": number("multi-turn fraction", f"{prefix}sess",
                                   float(d["session_fraction"]), 0.0, 1.0, where=c[0]),
        "turns_mean": number("mean turns", f"{prefix}turns", float(d["turns_mean"]), 1.0,
                             MAX_SYNTH_TURNS, where=c[1]),
        "think_time_s": number("think time (s)", f"{prefix}think", float(d["think_time_s"]), 0.0,
                               MAX_TIME_S, where=c[2]),
        "user_tokens_mean": number("mean user tokens", f"{prefix}utok", float(d["user_tokens_mean"]),
                                   0.0, MAX_SYNTH_TOKENS, where=c[3]),
        "output_tokens_mean": number("mean output tokens", f"{prefix}otok",
                                     float(d["output_tokens_mean"]), 0.0, MAX_SYNTH_TOKENS,
                                     where=c[0]),
    }
    params = tuple(sorted(p.items()))
    trace, err = guarded(synthetic, params=params)
    if err:
        st.error(f"Synthetic trace: {err}")
        return "", None
    return "synthetic:" + repr(params), trace


def trace_picker(prefix: str, allow_upload: bool = True) -> tuple[str, Any]:
    """Pick a built-in trace, an uploaded file or a synthetic trace; (key, trace).

    A built-in trace that cannot be read is an error box and no trace, never a fallback."""
    builtin = kvmodel.workload.traces.BUILTIN
    sources = list(builtin) + ["synthetic"] + (["upload"] if allow_upload else [])
    src = radio("Trace", sources, f"{prefix}src", DEFAULT_TRACE,
                help="built-in public traces shipped with kvmodel (`kvmodel traces`): Mooncake "
                     "FAST'25 conversation / synthetic (with 512-token prefix hashes), Azure 2023 "
                     "code / conversation (no prefix information: no reuse); a synthetic "
                     "multi-turn trace; or your own file")
    if src in builtin:
        trace, err = builtin_trace(src)
        if err:
            st.error(f"Built-in trace {src!r} could not be loaded: {err}")
            return "", None
        b = builtin[src]
        st.caption(f"**{src}**: {len(trace):,} requests, {unique_blocks(src, trace):,} distinct "
                   f"{trace.block_tokens}-token prefix blocks"
                   + ("" if b.prefix_hashes else " (no prefix hashes: nothing is reusable)")
                   + f"; {b.licence}, {b.citation}")
        return src, trace
    if src == "synthetic":
        with st.expander("Synthetic trace parameters (kvmodel.synthetic_trace)", expanded=True):
            return synthetic_widgets(prefix)
    return _upload(prefix)


def _upload(prefix: str) -> tuple[str, Any]:
    up = st.file_uploader("Trace file (Mooncake JSONL, Azure CSV, generic CSV/JSONL)",
                          type=TRACE_SUFFIXES, key=f"{prefix}file")
    skip = st.checkbox("skip malformed lines", key=f"{prefix}skip")
    if up is None:
        st.info("Upload a trace file to continue (uploads are not part of the shareable link).")
        return "", None
    data = up.getvalue()
    trace, report, err = uploaded_trace(data, up.name, skip)
    if err:
        st.error(f"Could not read the trace: {err}")
        return "", None
    if report is not None and report.skipped:
        st.warning(f"Skipped {report.skipped} malformed line(s); first: "
                   + "; ".join(report.errors[:3]))
    key = f"upload:{digest(data)}:{skip}"
    st.caption(f"{up.name}: {len(trace):,} requests, {unique_blocks(key, trace):,} distinct blocks")
    return key, trace


# ---- validation (cached) -------------------------------------------------------------------------
def validation_rows(which: str) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """(predicted rows, total rows, skipped reasons) of the calibration or held-out set."""
    return _validation_rows(which, catalog_key())


@st.cache_data(show_spinner="Running the model over the published measurements…")
def _validation_rows(which: str, catalog_key: int) -> tuple[list[dict[str, Any]], int,
                                                            dict[str, int]]:
    if which == "held-out":
        from kvmodel.instance.calibration import holdout_data
        rep = kvmodel.validate(data=holdout_data())
    else:
        rep = kvmodel.validate()
    return [dict(r) for r in rep.rows], rep.total, dict(rep.skipped)


def connector_select(key: str, where: Any = st) -> str:
    """A KV connector (``kvmodel.policies.CONNECTOR``, from ``hardware_db/connectors.toml``)."""
    from kvmodel.policies import CONNECTOR

    return select("KV connector", CONNECTOR.names(), key, "ideal", where=where,
                  help="software on the KV path: per-request and per-descriptor costs, share of "
                       "the path bandwidth, layer-wise vs load-before-prefill (ideal = bytes / "
                       "path bandwidth)")


def estimate_connector_kw(name: str) -> dict[str, Any]:
    """``{"connector": name}`` where ``kvmodel.estimate`` takes a connector, else ``{}``."""
    return {"connector": name} if "connector" in inspect.signature(kvmodel.estimate).parameters else {}
