"""Hit classes: an open loop whose requests find different cached prefixes.

``estimate(..., prefix_classes=[(probability, cached_prefix_len, cache_tier), ...])`` describes
the requests as a mixture: class k (probability π_k, summing to 1) has ``cached_prefix_len``
tokens cached in ``cache_tier`` (a tier name, a :class:`~kvmodel.tiers.Tier` or a mix
``[(tier, fraction), ...]``; length 0 is a miss). A class may carry its own prompt length as a
fourth element, ``(probability, cached_prefix_len, cache_tier, input_len)`` (default: the
estimate's ``input_len``): prompt-length classes (:func:`length_bands` discretises a lognormal
spread, the cluster uses the trace's own quantile bands), and its own output length as a fifth,
``(..., input_len, output_len)`` (None or absent: the estimate's ``output_len``; the classes'
outputs must average to it, :meth:`PrefixMix.set_output`): it sets the class's KV reservation
(I_k + O_k), its context per decode step (I_k + O_k/2, the steps' mean weighted by each class's
π_k·(O_k − 1) decode steps), its slot hold ((O_k − O)·TPOT more) and its share of the engine at
saturation (throughput-max: Σ π_k·O_k / Σ π_k·O_k/tok_k). Each class is its own prefix
(:class:`kvmodel.instance._estimate._Prefix`: its load time, its uncached prompt tokens ``n_k``
over its own prompt ``I_k``); the shared queues see the mixture:

* the token-budget prefill server gets the mixture's uncached tokens: mean ``n̄ = Σ π_k n_k``
  and SCV ``Σ π_k n_k² (1 + c_len²) / n̄² − 1`` (``c_len``: ``length_cv``, scaling every class;
  0 when the classes carry lengths: they already hold the spread);
* a busy step's attention pairs per prompt token are the mixture's,
  ``a = Σ π_k n_k (I_k − n_k/2) / n̄`` (causal pairs grow as I², so long prompts weigh more),
  passed to the step model as an attention length ``I_attn = a + n̄/2``; the decode side (KV
  per sequence, TPOT's context) keeps the estimate's mean ``input_len``. Hit classes of one
  prompt length (no class gives its own) keep the mean prompt's ``n̄ (I − n̄/2)`` pairs and no
  per-class pair term, exactly as before length classes (TPOT there is tested against the
  simulator with it);
* the KV path carries every class's loads and saves (a request's mean demand ``Σ π_k d_k``);
  in M/G/1-PS a load's delay is proportional to its own demand, so class k's path delay is the
  mean delay scaled by the bytes its loads move over the path over the mean (none for a miss
  or a hit held in HBM);
* TTFT of class k is the common part (request overhead, residual step, prefill and slot wait W)
  plus its own service ``S_k`` (its chunks, its own attention pairs ``n_k (I_k − n_k/2)`` beyond
  the mean ``n_k·a``, its exposed load, path delay, synchronous save).
  Its quantiles solve ``Σ_k π_k P(W + S_k > x) = 1 − q`` with W's law of
  :func:`kvmodel.instance._queueing.wait_quantile` (0 w.p. 1 − p, else exponential), in
  closed form interval by interval (:func:`mixture_quantile`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.instance._paths import PathLoad
from kvmodel.instance._prefix import pipeline_makespan

__all__ = ["check_classes", "check_outputs", "PrefixMix", "PrefixRow", "mixture_quantile",
           "mixture_quantiles", "length_bands", "TAIL_BANDS"]

TAIL_BANDS = (0.0, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 1.0)
"""Quantile bands of prompt-length classes: finer in the tail, where p90/p99 TTFT come from."""


def check_classes(classes: Any) -> list[tuple[Any, Any, Any, Any, Any]]:
    """Validate ``prefix_classes``: a non-empty list of (probability, cached_prefix_len, tier),
    (probability, cached_prefix_len, tier, input_len) or (probability, cached_prefix_len, tier,
    input_len, output_len) with probabilities >= 0 summing to 1 (element-wise for arrays),
    input_len >= 1 tokens and output_len a number >= 1 of output tokens. Returns 5-tuples
    (input_len / output_len None where a class gave none)."""
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (list, tuple)) or not classes:
        raise ValueError(f"prefix_classes={classes!r}: expected a non-empty list of "
                         "(probability, cached_prefix_len, cache_tier[, input_len[, output_len]]) "
                         "tuples")
    out = []
    for k, c in enumerate(classes):
        if type(c) is tuple and len(c) in (4, 5):  # a cluster's classes: the checks below
            p, L, O = c[0], c[3], c[4] if len(c) == 5 else None  # at once
            if type(p) is float and 0.0 <= p <= 1.0 and type(L) is float and 1.0 <= L < math.inf \
                    and (O is None or type(O) is float and 1.0 <= O < math.inf):
                out.append((p, c[1], c[2], L, O))
                continue
        if not isinstance(c, (list, tuple)) or len(c) not in (3, 4, 5):
            raise ValueError(f"prefix_classes[{k}]={c!r}: expected (probability, "
                             "cached_prefix_len, cache_tier[, input_len[, output_len]])")
        p = c[0]
        if isinstance(p, (bool, np.bool_)) or p is None:
            raise ValueError(f"prefix_classes[{k}] probability {p!r}: expected a number in [0, 1]")
        if type(p) in (int, float):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"prefix_classes[{k}] probability {p!r}: expected numbers in [0, 1]")
            out.append((float(p), c[1], c[2], _length(k, c), _output(k, c)))
            continue
        p = np.asarray(p, dtype=float)
        if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
            raise ValueError(f"prefix_classes[{k}] probability {c[0]!r}: expected numbers in [0, 1]")
        out.append((p if p.ndim else float(p), c[1], c[2], _length(k, c), _output(k, c)))
    total = sum(c[0] for c in out)
    if (abs(total - 1.0) > 1e-6 if type(total) is float
            else np.any(np.abs(np.asarray(total) - 1.0) > 1e-6)):
        raise ValueError(f"prefix_classes probabilities must sum to 1, got {np.min(total):g}"
                         + (f" to {np.max(total):g}" if np.ndim(total) else ""))
    return out


def _length(k: int, c) -> Any:
    """A class's own prompt length (None: the estimate's input_len), validated."""
    if len(c) == 3 or c[3] is None:
        return None
    L = c[3]
    if type(L) in (int, float) and L >= 1 and math.isfinite(L):
        return float(L)
    bad = isinstance(L, (bool, np.bool_, str, bytes))
    arr = None if bad else np.asarray(L, dtype=float) if _numeric(L) else None
    if arr is None or np.any(~np.isfinite(arr)) or np.any(arr < 1):
        raise ValueError(f"prefix_classes[{k}] input_len {L!r}: expected a number of prompt "
                         "tokens >= 1 (or an array of them)")
    return arr if arr.ndim else float(arr)


def _output(k: int, c) -> float | None:
    """A class's own output length (None: the estimate's output_len), validated: a number
    of output tokens >= 1 (not an array: the throughput-max serves a class's output per row
    of its stack)."""
    if len(c) < 5 or c[4] is None:
        return None
    O = c[4]
    ok = (not isinstance(O, (bool, np.bool_)) and isinstance(O, (int, float, np.integer,
                                                                 np.floating)))
    if not ok or not 1.0 <= float(O) < math.inf:
        raise ValueError(f"prefix_classes[{k}] output_len {O!r}: expected a number of output "
                         "tokens >= 1")
    return float(O)


def check_outputs(outs: list | None, probs: list, O) -> None:
    """The classes' own output lengths must average (with their probabilities) to the
    estimate's ``output_len`` ``O``, the mean the queues use (Little's law on the decoders,
    the count law's context): a relative error of at most 1e-6."""
    if outs is None:
        return
    mean = sum(p * o for p, o in zip(probs, outs))
    if type(mean) is float and abs(mean - O) <= 1e-6 * O:  # numbers: no array on the way
        return
    if np.any(np.abs(np.asarray(mean) - np.asarray(O)) > 1e-6 * np.asarray(O)):
        raise ValueError(f"prefix_classes output_len: the classes' mean output "
                         f"{np.min(mean):.6g} must equal output_len={np.min(O):.6g} (scale "
                         "the classes' outputs to it)")


def _numeric(v) -> bool:
    try:
        np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        return False
    return True


def length_bands(length_cv: Any, bands=TAIL_BANDS) -> list[tuple[float, Any]]:
    """Prompt-length classes of a lognormal spread with coefficient of variation ``length_cv``
    (a number or an array; mean 1): ``[(probability, relative mean length), ...]``, one per
    quantile band ``[q_j, q_j+1)`` of ``bands``, each class the band's mean length.

    For ln X ~ N(−σ²/2, σ²), σ² = ln(1 + cv²), the band's mean is
    ``(Φ(z_j+1 − σ) − Φ(z_j − σ)) / (q_j+1 − q_j)`` with z = Φ⁻¹(q): the relative means
    average to exactly 1 and the top band carries the tail (its mean, not its edge)."""
    from scipy import special  # scipy only where lengths spread
    cv = np.asarray(length_cv, dtype=float)
    sigma = np.sqrt(np.log1p(cv * cv))
    q = np.asarray(bands, dtype=float)
    z = special.ndtri(q)  # -inf .. inf at the ends
    out = []
    for j in range(len(q) - 1):
        m = (special.ndtr(z[j + 1] - sigma) - special.ndtr(z[j] - sigma)) / (q[j + 1] - q[j])
        out.append((float(q[j + 1] - q[j]), m if m.ndim else float(m)))
    return out


def _row(x, j: int):
    """Row j of a stacked value (a value without the row axis is the same for every row)."""
    if not isinstance(x, np.ndarray):
        return x
    v = x[j] if x.ndim else x
    return float(v) if np.ndim(v) == 0 else v


_F64 = np.dtype(np.float64)


def _row_of(stacked, x, j: int):
    """:func:`_row` of a value of ``stacked``; a 1-d float array is split into Python floats
    once per stack (every class reads its row)."""
    lists = stacked.__dict__.get("_row_lists")
    if lists is None:
        lists = stacked._row_lists = {}
    got = lists.get(id(x))
    if got is None or got[0] is not x:
        got = lists[id(x)] = (x, _split(x))
    return _row(x, j) if got[1] is None else got[1][j]


def _stack_save(stacked) -> list:
    """The stacked prefix's save op, built once for all its rows: (key, value, the value
    split into Python floats when a 1-d float array, else None) per entry."""
    if "_save_all" not in stacked.__dict__:
        stacked._save_all = [(k, v, _split(v)) for k, v in stacked.save_op().items()]
    return stacked._save_all


def _split(v) -> list | None:
    """A 1-d float array as a list of Python floats (:func:`_row` of each row), else None."""
    ok = type(v) is np.ndarray and v.ndim == 1 and v.dtype is _F64
    return v.tolist() if ok else None


def _own_parts(stacked, j: int) -> list[bool]:
    """Which of a stacked prefix's path parts row j loads from (all, unless the stack's rows
    come from several tiers: ``part_group`` / ``row_group``)."""
    groups = getattr(stacked, "part_group", None)
    if groups is None:
        return [True] * len(stacked.reads)
    return [g == stacked.row_group[j] for g in groups]


def _split_rows(stacked) -> list | None:
    """Per row of ``stacked`` (once per stack): (loaded, exposed, reads, writes) as
    :class:`PrefixRow` reads them, when each of those values is a 1-d float array over the
    rows (split into Python floats at once); else None (read value by value)."""
    if "_split" in stacked.__dict__:
        return stacked._split
    reads, writes = ([], []) if stacked.none else (stacked.reads, stacked.writes)
    times = () if stacked.none else (stacked.t_load, stacked.t_comp)
    lists = [_split(v) for v in (stacked.loaded, stacked.exposed, *times,
                                 *(b for _, b in reads), *(b for _, b in writes))]
    if any(c is None for c in lists) or len({len(c) for c in lists}) != 1:
        stacked._split = None
        return None
    loaded, exposed, *cols = lists
    t_load, t_comp = (None, None) if stacked.none else (cols.pop(0), cols.pop(0))
    rc, wc = cols[:len(reads)], cols[len(reads):]
    groups, own_of, rows = getattr(stacked, "part_group", None), {}, []
    for j in range(len(loaded)):
        if stacked.none:
            rows.append((loaded[j], exposed[j]))
            continue
        g = None if groups is None else stacked.row_group[j]
        if g not in own_of:  # the path parts this row's tier loads from
            own_of[g] = [i for i, o in enumerate(_own_parts(stacked, j)) if o]
        own = own_of[g]
        rows.append((loaded[j], exposed[j], [(reads[i][0], rc[i][j]) for i in own],
                     [(writes[i][0], wc[i][j]) for i in own], t_load[j], t_comp[j]))
    stacked._split = rows
    return rows


class PrefixRow:
    """Class j of a prefix built once for several classes stacked on a leading axis (same
    tier: one loader, one prefill solve), with the interface :class:`PrefixMix` reads."""

    def __init__(self, stacked, j: int):
        self.stacked, self.j = stacked, j
        self.none = stacked.none
        self.save_sync = stacked.save_sync
        rows = _split_rows(stacked)
        if rows is not None:  # every row's figures split once for the stack
            self.loaded, self.exposed, *rw = rows[j]
            if not self.none:
                self.eff = stacked.eff
                self.reads, self.writes, self.t_load, self.t_comp = rw
            return
        self.loaded = _row_of(stacked, stacked.loaded, j)
        self.exposed = _row_of(stacked, stacked.exposed, j)
        if not self.none:
            self.eff = stacked.eff
            own = _own_parts(stacked, j)  # rows of several tiers: this row's tier only
            self.reads = [(t, _row_of(stacked, b, j)) for i, (t, b) in enumerate(stacked.reads)
                          if own[i]]
            self.writes = [(t, _row_of(stacked, b, j)) for i, (t, b)
                           in enumerate(stacked.writes) if own[i]]

    def times(self) -> tuple:
        """(load seconds, compute seconds, overlap depth) of this row."""
        if not hasattr(self, "t_load"):
            st = self.stacked
            self.t_load = _row_of(st, st.t_load, self.j)
            self.t_comp = _row_of(st, st.t_comp, self.j)
        return self.t_load, self.t_comp, self.stacked.depth

    def exposed_with(self, delay):
        """Exposed load when each load spends ``delay`` more seconds on the path (as
        ``_Prefix.exposed_with``, on this row's load and compute times)."""
        self.times()
        mk = pipeline_makespan(self.t_load + delay, self.t_comp, self.stacked.depth) - self.t_comp
        return xp.where((delay > 0) & (self.loaded > 0), mk, self.exposed)

    def save_op(self, util: dict | None = None) -> dict:
        if "_save" not in self.__dict__:
            j = self.j
            self._save = {k: _row(v, j) if col is None else col[j]
                          for k, v, col in _stack_save(self.stacked)}
        return self._save


class PrefixMix:
    """The classes' prefixes with their probabilities, seen by the open loop as one prefix
    (the interface of ``_Prefix``: ``none``, ``new_tokens``, ``exposed``, ``path``,
    ``save_op``, ``exposed_with``) plus the per-class parts (:meth:`offsets`). ``lens``: each
    class's prompt length (``lengths``: whether any class gave its own); ``outs``: each
    class's output length (None: every class at the estimate's ``output_len``; ``sized``:
    whether the classes' KV reservations differ, by prompt or by output)."""

    # the engine's max_batch_size (estimate sets it): a saturated batch of sized classes is
    # bounded by the KV pool only where the pool, not this cap, sets the largest batch
    seq_cap = None

    def __init__(self, probs: list, prefixes: list, lens: list, lengths: bool = False,
                 outs: list | None = None):
        self.probs, self.parts, self.lens, self.lengths = probs, prefixes, lens, lengths
        self.given, self.outs, self.sized = outs, None, lengths  # outs: :meth:`set_output`
        self.seconds = lengths  # service SCV in seconds (:meth:`seconds_scv`)
        live = [p for p in prefixes if not p.none]
        self.none = not live
        self.save_sync = any(p.save_sync for p in live)
        self.loaded = self._mean(lambda p: p.loaded)
        self.exposed = self._mean(lambda p: p.exposed)
        self._new = [L - p.loaded for p, L in zip(prefixes, lens)]  # each class's (new_k)
        self.new = sum(pi * x for pi, x in zip(probs, self._new))
        if lengths:  # attention pairs per prompt token of the mixture
            pairs = sum(pi * self.pairs_k(k) for k, pi in enumerate(probs))
            self.attn = pairs / xp.maximum(self.new, 1e-300)
        else:  # hit classes of one prompt length: the mean prompt's pairs (as without classes)
            self.attn = lens[0] - self.new / 2.0
        vals = [*lens, *(p.loaded for p in prefixes)]  # scalar classes: vectorised over them
        self._rows = None if xp.is_array(*vals) else (np.array(lens, dtype=float),
                                                      np.array(vals[len(lens):], dtype=float))
        self.path = None
        if live:
            reads = [(t, b * pi) for pi, p in zip(probs, prefixes) if not p.none for t, b in p.reads]
            writes = [(t, b * pi) for pi, p in zip(probs, prefixes) if not p.none for t, b in p.writes]
            self.path = PathLoad(reads, writes, live[0].eff)

    def _mean(self, f):
        return sum(pi * f(p) for pi, p in zip(self.probs, self.parts))

    def new_k(self, k: int):
        """Uncached prompt tokens of class k (its own prompt less what it loads)."""
        return self._new[k]

    def pairs_k(self, k: int):
        """Causal attention pairs class k's uncached tokens compute over its own context."""
        n = self.new_k(k)
        return n * (self.lens[k] - n / 2.0)

    def uncached(self):
        """(π, n): the classes' probabilities and uncached prompt tokens stacked on the last
        axis (broadcast over any configuration axes), for the open loop's expected chunk count
        (:func:`kvmodel.instance._openloop.chunk_count`)."""
        if "_uncached" not in self.__dict__ and self._rows is not None and not xp.is_array(
                *self.probs):  # scalar classes: the same numbers, without the broadcasting
            self._uncached = (np.array(self.probs, dtype=float), np.array(self._new, dtype=float))
        if "_uncached" not in self.__dict__:
            vals = [*self.probs, *self._new]
            a = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in vals))
            K = len(self.probs)
            self._uncached = (np.stack(a[:K], axis=-1), np.stack(a[K:], axis=-1))
        return self._uncached

    def new_tokens(self, I):
        return self.new

    def attn_len(self, I):
        """The attention length whose ``new·(I_attn − new/2)`` pairs are the mixture's."""
        return self.attn + self.new / 2.0

    def new_scv(self, I, cs2):
        """SCV of the classes' uncached prompt tokens, each scaled by the length spread (not
        when the classes carry their own lengths: ``cs2`` must then be 0)."""
        n = self.new
        m2 = sum(pi * x ** 2 for pi, x in zip(self.probs, self._new)) * (1.0 + cs2)
        return xp.maximum(m2 / xp.maximum(n * n, 1e-300) - 1.0, 0.0)

    def seconds_scv(self, cs2, sigma, pair_s):
        """SCV of the classes' prefill SECONDS, the prefill server's service (Kingman's c_s²):
        each class's uncached tokens at ``sigma`` seconds per token plus its attention pairs
        beyond the mean's at ``pair_s`` seconds per pair (:meth:`own`'s reading). Attention
        grows as n², so long prompts weigh more than their tokens: on the Mooncake
        conversation trace (8B, H100) 3.6 against 1.6 counted in tokens. Classes of one
        prompt length (hit classes) keep the token SCV ``cs2`` (:meth:`own` adds no pair term
        for them), and so do the lognormal bands of ``length_cv`` (``seconds`` False): the
        router replay's level estimates pass their uncached-work spread, a hit/miss mix of
        one prompt length, through it (the n² of the lognormal's long band doubled the
        replay's waiting span against the simulator's, tests/policies/test_routing_admission.py)."""
        if not self.seconds:
            return cs2
        return _scv(self.probs, [sigma * n + pair_s * (self.pairs_k(k) - n * self.attn)
                                 for k, n in enumerate(self._new)])

    def set_output(self, O) -> None:
        """Resolve the classes' own output lengths (``given``, None: the estimate's) against
        the estimate's ``output_len`` ``O``: :attr:`outs` the classes' outputs, None where
        every class is at ``O`` (the one-output model, bit for bit), checked
        (:func:`check_outputs`)."""
        self.outs, self.sized = None, self.lengths
        if self.given is None:
            return
        if xp.is_array(O):
            raise ValueError("prefix_classes output_len needs a single output_len (a number), "
                             f"got an array of shape {np.shape(O)}")
        outs = [float(O) if o is None else o for o in self.given]
        if all(o == O for o in outs):
            return
        check_outputs(outs, self.probs, O)
        self.outs, self.sized = outs, True

    def outputs(self, O) -> list:
        """Each class's output tokens: its own (:attr:`outs`), else the estimate's ``O``."""
        return [O] * len(self.probs) if self.outs is None else self.outs

    def reserved(self, O) -> list:
        """Each class's KV tokens reserved at admission: its prompt plus its output."""
        return [L + o for L, o in zip(self.lens, self.outputs(O))]

    def reserve_scv(self, O):
        """SCV of the KV tokens a request reserves at admission, its prompt plus its output
        tokens (:meth:`reserved`; 0 for classes of one size)."""
        if not self.sized:
            return 0.0
        return _scv(self.probs, self.reserved(O))

    def _shares(self) -> list:
        """Each class's path delay relative to the mean request's: the bytes its loads move
        over the path (:attr:`path`'s reads) over the mixture's mean. A class that loads
        nothing over it (a miss, a hit held in HBM) waits on no path queue."""
        if "_path_shares" not in self.__dict__:
            own = [0.0 if p.none else sum(b for _, b in p.reads) for p in self.parts]
            mean = sum(pi * d for pi, d in zip(self.probs, own))
            self._path_shares = [d / xp.maximum(mean, 1e-300) for d in own]
            if not xp.is_array(*own, mean):
                self._path_shares = np.array(self._path_shares, dtype=float)
        return self._path_shares

    def exposed_with(self, delay):
        return sum(pi * e for pi, e in zip(self.probs, self.exposed_all(delay)))

    def exposed_all(self, delay) -> list:
        """Each class's exposed load when the mean load waits ``delay`` more on the path (a
        class's share of it: :meth:`_shares`)."""
        shares = self._shares()
        rows = self._time_rows() if self._rows is not None and not xp.is_array(delay) else None
        if rows is None or not isinstance(shares, np.ndarray):
            return [p.exposed if p.none else p.exposed_with(delay * sh)
                    for p, sh in zip(self.parts, shares)]
        t_load, t_comp, depth, exposed, live = rows  # every class at once, element by element
        if not delay > 0:  # no class's load waits longer: each its own exposed load
            if "_exposed_list" not in self.__dict__:
                self._exposed_list = exposed.tolist()
            return self._exposed_list
        last = self.__dict__.get("_exposed_at")  # the open loop asks twice at its path delay
        if last is not None and last[0] == delay:
            return last[1]
        d = delay * shares
        mk = pipeline_makespan(t_load + d, t_comp, depth) - t_comp
        out = np.where(live & (d > 0) & (self._rows[1] > 0), mk, exposed).tolist()
        self._exposed_at = (delay, out)
        return out

    def _time_rows(self):
        """Per class (arrays over the classes): load and compute seconds, overlap depth,
        exposed load, whether it loads at all; None when any of them is an array."""
        if "_times" not in self.__dict__:
            vals = [(0.0, 0.0, 1.0, p.exposed) if p.none else (*p.times(), p.exposed)
                    for p in self.parts]
            flat = [v for row in vals for v in row]
            self._times = None if xp.is_array(*flat) else (
                *np.array(vals, dtype=float).T, np.array([not p.none for p in self.parts]))
        return self._times

    def save_op(self, util: dict | None = None) -> dict:
        ops = [p.save_op() for p in self.parts if not p.none]
        live = [pi for pi, p in zip(self.probs, self.parts) if not p.none]
        return {k: sum(pi * o[k] for pi, o in zip(live, ops)) for k in ("flops", "bytes", "time_s")}

    def own(self, S_of, pair_s):
        """Per class: its own chunks ``S_of(n_k)`` plus, for length classes, its attention
        pairs beyond the mean's ``n_k·a`` at ``pair_s`` seconds per pair (0 on average)."""
        if self._rows is not None and not xp.is_array(pair_s):  # every class at once
            lens, loaded = self._rows
            n = lens - loaded
            out = S_of(n)
            if self.lengths:
                out = out + pair_s * (n * (lens - n / 2.0) - n * self.attn)
            if isinstance(out, np.ndarray) and out.shape == n.shape:
                return out.tolist()
        if not self.lengths:  # hit classes of one length: chunks only, as without classes
            return [S_of(self.new_k(k)) for k in range(len(self.parts))]
        return [S_of(self.new_k(k)) + pair_s * (self.pairs_k(k) - self.new_k(k) * self.attn)
                for k in range(len(self.parts))]

    def offsets(self, delay, own):
        """Per class: (probability, own TTFT part: ``own[k]`` (:meth:`own`), exposed load with
        its path delay, synchronous save)."""
        if "_save_s" not in self.__dict__:
            self._save_s = [None if p.none else p.save_op()["time_s"] for p in self.parts]
        out = []
        for pi, s, o, e in zip(self.probs, self._save_s, own, self.exposed_all(delay)):
            if s is not None:
                o = o + e + s
            out.append((pi, o))
        return out


def _scv(probs: list, xs: list):
    """Squared coefficient of variation of the values ``xs`` taken with ``probs``."""
    m1 = sum(pi * x for pi, x in zip(probs, xs))
    m2 = sum(pi * x * x for pi, x in zip(probs, xs))
    return xp.maximum(m2 / xp.maximum(m1 * m1, 1e-300) - 1.0, 0.0)


def scalar_quantiles(mean_wait, p, classes, qs) -> list:
    """:func:`mixture_quantile` for Python floats (``p`` already clipped, classes sorted by
    offset) at each of the quantiles ``qs``, in one pass over the classes (the tail's terms
    A_j, B_j do not depend on q)."""
    theta, pw = max(mean_wait / p, 1e-300), (p if mean_wait > 0 else 0.0)
    tails = [1.0 - q for q in qs]
    A, B, prev = sum([w for w, _ in classes]), 0.0, None
    out, left, last = [None] * len(qs), len(qs), len(classes) - 1
    for j, (w, sj) in enumerate(classes):
        B = (B * math.exp(-(sj - prev) / theta) if prev is not None else 0.0)
        B, A, prev = B + pw * w, A - w, sj
        for i, tail in enumerate(tails):
            if out[i] is not None:
                continue
            room = tail - A
            if A + B <= tail:
                out[i], left = sj, left - 1
            elif room > 0:
                x = sj + theta * math.log(max(B, 1e-300) / room)
                if j == last or x < classes[j + 1][1]:
                    out[i], left = x, left - 1
        if not left:
            return out
    return [math.inf if v is None else v for v in out]


def sorted_classes(offsets, shape: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, probabilities) of ``offsets`` ((probability, offset) pairs) as arrays
    (classes, \\*shape), sorted by offset on axis 0 (stable: ties keep the classes' order)."""
    S = np.asarray(np.broadcast_arrays(*[np.asarray(o, dtype=float) for _, o in offsets]))
    pi = np.asarray(np.broadcast_arrays(*[np.asarray(w, dtype=float) for w, _ in offsets]))
    shape = np.broadcast_shapes(S.shape[1:], pi.shape[1:], shape)
    S, pi = (np.broadcast_to(a.reshape((len(a),) + (1,) * (len(shape) - a.ndim + 1) + a.shape[1:]),
                             (len(offsets),) + shape) for a in (S, pi))
    order = np.argsort(S, axis=0, kind="stable")
    return np.take_along_axis(S, order, 0), np.take_along_axis(pi, order, 0)


def sorted_quantile(mean_wait, p, S: np.ndarray, pi: np.ndarray, q, A=None) -> np.ndarray:
    """:func:`mixture_quantile`'s arrays: classes sorted on axis 0 of ``S`` / ``pi``
    (:func:`sorted_classes`), ``p`` clipped; ``q`` a number or an array broadcasting against
    the rest (quantiles on an axis of their own); ``A``: the classes' total probability
    (default ``pi.sum(axis=0)``)."""
    theta = np.maximum(np.asarray(mean_wait, dtype=float) / p, 1e-300)
    shape = np.broadcast_shapes(S.shape[1:], theta.shape, np.shape(p), np.shape(q))
    pw = np.where(np.asarray(mean_wait) > 0, p, 0.0)
    out, found = np.zeros(shape), np.zeros(shape, dtype=bool)
    B, A = np.zeros(S.shape[1:]), pi.sum(axis=0) if A is None else A
    for j in range(len(S)):
        if j:
            B = B * np.exp(-(S[j] - S[j - 1]) / theta)
        B, A = B + pw * pi[j], A - pi[j]
        room = (1.0 - q) - A  # tail left to the wait inside this interval
        at_start = A + B <= 1.0 - q
        x = S[j] + theta * np.log(np.maximum(B, 1e-300) / np.maximum(room, 1e-300))
        end = S[j + 1] if j + 1 < len(S) else np.inf
        ok = ~found & (at_start | ((room > 0) & (x < end)))
        out = np.where(ok, np.where(at_start, S[j], x), out)
        found = found | ok
    return out


def mixture_quantile(mean_wait, p_wait, offsets, q: float):
    """The q-quantile of W + S_K (K drawn with the classes' probabilities), exactly.

    With the offsets sorted, s_1 <= ... <= s_K, on [s_j, s_j+1) the tail is
    ``A_j + B_j·exp(−(x − s_j)/θ)`` with ``A_j = Σ_{i>j} π_i`` (classes still in service),
    ``B_j = p·Σ_{i<=j} π_i·exp(−(s_j − s_i)/θ)`` and θ = W/p; the quantile lies in the first
    interval whose right end has tail <= 1 − q, at ``s_j + θ·ln(B_j / (1 − q − A_j))`` (or at
    s_j when the tail there is already low enough). Elements broadcast; classes are few."""
    p = xp.minimum(xp.maximum(p_wait, 1e-12), 1.0)
    ordered = _scalar_sorted(offsets)
    if ordered is not None and not xp.is_array(mean_wait, p):
        return scalar_quantiles(mean_wait, p, ordered, (q,))[0]
    shape = np.broadcast_shapes(np.shape(mean_wait), np.shape(p))
    out = sorted_quantile(mean_wait, p, *sorted_classes(offsets, shape), q)
    return out if out.ndim else float(out)


def mixture_quantiles(mean_wait, p_wait, offsets, qs: tuple) -> list:
    """:func:`mixture_quantile` at each of ``qs``: Python floats in one pass over the classes
    (:func:`scalar_quantiles`, the same numbers), arrays one quantile at a time."""
    p = xp.minimum(xp.maximum(p_wait, 1e-12), 1.0)
    ordered = _scalar_sorted(offsets)
    if ordered is not None and not xp.is_array(mean_wait, p):
        return scalar_quantiles(mean_wait, p, ordered, qs)
    return [mixture_quantile(mean_wait, p_wait, offsets, q) for q in qs]


_LAST_SORTED: list = [None]  # (offsets, sorted offsets or None) of the last call


def _scalar_sorted(offsets) -> list | None:
    """``offsets`` sorted by offset when every entry is a number (None when any is an array),
    kept for the same list again (the open loop asks for each percentile of one mixture; the
    list is held, so its id is not reused)."""
    last = _LAST_SORTED[0]
    if last is not None and last[0] is offsets:
        return last[1]
    ordered = (None if any(xp.is_array(w, o) for w, o in offsets)
               else sorted(offsets, key=lambda c: c[1]))
    _LAST_SORTED[0] = (offsets, ordered)
    return ordered
