"""The load the load-aware routing closed forms of :func:`kvmodel.evaluate` see.

The routers ``least_loaded``, ``dynamo``, ``llmd``, ``sglang`` and ``mooncake`` are evaluated by
replaying their own rule over the trace against a fluid load
(:mod:`kvmodel.workload._routing_closed`). Here that load comes from the instance model at the
operating point, quantised so that evaluation stays a table look-up:

* utilisation ``rho = request_rate / (N * saturation rate of one instance)`` is rounded to the
  nearest of :data:`~kvmodel.workload._routing_closed.LOAD_LEVELS` (0.05 ... 0.95; above 0.95
  the top level);
* at each level one vectorised :func:`kvmodel.estimate` of an instance (the trace's mean prompt
  and output, no cached prefix; disaggregated: a prefill instance, output 1) at
  ``level * saturation`` gives the mean residence ``R = e2e_s`` (its ``batch`` is Little's
  ``rate * R``), the mean TTFT, the KV capacity and a prefill time per token (TTFT / prompt at
  the lowest level); the trace is replayed at the cluster rate ``level * N * saturation``.

The levels are built once per (catalog, model, GPU, TP, precision, framework, trace lengths, N)
(one estimate call) and each (policy, params, N, level) assignment once per trace, so a
configuration costs one replay the first time (tens of ms to ~1 s for 10^4 requests) and a
look-up afterwards. A level's hit ratio and imbalance hold for every rate rounded to it: the
curves are piecewise constant in the request rate.

The imbalance :func:`kvmodel.evaluate` applies is the busiest instance's share of the routed
uncached prompt tokens (:func:`loaded_imbalance`), and the instance's wait law is the one
behind the router (:func:`routed_waits`, :mod:`kvmodel.cluster._routing_queue`: the level's
mix of load choice counts).
"""

from __future__ import annotations

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
)

__all__ = ["is_loaded", "routing_params", "level_loads", "level_index", "loaded_curve",
           "loaded_imbalance", "params_text", "routed_waits"]


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
    the level loads are computed for (mappings keyed as sorted items)."""
    from kvmodel.cluster import parallel_kw  # the cluster package imports this module
    par = parallel_kw(c)
    disagg = bool(c.prefill_instances)
    return (c.model, c.gpu, c.tp, c.precision, c.framework, round(w.input_len),
            1 if disagg else round(w.output_len),
            tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
                         for k, v in par.items()))), par


def level_loads(c: Any, w: Any, n: int) -> tuple[float, tuple[RouterLoad, ...]]:
    """(saturation rate of one instance, the :class:`RouterLoad` of each load level)."""
    key, par = _instance(c, w)
    return current().cached("router_level_loads", key + (n,), lambda: _build(key + (n,), par))


def _build(key: tuple, par: dict) -> tuple[float, tuple[RouterLoad, ...]]:
    model, gpu, tp, precision, framework, I, O, _, n = key
    kw = dict(tp=tp, precision=precision, input_len=I, output_len=O, framework=framework, **par)
    sat = float(estimate(model, gpu, request_rate=1e-6, **kw).saturation_request_rate_per_s)
    if not sat > 0:
        return sat, tuple(RouterLoad() for _ in LOAD_LEVELS)
    e = estimate(model, gpu, request_rate=sat * np.asarray(LOAD_LEVELS), **kw)
    res, ttft = np.asarray(e.e2e_s, float), np.asarray(e.ttft_s, float)
    wait = np.asarray(e.queue_wait_s, float) + float(seam_params(None)["request_overhead"])
    ok = np.isfinite(res) & np.isfinite(ttft) & np.asarray(e.stable, bool)
    for j in range(1, len(LOAD_LEVELS)):  # an unstable level keeps the last stable figures
        if not ok[j]:
            res[j], ttft[j], wait[j] = res[j - 1], ttft[j - 1], wait[j - 1]
    p = float(ttft[0]) / max(I, 1) if ok[0] else 1e-4
    cap = float(np.max(e.kv_capacity_tokens))
    return sat, tuple(RouterLoad(rate_per_s=float(lv * n * sat),
                                 residence_s=float(res[j]) if np.isfinite(res[j]) else 0.0,
                                 prefill_s=float(ttft[j]) if np.isfinite(ttft[j]) else 0.0,
                                 waiting_s=float(wait[j]) if np.isfinite(wait[j]) else 0.0,
                                 kv_capacity_tokens=cap, prefill_s_per_token=p)
                      for j, lv in enumerate(LOAD_LEVELS))


def level_index(c: Any, w: Any, n: int, rate: Any) -> Any:
    """Index into LOAD_LEVELS nearest to the utilisation at ``rate`` (int, or an int array
    shaped like an array ``rate``)."""
    sat, _ = level_loads(c, w, n)
    rho = np.asarray(rate, float) / (n * sat) if sat > 0 else np.zeros(np.shape(rate))
    idx = np.abs(rho[..., None] - np.asarray(LOAD_LEVELS)).argmin(-1)
    return int(idx) if idx.ndim == 0 else idx


def _one(c: Any, w: Any, n: int, j: int, cap: np.ndarray) -> np.ndarray:
    load = level_loads(c, w, n)[1][j]
    return routed_hit_ratio_curve(w.profile, cap, n, c.routing, params=routing_params(c),
                                  load=load)


def loaded_curve(c: Any, w: Any, cap: np.ndarray, n: int) -> np.ndarray:
    """Hit ratio at total capacities ``cap`` (levels along axis 0, then the configuration
    shape) at the workload's rate; an array rate broadcasts against ``cap[0]``."""
    idx = level_index(c, w, n, w.rate)
    if isinstance(idx, int):
        return _one(c, w, n, idx, cap)
    d = max(cap.ndim - 1, idx.ndim)
    capx = cap.reshape(cap.shape[:1] + (1,) * (d - cap.ndim + 1) + cap.shape[1:])
    idxx = idx.reshape((1,) * (d + 1 - idx.ndim) + idx.shape)
    shape = np.broadcast_shapes(capx.shape, idxx.shape)
    capb, idxb = np.broadcast_to(capx, shape), np.broadcast_to(idxx, shape)
    out = np.empty(shape)
    for j in np.unique(idx):
        m = idxb == j
        out[m] = _one(c, w, n, int(j), capb[m])
    return out


def _per_level(c: Any, w: Any, n: int, fn) -> tuple:
    """``(fn(RouterLoad) at the workload's load level, None)``, or for an array rate
    ``({level index: fn(its RouterLoad)}, level index array)``."""
    idx = level_index(c, w, n, w.rate)
    loads = level_loads(c, w, n)[1]
    if isinstance(idx, int):
        return fn(loads[idx]), None
    return {int(j): fn(loads[int(j)]) for j in np.unique(idx)}, idx


def _work_signal(routing: str) -> bool:
    return getattr(ROUTING[routing].sim, "load_signal", "count") == "work"


def _pooled(stats: tuple, work: bool) -> float:
    """The busiest instance's work share x N: the replay's, or for a rule that weighs the
    work left, what its requests with a choice leave of it (the share π_1 without one carries
    its imbalance; the others fill the less loaded instances up to the mean)."""
    mix, imb = stats
    return max(1.0, mix[0] * imb) if work else imb


def loaded_imbalance(c: Any, w: Any, n: int) -> Any:
    """Busiest instance's share of the routed uncached prompt tokens x N at the workload's
    rate (array for an array rate): a load-aware rule sends more requests where they hit, so
    the prefill work, not the request count, is what loads its busiest instance. A rule whose
    load term weighs the work left (dynamo, mooncake) evens that work out with the requests
    it may send elsewhere (:func:`_pooled`; resource pooling of the flexible share)."""
    params, work = routing_params(c), _work_signal(c.routing)
    table, idx = _per_level(c, w, n, lambda load: _pooled(routed_load_stats(
        w.profile, n, c.routing, params, load), work))
    if idx is None:
        return table
    return np.vectorize(table.get, otypes=[float])(idx)


def routed_waits(c: Any, w: Any, n: int, m: dict, classes: list) -> dict:
    """The cluster's instance figures ``m`` with the wait law behind the router
    (:mod:`kvmodel.cluster._routing_queue`; the choice mix of the workload's load level)."""
    from kvmodel.cluster._routing_queue import routed_law, routed_percentiles
    params = routing_params(c)
    residual = None if _work_signal(c.routing) else (1.0 + w.length_cv ** 2) / 2.0
    table, idx = _per_level(c, w, n, lambda load: routed_load_stats(
        w.profile, n, c.routing, params, load)[0])
    if idx is None:
        wait2, p2 = routed_law(table, m["wait"], m["pwait"], residual)
        return routed_percentiles(m, wait2, p2, classes)
    shape = np.broadcast_shapes(np.shape(m["wait"]), np.shape(idx))
    wait2, p2 = np.zeros(shape), np.zeros(shape)
    W, p = (np.broadcast_to(m[k], shape) for k in ("wait", "pwait"))
    for j, mix in table.items():
        sel = np.broadcast_to(idx == j, shape)
        wait2[sel], p2[sel] = routed_law(mix, W[sel], p[sel], residual)
    return routed_percentiles(m, wait2, p2, classes)
