"""Prefill-first engines whose prompt steps carry no decodes (``mixed_steps = false``):
the throughput-max cohort cycle by hand on toy hardware, and against the simulator."""

import numpy as np
import pytest

import kvmodel
from kvmodel.catalog.hardware import FrameworkSpec, get_framework, get_gpu
from kvmodel.catalog.models import ModelSpec
from kvmodel.instance import _estimate
from kvmodel.instance import _unmixed as um
from kvmodel.instance._roofline import Setup
from kvmodel.instance.seam import params
from kvmodel.sim import simulate
from kvmodel.workload._trace_types import Trace

TOY = ModelSpec(key="toy", name="toy", hf_id="toy", attention="mha", hidden_size=1000,
                num_layers=10, num_attention_heads=10, num_kv_heads=10, head_dim=100,
                intermediate_size=4000, vocab_size=10_000)

TOY_FRAMEWORKS = """schema_version = 1
[framework.toy-unmixed]
name = "toy prefill-first engine"
step_overhead = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "round" }
mixed_steps = false
[framework.toy-mixed]
name = "toy engine with mixed steps"
step_overhead = { value = 1, unit = "ms", kind = "assumed", source = "test", reason = "round" }
"""


def fixed_step_setup(mixed: bool) -> Setup:
    """Every step lasts exactly its 10 ms overhead: compute and memory are (almost) free."""
    fw = FrameworkSpec("toy", "toy", 0.01, {} if mixed else {"mixed_steps": False})
    return Setup(model=TOY, gpu=get_gpu("h100-sxm"), framework=fw, tp=1, pp=1, ep=1, w_B=2.0,
                 kv_B=2.0, act_B=2.0, gemm_Fps=1e30, attn_Fps=1e30, hbm_Bps=1e30,
                 coll_alpha_s=0.0, coll_Bps=1e30, p2p_alpha_s=0.0, overhead_s=0.01)


def test_cohort_cycle_by_hand():
    """B = 8 slots, 1000-token prompts, budget 3000 tokens: prefill steps of 3, 3 and 2
    prompts, then O - 1 = 4 decode steps: 7 steps of 10 ms = 70 ms for 8 x 5 tokens.
    First tokens after 1, 1, 1, 2, 2, 2, 3, 3 steps: mean 15/8 steps = 18.75 ms; the rest
    of a request's 4 tokens take (30 - 18.75) + 40 ms, 12.8125 ms each."""
    s = fixed_step_setup(mixed=False)
    assert um.unmixed(s)
    cyc = um.cycle(s, 1000.0, 5.0, 8.0, 3000.0, 1000.0, 1002.5)
    assert cyc["B"] == 8.0
    assert cyc["q"] == pytest.approx(8.0 / 7.0)
    assert cyc["period"] == pytest.approx(0.010)
    assert cyc["first"] == pytest.approx(0.01875)
    assert cyc["tpot"] == pytest.approx(0.0128125)
    assert 8.0 * 5.0 / (7 * cyc["period"]) == pytest.approx(571.4285714)


def test_throughput_max_uses_the_cycle_and_mixed_engines_do_not():
    """The same toy at throughput-max: 8 requests x 5 tokens per 70 ms unmixed; mixed steps
    finish B / (O - 1 + 1) = 8/5 requests per 10 ms step instead (800 tok/s)."""
    pre = _estimate._Prefix(fixed_step_setup(False), 0.0, None, "recompute", 1000.0)
    res = _estimate._throughput_max(fixed_step_setup(False), 1000.0, 5.0, 1.0, 8.0, 3000.0,
                                    0.0, pre)
    assert res["tok"] == pytest.approx(40.0 / 0.07)
    assert res["ttft"] == pytest.approx(0.01875) and res["tpot"] == pytest.approx(0.0128125)
    assert res["e2e"] == pytest.approx(0.01875 + 4 * 0.0128125)
    mixed = _estimate._throughput_max(fixed_step_setup(True), 1000.0, 5.0, 1.0, 8.0, 3000.0,
                                      0.0, pre)
    assert mixed["tok"] == pytest.approx(800.0)


def test_prompt_longer_than_the_budget_runs_alone_in_chunks():
    """2 slots, 5000-token prompts, 2000-token budget: k = 3 chunks each, one per step: 6
    prefill steps + 4 decode steps; first tokens after 3 and 6 steps (mean 45 ms)."""
    cyc = um.cycle(fixed_step_setup(False), 5000.0, 5.0, 2.0, 2000.0, 5000.0, 5002.5)
    assert cyc["q"] == pytest.approx(2.0 / 10.0)
    assert cyc["first"] == pytest.approx(0.045)
    assert cyc["tpot"] == pytest.approx((0.060 - 0.045 + 0.040) / 4.0)


def test_vllm_ascend_runs_unmixed_steps():
    assert get_framework("vllm-ascend").quantities["mixed_steps"] is False
    assert "mixed_steps" not in get_framework("vllm").quantities


def _batch(n: int, I: int, O: int) -> Trace:
    """``n`` equal requests all sent at t = 0 (an offline batch)."""
    return Trace(np.zeros(n), np.full(n, I), np.full(n, O), np.zeros(n + 1, dtype=np.int64),
                 np.zeros(0, dtype=np.int64), name="batch")


@pytest.fixture
def toy_frameworks(catalog_with):
    return catalog_with(TOY_FRAMEWORKS)


@pytest.mark.parametrize("gpu, I, O, B, mnt", [
    ("h100-sxm", 2000, 100, 8, 6000),      # 3 prompts a step: steps of 3, 3, 2
    ("h100-sxm", 1000, 50, 16, 4096),      # 4 a step, none left over
    ("ascend-910b", 2000, 100, 20, 40960),  # one prefill step of all 20
])
def test_cycle_matches_the_simulator(toy_frameworks, gpu, I, O, B, mnt):
    """Five cohorts of an offline batch in the simulator run five cycles back to back: its
    throughput, TPOT and the first cohort's TTFT are the closed form's (decode contexts
    averaged over the cycle: the attention term is linear in them)."""
    m = 5
    kw = dict(input_len=I, output_len=O, max_batch_size=B, max_num_tokens=mnt,
              framework="toy-unmixed")
    e = kvmodel.estimate("qwen3-8b", gpu, batch="max", **kw)
    r = simulate("qwen3-8b", gpu, _batch(m * B, I, O), framework="toy-unmixed",
                 max_batch_size=B, max_num_tokens=mnt)
    span = float(np.max(r.finish_s)) - params(None)["request_overhead"]
    assert m * B * O / span == pytest.approx(e.output_tok_per_s, rel=1e-4)
    assert float(np.mean(r.tpot_s)) == pytest.approx(e.tpot_s, rel=1e-4)
    assert float(np.mean(r.ttft_s[:B])) == pytest.approx(e.ttft_s, rel=1e-4)
    mixed = simulate("qwen3-8b", gpu, _batch(m * B, I, O), framework="toy-mixed",
                     max_batch_size=B, max_num_tokens=mnt)
    assert mixed.steps <= r.steps  # mixed steps fold prompts into decode steps (all in one: equal)


def test_decoders_wait_through_a_prompt_step(toy_frameworks):
    """A request arriving while another decodes: in the unmixed engine the decoder emits no
    token during the newcomer's prefill step, so its time per token grows by that step."""
    tr = Trace(np.array([0.0, 0.05]), np.array([1000, 4000]), np.array([200, 2]),
               np.zeros(3, dtype=np.int64), np.zeros(0, dtype=np.int64), name="two")
    kw = dict(max_batch_size=4, max_num_tokens=8192)
    a = simulate("qwen3-8b", "h100-sxm", tr, framework="toy-unmixed", **kw)
    b = simulate("qwen3-8b", "h100-sxm", tr, framework="toy-mixed", **kw)
    assert a.steps == b.steps + 1  # one step more: the prompt's own
    assert a.e2e_s[0] > b.e2e_s[0]
