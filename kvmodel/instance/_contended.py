"""The ``best`` prefix policy decided under the shared path's contention.

Alone on the path, ``best`` compares loading a cached prefix, recomputing it and splitting the
two on each load's uncontended time (:func:`kvmodel.instance._prefix.prefill_choice`). But the
loads and saves of all concurrent requests share the path's segments as processor-sharing
servers (:mod:`kvmodel.instance._paths`): the choice sets the path's utilisation, the
utilisation stretches the exposed load, and the exposed load decides the choice -- a fixed
point. It is solved by enumeration, not by iterating the discrete choice (which can cycle):
each candidate is served by the mode with its own contention (the mode's own fixed point of
request rate and path delay for the loads that candidate makes), and per element the lowest
mean TTFT among the stable candidates wins. The candidates:

* ``recompute`` (no loads; its saves still use the path), ``load`` (the whole prefix), and
  ``split`` at the uncontended balance ``x0`` (exactly ``prefix_policy="split"``);
* ``split`` at the contended balance ``x1``: ``f·load(x) = compute(I − x)`` with
  ``f = (t_load + delay) / t_load``, the stretch the split at ``x0`` sees (a segment over
  capacity: ``f`` huge, so ``x1`` near 0). The stretch grows with the tokens loaded, so
  ``x1 <= x* <= x0`` brackets the self-consistent balance ``x*``.

So ``best`` is never slower than load, recompute or split evaluated under the same contention,
and ties keep the uncontended choice (an idle path changes nothing). The throughput-max
reported beside it (``saturation_request_rate_per_s``) is the highest of the throughput-max
of recompute, load and split at ``x0`` (:func:`fastest`: the policy that serves the most),
whatever the mode and the offered rate: an instance free to choose can always serve that
much, and ``best`` picks a candidate stable at the offered rate, below it. The contended
split is left out of it (its balance depends on the offered rate). With ``batch="max"`` the
result (TTFT, TPOT, throughput) is the chosen candidate's at its own throughput-max. Hit
classes (:func:`kvmodel.instance._estimate._throughput_max_classes`) take each class's
saturation by the same rule.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from kvmodel.base import xp as xp

__all__ = ["contended", "choose", "fastest", "loads_over_path", "pick", "POLICIES"]

_HUGE_STRETCH = 1e6  # a segment over capacity: the contended split loads (almost) nothing
POLICIES = ("recompute", "load", "split")  # the uncontended candidates, in their tie order


def contended(pre: Any, policy: str, mode: str, per_replica: Any) -> bool:
    """Whether ``best`` must be decided under contention: a single prefix (not hit classes)
    loaded over a path, concurrent requests on it (open loop, throughput-max, or a closed loop
    of more than one client per replica; a static batch already loads all its prompts in one
    transfer and chooses on that)."""
    if mode == "batch" or not hasattr(pre, "P") or not loads_over_path(pre, policy):
        return False  # hit classes (a PrefixMix), a prefix in HBM, a static batch
    return mode != "concurrency" or xp.any_true(per_replica > 1.0)


def loads_over_path(pre: Any, policy: str) -> bool:
    """Whether ``best`` chooses among :data:`POLICIES` for a prefix (or mixture) that loads
    over a path: then its saturation is :func:`fastest` of theirs."""
    if policy != "best" or pre.none:
        return False
    reads = getattr(pre, "reads", None)  # a prefix's path parts: a path exactly where it has any
    if reads is not None:
        return bool(reads)
    return pre.path is not None and not pre.path.empty


def fastest(sats: list) -> dict:
    """The saturation of ``best``: of the candidates' throughput-max results (dicts with
    ``tok``; :data:`POLICIES` in order), element by element the one that serves the most,
    ties to the first."""
    top, most = 0, sats[0]["tok"]
    for k, sat in enumerate(sats[1:], start=1):
        more = sat["tok"] > most
        top, most = xp.where(more, k, top), xp.where(more, sat["tok"], most)
    return pick(top, sats)


def choose(pre: Any, build: Callable[..., Any], serve: Callable[[Any], tuple], mode: str,
           N: Any, O: Any) -> tuple[dict, dict, Any]:
    """(result, throughput-max, loaded tokens) of ``best`` under contention.

    ``build(policy, stretch=1.0)`` makes the prefix of a policy, ``serve(prefix)`` returns the
    mode's (result, throughput-max); ``pre`` is the uncontended ``best`` prefix."""
    cands = [build(p) for p in POLICIES]
    runs = [serve(c) for c in cands]
    refined = build("split", _stretch(cands[2], runs[2][0]))
    same = not xp.any_true(refined.loaded != cands[2].loaded)  # an idle path: x1 = x0
    cands.append(refined)
    runs.append(runs[2] if same else serve(refined))
    scores = [_score(res, sat, mode, N, O) for res, sat in runs]
    # the uncontended choice first: recompute (nothing loaded), load (all), else split at x0
    idx = xp.where(pre.loaded <= 0, 0, xp.where(pre.loaded >= pre.P, 1, 2))
    best = pick(idx, scores)
    for k, sc in enumerate(scores):
        better = sc < best
        idx, best = xp.where(better, k, idx), xp.where(better, sc, best)
    res = pick(idx, [r for r, _ in runs])
    loaded = pick(idx, [c.loaded + 0.0 * c.P for c in cands])
    return res, fastest([sat for _, sat in runs[:len(POLICIES)]]), loaded


def _stretch(split: Any, res: dict):
    """Factor by which the path stretches the split candidate's load: (t_load + delay) / t_load,
    huge where a segment is over capacity (the open loop then reports no delay)."""
    d = res.get("path_delay", 0.0)
    f = xp.where(split.loaded > 0, 1.0 + d / xp.maximum(split.t_load, 1e-30), 1.0)
    over = False
    for u in res.get("path_util", {}).values():
        over = over | (u >= 1.0)
    f = xp.where(over | (f != f), _HUGE_STRETCH, f)
    return xp.minimum(f, _HUGE_STRETCH)


def _score(res: dict, sat: dict, mode: str, N: Any, O: Any):
    """Mean TTFT of a candidate; inf where it is unstable (open loop: its own queues or path,
    or the offered rate at or beyond its throughput-max) or not a number."""
    t = res["ttft"]
    ok = t == t
    if mode == "rate":
        ok = ok & res["stable"] & (N < sat["tok"] / O)
    return xp.where(ok, t, np.inf)


def pick(idx: Any, items: list) -> Any:
    """``items[idx]`` element by element; dicts key by key (labels, tuples: the first's)."""
    first = items[0]
    if isinstance(first, dict):
        return {k: pick(idx, [it[k] for it in items]) for k in first}
    if isinstance(first, (str, tuple)):
        return first
    out = first
    for k, it in enumerate(items[1:], start=1):
        out = xp.where(idx == k, it, out)
    return out
