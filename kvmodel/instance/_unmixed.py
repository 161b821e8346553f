"""Throughput-max on an engine whose prompt steps carry no decodes (``mixed_steps = false``).

A prefill-first scheduler without chunked prefill (vLLM's V0 default; vLLM-Ascend v0.9.1's
AscendScheduler for non-MLA models) schedules waiting prompts first, whole, up to the step's
token budget ``max_tokens``; only when no prompt is scheduled does it run a decode step of
every running sequence. Saturated (a queue always waiting) with equal lengths, the B slots
run in one cohort: they free together, the next B prompts run in prefill-only steps of
``p = floor(max_tokens / n)`` prompts each (N full steps and one of the r left over), the
decoders idle meanwhile, then O − 1 decode steps of all B (whose first token came from their
prefill step). The cycle::

    T = N·t_pf(p) + [r > 0]·t_pf(r) + (O − 1)·t_dec(B)

completes B requests: B·O / T output tokens per second and replica. A request prefilled in
step j sees its first token after the first j prefill steps; its other O − 1 tokens come by
the end of the cycle. A prompt longer than the budget (the engine would refuse it) runs
alone in k = ceil(n / max_tokens) chunks, one per step, as the simulator runs it.

With ``pp`` stages a step's prompts and decoders split over the stages as in the mixed cycle
(:func:`kvmodel.instance._estimate._tm_kinds`). Checked against :mod:`kvmodel.sim` (the same
option there) in ``tests/instance/test_unmixed_steps.py``.
"""

from __future__ import annotations

from typing import Any

from kvmodel.base import xp as xp
from kvmodel.instance._roofline import Setup, attn_pairs, attn_reads, chunk_start, mean_ops, step_ops

__all__ = ["unmixed", "cycle"]


def unmixed(s: Setup) -> bool:
    """Whether the setup's framework runs prompts in steps without decodes."""
    return s.framework.quantities.get("mixed_steps", True) is False


def _cohort(O, bmax, max_tokens, n):
    """(B, k, p, N, r): batch, chunks per prompt, chunks per full prefill step, full prefill
    steps per cycle and chunks of the last, partial step (0: none)."""
    B = xp.maximum(xp.minimum(bmax, max_tokens), 1.0)  # a decode step carries B tokens
    k = xp.ceil(n / xp.minimum(n, max_tokens))
    p = xp.where(k > 1.0, 1.0, xp.minimum(xp.maximum(xp.floor(max_tokens / n), 1.0), B))
    N = xp.floor(B * k / p)
    return B, k, p, N, B * k - N * p


def _prefill_step(s: Setup, I, n, k, m):
    """``step_ops`` of a prefill-only step of ``m`` chunks of n / k tokens (each prompt has
    I − n cached tokens before its first chunk; mean context before a chunk as in the mixed
    cycle), per pipeline stage."""
    m = m / s.pp
    tok = m * n / k
    return step_ops(s, tok, m / k, attn_pairs(s, tok * (I - n / 2.0), I, n), 0.0,
                    attn_reads(s, m, chunk_start(I, n, k)), tok)


def cycle(s: Setup, I, O, bmax, max_tokens, n, c) -> dict[str, Any]:
    """The unmixed throughput-max cycle: ``B``, ``q`` (requests per step), ``ops`` (mean step
    breakdown), ``period`` (mean stage period of a step, as the mixed cycle's), ``first``
    (mean time from the cycle's start to a request's first token) and ``tpot`` (mean time per
    later token). ``n``: prompt tokens each request computes; ``c``: mean decode context."""
    B, k, p, N, r = _cohort(O, bmax, max_tokens, n)
    d = B / s.pp
    kinds = (_prefill_step(s, I, n, k, p), _prefill_step(s, I, n, k, r),
             step_ops(s, d, d, 0.0, d * c, d * c, d))
    has_r = xp.where(r > 0.0, 1.0, 0.0)
    steps = N + has_r + (O - 1.0)
    counts = (N, has_r, O - 1.0)
    ops = mean_ops([kind[0] for kind in kinds], [x / steps for x in counts])
    period = 0.0
    for (o, stage, _), x in zip(kinds, counts):
        period = period + x * (stage + o["framework"]["time_s"])
    t_p, t_r, t_d = (kind[2] for kind in kinds)  # latencies through every stage
    first = (p * t_p * N * (N + 1.0) / 2.0 + r * (N * t_p + t_r)) / (B * k) + t_p * (k - 1.0) / 2.0
    prefill = N * t_p + has_r * t_r
    tpot = xp.where(O > 1.0, (prefill - first + (O - 1.0) * t_d) / xp.maximum(O - 1.0, 1.0), t_d)
    return dict(B=B, q=B / steps, ops=ops, period=period / steps, first=first, tpot=tpot)
