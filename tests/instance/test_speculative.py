"""Speculative decoding: expected accepted tokens against sympy and Monte Carlo, the TPOT
factor's parts and its application in every mode, monotonicity, KV cost and errors."""

import numpy as np
import pytest
import sympy as sp

from kvmodel import estimate
from kvmodel.instance._speculative import Speculative, expected_tokens
from kvmodel.instance.seam import params


def test_expected_tokens_against_sympy_series():
    a = sp.Rational(7, 10)
    for k in range(1, 6):
        exact = sum(a ** i for i in range(k + 1))  # token i+1 comes with the first i accepted
        assert expected_tokens(0.7, float(k)) == pytest.approx(float(exact), rel=1e-14)
    assert expected_tokens(1.0, 3.0) == 4.0 and expected_tokens(0.0, 3.0) == 1.0


def test_expected_tokens_against_monte_carlo():
    rng = np.random.default_rng(7)
    for alpha, k in ((0.6, 3), (0.85, 1), (0.9, 5)):
        acc = rng.random((200_000, k)) < alpha
        leading = np.argmin(np.concatenate([acc, np.zeros((len(acc), 1), bool)], axis=1), axis=1)
        assert expected_tokens(alpha, float(k)) == pytest.approx(np.mean(leading + 1.0), rel=5e-3)


def test_expected_tokens_vectorised():
    a = np.array([0.0, 0.5, 1.0])
    assert np.allclose(expected_tokens(a, 2.0), [1.0, 1.75, 3.0])


def _est(spec=None, model="llama-3.1-70b", **kw):
    base = dict(tp=8, precision="fp8", input_len=2048, output_len=256, batch=16)
    if "concurrency" in kw or "request_rate" in kw:
        base["batch"] = 1
    base.update(kw)
    return estimate(model, "h100-sxm", speculative=spec, **base)


DRAFT = dict(method="draft", draft_model="llama-3.1-8b")


def test_factor_parts_and_batch_mode_scaling():
    plain = _est()
    e = _est(dict(DRAFT, k=3, acceptance=0.8))
    s = e.speculative
    tokens = (1 - 0.8 ** 4) / (1 - 0.8)
    assert s["accepted_tokens"] == pytest.approx(tokens)
    assert s["tpot_factor"] == pytest.approx((s["verify_s"] + s["draft_s"])
                                             / (tokens * s["decode_s"]))
    # the plain decode step is the estimate's own decode step without speculation
    assert s["decode_s"] == pytest.approx(plain.tpot_s, rel=1e-12)
    assert e.tpot_s == pytest.approx(plain.tpot_s * s["tpot_factor"], rel=1e-12)
    assert e.e2e_s == pytest.approx(e.ttft_s + 255 * e.tpot_s)
    assert e.output_tok_per_s == pytest.approx(16 * 256 / e.e2e_s)  # tp=8: one replica
    # a 70B target memory-bound at batch 16: three drafted tokens at 80 % pay off
    assert s["tpot_factor"] < 0.7
    assert e.breakdown["decode"]["spec_draft"]["bound"] in ("compute", "memory")


@pytest.mark.parametrize("kw", [dict(batch="max"), dict(concurrency=32),
                                dict(request_rate=2.0)])
def test_every_mode_scales_tpot_by_the_factor(kw):
    plain, e = _est(**kw), _est(dict(DRAFT, k=2, acceptance=0.7), **kw)
    assert e.feasible and plain.feasible
    f = e.speculative["tpot_factor"]
    assert e.tpot_s == pytest.approx(plain.tpot_s * f, rel=1e-9)
    assert e.e2e_s == pytest.approx(e.ttft_s + 255 * e.tpot_s, rel=1e-9)
    if "batch" in kw:  # throughput-max: the same batch, each step f times as long per token
        assert e.output_tok_per_s == pytest.approx(plain.output_tok_per_s / f, rel=1e-9)
    if "request_rate" in kw:  # the offered rate is served, at a lower TPOT (small batch)
        assert e.output_tok_per_s == pytest.approx(plain.output_tok_per_s, rel=1e-12)
        assert f < 1.0


def test_higher_acceptance_never_slower():
    for k in (1, 2, 3):
        tpots = [_est(dict(DRAFT, k=k, acceptance=a)).tpot_s for a in (0.0, 0.3, 0.6, 0.8, 1.0)]
        assert all(x >= y for x, y in zip(tpots, tpots[1:])), (k, tpots)
        assert _est(dict(DRAFT, k=k, acceptance=0.0)).tpot_s > _est().tpot_s  # pure cost


def test_mtp_kv_and_weight_cost_on_deepseek_v3():
    kw = dict(model="deepseek-v3", tp=1, ep=16, num_gpus=16, attention_dp=True, batch=32)
    plain, e = _est(**kw), _est(dict(method="mtp", k=1), **kw)
    s = e.speculative
    assert s["acceptance"] == params()["mtp_acceptance"]
    # one MTP layer of MLA latent + rope key (576) in fp8 KV per token
    assert s["draft_kv_B_per_token_gpu"] == pytest.approx(576 * 1.0)
    # its weights: one MoE layer (16 of 256 experts per GPU at EP16), no extra embedding/head
    assert 0.5e9 < s["draft_weights_B_per_gpu"] < 2e9
    assert e.weights_B_per_gpu == pytest.approx(plain.weights_B_per_gpu
                                                + s["draft_weights_B_per_gpu"])
    assert e.kv_capacity_tokens < plain.kv_capacity_tokens * 61 / 62 + 1
    assert s["tpot_factor"] < 1.0 and e.tpot_s < plain.tpot_s


def test_off_leaves_the_estimate_unchanged():
    a, b = _est(), estimate("llama-3.1-70b", "h100-sxm", tp=8, precision="fp8", input_len=2048,
                            output_len=256, batch=16)
    assert a.tpot_s == b.tpot_s and a.speculative == {} and a.kv_capacity_tokens == b.kv_capacity_tokens


def test_a_speculative_object_is_accepted():
    a = _est(Speculative(method="draft", k=2, acceptance=0.6, draft_model="llama-3.1-8b"))
    b = _est(dict(DRAFT, k=2, acceptance=0.6))
    assert a.tpot_s == b.tpot_s


@pytest.mark.parametrize("spec, match", [
    (dict(method="medusa"), "allowed: \\['mtp', 'draft'\\]"),
    (dict(method="mtp", k=0), "k: values must be >= 1"),
    (dict(method="mtp", k=17), "must be <= 16"),
    (dict(method="mtp", acceptance=1.5), "acceptance"),
    (dict(method="draft", acceptance=0.7), "needs a draft model"),
    (dict(method="draft", draft_model="llama-3.1-8b"), "needs an acceptance"),
    (dict(method="mtp", draft_model="llama-3.1-8b"), "takes none"),
    (dict(method="mtp", num_tokens=2), "unknown key"),
    ("mtp", "expected None, a Speculative or a mapping"),
])
def test_errors_name_field_value_and_allowed(spec, match):
    with pytest.raises(ValueError, match=match):
        _est(spec)


def test_pipeline_parallel_is_refused():
    with pytest.raises(ValueError, match="pp=1 only"):
        _est(dict(method="mtp"), tp=4, pp=2)
