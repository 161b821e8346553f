"""LLM architecture catalog: :class:`ModelSpec`, :func:`get_model`, :func:`load_hf_config`.

Facts come from the models' published ``config.json`` files (``hardware_db/models/*.toml`` each
names its source). Lookup is case-insensitive and accepts the published name
(``meta-llama/Llama-3.1-70B``, ``Llama-3.1-70B-Instruct``). Parameter counts and KV bytes are
derived here from the architecture, never stored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from kvmodel.base.schema import HYBRID_PREFIX_CACHES, HardwareDBError, parse_entry

if TYPE_CHECKING:
    from kvmodel.catalog.hardware import Catalog

__all__ = ["ModelSpec", "get_model", "list_models", "load_hf_config", "BYTES_PER_ELEMENT",
           "kv_bytes_per_token", "LAYER_KINDS", "WEIGHT_ONLY", "KV_PRECISIONS",
           "default_kv_precision", "SNAPSHOT_MODES", "DEFAULT_SNAPSHOTS", "snapshot_mode",
           "snapshot_interval"]

#: storage bytes per element of each precision (definitions, not measurements); the weight-only
#: formats count their block scales (:data:`WEIGHT_ONLY`)
BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0, "tf32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "fp6": 0.75,
    "fp4": 0.5,
    # w4a16: 4-bit integers + one fp16 scale per group of 128 (GPTQ/AWQ default group_size
    # 128, the layout Marlin kernels read): (4 + 16/128) / 8
    "int4": (4.0 + 16.0 / 128.0) / 8.0,
    # OCP Microscaling Formats (MX) v1.0, MXFP4: E2M1 elements, one E8M0 (8-bit) shared scale
    # per block of 32: (4 + 8/32) / 8 = 4.25 bits
    "mxfp4": (4.0 + 8.0 / 32.0) / 8.0,
    # NVIDIA NVFP4 (Blackwell): E2M1 elements, one FP8 E4M3 scale per block of 16 (+ one FP32
    # per tensor, negligible): (4 + 8/16) / 8 = 4.5 bits
    "nvfp4": (4.0 + 8.0 / 16.0) / 8.0,
}

#: weight-only formats: weights stream at their packed size, activations stay 16-bit.
#: format -> (native GEMM precision a GPU may have for it, or None; which weights are packed:
#: ``linear`` = every projection in the transformer blocks (qkv, o, MLP, experts), ``mlp`` =
#: MLP and expert weights only). Embeddings, LM head and MoE router stay 16-bit in all three.
#: int4: w4a16 runs 16-bit MMA after dequantising (no int4 activations), GPTQ/AWQ quantise every
#: block linear layer. mxfp4: gpt-oss checkpoints (config.json quantization_config
#: modules_to_not_convert: self_attn, mlp.router, embed_tokens, lm_head) pack the experts only.
#: nvfp4: ModelOpt NVFP4 checkpoints pack the block linear layers (e.g. nvidia/DeepSeek-R1-FP4).
#: Where the GPU has no fp4 peak the packed weights are dequantised to bf16 in the GEMM (gpt-oss
#: on Hopper: vLLM's triton_kernels matmul_ogs / Marlin MXFP4 MoE, bf16 activations; vLLM
#: recipes OpenAI/GPT-OSS.md), not fp8: the fp8-activation path (w4a8) is not the default.
WEIGHT_ONLY: dict[str, tuple[str | None, str]] = {
    "int4": (None, "linear"), "mxfp4": ("fp4", "mlp"), "nvfp4": ("fp4", "linear"),
}

#: precisions a KV cache may be stored in (the weight-only formats are weight layouts). fp8 KV
#: costs 1 B per element with no per-token scale bytes: vLLM's FP8 KV cache keeps per-tensor or
#: per-attention-head k/v scales on the layer, not in the cache blocks (vLLM docs, features/
#: quantization/quantized_kvcache); per-block scales exist only in DeepSeek-V3.2's indexer cache
#: (INDEXER_SCALE_BLOCK below)
KV_PRECISIONS = tuple(p for p in BYTES_PER_ELEMENT if p not in WEIGHT_ONLY)


def default_kv_precision(precision: str, auto: str | None = None) -> str:
    """The KV precision engines pick by default for weights in ``precision``: fp8 next to
    fp8/fp4/int8 weights (``auto`` "quantised" or None), the 16-bit model dtype next to
    weight-only formats (vLLM ``kv_cache_dtype="auto"``) and, where the framework's cache
    follows the model dtype (``auto`` "model_dtype"), next to every quantised format; else the
    weight precision."""
    if precision in ("fp8", "fp4", "int8"):
        return "bf16" if auto == "model_dtype" else "fp8"
    return "bf16" if precision in WEIGHT_ONLY else precision

#: what a layer caches: ``full`` attention keeps every token, ``sliding`` the last
#: ``sliding_window`` tokens, ``chunked`` (Llama 4 local attention) at most one chunk of
#: ``attention_chunk_size`` tokens, ``linear`` (Gated DeltaNet, Mamba) a constant recurrent state
LAYER_KINDS = ("full", "sliding", "chunked", "linear")
ATTENTION_KINDS = ("full", "sliding", "chunked")

#: DeepSeek-V3.2 DSA indexer cache format (a definition of the engines' layout, not a
#: measurement): the indexer key is stored in fp8 (1 B per element) with one fp32 scale (4 B)
#: per block of 128 elements, whatever the KV precision (vLLM's and SGLang's DeepSeek-V3.2
#: indexer caches: index_head_dim 128 -> 128 + 4 = 132 B per token per layer)
#: where a prefix cache keeps recurrent-state snapshots of a hybrid model (the framework entry's
#: ``hybrid_prefix_cache``; :meth:`ModelSpec.prefix_cache_bytes` counts them):
#: ``block`` at every hybrid-block boundary (vLLM ``mamba_cache_mode="all"``); ``align`` at the
#: end of each scheduler step that lands on a block boundary: every prefill chunk (the step
#: budget floored to blocks) and the prompt's last block boundary (vLLM ``"align"``, the default
#: with prefix caching and the only mode for Gated DeltaNet hybrids); ``interval`` every
#: ``hybrid_snapshot_interval`` tokens and at the prompt's end (TensorRT-LLM
#: ``mamba_state_cache_interval``); ``node`` one per radix node: each prefill chunk's end and the
#: request's end, a node split later keeps none (SGLang ``MambaRadixCache``); ``none`` no reuse
#: (an engine without hybrid prefix caching). Sources: ``hardware_db/frameworks.toml``.
SNAPSHOT_MODES = HYBRID_PREFIX_CACHES

#: snapshot mode of a framework entry without ``hybrid_prefix_cache`` (the grid the model used
#: before the field existed)
DEFAULT_SNAPSHOTS = "block"


def snapshot_mode(framework: Any, mode: str | None = None) -> str:
    """:data:`SNAPSHOT_MODES` entry of a framework (key or spec): ``mode`` when given (checked),
    else the entry's ``hybrid_prefix_cache`` (vLLM ``align``, SGLang ``node``, TensorRT-LLM
    ``interval``), else :data:`DEFAULT_SNAPSHOTS`."""
    if mode is None:
        mode = _framework_field(framework, "hybrid_prefix_cache") or DEFAULT_SNAPSHOTS
    if mode not in SNAPSHOT_MODES:
        raise ValueError(f"hybrid_prefix_cache={mode!r}; allowed: {list(SNAPSHOT_MODES)}")
    return mode


def snapshot_interval(framework: Any, gpu: Any = None) -> float | None:
    """Tokens between a prompt's state snapshots inside its prefill (the framework entry's
    ``hybrid_snapshot_interval``: vLLM's and SGLang's prefill chunk, TensorRT-LLM's
    ``mamba_state_cache_interval``); None where the entry has none.

    With ``gpu`` (a key or spec) and an entry whose default follows the GPU's memory
    (``hybrid_snapshot_interval_below``: ``y[i]`` tokens below ``x[i]`` of memory, the first
    such tier; ``hybrid_snapshot_small_gpus`` take ``y[0]`` whatever their memory), the tier of
    that GPU's ``hbm_capacity``; the interval itself at or above the last bound."""
    q = _framework_field(framework, "hybrid_snapshot_interval")
    if q is None:
        return None
    tiers = _framework_field(framework, "hybrid_snapshot_interval_below")
    if gpu is None or tiers is None:
        return float(q.si)
    from kvmodel.catalog.hardware import get_gpu  # (hardware imports this module)
    spec = get_gpu(gpu)
    bounds, values = np.asarray(tiers.x, dtype=float), np.asarray(tiers.y, dtype=float)
    if np.any(np.diff(bounds) <= 0):
        raise ValueError(f"hybrid_snapshot_interval_below.x={list(tiers.x)}: the memory bounds "
                         "must increase")
    if spec.key in (_framework_field(framework, "hybrid_snapshot_small_gpus") or ()):
        return float(values[0])
    i = int(np.searchsorted(bounds, spec.hbm_capacity_B, side="right"))
    return float(values[i]) if i < values.size else float(q.si)


def _framework_field(framework: Any, name: str) -> Any:
    """A field of a framework entry (a key is looked up in the active catalog)."""
    if isinstance(framework, str):
        from kvmodel.catalog.hardware import get_framework  # (hardware imports this module)
        framework = get_framework(framework.lower())
    return getattr(framework, "quantities", {}).get(name)


#: Hugging Face ``mamba_ssm_dtype`` / ``mamba_ssm_cache_dtype`` spellings -> precision keys
_HF_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "fp32": "fp32",
              "bf16": "bf16", "fp16": "fp16"}
#: the model dtype the catalog's hybrid models ship in (config.json ``torch_dtype`` bfloat16):
#: what engines keep the causal-conv window in, and the SSM state when the config names none
MODEL_DTYPE = "bf16"

INDEXER_KEY_B = 1.0
INDEXER_SCALE_B = 4.0
INDEXER_SCALE_BLOCK = 128


@dataclass(frozen=True)
class ModelSpec:
    key: str
    name: str
    hf_id: str
    attention: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    mlp: str = "gated"
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    first_dense_layers: int = 0
    moe_layer_step: int = 1
    sliding_window: int = 0
    attention_chunk_size: int = 0
    layer_pattern: tuple[str, ...] = ()
    linear_num_key_heads: int = 0
    linear_num_value_heads: int = 0
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    linear_conv_kernel_dim: int = 0
    index_head_dim: int = 0
    index_n_heads: int = 0
    index_topk: int = 0
    mamba_ssm_dtype: str = ""
    #: multi-token-prediction (MTP) layers shipped beside the main stack (config.json
    #: ``num_nextn_predict_layers`` / ``mtp_num_hidden_layers`` / ``num_mtp_modules``; not in
    #: ``num_layers``); 0: the model has no MTP heads (speculative ``method="mtp"`` is refused)
    mtp_layers: int = 0
    source: str = ""
    aliases: tuple[str, ...] = ()

    # ---- layer kinds ----------------------------------------------------------------------
    @cached_property
    def layer_kinds(self) -> tuple[str, ...]:
        """Kind of each layer (:data:`LAYER_KINDS`): ``layer_pattern`` repeated over the layers
        (cut at ``num_layers``); without one, every layer is ``sliding`` when the model has a
        ``sliding_window`` (Mistral 7B v0.1), else ``full``."""
        pattern = self.layer_pattern or (("sliding",) if self.sliding_window else ("full",))
        return tuple(pattern[i % len(pattern)] for i in range(self.num_layers))

    @cached_property
    def layer_counts(self) -> dict[str, int]:
        """Number of layers of each kind in :data:`LAYER_KINDS` (zeros included)."""
        kinds = self.layer_kinds
        return {k: kinds.count(k) for k in LAYER_KINDS}

    @property
    def num_attention_layers(self) -> int:
        """Layers whose cache grows with the context (full, sliding and chunked attention)."""
        c = self.layer_counts
        return c["full"] + c["sliding"] + c["chunked"]

    @property
    def is_uniform(self) -> bool:
        """Every layer caches the same per-token KV (one attention kind, no indexer, no state):
        the per-token sizing of the original model applies unchanged."""
        return len(set(self.layer_kinds)) == 1 and "linear" not in self.layer_kinds \
            and not self.index_head_dim

    # ---- layer counts -------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @cached_property
    def num_moe_layers(self) -> int:
        if not self.is_moe:
            return 0
        step = self.moe_layer_step
        return sum(1 for i in range(self.first_dense_layers, self.num_layers) if (i + 1) % step == 0)

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    # ---- attention geometry -------------------------------------------------------------
    @property
    def qk_head_dim(self) -> int:
        """Per-head dimension of the q·k product (MLA: nope + rope)."""
        if self.attention == "mla":
            return self.qk_nope_head_dim + self.qk_rope_head_dim
        return self.head_dim

    @property
    def v_dim(self) -> int:
        return self.v_head_dim if self.attention == "mla" else self.head_dim

    @property
    def kv_elements_per_token_layer(self) -> int:
        """Cached elements per token per layer: 2·kv_heads·head_dim, or MLA's latent + rope key."""
        if self.attention == "mla":
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    # ---- parameter counts (elements) ----------------------------------------------------
    @cached_property
    def attn_params(self) -> int:
        h, nh = self.hidden_size, self.num_attention_heads
        if self.attention == "mla":
            qd = nh * self.qk_head_dim
            q = h * self.q_lora_rank + self.q_lora_rank * qd if self.q_lora_rank else h * qd
            kv = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv += self.kv_lora_rank * nh * (self.qk_nope_head_dim + self.v_head_dim)
            return q + kv + nh * self.v_head_dim * h
        return h * nh * self.head_dim * 2 + 2 * h * self.num_kv_heads * self.head_dim

    @cached_property
    def linear_attn_params(self) -> int:
        """Weights of one linear-attention (Gated DeltaNet) layer: q/k/v/z projections, the
        beta/alpha gates, the depthwise causal conv and the output projection."""
        kd = self.linear_num_key_heads * self.linear_key_head_dim
        vd = self.linear_num_value_heads * self.linear_value_head_dim
        proj = self.hidden_size * (2 * kd + 2 * vd + 2 * self.linear_num_value_heads)
        return proj + (2 * kd + vd) * self.linear_conv_kernel_dim + vd * self.hidden_size

    @property
    def mixer_params(self) -> int:
        """Token-mixing weights of all layers: attention layers plus linear-attention layers."""
        return (self.num_attention_layers * self.attn_params
                + self.layer_counts["linear"] * self.linear_attn_params)

    @property
    def mlp_matrices(self) -> int:
        """Weight matrices per MLP/expert: 3 for gated (SwiGLU), 2 for plain (GELU)."""
        return 3 if self.mlp == "gated" else 2

    @property
    def dense_mlp_params(self) -> int:
        return self.mlp_matrices * self.hidden_size * self.intermediate_size

    @property
    def expert_params(self) -> int:
        return self.mlp_matrices * self.hidden_size * self.moe_intermediate_size

    @property
    def shared_expert_params(self) -> int:
        size = self.shared_expert_intermediate_size or self.moe_intermediate_size
        return self.num_shared_experts * self.mlp_matrices * self.hidden_size * size

    @property
    def router_params(self) -> int:
        return self.hidden_size * self.num_experts

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @cached_property
    def total_params(self) -> int:
        moe = self.num_experts * self.expert_params + self.shared_expert_params + self.router_params
        head = 0 if self.tie_word_embeddings else self.embedding_params
        return (self.mixer_params + self.num_dense_layers * self.dense_mlp_params
                + self.num_moe_layers * moe + self.embedding_params + head)

    @cached_property
    def active_params(self) -> int:
        """Activated parameters per token, model-card convention (embedding and LM head counted)."""
        moe = (self.experts_per_token * self.expert_params + self.shared_expert_params
               + self.router_params)
        head = 0 if self.tie_word_embeddings else self.embedding_params
        return (self.mixer_params + self.num_dense_layers * self.dense_mlp_params
                + self.num_moe_layers * moe + self.embedding_params + head)

    def kv_bytes_per_token(self, kv_precision: str = "bf16") -> float:
        """KV bytes one token adds in every layer that caches it (all attention layers plus the
        DSA indexer, no TP replication): the size of a token's slot in a KV block. What a
        sequence holds depends on its length (sliding windows, recurrent state): see
        :meth:`kv_bytes`."""
        kv_B = _bytes("kv_precision", kv_precision)
        if self.is_uniform:
            return self.num_layers * self.kv_elements_per_token_layer * kv_B
        return self.num_attention_layers * (self.kv_elements_per_token_layer * kv_B
                                            + self.indexer_bytes_per_token_layer)

    # ---- KV sizing per layer kind (vectorised over context and TP) ------------------------
    @property
    def indexer_bytes_per_token_layer(self) -> float:
        """DSA indexer cache bytes per token per layer (0 without an indexer)."""
        if not self.index_head_dim:
            return 0.0
        blocks = -(-self.index_head_dim // INDEXER_SCALE_BLOCK)
        return self.index_head_dim * INDEXER_KEY_B + blocks * INDEXER_SCALE_B

    def kv_elements_rank(self, tp: Any = 1) -> Any:
        """Cached KV elements per token per attention layer on one of ``tp`` ranks: MLA's
        latent + rope key on every rank; GQA/MQA heads split, replicated when tp > KV heads."""
        if self.attention == "mla":
            return float(self.kv_elements_per_token_layer) + 0.0 * np.asarray(tp, dtype=float)
        return 2.0 * np.ceil(self.num_kv_heads / np.asarray(tp, dtype=float)) * self.head_dim

    def linear_state_elements_rank(self, tp: Any = 1) -> Any:
        """Recurrent state elements per sequence per linear-attention layer on one rank:
        the state (value heads x key dim x value dim) plus the causal-conv window
        ((kernel - 1) x (2 key heads x key dim + value heads x value dim)); heads split over
        TP. Gated DeltaNet as written; Mamba-2 maps heads -> value heads, head_dim -> value
        dim, d_state -> key dim, n_groups -> key heads."""
        ssm, conv = self._linear_state_parts(tp)
        return ssm + conv

    def _linear_state_parts(self, tp: Any = 1) -> tuple[Any, Any]:
        """(recurrent state, causal-conv window) elements per linear layer on one rank."""
        t = np.asarray(tp, dtype=float)
        kh = np.ceil(self.linear_num_key_heads / t)
        vh = np.ceil(self.linear_num_value_heads / t)
        dk, dv = self.linear_key_head_dim, self.linear_value_head_dim
        conv = (self.linear_conv_kernel_dim - 1) * (2.0 * kh * dk + vh * dv)
        return vh * dk * dv, conv

    def kv_token_bytes_rank(self, kv_B: float, tp: Any = 1) -> Any:
        """Per-token KV bytes on one rank over all attention layers (indexer included);
        ``kv_B`` bytes per element."""
        per_layer = self.kv_elements_rank(tp) * kv_B + self.indexer_bytes_per_token_layer
        return _out(self.num_attention_layers * per_layer)

    def _attention_bytes_rank(self, context_len: Any, kv_B: float, tp: Any = 1) -> Any:
        """Attention-layer KV bytes of ``context_len`` tokens on one rank: full layers every
        token, sliding ``min(L, window)``, chunked ``min(L, chunk)`` (no recurrent state)."""
        L = np.asarray(context_len, dtype=float)
        c = self.layer_counts
        tokens = c["full"] * L
        if c["sliding"]:
            tokens = tokens + c["sliding"] * np.minimum(L, self.sliding_window)
        if c["chunked"]:
            tokens = tokens + c["chunked"] * np.minimum(L, self.attention_chunk_size)
        per_layer = self.kv_elements_rank(tp) * kv_B + self.indexer_bytes_per_token_layer
        return tokens * per_layer

    def kv_bytes_rank(self, context_len: Any, kv_B: float, tp: Any = 1,
                      state_B: float | None = None, conv_B: float | None = None) -> Any:
        """KV bytes one sequence of ``context_len`` tokens holds on one of ``tp`` ranks
        (bytes per element: ``kv_B`` for KV, ``state_B`` for the recurrent state and ``conv_B``
        for its conv window; None: :meth:`state_bytes` of the model's defaults, a given
        ``state_B`` also sets the conv window's)."""
        c = self.layer_counts
        out = self._attention_bytes_rank(context_len, kv_B, tp)
        if c["linear"]:
            if state_B is None:
                state_B, conv_B = self.state_bytes()
            out = out + self._snapshot_bytes_rank(tp, state_B, state_B if conv_B is None
                                                  else conv_B)
        return _out(out)

    def kv_bytes(self, context_len: Any, kv_precision: str = "bf16", tp: Any = 1,
                 state_precision: str | None = None) -> Any:
        """KV cache bytes of one sequence of ``context_len`` tokens, summed over its layers
        and over the ``tp`` ranks of its tensor-parallel group (replicas counted).

        Per layer kind: full attention holds every token, sliding ``min(L, sliding_window)``,
        chunked ``min(L, attention_chunk_size)`` (one chunk, what the allocator reserves),
        linear attention a constant recurrent state (in ``state_precision``, whatever the KV
        precision; None: the model's :attr:`default_state_precision`, conv window in the model
        dtype; given: state and conv window both in it). Each token costs
        :meth:`kv_elements_rank` elements per rank (GQA heads replicated when tp > KV heads,
        MLA's latent on every rank) plus the DSA indexer key. Vectorised: ``context_len`` and
        ``tp`` broadcast; a float for scalars."""
        L = _nonneg("context_len", context_len)
        t = _nonneg("tp", tp, minimum=1)
        state_B, conv_B = self.state_bytes(state_precision)
        return _out(t * self.kv_bytes_rank(L, _bytes("kv_precision", kv_precision), t, state_B,
                                           conv_B))

    # ---- attention work per layer kind (the step roofline's pairs and reads) ---------------
    def keys_before(self, kind: str, position: Any) -> Any:
        """Causal (query, key) pairs of the queries at positions ``0 .. position - 1`` in one
        layer of attention ``kind``: a query at position p attends to p + 1 keys under
        ``full``, min(p + 1, window) under ``sliding`` and (p mod chunk) + 1 under ``chunked``
        (Llama 4 local attention: the keys of its own chunk). Vectorised; a fractional
        ``position`` (a mean) continues the sums linearly within a chunk."""
        x = np.asarray(position, dtype=float)
        if kind == "full":
            return x * (x + 1.0) / 2.0
        if kind == "sliding":
            w = float(self.sliding_window)
            m = np.minimum(x, w)
            return m * (m + 1.0) / 2.0 + (x - m) * w
        if kind == "chunked":
            c = float(self.attention_chunk_size)
            q = np.floor(x / c)
            r = x - q * c
            return q * c * (c + 1.0) / 2.0 + r * (r + 1.0) / 2.0
        raise ValueError(f"kind={kind!r}; allowed: {list(ATTENTION_KINDS)}")

    def cached_keys(self, kind: str, context: Any) -> Any:
        """Cached keys a query after ``context`` tokens reads in one layer of ``kind``: every
        one (``full``), the last ``window`` (``sliding``), those of its own chunk, context mod
        chunk (``chunked``). Vectorised."""
        L = np.asarray(context, dtype=float)
        if kind == "full":
            return L
        if kind == "sliding":
            return np.minimum(L, float(self.sliding_window))
        if kind == "chunked":
            return np.mod(L, float(self.attention_chunk_size))
        raise ValueError(f"kind={kind!r}; allowed: {list(ATTENTION_KINDS)}")

    @cached_property
    def attention_layer_kinds(self) -> tuple[tuple[str, int], ...]:
        """(kind, layers) of each attention kind the model has (full, sliding, chunked)."""
        c = self.layer_counts
        return tuple((k, c[k]) for k in ATTENTION_KINDS if c[k])

    def linear_flops_per_token(self, tp: Any = 1) -> Any:
        """FLOPs one token costs in one linear-attention layer on one of ``tp`` ranks (value
        heads split): the recurrent update of each head's dk x dv state, read against the key
        (S k), written with the rank-1 delta correction and read out by the query (S q), three
        dk x dv matrix-vector products of 2 FLOPs per element: 6 · heads · dk · dv. Gated
        DeltaNet (Yang, Kautz & Hatamizadeh, ICLR 2025, arXiv:2412.06464, eq. 10 and Sec. 3.3:
        the chunkwise form does the same state work as matmuls) and Mamba-2 SSD (Dao & Gu,
        ICML 2024, arXiv:2405.21060, Sec. 6: O(T·N·P) per head, N state x P head dim)."""
        vh = np.ceil(self.linear_num_value_heads / np.asarray(tp, dtype=float))
        return _out(6.0 * vh * self.linear_key_head_dim * self.linear_value_head_dim)

    # ---- prefix caching: what a cached prefix can be reused for, and what it holds ---------
    @property
    def default_state_precision(self) -> str:
        """Precision the engines keep the recurrent (SSM) state in when the caller names none:
        the config's ``mamba_ssm_dtype`` (vLLM sets ``mamba_ssm_cache_dtype`` from it for
        Qwen3.5, ``Qwen3_5ForConditionalGenerationConfig``), else the model dtype (vLLM
        ``mamba_ssm_cache_dtype="auto"``). The conv window stays in the model dtype."""
        return self.mamba_ssm_dtype or MODEL_DTYPE

    def state_bytes(self, state_precision: str | None = None,
                    conv_precision: str | None = None) -> tuple[float, float]:
        """(SSM state, conv window) bytes per element. ``state_precision`` None: the model's
        :attr:`default_state_precision` with the conv window in the model dtype; given: the
        conv window in ``conv_precision``, default the same as the state."""
        if state_precision is None:
            state, conv = self.default_state_precision, conv_precision or MODEL_DTYPE
        else:
            state, conv = state_precision, conv_precision or state_precision
        return _bytes("state_precision", state), _bytes("conv_precision", conv)

    @property
    def has_recurrent_state(self) -> bool:
        """Some layer keeps a recurrent state (linear attention / Mamba): a cached prefix is
        reusable only up to a position where the engine kept a state snapshot."""
        return self.layer_counts["linear"] > 0

    def _snapshot_bytes_rank(self, tp: Any, state_B: float, conv_B: float) -> Any:
        """One state snapshot of a sequence (all linear layers) on one rank."""
        ssm, conv = self._linear_state_parts(tp)
        return self.layer_counts["linear"] * (ssm * state_B + conv * conv_B)

    def state_block_tokens(self, kv_precision: str = "bf16", state_precision: str | None = None,
                           conv_precision: str | None = None, tp: int = 1, align: int = 16) -> int:
        """Attention block size (tokens) a hybrid engine sets so that one block of an attention
        layer is at least one linear layer's state (vLLM ``HybridAttentionMambaModelConfig``:
        ``align * ceil(mamba_page / (align * attention bytes per token per layer))``, ``align``
        16 = the attention kernels' block multiple); prefix-cache hits and state snapshots sit
        on this grid. 0 without linear layers. Precisions as :meth:`state_bytes` (vLLM keeps
        the conv window in the model dtype, the SSM state in ``mamba_ssm_cache_dtype``, set
        from the config's ``mamba_ssm_dtype``: the default)."""
        if not self.has_recurrent_state:
            return 0
        state_B, conv_B = self.state_bytes(state_precision, conv_precision)
        return int(self.snapshot_grid_tokens(_bytes("kv_precision", kv_precision), tp, state_B,
                                             conv_B, align))

    def snapshot_grid_tokens(self, kv_B: float, tp: Any = 1, state_B: float | None = None,
                             conv_B: float | None = None, align: int = 16) -> Any:
        """:meth:`state_block_tokens` from bytes per element (``kv_B`` KV, ``state_B`` SSM
        state, ``conv_B`` conv window, default ``state_B``; both None: :meth:`state_bytes`);
        vectorised over ``tp``."""
        align = float(_nonneg("align", align, minimum=1))
        if state_B is None:
            state_B, conv_B = self.state_bytes()
        ssm, conv = self._linear_state_parts(tp)
        page = ssm * state_B + conv * (state_B if conv_B is None else conv_B)
        tok = self.kv_elements_rank(tp) * kv_B + self.indexer_bytes_per_token_layer
        return _out(align * np.ceil(page / (align * tok)))

    def reusable_prefix(self, prefix_len: Any, block_tokens: Any) -> Any:
        """Tokens of a cached ``prefix_len``-token prefix a request can skip: all of them for
        attention-only models (sliding and chunked layers need only their last window, which a
        prefix holds); for models with recurrent state, the prefix floored to the last multiple
        of ``block_tokens`` where a state snapshot exists (vLLM: the mamba block grid,
        :meth:`state_block_tokens`; SGLang ``MambaRadixCache``: page size 1 without the extra
        buffer, ``mamba_track_interval`` 256 with it). Vectorised."""
        L = _nonneg("prefix_len", prefix_len)
        b = _nonneg("block_tokens", block_tokens, minimum=1)
        if not self.has_recurrent_state:
            return _out(L + 0.0 * b)
        return _out(np.floor(L / b) * b)

    def prefix_cache_bytes(self, prefix_len: Any, block_tokens: Any, kv_precision: str = "bf16",
                           tp: Any = 1, snapshots: str = "block",
                           state_precision: str | None = None,
                           conv_precision: str | None = None, interval: Any = None) -> Any:
        """Bytes a prefix cache keeps for the reusable part ``R`` (:meth:`reusable_prefix`) of a
        ``prefix_len``-token prefix, summed over the ``tp`` ranks: full-attention KV of ``R``
        tokens, sliding / chunked KV of ``min(R, window / chunk)`` (all a hit needs: vLLM hybrid
        KV cache manager), and recurrent-state snapshots (:data:`SNAPSHOT_MODES`): ``block`` one
        per ``block_tokens`` boundary, ``floor(R / b)``; ``align``, ``interval`` and ``node`` one
        per ``interval`` tokens of prefill plus the prompt's last, ``ceil(R / interval)``
        (``align``: ``interval`` floored to whole blocks, vLLM's block-aligned prefill chunks;
        None: one per cached prefix); ``none`` nothing (no reuse). Vectorised over
        ``prefix_len``, ``block_tokens``, ``tp`` and ``interval``."""
        if snapshots not in SNAPSHOT_MODES:
            raise ValueError(f"snapshots={snapshots!r}; allowed: {list(SNAPSHOT_MODES)}")
        R = np.asarray(self.reusable_prefix(prefix_len, block_tokens), dtype=float)
        if snapshots == "none":
            R = 0.0 * R
        t = _nonneg("tp", tp, minimum=1)
        out = self._attention_bytes_rank(R, _bytes("kv_precision", kv_precision), t)
        if self.has_recurrent_state:
            n = self.snapshot_count(R, block_tokens, snapshots, interval)
            state_B, conv_B = self.state_bytes(state_precision, conv_precision)
            out = out + n * self._snapshot_bytes_rank(t, state_B, conv_B)
        return _out(t * out)

    @staticmethod
    def snapshot_count(reusable: Any, block_tokens: Any, snapshots: str = "block",
                       interval: Any = None) -> Any:
        """State snapshots a prefix cache holds for a reusable prefix of ``reusable`` tokens
        (a multiple of ``block_tokens``) in mode ``snapshots`` (:meth:`prefix_cache_bytes`)."""
        R = np.asarray(reusable, dtype=float)
        b = np.asarray(block_tokens, dtype=float)
        if snapshots == "block":
            return np.floor(R / b)
        if snapshots == "none" or interval is None:
            return (R > 0).astype(float) * (snapshots != "none")
        C = _nonneg("interval", interval, minimum=1)
        if snapshots == "align":
            C = np.maximum(np.floor(C / b), 1.0) * b
        return np.ceil(R / C)

    def cache_block_bytes(self, block_tokens: Any, kv_precision: str = "bf16",
                          prefix_len: Any = None, snapshot_tokens: Any = None,
                          snapshots: str = "block", state_precision: str | None = None,
                          interval: Any = None) -> Any:
        """Bytes one ``block_tokens``-token block of a cached prefix takes in a prefix cache,
        the size hit ratios count capacity in: ``block_tokens * kv_bytes_per_token`` when every
        layer is full attention; otherwise the mean per token of :meth:`prefix_cache_bytes` over a
        ``prefix_len``-token prefix (default one block) times ``block_tokens``: windows bounded,
        the prefix floored to ``snapshot_tokens`` (default the larger of ``block_tokens`` and
        :meth:`state_block_tokens`), its state snapshots (mode ``snapshots``, ``interval``
        apart) spread over its blocks; ``none`` (nothing reused) is sized as one snapshot per
        prefix. No TP replication (as :meth:`kv_bytes_per_token`)."""
        b = _nonneg("block_tokens", block_tokens, minimum=1)
        if set(self.layer_kinds) == {"full"}:
            return _out(block_tokens * self.kv_bytes_per_token(kv_precision))
        s = b
        if snapshot_tokens is not None:
            s = _nonneg("snapshot_tokens", snapshot_tokens, minimum=1)
        elif self.has_recurrent_state:
            s = np.maximum(b, self.state_block_tokens(kv_precision, state_precision))
        L = b if prefix_len is None else _nonneg("prefix_len", prefix_len)
        R = np.maximum(np.asarray(self.reusable_prefix(L, s)), s)
        mode = "node" if snapshots == "none" else snapshots
        per_tok = self.prefix_cache_bytes(R, s, kv_precision, 1, mode, state_precision,
                                          interval=interval) / R
        return _out(b * per_tok)


def _bytes(name: str, precision: str) -> float:
    """Bytes per element of a cache precision (weight-only formats are not cache formats)."""
    if precision not in KV_PRECISIONS:
        raise ValueError(f"{name}={precision!r}; allowed: {sorted(KV_PRECISIONS)}")
    return BYTES_PER_ELEMENT[precision]


def _out(x: Any) -> Any:
    """A 0-d result as a Python float, an array as is."""
    return x if np.ndim(x) else float(x)


def _nonneg(name: str, v: Any, minimum: float = 0.0) -> Any:
    """``v`` as finite float(s) >= ``minimum``; errors name the argument and the value."""
    if isinstance(v, (bool, np.bool_)) or v is None:
        raise TypeError(f"{name}={v!r}: expected a number or an array of numbers >= {minimum:g}")
    try:
        arr = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={v!r}: expected a number or an array of numbers") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < minimum):
        raise ValueError(f"{name}={v!r}: expected finite numbers >= {minimum:g}")
    return arr


def kv_bytes_per_token(model: str | ModelSpec, kv_precision: str = "bf16") -> float:
    return get_model(model).kv_bytes_per_token(kv_precision)


_SPEC_FIELDS = set(ModelSpec.__dataclass_fields__)


def _spec_from_entry(key: str, e: Mapping[str, Any]) -> ModelSpec:
    kw = {k: v for k, v in e.items() if k in _SPEC_FIELDS}
    spec = ModelSpec(key=key, **kw)
    _check_model(spec)
    return spec


def _check_model(m: ModelSpec) -> None:
    where = f"model {m.key!r}"
    if m.num_kv_heads > m.num_attention_heads or m.num_attention_heads % m.num_kv_heads:
        raise HardwareDBError(f"{where}: num_attention_heads={m.num_attention_heads} must be a "
                              f"multiple of num_kv_heads={m.num_kv_heads}")
    if m.attention == "mla" and not (m.kv_lora_rank and m.qk_rope_head_dim and m.v_head_dim):
        raise HardwareDBError(f"{where}: attention 'mla' needs kv_lora_rank, qk_rope_head_dim, "
                              "qk_nope_head_dim and v_head_dim")
    if m.is_moe and not (m.experts_per_token and m.moe_intermediate_size):
        raise HardwareDBError(f"{where}: MoE needs experts_per_token and moe_intermediate_size")
    if m.experts_per_token > max(m.num_experts, 0) and m.is_moe:
        raise HardwareDBError(f"{where}: experts_per_token > num_experts")
    _check_layers(m, where)


_NEEDS = {"sliding": ("sliding_window",), "chunked": ("attention_chunk_size",),
          "linear": ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim",
                     "linear_value_head_dim", "linear_conv_kernel_dim")}


def _check_layers(m: ModelSpec, where: str) -> None:
    """Layer kinds are known, each has the sizes it needs, and some layer is attention."""
    bad = sorted(set(m.layer_pattern) - set(LAYER_KINDS))
    if bad:
        raise HardwareDBError(f"{where}: layer_pattern has unknown kind(s) {bad}; allowed: "
                              f"{list(LAYER_KINDS)}")
    for kind in set(m.layer_kinds):
        missing = [f for f in _NEEDS.get(kind, ()) if getattr(m, f) < 1]
        if missing:
            raise HardwareDBError(f"{where}: '{kind}' layers need {', '.join(missing)} >= 1")
    if m.num_attention_layers == 0:
        raise HardwareDBError(f"{where}: layer_pattern {list(m.layer_pattern)} has no attention "
                              f"layer; allowed: at least one of {list(ATTENTION_KINDS)}")
    if m.index_head_dim and m.attention != "mla":
        raise HardwareDBError(f"{where}: index_head_dim={m.index_head_dim} (a DSA indexer) needs "
                              "attention 'mla'")


_SUFFIXES = ("-instruct", "-chat", "-hf", "-base", "-it")


def _norm(name: str) -> str:
    n = name.strip().lower()
    if n.endswith("/config.json"):
        n = n[: -len("/config.json")]
    return n


def _candidates(name: str) -> list[str]:
    n = _norm(name)
    short = n.rsplit("/", 1)[-1]
    out = [n, short]
    for s in _SUFFIXES:
        if short.endswith(s):
            out.append(short[: -len(s)])
    if short.startswith("meta-"):
        out.append(short[len("meta-"):])
    return out


def _index(cat: "Catalog") -> dict[str, str]:
    """Every accepted spelling (key, published name, alias) -> model key, built once per catalog."""
    index: dict[str, str] = {}
    for key in cat.entries("model"):
        e = cat.raw("model", key)
        for alias in (key, e["hf_id"], *e.get("aliases", ())):
            for c in _candidates(alias)[:2]:
                index.setdefault(c, key)
    return index


def list_models(catalog: "Catalog | None" = None) -> list[str]:
    from kvmodel.catalog.hardware import list_entries
    return list_entries("model", catalog)


def get_model(name: str | ModelSpec | os.PathLike[str], catalog: "Catalog | None" = None
              ) -> ModelSpec:
    """Catalog model by key, published name or alias (case-insensitive), or a config.json path.
    ``catalog``: where to look names up (default: the active catalog)."""
    if isinstance(name, ModelSpec):
        return name
    if isinstance(name, os.PathLike) or (isinstance(name, str) and name.endswith(".json")
                                          and Path(name).is_file()):
        return load_hf_config(name)
    if not isinstance(name, str):
        raise TypeError(f"model must be a name, a ModelSpec or a config.json path, got {name!r}")
    from kvmodel.catalog.hardware import current
    cat = catalog or current()
    return cat.cached("model", name, lambda: _lookup(cat, name))


def _lookup(cat: "Catalog", name: str) -> ModelSpec:
    index = cat.cached("model_index", None, lambda: _index(cat))
    for c in _candidates(name):
        if c in index:
            key = index[c]
            return cat.cached("model", key, lambda: _spec_from_entry(key, cat.raw("model", key)))
    raise KeyError(f"unknown model {name!r}; known: {', '.join(cat.entries('model'))} "
                   "(or pass a Hugging Face config.json path)")


# ---- Hugging Face config.json ---------------------------------------------------------------
_PLAIN_MLP_TYPES = {"gptj", "gpt2", "gpt_neox", "falcon", "opt", "bloom", "gpt_bigcode", "phi"}


def _first(cfg: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if cfg.get(n) is not None:
            return cfg[n]
    return default


#: config.json spellings of the MTP layer count (DeepSeek / GLM / Kimi, Qwen3-Next / 3.5, MiniMax)
_MTP_KEYS = ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_modules")


def _hf_fields(cfg: Mapping[str, Any]) -> dict[str, Any]:
    mtype = str(cfg.get("model_type", ""))
    h = _first(cfg, "hidden_size", "n_embd", "d_model")
    nh = _first(cfg, "num_attention_heads", "n_head", "num_heads")
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    if h is None or nh is None or layers is None:
        raise ValueError("config.json needs hidden_size, num_attention_heads and num_hidden_layers")
    for name, v in (("hidden_size", h), ("num_attention_heads", nh), ("num_hidden_layers", layers)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r}: must be an integer >= 1")
    kv = _first(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv")
    if kv is None:
        kv = 1 if cfg.get("multi_query") else nh
    f: dict[str, Any] = {
        "name": cfg.get("_name_or_path") or mtype or "custom",
        "hf_id": cfg.get("_name_or_path") or mtype or "custom",
        "hidden_size": h, "num_layers": layers, "num_attention_heads": nh, "num_kv_heads": kv,
        "head_dim": _first(cfg, "head_dim", default=h // nh),
        "intermediate_size": _first(cfg, "intermediate_size", "intermediate_size_mlp", "n_inner",
                                    "ffn_hidden_size", default=4 * h),
        "vocab_size": cfg["vocab_size"], "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "mlp": "plain" if mtype in _PLAIN_MLP_TYPES else "gated",
        "attention": "mha" if kv == nh else ("mqa" if kv == 1 else "gqa"),
        "mtp_layers": int(_first(cfg, *_MTP_KEYS, default=0)),
    }
    if cfg.get("kv_lora_rank"):
        f.update(attention="mla", num_kv_heads=nh, kv_lora_rank=cfg["kv_lora_rank"],
                 q_lora_rank=cfg.get("q_lora_rank") or 0, qk_nope_head_dim=cfg["qk_nope_head_dim"],
                 qk_rope_head_dim=cfg["qk_rope_head_dim"], v_head_dim=cfg["v_head_dim"])
        f["head_dim"] = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    experts = _first(cfg, "num_local_experts", "n_routed_experts", "num_experts", default=0)
    if experts:
        f.update(num_experts=experts, experts_per_token=cfg["num_experts_per_tok"],
                 moe_intermediate_size=_first(cfg, "moe_intermediate_size", "intermediate_size"),
                 num_shared_experts=_first(cfg, "n_shared_experts", "num_shared_experts", default=0),
                 shared_expert_intermediate_size=_first(cfg, "shared_expert_intermediate_size", default=0),
                 first_dense_layers=_first(cfg, "first_k_dense_replace", default=0),
                 moe_layer_step=_first(cfg, "interleave_moe_layer_step", "decoder_sparse_step", default=1))
        if cfg.get("shared_expert_intermediate_size"):
            f["num_shared_experts"] = max(1, f["num_shared_experts"])
    if cfg.get("sliding_window") and not cfg.get("max_window_layers") and cfg.get("use_sliding_window", True):
        f["sliding_window"] = cfg["sliding_window"]
    layer_fields = _hf_layers(cfg, layers)
    if "layer_pattern" not in layer_fields and isinstance(cfg.get("layer_types"), list):
        f.pop("sliding_window", None)  # layer_types says every layer is full attention
    f.update(layer_fields)
    return f


# config.json ``layer_types`` spellings -> LAYER_KINDS
_HF_LAYER_TYPES = {"full_attention": "full", "attention": "full", "sliding_attention": "sliding",
                   "chunked_attention": "chunked", "linear_attention": "linear", "mamba": "linear"}
_LINEAR_KEYS = ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim",
                "linear_value_head_dim", "linear_conv_kernel_dim")
_INDEX_KEYS = ("index_head_dim", "index_n_heads", "index_topk")


def _hf_pattern(cfg: Mapping[str, Any], layers: int) -> tuple[str, ...]:
    """Layer kinds from ``layer_types``, else from the interval keys of each family
    (``full_attention_interval``: Qwen3-Next/3.5; ``sliding_window_pattern``: Gemma 3;
    ``attention_chunk_size`` with ``no_rope_layers`` / ``no_rope_layer_interval``: Llama 4)."""
    types = cfg.get("layer_types")
    if isinstance(types, list) and types:
        unknown = sorted(set(types) - set(_HF_LAYER_TYPES))
        if unknown:
            raise ValueError(f"layer_types has unknown type(s) {unknown}; allowed: "
                             f"{sorted(_HF_LAYER_TYPES)}")
        return tuple(_HF_LAYER_TYPES[t] for t in types)
    if cfg.get("full_attention_interval"):
        return ("linear",) * (int(cfg["full_attention_interval"]) - 1) + ("full",)
    every = _first(cfg, "sliding_window_pattern", "_sliding_window_pattern")
    if every and cfg.get("sliding_window"):
        return ("sliding",) * (int(every) - 1) + ("full",)
    if cfg.get("attention_chunk_size"):
        nope = cfg.get("no_rope_layers")
        if isinstance(nope, list) and len(nope) == layers:
            return tuple("chunked" if r else "full" for r in nope)
        return ("chunked",) * (int(cfg.get("no_rope_layer_interval") or 4) - 1) + ("full",)
    return ()


def _hf_layers(cfg: Mapping[str, Any], layers: int) -> dict[str, Any]:
    """Per-layer-kind fields: the pattern, the window / chunk sizes, the linear-attention
    state geometry and the DSA indexer."""
    pattern = _hf_pattern(cfg, layers)
    out: dict[str, Any] = {}
    if pattern and set(pattern) != {"full"}:
        out["layer_pattern"] = list(pattern)
    if "sliding" in pattern and cfg.get("sliding_window"):
        out["sliding_window"] = cfg["sliding_window"]
    if "chunked" in pattern:
        out["attention_chunk_size"] = cfg["attention_chunk_size"]
    if "linear" in pattern:
        out.update({k: cfg[k] for k in _LINEAR_KEYS})
        dtype = _first(cfg, "mamba_ssm_dtype", "mamba_ssm_cache_dtype")
        if dtype is not None and dtype != "auto":
            if dtype not in _HF_DTYPES:
                raise ValueError(f"mamba_ssm_dtype={dtype!r}; allowed: {sorted(_HF_DTYPES)}")
            out["mamba_ssm_dtype"] = _HF_DTYPES[dtype]
    out.update({k: cfg[k] for k in _INDEX_KEYS if cfg.get(k)})
    return out


def load_hf_config(path: str | os.PathLike[str], key: str | None = None) -> ModelSpec:
    """Build a :class:`ModelSpec` from a Hugging Face ``config.json`` (multimodal: its text_config)."""
    p = Path(path)
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read config.json: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not a UTF-8 text file (config.json is JSON): {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{p}: config.json must hold a JSON object, got {type(cfg).__name__}")
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg["text_config"], "_name_or_path": cfg.get("_name_or_path", "")}
    try:
        fields = _hf_fields(cfg)
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{p}: unsupported config.json: {exc}") from None
    fields["source"] = str(p)
    entry = parse_entry("model", key or p.parent.name.lower(), fields, f"{p}")
    return _spec_from_entry(key or (fields["hf_id"] or p.stem).lower(), entry)
