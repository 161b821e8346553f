"""Trace loaders (Mooncake, Azure, generic) and the synthetic workload generator."""

import dataclasses
import hashlib
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT

from kvmodel.workload._trace_types import Trace
from kvmodel.workload.traces import (
    DATA_DIR,
    LoadReport,
    detect_format,
    load_trace,
    load_trace_with_report,
    synthetic_trace,
)

DATA = ROOT / "tests" / "data"
def _real(name):
    """Path of a bundled public trace file (a missing file fails: the package ships them)."""
    path = DATA_DIR / name
    assert path.is_file(), f"bundled trace {path} missing"
    return path


def chain_violations(trace: Trace) -> list[str]:
    """Ids breaking the chained-prefix convention: every id must always sit at one position
    and always follow one predecessor (-1 for position 0)."""
    lens = trace.blocks_per_request
    pos = np.arange(trace.total_blocks) - np.repeat(trace.block_offsets[:-1], lens)
    pred = np.concatenate([[-1], trace.block_ids[:-1]])
    pred[pos == 0] = -1
    triples = np.unique(np.stack([trace.block_ids, pos, pred], axis=1), axis=0)
    ids, counts = np.unique(triples[:, 0], return_counts=True)
    return [f"id {i} has {c} (position, predecessor) pairs" for i, c in zip(ids, counts) if c > 1]


def test_chain_checker_catches_violations():
    assert chain_violations(Trace.from_lists([[0, 1], [0, 1, 2], [3]])) == []
    assert chain_violations(Trace.from_lists([[0, 1], [2, 1]]))  # 1 after two predecessors
    assert chain_violations(Trace.from_lists([[0, 1], [1]]))      # 1 at two positions


# ---------------------------------------------------------------- sample files, checked by hand

def test_mooncake_tiny():
    t, report = load_trace_with_report(DATA / "mooncake_tiny.jsonl")
    assert report == LoadReport(str(DATA / "mooncake_tiny.jsonl"), "mooncake", rows=4)
    np.testing.assert_array_equal(t.arrival_s, [0.0, 0.0, 1.5, 3.001])
    np.testing.assert_array_equal(t.input_len, [1000, 512, 1025, 0])
    np.testing.assert_array_equal(t.output_len, [10, 5, 0, 7])
    np.testing.assert_array_equal(t.block_offsets, [0, 2, 3, 6, 6])
    assert t.hash_ids(2).tolist() == [0, 1, 2] and t.hash_ids(3).tolist() == []
    assert t.input_len.dtype == np.int64 and t.session is None and t.name == "mooncake_tiny.jsonl"


def test_azure_tiny_relative_seconds_with_7_fractional_digits():
    t = load_trace(DATA / "azure_tiny.csv")
    np.testing.assert_allclose(t.arrival_s, [0.0, 4.314579, 13.3194101, 13.81941], atol=1e-9)
    np.testing.assert_array_equal(t.input_len, [374, 396, 0, 7])
    np.testing.assert_array_equal(t.output_len, [44, 109, 1, 2])
    assert t.total_blocks == 0 and t.block_offsets.tolist() == [0] * 5  # no prefix info


def test_generic_csv_and_jsonl():
    c = load_trace(DATA / "generic_tiny.csv")
    np.testing.assert_array_equal(c.arrival_s, [0.0, 0.25, 1.5])
    assert [c.hash_ids(i).tolist() for i in range(3)] == [[10, 11], [10, 11, 12], [40]]
    assert c.session.tolist() == [1, 1, 2] and c.output_len.tolist() == [20, 30, 5]
    j = load_trace(DATA / "generic_tiny.jsonl")
    assert j.input_len.tolist() == [512, 513, 0] and j.session.tolist() == [0, 0, 7]
    assert [j.hash_ids(i).tolist() for i in range(3)] == [[5], [5, 6], []]
    n = load_trace(DATA / "generic_nohash.csv")
    assert n.arrival_s.tolist() == [0.0, 1.25] and n.total_blocks == 0 and n.session is None


def test_detect_format_and_override(tmp_path):
    assert detect_format(DATA / "mooncake_tiny.jsonl") == "mooncake"
    assert detect_format(DATA / "azure_tiny.csv") == "azure"
    assert detect_format(DATA / "generic_tiny.csv") == "generic"
    assert detect_format(DATA / "generic_tiny.jsonl") == "generic"
    odd = tmp_path / "trace.txt"  # no telling extension: sniffed from the first character
    odd.write_text((DATA / "mooncake_tiny.jsonl").read_text())
    assert detect_format(odd) == "mooncake" and len(load_trace(odd)) == 4
    with pytest.raises(ValueError, match=r"generic_tiny.jsonl: line 1: missing field 'timestamp'"):
        load_trace(DATA / "generic_tiny.jsonl", format="mooncake")
    with pytest.raises(ValueError, match=r"line 1: header lacks column\(s\) \['TIMESTAMP'"):
        load_trace(DATA / "generic_tiny.csv", format="azure")
    with pytest.raises(ValueError, match="format='parquet'"):
        load_trace(DATA / "generic_tiny.csv", format="parquet")


def test_unknown_and_empty_files(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"x.csv: unknown trace format .*'a', 'b'"):
        load_trace(tmp_path / "x.csv")
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="e.jsonl: file is empty"):
        load_trace(tmp_path / "e.jsonl")
    empty = load_trace(tmp_path / "e.jsonl", format="mooncake")
    assert len(empty) == 0 and empty.block_offsets.tolist() == [0]


def test_block_tokens_changes_expected_chain_length():
    t = load_trace(DATA / "generic_nohash.csv", block_tokens=4)
    assert t.block_tokens == 4
    with pytest.raises(ValueError, match=r"ceil\(input_length/1024\) = ceil\(1000/1024\) = 1"):
        load_trace(DATA / "mooncake_tiny.jsonl", block_tokens=1024)


# ---------------------------------------------------------------- malformed input

@pytest.mark.parametrize("name, first_error, skipped, kept", [
    ("mooncake_bad.jsonl", "mooncake_bad.jsonl: line 2: input_length='abc' must be a "
     "non-negative integer", 7, [0.0, 0.005, 0.03]),
    ("azure_bad.csv", "azure_bad.csv: line 3: TIMESTAMP='2023-11-16 18:15:4x.0' must be a time",
     5, [0.0, 3.31941]),
    ("generic_bad.csv", "generic_bad.csv: line 3: arrival_s='nan' must be a finite non-negative",
     3, [0.5, 2.0]),
])
def test_malformed_files_raise_or_skip(name, first_error, skipped, kept):
    with pytest.raises(ValueError) as exc:
        load_trace(DATA / name)
    assert str(exc.value).startswith(first_error)
    t, report = load_trace_with_report(DATA / name, skip_bad=True)
    assert (report.skipped, report.rows) == (skipped, len(kept))
    assert report.errors[0].startswith(first_error) and len(report.errors) == skipped
    np.testing.assert_allclose(t.arrival_s, kept, atol=1e-9)
    assert len(load_trace(DATA / name, skip_bad=True)) == len(kept)


def test_every_mooncake_error_names_line_and_field():
    _, report = load_trace_with_report(DATA / "mooncake_bad.jsonl", skip_bad=True)
    assert report.errors[1:] == [
        "mooncake_bad.jsonl: line 3: invalid JSON (Expecting property name enclosed in double "
        "quotes at column 1)",
        "mooncake_bad.jsonl: line 4: hash_ids has 1 entries, expected ceil(input_length/512) = "
        "ceil(600/512) = 2",
        "mooncake_bad.jsonl: line 7: hash_ids[1]='x' must be a non-negative 64-bit integer",
        "mooncake_bad.jsonl: line 8: missing field 'output_length'",
        "mooncake_bad.jsonl: line 9: output_length=-3 must be a non-negative integer",
        "mooncake_bad.jsonl: line 10: timestamp goes back 0.005 s from the previous accepted "
        "request (arrival times must be non-decreasing)"]


@pytest.mark.parametrize("line, message", [
    ('["not", "an object"]', "line 2: expected a JSON object, got list"),
    ('{"arrival_s": -1, "input_len": 1, "output_len": 1}', "line 2: arrival_s=-1 must be"),
    ('{"arrival_s": 1, "input_len": true, "output_len": 1}', "line 2: input_len=True must be"),
    ('{"arrival_s": 1, "input_len": 1, "output_len": 1.5}', "line 2: output_len=1.5 must be"),
    ('{"arrival_s": 1, "input_len": 1, "output_len": 1, "hash_ids": [3]}',
     "line 2: hash_ids must be given for every request or for none (the first accepted "
     "request lacked it)"),
    ('{"arrival_s": 1, "input_len": 1, "output_len": 1, "session": "a"}',
     "line 2: session='a' must be a non-negative integer"),
])
def test_generic_jsonl_errors(tmp_path, line, message):
    path = tmp_path / "g.jsonl"
    path.write_text('{"arrival_s": 0, "input_len": 1, "output_len": 1}\n' + line + "\n")
    with pytest.raises(ValueError, match="^g.jsonl: " + message.replace("(", r"\(")
                       .replace(")", r"\)").replace("[", r"\[")):
        load_trace(path)


def test_skip_bad_keeps_only_first_errors(tmp_path):
    path = tmp_path / "many.csv"
    path.write_text("arrival_s,input_len,output_len\n" + "0,x,1\n" * 50 + "1,2,3\n")
    t, report = load_trace_with_report(path, skip_bad=True)
    assert report.skipped == 50 and len(report.errors) == 20 and len(t) == 1
    assert report.errors[-1] == "many.csv: line 21: input_len='x' must be a non-negative integer"


# ---------------------------------------------------------------- the public traces

def test_mooncake_conversation_trace():
    path = _real("conversation_trace.jsonl")
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        t = load_trace(path)
        best = min(best, time.perf_counter() - start)
    assert best < 1.0, f"loading took {best:.2f} s"
    assert len(t) == 12_031 and len(np.unique(t.arrival_s)) == 1_180
    assert np.all(np.diff(t.arrival_s) >= 0) and t.arrival_s[0] == 0.0
    assert t.arrival_s[-1] == 3536.999
    assert np.all(t.block_ids[t.block_offsets[:-1]] == 0)  # every request starts with block 0
    np.testing.assert_array_equal(t.blocks_per_request, -(-t.input_len // 512))
    assert chain_violations(t) == []


def test_mooncake_synthetic_trace():
    t = load_trace(_real("synthetic_trace.jsonl"))
    assert len(t) == 3_993 and chain_violations(t) == []
    np.testing.assert_array_equal(t.blocks_per_request, -(-t.input_len // 512))


@pytest.mark.parametrize("name, rows", [("AzureLLMInferenceTrace_conv.csv", 19_366),
                                        ("AzureLLMInferenceTrace_code.csv", 8_819)])
def test_azure_traces(name, rows):
    t = load_trace(_real(name))
    assert len(t) == rows and t.arrival_s[0] == 0.0 and np.all(np.diff(t.arrival_s) >= 0)
    assert 3_000 < t.arrival_s[-1] < 3_600  # about one hour, 18:15 to 19:14
    assert t.total_blocks == 0 and np.all(t.input_len >= 0)


def test_azure_conv_first_gap():
    t = load_trace(_real("AzureLLMInferenceTrace_conv.csv"))
    assert t.arrival_s[1] == pytest.approx(50.9951690 - 46.6805900, abs=1e-9)
    assert (t.input_len[0], t.output_len[0]) == (374, 44)


# ---------------------------------------------------------------- synthetic generator

def _arrays(t: Trace):
    return [t.arrival_s, t.input_len, t.output_len, t.block_offsets, t.block_ids, t.session]


def _digest(t: Trace) -> str:
    h = hashlib.sha256()
    for a in _arrays(t):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def test_synthetic_is_deterministic_across_processes():
    kw = dict(seed=7, arrival="bursty", burst_cv=2.0)
    a, b = synthetic_trace(500, **kw), synthetic_trace(500, **kw)
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))
    code = ("from kvmodel.workload.traces import synthetic_trace; import test_traces as T; "
            "print(T._digest(synthetic_trace(500, seed=7, arrival='bursty', burst_cv=2.0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT / "tests" / "workload",
                         env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin",
                              "PYTHONPATH": str(ROOT / "tests")})  # conftest.py
    assert out.stdout.strip() == _digest(a)
    c = synthetic_trace(500, seed=8, arrival="bursty", burst_cv=2.0)
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    assert not np.array_equal(a.input_len, c.input_len)


def test_synthetic_shape_and_chain_convention():
    t = synthetic_trace(3000, seed=1)
    assert len(t) == 3000 and t.session is not None and t.session.dtype == np.int64
    assert t.arrival_s[0] == 0.0 and np.all(np.diff(t.arrival_s) >= 0)
    np.testing.assert_array_equal(t.blocks_per_request, -(-t.input_len // 512))
    assert chain_violations(t) == []
    first_seen = np.unique(t.block_ids, return_index=True)[1]
    assert np.all(np.diff(t.block_ids[np.sort(first_seen)]) == 1)  # ids numbered by appearance
    first_turn = np.unique(t.session, return_index=True)[1]  # sessions numbered by first arrival
    np.testing.assert_array_equal(t.session[np.sort(first_turn)], np.arange(t.session.max() + 1))


def test_poisson_interarrival_mean():
    rate = 4.0
    t = synthetic_trace(20_000, seed=3, rate_per_s=rate, session_fraction=0.0)
    gaps = np.diff(t.arrival_s)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.03)  # ~4 standard errors
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


def test_rate_is_long_run_request_rate_with_sessions():
    t = synthetic_trace(20_000, seed=4, rate_per_s=2.0, think_time_s=5.0)
    assert len(t) / t.arrival_s[-1] == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("cv", [0.5, 2.5])
def test_bursty_coefficient_of_variation(cv):
    t = synthetic_trace(20_000, seed=5, arrival="bursty", burst_cv=cv, rate_per_s=10.0,
                        session_fraction=0.0)
    gaps = np.diff(t.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.1)
    assert gaps.mean() == pytest.approx(0.1, rel=0.1)


def test_multi_turn_turns_extend_the_previous_prompt():
    t = synthetic_trace(2000, seed=6, session_fraction=1.0, turns_mean=5.0, think_time_s=10.0)
    pairs = 0
    for s in np.unique(t.session):
        idx = np.flatnonzero(t.session == s)
        for a, b in zip(idx[:-1], idx[1:]):
            assert t.arrival_s[b] > t.arrival_s[a]
            assert t.input_len[b] > t.input_len[a] + t.output_len[a]  # + a new user message
            full = t.input_len[a] // 512
            assert np.array_equal(t.hash_ids(b)[:full], t.hash_ids(a)[:full])
            if t.input_len[a] % 512:  # the partial tail block is filled up, so it changes
                assert t.hash_ids(b)[full] != t.hash_ids(a)[full]
            pairs += 1
    assert pairs > 1000


def test_system_prompts_shared_with_zipf_popularity():
    t = synthetic_trace(4000, seed=2, n_system_prompts=4, system_prompt_tokens=1100,
                        zipf_alpha=1.0, session_fraction=0.0)
    heads = np.stack([t.hash_ids(i)[:2] for i in range(len(t))])  # 2 full system blocks
    counts = np.sort(np.unique(heads[:, 0], return_counts=True)[1])[::-1]
    assert len(counts) == 4 and len(np.unique(heads, axis=0)) == 4
    p = 1 / np.arange(1, 5)
    np.testing.assert_allclose(counts / len(t), p / p.sum(), atol=0.03)
    # The third block straddles the prompt end (1100 tokens): private to each request.
    third = np.array([t.hash_ids(i)[2] for i in range(len(t))])
    assert len(np.unique(third)) == len(t)


def test_no_system_prompt_means_no_sharing_between_sessions():
    t = synthetic_trace(300, seed=9, n_system_prompts=0, session_fraction=0.0)
    assert t.unique_blocks == t.total_blocks and chain_violations(t) == []


def test_synthetic_round_trips_through_generic_csv(tmp_path):
    t = synthetic_trace(200, seed=11)
    lines = ["arrival_s,input_len,output_len,hash_ids,session"]
    for i in range(len(t)):
        ids = " ".join(map(str, t.hash_ids(i).tolist()))
        lines.append(f"{float(t.arrival_s[i])!r},{t.input_len[i]},{t.output_len[i]},{ids},{t.session[i]}")
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    back = load_trace(tmp_path / "s.csv")
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(t), _arrays(back)))


@pytest.mark.parametrize("kw, message", [
    (dict(arrival="uniform"), "arrival='uniform'"), (dict(rate_per_s=0), "rate_per_s=0"),
    (dict(session_fraction=1.5), "session_fraction=1.5"), (dict(turns_mean=0.5), "turns_mean"),
    (dict(think_time_s=-1), "think_time_s=-1"), (dict(block_tokens=0), "block_tokens=0"),
])
def test_synthetic_rejects_bad_parameters(kw, message):
    with pytest.raises(ValueError, match=message):
        synthetic_trace(10, **kw)


def test_synthetic_edge_sizes():
    assert len(synthetic_trace(0)) == 0
    t = synthetic_trace(50, seed=1, think_time_s=0.0)  # turns of a session arrive together
    assert len(t) == 50 and chain_violations(t) == []


def test_window_is_a_trace_of_its_own():
    """A window rebases its block chains and arrivals and keeps its requests' sessions; the
    whole window is the trace itself."""
    t = Trace.from_lists([[1, 2], [1], [1, 2, 3], [7]], arrival_s=[0.5, 1.0, 2.5, 4.0])
    t = dataclasses.replace(t, session=np.array([10, 11, 10, 12]))
    w = t.window(1, 2)
    assert len(w) == 2 and w.name == "[1:3]"
    np.testing.assert_array_equal(w.arrival_s, [0.0, 1.5])
    np.testing.assert_array_equal(w.block_offsets, [0, 1, 4])
    assert w.hash_ids(1).tolist() == [1, 2, 3] and w.session.tolist() == [11, 10]
    whole = t.window()
    for f in ("input_len", "output_len", "block_offsets", "block_ids", "session"):
        np.testing.assert_array_equal(getattr(whole, f), getattr(t, f))
    np.testing.assert_array_equal(whole.arrival_s, t.arrival_s - 0.5)
    assert len(t.window(3, 10)) == 1
    for start, n in ((4, None), (-1, 2), (1, 0)):
        with pytest.raises(ValueError, match="Trace.window start="):
            t.window(start, n)
