"""Per-operator roofline of one forward step on one GPU of a TP×PP×EP group.

A step processes ``tokens`` new tokens (prefill chunks and decode tokens together), computes
``logits`` LM-head rows, attends over ``pairs_prefill`` causal (query, key) pairs of prefill
tokens and ``pairs_decode`` pairs of decode tokens, reads ``kv_read`` cached tokens' KV and
writes ``kv_write`` new ones. Pairs and reads are means over the layers by layer kind: callers
pass their full-attention counts of a prompt span through :func:`attn_pairs` and
:func:`attn_reads` (sliding windows, Llama 4 chunks; the identity for full attention), and
linear-attention layers update a recurrent state instead (:func:`_attention`). Each
operator's time is max(FLOPs / effective FLOP/s, bytes / effective HBM B/s); tensor-parallel
all-reduce, expert-parallel all-to-all and pipeline send/recv follow an alpha-beta model over
the group's scale-up link. All inputs may be floats or numpy arrays (broadcast).
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.catalog.hardware import FrameworkSpec, GPUSpec, current
from kvmodel.catalog.models import BYTES_PER_ELEMENT, ModelSpec
from kvmodel.instance import _sampling

__all__ = ["Setup", "step_ops", "step_time", "OPS", "memory_per_gpu", "label_bounds", "memoised", "setup_key",
           "attn_pairs", "attn_reads"]

OPS = ("qkv_proj", "attention", "o_proj", "mlp", "moe", "elementwise", "lm_head", "tp_allreduce",
       "ep_alltoall", "framework")


@dataclass(frozen=True)
class Setup:
    """Resolved per-estimate constants (SI). ``tp``, ``pp``, ``ep`` may be arrays."""

    model: ModelSpec
    gpu: GPUSpec
    framework: FrameworkSpec
    tp: Any
    pp: Any
    ep: Any
    w_B: float          # bytes per weight element (a weight-only format: its packed weights)
    kv_B: float         # bytes per KV element
    act_B: float        # bytes per activation element
    gemm_Fps: float     # effective GEMM FLOP/s at the weight precision
    attn_Fps: float     # effective attention FLOP/s
    hbm_Bps: float      # effective HBM bandwidth
    coll_alpha_s: float  # latency of one collective (all-reduce / all-to-all)
    coll_Bps: float     # effective per-GPU scale-up bandwidth for collectives
    p2p_alpha_s: float  # latency of one pipeline send
    overhead_s: float   # framework per-step overhead
    kernel_s: float = 0.0  # fixed cost per kernel (launch gap, ramp-up/tail), per op per layer
    k: Any = None          # per-setup constants of step_ops (computed once)
    seq_s: float = 0.0     # host cost per scheduled sequence per step (sampling, bookkeeping)
    layer_host_s: float = 0.0  # host time to issue one layer's kernels (0: hidden / graphed)
    # host time per scheduled sequence per step of the engine's executor loop on the GPU's
    # host (None: the GPU's ``host_sequence_time``, 0 where it has none; see :func:`_host_s`)
    host_seq_s: Any = None
    # weights a weight-only format leaves 16-bit (None: as w_B / gemm_Fps): attention
    # projections (proj_*), and embeddings, LM head and MoE router (head_*)
    proj_B: Any = None
    head_B: Any = None
    proj_Fps: Any = None
    head_Fps: Any = None
    # DP-attention with wide EP (:class:`kvmodel.instance._wide_ep.WideEP`; None: experts are
    # split over the TP group); ``spec_w_B`` / ``spec_kv_tok_B``: weights per GPU and KV bytes
    # per token per GPU of speculative-decoding draft / MTP layers (:mod:`._speculative`)
    wide: Any = None
    spec_w_B: Any = 0.0
    spec_kv_tok_B: Any = 0.0
    # sampler time per sampled sequence per vocabulary entry (:mod:`._sampling`; 0: greedy)
    sample_s: Any = 0.0
    # 1: the engine copies each grouped-matmul output of its MoE layers once more (vLLM-Ascend
    # v0.9.1's torch.cat of npu_grouped_matmul's one-element list; :func:`gmm_output_copy`)
    gmm_copy: float = 0.0

    # ---- per-rank geometry, computed once --------------------------------------------------
    # cached KV elements per token per layer on one rank (mixed layer kinds: the average over
    # all layers of the attention layers' KV and DSA indexer, in KV elements, so that
    # layers x kv_elems_rank x kv_B is a token's KV bytes on the rank)
    kv_elems_rank: Any = None
    qkv_w_rank: Any = None     # QKV projection weight elements per rank per layer
    o_w_rank: Any = None       # O projection weight elements per rank per layer

    def __post_init__(self) -> None:
        host = self.gpu.quantities.get("host_sequence_time")
        for name, default in (("proj_B", self.w_B), ("head_B", self.w_B),
                              ("proj_Fps", self.gemm_Fps), ("head_Fps", self.gemm_Fps),
                              ("host_seq_s", 0.0 if host is None else host.si)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        m, tp = self.model, self.tp
        if m.attention == "mla":
            kv = float(m.kv_elements_per_token_layer)  # latent replicated on every rank
            qkv = (m.attn_params - m.num_attention_heads * m.v_head_dim * m.hidden_size) / tp
        else:
            kv = 2.0 * xp.ceil(m.num_kv_heads / tp) * m.head_dim  # heads replicate if tp > kv
            qkv = m.hidden_size * m.num_attention_heads * m.head_dim / tp + m.hidden_size * kv
        if not m.is_uniform:  # mixed layer kinds: the per-layer average of the cached KV
            kv = m.kv_token_bytes_rank(self.kv_B, tp) / (m.num_layers * self.kv_B)
        object.__setattr__(self, "kv_elems_rank", kv)
        object.__setattr__(self, "qkv_w_rank", qkv)
        object.__setattr__(self, "o_w_rank", m.num_attention_heads * m.v_dim * m.hidden_size / tp)
        object.__setattr__(self, "k", _constants(self))


def _constants(s: Setup) -> dict[str, Any]:
    """Shape constants step_ops needs, computed once per Setup (they may be arrays)."""
    m = s.model
    layers = m.num_layers / s.pp
    heads = m.num_attention_heads / s.tp
    qk_d, v_d = m.qk_head_dim, m.v_dim
    if m.attention == "mla":  # decode runs in the absorbed (latent) form
        qk_d, v_d = m.kv_lora_rank + m.qk_rope_head_dim, m.kv_lora_rank
    dense_l, moe_l = m.num_dense_layers / s.pp, m.num_moe_layers / s.pp
    rope = 2.0 * (m.num_attention_heads * m.qk_head_dim / s.tp + s.kv_elems_rank / 2.0)
    moe_mid = (m.experts_per_token * m.moe_intermediate_size
               + m.num_shared_experts * (m.shared_expert_intermediate_size
                                         or m.moe_intermediate_size)) / s.tp
    mlp_width = dense_l * m.intermediate_size / s.tp + moe_l * moe_mid
    act = 3.0 if m.mlp == "gated" else 2.0
    return dict(**_kind_constants(s), layers=layers, dense_l=dense_l, moe_l=moe_l,
                h=m.hidden_size, heads=heads,
                attn_p=m.qk_head_dim + m.v_dim, attn_d=qk_d + v_d,
                qkv_out=m.num_attention_heads * m.qk_head_dim / s.tp + s.kv_elems_rank,
                mlp_w=m.dense_mlp_params / s.tp, mlp_in=2.0 * m.hidden_size
                + m.intermediate_size * 2.0 / s.tp, head_w=m.embedding_params / s.tp,
                elem_tok=layers * (8.0 * m.hidden_size + rope) + act * mlp_width,
                vocab_rank=m.vocab_size / s.tp, tp_on=xp.where(s.tp > 1, 1.0, 0.0),
                ep_on=xp.where(s.ep > 1, 1.0, 0.0), moe_mid=moe_mid, moe_Fps=_moe_rate(s),
                moe_rows=_moe_rows_curve(s), tile_rows=_tile_rows(s),
                lean=not m.is_moe and s.wide is None and not any(
                    isinstance(getattr(s, f.name), np.ndarray) for f in fields(s)))


#: bytes per weight of the formats whose GEMMs run on the FP4 tensor core where there is one
_FP4_BYTES = tuple(BYTES_PER_ELEMENT[p] for p in ("fp4", "mxfp4", "nvfp4"))
_FP8_B = BYTES_PER_ELEMENT["fp8"]


def _moe_rate(s: Setup):
    """The expert GEMMs' FLOP/s for 4-bit weights on a GPU with an FP4 tensor core
    (:func:`_mxfp8_moe_rate`), capped by the GPU's measured fused-MoE rate
    (``achieved_moe_flops``: routing, activation quantisation, grouped GEMMs and finalize
    together at the largest size measured); the GEMM rate otherwise."""
    g = s.gpu
    if s.w_B not in _FP4_BYTES or not g.supports("fp4"):
        return s.gemm_Fps
    rate = _mxfp8_moe_rate(s)
    fused = g.quantities.get("achieved_moe_flops", {}).get("fp4")
    return rate if fused is None else min(rate, fused.si)


def _moe_rows_curve(s: Setup):
    """(rows, FLOP/s) of the GPU's fused MoE by routed rows per active expert where the fused
    cap applies (:func:`_moe_rate`): ``achieved_moe_flops`` times its
    ``fused_moe_rows_efficiency`` curve; None elsewhere (the rate holds at every size)."""
    g = s.gpu
    fused = g.quantities.get("achieved_moe_flops", {}).get("fp4")
    c = g.quantities.get("fused_moe_rows_efficiency")
    if fused is None or c is None or s.w_B not in _FP4_BYTES or not g.supports("fp4"):
        return None
    return tuple(float(x) for x in c.x), tuple(fused.si * float(y) for y in c.y)


def _moe_rows(m: ModelSpec, tokens, wide=None, tp=1.0):
    """Routed rows per active expert of a step of ``tokens`` tokens: the (token, expert)
    pairs over the experts they hit (uniform top-k routing), each expert's GEMM M; with wide
    EP the GPU's experts take the whole group's ``tokens·ep/tp`` tokens. 1 at no tokens."""
    t = tokens if wide is None else tokens * wide.ep / tp
    e, k = m.num_experts, m.experts_per_token
    hit = e * (1.0 - xp.power(1.0 - k / e, t))
    return xp.maximum(t * k / xp.maximum(hit, 1e-300), 1.0)


def _moe_step_rate(s: Setup, tokens):
    """The expert GEMMs' FLOP/s in a step of ``tokens`` tokens: ``moe_Fps``, capped by the
    fused MoE's rate at the step's rows per active expert (:func:`_moe_rows_curve`; held
    beyond the measured rows)."""
    curve = s.k["moe_rows"]
    if curve is None:
        return s.k["moe_Fps"]
    rows = _moe_rows(s.model, tokens, s.wide, s.tp)
    if type(rows) is float:  # scalar fast path: np.interp costs microseconds on a float
        return min(s.k["moe_Fps"], _interp1(rows, *curve))
    return xp.minimum(s.k["moe_Fps"], np.interp(rows, *curve))


def _interp1(x: float, xs, ys) -> float:
    """np.interp of one Python float (held beyond the ends), without numpy's call cost."""
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    i = bisect.bisect_right(xs, x)
    w = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
    return float(ys[i - 1] + w * (ys[i] - ys[i - 1]))


def _mxfp8_moe_rate(s: Setup):
    """The GEMM rate, except where the framework runs the model's 4-bit experts against MXFP8
    activations (``mxfp8_activation_moe_models``): such a product issues the FP8/FP6 MMA kind,
    so the rate is the fp4 one scaled by the GPU's achieved fp8 over achieved fp4 (never
    above the fp4 rate)."""
    g = s.gpu
    mx = s.framework.quantities.get("mxfp8_activation_moe_models", ())
    if s.model.key not in mx or not g.supports("fp8"):
        return s.gemm_Fps
    ratio = g.achieved_flops("fp8") / g.achieved_flops("fp4")
    return s.gemm_Fps * min(ratio, 1.0)


def _kind_constants(s: Setup) -> dict[str, Any]:
    """Per-layer-kind constants of the attention op (:func:`attn_pairs`, :func:`attn_reads`):
    ``kinds`` None where every layer is full attention (the caller's pairs and reads stand),
    else (kind, layers of the kind / all layers, / attention layers) per attention kind;
    ``dec_share`` the attention layers' share of the layers (decode pairs); ``lin_F`` and
    ``lin_B``: linear-attention layers' FLOPs per token and recurrent-state bytes written per
    sequence per step, as means over all layers; ``attn_Fps``: the attention rate at the
    model's head dim (:func:`_head_dim_rate`); ``pair_w``: (kind, layers of the kind / all
    layers / the kind's prefill kernel rate relative to ``attn_Fps``, :func:`_window_rate`)."""
    m = s.model
    n_attn, n_lin = m.num_attention_layers, m.layer_counts["linear"]
    kinds = pair_w = None
    if m.layer_counts["full"] != m.num_layers:
        kinds = tuple((kind, n / m.num_layers, n / max(n_attn, 1))
                      for kind, n in m.attention_layer_kinds)
        pair_w = tuple((kind, per_layer / _window_rate(s, kind))
                       for kind, per_layer, _ in kinds)
    lin_F = lin_B = 0.0
    if n_lin:
        lin_F = n_lin / m.num_layers * m.linear_flops_per_token(s.tp)
        lin_B = m.kv_bytes_rank(0.0, s.kv_B, s.tp) / m.num_layers  # states only at length 0
    return dict(kinds=kinds, pair_w=pair_w, dec_share=n_attn / m.num_layers, lin_F=lin_F,
                lin_B=lin_B, attn_Fps=s.attn_Fps * _head_dim_rate(s) * _context_fmha_rate(s))


def _head_dim_rate(s: Setup) -> float:
    """The GPU's attention rate at the model's query-key head dim relative to the rate it
    was measured at (head dim 128): its ``attention_head_dim_efficiency`` curve (1 where it
    has none; held beyond the measured head dims)."""
    c = s.gpu.quantities.get("attention_head_dim_efficiency")
    return 1.0 if c is None else float(np.interp(s.model.qk_head_dim, c.x, c.y))


def _context_fmha_rate(s: Setup) -> float:
    """The attention rate over the FP8 one it was set at, for a model whose attention the
    framework runs in BF16 over an 8-bit KV cache (``bf16_context_attention_models``: its
    checkpoint leaves the attention projections unquantised): the GPU's measured bf16 over fp8
    attention rate, else its bf16 over fp8 GEMM rate; 1 otherwise."""
    g, fw = s.gpu, s.framework.quantities
    if (s.model.key not in fw.get("bf16_context_attention_models", ()) or s.kv_B != 1.0
            or not g.supports("fp8")):
        return 1.0
    measured = g.quantities.get("achieved_attention_flops", {})
    if "bf16" in measured and "fp8" in measured:
        return measured["bf16"].si / measured["fp8"].si
    return g.achieved_flops("bf16") / g.achieved_flops("fp8")


def _window_rate(s: Setup, kind: str) -> float:
    """The prefill attention kernel's FLOP/s on layers of ``kind`` over its full-attention
    rate: the GPU's ``sliding_window_attention_efficiency`` curve at the model's window for
    ``sliding`` layers (a band of a few key tiles per query tile pays the tile's fixed work
    over few pairs), 1 for ``full`` and ``chunked`` layers and where the GPU has no curve."""
    c = s.gpu.quantities.get("sliding_window_attention_efficiency")
    if kind != "sliding" or c is None:
        return 1.0
    return float(np.interp(s.model.sliding_window, c.x, c.y))


def attn_pairs(s: Setup, pairs, I, n):
    """Causal (query, key) pairs per layer (mean over the layers) of computing positions
    [I − n, I) of prompts, ``pairs`` being the caller's full-attention count of them: each
    attention kind weighs by its layers and counts :meth:`ModelSpec.keys_before` over the
    span in proportion (sliding windows, Llama 4 chunks); linear-attention layers attend to
    no pairs (:func:`_attention` charges their state update). Pairs of a kind whose kernel
    runs below the full-attention rate count at their full-rate equivalent, 1 / that rate
    (:func:`_window_rate`: sliding windows), so the attention op's time is full pairs /
    rate + window pairs / window rate and its FLOPs are full-rate-equivalent FLOPs. ``pairs``
    itself where every layer is full attention."""
    kinds = s.k["pair_w"]
    if kinds is None:
        return pairs
    m, lo = s.model, I - n
    share = 0.0
    for kind, per_layer in kinds:
        share = share + per_layer * (m.keys_before(kind, I) - m.keys_before(kind, lo))
    full = m.keys_before("full", I) - m.keys_before("full", lo)
    return _num(pairs * share / xp.maximum(full, 1e-300))


def attn_reads(s: Setup, chunks, start):
    """Cached tokens per attention layer (mean over them) that ``chunks`` prompt chunks,
    each after ``start`` cached tokens, read: ``chunks · start`` under full attention, the
    window or the chunk's own part under sliding / chunked layers
    (:meth:`ModelSpec.cached_keys`)."""
    kinds = s.k["kinds"]
    if kinds is None:
        return chunks * start
    mean = 0.0
    for kind, _, per_attn in kinds:
        mean = mean + per_attn * s.model.cached_keys(kind, start)
    return _num(chunks * mean)


def _num(v):
    """A 0-d array as a Python float (the roofline's scalar fast paths), an array as is."""
    return float(v) if isinstance(v, (np.ndarray, np.generic)) and np.ndim(v) == 0 else v


def _op(flops, nbytes, setup: Setup, rate_Fps: float, kernels) -> dict[str, Any]:
    """Roofline time of ``kernels`` launches moving ``nbytes`` and doing ``flops`` in total."""
    t_c = flops / rate_Fps
    t_m = nbytes / setup.hbm_Bps
    fixed = kernels * setup.kernel_s
    top = (t_c if t_c >= t_m else t_m) if type(t_c) is float and type(t_m) is float else (
        xp.maximum(t_c, t_m))  # (Python floats: xp.maximum's scalar path, inlined)
    return {"flops": flops, "bytes": nbytes, "time_s": top + fixed,
            "compute_s": t_c, "memory_s": t_m, "fixed_s": fixed}


def _op_s(flops, nbytes, setup: Setup, rate_Fps: float, kernels):
    """:func:`_op`'s ``time_s`` alone (the same operations in the same order)."""
    t_c = flops / rate_Fps
    t_m = nbytes / setup.hbm_Bps
    fixed = kernels * setup.kernel_s
    top = (t_c if t_c >= t_m else t_m) if type(t_c) is float and type(t_m) is float else (
        xp.maximum(t_c, t_m))
    return top + fixed


def _distinct_experts(m: ModelSpec, tokens):
    """Expected distinct experts hit by ``tokens`` tokens under uniform top-k routing."""
    e, k = m.num_experts, m.experts_per_token
    return e * (1.0 - xp.power(1.0 - k / e, tokens))


def _attention_terms(s: Setup, tokens, seqs, pairs_prefill, pairs_decode, kv_read, kv_write,
                     layers):
    """(FLOPs, bytes, FLOP/s, kernels) of the attention over ``pairs_prefill`` and
    ``pairs_decode`` (per-layer means: :func:`attn_pairs`; decode pairs are the decoders'
    cached KV in tokens of ``kv_elems_rank``, what :func:`kvmodel.instance.seam.kv_per_seq`
    gives, spread over the attention layers only), reading and writing the cached KV; linear-attention layers
    update each token into the recurrent state (``lin_F``) and write the state of each of
    the ``seqs`` sequences the step advances (its read is in the decoders' cached KV)."""
    k = s.k  # MLA decode uses the absorbed (latent) head dims in attn_d
    if k["dec_share"] != 1.0:
        pairs_decode = pairs_decode * k["dec_share"]
    flops = 2.0 * k["heads"] * (pairs_prefill * k["attn_p"] + pairs_decode * k["attn_d"])
    nbytes = (kv_read + kv_write) * s.kv_elems_rank * s.kv_B
    nbytes = nbytes + tokens * k["heads"] * k["attn_p"] * s.act_B
    if k["lin_F"]:
        flops = flops + tokens * k["lin_F"]
        nbytes = nbytes + seqs * k["lin_B"]
    return flops * layers, nbytes * layers, k["attn_Fps"], layers


def _moe_terms(s: Setup, tokens, layers):
    """(FLOPs, bytes, FLOP/s, kernels) of the expert MLPs of ``layers`` MoE layers over
    ``tokens`` tokens: route, the two grouped GEMMs, combine. Bytes: the experts the step
    hits (:func:`_distinct_experts`), the token rows in and out once and once per routed
    expert (``2 + 2k``), and the grouped GEMMs' intermediates (:func:`moe_intermediate_bytes`)."""
    m = s.model
    act = tokens * m.hidden_size * s.act_B
    flops = 2.0 * tokens * (m.experts_per_token * m.expert_params + m.shared_expert_params) / s.tp
    flops = flops + 2.0 * tokens * m.router_params
    if s.wide is None:
        w = (_distinct_experts(m, tokens) * m.expert_params + m.shared_expert_params) / s.tp
    else:  # wide EP: this GPU's experts, hit by the whole EP group's tokens
        w = s.wide.expert_read(m, tokens, s.tp) + m.shared_expert_params / s.tp
    if s.head_B == s.w_B:
        nbytes = (w + m.router_params) * s.w_B
    else:  # weight-only format: packed experts, 16-bit router
        nbytes = w * s.w_B + m.router_params * s.head_B
    nbytes = nbytes + act * (2.0 + 2.0 * m.experts_per_token) + moe_intermediate_bytes(s, tokens)
    # route, 2 grouped GEMMs, combine
    return flops * layers, nbytes * layers, _moe_step_rate(s, tokens), 4.0 * layers


def moe_intermediate_bytes(s: Setup, tokens):
    """Bytes per MoE layer of the grouped GEMMs' intermediates in HBM, per (token, expert)
    pair: the gate-up GEMM writes its output at the activation width (``2I`` for a gated MLP,
    ``I`` otherwise) and the down GEMM reads the activation's output (``I``), quantised to the
    weights' width where the experts run quantised activations (NVFP4, FP8: the checkpoint's
    format for weights and activations alike), at the activation width for weight-only formats;
    shared experts at their own width, the intermediate split over ``tp``. TensorRT-LLM's
    CUTLASS MoE does exactly this (moe_kernels.cu: gemm1 into ``glu_inter_result``,
    ``doActivationKernel`` reads ``2 x inter_size`` and writes NVFP4); the activation kernel's
    own traffic is in ``_elementwise_terms``, as for a dense MLP."""
    m = s.model
    in_B = s.w_B if s.head_B == s.w_B else s.act_B
    return tokens * s.k["moe_mid"] * ((m.mlp_matrices - 1.0) * s.act_B + in_B)


def gmm_output_copy(s: Setup, tokens, layers):
    """The copy an engine makes of each grouped-matmul output of a MoE layer (framework
    ``moe_gmm_output_copy``): vLLM-Ascend v0.9.1's ``fused_experts`` concatenates the
    one-element list ``npu_grouped_matmul`` returns (``torch.cat``), once for the gate-up output
    (``k x 2I`` per token, the intermediate split over ``tp / ep``) and once for the down output
    (``k x h``, the rows split over ``ep``): each element read and written once more, memory
    bound, two kernels per layer. Bytes per rank: ``2 act_B tokens k (2I/tp + h/ep)``."""
    flops, nbytes, rate, kernels = _gmm_copy_terms(s, tokens, layers)
    return _op(flops, nbytes, s, rate, kernels)


def _gmm_copy_terms(s: Setup, tokens, layers):
    """(FLOPs, bytes, FLOP/s, kernels) of :func:`gmm_output_copy`."""
    m = s.model
    width = m.experts_per_token * (2.0 * m.moe_intermediate_size / s.tp + m.hidden_size / s.ep)
    return 0.0, 2.0 * tokens * width * s.act_B * layers, s.gemm_Fps, 2.0 * layers


def _elementwise_terms(s: Setup, tokens, layers):
    """Memory-bound per-token kernels between the GEMMs, per layer: two fused residual-add +
    RMSNorm (read 2h, write 2h each), rotary embedding on q and k (read + write), and the gated
    activation (read the 2 halves, write one) or GELU (read, write); see ``_constants``."""
    return 0.0, tokens * s.k["elem_tok"] * s.act_B, s.gemm_Fps, 3.0 * layers


def _collectives(s: Setup, tokens, layers, moe_layers, alltoall: bool = True):
    """All-reduce after attention and after dense MLPs (and MoE when ep == 1); all-to-all for EP
    (None without ``alltoall``: a dense model has no all-to-all op)."""
    m = s.model
    msg, ar_B, ar_s = _allreduce(s, tokens, layers, moe_layers)
    ep_on = s.k["ep_on"]
    ar = {"flops": 0.0, "bytes": ar_B, "time_s": ar_s}
    if not alltoall:
        return ar, None
    if s.wide is not None:  # DP attention: dispatch / combine over NVLink and the NICs
        return ar, s.wide.alltoall(m, tokens, s.tp, moe_layers)
    a2a_bytes = 2.0 * msg / s.ep * m.experts_per_token * (s.ep - 1.0) / s.ep
    a2a = ep_on * moe_layers * (2.0 * s.coll_alpha_s + a2a_bytes / s.coll_Bps)
    return ar, {"flops": 0.0, "bytes": a2a_bytes * moe_layers * ep_on, "time_s": a2a}


def _allreduce(s: Setup, tokens, layers, moe_layers):
    """(message bytes, bytes, seconds) of the step's TP all-reduces (:func:`_collectives`)."""
    msg = tokens * s.model.hidden_size * s.act_B
    tp_on = s.k["tp_on"]
    one_ar = s.coll_alpha_s + 2.0 * (s.tp - 1.0) / s.tp * msg / s.coll_Bps
    n_ar = layers + (layers - moe_layers) + moe_layers * (1.0 - s.k["ep_on"])
    return msg, n_ar * msg * tp_on, tp_on * n_ar * one_ar


def _mla_upproj(s: Setup, cached, layers):
    """(FLOPs, bytes, FLOP/s, kernels) of the op ``mla_kv_upproj``: MLA prefill over
    ``cached`` tokens whose latent is already in HBM: attention in the unabsorbed form needs
    their K (no-rope part) and V per head, so the cached latent (``kv_lora_rank`` wide) is
    up-projected through W_UK and W_UV and the result written and
    read back: ``2·cached·r·heads·(d_nope + d_v)`` FLOPs per layer (weights already read by
    ``qkv_proj`` in the same step)."""
    m = s.model
    width = s.k["heads"] * (m.qk_nope_head_dim + m.v_head_dim)
    flops = 2.0 * cached * m.kv_lora_rank * width
    return flops * layers, 2.0 * cached * width * s.act_B * layers, s.gemm_Fps, layers


def _linear_rows(s: Setup, tokens):
    """Token rows the dense linear GEMMs (qkv, o, dense MLP) compute for ``tokens`` tokens:
    ``tokens`` rounded up to the framework's FP8 GEMM tile (``fp8_linear_tile_rows``) for
    1-byte weights on the architectures it lists (``fp8_linear_tile_architectures``),
    ``tokens`` otherwise. The tensor cores compute the padded rows like real ones, so a
    decode step of a few tokens is charged the tile's FLOPs: with 64 rows that is 128 FLOP
    per FP8 weight byte, under the ridge (FLOP/s over HBM B/s) of an H100 or H200 and above
    the compute-capped H20's, where the step streams its weights at the tensor-core rate /
    128 instead of the HBM rate. int8 weights share the byte width and are charged alike."""
    rows = s.k["tile_rows"]
    return tokens if rows is None else xp.ceil(tokens / rows) * rows


def _tile_rows(s: Setup):
    """The FP8 GEMM tile's rows :func:`_linear_rows` pads to, None where it does not."""
    fw = s.framework.quantities
    tile = fw.get("fp8_linear_tile_rows")
    if tile is None or s.w_B != _FP8_B:
        return None
    archs = fw.get("fp8_linear_tile_architectures")
    if archs is not None and s.gpu.architecture not in archs:
        return None
    return tile.si


def step_ops(s: Setup, tokens, logits, pairs_prefill, pairs_decode, kv_read, kv_write,
             mla_cached=None):
    """Per-op cost of one pipeline stage's share of a step on one GPU, plus the step latency.

    Returns ``(ops, stage_s, latency_s)``: ``ops`` maps op name -> dict(flops, bytes, time_s)
    (see :func:`label_bounds`); ``stage_s`` is one stage's busy time (sum of op times; with
    top-k / top-p sampling, :mod:`._sampling`, the last stage's, which also samples);
    ``latency_s`` is the end-to-end step time through all ``pp`` stages plus sends, the
    framework overhead and the sampling (:func:`step_time` gives it alone, faster).
    ``mla_cached``: for an MLA model, the cached tokens a prefill attends to in unabsorbed form
    (op ``mla_kv_upproj``, :func:`_mla_upproj`); None leaves it out.
    """
    ops = {name: _op(flops, nbytes, s, rate, kernels) for name, flops, nbytes, rate, kernels
           in _op_terms(s, tokens, logits, pairs_prefill, pairs_decode, kv_read, kv_write,
                        mla_cached)}
    ops["tp_allreduce"], a2a = _collectives(s, tokens, s.k["layers"], s.k["moe_l"],
                                            s.model.is_moe)
    if s.model.is_moe:
        ops["ep_alltoall"] = a2a
    stage = 0.0
    for op in ops.values():
        stage = stage + op["time_s"]
    host, sampling, stage, latency = _step_tail(s, tokens, logits, stage)
    ops["framework"] = {"flops": 0.0, "bytes": 0.0, "time_s": host}
    if sampling is not None:
        ops["sampling"] = sampling
    return ops, stage, latency


def step_time(s: Setup, tokens, logits, pairs_prefill, pairs_decode, kv_read, kv_write,
              mla_cached=None):
    """:func:`step_ops`' latency alone, the very same number (the same operations in the
    same order) without building the op breakdown: for callers that read only the step
    time (root finders' residuals, the simulator's steps)."""
    if s.k["lean"] and mla_cached is None:
        if (type(tokens) is float and type(logits) is float and type(pairs_prefill) is float
                and type(pairs_decode) is float and type(kv_read) is float
                and type(kv_write) is float):
            return _lean_time(s, tokens, logits, pairs_prefill, pairs_decode, kv_read, kv_write)
        args = (tokens, logits, pairs_prefill, pairs_decode, kv_read, kv_write)
        out = _lean_small(s, args)
        if out is not None:
            return out
    stage = 0.0
    for _, flops, nbytes, rate, kernels in _op_terms(s, tokens, logits, pairs_prefill,
                                                      pairs_decode, kv_read, kv_write,
                                                      mla_cached):
        stage = stage + _op_s(flops, nbytes, s, rate, kernels)
    ar, a2a = _collectives(s, tokens, s.k["layers"], s.k["moe_l"], s.model.is_moe)
    stage = stage + ar["time_s"]
    if s.model.is_moe:
        stage = stage + a2a["time_s"]
    return _step_tail(s, tokens, logits, stage)[3]


def _lean_time(s: Setup, tokens, logits, pairs_prefill, pairs_decode, kv_read, kv_write):
    """:func:`step_time` of a dense model on Python numbers (no array in the Setup or the
    arguments): the terms of :func:`_op_terms` (qkv, attention, o, mlp, elementwise, LM head),
    :func:`_allreduce` and :func:`_step_tail` written out, the same operations in the same
    order (``tests/instance/test_step_time.py`` holds them equal bit for bit)."""
    k, hbm, ks = s.k, s.hbm_Bps, s.kernel_s
    layers, h, act = k["layers"], k["h"], s.act_B
    tile = k["tile_rows"]
    rows = tokens if tile is None else xp.ceil(tokens / tile) * tile
    t_c = 2.0 * rows * s.qkv_w_rank * layers / s.proj_Fps  # qkv_proj
    t_m = (s.qkv_w_rank * s.proj_B + tokens * (h + k["qkv_out"]) * act) * layers / hbm
    stage = 0.0 + ((t_c if t_c >= t_m else t_m) + layers * ks)
    pd = pairs_decode * k["dec_share"] if k["dec_share"] != 1.0 else pairs_decode  # attention
    flops = 2.0 * k["heads"] * (pairs_prefill * k["attn_p"] + pd * k["attn_d"])
    nbytes = (kv_read + kv_write) * s.kv_elems_rank * s.kv_B
    nbytes = nbytes + tokens * k["heads"] * k["attn_p"] * act
    if k["lin_F"]:
        flops = flops + tokens * k["lin_F"]
        nbytes = nbytes + logits * k["lin_B"]
    t_c, t_m = flops * layers / k["attn_Fps"], nbytes * layers / hbm
    stage = stage + ((t_c if t_c >= t_m else t_m) + layers * ks)
    t_c = 2.0 * rows * s.o_w_rank * layers / s.proj_Fps  # o_proj
    t_m = (s.o_w_rank * s.proj_B + tokens * 2.0 * h * act) * layers / hbm
    stage = stage + ((t_c if t_c >= t_m else t_m) + layers * ks)
    mlp_w, dense_l = k["mlp_w"], k["dense_l"]  # mlp
    t_c = 2.0 * rows * mlp_w * dense_l / s.gemm_Fps
    t_m = (mlp_w * s.w_B + tokens * k["mlp_in"] * act) * dense_l / hbm
    stage = stage + ((t_c if t_c >= t_m else t_m) + 2.0 * dense_l * ks)
    t_c, t_m = 0.0 / s.gemm_Fps, tokens * k["elem_tok"] * act / hbm  # elementwise
    stage = stage + ((t_c if t_c >= t_m else t_m) + 3.0 * layers * ks)
    head_w = k["head_w"]  # lm_head
    t_c = 2.0 * logits * head_w / s.head_Fps
    t_m = (head_w * s.head_B + logits * k["vocab_rank"] * 4.0) / hbm
    stage = stage + ((t_c if t_c >= t_m else t_m) + 1.0 * ks)
    moe_l = k["moe_l"]  # tp_allreduce
    msg = tokens * s.model.hidden_size * act
    one_ar = s.coll_alpha_s + 2.0 * (s.tp - 1.0) / s.tp * msg / s.coll_Bps
    n_ar = layers + (layers - moe_l) + moe_l * (1.0 - k["ep_on"])
    stage = stage + k["tp_on"] * n_ar * one_ar
    send = s.p2p_alpha_s + tokens * h * act / s.coll_Bps
    latency = s.pp * stage + (s.pp - 1.0) * send + _host_s(s, layers, logits, stage)
    if s.sample_s:
        latency = latency + logits * s.model.vocab_size * s.sample_s
    return latency


_LEAN_ELEMS = 16  # arrays up to this size take the lean path element by element


def _lean_small(s: Setup, args: tuple):
    """:func:`_lean_time` element by element where the arguments broadcast to a small array
    of finite float64 (a finite-difference stencil): + − × ÷, comparisons and ceil give the
    same numbers on Python floats as numpy's do element-wise, and finite inputs leave no NaN
    for numpy's maximum to treat apart. None where that does not hold (the array path)."""
    cols, n = _vector_columns(args)
    if cols is not None:
        return np.array([_lean_time(s, *row) for row in zip(*cols)], dtype=np.float64)
    if n == 0:
        return None
    try:
        arrs = np.broadcast_arrays(*args)
    except ValueError:
        return None
    a0 = arrs[0]
    if a0.size > _LEAN_ELEMS or a0.size == 0 or a0.ndim == 0:
        return None
    for a in arrs:
        if a.dtype != np.float64 or not np.isfinite(a).all():
            return None
    cols = [a.ravel().tolist() for a in arrs]
    out = np.array([_lean_time(s, *row) for row in zip(*cols)], dtype=np.float64)
    return out.reshape(a0.shape)


def _vector_columns(args: tuple):
    """(columns, n) of Python floats and 1-d float64 arrays of one length n <= _LEAN_ELEMS,
    all finite (the common stencil, without numpy's broadcasting); (None, -1) for any other
    mix (:func:`_lean_small` broadcasts those), (None, 0) where a value is not finite."""
    n = -1
    for a in args:
        if type(a) is np.ndarray:
            if a.ndim != 1 or a.dtype != np.float64 or not 0 < a.shape[0] <= _LEAN_ELEMS or (
                    n != -1 and a.shape[0] != n):
                return None, -1
            n = a.shape[0]
        elif type(a) is not float:
            return None, -1
    if n == -1:
        return None, -1
    cols = []
    for a in args:
        col = a.tolist() if type(a) is np.ndarray else [a] * n
        if not math.isfinite(sum(col)):  # (a sum of finite values overflows only past 1e308)
            return None, 0
        cols.append(col)
    return cols, n


def _step_tail(s: Setup, tokens, logits, stage):
    """(host time, sampling op or None, stage with sampling, latency) of a step whose ops
    take ``stage``: ``pp`` stages plus sends, the framework's host time and the sampler."""
    send = s.p2p_alpha_s + tokens * s.k["h"] * s.act_B / s.coll_Bps
    host = _host_s(s, s.k["layers"], logits, stage)
    latency = s.pp * stage + (s.pp - 1.0) * send + host
    sampling = None
    if s.sample_s:  # top-k / top-p sampling on the last stage, once per step
        sampling = _sampling.sampling_op(s, logits)
        stage = stage + sampling["time_s"]
        latency = latency + sampling["time_s"]
    return host, sampling, stage, latency


def _op_terms(s: Setup, tokens, logits, pairs_prefill, pairs_decode, kv_read, kv_write,
              mla_cached) -> list:
    """(name, FLOPs, bytes, FLOP/s, kernels) of :func:`step_ops`' roofline ops: the linears,
    attention, MoE, elementwise ops and LM head of one stage, in that order (the
    collectives, host and sampling terms follow in :func:`step_ops`)."""
    m, k = s.model, s.k
    layers, moe_l = k["layers"], k["moe_l"]
    rows = _linear_rows(s, tokens)  # tokens, or the FP8 GEMM tile's padded rows
    terms = [("qkv_proj", *_qkv_terms(s, rows, tokens)),
             ("attention", *_attention_terms(s, tokens, logits, pairs_prefill, pairs_decode,
                                             kv_read, kv_write, layers)),
             ("o_proj", *_o_terms(s, rows, tokens)), ("mlp", *_mlp_terms(s, rows, tokens))]
    if m.is_moe:
        terms.append(("moe", *_moe_terms(s, tokens, moe_l)))
        if s.gmm_copy:
            terms.append(("moe_copy", *_gmm_copy_terms(s, tokens, moe_l)))
    if mla_cached is not None and m.attention == "mla":
        terms.append(("mla_kv_upproj", *_mla_upproj(s, mla_cached, layers)))
    terms.append(("elementwise", *_elementwise_terms(s, tokens, layers)))
    terms.append(("lm_head", *_head_terms(s, logits)))
    return terms


def _qkv_terms(s: Setup, rows, tokens):
    """(FLOPs, bytes, FLOP/s, kernels) of the QKV projection (``rows``: :func:`_linear_rows`)."""
    k = s.k
    layers = k["layers"]
    return (2.0 * rows * s.qkv_w_rank * layers,
            (s.qkv_w_rank * s.proj_B + tokens * (k["h"] + k["qkv_out"]) * s.act_B) * layers,
            s.proj_Fps, layers)


def _o_terms(s: Setup, rows, tokens):
    """(FLOPs, bytes, FLOP/s, kernels) of the output projection."""
    layers = s.k["layers"]
    return (2.0 * rows * s.o_w_rank * layers,
            (s.o_w_rank * s.proj_B + tokens * 2.0 * s.k["h"] * s.act_B) * layers, s.proj_Fps,
            layers)


def _mlp_terms(s: Setup, rows, tokens):
    """(FLOPs, bytes, FLOP/s, kernels) of the dense MLPs: fused gate+up GEMM, down GEMM."""
    k = s.k
    mlp_w, dense_l = k["mlp_w"], k["dense_l"]
    return (2.0 * rows * mlp_w * dense_l, (mlp_w * s.w_B + tokens * k["mlp_in"] * s.act_B)
            * dense_l, s.gemm_Fps, 2.0 * dense_l)


def _head_terms(s: Setup, logits):
    """(FLOPs, bytes, FLOP/s, kernels) of the LM head (fp32 logits)."""
    head_w = s.k["head_w"]
    return (2.0 * logits * head_w, head_w * s.head_B + logits * s.k["vocab_rank"] * 4.0,
            s.head_Fps, 1.0)


def _host_s(s: Setup, layers, seqs, stage):
    """Host time a step adds to one stage's busy time ``stage``: the framework's exposed
    per-step and per-sequence overhead; where kernels are issued one layer at a time, the
    issuing beyond the stage; and where the executor loop's own per-sequence work
    (``host_seq_s`` x ``seqs`` sequences: scheduling, sampler bookkeeping, responses) runs
    beside the GPU step (overlap scheduler), the part of it the stage and the exposed host
    time do not cover: a step lasts at least its host loop, so a short GPU step at a large
    batch is host-bound."""
    host = s.overhead_s + seqs * s.seq_s
    if s.layer_host_s:  # kernels issued one layer at a time: a stage lasts at least the issuing
        host = host + xp.maximum(layers * s.layer_host_s - stage, 0.0)
    if s.host_seq_s:
        host = host + xp.maximum(seqs * s.host_seq_s - stage - host, 0.0)
    return host


def mean_ops(kinds: list, weights: list) -> dict[str, dict[str, Any]]:
    """The ``weights``-weighted mean of step kinds' op breakdowns (``step_ops``' first
    result), op by op and key by key."""
    out: dict[str, dict[str, Any]] = {}
    for ops, w in zip(kinds, weights):
        for op, vals in ops.items():
            acc = out.setdefault(op, {})
            for key, v in vals.items():
                acc[key] = acc.get(key, 0.0) + w * v
    return out


def chunk_start(I, n, k):
    """Mean context before one of a prompt's k chunks of n / k tokens, its first I − n tokens
    cached."""
    return (I - n) + n * (k - 1.0) / (2.0 * k)


_KEYED = tuple(f.name for f in fields(Setup) if f.name != "k")  # k: derived from them
_BY_VALUE = (int, str, bool, type(None))  # keyed by type and value (1 == 1.0 == True)
_MEMO_SIZE = 1024  # entries per memoised function and catalog (bounded in long searches)
_MEMO_ELEMS = 256  # largest array memoised (stacked classes; a grid's arrays are not kept)


_TOKENS: dict = {}  # a Setup's values and spec ids -> the number standing for it in memo keys
_TOKEN_COUNT = itertools.count()  # (never reused: a cleared table only costs misses)


def _setup_token(s: Setup):
    """The number standing for ``s``'s values in :func:`memoised` keys, kept on ``s``: numbers
    and small arrays by value, specs by identity (the table holds them, so their ids stay
    valid while it names them); None where a field holds a large array (nothing memoised)."""
    tok = s.__dict__.get("_memo_token", False)
    if tok is not False:
        return tok
    vals: list = []
    refs: list = []
    for name in _KEYED:
        v = getattr(s, name)
        k = _arg_key(v)
        if k is None and isinstance(v, np.ndarray):
            vals = None
            break
        if k is None:
            k = ("id", id(v))
            refs.append(v)
        vals.append(k)
    tok = None
    if vals is not None:
        key = tuple(vals)
        got = _TOKENS.get(key)
        if got is None:
            if len(_TOKENS) >= _MEMO_SIZE:
                _TOKENS.clear()
            got = _TOKENS[key] = (next(_TOKEN_COUNT), tuple(refs))
        tok = got[0]
    object.__setattr__(s, "_memo_token", tok)
    return tok


def setup_key(s: Setup):
    """The number standing for ``s``'s values in memo keys (:func:`memoised`; equal setups,
    the same number while the catalog's tables hold it); None where a field holds a large
    array (nothing memoised)."""
    return _setup_token(s)


def _arg_key(v):
    """A value key of a number (0.0 and -0.0 apart) or a small numpy array (dtype, shape,
    bytes); None for anything else."""
    if type(v) is float:
        return v if v else repr(v)
    if type(v) in _BY_VALUE:
        return (type(v).__name__, v)
    if isinstance(v, np.ndarray):  # (a large array: a vectorised evaluation, not kept)
        return (v.dtype.str, v.shape, v.tobytes()) if v.size <= _MEMO_ELEMS else None
    if isinstance(v, np.generic):
        return (type(v).__name__, v.tobytes())
    return None


def _read_only(v):
    if isinstance(v, np.ndarray):
        v.flags.writeable = False  # a shared memo entry: no caller may change it in place
    return v


def memoised(name: str, s: Setup, args: tuple, compute: Callable[[], Any],
             extra: Any = ()) -> Any:
    """``compute()``, a pure function of ``s`` and ``args`` (numbers or numpy arrays) giving a
    number or an array, memoised in the active catalog under their values (a search's new
    configurations that keep the model, GPU and parallelism reuse the same rooflines; the
    very same numbers, computed once). Computed afresh where an argument or a Setup field is
    a large array (a vectorised evaluation) or another kind of object. ``extra``: a hashable
    key of whatever else ``compute`` depends on, by value (None: compute afresh)."""
    tok = _setup_token(s)
    akey = tuple([_arg_key(a) for a in args])
    if tok is None or extra is None or None in akey:
        return compute()
    return current().cached(name, (tok, akey, extra), lambda: _read_only(compute()), _MEMO_SIZE)


def label_bounds(ops: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Add ``bound`` (compute / memory / network / host) to each op of a final breakdown."""
    for name, op in ops.items():
        if "compute_s" in op:
            op["bound"] = xp.where(op["compute_s"] >= op["memory_s"], "compute", "memory")
        else:
            op["bound"] = "host" if name == "framework" else "network"
    return ops


def memory_per_gpu(s: Setup, max_num_tokens):
    """Weights and activation-workspace bytes on the busiest GPU of the group."""
    m = s.model
    layers = m.num_layers / s.pp
    per_layer_attn = s.qkv_w_rank + s.o_w_rank
    experts = m.num_experts * m.expert_params + m.shared_expert_params
    if s.wide is not None:  # wide EP: the GPU's share of the experts, as a TP-split total
        experts = s.wide.expert_weights(m, s.tp) * s.tp
    heads = xp.where(s.pp > 1, 1.0, 1.0 if m.tie_word_embeddings else 2.0)
    if s.proj_B == s.w_B and s.head_B == s.w_B:  # every weight in one precision
        weights = (layers * per_layer_attn + m.num_dense_layers / s.pp * m.dense_mlp_params / s.tp
                   + m.num_moe_layers / s.pp * (experts / s.tp + m.router_params))
        weights = (weights + heads * m.embedding_params / s.tp) * s.w_B
    else:  # weight-only format: packed MLP/experts (and projections), 16-bit the rest
        packed = (m.num_dense_layers * m.dense_mlp_params + m.num_moe_layers * experts) / s.tp
        weights = (packed / s.pp * s.w_B + layers * per_layer_attn * s.proj_B
                   + (m.num_moe_layers / s.pp * m.router_params
                      + heads * m.embedding_params / s.tp) * s.head_B)
    widest = max(m.intermediate_size * m.mlp_matrices,
                 m.moe_intermediate_size * m.mlp_matrices * m.experts_per_token)
    activations = max_num_tokens * (4.0 * m.hidden_size + widest / s.tp) * s.act_B
    return weights + s.spec_w_B, activations
