"""Arrival sources of the simulator: the trace's own arrivals (open loop), or clients that
send a request only after their previous one finished (closed loop, closed sessions).

A source hands :class:`kvmodel.sim._Sim` its arrivals one at a time: ``next_time()`` (the time
of the next arrival, ``inf`` when none is pending), ``pop()`` (that request's id, after writing
its arrival and ready time into the simulator's lists) and ``done(rid, t)`` (request ``rid``
finished, or was rejected, at ``t``). The open-loop source replays ``arrival_s`` in trace order
and ignores ``done``, so open-loop runs are bit-identical to a loop over the trace.

Closed modes (``simulate(concurrency=, think_time_s=, session_mode=)``):

* ``concurrency=N``: N clients. Each takes the next *unit* not yet sent (in trace order) at
  t = 0, and the next one ``think_time_s`` (default 0) after its unit's last request finished.
  A unit is one request, or with ``session_mode="closed"`` a whole session (its turns in order).
* ``session_mode="closed"``: turn k of a session is sent ``think_time_s`` after turn k-1
  finished (``think_time_s=None``: the trace's own gap between the two turns' arrivals, i.e.
  its arrival-to-arrival think time read as finish-to-send). Without ``concurrency`` a
  session's first turn is sent at its trace arrival. The trace must carry ``session``.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from kvmodel.workload._trace_types import Trace

SESSION_MODES = ("open", "closed")


class TraceArrivals:
    """Open loop: the trace's arrivals in order (``arr`` already holds them)."""

    def __init__(self, arr: list):
        self.arr, self.i = arr, 0

    def next_time(self) -> float:
        return self.arr[self.i] if self.i < len(self.arr) else math.inf

    def pop(self) -> int:
        self.i += 1
        return self.i - 1

    def done(self, rid: int, t: float) -> None:
        """Open loop: a finish releases nothing."""


class ClientArrivals:
    """Closed loop over units (lists of request ids sent one after another): ``clients``
    clients (None: every unit starts at its first request's trace arrival)."""

    def __init__(self, arr: list, ready: list, req_s: float, units: list[list[int]],
                 gaps: list[float], clients: int | None, think_s: float):
        self.arr, self.ready, self.req_s, self.gaps, self.think = arr, ready, req_s, gaps, think_s
        self.units = deque(units)
        self.nxt: dict[int, tuple[int, bool]] = {}  # rid -> (next turn's rid or -1, client-run)
        self.heap: list[tuple[float, int]] = []
        if clients is None:
            for u in self.units:
                self._chain(u, False)
                heapq.heappush(self.heap, (arr[u[0]], u[0]))
            self.units.clear()
        else:
            for _ in range(min(clients, len(self.units))):
                self._take(0.0)

    def _chain(self, unit: list[int], client: bool) -> None:
        for a, b in zip(unit, unit[1:] + [-1]):
            self.nxt[a] = (b, client)

    def _take(self, t: float) -> None:
        """A free client sends the next unit's first request at ``t``."""
        if self.units:
            u = self.units.popleft()
            self._chain(u, True)
            heapq.heappush(self.heap, (t, u[0]))

    def next_time(self) -> float:
        return self.heap[0][0] if self.heap else math.inf

    def pop(self) -> int:
        t, rid = heapq.heappop(self.heap)
        self.arr[rid], self.ready[rid] = t, t + self.req_s
        return rid

    def done(self, rid: int, t: float) -> None:
        b, client = self.nxt.pop(rid)
        if b >= 0:
            heapq.heappush(self.heap, (t + self.gaps[b], b))
        elif client:
            self._take(t + self.think)


def _units(tr: Trace, sessions: bool) -> tuple[list[list[int]], np.ndarray]:
    """Units in trace order (sessions ordered by first turn, or single requests) and each
    request's gap to its session's previous turn in the trace (0 for first turns)."""
    n = len(tr)
    if not sessions or tr.session is None:
        return [[i] for i in range(n)], np.zeros(n)
    s = np.asarray(tr.session)
    order = np.argsort(s, kind="stable")  # turns of a session in trace order
    first = np.ones(n, dtype=bool)
    first[1:] = s[order][1:] != s[order][:-1]
    gaps = np.zeros(n)
    prev = np.roll(order, 1)
    gaps[order[~first]] = tr.arrival_s[order[~first]] - tr.arrival_s[prev[~first]]
    cuts = np.flatnonzero(first)
    units = [u.tolist() for u in np.split(order, cuts[1:])]
    units.sort(key=lambda u: u[0])
    return units, gaps


def check_clients(concurrency, think_time_s, session_mode: str) -> None:
    """Validate the closed-loop arguments of :func:`kvmodel.sim.simulate`."""
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(
            concurrency, (int, np.integer)) or concurrency < 1):
        raise ValueError(f"concurrency={concurrency!r}: must be None (open loop) or an "
                         f"integer >= 1 (clients)")
    if think_time_s is not None and (isinstance(think_time_s, bool) or not isinstance(
            think_time_s, (int, float, np.floating)) or not 0 <= think_time_s < math.inf):
        raise ValueError(f"think_time_s={think_time_s!r}: must be None or a finite number "
                         f">= 0 (seconds)")
    if session_mode not in SESSION_MODES:
        raise ValueError(f"session_mode={session_mode!r}; allowed: {SESSION_MODES}")


def arrivals(tr: Trace, arr: list, ready: list, req_s: float, concurrency, think_time_s,
             session_mode: str):
    """The arrival source for these arguments (the trace's own for an open-loop run)."""
    closed = session_mode == "closed"
    if concurrency is None and not closed:
        return TraceArrivals(arr)
    if closed and tr.session is None:
        raise ValueError(f"session_mode='closed': trace {tr.name!r} has no session ids; "
                         "allowed: a trace with Trace.session (see kvmodel.workload.traces."
                         "infer_sessions for traces with hashes)")
    units, gaps = _units(tr, closed)
    if think_time_s is not None:
        gaps = np.zeros(len(tr))
        gaps[[r for u in units for r in u[1:]]] = float(think_time_s)  # every later turn
    return ClientArrivals(arr, ready, req_s, units, gaps.tolist(), concurrency,
                          0.0 if think_time_s is None else float(think_time_s))
