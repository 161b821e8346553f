"""Property and fuzz tests: what must be monotone, and "a clear error naming the field, or a
finite, consistent result" over random (often invalid) input to estimate, evaluate, the trace
loader, the hardware TOML loader and the search space parser.

Every test is derandomised (the same examples on every run) and bounded in examples so the file
runs in well under a minute on two cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import kvmodel
from kvmodel.catalog.hardware import get_gpu, reset_catalog
from kvmodel.search import SpaceError, space_from_dict

FAST = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
MONOTONE = settings(FAST, max_examples=150)
REL = 1e-6  # the fixed points converge to 1e-7 relative

MODELS = ["llama-3.1-8b", "llama-2-13b", "qwen3-8b"]
GPUS = ["h100-sxm", "a100-sxm-80gb", "l40s"]


def _mode():
    return st.one_of(st.builds(lambda b: {"batch": b}, st.integers(1, 64)),
                     st.just({"batch": "max"}),
                     st.builds(lambda n: {"concurrency": n}, st.integers(1, 2000)),
                     st.builds(lambda r: {"request_rate": r}, st.floats(0.01, 50.0)))


def _faster(gpu: str, k: float):
    g = get_gpu(gpu)
    return dataclasses.replace(g, hbm_bw_Bps=k * g.hbm_bw_Bps)


# ---- monotonicity (issue 15 item 10) ------------------------------------------------------------
@MONOTONE
@given(model=st.sampled_from(MODELS), gpu=st.sampled_from(GPUS), tp=st.sampled_from([1, 2]),
       inp=st.integers(8, 30_000), out=st.integers(2, 4_000), k=st.floats(1.1, 4.0), mode=_mode())
def test_more_bandwidth(model, gpu, tp, inp, out, k, mode):
    """More HBM bandwidth never lengthens E2E nor lowers throughput; at a fixed batch or rate
    (static, throughput-max, open loop) no latency rises. In a closed loop TPOT and TTFT may
    rise (more prefill chunks per step, more clients queued for prefill) but TPOT stays below
    TTFT (see the estimate() docstring)."""
    kw = dict(tp=tp, input_len=inp, output_len=out, **mode)
    a = kvmodel.estimate(model, gpu, **kw)
    assume(a.feasible and a.stable)
    b = kvmodel.estimate(model, _faster(gpu, k), **kw)
    assert b.feasible and b.stable
    assert b.e2e_s <= a.e2e_s * (1 + REL)
    assert b.output_tok_per_s >= a.output_tok_per_s * (1 - REL)
    if "concurrency" in mode:
        assert b.tpot_s <= b.ttft_s
    else:
        assert b.ttft_s <= a.ttft_s * (1 + REL) and b.tpot_s <= a.tpot_s * (1 + REL)


@MONOTONE
@given(model=st.sampled_from(MODELS), gpu=st.sampled_from(GPUS), inp=st.integers(8, 30_000),
       more=st.integers(1, 64), out=st.integers(2, 4_000), mode=_mode())
def test_longer_prompts(model, gpu, inp, more, out, mode):
    """More prompt tokens never lower TTFT at a fixed batch; with continuous batching only where
    the running batch shrinks (fewer sequences share each step): the largest batch that fits the
    KV cache, or throughput-max's token-budget batch max_num_tokens x O / (I + O)."""
    a = kvmodel.estimate(model, gpu, input_len=inp, output_len=out, **mode)
    c = kvmodel.estimate(model, gpu, input_len=inp + more, output_len=out, **mode)
    assume(a.feasible and a.stable and c.feasible and c.stable)
    if c.ttft_s < a.ttft_s * (1 - REL):
        assert "batch" not in mode or mode["batch"] == "max"
        assert c.batch < a.batch


def test_closed_loop_bandwidth_repro():
    """The audit's case: 2x bandwidth raises mean TPOT 1.6x while E2E and throughput improve."""
    kw = dict(input_len=8192, output_len=16, concurrency=64)
    a = kvmodel.estimate("llama-3.1-8b", "h100-sxm", **kw)
    b = kvmodel.estimate("llama-3.1-8b", _faster("h100-sxm", 2.0), **kw)
    assert 1.5 < b.tpot_s / a.tpot_s < 1.7
    assert b.e2e_s < a.e2e_s and b.output_tok_per_s > a.output_tok_per_s and b.tpot_s < b.ttft_s


# ---- estimate: clear error or finite, consistent result -----------------------------------------
ESTIMATE_ARGS = ("tp", "pp", "input_len", "output_len", "batch", "concurrency", "request_rate",
                 "max_num_tokens", "arrival_cv", "cached_prefix_len")
_odd = st.sampled_from([0, -1, 0.5, float("nan"), float("inf"), 1e107, True, None, "x",
                        np.array([1.0, 2.0, 3.0])])


@st.composite
def _estimate_kwargs(draw):
    """Valid arguments, one of them (or none) replaced by an odd value."""
    kw = dict(tp=draw(st.sampled_from([1, 2, 3, 8])), pp=draw(st.sampled_from([1, 2])),
              input_len=draw(st.integers(1, 200_000)), output_len=draw(st.integers(1, 50_000)),
              max_num_tokens=draw(st.sampled_from([None, 256, 8192])), **draw(_mode()))
    if draw(st.booleans()):
        kw["cached_prefix_len"] = min(draw(st.integers(0, 4096)), kw["input_len"] - 1)
    if "request_rate" in kw:
        kw["arrival_cv"] = draw(st.floats(0.0, 4.0))
    bad = draw(st.sampled_from([None, None, None, *sorted(kw)]))
    if bad is not None:
        kw[bad] = draw(_odd)
    return kw


@settings(max_examples=120, deadline=None, derandomize=True)
@given(model=st.sampled_from(MODELS), kw=_estimate_kwargs())
def test_estimate_fuzz(model, kw):
    try:
        e = kvmodel.estimate(model, "h100-sxm", **kw)
    except (ValueError, TypeError) as err:
        event(f"clear error: {str(err)[:25]}")
        assert any(name in str(err) for name in ESTIMATE_ARGS), str(err)
        return
    _check_estimate(e, kw)


def _check_estimate(e, mode) -> None:
    if np.ndim(e.ttft_s):  # an array argument: check the elements one by one
        for i in range(np.size(e.ttft_s)):
            _check_estimate(_element(e, i), mode)
        return
    times = [e.ttft_s, e.tpot_s, e.e2e_s, e.ttft_p99_s, e.tpot_p99_s, e.e2e_p99_s, e.queue_wait_s]
    assert all(not math.isnan(t) and t >= 0 for t in times)
    assert math.isfinite(e.output_tok_per_s) and e.output_tok_per_s >= 0
    assert bool(e.feasible) == (not e.reason or not e.reason.startswith(("KV", "tp=", "pp=",
                                                                        "weights", "batch")))
    if not e.feasible:
        assert e.reason and math.isinf(e.ttft_s) and e.output_tok_per_s == 0
    else:
        assert bool(e.stable) == (e.reason == "")
        assert math.isfinite(e.ttft_s) == bool(e.stable)
    for ops in e.breakdown.values():
        for op in ops.values():
            assert all(math.isfinite(v) and v >= 0 for k, v in op.items() if k != "bound")
    if e.mode == "rate":
        assert e.output_tok_per_s <= e.inputs["request_rate"] * e.inputs["output_len"] * (1 + 1e-9)
    json.dumps(e.to_dict(), allow_nan=False)


def _element(e, i):
    """Element ``i`` of an array Estimate, with scalar fields (the routed law's aids,
    ``ttft_mixture`` and ``wait_parts``, dropped: they are not results)."""
    pick = {f.name: np.ravel(getattr(e, f.name))[i] if np.ndim(getattr(e, f.name)) else
            getattr(e, f.name) for f in dataclasses.fields(e)
            if f.name not in ("breakdown", "interval", "inputs", "ttft_mixture", "wait_parts")}
    bd = {ph: {op: {k: np.ravel(v)[i] if np.ndim(v) else v for k, v in d.items()}
               for op, d in ops.items()} for ph, ops in e.breakdown.items()}
    inputs = {k: np.ravel(v)[i] if np.ndim(v) else v for k, v in e.inputs.items()}
    return dataclasses.replace(e, **pick, breakdown=bd, inputs=inputs, interval={},
                               ttft_mixture=None, wait_parts=None)


# ---- evaluate(Cluster, Workload) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def small_trace():
    return kvmodel.synthetic_trace(200, seed=3)


CLUSTER_NAMES = ("Cluster.", "Workload.", "instances", "tp", "routing", "sharing", "epsilon",
                 "hbm_cache_fraction", "request_rate")


_CLUSTER_GOOD = dict(instances=st.sampled_from([1, 2, 3]), tp=st.sampled_from([1, 2]),
                     sharing=st.sampled_from(["none", "central_pool", "p2p"]),
                     routing=st.sampled_from(["round_robin", "least_loaded", "prefix_affinity"]),
                     epsilon=st.sampled_from([0.0, 0.25]), hbm_cache_fraction=st.floats(0, 1),
                     request_rate=st.floats(1e-3, 1e3))
_CLUSTER_BAD = dict(instances=[0, 2.5, 10**8], tp=[0, 3, 2000], sharing=["mesh"],
                    routing=["nope"], epsilon=[-1.0, float("nan")],
                    hbm_cache_fraction=[1.5, -0.1], request_rate=[0.0, -1.0, float("nan"), 1e300])


@st.composite
def _cluster_kwargs(draw):
    kw = {k: draw(v) for k, v in _CLUSTER_GOOD.items()}
    bad = draw(st.sampled_from([None, None, *sorted(_CLUSTER_BAD)]))
    if bad is not None:
        kw[bad] = draw(st.sampled_from(_CLUSTER_BAD[bad]))
    return kw


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kw=_cluster_kwargs())
def test_evaluate_fuzz(small_trace, kw):
    rate = kw.pop("request_rate")
    try:
        c = kvmodel.Cluster("llama-3.1-8b", "h100-sxm", precision="bf16", **kw)
        r = kvmodel.evaluate(c, kvmodel.Workload(small_trace, request_rate=rate))
    except (ValueError, TypeError) as err:
        event(f"clear error: {str(err)[:30]}")
        assert any(name in str(err) for name in CLUSTER_NAMES), str(err)
        return
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert bool(r.stable) == (r.reason == "")
    for name in ("ttft_s", "tpot_s", "e2e_s", "ttft_p99_s", "tpot_p99_s"):
        v = getattr(r, name)
        assert not math.isnan(v) and v >= 0 and math.isfinite(v) == bool(r.stable)
    assert 0 <= r.served_rate_per_s <= rate * (1 + 1e-9)
    assert 0 <= r.goodput_per_s <= r.served_rate_per_s * (1 + 1e-9)
    assert all(0 <= h <= 1 + 1e-9 for h in r.hit_ratio.values())


# ---- trace loader -------------------------------------------------------------------------------
_good_cell = st.integers(0, 10**5).map(str)
_cell = st.one_of(_good_cell, st.integers(-5, 10**6).map(str), st.floats(-1.0, 1e4).map(repr),
                  st.sampled_from(["", "nan", "inf", "x", "1e107", "99999999999999999999"]))


@FAST
@given(header=st.permutations(["arrival_s", "input_len", "output_len"]),
       drop=st.sampled_from([False, False, False, True]),
       rows=st.lists(st.one_of(st.lists(_good_cell, min_size=3, max_size=3),
                               st.lists(_cell, min_size=3, max_size=3)), max_size=6))
def test_csv_trace_fuzz(header, drop, rows):
    cols = header[:2] if drop else header
    text = ",".join(cols) + "\n" + "".join(",".join(r[:len(cols)]) + "\n" for r in rows)
    _load_and_check(text, "fuzz.csv")


_good_row = st.fixed_dictionaries({"arrival_s": st.floats(0, 1e4),
                                   "input_len": st.integers(0, 10**5),
                                   "output_len": st.integers(0, 10**4)})
_value = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=3), st.none(), st.lists(st.integers(0, 9), max_size=3))
_odd_row = st.dictionaries(st.sampled_from(["arrival_s", "input_len", "output_len", "timestamp",
                                            "extra"]), _value, max_size=4)


@FAST
@given(rows=st.lists(st.one_of(_good_row, _good_row, _good_row, _odd_row), max_size=5),
       junk=st.sampled_from(["", "", "", "[1, 2]\n", "{\n", "null\n"]))
def test_jsonl_trace_fuzz(rows, junk):
    text = "".join(json.dumps(r) + "\n" for r in rows) + junk
    _load_and_check(text, "fuzz.jsonl")


def _load_and_check(text: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_text(text)
        try:
            tr = kvmodel.load_trace(p)
        except ValueError as err:
            event(f"clear error: {str(err).split(': ', 1)[-1][:30]}")
            assert name in str(err), str(err)
            return
    n = len(tr)
    assert len(tr.input_len) == len(tr.output_len) == n
    assert np.all(np.isfinite(tr.arrival_s)) and np.all(np.diff(tr.arrival_s) >= 0)
    assert np.all(tr.input_len >= 0) and np.all(tr.output_len >= 0)


# ---- hardware TOML loader -----------------------------------------------------------------------
@FAST
@given(value=st.one_of(*[st.floats(1e-3, 1e4)] * 6, st.integers(-10, 10**6),
                       st.floats(allow_nan=False, allow_infinity=False),
                       st.sampled_from(["3", "nan", "true"])),
       unit=st.sampled_from(["TB/s"] * 4 + ["GB/s"] * 4 + ["B/s", "Gb/s", "GiB/s", "TB", "W",
                                                          "tb/s", ""]),
       kind=st.sampled_from(["assumed"] * 6 + ["datasheet", "guessed"]))
def test_hardware_toml_fuzz(value, unit, kind):
    from conftest import TOY_GPU
    raw = value if isinstance(value, str) else repr(float(value))
    raw = {"nan": "nan", "true": "true", "3": '"3"'}.get(raw, raw)
    line = (f'hbm_bandwidth = {{ value = {raw}, unit = "{unit}", kind = "{kind}", '
            'source = "test", reason = "fuzz" }')
    text = TOY_GPU.replace(next(x for x in TOY_GPU.splitlines()
                                if x.startswith("hbm_bandwidth")), line)
    reset_catalog()
    try:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "fuzz.toml"
            p.write_text(text)
            try:
                kvmodel.load_hardware(p)
            except kvmodel.HardwareDBError as err:
                event(f"clear error: {str(err).split('hbm_bandwidth: ')[-1][:30]}")
                assert "fuzz.toml" in str(err) and "hbm_bandwidth" in str(err), str(err)
                return
        bw = kvmodel.get_gpu("toy").hbm_bw_Bps
        assert 1e6 <= bw <= 1e16
        assert kvmodel.estimate("llama-3.1-8b", "toy").feasible
    finally:
        reset_catalog()


# ---- search space parser ------------------------------------------------------------------------
_dimname = st.sampled_from(["instances", "tp", "sharing", "dram_GB_per_node", "prefill_share",
                            "routing", "bogus"])
_number = st.one_of(st.integers(-10, 10**4), st.floats(allow_nan=True, allow_infinity=True))
_dimtable = st.one_of(
    st.fixed_dictionaries({"range": st.lists(_number, min_size=0, max_size=3)},
                          optional={"step": _number, "log": st.booleans(),
                                    "when": st.dictionaries(_dimname, st.text(max_size=4),
                                                            max_size=1)}),
    st.fixed_dictionaries({"choices": st.lists(st.one_of(st.integers(-2, 64),
                                                         st.sampled_from(["none", "p2p",
                                                                          "round_robin"])),
                                               max_size=4)}),
    st.integers(), st.text(max_size=3))


_good_dims = st.fixed_dictionaries({}, optional={
    "instances": st.just({"range": [1, 16]}), "tp": st.just({"choices": [1, 2, 4, 8]}),
    "sharing": st.just({"choices": ["none", "p2p"]}),
    "dram_GB_per_node": st.just({"range": [0, 4096], "step": 256}),
    "prefill_share": st.just({"range": [0.1, 0.9]}),
    "disaggregated": st.just({"choices": [False, True]})})


@settings(max_examples=80, deadline=None, derandomize=True)
@given(dims=st.one_of(_good_dims, _good_dims, st.dictionaries(_dimname, _dimtable, max_size=3)),
       fixed=st.one_of(st.just({"model": "llama-3.1-8b", "gpu": "h100-sxm"}),
                       st.dictionaries(st.sampled_from(["model", "gpu", "tp", "nope"]),
                                       st.one_of(st.sampled_from(["llama-3.1-8b", "h100-sxm"]),
                                                 st.integers(-1, 8)), max_size=3)),
       metrics=st.one_of(st.just(["goodput_per_dollar"]),
                         st.lists(st.sampled_from(["goodput_per_dollar", "ttft_p99_s", "nope"]),
                                  max_size=2)),
       extra=st.one_of(st.just({}), st.dictionaries(st.sampled_from(["schema_version", "colour"]),
                                                   st.integers(0, 2), max_size=1)))
def test_space_from_dict_fuzz(dims, fixed, metrics, extra):
    data = {"name": "fuzz", "dims": dims, "fixed": fixed, "objective": {"metrics": metrics},
            "workload": {"trace": "synthetic"},
            **extra}
    try:
        sp = space_from_dict(data, where="fuzz.toml")
    except SpaceError as err:
        event(f"clear error: {str(err).split('fuzz.toml: ')[-1][:30]}")
        assert "fuzz.toml" in str(err), str(err)
        return
    assert sp.name == "fuzz" and set(sp.metrics) <= {"goodput_per_dollar", "ttft_p99_s"}
    for d in sp.dims:
        if d.choices is None:
            assert math.isfinite(d.low) and math.isfinite(d.high) and d.low <= d.high
        else:
            assert len(d.choices) >= 1
