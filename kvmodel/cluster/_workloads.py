"""Load modes of a cluster :class:`~kvmodel.cluster.Workload` beyond an open-loop request rate:
closed-loop clients, finite bursts, and closed multi-turn sessions (closed forms).

**Closed loop** (``Workload.concurrency=N``, ``think_time_s=Z``). N clients across the cluster,
each sending its next request Z seconds after its previous one completed. Each instance
(the busiest one under the routing's imbalance) serves ``n_c = N·imbalance/n`` clients.
``kvmodel.estimate(concurrency=k)`` gives the response time R(k) (E2E) of k clients that
never think, on a grid of integers k; R of a real k is interpolated linearly (R(k) = R(1)
below one client). With think time, only the clients not thinking are in the instance: the
interactive-response-time law gives their mean number a from the fixed point

    a = X·R(a),  X = n_c / (R(a) + Z)   ⇔   a·(1 + Z/R(a)) = n_c,

monotone in a (a/R(a), the throughput, grows with a), solved by bisection on [0, n_c]
(a = n_c/(1 + Z/R(1)) when below one client). The instance's latencies are the estimate at
a; the cluster's throughput is X = N / (R + Z) with R the cluster's E2E (network delays
included), so Little's law N = X·(R + Z) holds exactly. Approximation: the a in-service
clients are treated as a closed loop without think time (the mean-value / interactive law
of Denning-Buzen); network utilisations are taken at the loop's rate before the network's
own delay is added (slightly pessimistic).

**Burst** (``Workload.burst=N``): N prompts at t = 0, spread evenly over the n instances
(``q = N // n`` each, ``N mod n`` of them one more). On an instance with m prompts of mean
length I (P cached, ``new = I - P`` to compute), the prefill work drains in arrival order at
the step's token budget M (``max_num_tokens``): prompt k (1..m) completes in step
``s_k = ceil(k·new / M)``, so

    TTFT_k = request_overhead + load + (s_k - 1)·t_full + t(s_k),

with t_full the latency of a step of M prefill tokens (``step_ops``, chunks of mean context
P + new/2) and t(s) = t_full except for the wave's last step, which carries the remaining
``m·new - (S-1)·M`` tokens. The decode tokens in those steps are left out of the budget (k/M
of it; < 1 % below a few hundred prompts). Prompt k then decodes one token per step: its
``min(O-1, S - s_k)`` tokens during the remaining prefill steps, the rest in decode-only
steps of the m sequences at context I + O/2, giving its TPOT and finish time. More than B
prompts (B: the batch the KV cache admits) run in waves: prompt k waits for prompt k - B to
finish, ``TTFT_k = TTFT_{k-B} + dec_{k-B} + t_lone`` (its lone prefill), then decodes in
decode-only steps. Mean, p50/p90/p99 TTFT are the
statistics of these N values; the makespan is the last finish; the throughput N / makespan.
``load``: a lone request's exposed load of its cached prefix from the tier mix (loads of
the burst overlap earlier prompts' compute: an upper bound per prompt).

**Closed sessions** (``session_mode="closed"``): turn k of a session is sent think time after
turn k-1 completed. Its prefix is turn k-1's context; whether it is still cached depends on
how many other requests came in between. The cluster is evaluated once with the trace order,
then the trace is re-timed with that evaluation's mean E2E (rounded to a 2 % grid, so that
nearby configurations share the re-timed trace and its reuse profile, extracted once per
Workload and grid point; :func:`kvmodel.workload._sessions.closed_session_trace`) and
evaluated again: the reuse
profile of the re-timed order gives the hit ratio (a turn's context survives when
``think + e2e`` is shorter than the cache's residence time at that request rate).
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from kvmodel.catalog.hardware import get_framework, get_gpu
from kvmodel.catalog.models import get_model
from kvmodel.instance._estimate import Estimate, estimate
from kvmodel.instance._roofline import attn_pairs, step_ops
from kvmodel.instance.seam import (
    kv_per_seq,
    kv_precision_arg,
    parallelism,
    params,
    precision_arg,
    setup,
)
from kvmodel.workload._sessions import closed_session_trace

LOAD_MODES = ("rate", "concurrency", "burst")
SESSION_MODES = ("open", "closed")
MAX_CLIENTS = 10**7     # clients or burst prompts per cluster
_GRID = 48              # most client counts estimate() is evaluated at per instance

# ---- validation ------------------------------------------------------------------------------


def load_mode(w) -> str:
    """``"concurrency"``, ``"burst"`` or ``"rate"`` (open loop) for a Workload."""
    return "concurrency" if w.concurrency is not None else "burst" if w.burst is not None else "rate"


def _count(name: str, v: Any) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))
                          or not 1 <= v <= MAX_CLIENTS):
        raise ValueError(f"Workload.{name}={v!r}: must be None or an integer in "
                         f"[1, {MAX_CLIENTS:,}]")


def check_load(w) -> None:
    """The load-mode fields of a Workload: one mode, counts, think time, session mode."""
    _count("concurrency", w.concurrency)
    _count("burst", w.burst)
    given = [k for k in ("request_rate", "concurrency", "burst") if getattr(w, k) is not None]
    if len(given) > 1:
        raise ValueError(f"Workload: {' and '.join(given)} are both set; give exactly one of "
                         "request_rate (open loop), concurrency (closed loop) or burst")
    z = w.think_time_s
    if z is not None and (isinstance(z, bool) or not isinstance(z, (int, float))
                          or not 0 <= z < math.inf):
        raise ValueError(f"Workload.think_time_s={z!r}: must be None or a finite number >= 0 "
                         "(seconds)")
    if w.session_mode not in SESSION_MODES:
        raise ValueError(f"Workload.session_mode={w.session_mode!r}; allowed: {SESSION_MODES}")
    mode = load_mode(w)
    if z is not None and mode != "concurrency" and w.session_mode != "closed":
        raise ValueError(f"Workload.think_time_s={z!r}: applies to concurrency=N or "
                         "session_mode='closed' only (an open loop's arrivals are given)")
    if mode == "burst" and w.session_mode == "closed":
        raise ValueError("Workload.session_mode='closed' with burst: allowed session modes "
                         "for a burst: ('open',)")
    if w.session_mode == "closed" and w.trace.session is None:
        raise ValueError(f"Workload.session_mode='closed': trace {w.trace.name!r} has no "
                         "session ids; allowed: a trace with Trace.session (see "
                         "kvmodel.workload.traces.infer_sessions for traces with hashes)")


def check_load_keys(d: dict, where: str) -> None:
    """Check the load fields of a ``[workload]`` table (errors prefixed with ``where``)."""
    keys = ("request_rate", "concurrency", "burst", "think_time_s")
    ns = SimpleNamespace(**{k: d.get(k) for k in keys}, session_mode=d.get("session_mode", "open"),
                         trace=SimpleNamespace(session=(), name=""))  # trace: checked later
    try:
        check_load(ns)
    except ValueError as exc:
        msg = str(exc).replace('Workload: ', '').replace('Workload.', '')
        raise ValueError(f"{where}: {msg}") from None


# ---- closed loop -----------------------------------------------------------------------------
_FIELDS = ("ttft_s", "tpot_s", "e2e_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s",
           "tpot_p90_s", "tpot_p99_s", "e2e_p50_s", "e2e_p90_s", "e2e_p99_s", "queue_wait_s",
           "queue_wait_prob", "batch")


def _grid(n_c: float) -> np.ndarray:
    """Integer client counts 1..ceil(n_c): all of them up to _GRID, else geometric."""
    top = max(1, math.ceil(n_c - 1e-9))
    if top <= _GRID:
        return np.arange(1.0, top + 1.0)
    return np.unique(np.round(np.geomspace(1.0, top, _GRID)))


def active_clients(n_c: float, ks: np.ndarray, R: np.ndarray, Z: float) -> float:
    """Mean clients in service ``a`` with a·(1 + Z/R(a)) = n_c, R interpolated on ``ks``."""
    if Z <= 0.0:
        return n_c
    if n_c <= 1.0 + Z / R[0]:
        return float(n_c / (1.0 + Z / R[0]))
    lo, hi = 1.0, n_c
    for _ in range(60):
        a = 0.5 * (lo + hi)
        if a * (1.0 + Z / np.interp(a, ks, R)) < n_c:
            lo = a
        else:
            hi = a
    return float(0.5 * (lo + hi))


def _at(e: Estimate, ks: np.ndarray, a: float, O: float) -> Estimate:
    """The grid estimate ``e`` at a real client count ``a`` (fields interpolated)."""
    kw = {f: float(np.interp(a, ks, np.asarray(getattr(e, f), dtype=float))) for f in _FIELDS}
    kw["output_tok_per_s"] = a / kw["e2e_s"] * O if kw["e2e_s"] > 0 else 0.0
    j = int(min(np.searchsorted(ks, a), len(ks) - 1))
    pick = dict(feasible=bool(np.all(e.feasible)), stable=bool(np.all(e.stable)),
                reason=str(np.asarray(e.reason, dtype=object).flat[j]))
    return dataclasses.replace(e, **kw, **pick,
                               inputs={**e.inputs, "concurrency": a})


def closed_instances(c, w, pre: dict, imb: float, n: int, kw: dict):
    """({"instance": Estimate at the active clients}, cluster request rate, info)."""
    n_c = w.concurrency * imb / n
    Z = float(w.think_time_s or 0.0)
    exact = Z == 0.0 and n_c == round(n_c)  # one scalar estimate (~1 ms), no interpolation
    ks = np.array([n_c]) if exact else _grid(n_c)
    e = estimate(c.model, c.gpu, tp=c.tp, precision=c.precision, input_len=round(w.input_len),
                 output_len=round(w.output_len), concurrency=float(n_c) if exact else ks,
                 framework=c.framework, **pre, **kw)
    R = np.atleast_1d(np.asarray(e.e2e_s, dtype=float))
    a = n_c if exact or not np.all(np.isfinite(R)) else active_clients(n_c, ks, R, Z)
    est = e if exact else _at(e, ks, a, w.output_len)
    rate = w.concurrency / (est.e2e_s + Z) if np.isfinite(est.e2e_s) else 0.0
    info = dict(clients_per_instance=n_c, active_clients_per_instance=a, think_time_s=Z)
    return {"instance": est}, rate, info


# ---- burst -----------------------------------------------------------------------------------
class _Steps:
    """Step latencies of one instance (``step_ops``, as the simulator times its steps)."""

    def __init__(self, c, kv: str):
        m, g, fw = get_model(c.model), get_gpu(c.gpu), get_framework(c.framework)
        prec = precision_arg("precision", c.precision)
        kvp = kv_precision_arg(kv, prec, fw)
        tp, pp, ep, _, _ = parallelism(m, c.tp, 1, 1, None)
        self.cal = params()
        self.s = setup(m, g, fw, tp, pp, ep, prec, kvp, self.cal)

    def prefill(self, tokens: float, P: float, new: float) -> float:
        """A step of ``tokens`` prefill tokens from prompts of ``new`` tokens after ``P``
        cached: pairs tokens·(P + (new+1)/2), chunk starts P (+ (new-M)/2 within long
        prompts)."""
        per = max(tokens / new, 1.0)
        start = per * P if new <= tokens else P + 0.5 * (new - tokens)
        return float(step_ops(self.s, tokens, per,
                              attn_pairs(self.s, tokens * (P + 0.5 * (new + 1.0)), P + new, new),
                              0.0, start, tokens)[2])

    def decode(self, D: float, ctx: float) -> float:
        kv = kv_per_seq(self.s.model, ctx, self.s.tp, self.s.kv_B)  # KV by layer kind
        return float(step_ops(self.s, D, D, 0.0, D * kv, D * kv, D)[2])


def burst_times(m: int, new: float, M: float, t_full: float, t_last: float, O: float,
                t_dec: float, head: float) -> tuple[np.ndarray, np.ndarray]:
    """(TTFT, decode seconds) of the m prompts of one wave on one instance (closed form of
    the module doc): prompt k completes in step ceil(k·new/M) of S; ``head`` is paid first."""
    k = np.arange(1, m + 1, dtype=float)
    s = np.ceil(k * new / M - 1e-9)
    S = s[-1]
    ttft = head + (s - 1.0) * t_full + np.where(s == S, t_last, t_full)
    over = np.minimum(O - 1.0, S - s)               # decode tokens during prefill steps
    last = np.where((over > 0) & (over == S - s), t_last - t_full, 0.0)
    dec = over * t_full + last + (O - 1.0 - over) * t_dec
    return ttft, dec


def _instance_burst(m: int, B: int, new: float, P: float, O: float, st: _Steps, head: float,
                    ctx: float, t_lone: float) -> tuple[np.ndarray, np.ndarray]:
    """TTFT and decode seconds of m prompts on one instance, in waves of at most B."""
    M = st.cal["max_num_tokens"]
    m1 = min(m, B)
    t_full = st.prefill(min(M, m1 * new), P, new)
    rem = m1 * new - (math.ceil(m1 * new / M - 1e-9) - 1) * M
    t_dec = st.decode(m1, ctx)
    ttft, dec = burst_times(m1, new, M, t_full, st.prefill(rem, P, new), O, t_dec, head)
    T, D = [ttft], [dec]
    for _ in range(1, math.ceil(m / m1)):  # later waves: admitted as the wave before ends
        T.append(T[-1] + D[-1] + t_lone)
        D.append(np.full(m1, (O - 1.0) * t_dec))
    return np.concatenate(T)[:m], np.concatenate(D)[:m]


def burst_instances(c, w, pre: dict, n: int, kw: dict, kv: str | None):
    """({"instance": Estimate with the burst's statistics}, N / makespan, info)."""
    N, I, O = w.burst, round(w.input_len), round(w.output_len)
    P = float(pre.get("cached_prefix_len", 0.0))
    q, r = divmod(N, n)
    per = max(q + (r > 0), 1)
    base = dict(tp=c.tp, precision=c.precision, input_len=I, output_len=O, framework=c.framework)
    e = estimate(c.model, c.gpu, batch=1, **base, **pre, **kw)
    hbm = estimate(c.model, c.gpu, batch=1, **base, cached_prefix_len=P, **kw)
    st = _Steps(c, kv)
    head = st.cal["request_overhead"] + max(float(e.ttft_s - hbm.ttft_s), 0.0)
    B = int(max(1, min(e.max_batch, st.cal["max_batch_size"])))
    args = (B, max(I - P, 1.0), P, O, st, head, I + O / 2.0,
            float(e.ttft_s) - st.cal["request_overhead"])
    parts = [_instance_burst(m, *args) for m in (q + 1, q) if m > 0]
    counts = [r, n - r][:len(parts)] if q > 0 else [r]
    ttft = np.concatenate([np.tile(p[0], k) for p, k in zip(parts, counts)])
    dec = np.concatenate([np.tile(p[1], k) for p, k in zip(parts, counts)])
    return _burst_estimate(e, ttft, dec, O, per), N / float(np.max(ttft + dec)), dict(
        burst=N, prompts_per_instance=per, makespan_s=float(np.max(ttft + dec)),
        batch_limit=B)


def _burst_estimate(e: Estimate, ttft: np.ndarray, dec: np.ndarray, O: float, per: int):
    tpot = dec / max(O - 1.0, 1.0)
    pct = {f"ttft_p{q}_s": float(np.percentile(ttft, q)) for q in (50, 90, 99)}
    pct.update({f"tpot_p{q}_s": float(np.percentile(tpot, q)) for q in (50, 90, 99)})
    pct.update({f"e2e_p{q}_s": float(np.percentile(ttft + dec, q)) for q in (50, 90, 99)})
    wait = float(np.mean(ttft) - np.min(ttft))
    return {"instance": dataclasses.replace(
        e, ttft_s=float(np.mean(ttft)), tpot_s=float(np.mean(tpot)),
        e2e_s=float(np.mean(ttft + dec)), queue_wait_s=wait,
        queue_wait_prob=float(np.mean(ttft > np.min(ttft) + 1e-12)), batch=float(per),
        stable=True, mode="burst", **pct)}


# ---- dispatch from cluster._evaluate -----------------------------------------------------------
def instances(c, w, pre: dict, imb: float, n: int, kw: dict, shape, kv: str | None = None):
    """(parts, cluster request rate, info) of a closed-loop or burst workload."""
    if shape is not None:
        raise ValueError(f"Workload.{load_mode(w)}: array-valued cluster fields are evaluated "
                         "for request_rate workloads only; evaluate each configuration")
    if c.prefill_instances:
        raise ValueError(f"Workload.{load_mode(w)} with prefill_instances="
                         f"{c.prefill_instances}: closed-loop and burst workloads are modelled "
                         "for colocated clusters only (prefill_instances=0)")
    parts, rate, info = (closed_instances(c, w, pre, imb, n, kw)
                         if load_mode(w) == "concurrency" else burst_instances(c, w, pre, n, kw, kv))
    return parts, rate, dict(info, loop_rate=rate)


def describe(w) -> dict[str, str]:
    """``ClusterResult.workload`` of every evaluation: the load and session modes."""
    return {"load_mode": load_mode(w), "session_mode": w.session_mode}


def finish(r, w, info: dict):
    """The ClusterResult of a closed-loop or burst workload: served rate N/(R+Z) (closed loop,
    Little's law exact) or N/makespan (burst), tokens, goodput and $/Mtok from it."""
    mode = load_mode(w)
    if mode == "rate":
        return r
    if not r.stable:
        rate = 0.0
    elif mode == "concurrency":
        rate = w.concurrency / (r.e2e_s + info["think_time_s"])
    else:
        rate = w.burst / info["makespan_s"]
    info["throughput_per_s"] = rate
    per = r.per_instance_rate_per_s * rate / info["loop_rate"] if info["loop_rate"] > 0 else 0.0
    frac = r.goodput_per_s / r.served_rate_per_s if r.served_rate_per_s > 0 else 0.0
    tok = rate * w.output_len
    return dataclasses.replace(
        r, served_rate_per_s=rate, output_tok_per_s=tok, goodput_per_s=rate * frac,
        per_instance_rate_per_s=per,
        cost_usd_per_mtok=r.cost_usd_per_h / (tok * 3600 / 1e6) if tok > 0 else math.inf,
        workload=dict(r.workload, **info))


_R_STEP = 1.02  # closed sessions re-time with E2E on a 2 % grid: nearby configurations
#                 share one re-timed trace and its reuse profile (~0.4 s to extract)


def _bin(R: float) -> float:
    """``R`` rounded to the nearest power of _R_STEP (0 stays 0)."""
    return 0.0 if R <= 0 else float(_R_STEP ** round(math.log(R) / math.log(_R_STEP)))


def closed_sessions(c, w, run: Callable) -> Any:
    """Evaluate with closed sessions: once in trace order, then on the trace re-timed with
    that mean E2E (see the module doc). ``run(cluster, workload)`` is ``evaluate``."""
    if isinstance(w.request_rate, (list, tuple, np.ndarray)):
        raise ValueError("Workload.session_mode='closed': request_rate must be a scalar "
                         "(the sessions are re-timed once per rate); evaluate each rate")
    w_open = dataclasses.replace(w, session_mode="open")
    r0 = run(c, w_open if load_mode(w) == "concurrency" else dataclasses.replace(
        w_open, think_time_s=None))
    if not np.all(np.isfinite(r0.e2e_s)):  # unstable in trace order: no E2E to re-time with
        return dataclasses.replace(r0, workload=dict(r0.workload, session_mode="closed"))
    R = _bin(float(np.max(r0.e2e_s)))
    clients = w.concurrency
    scale = 1.0  # session starts at the workload's rate: trace times x trace rate / rate
    if clients is None and w.request_rate is not None:
        scale = float(w_open.with_rate(None).rate / w.rate)
    key = ("_closed_sessions", R, clients, w.think_time_s, scale)
    if key not in w.__dict__:  # the re-timed workload and its reuse profile, once per key
        tr = closed_session_trace(w.trace, R, w.think_time_s, clients, scale)
        w.__dict__[key] = dataclasses.replace(
            w_open, trace=tr, _profile=[], request_rate=w.request_rate if clients else w.rate,
            think_time_s=w.think_time_s if clients else None)
    r1 = run(c, w.__dict__[key])
    return dataclasses.replace(r1, workload=dict(r1.workload, session_mode="closed",
                                                 session_e2e_s=R))
