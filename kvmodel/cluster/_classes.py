"""Request-level hit classes for the cluster's instances (miss, or a hit in one cache level).

The cluster's reuse model gives ``hits[k]``: the share of block accesses served by level k
(HBM, DRAM, CXL, SSD, pool, peer), H = Σ hits[k]. The instance queue needs a request-level
split instead: which requests hit, and how long a hit is. Approximation used here:

* from the trace (once per workload, :func:`leading_reuse`): the share ``r`` of requests whose
  prompt starts with blocks an earlier request already used, and the mean length ``L`` of that
  reusable leading run (tokens, at most ``I - 1``) -- the hit an infinite cache would give;
* a request with such a run finds **all of it or none of it** cached: it hits with probability
  ``p = min(H·I / L, r)`` (so that the mean cached tokens stay H·I, the cluster's mean), with
  length L; a hit comes from level k with probability ``hits[k]·I / L`` and loads its L tokens
  from there;
* past that cap (H·I > r·L: the reuse model's H above the infinite-cache bound) every hit
  request's run is extended equally by the remaining tokens (at most to ``I - 1``), loaded
  from the levels that hold them (a class's tier is then a mix).

**Monotone by construction.** The levels' cached tokens (``hits[k]·I`` per request, levels in
``hits`` order, fastest first) fill a fixed sequence of token slots: the hit rows first
(request by request, ``L`` tokens each, ``r`` of the requests), then the extension (token by
token across all rows). More cache of any level raises every cumulative share H_<=k (one LRU
stack), so each slot is then held by the same or a faster level, or newly held: every request
holds at least as many tokens in the k fastest levels, for every k
(``tests/cluster/test_hit_class_monotone.py`` checks it with hypothesis and over DRAM x SSD
sweeps). A request's TTFT is then never longer as long as loading a token from a faster level
is no slower, and loading it no slower than computing it. (The instance model's queue still
has its own non-monotone steps, named in that test.)

What it leaves out: partial hits (a run cut by an eviction) and the correlation between a
request's run length and the level it hits (long shared prefixes are the hot ones, kept in the
fastest level). The classes go to ``estimate(prefix_classes=...)``
(:mod:`kvmodel.instance._mixture`).

**Prompt lengths.** The trace's prompts are split into quantile bands (:func:`trace_bands`,
finer in the tail: at light load p99 TTFT is the prefill of about the p99 prompt, and the mean
is above the mean prompt's because prefill is convex in length), each a class of its band's
mean prompt ``L_b``; every hit class is crossed with every band (:func:`with_lengths`), a hit
covering the same share of each band's prompt, ``L'·L_b/I`` tokens (so the mean cached tokens
stay H·I). Approximation: hit and prompt length are independent (in a conversation trace long
prompts are later turns, whose reusable share may be larger). Each band also carries its
requests' mean output (:func:`trace_bands` with ``output_len``), scaled to the instance's
``output_len`` (Σ π·O_k = O): in the Mooncake conversation trace longer prompts have longer
outputs (bundled trace, bands 0-75-95-99-100 %: 334 / 360 / 416 / 364 tokens, mean 343), so
the long classes hold their KV slots longer (the occupancy's size bias w1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.workload._trace_types import Trace

__all__ = ["leading_reuse", "hit_classes", "trace_bands", "with_lengths", "CLUSTER_BANDS",
           "whole_prefix_share", "reuse_grid", "floor_to_grid"]

CLUSTER_BANDS = (0.0, 0.75, 0.95, 0.99, 1.0)
"""Quantile bands of the trace's prompt lengths (4 classes, the top one the longest 1 %: with a
miss and up to three hit levels the instance sees at most 16 classes). On the Mooncake
conversation trace (``benchmarks/cluster_vs_sim.py``) these give the same agreement as 6 bands
(0, .5, .8, .9, .95, .99, 1); 3 bands (0, .8, .97, 1) lose 10-25 points of p99."""


def _leading_runs(tr: Trace) -> tuple[np.ndarray, np.ndarray]:
    """(each request's leading run of blocks an earlier request already used, in blocks; the
    request that first used the block at each position of the trace's block list)."""
    n, ids, off = len(tr), tr.block_ids, tr.block_offsets
    lens = np.diff(off)
    req = np.repeat(np.arange(n), lens)
    first = np.full(int(ids.max()) + 1 if ids.min() >= 0 else 0, n, dtype=np.int64)
    if len(first) == 0 or len(first) > 4 * len(ids) + 1024:  # sparse ids: via unique
        _, inv = np.unique(ids, return_inverse=True)
        first = np.full(inv.max() + 1, n, dtype=np.int64)
        np.minimum.at(first, inv, req)
        owner = first[inv]
    else:
        np.minimum.at(first, ids, req)
        owner = first[ids]
    pos = np.arange(len(ids)) - np.repeat(off[:-1], lens)
    big = np.iinfo(np.int64).max
    stop = np.where(owner < req, big, pos)
    has = lens > 0
    lead = np.zeros(n, dtype=np.int64)
    lead[has] = np.minimum.reduceat(stop, off[:-1][has])
    return np.where(lead == big, lens, lead), owner


def leading_reuse(tr: Trace) -> tuple[float, float]:
    """(share of requests with a reusable leading run, its mean length in tokens given one)."""
    if len(tr) == 0 or len(tr.block_ids) == 0:
        return 0.0, 0.0
    lead = _leading_runs(tr)[0]
    x = np.minimum(lead * tr.block_tokens, np.maximum(tr.input_len - 1, 0)).astype(float)
    share = float(np.mean(x > 0))
    return share, float(x[x > 0].mean()) if share > 0 else 0.0


def whole_prefix_share(tr: Trace) -> float:
    """Share of the reusable leading runs that cover every full block of the prompt of the
    request that introduced the run's last block: a later turn of a conversation, reusable up
    to that prompt's end where engines keep a state snapshot (vLLM ``align``: its last block
    boundary; SGLang and TensorRT-LLM: its end). The other runs end inside an earlier prompt
    (a shared system prompt), where only the snapshots inside a prefill remain. 0 without
    reuse."""
    if len(tr) == 0 or len(tr.block_ids) == 0:
        return 0.0
    lead, owner = _leading_runs(tr)
    x = np.minimum(lead * tr.block_tokens, np.maximum(tr.input_len - 1, 0))
    hit = np.flatnonzero(x > 0)
    if len(hit) == 0:
        return 0.0
    j = owner[tr.block_offsets[hit] + lead[hit] - 1]
    full = np.floor(np.asarray(tr.input_len, dtype=float)[j] / tr.block_tokens)
    return float(np.mean(lead[hit] >= full))


def reuse_grid(mode: str, block: float, interval: float | None, share: float):
    """Reuse grid of a hybrid model's prefix cache (:func:`floor_to_grid`) in snapshot mode
    ``mode`` (:data:`kvmodel.catalog.models.SNAPSHOT_MODES`): ``block`` every ``block``
    tokens (the engine's hybrid block, or the trace's); ``align``, ``interval`` and ``node``
    a mix: the ``share`` of runs that reach an earlier prompt's end (:func:`whole_prefix_share`)
    on ``block``, the rest on the prefill snapshot ``interval`` (``align``: floored to whole
    blocks; None: ``block``); ``none`` nothing reusable."""
    if mode == "block":
        return float(block)
    if mode == "none":
        return ((1.0, math.inf),)
    part = float(block) if interval is None else float(interval)
    if mode == "align":
        part = max(math.floor(part / block), 1) * float(block)
    return ((share, float(block)), (1.0 - share, part))


def floor_to_grid(x, grid):
    """Cached tokens ``x`` a hybrid model can reuse: floored to ``grid`` (tokens), or for a mix
    ``((share, grid), ...)`` the share-weighted mean of the floors, in whole tokens (an
    infinite grid: nothing); ``x`` itself for None (attention-only models)."""
    if grid is None:
        return x
    if not isinstance(grid, tuple):
        return xp.floor(x / grid) * grid
    return xp.floor(sum(p * (0.0 * x if math.isinf(g) else xp.floor(x / g) * g)
                        for p, g in grid))


def hit_classes(hits: dict[str, Any], tiers: dict, I: float, reuse: tuple[float, float]):
    """``prefix_classes`` for :func:`kvmodel.estimate` from the cluster's per-level block hit
    shares (arrays broadcast; levels in ``hits`` order, fastest first); None where nothing
    hits anywhere. Construction (module docstring, "Monotone by construction"): the levels'
    cached tokens fill the hit rows (``r`` of the requests, ``L`` tokens each) in level order,
    the rest extends every row equally."""
    kept = {t: xp.where(f > 1e-12, f, 0.0) for t, f in hits.items()}
    H = sum(kept.values())
    if not xp.any_true(H > 0):
        return None
    r, L = reuse
    if L <= 0:  # no reuse seen in the trace: every hit is a whole prompt's prefix
        r, L = 1.0, I - 1.0
    L = min(L, I - 1.0)
    rows, top = r * L, r * (I - 1.0)  # tokens the rows hold; the most a request can hold
    cum, rows_k, ext_k = 0.0, {}, {}
    for t, f in kept.items():
        nxt = xp.minimum(cum + f * I, top)
        rows_k[t] = xp.minimum(nxt, rows) - xp.minimum(cum, rows)
        ext_k[t] = xp.maximum(nxt, rows) - xp.maximum(cum, rows)
        cum = nxt
    ext = sum(ext_k.values()) / r  # extension tokens of every hit request
    Lh = xp.floor(L + ext)
    out = [(1.0 - xp.minimum(cum, rows) / L, 0, "hbm")]
    mixed = xp.any_true(ext > 0)
    safe = xp.where(L + ext > 0, L + ext, 1.0)
    for t in kept:
        if not xp.any_true(rows_k[t] > 0):
            continue
        tier = tiers[t] if not mixed else [(tiers[t], L / safe)] + [
            (tiers[u], e / r / safe) for u, e in ext_k.items() if xp.any_true(e > 0)]
        out.append((rows_k[t] / L, Lh, tier))
    return out


def trace_bands(input_len: np.ndarray, bands=CLUSTER_BANDS, output_len=None) -> list[tuple]:
    """``[(share of requests, mean prompt tokens), ...]`` of the empirical quantile bands of
    ``input_len`` (empty bands dropped; shares sum to 1, the means average to the trace's).
    With the trace's ``output_len`` (per request, as ``input_len``) each band also carries
    its requests' mean output, ``(share, mean prompt, mean output)`` (the outputs average to
    the trace's). An empty trace: one band of one token (and one output token)."""
    x = np.asarray(input_len, dtype=float)
    order = np.argsort(x, kind="stable")
    x = x[order]
    if len(x) == 0:
        return [(1.0, 1.0)] if output_len is None else [(1.0, 1.0, 1.0)]
    y = None
    if output_len is not None:
        y = np.asarray(output_len, dtype=float)
        if y.shape != x.shape:
            raise ValueError(f"trace_bands output_len: expected one output length per prompt "
                             f"({x.shape[0]}), got shape {y.shape}")
        y = y[order]
    edges = np.unique(np.round(np.asarray(bands) * len(x)).astype(int))
    cuts = [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    if y is None:
        return [(float((hi - lo) / len(x)), float(x[lo:hi].mean())) for lo, hi in cuts]
    return [(float((hi - lo) / len(x)), float(x[lo:hi].mean()), float(y[lo:hi].mean()))
            for lo, hi in cuts]


def with_lengths(classes: list, bands: list, I: float, grid: float | None = None,
                 O: float | None = None) -> list:
    """Each (probability, cached tokens, tier) class crossed with each (share, prompt) band:
    ``(π·share, floor(cached·L_b/I), tier, L_b)`` (at most L_b − 1 cached tokens). ``grid``
    (hybrid models, ``kvmodel.cluster.snapshot_grid``): the cached tokens floored to it
    (:func:`floor_to_grid`), the longest prefix with a state snapshot (the rest is
    recomputed); None: unchanged (attention-only models reuse every cached token). Bands
    with a mean output (``(share, prompt, output)``, :func:`trace_bands`) give each class its
    band's output as a fifth element, scaled by ``O`` / (the bands' mean output) where ``O``
    is given (the instance's ``output_len``, which the classes' outputs must average to:
    ``Σ π·O_k = O``); None: as the bands give them."""
    out = []
    scaled = [(b[0], b[1], b[1] / I, max(np.ceil(b[1]) - 1.0, 0.0)) for b in bands]  # once
    outs = _band_outputs(bands, O)
    for p, n, tier in classes:
        for (share, L, f, most), o in zip(scaled, outs):
            cached = floor_to_grid(xp.minimum(xp.floor(n * f), most), grid)
            out.append((p * share, cached, tier, L) if o is None else
                       (p * share, cached, tier, L, o))
    return out


def _band_outputs(bands: list, O: float | None) -> list:
    """Each band's output length for :func:`with_lengths` (None: the band has none), scaled
    so that the bands' share-weighted mean is ``O`` (when given)."""
    outs = [float(b[2]) if len(b) > 2 else None for b in bands]
    if None in outs or len(set(outs)) < 2:  # one output (a trace without outputs): the mean's
        return [None] * len(bands)
    if O is None:
        return outs
    mean = sum(b[0] * o for b, o in zip(bands, outs))
    return [o * (float(O) / mean) for o in outs]
