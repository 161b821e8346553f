"""Open-loop continuous batching as a token-budget batch server (vectorised, SI units).

Prompts arrive at rate λ per replica (inter-arrival SCV ``ca2``); each brings ``new`` uncached
prompt tokens (SCV ``cs2`` across prompts). Every step runs the D decoding sequences and fills
the rest of the token budget, ``b = max_num_tokens − D``, with prefill chunks in arrival order,
so many prompts may share one step (the engine of :mod:`kvmodel.sim`).

**Steps.** A step carries prefill when at least one prompt's chunk is waiting at its start.
With Poisson arrivals and steps of mean length t, a step is busy with probability
``f = 1 − exp(−λ·t·k)`` (``k`` chunks per prompt: a prompt keeps k steps busy), and a busy step
carries ``P = λ·new·t / f`` prompt tokens (conservation: λ·new tokens per second), capped by
``b`` (then ``f = λ·new·t / b``). For λ·t·k → 0 this is one chunk per busy step; under load
several prompts share a step, which is what makes busy steps longer and fewer than one prompt
per step would. The mean step t solves ``t = f·t_busy(P) + (1 − f)·t_decode``.

**Prefill queue.** Measured in tokens, the prefill work is served at ``μ = b / t_full`` tokens
per second while there is a backlog (``t_full``: a step with D decodes and a full budget of
prompt tokens), so its utilisation is ``ρ_tok = λ·new / μ``. This server saturates where the
whole instance does: at the throughput-max rate λ_sat the budget is full in every step. The
closed form uses ``ρ = max(ρ_tok, λ/λ_sat)`` so that the wait grows without bound exactly at
the reported saturation rate (the two differ only by the O vs O − 1 decode tokens of a
request and the mean context, ~1 %). A prompt waits as in G/G/1 (Kingman) on token work,
``W = (ca2 + cs2)/2 · ρ/(1 − ρ) · new/μ``, then runs its own ``ceil(new/b)`` chunks in busy
steps. The KV-slot wait (Allen–Cunneen over the largest batch) is added by the caller.

**TPOT.** A request's inter-token time is the step time averaged over the steps it decodes
in, i.e. weighted by D: ``E[D·t] / E[D] = t + Cov(D, t)/E[D]``. The decode count D moves with
the load in its window of O − 1 steps (Poisson, variance ≈ D) and the step time moves with D
through ``dt/dD`` (longer steps with more decoders, and more prompts landing in a longer step);
the feedback D → t → D (λ(O−1)·t) amplifies both by ``1/(1 − κ)`` with
``κ = λ(O−1)·dt/dD`` < 1 at any stable load. Hence ``TPOT = t + dt/dD / (1 − κ)``.
"""

from __future__ import annotations

import math

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.instance._queueing import kingman_wait
from kvmodel.instance._roofline import Setup, step_ops

__all__ = ["busy_step", "token_server", "tpot_weighted"]


def _share(lam, t, new, chunks, budget):
    """Busy-step probability f and prompt tokens per busy step P (capped by the budget)."""
    x = lam * t * chunks
    f = -np.expm1(-x) if xp.is_array(x) else -math.expm1(-x)
    P = lam * new * t / xp.maximum(f, 1e-300)
    full = P > budget
    P = xp.minimum(xp.maximum(P, new / chunks), budget)
    f = xp.where(full, xp.minimum(lam * new * t / budget, 1.0), f)
    return f, P


def busy_step(s: Setup, t, D, lam, I, new, c, max_tokens):
    """Residual of the mean step time ``t`` at D decoders, and the busy step's ops."""
    budget = xp.maximum(max_tokens - D, 1.0)
    chunks = xp.ceil(new / xp.minimum(new, budget))
    f, P = _share(lam, t, new, chunks, budget)
    ops, _, t_p = step_ops(s, D + P, D + P / new, P * (I - new / 2.0), D * c, D * c, D + P)
    t_d = step_ops(s, D, D, 0.0, D * c, D * c, D)[2]
    return f * t_p + (1.0 - f) * t_d - t, ops


def step_parts(s: Setup, t, D, lam, I, new, c, max_tokens):
    """(f, t_busy, t_decode) of the mean step: busy share and the two step kinds' times."""
    budget = xp.maximum(max_tokens - D, 1.0)
    chunks = xp.ceil(new / xp.minimum(new, budget))
    f, P = _share(lam, t, new, chunks, budget)
    t_p = step_ops(s, D + P, D + P / new, P * (I - new / 2.0), D * c, D * c, D + P)[2]
    t_d = step_ops(s, D, D, 0.0, D * c, D * c, D)[2]
    return f, t_p, t_d


def token_server(s: Setup, lam, D, I, new, c, max_tokens, ca2, cs2):
    """Utilisation and mean wait of the token-budget prefill server (module docstring).

    Returns ``(rho, wait_s, t_full)``; ``rho`` >= 1 marks an unstable element (its wait is
    then computed at rho = 0.5 and must be masked by the caller)."""
    budget = xp.maximum(max_tokens - D, 1.0)
    t_full = step_ops(s, D + budget, D + budget / new, budget * (I - new / 2.0), D * c, D * c,
                      D + budget)[2]
    per_prompt = new * t_full / budget  # seconds of full-budget service per prompt
    rho = lam * per_prompt
    rho_s = xp.where(rho < 1.0, rho, 0.5)
    return rho, kingman_wait(rho_s, ca2, cs2, per_prompt), t_full


def tpot_weighted(t, dt_dD, lam, O):
    """Mean TPOT a request experiences (D-weighted step time, module docstring)."""
    kappa = xp.minimum(lam * (O - 1.0) * dt_dD, 0.95)
    return t + xp.maximum(dt_dD, 0.0) / (1.0 - kappa)
