"""The open-loop closed forms against the reference simulator over a grid of loads.

Observed agreement (benchmarks in the closing note): mean TPOT and E2E within ~10 % and mean
TTFT within ~10 % up to 70 % of the saturation rate. With the token-budget prefill server
(issue 13, ``benchmarks/queue_vs_sim.py``) the closed form holds to 90 % of saturation within
the issue's bars (mean TTFT 20 %, p99 TTFT 35 %, mean TPOT 15 %); beyond that, and where the
KV slots bind (an 8K shared prefix), the simulator saturates earlier (see the bars below).
"""

import numpy as np
import pytest

import kvmodel
from kvmodel.sim import poisson_requests, simulate
from kvmodel.workload._trace_types import Trace

CASES = [("llama-3.1-8b", "h100-sxm", 1, 1024, 128), ("llama-3.1-70b", "h100-sxm", 4, 467, 256)]


@pytest.mark.slow
@pytest.mark.parametrize("model,gpu,tp,I,O", CASES)
def test_closed_form_tracks_simulator(model, gpu, tp, I, O):
    sat = kvmodel.estimate(model, gpu, tp=tp, input_len=I, output_len=O, batch="max")
    for u in (0.1, 0.3, 0.5, 0.7):
        lam = u * sat.saturation_request_rate_per_s
        e = kvmodel.estimate(model, gpu, tp=tp, input_len=I, output_len=O, request_rate=lam)
        r = simulate(model, gpu, poisson_requests(4000, lam, I, O, seed=1), tp=tp)
        assert e.stable
        assert e.tpot_s == pytest.approx(r.tpot_mean_s, rel=0.12), u
        assert e.e2e_s == pytest.approx(r.e2e_mean_s, rel=0.12), u
        assert e.ttft_s == pytest.approx(r.ttft_mean_s, rel=0.15), u
        # Little's law holds in both
        assert e.output_tok_per_s / O == pytest.approx(lam)
        assert r.little()["rel_err"] < 0.02


def _shared_prefix(tr: Trace, P: int, bt: int = 512) -> Trace:
    """``tr`` with every prompt's first P tokens one shared block chain (then a unique block)."""
    n, k = len(tr), P // bt
    ids = np.concatenate([np.concatenate([np.arange(k), [10**9 + i]]) for i in range(n)])
    return Trace(tr.arrival_s, tr.input_len, tr.output_len, np.arange(n + 1) * (k + 1),
                 ids.astype(np.int64), block_tokens=bt)


# (model, tp, I, O, cached prefix, loads where the issue-13 bars hold)
BAR_CASES = [("llama-3.1-8b", 1, 1024, 128, 0, (0.3, 0.5, 0.7, 0.85, 0.9)),
             ("llama-3.1-70b", 8, 2048, 256, 0, (0.3, 0.5, 0.7, 0.85, 0.9, 0.95)),
             ("llama-3.1-8b", 1, 9216, 128, 8192, (0.3, 0.5, 0.7))]


@pytest.mark.slow
@pytest.mark.parametrize("model,tp,I,O,P,loads", BAR_CASES)
def test_token_budget_queue_meets_the_issue_bars(model, tp, I, O, P, loads):
    kw = dict(tp=tp, input_len=I, output_len=O, cached_prefix_len=P)
    sat = kvmodel.estimate(model, "h100-sxm", batch="max", **kw).saturation_request_rate_per_s
    for u in loads:
        lam = u * sat
        e = kvmodel.estimate(model, "h100-sxm", request_rate=lam, **kw)
        tr = poisson_requests(3000, lam, I, O, seed=1)
        extra = {}
        if P:
            tr, extra = _shared_prefix(tr, P), dict(prefix_cache_blocks=P // 512 + 2)
        r = simulate(model, "h100-sxm", tr, tp=tp, **extra)
        assert e.stable, u
        assert e.ttft_s == pytest.approx(r.stat("ttft", "mean"), rel=0.20), u
        assert e.ttft_p99_s == pytest.approx(r.stat("ttft", "p99"), rel=0.35), u
        assert e.tpot_s == pytest.approx(r.stat("tpot", "mean"), rel=0.15), u


@pytest.mark.slow
def test_tpot_tail_grows_with_the_drift_of_the_batch():
    """p99 of a request's TPOT: within 30 % of the simulator at 50 % and 85 % load (the drift
    of D is what spreads it; without it the closed form was 35-40 % low at 85 %)."""
    I, O = 1024, 128
    sat = kvmodel.estimate("llama-3.1-8b", "h100-sxm", input_len=I, output_len=O,
                           batch="max").saturation_request_rate_per_s
    for u in (0.5, 0.85):
        e = kvmodel.estimate("llama-3.1-8b", "h100-sxm", input_len=I, output_len=O,
                             request_rate=u * sat)
        r = simulate("llama-3.1-8b", "h100-sxm", poisson_requests(3000, u * sat, I, O, seed=1))
        assert e.tpot_p99_s == pytest.approx(r.stat("tpot", "p99"), rel=0.30), u
        assert e.tpot_s < e.tpot_p90_s < e.tpot_p99_s
