"""The in-memory request trace shared by loaders, reuse models and (later) the simulator.

A :class:`Trace` is a struct of numpy arrays (one entry per request, in file order) plus the
ragged per-request prefix-block hash chains stored CSR-style: the hash ids of request ``i``
are ``block_ids[block_offsets[i]:block_offsets[i + 1]]``. Equal ids are reusable KV blocks of
``block_tokens`` tokens; ids are chained (an id stands for the whole prefix up to its block).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Trace"]


@dataclass(frozen=True)
class Trace:
    arrival_s: np.ndarray      # float64 [n], seconds from the trace start, non-decreasing
    input_len: np.ndarray      # int64 [n], prompt tokens
    output_len: np.ndarray     # int64 [n], generated tokens
    block_offsets: np.ndarray  # int64 [n + 1], CSR offsets into block_ids
    block_ids: np.ndarray      # int64 [total blocks], prefix-block hash ids
    block_tokens: int = 512
    name: str = ""
    session: np.ndarray | None = field(default=None, compare=False)  # int64 [n] or None

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        for name in ("input_len", "output_len"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Trace.{name} has {len(getattr(self, name))} entries, expected {n}")
        if len(self.block_offsets) != n + 1 or (n and self.block_offsets[-1] != len(self.block_ids)):
            raise ValueError("Trace.block_offsets must have n + 1 entries ending at len(block_ids)")
        if self.block_tokens < 1:
            raise ValueError(f"Trace.block_tokens={self.block_tokens}: must be >= 1")

    def __len__(self) -> int:
        return len(self.arrival_s)

    def hash_ids(self, i: int) -> np.ndarray:
        """Prefix-block hash chain of request ``i``."""
        return self.block_ids[self.block_offsets[i]:self.block_offsets[i + 1]]

    def window(self, start: int = 0, n: int | None = None) -> "Trace":
        """Requests ``start`` .. ``start + n`` (all from ``start`` when ``n`` is None) as a trace
        of their own: arrivals shifted to start at 0, their block chains and session ids kept,
        the name marked with the slice. A shorter run, or another sample of the same trace."""
        stop = len(self) if n is None else min(len(self), start + n)
        if not 0 <= start < stop:
            raise ValueError(f"Trace.window start={start}, n={n}: need 0 <= start < {len(self)} "
                             "and n >= 1")
        off = self.block_offsets[start:stop + 1]
        return Trace(self.arrival_s[start:stop] - self.arrival_s[start],
                     self.input_len[start:stop], self.output_len[start:stop], off - off[0],
                     self.block_ids[off[0]:off[-1]], self.block_tokens,
                     f"{self.name}[{start}:{stop}]",
                     None if self.session is None else self.session[start:stop])

    def tick_s(self) -> float | None:
        """The timestamp tick the arrivals are quantised to, or None where no two requests
        share a timestamp (nothing to spread). The tick is the smallest gap between distinct
        timestamps when every such gap is a whole multiple of it to within 1 % of the tick (the
        published ticks carry a few ms of jitter); a trace with ties but no common tick raises
        (pass ``tick_s`` to :meth:`spread_ticks`). ``mooncake-conversation``: 2.997 s (ticks of
        3 s +- 3 ms, 1,180 distinct timestamps, ~10 requests each)."""
        u = np.unique(self.arrival_s)
        if len(u) == len(self.arrival_s):
            return None
        gaps = np.diff(u)
        if len(gaps) == 0:
            raise ValueError(f"Trace.arrival_s: all {len(self)} requests share one timestamp; "
                             "pass tick_s to spread_ticks")
        tick = float(gaps.min())
        k = gaps / tick
        if np.any(np.abs(k - np.round(k)) > 0.01):
            raise ValueError(f"Trace.arrival_s: ties, but the gaps between distinct timestamps "
                             f"are not multiples of one tick (smallest {tick:g} s); pass tick_s "
                             "to spread_ticks")
        return tick

    def spread_ticks(self, tick_s: float | None = None, seed: int | None = None) -> "Trace":
        """The trace with each timestamp's requests spread over the tick that follows it, in
        file order: a published trace quantised to ticks (``mooncake-conversation``: 3 s) lists
        ~10 requests per tick at one instant, which a replay runs as simultaneous bursts the real
        arrivals did not have. ``seed`` None: evenly, request r of m at ``t + r/m·tick``; an
        int: at sorted uniform draws in ``[t, t + tick)`` (Poisson-like inside the tick).
        Request order, the count per tick and the mean rate are kept; a trace without ties is
        returned as is. ``tick_s`` None: :meth:`tick_s`'s; given, it must be > 0 and no larger
        than the smallest gap between distinct timestamps (spreading must not reorder)."""
        a = self.arrival_s
        if tick_s is None:
            tick = self.tick_s()
            if tick is None:
                return self
        else:
            tick = tick_s
            if isinstance(tick, bool) or not (isinstance(tick, (int, float, np.integer, np.floating))
                                              and np.isfinite(tick) and tick > 0):
                raise ValueError(f"Trace.spread_ticks tick_s={tick_s!r}: must be a finite "
                                 "number of seconds > 0")
            gaps = np.diff(np.unique(a))
            if len(gaps) and tick > gaps.min() * (1 + 1e-9):
                raise ValueError(f"Trace.spread_ticks tick_s={tick_s!r}: larger than the smallest "
                                 f"gap between distinct timestamps ({gaps.min():g} s); allowed: "
                                 "0 < tick_s <= that gap")
        _, start, count = np.unique(a, return_index=True, return_counts=True)
        m = np.repeat(count, count)
        rank = np.arange(len(a)) - np.repeat(start, count)
        if seed is None:
            frac = rank / m
        else:
            u = np.random.default_rng(seed).random(len(a))
            # the draws sorted within each tick (ticks are contiguous), given out in file order
            frac = u[np.lexsort((u, np.repeat(np.arange(len(count)), count)))]
        return Trace(a + frac * float(tick), self.input_len, self.output_len, self.block_offsets,
                     self.block_ids, self.block_tokens, f"{self.name}~spread", self.session)

    @property
    def blocks_per_request(self) -> np.ndarray:
        return np.diff(self.block_offsets)

    @property
    def total_blocks(self) -> int:
        return int(len(self.block_ids))

    @property
    def unique_blocks(self) -> int:
        return int(len(np.unique(self.block_ids)))

    @classmethod
    def from_lists(cls, hash_ids: list[list[int]], input_len=None, output_len=None,
                   arrival_s=None, block_tokens: int = 512, name: str = "") -> "Trace":
        """Build a trace from Python lists (tests, hand-made examples)."""
        n = len(hash_ids)
        lens = np.array([len(h) for h in hash_ids], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        ids = (np.concatenate([np.asarray(h, dtype=np.int64) for h in hash_ids])
               if n and offsets[-1] else np.zeros(0, dtype=np.int64))
        inp = np.asarray(input_len if input_len is not None else lens * block_tokens, dtype=np.int64)
        out = np.asarray(output_len if output_len is not None else np.ones(n), dtype=np.int64)
        t = np.asarray(arrival_s if arrival_s is not None else np.zeros(n), dtype=np.float64)
        return cls(t, inp, out, offsets, ids, block_tokens, name)
