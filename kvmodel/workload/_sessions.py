"""Multi-turn sessions of a trace: the turns of each session, and the order the requests
reach the cluster when turn k is sent only after turn k-1 has finished (closed sessions).

The prefix-reuse models (:mod:`kvmodel.workload._reuse_analytic`, ``_reuse_exact``) read a trace
as a sequence: LRU hits depend on the order of requests, not on their absolute times. A closed
session changes that order: turn k arrives ``e2e + think`` after turn k-1 arrived instead of at
its trace time, so a slow cluster or a long think time pushes more other requests between
the two turns and the previous turn's context is more often evicted. :func:`closed_session_trace`
returns the trace in that order, so the reuse profile of the result gives the hit ratio of
closed sessions (approximation: every turn takes the same ``e2e_s``; a turn's context survives
exactly when fewer distinct blocks than the cache holds were touched in between, i.e. when
``think + e2e`` is shorter than the cache's residence time at that request rate).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kvmodel.workload._trace_types import Trace

__all__ = ["session_turns", "closed_session_trace", "reorder", "infer_sessions"]


def session_turns(tr: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, first, gap): request ids grouped by session (sessions by their first turn,
    turns in trace order), whether each entry of ``order`` opens its session, and the trace's
    arrival gap of each entry to its session's previous turn (0 for first turns). Requests of
    a trace without ``session`` are sessions of one turn."""
    n = len(tr)
    if tr.session is None:
        return np.arange(n), np.ones(n, dtype=bool), np.zeros(n)
    s = np.asarray(tr.session)
    first_seen = np.full(int(s.max()) + 1, n, dtype=np.int64)
    np.minimum.at(first_seen, s, np.arange(n))
    order = np.lexsort((np.arange(n), first_seen[s]))  # by session's first turn, then trace
    first = np.ones(n, dtype=bool)
    first[1:] = s[order][1:] != s[order][:-1]
    gap = np.zeros(n)
    t = tr.arrival_s[order]
    gap[1:] = np.where(first[1:], 0.0, t[1:] - t[:-1])
    return order, first, gap


def closed_session_trace(tr: Trace, e2e_s: float, think_time_s: float | None = None,
                         clients: int | None = None, time_scale: float = 1.0) -> Trace:
    """``tr`` in the order of closed sessions: turn k sent ``e2e_s + think`` after turn k-1
    (``think``: ``think_time_s``, or None for the trace's own gap between the turns).

    ``clients=None``: a session's first turn keeps its trace arrival times ``time_scale``
    (open arrival of sessions). ``clients=N``: N clients run whole sessions one after
    another (session j on client j mod N, from t = 0; ``think_time_s`` or 0 between
    sessions). Returns a trace sorted by the new send times (the ``session`` array kept)."""
    if not (np.isfinite(e2e_s) and e2e_s >= 0):
        raise ValueError(f"e2e_s={e2e_s!r}: must be a finite number >= 0 (seconds)")
    order, first, gap = session_turns(tr)
    think = gap if think_time_s is None else np.where(first, 0.0, float(think_time_s))
    step = np.where(first, 0.0, e2e_s + think)
    sess = np.cumsum(first) - 1                       # session index of each entry
    if clients is None:
        start = tr.arrival_s[order][first] * time_scale
    else:
        z = 0.0 if think_time_s is None else float(think_time_s)
        span = np.bincount(sess, weights=step) + e2e_s + z  # a session's time on its client
        by = np.argsort(np.arange(len(span)) % clients, kind="stable")  # client, then order
        done = np.cumsum(span[by]) - span[by]            # time used before each session
        head = np.r_[True, (by[1:] % clients) != (by[:-1] % clients)]
        start = np.empty(len(span))
        start[by] = done - done[head][np.cumsum(head) - 1]
    within = np.cumsum(step) - np.cumsum(step)[first][sess]
    send = np.empty(len(tr))
    send[order] = start[sess] + within
    return reorder(tr, np.argsort(send, kind="stable"), np.sort(send, kind="stable"))


def reorder(tr: Trace, idx: np.ndarray, arrival_s: np.ndarray | None = None) -> Trace:
    """Requests ``idx`` of ``tr`` in that order (chains moved with them), with new arrival
    times ``arrival_s`` (default: the trace's own, which must then stay non-decreasing)."""
    idx = np.asarray(idx, dtype=np.int64)
    lens = tr.blocks_per_request[idx]
    offsets = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    starts = tr.block_offsets[idx]
    pos = np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], lens) + np.repeat(starts, lens)
    arr = tr.arrival_s[idx] if arrival_s is None else np.asarray(arrival_s, dtype=np.float64)
    return Trace(arr, tr.input_len[idx], tr.output_len[idx], offsets, tr.block_ids[pos],
                 tr.block_tokens, tr.name, None if tr.session is None else tr.session[idx])


def infer_sessions(tr: Trace) -> Trace:
    """``tr`` with ``session`` inferred from the hash chains (traces that carry no session
    column, e.g. Mooncake's): request i continues request j (an earlier turn of the same
    conversation) when i's chain holds, at the same position, the last full block of j's
    chain and that block first appeared in j (so a shared system prompt links nobody);
    each turn is continued at most once, by the first later request that extends it, and
    the deepest such block of i's chain wins. Other requests open a new session. Sessions
    are numbered in order of first turn. A trace with ``session`` is returned as it is."""
    if tr.session is not None:
        return tr
    ids, off, bt = tr.block_ids.tolist(), tr.block_offsets.tolist(), tr.block_tokens
    full = (tr.input_len // bt).tolist()
    seen: set[int] = set()
    open_turn: dict[int, int] = {}  # last full block introduced by a turn -> that turn
    session = np.empty(len(tr), dtype=np.int64)
    count = 0
    for i in range(len(tr)):
        chain = ids[off[i]:off[i + 1]]
        parent = next((open_turn.pop(b) for b in reversed(chain) if b in open_turn), -1)
        if parent < 0:
            session[i], count = count, count + 1
        else:
            session[i] = session[parent]
        k = min(full[i], len(chain))
        if k and chain[k - 1] not in seen:
            open_turn[chain[k - 1]] = i
        seen.update(chain)
    return dataclasses.replace(tr, session=session)
