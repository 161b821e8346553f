"""roofline.memoised: a memo keyed by the Setup's and the arguments' values gives the very
numbers it would compute, never another Setup's or argument's, and shares nothing writable."""

import dataclasses

import numpy as np
import pytest

from kvmodel.catalog.hardware import get_connector, get_framework, get_gpu
from kvmodel.catalog.models import ModelSpec, get_model
from kvmodel.instance._prefix import _load_seconds, load_seconds
from kvmodel.instance._roofline import Setup, memoised, step_ops
from kvmodel.tiers import node_tiers

TOY = ModelSpec(key="toy", name="toy", hf_id="toy", attention="mha", hidden_size=1000,
                num_layers=10, num_attention_heads=10, num_kv_heads=10, head_dim=100,
                intermediate_size=4000, vocab_size=10_000)


def setup(**kw):
    base = dict(model=TOY, gpu=get_gpu("h100-sxm"), framework=get_framework("vllm"), tp=1,
                pp=1, ep=1, w_B=2.0, kv_B=2.0, act_B=2.0, gemm_Fps=1e15, attn_Fps=1e15,
                hbm_Bps=1e12, coll_alpha_s=0.0, coll_Bps=1e11, p2p_alpha_s=0.0, overhead_s=0.0)
    return Setup(**(base | kw))


def prefill_s(s, tokens):
    calls = []

    def compute():
        calls.append(1)
        return step_ops(s, tokens, 1.0, tokens * tokens / 2.0, 0.0, 0.0, tokens)[2]
    return memoised("test_prefill_s", s, (tokens,), compute), len(calls)


def test_equal_setups_share_an_entry_with_the_same_numbers():
    tokens = np.array([100.0, 2000.0, 30_000.0])
    first, n1 = prefill_s(setup(), tokens)
    again, n2 = prefill_s(setup(), tokens.copy())  # another Setup and array, equal values
    fresh = step_ops(setup(), tokens, 1.0, tokens * tokens / 2.0, 0.0, 0.0, tokens)[2]
    assert (n1, n2) == (1, 0)
    assert np.array_equal(again, fresh) and again.tobytes() == fresh.tobytes()


@pytest.mark.parametrize("change", [dict(hbm_Bps=2e12), dict(tp=2), dict(tp=1.0),
                                    dict(kernel_s=1e-6)])
def test_another_setup_value_is_computed_afresh(change):
    tokens = np.array([100.0, 2000.0])
    prefill_s(setup(), tokens)
    got, n = prefill_s(setup(**change), tokens)
    assert n == 1
    s = setup(**change)
    assert np.array_equal(got, step_ops(s, tokens, 1.0, tokens * tokens / 2.0, 0.0, 0.0,
                                        tokens)[2])


def test_other_arguments_and_zero_signs_miss():
    prefill_s(setup(), np.array([100.0, 200.0]))
    assert prefill_s(setup(), np.array([100.0, 300.0]))[1] == 1
    assert prefill_s(setup(), np.array([100.0, 200.0], dtype=np.float32))[1] == 1
    calls = []
    for v in (0.0, -0.0, 0.0):
        memoised("test_zero", setup(), (v,), lambda: calls.append(v) or v)
    assert len(calls) == 2


def test_entries_are_read_only_and_array_setups_keyed_by_value():
    got, _ = prefill_s(setup(), np.array([5.0, 6.0]))
    with pytest.raises(ValueError):
        got[0] = 0.0
    assert prefill_s(setup(tp=np.array([1.0, 2.0])), 10.0)[1] == 1
    assert prefill_s(setup(tp=np.array([1.0, 2.0])), 10.0)[1] == 0
    assert prefill_s(setup(tp=np.array([1.0, 4.0])), 10.0)[1] == 1
    big = np.ones(5000)  # a vectorised evaluation's arrays are not kept
    assert prefill_s(setup(tp=big), 10.0)[1] == 1 and prefill_s(setup(tp=big), 10.0)[1] == 1


def test_load_seconds_memo_follows_the_path_value():
    s = setup(model=get_model("llama-3.1-70b"), tp=8)
    tok = np.array([0.0, 2052.0, 8628.0])
    conn = get_connector("ideal")
    a = node_tiers("dgx-h100", dram_B=1e12)["dram"]
    b = node_tiers("dgx-h100", dram_B=2e12)["dram"]  # another tier object, an equal path
    slower = dataclasses.replace(a, path=dataclasses.replace(a.path,
                                                             source_Bps=a.path.source_Bps / 4))
    for tier in (a, b, slower, a):
        got = load_seconds(s, tier, tok, "contiguous", 256.0, connector=conn)
        want = _load_seconds(s, tier, "contiguous", conn, tok, 256.0, 1.0, None, 1.0)
        assert got.tobytes() == want.tobytes()
    assert (load_seconds(s, slower, tok, connector=conn)[1:]
            > load_seconds(s, a, tok, connector=conn)[1:]).all()
