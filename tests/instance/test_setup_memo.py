"""estimate's Setup memo (_estimate._memo_setup): a memoised Setup equals a fresh one field by
field and gives the same estimate as with the memo emptied; int and float parallelism, other
specs or another calibration are other entries; the table is bounded."""

import dataclasses

import pytest

from kvmodel.catalog.hardware import current, get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance import _estimate as E
from kvmodel.instance.seam import params, setup

ARGS = (get_model("llama-3.1-8b"), get_gpu("h100-sxm"), get_framework("vllm"))


def _fields(s):
    return {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}


def test_memoised_setup_equals_a_fresh_one():
    cal = params()
    current()._memo.pop("setup", None)
    first = E._memo_setup(*ARGS, 2.0, 1.0, 1.0, "fp8", "fp8", cal)
    again = E._memo_setup(*ARGS, 2.0, 1.0, 1.0, "fp8", "fp8", cal)
    assert again is first
    assert _fields(first) == _fields(setup(*ARGS, 2.0, 1.0, 1.0, "fp8", "fp8", cal))


@pytest.mark.parametrize("change", [dict(tp=2), dict(precision="bf16"), dict(cal="copy"),
                                    dict(model="llama-3.1-70b")])
def test_other_inputs_are_other_entries(change):
    cal = params()
    base = dict(tp=2.0, precision="fp8", cal=cal, model=ARGS[0])
    first = E._memo_setup(base["model"], *ARGS[1:], base["tp"], 1.0, 1.0, base["precision"], "fp8",
                          cal)
    kw = dict(base, **change)
    if kw["cal"] == "copy":
        kw["cal"] = dict(cal)  # equal values, another object: keyed by identity
    m = get_model(kw["model"]) if isinstance(kw["model"], str) else kw["model"]
    other = E._memo_setup(m, *ARGS[1:], kw["tp"], 1.0, 1.0, kw["precision"], "fp8", kw["cal"])
    assert other is not first
    assert type(other.tp) is type(kw["tp"])


def test_estimate_with_the_memo_equals_a_fresh_one():
    kw = dict(tp=2, precision="fp8", input_len=3000, output_len=200, request_rate=5.0)
    E.estimate("llama-3.1-8b", "h100-sxm", **kw)
    memo = E.estimate("llama-3.1-8b", "h100-sxm", **kw)
    current()._memo.clear()
    fresh = E.estimate("llama-3.1-8b", "h100-sxm", **kw)
    for name in ("ttft_s", "tpot_s", "ttft_p99_s", "output_tok_per_s"):
        assert getattr(memo, name) == getattr(fresh, name)


def test_the_table_is_bounded():
    cal = params()
    current()._memo.pop("setup", None)
    for tp in range(1, E._SETUPS + 40):
        E._memo_setup(*ARGS, float(tp), 1.0, 1.0, "bf16", "bf16", cal)
    assert 0 < len(current()._memo["setup"]) <= E._SETUPS
