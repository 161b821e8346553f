"""Speculative decoding as a TPOT factor with its KV and weight cost.

A verify step runs the target model over ``k + 1`` tokens per sequence (the last accepted
token and ``k`` drafted ones): the KV of the context is read once, attention and every GEMM
see ``k + 1`` times the decode tokens. Drafting costs ``k`` sequential forward steps of the
drafter at the decode batch: ``method="mtp"`` (DeepSeek-V3 style: ``mtp_layers`` extra
transformer layers of the target's own architecture plus the shared LM head and a 2h×h
projection, run once per drafted token) or ``method="draft"`` (a separate, smaller model of
the catalog, same GPU, TP and precision). With each drafted token accepted independently with
probability ``α`` (``acceptance``), a verify step yields on average

    E[tokens] = (1 - α^(k+1)) / (1 - α)          (k + 1 at α = 1)

tokens per sequence, so at decode batch B

    TPOT factor = (t_verify(B) + t_draft(B)) / (E[tokens] · t_decode(B)).

The drafter's KV (MTP: ``mtp_layers`` layers of the target's per-layer KV; draft model: its
own per-token KV) and weights (MTP: one layer and the projection, sharing the embedding and
head; draft: the whole model) are taken from the HBM left for the KV cache, so the largest
batch shrinks. The factor is applied at the operating point each serving mode solved without
speculation (its batch is not re-solved): TPOT, its percentiles and E2E scale; throughput
follows the shorter E2E (static batch, closed loop) or the faster step (throughput-max); an
open loop keeps its offered rate, and its saturation rate scales with the factor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.catalog.models import ModelSpec, get_model
from kvmodel.instance._roofline import Setup, memory_per_gpu, step_ops
from kvmodel.instance.seam import kv_per_seq, num

__all__ = ["Speculative", "speculative_arg", "mtp_layers", "check_model", "expected_tokens",
           "plan", "apply", "METHODS", "FORMULA"]

METHODS = ("mtp", "draft")
_KEYS = ("method", "k", "acceptance", "draft_model", "mtp_layers")
MAX_K = 16
FORMULA = ("E[tokens] = (1 - a^(k+1)) / (1 - a); TPOT factor = (t_verify(k+1 tokens/seq) + "
           "k * t_draft) / (E[tokens] * t_decode)")


@dataclass(frozen=True)
class Speculative:
    """A speculative-decoding configuration (see the module docstring). ``acceptance`` may
    be None for ``mtp``: the catalog's ``mtp_acceptance`` (DeepSeek-V3's published rate).
    ``mtp_layers`` None: the model's own MTP layer count (:func:`mtp_layers`)."""

    method: str = "mtp"
    k: int = 1
    acceptance: Any = None
    draft_model: str | ModelSpec | None = None
    mtp_layers: int | None = None


def expected_tokens(acceptance, k):
    """Mean tokens a verify step yields per sequence: (1 - α^(k+1)) / (1 - α), k + 1 at α = 1."""
    a = acceptance
    one = xp.where(a >= 1.0, 1.0, 0.0)
    den = xp.where(a >= 1.0, 1.0, 1.0 - a)
    return one * (k + 1.0) + (1.0 - one) * (1.0 - xp.power(a, k + 1.0)) / den


def speculative_arg(spec: Any, cal: Mapping[str, float]) -> Speculative | None:
    """``speculative`` checked: None, a :class:`Speculative` or a mapping of its fields."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(_KEYS))
        if unknown:
            raise ValueError(f"speculative: unknown key(s) {unknown}; allowed: {list(_KEYS)}")
        spec = Speculative(**spec)
    if not isinstance(spec, Speculative):
        raise ValueError(f"speculative={spec!r}: expected None, a Speculative or a mapping "
                         f"with keys among {list(_KEYS)}")
    if spec.method not in METHODS:
        raise ValueError(f"speculative method={spec.method!r}; allowed: {list(METHODS)}")
    k = num("speculative k", spec.k, maximum=MAX_K)
    acc = spec.acceptance
    if acc is None and spec.method == "draft":
        raise ValueError("speculative acceptance=None: method 'draft' needs an acceptance rate "
                         "in [0, 1] (it depends on the draft model and the task)")
    acc = cal["mtp_acceptance"] if acc is None else num("speculative acceptance", acc,
                                                         integer=False, minimum=0.0, maximum=1.0)
    if (spec.method == "draft") != (spec.draft_model is not None):
        raise ValueError(f"speculative draft_model={spec.draft_model!r}: method 'draft' needs a "
                         "draft model name, method 'mtp' takes none")
    layers = spec.mtp_layers
    if layers is not None:
        layers = num("speculative mtp_layers", layers, maximum=8)
    return dataclasses.replace(spec, k=k, acceptance=acc, mtp_layers=layers)


def mtp_layers(spec: Speculative, m: ModelSpec) -> int:
    """MTP layers ``spec`` runs on model ``m``: its ``mtp_layers``, else the model's count;
    ValueError when ``m`` has no MTP layers or fewer than asked."""
    have = m.mtp_layers
    if have <= 0:
        raise ValueError(f"speculative method='mtp' on model {m.key!r}: the model has no MTP "
                         f"layers (mtp_layers=0, config.json num_nextn_predict_layers); use "
                         f"method 'draft' with a draft_model, or a model with MTP heads")
    want = have if spec.mtp_layers is None else spec.mtp_layers
    if want > have:
        raise ValueError(f"speculative mtp_layers={want}: model {m.key!r} ships {have} MTP "
                         f"layer(s); allowed: 1..{have}")
    return int(want)


def check_model(spec: Speculative | None, m: ModelSpec) -> Speculative | None:
    """``spec`` (checked by :func:`speculative_arg`) with ``mtp_layers`` resolved on ``m``."""
    if spec is None or spec.method != "mtp":
        return spec
    return dataclasses.replace(spec, mtp_layers=mtp_layers(spec, m))


@dataclass(frozen=True)
class Plan:
    """A checked :class:`Speculative` on one setup: the drafter's setup and its extra cost."""

    spec: Speculative
    drafter: Setup
    proj_s: Any          # the MTP's 2h x h projection read per draft step (0 for a draft model)
    weights_B: Any       # drafter weights per GPU
    kv_tok_B: Any        # drafter KV bytes per token per GPU


def _mtp_setup(s: Setup, layers) -> Setup:
    """The MTP module as a model of ``layers`` MoE (or dense, for a dense target) layers."""
    m = s.model
    mtp = dataclasses.replace(m, key=f"{m.key}+mtp", num_layers=int(layers), first_dense_layers=0,
                              layer_pattern=())
    return dataclasses.replace(s, model=mtp, spec_w_B=0.0, spec_kv_tok_B=0.0)


def plan(spec: Speculative, s: Setup, make_setup) -> Plan:
    """The drafter of ``spec`` next to target setup ``s``; ``make_setup(model)`` builds a
    setup of another model on the same GPU, framework, TP and precisions."""
    if xp.any_true(s.pp != 1):
        raise ValueError(f"pp={s.pp}: speculative decoding is modelled with pp=1 only")
    m = s.model
    if spec.method == "mtp":
        spec = check_model(spec, m)
        d = _mtp_setup(s, spec.mtp_layers)
        heads = 1.0 if m.tie_word_embeddings else 2.0
        proj = 2.0 * m.hidden_size * m.hidden_size * d.proj_B  # eh_proj, per GPU (replicated)
        weights = memory_per_gpu(d, 0.0)[0] - heads * m.embedding_params / s.tp * d.head_B + proj
        kv_tok = spec.mtp_layers * s.kv_elems_rank * s.kv_B
        return Plan(spec, d, proj / s.hbm_Bps, weights, kv_tok)
    dm = get_model(spec.draft_model)
    d = make_setup(dm)
    kv_tok = dm.num_layers * d.kv_elems_rank * d.kv_B
    return Plan(spec, d, 0.0, memory_per_gpu(d, 0.0)[0], kv_tok)


def _decode_s(s: Setup, B, c, q: float = 1.0, framework: bool = True):
    """One decode step of ``B`` sequences of context ``c`` with ``q`` query tokens each."""
    ops, _, lat = step_ops(s, B * q, B * q, 0.0, B * q * c, B * c, B * q)
    return lat if framework else lat - ops["framework"]["time_s"], ops


def factor(p: Plan, s: Setup, B, ctx) -> dict[str, Any]:
    """TPOT factor at decode batch ``B`` and mean context ``ctx`` (tokens), with its parts."""
    k, a = p.spec.k, p.spec.acceptance
    c = kv_per_seq(s.model, ctx, s.tp, s.kv_B)
    t_dec, _ = _decode_s(s, B, c)
    t_ver, _ = _decode_s(s, B, c, k + 1.0)
    cd = kv_per_seq(p.drafter.model, ctx, p.drafter.tp, p.drafter.kv_B)
    t_one, ops = _decode_s(p.drafter, B, cd, framework=False)
    t_draft = k * (t_one + p.proj_s)
    tokens = expected_tokens(a, k)
    return {"tpot_factor": (t_ver + t_draft) / (tokens * t_dec), "accepted_tokens": tokens,
            "verify_s": t_ver, "draft_s": t_draft, "decode_s": t_dec, "draft_ops": ops}


def _draft_op(ops: Mapping[str, Mapping[str, Any]], k) -> dict[str, Any]:
    """The drafter's k steps as one breakdown op (sums of its ops' parts)."""
    out = {"flops": 0.0, "bytes": 0.0, "time_s": 0.0, "compute_s": 0.0, "memory_s": 0.0,
           "fixed_s": 0.0}
    for name, op in ops.items():
        if name == "framework":
            continue
        for key in out:
            out[key] = out[key] + k * op.get(key, 0.0)
    return out


def _scaled(r: dict, f, O, mode: str) -> dict:
    """Mode result ``r`` with TPOT scaled by ``f`` (see the module docstring)."""
    out = dict(r, tpot=r["tpot"] * f, tpot_sd=r.get("tpot_sd", 0.0) * f)
    out["e2e"] = r["ttft"] + (O - 1.0) * out["tpot"]
    if mode == "max":
        out["tok"] = r["tok"] / f
    elif mode in ("batch", "concurrency"):
        out["tok"] = r["tok"] * r["e2e"] / out["e2e"]
    return out


def _mixture_rows(sat: dict) -> bool:
    """Whether a throughput-max result is a hit-class mixture's: only its ``tok`` is combined,
    its other fields keep the rows of the first class stack (their shape does not broadcast to
    ``tok``'s)."""
    try:
        return np.broadcast_shapes(np.shape(sat["B"]), np.shape(sat["tok"])) != np.shape(sat["tok"])
    except ValueError:
        return True


def apply(p: Plan, s: Setup, res: dict, sat: dict, mode: str, I, O) -> tuple[dict, dict, dict]:
    """(res, sat, summary): the mode result and the throughput-max result with speculation."""
    ctx = I + O / 2.0
    at = factor(p, s, xp.maximum(res["B"], 1.0), ctx)
    rows = res is not sat and _mixture_rows(sat)  # then the operating point's batch
    at_sat = at if res is sat else factor(p, s, xp.maximum(res["B"] if rows else sat["B"], 1.0),
                                          ctx)
    new = _scaled(res, at["tpot_factor"], O, mode)
    if rows:  # a mixture's throughput-max: its combined rate only
        new_sat = dict(sat, tok=sat["tok"] / at_sat["tpot_factor"])
    else:
        new_sat = new if res is sat else dict(_scaled(sat, at_sat["tpot_factor"], O, "max"))
    bd = {}
    for key, ops in res["bd"].items():
        bd[key] = ops if key == "prefill" else dict(ops, spec_draft=_draft_op(at["draft_ops"],
                                                                             p.spec.k))
    new["bd"] = bd
    summary = {k: v for k, v in at.items() if k != "draft_ops"}
    summary.update(method=p.spec.method, k=p.spec.k, acceptance=p.spec.acceptance,
                   draft_model=None if p.spec.method == "mtp" else p.drafter.model.key,
                   draft_weights_B_per_gpu=p.weights_B, draft_kv_B_per_token_gpu=p.kv_tok_B,
                   formula=FORMULA)
    return new, new_sat, summary
