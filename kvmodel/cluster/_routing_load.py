"""The load the load-aware routing closed forms of :func:`kvmodel.evaluate` see.

The routers ``least_loaded``, ``dynamo``, ``llmd``, ``sglang`` and ``mooncake`` are evaluated by
replaying their own rule over the trace against a fluid load
(:mod:`kvmodel.workload._routing_closed`). Here that load comes from the instance model at the
operating point, quantised so that evaluation stays a table look-up:

* the plain table (:func:`level_loads`): one vectorised :func:`kvmodel.estimate` of an
  instance (the trace's mean prompt and output, no cached prefix; disaggregated: a prefill
  instance, output 1) at ``level * saturation`` for each of
  :data:`~kvmodel.workload._routing_closed.LOAD_LEVELS` gives the mean residence
  ``R = e2e_s``, the mean TTFT and wait, the KV capacity and a prefill time per token;
* the router's table (:func:`router_levels`, one fixed-point step): the token hit ``h`` the
  router's replay of the plain table finds (three anchor levels, linear between), the
  saturation ``s_j`` of an instance whose prompts have ``h_j * I`` cached, and the levels
  rebuilt at ``LOAD_LEVELS[j] * s_j`` with that prefix; the trace is replayed at the cluster
  rate ``N * LOAD_LEVELS[j] * s_j``. A load quoted against a cache-aware saturation thus
  lands on the level of that utilisation, not on a plain one above it;
* a rate between two levels' rates blends their figures linearly (:func:`level_weights`,
  :func:`_blend`): hit ratio, imbalance and wait law are continuous in the rate, clamped to
  the first and last level outside.

Tables are built once per (catalog, instance, N) and per (trace, router, parameters), each
level's assignment once, then looked up (:class:`_Levels`: a scalar rate's level position and
imbalance memoised; each level's hit curve a row over the whole per-instance capacities,
:func:`curve_row`, at most the trace's distinct blocks + 1 floats, cut where it stops moving).

The imbalance :func:`kvmodel.evaluate` applies is the busiest instance's share of the routed
uncached prompt tokens (:func:`loaded_imbalance`), and the instance's wait law is the one
behind the router (:func:`routed_waits`, :mod:`kvmodel.cluster._routing_queue`: the level's
mix of load choice counts), computed with the inter-arrival SCV the router's replay gives each
instance (:func:`routed_arrival_scv`: the level's work dispersion ratio, blended like the
imbalance; round robin's exact Erlang-N SCV 1/N).

The levels' waiting span (``RouterLoad.waiting_s``, :func:`_admission_wait`) is the time a
request spends in the engine's waiting queue: the request overhead, the rest of the step in
progress (``Estimate.step_residual_s``: engines take new requests at step boundaries) and the
prefill carry and KV-slot waits. The router's levels estimate the instance with the uncached
prompt work its replay finds as two classes (:func:`level_classes` over
:func:`routed_work_classes`, the instance's ``prefix_classes``): the hits, which prefill a
short new turn after a long cached prefix, and the misses, which prefill the whole prompt,
each with its share and mean lengths. Hits and misses make the steps, hence the residual an
arrival waits for, more variable than one mean prompt would; a lognormal band of the same
uncached-work SCV (CV ~1.2 on a shared-prompt trace) puts long prompts where the replay has
none and overstated that residual (llm-d's replayed waiting queue +57 % against the
simulator's, -6 % with the two classes: tests/policies/test_routing_admission.py). The level
rates keep the saturation of the mean cached prefix (the classes' own is within 0.1 % there).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from kvmodel.catalog.hardware import current
from kvmodel.instance import estimate
from kvmodel.instance.seam import params as seam_params
from kvmodel.policies import ROUTING
from kvmodel.workload._routing_closed import (
    LOAD_LEVELS,
    LOADED_FORMS,
    RouterLoad,
    canonical_params,
    routed_hit_ratio_curve,
    routed_load_stats,
    routed_token_hit,
    routed_work_classes,
    routed_work_dispersion,
)

__all__ = ["is_loaded", "routing_params", "level_loads", "level_index", "loaded_curve",
           "loaded_imbalance", "params_text", "routed_waits", "routed_arrival_scv",
           "level_classes"]


def is_loaded(routing: str) -> bool:
    """True when ``routing``'s closed form depends on the load (its own replayed rule)."""
    return ROUTING[routing].closed_form in LOADED_FORMS


def routing_params(c: Any) -> dict:
    """Canonical parameters of the cluster's (named) routing policy: ``Cluster.routing_params``
    over the registry defaults, parameters that cannot change the choice dropped."""
    return canonical_params(c.routing, c.routing_params)


def params_text(c: Any) -> str:
    """``name=value`` list of the canonical routing parameters (for ``closed_forms``)."""
    return ",".join(f"{k}={v}" for k, v in sorted(routing_params(c).items()))


def _instance(c: Any, w: Any) -> tuple[tuple, dict]:
    """(hashable key, DP attention / EP / speculative ``estimate`` arguments) of the instance
    the level loads are computed for (mappings keyed as sorted items); the key ends with the
    share of the KV pool left to requests (:func:`_kv_share`)."""
    from kvmodel.cluster import parallel_kw  # the cluster package imports this module
    par = parallel_kw(c)
    disagg = bool(c.prefill_instances)
    return (c.model, c.gpu, c.tp, c.precision, c.framework, round(w.input_len),
            1 if disagg else round(w.output_len),
            tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
                         for k, v in par.items())), _kv_share(c)), par


def _kv_share(c: Any) -> float:
    """Share of an instance's KV pool its requests reserve from: what the cluster's HBM prefix
    cache (``hbm_cache_fraction`` of the pool, as :func:`kvmodel.cluster._caps` reserves it)
    leaves. An array of fractions (configurations evaluated at once, one router table for
    all) leaves its mean share."""
    return float(1.0 - np.mean(c.hbm_cache_fraction))


def level_loads(c: Any, w: Any, n: int) -> tuple[float, tuple[RouterLoad, ...]]:
    """(saturation rate of one instance without cache hits, the :class:`RouterLoad` of each
    load level against it): the plain table, the first step of :func:`router_levels`."""
    key, par = _instance(c, w)
    return current().cached("router_level_loads", key + (n,), lambda: _build(key + (n,), par))


def _kw(key: tuple, par: dict) -> tuple[str, str, dict]:
    model, gpu, tp, precision, framework, I, O = key[:7]
    return model, gpu, dict(tp=tp, precision=precision, input_len=I, output_len=O,
                            framework=framework, **par)


def _build(key: tuple, par: dict) -> tuple[float, tuple[RouterLoad, ...]]:
    model, gpu, kw = _kw(key, par)
    sat = float(estimate(model, gpu, request_rate=1e-6, **kw).saturation_request_rate_per_s)
    if not sat > 0:
        return sat, tuple(RouterLoad() for _ in LOAD_LEVELS)
    return sat, _loads(model, gpu, kw, key[-1], sat * np.asarray(LOAD_LEVELS), None, key[8])


def _loads(model: str, gpu: str, kw: dict, n: int, rate: np.ndarray,
           p_tok: float | None, share: float) -> tuple[RouterLoad, ...]:
    """The :class:`RouterLoad` of an instance (``estimate`` arguments ``kw``, a cached prefix
    among them or not) at each per-instance rate ``rate``, the cluster at ``n`` x it;
    ``p_tok`` the prefill time per token (None: TTFT / prompt at the first rate); ``share``
    of the KV pool left to requests beside the HBM prefix cache (``kv_capacity_tokens``)."""
    e = estimate(model, gpu, request_rate=rate, **kw)
    res, ttft = np.asarray(e.e2e_s, float), np.asarray(e.ttft_s, float)
    wait = _admission_wait(e)
    ok = np.isfinite(res) & np.isfinite(ttft) & np.asarray(e.stable, bool)
    for j in range(1, len(rate)):  # an unstable level keeps the last stable figures
        if not ok[j]:
            res[j], ttft[j], wait[j] = res[j - 1], ttft[j - 1], wait[j - 1]
    if p_tok is None:
        p_tok = float(ttft[0]) / max(kw["input_len"], 1) if ok[0] else 1e-4
    cap = share * float(np.max(e.kv_capacity_tokens))
    fin = lambda v: float(v) if np.isfinite(v) else 0.0  # noqa: E731
    return tuple(RouterLoad(rate_per_s=float(r * n), residence_s=fin(res[j]),
                            prefill_s=fin(ttft[j]), waiting_s=fin(wait[j]),
                            kv_capacity_tokens=cap, prefill_s_per_token=p_tok)
                 for j, r in enumerate(rate))


def _admission_wait(e: Any) -> np.ndarray:
    """Mean time a request spends in the engine's waiting queue (``RouterLoad.waiting_s``):
    the request overhead, the rest of the step running when it arrives (the engine takes new
    requests at step boundaries: ``step_residual_s``) and the open loop's queue waits (the
    prefill carry beyond the step budget and the KV-slot wait, ``queue_wait_s``). Not the
    prompt's own step nor its step mates: a request that joins the next step runs. This is
    what llm-d's queue scorer reads (``WaitingQueueSize``, gateway-api-inference-extension
    ``pkg/epp/scheduling/framework/plugins/scorer/queue.go`` @c729d43): vLLM's
    ``num_waiting_reqs = len(self.waiting)``, a request leaving ``waiting`` at the first step
    start with token budget, a free slot and KV blocks for it (vllm-project/vllm
    ``vllm/v1/core/scheduler.py`` @0574b89, ``schedule``); the simulator admits at step
    starts too. SGLang's cache_aware router counts requests in flight (``worker.load()``,
    sgl-project/sglang ``sgl-router/src/policies/cache_aware.rs`` @b6f2064): the residence."""
    return (np.asarray(e.queue_wait_s, float) + np.asarray(e.step_residual_s, float)
            + float(seam_params(None)["request_overhead"]))


def router_levels(c: Any, w: Any, n: int) -> tuple[np.ndarray | None, tuple[RouterLoad, ...]]:
    """(cluster request rate of each load level, strictly increasing, or None when the
    instance has no saturation rate; the :class:`RouterLoad` of each level) for the cluster's
    router: level j sits at ``LOAD_LEVELS[j]`` x the saturation of an instance whose prompts
    hit what the router's replay finds cached (:func:`_aware`). Memoised per trace profile,
    instance, router and its canonical parameters (:func:`_table`)."""
    tab = _table(c, w, n)
    return tab.rates, tab.loads


_LAST: list = [None]  # (cluster, its routing_params copied, workload, n, catalog, table)


def _table(c: Any, w: Any, n: int) -> "_Levels":
    """The router's :class:`_Levels`, memoised per trace profile, instance, router, its
    canonical parameters and catalog; for the cluster (its routing parameters unchanged),
    workload and catalog of the last call again (one evaluate asks several times) without
    deriving its key. Both are frozen and held here, so ``is`` cannot match a recycled id."""
    cat, last = current(), _LAST[0]
    if (last is not None and last[0] is c and last[2] is w and last[3] == n and last[4] is cat
            and last[1] == c.routing_params):
        return last[5]
    key, par = _instance(c, w)
    memo = ("router_levels", c.routing, params_text(c), n) + key
    got = w.profile._cache.get(memo)
    if got is None or got[0] is not cat:
        got = w.profile._cache[memo] = (cat, _Levels(c, w, n, key, par))
    _LAST[0] = (c, copy.copy(c.routing_params), w, n, cat, got[1])
    return got[1]


_MEMO = 4096  # scalar rates kept per table (a long rate sweep starts afresh)


class _Levels:
    """A router's load levels (:func:`_aware`: ``rates``, ``loads``) and what an evaluate reads
    from them, each derived once: a scalar rate's level position (:meth:`weights`) and
    imbalance (:func:`loaded_imbalance`), each level's replay statistics (:meth:`stats`) and
    hit-ratio row (:meth:`hits`)."""

    def __init__(self, c: Any, w: Any, n: int, key: tuple, par: dict):
        self.prof, self.n, self.routing = w.profile, n, c.routing
        self.params, self.work = routing_params(c), work_signal(c.routing)
        self.rates, self.loads = _aware(c, w, n, key, par)
        self._pos: dict = {}
        self._imb: dict = {}
        self._stats: dict = {}
        self._rows: dict = {}
        self._disp: dict = {}
        self._disp_at: dict = {}

    def weights(self, rate: Any) -> tuple[Any, Any]:
        """:func:`level_weights` of ``rate``; a float's memoised."""
        if type(rate) is not float:
            return self._weights(rate)
        got = self._pos.get(rate)
        if got is None:
            if len(self._pos) >= _MEMO:
                self._pos.clear()
            got = self._pos[rate] = self._weights(rate)
        return got

    def _weights(self, rate: Any) -> tuple[Any, Any]:
        r = np.asarray(rate, float)
        x = (np.zeros(r.shape) if self.rates is None
             else np.interp(r, self.rates, np.arange(len(self.rates))))
        j = np.minimum(np.floor(x), len(LOAD_LEVELS) - 2).astype(np.int64)
        t = x - j
        return (int(j), float(t)) if r.ndim == 0 else (j, t)

    def stats(self, k: int) -> tuple:
        """Level k's :func:`routed_load_stats` (choice mix, busiest work share x N)."""
        got = self._stats.get(k)
        if got is None:
            got = self._stats[k] = routed_load_stats(self.prof, self.n, self.routing,
                                                     self.params, self.loads[k])
        return got

    def hits(self, k: int, cap: np.ndarray) -> np.ndarray:
        """Level k's :func:`routed_hit_ratio_curve` at total capacities ``cap`` (blocks,
        whole numbers >= 0), looked up in its row (:func:`curve_row`)."""
        def curve(x):
            return routed_hit_ratio_curve(self.prof, x, self.n, self.routing,
                                          params=self.params, load=self.loads[k])
        if k not in self._rows:
            self._rows[k] = curve_row(curve, self.prof.unique_blocks, self.n)
        return row_hits(self._rows[k], cap, self.n, curve)

    def dispersion(self, k: int) -> float:
        """Level k's :func:`routed_work_dispersion` (at the level's utilisation)."""
        got = self._disp.get(k)
        if got is None:
            got = self._disp[k] = routed_work_dispersion(
                self.prof, self.n, self.routing, self.params, self.loads[k], LOAD_LEVELS[k])
        return got

    def imbalance(self, rate: Any) -> Any:
        """:func:`loaded_imbalance` at ``rate``; a float's memoised."""
        return self._rated(self._imb, rate, lambda k: _pooled(self.stats(k), self.work))

    def smoothing(self, rate: Any) -> Any:
        """The replay's work dispersion ratio at ``rate`` (:func:`routed_arrival_scv`); a
        float's memoised."""
        return self._rated(self._disp_at, rate, self.dispersion)

    def _rated(self, memo: dict, rate: Any, per_level) -> Any:
        """``per_level(k)`` blended linearly in ``rate`` between the levels around it; a
        float rate's value memoised in ``memo``."""
        if type(rate) is float and rate in memo:
            return memo[rate]
        j, t = self.weights(rate)
        out = _blend(j, t, j.shape if isinstance(j, np.ndarray) else (),
                     lambda k, m: per_level(k))
        if type(rate) is float:
            if len(memo) >= _MEMO:
                memo.clear()
            memo[rate] = out
        return out


# levels whose plain replay gives the hit the cache-aware saturation counts; the others
# interpolate it (the hit moves slowly with the load; three replays instead of ten)
_ANCHORS = (0, len(LOAD_LEVELS) // 2, len(LOAD_LEVELS) - 1)


def _aware(c: Any, w: Any, n: int, key: tuple, par: dict) -> tuple:
    """One fixed-point step: the token hit ``h`` of the plain level's replay (at the anchor
    levels, linear in the level between), the saturation ``s_j`` of an instance with the
    prefix ``h_j·I`` cached, and the levels rebuilt at ``LOAD_LEVELS[j]·s_j`` with that prefix
    (the rate kept strictly increasing)."""
    sat, plain = level_loads(c, w, n)
    if not sat > 0:
        return None, plain
    lv = np.asarray(LOAD_LEVELS)
    h = np.interp(lv, lv[list(_ANCHORS)], [routed_token_hit(
        w.profile, n, c.routing, routing_params(c), plain[j]) for j in _ANCHORS])
    model, gpu, kw = _kw(key, par)
    kw["cached_prefix_len"] = np.maximum(np.floor(np.minimum(h * key[5], key[5] - 1)), 0.0)
    s = np.asarray(estimate(model, gpu, request_rate=1e-6, **kw).saturation_request_rate_per_s,
                   float)
    rate = np.maximum.accumulate(lv * np.where(np.isfinite(s) & (s > sat), s, sat))
    rate = rate * (1.0 + 1e-9 * np.arange(len(rate)))
    del kw["cached_prefix_len"]
    kw["prefix_classes"] = level_classes(
        [routed_work_classes(w.profile, n, c.routing, routing_params(c), plain[j])
         for j in _ANCHORS], [LOAD_LEVELS[j] for j in _ANCHORS])
    return n * rate, _loads(model, gpu, kw, n, rate, plain[0].prefill_s_per_token, key[8])


def level_classes(anchors: list, at: list, tier: str = "hbm") -> list[tuple]:
    """``prefix_classes`` (arrays over :data:`LOAD_LEVELS`) of the replay's hit / miss work
    classes (:func:`routed_work_classes` at the levels ``at``, ``anchors[a]`` the classes
    there): each class's share and its share-weighted prompt and uncached tokens linear in the
    level between the anchors (so the shares still sum to 1 and the mean uncached work is the
    one the interpolated token hit gives), the class means their ratios (a class no level
    holds keeps its anchors' means). The hit class caches ``floor(I_k − u_k)`` tokens of its
    mean prompt ``I_k`` in ``tier``; the miss class none. A two-point mix, not a band: the
    hits prefill their short new turns after a long cached prefix, the misses whole prompts."""
    lv, x = np.asarray(LOAD_LEVELS), np.asarray(at, float)
    st = np.asarray(anchors, float)  # (anchor, class, (share, prompt, uncached))
    out = []
    for k in range(st.shape[1]):
        pi, (pI, pu) = np.interp(lv, x, st[:, k, 0]), (
            np.interp(lv, x, st[:, k, 0] * st[:, k, f]) for f in (1, 2))
        on = pi > 0
        mean = lambda f, tot: np.where(on, tot / np.where(on, pi, 1.0),  # noqa: E731
                                       np.interp(lv, x, st[:, k, f]))
        I_k, u_k = mean(1, pI), mean(2, pu)
        P_k = np.maximum(np.floor(I_k - u_k), 0.0) if k == 0 else 0
        out.append((pi, P_k, tier, np.maximum(I_k, 1.0)))
    return out


_FAR = float(2 ** 40)  # blocks per instance: where a row's flat end is checked


def curve_row(curve, unique_blocks: int, n: int) -> np.ndarray | None:
    """A hit-ratio curve of ``n`` instances (``curve``: total capacities -> hit ratios, a
    function of ``floor(C / n)`` alone, non-decreasing) at every whole per-instance capacity
    up to the trace's ``unique_blocks`` (an instance holding every distinct block hits all it
    ever can), cut after its last change; None when the curve still moves beyond it (checked
    at ``_FAR`` blocks per instance)."""
    row = curve(n * np.arange(unique_blocks + 1, dtype=np.float64))
    if curve(np.array([n * _FAR]))[0] != row[-1]:
        return None
    moved = np.flatnonzero(row != row[-1])
    return row[:moved[-1] + 2] if moved.size else row[:1]


def row_hits(row: np.ndarray | None, cap: np.ndarray, n: int, curve) -> np.ndarray:
    """``curve(cap)`` at total capacities ``cap`` (whole blocks >= 0) read from its
    :func:`curve_row` (the same values); the curve itself without a row, beyond the checked
    end or for a capacity it rejects."""
    if row is not None and cap.ndim == 1 and cap.size <= 8:  # a few numbers: in Python
        per = [math.floor(x / n) if x / n <= _FAR else None for x in cap.tolist()]
        if None not in per:  # (x / n is numpy's float division; NaN and inf fail the test)
            top = len(row) - 1
            return row[[k if k < top else top for k in per]]
    per = np.floor(cap / n)
    if row is None or not (per <= _FAR).all():  # NaN and inf fail too
        return curve(cap)
    return row[np.minimum(per, len(row) - 1).astype(np.int64)]


def level_weights(c: Any, w: Any, n: int, rate: Any) -> tuple[Any, Any]:
    """(level j, weight t of level j + 1): the workload's ``rate`` lies ``t`` of the way from
    level j's cluster rate to level j + 1's (:func:`router_levels`; clamped to the first and
    the last level); ints and floats, or arrays shaped like an array ``rate``."""
    return _table(c, w, n).weights(rate)


def level_index(c: Any, w: Any, n: int, rate: Any) -> Any:
    """Index of the load level nearest to ``rate`` in :func:`level_weights`' position (int,
    or an int array shaped like an array ``rate``)."""
    j, t = level_weights(c, w, n, rate)
    idx = np.asarray(j) + (np.asarray(t) >= 0.5)
    return int(idx) if idx.ndim == 0 else idx


def _blend(j: Any, t: Any, shape: tuple, fn, lead: tuple = ()) -> Any:
    """``(1 − t)·fn(j, mask) + t·fn(j + 1, mask)`` for level positions (j, t) broadcast to
    ``shape`` (scalars: ``fn(j, None)``, a tuple of numbers blended element by element; a
    level whose weight is 0 is not evaluated); ``fn(level, mask)`` gives the level's values
    at the elements ``mask`` selects, after ``lead`` leading axes of its own."""
    if not isinstance(j, np.ndarray) and not shape:
        if t <= 0.0 or t >= 1.0:  # one level (an infinite figure times 0 is not 0)
            return fn(j + (t >= 1.0), None)
        lo, hi = fn(j, None), fn(j + 1, None)
        if type(lo) is tuple:
            return tuple([(1.0 - t) * a + t * b for a, b in zip(lo, hi)])
        return (1.0 - t) * lo + t * hi
    jb, tb = np.broadcast_to(j, shape), np.broadcast_to(t, shape)
    out = np.zeros(lead + shape)
    for k in np.unique(np.concatenate([np.ravel(j), np.ravel(j) + 1])):
        wk = np.where(jb == k, 1.0 - tb, 0.0) + np.where(jb + 1 == k, tb, 0.0)
        m = wk > 0
        if np.any(m):
            out[(Ellipsis, m)] += wk[m] * fn(int(k), m)
    return out


def loaded_curve(c: Any, w: Any, cap: np.ndarray, n: int) -> np.ndarray:
    """Hit ratio at total capacities ``cap`` (levels along axis 0, then the configuration
    shape) at the workload's rate, linear in the rate between the two load levels around it
    (:func:`level_weights`); an array rate broadcasts against ``cap[0]``."""
    tab = _table(c, w, n)
    j, t = tab.weights(w.rate)
    if not isinstance(j, np.ndarray):
        return _blend(j, t, (), lambda k, _: tab.hits(k, cap))
    d = max(cap.ndim - 1, j.ndim)
    capx = cap.reshape(cap.shape[:1] + (1,) * (d - cap.ndim + 1) + cap.shape[1:])
    pad = (1,) * (d + 1 - j.ndim)
    shape = np.broadcast_shapes(capx.shape, pad + j.shape)
    capb = np.broadcast_to(capx, shape)
    return _blend(j.reshape(pad + j.shape), t.reshape(pad + t.shape), shape,
                  lambda k, m: tab.hits(k, capb[m]))


def work_signal(routing: str) -> bool:
    """Whether ``routing``'s rule steers by the instances' routed work (``load_signal``
    "work": dynamo, llm-d, sglang, mooncake), not by request counts."""
    return getattr(ROUTING[routing].sim, "load_signal", "count") == "work"


def _pooled(stats: tuple, work: bool) -> float:
    """The busiest instance's work share x N: the replay's, or for a rule that weighs the
    work left, what its requests with a choice leave of it (the share π_1 without one carries
    its imbalance; the others fill the less loaded instances up to the mean)."""
    mix, imb = stats
    return max(1.0, mix[0] * imb) if work else imb


def loaded_imbalance(c: Any, w: Any, n: int) -> Any:
    """Busiest instance's share of the routed uncached prompt tokens x N at the workload's
    rate (array for an array rate; linear in the rate between load levels): a load-aware
    rule sends more requests where they hit, so the prefill work, not the request count, is
    what loads its busiest instance. A rule whose load term weighs the work left (dynamo,
    mooncake) evens that work out with the requests it may send elsewhere (:func:`_pooled`;
    resource pooling of the flexible share)."""
    return _table(c, w, n).imbalance(w.rate)


def routed_arrival_scv(c: Any, w: Any, n: int) -> Any:
    """Inter-arrival SCV ``ca2`` an instance sees behind the router at the workload's rate
    (array for an array rate, linear in the rate between load levels): the replay's work
    dispersion ratio ``f`` (:func:`routed_work_dispersion`; the Kingman factor
    ``(ca2 + c_s²)/2`` of random splitting, ``(1 + c_s²)/2``, scaled by ``f``) read as
    ``ca2 = f·(1 + c_s²) − c_s²`` (c_s the prompt-length CV the instance takes), floored at
    0 (the instance's queue takes no less variable arrivals than deterministic ones).

    Round robin, exactly: each instance takes every N-th arrival of the cluster's Poisson
    stream, so its inter-arrival times are Erlang-N (the sum of N exponential gaps), SCV 1/N
    at every rate (no replay)."""
    if ROUTING[c.routing].closed_form == "round_robin":
        return np.full(np.shape(w.rate), 1.0 / n) if isinstance(w.rate, np.ndarray) else 1.0 / n
    f = _table(c, w, n).smoothing(w.rate)
    cs2 = w.length_cv ** 2
    return np.maximum(f * (1.0 + cs2) - cs2, 0.0) if isinstance(f, np.ndarray) \
        else max(f * (1.0 + cs2) - cs2, 0.0)


def routed_work_spread(c: Any, w: Any, n: int) -> Any:
    """Heavy-traffic wait factor of an instance fed by a rule that balances the work it has
    sent (sglang's smallest tree): near saturation a work queue's mean wait is its arrival
    work's index of dispersion over twice the spare capacity (Kingman; M/G/1: ``1 + c_s²``),
    so the instance's wait is the random split's times the replay's dispersion ratio ``f``
    (:func:`routed_work_dispersion`): the arrivals are the work itself, so ``f`` scales the
    whole factor rather than an independent arrival SCV beside ``c_s²``. The instance law
    already carries ``(ca2 + c_s²)/(1 + c_s²)`` with ca2 :func:`routed_arrival_scv`'s
    (floored at 0), so the factor on it is ``f·(1 + c_s²)/(ca2 + c_s²)``, at most 1."""
    f = _table(c, w, n).smoothing(w.rate)
    cs2 = w.length_cv ** 2
    ca2 = routed_arrival_scv(c, w, n)
    out = np.clip(f * (1.0 + cs2) / np.maximum(ca2 + cs2, 1e-12), 0.0, 1.0)
    return float(out) if np.ndim(out) == 0 else out


def _tree_law(c: Any, w: Any, n: int, mix: tuple) -> tuple | None:
    """(share of requests the smallest tree decides, :func:`routed_work_spread`) for sglang
    (the requests with all N choices: the replay's imbalanced branch, the fewest active, is
    not told apart; 0 of 12,031 requests took it in the simulator at 50 and 85 %), else None."""
    if c.routing != "sglang":
        return None
    return float(mix[-1]), routed_work_spread(c, w, n)


def routed_waits(c: Any, w: Any, n: int, m: dict, classes: list) -> dict:
    """The cluster's instance figures ``m`` with the wait law behind the router
    (:mod:`kvmodel.cluster._routing_queue`; each load level's mix of load choice counts,
    the laws blended linearly in the rate between the two levels around it)."""
    from kvmodel.cluster._routing_queue import routed_law, routed_percentiles, utilisation
    tab = _table(c, w, n)
    residual = None if tab.work else (1.0 + w.length_cv ** 2) / 2.0
    j, t = tab.weights(w.rate)
    rho, parts = utilisation(m), m.get("parts")
    scalar = not any(isinstance(v, np.ndarray) for v in (j, m["wait"], m["pwait"], rho,
                                                         *(parts or ())))
    if scalar and not math.isnan(m["pwait"]):  # numbers: each level's law as two floats
        W, p = float(m["wait"]), float(m["pwait"])  # (the values of the arrays' path below)
        u = float(rho)
        wait2, p2 = _blend(j, t, (), lambda k, _: tuple(
            float(v) for v in routed_law(tab.stats(k)[0], W, p, residual, u, parts,
                                         _tree_law(c, w, n, tab.stats(k)[0]))))
        return routed_percentiles(m, wait2, p2, classes, not tab.work)
    shape = np.broadcast_shapes(np.shape(m["wait"]), np.shape(m["pwait"]), np.shape(rho),
                                np.shape(j), *(np.shape(v) for v in parts or ()))
    W, p, U = (np.broadcast_to(v, shape) for v in (m["wait"], m["pwait"], rho))
    laid = None if parts is None else [np.broadcast_to(v, shape) for v in parts]
    spread = (None if _tree_law(c, w, n, (1.0,)) is None
              else np.broadcast_to(routed_work_spread(c, w, n), shape))

    def law(k: int, sel: Any) -> np.ndarray:
        pick = (lambda v: v) if sel is None else (lambda v: v[sel])
        tree = None if spread is None else (tab.stats(k)[0][-1], pick(spread))
        a, b = routed_law(tab.stats(k)[0], pick(W), pick(p), residual, pick(U),
                          None if laid is None else [pick(v) for v in laid], tree)
        return np.stack(np.broadcast_arrays(a, b))

    wait2, p2 = _blend(j, t, shape, law, (2,))
    if not shape:
        wait2, p2 = float(wait2), float(p2)
    return routed_percentiles(m, wait2, p2, classes, not tab.work)


def routed_slot_steer(c: Any, w: Any = None, n: int | None = None, cap: Any = None) -> Any:
    """Share of an instance's slow KV-slot occupancy swings its router takes back
    (:func:`kvmodel.instance._openloop.slot_moments`, ``steer``): the swings are requests held
    longer in a fuller pool, so they raise the instance's in-flight load; a rule that reads it
    (the load-aware closed forms, :func:`is_loaded`: fewest active requests, KV usage, queued
    work) sends the next arrivals elsewhere until the loads even out, 1; round robin and the
    random split read nothing of it, 0. Bounded prefix affinity reads the load for some of its
    requests only: those tied at their longest cached prefix (to the fewest active) and those
    whose eligible set the bound decided, the share
    :func:`kvmodel.cluster._routing_queue.bounded_steer_share` replays for the workload ``w``
    on ``n`` instances of ``cap`` cache blocks each (a number or an array; without ``w``: 0);
    the others follow their prefix whatever the load. Of what a rule reads, it takes back
    1 − 1/n on ``n`` instances (without ``n``: all): balancing moves an instance's swing onto
    the others, not the cluster's own, of which each instance keeps its 1/n share
    (:func:`kvmodel.instance._openloop.pooled_steer`, which also gives the share of a full
    pool's arrivals it can still send elsewhere, falling towards 0 as every pool fills)."""
    pooled = 1.0 - 1.0 / n if n else 1.0
    if is_loaded(c.routing):
        return pooled
    if ROUTING[c.routing].closed_form != "prefix_affinity_bounded" or w is None or not n:
        return 0.0
    from kvmodel.cluster._routing_queue import bounded_steer_share
    return bounded_steer_share(w.profile, n, c.epsilon, cap, c.eviction) * pooled
