"""Prefix-cache eviction/admission policies: one base class, its variants, one registry.

Contract (:class:`CachePolicy`, used by :func:`kvmodel.workload._reuse_exact.replay` and the simulator's
prefix cache): see the class docstring. Variants (registry :data:`REGISTRY`,
:data:`kvmodel.policies.EVICTION`): ``lru``, ``fifo``, ``lfu``, ``s3fifo``, ``arc``,
``lru-admit-reuse``. Adding a variant: subclass :class:`CachePolicy` here (``name`` = its
registry key) and register it with ``_entry(...)`` below.

Closed forms (what :func:`kvmodel.evaluate` uses): ``lru`` is the analytic TTL (Che)
approximation of :mod:`kvmodel.workload._reuse_analytic`; every other policy is the exact replay at a
few capacities, interpolated along the LRU curve's shape (:mod:`kvmodel.workload._policy_curve`).
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict

from kvmodel.policies import PolicyEntry, Registry

__all__ = ["CachePolicy", "LRUCache", "FIFOCache", "LFUCache", "S3FIFOCache", "ARCCache",
           "LRUAdmitReuseCache", "REGISTRY", "EVICTION_POLICIES"]


class CachePolicy:
    """A block cache of ``capacity`` blocks (0 allowed: holds nothing).

    Contract used by :func:`replay` for each request: ``contains(b)`` is asked along the chain
    first-to-last (stopping at the first miss) and must not change state; then ``touch(b)`` is
    called for every block from the LAST to the FIRST. ``touch`` of a resident block updates the
    policy's recency/frequency state; of a non-resident block it admits it (if the policy admits
    it) after evicting per policy so that at most ``capacity`` blocks stay resident.
    """

    name = ""

    def __init__(self, capacity: int):
        self.capacity = capacity

    def contains(self, block: int) -> bool:
        raise NotImplementedError

    def touch(self, block: int) -> None:
        raise NotImplementedError


class LRUCache(CachePolicy):
    """Least recently used: touch moves to MRU; a miss inserts at MRU, evicting the LRU block."""

    name = "lru"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.od: OrderedDict = OrderedDict()

    def contains(self, block):
        return block in self.od

    def touch(self, block):
        od = self.od
        if block in od:
            od.move_to_end(block)
        elif self.capacity:
            if len(od) >= self.capacity:
                od.popitem(last=False)
            od[block] = None


class FIFOCache(LRUCache):
    """First in, first out: hits change nothing; a miss evicts the oldest inserted block."""

    name = "fifo"

    def touch(self, block):
        if block not in self.od:
            super().touch(block)


class LFUCache(CachePolicy):
    """In-cache LFU: evict the block with the fewest accesses since its admission, ties to the
    least recently used; frequencies are forgotten on eviction (no aging)."""

    name = "lfu"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.freq: dict = {}
        self.buckets: defaultdict = defaultdict(OrderedDict)
        self.min_f = 0

    def contains(self, block):
        return block in self.freq

    def touch(self, block):
        f = self.freq.get(block)
        if f is not None:
            self._unlink(block, f)
            self._link(block, f + 1)
        elif self.capacity:
            if len(self.freq) >= self.capacity:
                victim = next(iter(self.buckets[self.min_f]))
                self._unlink(victim, self.min_f)
                del self.freq[victim]
            self._link(block, 1)
            self.min_f = 1

    def _link(self, block, f):
        self.freq[block] = f
        self.buckets[f][block] = None

    def _unlink(self, block, f):
        bucket = self.buckets[f]
        del bucket[block]
        if not bucket:
            del self.buckets[f]
            if self.min_f == f:
                self.min_f = f + 1


class S3FIFOCache(CachePolicy):
    """S3-FIFO (Yang et al., SOSP 2023): small FIFO S (capacity // 10, at least 1), main FIFO M,
    ghost FIFO G of evicted-from-S ids (at most capacity - |S cap| ids). Hits bump a 2-bit
    frequency. New blocks enter S, or M if in G. Eviction (while full): from S if it is at its
    share (or M is empty) -- the head moves to M if it was hit while in S, else to G; otherwise
    from M -- a head with frequency > 0 is reinserted with frequency - 1, else evicted."""

    name = "s3fifo"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.s_cap = max(1, capacity // 10)
        self.g_cap = max(0, capacity - self.s_cap)
        self.S: OrderedDict = OrderedDict()
        self.M: OrderedDict = OrderedDict()
        self.G: OrderedDict = OrderedDict()

    def contains(self, block):
        return block in self.S or block in self.M

    def touch(self, block):
        for q in (self.S, self.M):
            if block in q:
                q[block] = min(q[block] + 1, 3)
                return
        if not self.capacity:
            return
        while len(self.S) + len(self.M) >= self.capacity:
            self._evict()
        if block in self.G:
            del self.G[block]
            self.M[block] = 0
        else:
            self.S[block] = 0

    def _evict(self):
        if self.S and (len(self.S) >= self.s_cap or not self.M):
            block, f = self.S.popitem(last=False)
            if f >= 1:
                self.M[block] = 0
            elif self.g_cap:
                self.G[block] = None
                if len(self.G) > self.g_cap:
                    self.G.popitem(last=False)
            return
        while True:
            block, f = self.M.popitem(last=False)
            if not f:
                return
            self.M[block] = f - 1


class ARCCache(CachePolicy):
    """Adaptive Replacement Cache (Megiddo & Modha, FAST 2003): resident lists T1 (seen once)
    and T2 (seen twice+), ghost lists B1/B2, adaptive target p for |T1|; as in the paper."""

    name = "arc"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.p = 0.0
        self.T1, self.T2, self.B1, self.B2 = (OrderedDict() for _ in range(4))

    def contains(self, block):
        return block in self.T1 or block in self.T2

    def touch(self, x):
        c, T1, T2, B1, B2 = self.capacity, self.T1, self.T2, self.B1, self.B2
        if not c:
            return
        if x in T1 or x in T2:
            (T1 if x in T1 else T2).pop(x)
            T2[x] = None
        elif x in B1 or x in B2:
            self._ghost_hit(x)
        else:
            self._miss(x)

    def _ghost_hit(self, x):
        B1, B2, c = self.B1, self.B2, self.capacity
        if x in B1:
            self.p = min(c, self.p + max(len(B2) / len(B1), 1))
            self._replace(x)
            del B1[x]
        else:
            self.p = max(0.0, self.p - max(len(B1) / len(B2), 1))
            self._replace(x)
            del B2[x]
        self.T2[x] = None

    def _miss(self, x):
        c, T1, B1 = self.capacity, self.T1, self.B1
        l1 = len(T1) + len(B1)
        total = l1 + len(self.T2) + len(self.B2)
        if l1 == c:
            if len(T1) < c:
                B1.popitem(last=False)
                self._replace(x)
            else:
                T1.popitem(last=False)
        elif total >= c:
            if total == 2 * c:
                self.B2.popitem(last=False)
            self._replace(x)
        T1[x] = None

    def _replace(self, x):
        T1, T2 = self.T1, self.T2
        if len(T1) + len(T2) < self.capacity:
            return
        if T1 and (len(T1) > self.p or (x in self.B2 and len(T1) == self.p) or not T2):
            self.B1[T1.popitem(last=False)[0]] = None
        else:
            self.B2[T2.popitem(last=False)[0]] = None


class LRUAdmitReuseCache(LRUCache):
    """LRU that admits a block only on its second sighting (admit after first reuse): a first
    sighting only records the id in a ghost LRU of at most ``capacity`` ids."""

    name = "lru-admit-reuse"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.ghost: OrderedDict = OrderedDict()

    def touch(self, block):
        if block in self.od or not self.capacity:
            return super().touch(block)
        if block in self.ghost:
            del self.ghost[block]
            return super().touch(block)
        self.ghost[block] = None
        if len(self.ghost) > self.capacity:
            self.ghost.popitem(last=False)


# ------------------------------------------------------------------------------ registry

REGISTRY = Registry("eviction", "prefix-cache eviction and admission")
_REPLAY = "kvmodel.workload._reuse_exact.replay"
_INTERP = ("replay_interpolated", "kvmodel.workload._policy_curve:policy_hit_ratio_curve",
           "exact replays at a few capacities per (policy, routing, instances), interpolated "
           "with the analytic LRU curve's shape; the split over tiers by cumulative capacity "
           "treats each tier as the next stretch of one cache (an approximation for non-stack "
           "policies)")
# tag "admits-every-miss": a miss is always admitted (capacity > 0), so a never-evicting cache
# holds every block its instance has seen (kvmodel.workload._policy_curve relies on it)
_ADMIT = ("admits-every-miss",)


def _entry(cls: type, description: str, closed_form: tuple, simulators=(_REPLAY,),
           tolerance: float = 0.05, tags=_ADMIT) -> None:
    """Register ``cls``; ``tolerance``: |exact replay - closed form| stated for
    synthetic_trace(200, seed 1 and 2) at 20, 60 and 200 blocks per instance, 1 instance and 2
    under bounded affinity (measured <= 0.04, FIFO on one instance)."""
    form, fn, note = closed_form
    REGISTRY.register(PolicyEntry(cls.name, description, form, (), cls, simulators, fn, note,
                                  tolerance, tags, object_from_sim=False))


_entry(LRUCache, "least recently used", ("analytic_lru",
       "kvmodel.workload._reuse_analytic:analytic_hit_ratio_curve",
       "analytic TTL (Che) approximation of LRU on the trace's reuse profile"),
       simulators=(_REPLAY, "kvmodel.sim.simulate"))
_entry(FIFOCache, "first in, first out", _INTERP)
_entry(LFUCache, "in-cache least frequently used, ties LRU", _INTERP)
_entry(S3FIFOCache, "S3-FIFO: small, main and ghost FIFOs (Yang et al., SOSP 2023)", _INTERP)
_entry(ARCCache, "adaptive replacement cache (Megiddo & Modha, FAST 2003)", _INTERP)
_entry(LRUAdmitReuseCache, "LRU admitting a block on its second sighting", _INTERP, tags=())

# name -> CachePolicy class (a live view of REGISTRY)
EVICTION_POLICIES = REGISTRY.implementations()
