"""The simulator's KV path: one processor-sharing server per instance and tier.

The server is the path's bottleneck segment (the one with the most seconds per byte of reads
plus shared writes, :func:`bottleneck`); ``n`` jobs in service each progress at ``1/n`` of its
bandwidth. Jobs are prefix loads (whose end the request waits for) and saves of new KV (which
only load the server). Between two arrivals the schedule is deterministic, so
:meth:`PathServer.finish_times` projects every job's end exactly until the next arrival; the
simulator re-projects on every arrival. Byte-seconds are bookkept per job so that Little's law
(mean jobs in service = arrival rate x mean sojourn) can be checked.
"""

from __future__ import annotations

from typing import Any, Hashable

__all__ = ["PathServer", "bottleneck"]


def bottleneck(segments: list) -> tuple[float, float]:
    """(seconds per byte read, seconds per byte written) on the slowest segment of a path
    (``kvmodel.instance._paths.path_segments``); writes count only where they share it."""
    best = (0.0, 0.0)
    for seg in segments:
        r = 1.0 / float(seg.read_Bps)
        w = 1.0 / float(seg.write_Bps) if seg.shared else 0.0
        if r + w > sum(best):
            best = (r, w)
    return best


class PathServer:
    """Processor-sharing server with exact event-to-event bookkeeping."""

    __slots__ = ("t", "jobs", "area", "busy", "done", "since", "sojourn", "served")

    def __init__(self) -> None:
        self.t = 0.0
        self.jobs: dict[Hashable, float] = {}   # remaining demand, seconds of the whole server
        self.area = 0.0                         # integral of jobs in service over time
        self.busy = 0.0                         # time with at least one job in service
        self.done: dict[Hashable, float] = {}   # completion times of finished jobs
        self.since: dict[Hashable, float] = {}  # arrival times of jobs in service
        self.sojourn = 0.0                      # sum of finished jobs' times in service
        self.served = 0

    def advance(self, t: float) -> None:
        """Serve until ``t``: completions in order, each raising the others' share."""
        jobs = self.jobs
        while jobs:
            n = len(jobs)
            key = min(jobs, key=jobs.__getitem__)
            first = jobs[key]
            end = self.t + first * n
            if end > t:  # nobody finishes before t
                self._serve(max(t - self.t, 0.0), n)
                break
            self._serve(end - self.t, n, first)
            for k in [k for k, v in jobs.items() if v <= 1e-12 * first]:
                self._finish(k)
        self.t = max(self.t, t) if t < float("inf") else self.t

    def _serve(self, dt: float, n: int, each: float | None = None) -> None:
        """``dt`` seconds with ``n`` jobs in service: each gets ``each`` (default dt/n)."""
        each = dt / n if each is None else each
        for k in self.jobs:
            self.jobs[k] -= each
        self.area += n * dt
        self.busy += dt
        self.t += dt

    def _finish(self, key: Hashable) -> None:
        del self.jobs[key]
        self.done[key] = self.t
        self.sojourn += self.t - self.since.pop(key)
        self.served += 1

    def drain(self) -> None:
        """Serve every job in service to its end (no further arrivals)."""
        self.advance(float("inf"))

    def add(self, t: float, key: Hashable, demand: float) -> None:
        """A job of ``demand`` seconds (alone on the server) arrives at ``t``."""
        self.advance(t)
        self.since[key] = t
        if demand > 0:
            self.jobs[key] = demand
        else:
            self.jobs[key] = 0.0
            self._finish(key)

    def finish_times(self) -> dict[Any, float]:
        """End of every job in service if no other job arrives (shortest remaining first)."""
        out, t, prev = {}, self.t, 0.0
        order = sorted(self.jobs.items(), key=lambda kv: kv[1])
        n = len(order)
        for i, (k, rem) in enumerate(order):
            t += (rem - prev) * (n - i)
            prev = rem
            out[k] = t
        return out
