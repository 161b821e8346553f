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
from kvmodel.instance._paths import held_steps

__all__ = ["contended", "choose", "fastest", "loads_over_path", "pick", "POLICIES", "held_slots",
           "slot_bound", "load_hold"]

_SECANT = 12  # secant steps of the slot-bound rate (:func:`_fixed_rate`), at most
_SECANT_TOL = 1e-13  # ... stopping once every residual is this share of its rate
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


def held_slots(pre: Any, rate: Any, step: Any, clients: Any) -> Any:
    """Mean KV slots that ``pre``'s loads hold at ``rate`` requests/s per replica, engine steps
    of ``step`` seconds (Little's law: rate x the hold of :func:`~kvmodel.instance._paths.held_steps`).
    A load spends its exposed time stretched by the path's delay (a closed loop of ``clients``,
    as the throughput-max's TTFT); a load that precedes the compute (an overlap depth of one
    layer) waits for the next step boundary."""
    if pre.none:
        return 0.0 * rate
    load = pre.exposed_with(pre.path.read_delay(rate, clients))
    return rate * step * held_steps(load, step, pre.depth <= 1.0)


def load_hold(pre: Any, rate: Any, step: Any) -> Any:
    """Mean seconds a prefix load holds its request's KV slot in an open loop at ``rate``
    requests/s per replica, steps of ``step`` seconds: :func:`~kvmodel.instance._paths.held_steps`
    of its exposed time stretched by the path's open-loop delay (none where a segment is over
    capacity: that loop is unstable on the path and says so); a mixture of hit classes, the
    mean over its classes (each with its share of the delay)."""
    if pre.none:
        return 0.0 * rate
    seg, _ = pre.path.over(rate)
    delay = pre.path.read_delay(xp.where(seg == 0, rate, 0.0), None)
    if not hasattr(pre, "parts"):
        return step * held_steps(pre.exposed_with(delay), step, pre.depth <= 1.0)
    live = [(pi, e, p.times()[2] <= 1.0)
            for pi, p, e in zip(pre.probs, pre.parts, pre.exposed_all(delay)) if not p.none]
    if live and not xp.is_array(step, *[e for _, e, _ in live]):  # every class at once
        steps = held_steps(np.array([e for _, e, _ in live]), step,
                           np.array([w for _, _, w in live])).tolist()
    else:
        steps = [held_steps(e, step, w) for _, e, w in live]
    out = 0.0 * rate
    for (pi, _, _), n in zip(live, steps):
        out = out + pi * step * n
    return out


def slot_bound(serve: Callable[[Any, bool], dict], held: Callable[[Any, Any], Any], bmax: Any,
               per_request: Any, breakdown: bool) -> dict:
    """Throughput-max when prefix loads hold KV slots: the engine computes in the slots the
    loads leave, ``b = bmax − held(X, step)``, and serves ``X`` requests/s there (Little's law
    on the slots; the vLLM scheduler allocates a request's blocks before its connector load
    starts and keeps them while it runs). ``serve(b, breakdown)``: the throughput-max result with
    ``b`` slots (``tok``: tokens/s, ``per_request`` tokens/s per request/s; ``tpot``: the step;
    ``breakdown`` None: those two alone);
    ``held(X, step)``: the slots the loads hold at ``X``. The fixed point lies between the rate
    with every slot computing (``x0``) and the rate in the slots that ``x0``'s loads leave
    (``x1``); between them ``1/X`` is taken linear in ``1/b`` (a step of time affine in the
    batch: :func:`_engine_line`), and the rate solved in closed form (:func:`_fixed_rate`),
    then served at its slots."""
    first = serve(bmax, None)  # probes of the rate: no path delay, no ops
    x0, step = first["tok"] / per_request, first["tpot"]
    h0 = held(x0, step)
    b1 = _slots_left(bmax, h0)
    if not xp.any_true(b1 < bmax):  # nothing loads (or every load is free): all compute
        return serve(bmax, breakdown)
    x1 = serve(b1, None)["tok"] / per_request
    line = _engine_line(bmax, b1, x0, x1)
    return serve(_fixed_rate(line, lambda x: held(x, step), bmax, (x0, x1), h0), breakdown)


def _engine_line(bmax: Any, b1: Any, x0: Any, x1: Any) -> tuple:
    """(A, B) of the engine's rate in ``b`` slots, ``1/X = A + B/b``, through ``x0`` at
    ``bmax`` and ``x1`` at ``b1`` (flat, ``B = 0``, where ``b1 = bmax``)."""
    span = xp.where(b1 < bmax, 1.0 / b1 - 1.0 / bmax, 1.0)
    B = xp.where(b1 < bmax, (1.0 / x1 - 1.0 / x0) / span, 0.0)
    return 1.0 / x0 - B / bmax, B


def _fixed_rate(line: tuple, held: Callable[[Any], Any], bmax: Any, ends: tuple, h0: Any) -> Any:
    """Slots left at the rate ``X`` the engine serves in them, ``X = 1/(A + B/b)`` with
    ``b = bmax − held(X)``. Where the loads' hold is linear in the rate (``held = X·h``, an
    uncongested path) that is a quadratic in ``X`` (:func:`_line_root`), solved once; where the
    path's queue makes ``h`` grow with the rate, ``held`` is taken affine through its last two
    values (secant steps from the origin and ``x0``: superlinear), at most :data:`_SECANT` steps,
    fewer once every element's rate is within :data:`_SECANT_TOL` of the engine's in its slots
    (elements done stay put)."""
    x0, x1 = ends
    (xa, ha), (xb, hb) = (0.0 * x0, 0.0 * x0), (x0, _known(h0))
    b, done = bmax + 0.0 * x0, False
    for _ in range(_SECANT):
        gap = xb - xa
        with np.errstate(invalid="ignore"):  # an endless load (held inf): the rate in x1's slot
            s = xp.where(gap != 0, (hb - ha) / xp.where(gap != 0, gap, 1.0), 0.0)
            x = _line_root(line, bmax - hb + s * xb, s)
        x = xp.minimum(xp.maximum(xp.where(x == x, x, x1), xp.minimum(x0, x1)), x0)
        h = _known(held(x))
        b = xp.where(done, b, _slots_left(bmax, h))
        done = done | (abs(x - 1.0 / (line[0] + line[1] / b)) <= _SECANT_TOL * x)
        if not xp.any_true(~done if xp.is_array(done) else not done):
            break
        (xa, ha), (xb, hb) = (xb, hb), (x, h)
    return b


def _line_root(line: tuple, m: Any, s: Any) -> Any:
    """The rate ``X`` with ``1/X = A + B/b`` at ``b = m − s·X`` (``line = (A, B)``, ``A, B,
    s >= 0``): the smaller root of ``A·s·X² − (A·m + B + s)·X + m = 0``, in the form without
    cancellation (``X = m / (A·m + B)`` where ``s = 0``); where ``b`` comes out below one slot,
    the rate in one slot."""
    A, B = line
    p = A * m + B + s
    den = p + xp.maximum(p * p - 4.0 * A * s * m, 0.0) ** 0.5
    x = 2.0 * m / xp.where(den > 0, den, 1.0)
    return xp.where((den > 0) & (m - s * x >= 1.0), x, 1.0 / (A + B))


def _known(held: Any) -> Any:
    """``held`` where it is a number, 0 elsewhere (as :func:`_slots_left` takes it)."""
    return xp.where(held == held, held, 0.0)


def _slots_left(bmax: Any, held: Any) -> Any:
    """Slots left to compute beside ``held`` loading ones: at least one, at most ``bmax``; all
    of them where ``held`` is not a number (an element that serves nothing, 0 x an endless
    load: a hit class of a tier without capacity, which no request takes)."""
    return xp.minimum(xp.maximum(bmax - xp.where(held == held, held, 0.0), 1.0), bmax)
