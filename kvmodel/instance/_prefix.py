"""Cached prefixes: load a prefix's KV from a tier, recompute it, or split the two.

Loading overlaps layer by layer with computing the new tokens only where the KV arrives layer
by layer: a per-layer layout (one descriptor per block and layer) moved by a connector that
streams layer-wise. With ``L`` layers, per-layer load ``a = t_load/L`` and per-layer compute
``b = t_comp/L``, layer ``l``'s compute waits for its KV, so the prefill takes
``a + b + (L-1)·max(a, b)`` (a two-stage pipeline): only the part of loading not hidden behind
computing earlier layers is exposed. A contiguous layout (every block holds all layers: layer 0
needs every block) or a connector that loads before the prefill exposes the whole load
(``L = 1``: load, then compute). Recompute prefills the whole
prompt. Split loads the first ``x`` prefix tokens and recomputes the rest, with ``x`` where load
and compute balance (from a linearisation of both times in ``x``); a model with recurrent state
(hybrid) does not split: resuming at ``x`` needs a state snapshot there, and the instance knows
of one only at the prefix's end (the cluster floors ``P`` to where the engine keeps them), so
its split recomputes the prompt;
``best`` takes the fastest
(here alone on the path: :mod:`kvmodel.instance._contended` decides it for an estimate whose
concurrent loads share the path).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.catalog.hardware import ConnectorSpec, get_connector
from kvmodel.instance._roofline import Setup, attn_pairs, attn_reads, memoised, step_ops
from kvmodel.tiers import Tier, transfer_seconds

__all__ = ["POLICIES", "LAYOUTS", "kv_bytes_per_token_gpu", "prefix_bytes_gpu", "load_seconds",
           "pipeline_makespan", "overlap_layers", "prefill_with_prefix",
           "prefill_choice", "on_distinct", "path_token"]

POLICIES = ("best", "load", "recompute", "split")
LAYOUTS = ("contiguous", "per_layer")


def kv_bytes_per_token_gpu(s: Setup, compression=1.0):
    """KV bytes one GPU holds per token (its layers and KV heads), after compression."""
    return s.model.num_layers / s.pp * s.kv_elems_rank * s.kv_B / compression


def prefix_bytes_gpu(s: Setup, tokens, requests=1.0, compression=1.0):
    """KV bytes one GPU moves for ``tokens`` prefix tokens of ``requests`` requests: the
    per-token rate for full-attention models; per layer kind otherwise (a sliding or chunked
    layer holds at most its window or chunk of each prefix, a linear-attention layer its state
    snapshot), from :meth:`ModelSpec.kv_bytes_rank` on this GPU's share of the layers."""
    m = s.model
    if m.is_uniform and m.layer_kinds[0] == "full":
        return tokens * kv_bytes_per_token_gpu(s, compression)
    r = xp.maximum(requests, 1e-12)
    per_req = m.kv_bytes_rank(xp.maximum(tokens, 0.0) / r, s.kv_B, s.tp) / s.pp / compression
    return xp.where(tokens > 0, r * per_req, 0.0)


def load_seconds(s: Setup, tier: Tier, tokens, layout: str = "contiguous", block_tokens=256.0,
                 compression=1.0, in_flight=None, connector: str | ConnectorSpec = "ideal",
                 requests=1.0):
    """Seconds for one GPU to bring ``tokens`` tokens of KV (of ``requests`` requests) from
    ``tier`` into HBM; a per-layer layout posts one descriptor per block and layer. Memoised
    by value: a new configuration's tiers take equal paths at the same token counts."""
    if tier.path is None:
        return 0.0 * tokens
    args = (tokens, block_tokens, compression, in_flight, requests)
    return memoised("load_s", s, args, lambda: _load_seconds(s, tier, layout, connector, *args),
                    _path_token(tier.path, layout, connector))


_PATH_TOKENS: dict = {}  # (path, its links' ids) -> the number standing for it in memo keys
_PATH_COUNT = itertools.count()  # (never reused: a cleared table only costs misses)


def _path_token(path, layout: str, connector):
    """Memo key of what a load takes from ``path``, ``layout`` and ``connector``: a number per
    path value over the same link objects (a link's ``quantities`` take no part in equality;
    the table holds the path, so the ids stay valid), kept on the path; None where a path or
    connector is unhashable."""
    try:
        hash(connector)
        tok = path.__dict__.get("_load_token_")
        if tok is None:
            key = (path, tuple(map(id, path.links)))
            tok = _PATH_TOKENS.get(key)
            if tok is None:
                if len(_PATH_TOKENS) >= 4096:
                    _PATH_TOKENS.clear()
                tok = _PATH_TOKENS[key] = next(_PATH_COUNT)
            object.__setattr__(path, "_load_token_", tok)
        return (tok, layout, connector)
    except (TypeError, AttributeError):  # (a path object of no __dict__)
        return None


def path_token(path) -> Any:
    """The number standing for ``path``'s value (over the same link objects) in memo keys,
    kept on the path (equal paths of a new configuration's tiers: the same number while the
    table holds it); None where the path is unhashable (an array in it)."""
    got = _path_token(path, "", None)
    return None if got is None else got[0]


def _load_seconds(s: Setup, tier: Tier, layout, connector, tokens, block_tokens, compression,
                  in_flight, requests):
    per_tok = kv_bytes_per_token_gpu(s, compression)
    transfer = block_tokens * per_tok
    if layout == "per_layer":
        transfer = transfer / (s.model.num_layers / s.pp)
    nbytes = xp.maximum(prefix_bytes_gpu(s, tokens, requests, compression), 0.0)
    t = transfer_seconds(tier, nbytes, transfer, connector=connector, in_flight=in_flight,
                         requests=requests)
    return xp.where(tokens > 0, t, 0.0)


def overlap_layers(s: Setup, layout: str, connector: str | ConnectorSpec = "ideal") -> float:
    """Pipeline depth of load vs compute: the layers of this GPU where KV arrives layer by layer
    (per-layer layout, layer-wise connector), else 1 (the whole load precedes the compute)."""
    if layout == "per_layer" and get_connector(connector).streaming == "layer":
        return s.model.num_layers / s.pp
    return 1.0


def pipeline_makespan(t_load, t_comp, layers):
    """Two-stage layer pipeline: load layer l, then compute it; loads run ahead of compute."""
    a, b = t_load / layers, t_comp / layers
    return xp.where(t_load > 0, a + b + (layers - 1.0) * xp.maximum(a, b), t_comp)


def _prefill(s: Setup, B, I, new):
    """Prefill ``new`` tokens of B prompts of length I whose first I-new tokens' KV is in HBM
    (an MLA model up-projects the cached latent of those tokens for the prefill's attention)."""
    old = I - new
    pairs = new * old + new * (new + 1.0) / 2.0
    if type(B) is float and B == 1.0:  # one prompt: x·1.0 is x, bit for bit (skip the copies)
        return step_ops(s, new, B, attn_pairs(s, pairs, I, new), 0.0, attn_reads(s, B, old), new,
                        mla_cached=old)
    return step_ops(s, B * new, B, attn_pairs(s, B * pairs, I, new), 0.0, attn_reads(s, B, old),
                    B * new, mla_cached=B * old)


_DISTINCT_MIN = 4096  # array size from which a prefill is computed on its distinct values


def on_distinct(f: Callable[[Any], Any], x):
    """``f(x)`` for an element-wise ``f``; a large array ``x`` of token counts (a vectorised
    evaluation: whole tokens, a few thousand distinct values at most) is computed on its
    distinct values and spread back, element by element the same numbers."""
    if isinstance(x, np.ndarray) and x.size >= _DISTINCT_MIN:
        u, inv = np.unique(x, return_inverse=True)
        y = f(u)
        if np.shape(y) == u.shape:  # (not where f's other arguments hold arrays)
            return y[inv.ravel()].reshape(x.shape)
    return f(x)


def _prefill_s(s: Setup, B, I, new):
    """Latency of :func:`_prefill` (on the distinct values of ``new`` for a scalar B and I),
    memoised by value (:func:`~kvmodel.instance._roofline.memoised`)."""
    if xp.is_array(B, I):
        return memoised("prefill_s", s, (B, I, new), lambda: _prefill(s, B, I, new)[2])
    return on_distinct(lambda v: memoised("prefill_s", s, (B, I, v),
                                          lambda: _prefill(s, B, I, v)[2]), new)


def _rows(I, P) -> bool:
    """Whether I and P are 1-d arrays of one length (classes stacked on axis 0)."""
    return (isinstance(I, np.ndarray) and isinstance(P, np.ndarray) and I.ndim == 1
            and I.shape == P.shape)


def _merge(cond, a: dict, b: dict) -> dict:
    return {k: {f: xp.where(cond, a[k][f], b[k][f]) for f in ("flops", "bytes", "time_s")}
            | {kk: xp.where(cond, a[k][kk], b[k][kk]) for kk in ("compute_s", "memory_s")
               if kk in a[k]} for k in a}


def prefill_with_prefix(s: Setup, B, I, P, load: Callable[[Any], Any], policy: str = "best",
                        layers=None):
    """Per-GPU prefill latency of B prompts (length I, cached prefix P) and its breakdown.

    ``load(tokens)`` gives the seconds to load ``tokens`` prefix tokens of all B prompts;
    ``layers`` is the load/compute pipeline depth (:func:`overlap_layers`; None: all layers).
    Returns ``(ops, latency_s, loaded_tokens)``; ``ops["kv_load"]`` is the exposed load time.
    """
    c = _choose(s, B, I, P, load, policy, layers, breakdown=True)
    ops = dict(c["ops"])
    ops["kv_load"] = {"flops": 0.0, "bytes": c["tok"] * B * kv_bytes_per_token_gpu(s),
                      "time_s": c["lat"] - c["comp"]}
    return ops, c["lat"], c["tok"]


def prefill_choice(s: Setup, B, I, P, load: Callable[[Any], Any], policy: str = "best",
                   layers=None, stretch=1.0) -> dict:
    """:func:`prefill_with_prefix` without the op breakdown (the same choice, element by
    element): ``lat`` (latency), ``tok`` (loaded tokens), ``comp`` (compute seconds) and
    ``t_load`` (``load(tok)``: the load time of the chosen tokens, alone on the path);
    ``each``: policy -> (tok, lat, comp, t_load) of every policy, the choice's candidates;
    ``pick``: per element, the index in ``each`` of the one chosen (recompute, load, split).
    ``stretch`` (>= 1, may be an array): the factor by which contention on the shared path
    lengthens a load; the split then balances ``stretch·load(x)`` against computing the rest
    (fewer tokens loaded as the path gets busier), everything else stays uncontended."""
    return _choose(s, B, I, P, load, policy, layers, breakdown=False, stretch=stretch)


def _picked(cands: dict, policy: str, breakdown: bool) -> tuple:
    """(latency, loaded tokens, ops, compute, load seconds, index) of ``policy``'s candidate, or
    per element of the fastest for ``best`` (ties: recompute, load, split in that order)."""
    if policy != "best":
        return (*cands[policy], tuple(cands).index(policy))
    lat, tok, ops, comp, t_load = cands["recompute"]
    pick = 0
    for j, name in ((1, "load"), (2, "split")):
        c = cands[name]
        better = c[0] < lat
        if breakdown:
            ops = _merge(better, c[2], ops)
        lat, tok, comp, t_load = (xp.where(better, c[0], lat), xp.where(better, c[1], tok),
                                  xp.where(better, c[3], comp), xp.where(better, c[4], t_load))
        pick = xp.where(better, j, pick)
    return lat, tok, ops, comp, t_load, pick


def _choose(s: Setup, B, I, P, load, policy: str, layers, breakdown: bool,
            stretch=1.0) -> dict:
    """Recompute, load or split, per element (the fastest for ``best``); ``ops`` of the choice
    only with ``breakdown`` (merging every op's fields costs more than the choice itself)."""
    L = s.model.num_layers if layers is None else layers
    if breakdown:
        ops_full, _, t_full = _prefill(s, B, I, I)
        ops_new, _, t_new = _prefill(s, B, I, I - P)
    elif not _rows(I, P):
        ops_full = ops_new = None
        t_full, t_new = _prefill_s(s, B, I, I), _prefill_s(s, B, I, I - P)
    else:  # stacked classes: the whole prompt and its uncached part in one roofline call
        ops_full = ops_new = None
        t = _prefill_s(s, B, np.concatenate([I, I]), np.concatenate([I, I - P]))
        t_full, t_new = t[:len(I)], t[len(I):]
    t_ld = load(P)
    mk_load = pipeline_makespan(t_ld, t_new, L)
    # balance point of a linearised split: stretch·load(x) = compute(I - x)
    st_ld = t_ld if type(stretch) is float and stretch == 1.0 else stretch * t_ld  # 1.0·t is t
    x = xp.where(P > 0, t_full * P / xp.maximum(st_ld + t_full - t_new, 1e-30), 0.0)
    x = xp.floor(xp.minimum(xp.maximum(x, 0.0), P))
    if s.model.has_recurrent_state:  # a split needs a state at x: known only at P's end
        x = 0.0 * x
    if breakdown:
        ops_x, _, t_x = _prefill(s, B, I, I - x)
    else:
        ops_x, t_x = None, _prefill_s(s, B, I, I - x)
    t_lx = load(x)
    mk_split = pipeline_makespan(t_lx, t_x, L)
    cands = {"recompute": (t_full, 0.0, ops_full, t_full, 0.0), "load": (mk_load, P, ops_new, t_new, t_ld),
             "split": (mk_split, x, ops_x, t_x, t_lx)}
    lat, tok, ops, comp, t_load, pick = _picked(cands, policy, breakdown)
    # keep the prefix's shape under every policy
    zero = 0.0 * P
    lat, tok, t_load = lat + zero, tok + zero, t_load + zero
    each = {k: (c[1] + zero, c[0] + zero, c[3], c[4] + zero) for k, c in cands.items()}
    return dict(ops=ops if breakdown else None, lat=lat, tok=tok, comp=comp, t_load=t_load,
                each=each, pick=pick)
