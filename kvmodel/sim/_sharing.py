"""The simulator's shared KV level: a central pool or peer-to-peer DRAM, with network contention.

Selected by ``simulate(sharing="central_pool" | "p2p", sharing_spec=SimPool(...) | SimP2P(...))``.
The instance's own prefix cache (``prefix_cache_blocks``, in HBM) stays the first level. On a
request's arrival (when it is routed, like the local lookup):

* **Local.** The instance's LRU gives the leading hit ``h_l`` blocks (unchanged semantics).
* **Shared lookup.** The next leading blocks ``chain[h_l:]`` are looked up in the shared level;
  the hit ``h_s`` is the run of them present there. Central pool: one global LRU of
  ``capacity_blocks`` blocks shared by every instance; each block lives on pool server
  ``hash(block) mod servers``. P2P: every instance holds an LRU partition of
  ``capacity_blocks`` blocks in its DRAM; block ``b`` is owned by ``replication`` consecutive
  instances from ``hash(b) mod N`` (``placement="block"``) or from ``hash(chain[0]) mod N``
  (``"prefix"``: a whole prefix chain on the same owners; trace block ids are prefix hashes, so
  every chain holding ``b`` has the same first block). A hit block is served by the requester
  itself when it is among the holders (level ``peer_local``: host DRAM to HBM at ``local_Bps``,
  no network), else by the holder whose NIC has the fewest transfers in service (level ``peer``).
* **Inclusive refresh and puts.** Then the whole chain is refreshed deepest-first in the shared
  level (the pool, or every owner's partition): the shared level sees every access, as the
  closed form's single-cache curve assumes. Blocks missing there are inserted: each is a *put*
  of one block's KV (``block_tokens`` x KV bytes per token) that leaves the requester's NIC
  and enters the pool server's NIC (or the owner's NIC; none for the requester's own
  partition), written after the request's prefill completes, asynchronously (it loads the
  servers, nobody waits for it). A capacity of 0 stores and puts nothing.
* **Transfer.** At admission the shared hit's KV (the hit tokens beyond the local hit, capped
  at ``input_len - 1`` like every hit, x KV bytes per token of the whole instance) is fetched:
  one job per serving resource with its blocks' share of the bytes (pool server transmit side,
  owner's NIC transmit side, or the requester's host path for ``peer_local``) plus one job of
  all the remote bytes on the requester's NIC receive side. Every resource is a
  processor-sharing server (:class:`VirtualPS`, demand = bytes / bandwidth; the discipline of
  :class:`~kvmodel.sim._path_server.PathServer` in O(log jobs) per event); NICs are full
  duplex (a transmit and a receive server each). **Simplification:** the jobs of one transfer
  run concurrently and independently, and the transfer ends when the last of them ends (a
  fluid flow is not throttled by its other segments), then the lookup round trip ``lookup_s``
  is added (pool: every request whose chain goes beyond its local hit asks the metadata
  service, hit or miss; P2P: requests fetching from a peer); a lone transfer takes bytes /
  (slowest segment) + ``lookup_s`` exactly. The request's first prefill chunk waits for it (it
  holds its KV reservation meanwhile), as a local-tier load does. The fetch's end is projected
  again whenever the instance looks at it (forming a step), so later transfers that slow it
  down are accounted exactly. Pool server bandwidth is ``min(nics x NIC achieved bandwidth,
  media bandwidth)`` per direction (media: DRAM or SSD read for gets, write for puts).

* **Put admission** (central pool). By default every put is written. ``put_admission`` < 1
  admits that share of the requests' puts (a fixed hash of the request id, so runs repeat);
  ``put_queue_limit`` drops a request's puts when its target pool servers hold on average at
  least that many puts in service (``pool_rx`` jobs) at its arrival, when the sim stores its
  blocks: a saturated put path sheds load instead of queueing without bound. A request's puts
  are admitted or dropped together (its chain stays a prefix); dropped blocks are not inserted
  (the blocks already present are still refreshed), so their next access misses and offers them
  again. ``pool_puts`` counts blocks offered, admitted, dropped, evicted and resident at the end
  (conservation: offered = admitted + dropped, admitted = evicted + resident).

Limits: without a queue limit puts never fail or back-pressure, and a block counts as stored
from its request's arrival (like the local LRU) though its put may still be queued, so an
overloaded put direction (``network_stats()[...]["util"]`` > 1) still serves gets of blocks
not yet arrived;
routing policies see only the local cache (``RoutingView.cached``), not the shared level.
The local cache may sit in any tier (``cache_tier``): its hit is loaded over the instance's
path as without sharing, concurrently with the shared fetch; the first chunk waits for both
(``ready``: each fetch's projected end, which the path's re-projection keeps). Accounting:
hit blocks per level, bytes per flow (conservation: the bytes every serving resource sends
equal the bytes the requesters receive; every block fetched from the pool was put there
earlier), and per network server busy time, time-integral of jobs and jobs' summed sojourn
(Little's law: the two integrals are equal).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

from kvmodel.catalog.hardware import get_link, get_memory
from kvmodel.policies.eviction import LRUCache

__all__ = ["SimPool", "SimP2P", "SHARING_MODES", "SharedLevel", "VirtualPS", "sharing_spec"]

SHARING_MODES = ("none", "central_pool", "p2p")
P2P_PLACEMENTS = ("block", "prefix")
_MASK = (1 << 64) - 1


def _nonneg(name: str, v: Any, integer: bool = False, positive: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
    if ok and integer:
        ok = float(v).is_integer() and math.isfinite(v)
    if not ok or v < 0 or (positive and v <= 0):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}={v!r}: must be {kind} {'> 0' if positive else '>= 0'}")


def _link_Bps(name: str, key: str) -> float:
    """Achieved bandwidth of a hardware_db link (bytes/s); ValueError naming the field."""
    try:
        return float(get_link(key).achieved_bw_Bps)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{name}={key!r}: not a link key of hardware_db/links.toml "
                         f"(`kvmodel hardware link`): {e}") from None


@dataclass(frozen=True)
class SimPool:
    """Central pool for :func:`kvmodel.sim.simulate` (``sharing="central_pool"``).

    capacity_blocks: pool capacity, hash blocks, whole pool (0: the pool stores nothing).
    servers: pool servers; nics: NICs per server; nic: their link key (hardware_db).
    media_read_Bps, media_write_Bps: per-server DRAM/SSD bandwidth for gets / puts (inf: the
      NICs bound; the write default is the read value); or media + media_devices: a
      hardware_db memory key (``ddr5-4800``, ``nvme-gen5``, ...) and the devices per server
      (DIMMs or drives), whose read / write bandwidths add up. One medium per pool.
    client_nic, client_nics: each instance's NIC link key and NIC count (a share of its node's,
      may be fractional). lookup_s: metadata lookup round trip per fetch, seconds.
    put_admission: share of the requests' puts admitted, in (0, 1] (1: all).
    put_queue_limit: puts in service at a pool server (count, >= 1) from which a request's
      puts are dropped (None: never).
    """
    capacity_blocks: int = 0
    servers: int = 1
    nics: int = 1
    nic: str = "roce-400g"
    media_read_Bps: float = math.inf
    media_write_Bps: float | None = None
    media: str | None = None
    media_devices: int = 1
    client_nic: str = "roce-400g"
    client_nics: float = 1.0
    lookup_s: float = 0.0
    put_admission: float = 1.0
    put_queue_limit: int | None = None

    def __post_init__(self) -> None:
        _nonneg("capacity_blocks", self.capacity_blocks, integer=True)
        _nonneg("put_admission", self.put_admission, positive=True)
        if self.put_admission > 1:
            raise ValueError(f"put_admission={self.put_admission!r}: must be in (0, 1]")
        if self.put_queue_limit is not None:
            _nonneg("put_queue_limit", self.put_queue_limit, integer=True, positive=True)
        for name in ("servers", "nics"):
            _nonneg(name, getattr(self, name), integer=True, positive=True)
        _nonneg("media_read_Bps", self.media_read_Bps, positive=True)
        if self.media_write_Bps is not None:
            _nonneg("media_write_Bps", self.media_write_Bps, positive=True)
        _nonneg("client_nics", self.client_nics, positive=True)
        _nonneg("lookup_s", self.lookup_s)
        _nonneg("media_devices", self.media_devices, integer=True, positive=True)
        if self.media is not None:
            if self.media_read_Bps != math.inf or self.media_write_Bps is not None:
                raise ValueError(f"media={self.media!r}: give either media (+ media_devices) "
                                 "or media_read_Bps/media_write_Bps, not both")
            try:
                get_memory(self.media)
            except (KeyError, ValueError) as e:
                raise ValueError(f"media={self.media!r}: not a memory key of hardware_db: "
                                 f"{e}") from None
        _link_Bps("nic", self.nic)
        _link_Bps("client_nic", self.client_nic)

    def server_Bps(self) -> tuple[float, float]:
        """(get, put) bandwidth of one pool server, bytes/s."""
        nic = self.nics * _link_Bps("nic", self.nic)
        if self.media is not None:
            m = get_memory(self.media)
            read, write = (self.media_devices * float(m.read_bw_Bps),
                           self.media_devices * float(m.write_bw_Bps))
        else:
            read = self.media_read_Bps
            write = read if self.media_write_Bps is None else self.media_write_Bps
        return min(nic, read), min(nic, write)


@dataclass(frozen=True)
class SimP2P:
    """Peer-to-peer DRAM sharing for :func:`kvmodel.sim.simulate` (``sharing="p2p"``).

    capacity_blocks: DRAM partition of every instance reachable by its peers, hash blocks
      (0: nothing stored). placement: "block" (owners by the block's hash) or "prefix" (by the
      chain's first block). replication: copies of each block (1..instances).
    client_nic, client_nics: each instance's NIC link key and NIC count (may be fractional);
      owners serve and requesters receive through them. local_Bps: host DRAM -> HBM bandwidth
      for blocks the requester owns itself (inf: free). lookup_s: directory round trip per fetch.
    """
    capacity_blocks: int = 0
    placement: str = "block"
    replication: int = 1
    client_nic: str = "roce-400g"
    client_nics: float = 1.0
    local_Bps: float = math.inf
    lookup_s: float = 0.0

    def __post_init__(self) -> None:
        _nonneg("capacity_blocks", self.capacity_blocks, integer=True)
        if self.placement not in P2P_PLACEMENTS:
            raise ValueError(f"placement={self.placement!r}; allowed: {P2P_PLACEMENTS}")
        _nonneg("replication", self.replication, integer=True, positive=True)
        _nonneg("client_nics", self.client_nics, positive=True)
        _nonneg("local_Bps", self.local_Bps, positive=True)
        _nonneg("lookup_s", self.lookup_s)
        _link_Bps("client_nic", self.client_nic)


def sharing_spec(sharing: str, spec: Any, instances: int) -> SimPool | SimP2P | None:
    """Validate ``simulate``'s ``sharing``/``sharing_spec``; the spec (None for "none")."""
    if sharing not in SHARING_MODES:
        raise ValueError(f"sharing={sharing!r}; allowed: {SHARING_MODES}")
    want = {"none": type(None), "central_pool": SimPool, "p2p": SimP2P}[sharing]
    if sharing != "none" and spec is None:
        spec = want()
    if not isinstance(spec, want):
        raise ValueError(f"sharing_spec={spec!r}: sharing={sharing!r} takes "
                         f"{'no spec' if sharing == 'none' else want.__name__}")
    if sharing == "p2p" and spec.replication > instances:
        raise ValueError(f"sharing_spec.replication={spec.replication}: at most instances="
                         f"{instances}")
    return spec


def _mix(b: int) -> int:
    """A 64-bit multiplicative hash of a block id (placement and pool server choice)."""
    return ((int(b) * 0x9E3779B97F4A7C15) & _MASK) >> 17


class VirtualPS:
    """Processor-sharing server in virtual time: ``V`` is the service every job in service
    has received (seconds of the whole server), growing at ``1/n`` per second with ``n`` jobs;
    a job of demand ``d`` arriving at ``V0`` leaves when ``V`` reaches ``V0 + d``. Completions
    come off a heap (O(log n)); :meth:`end` projects one job's departure if nothing else
    arrives. Bookkeeping as :class:`~kvmodel.sim._path_server.PathServer` (busy time, integral
    of jobs, summed sojourns, jobs served)."""

    __slots__ = ("t", "V", "heap", "jobs", "since", "done", "area", "busy", "sojourn", "served")

    def __init__(self) -> None:
        self.t = self.V = self.area = self.busy = self.sojourn = 0.0
        self.heap: list = []                    # (V at departure, key)
        self.jobs: dict = {}                    # key -> V at departure
        self.since: dict = {}
        self.done: dict = {}
        self.served = 0

    def advance(self, t: float) -> None:
        """Serve until ``t`` (departures in order)."""
        heap = self.heap
        while heap:
            n = len(heap)
            dt = (heap[0][0] - self.V) * n
            if self.t + dt > t:
                break
            self._serve(dt, n)
            self.V = heap[0][0]
            while heap and heap[0][0] <= self.V:
                self._finish(heapq.heappop(heap)[1])
        if heap and t > self.t:
            n = len(heap)
            dt = t - self.t
            self._serve(dt, n)
            self.V += dt / n
        self.t = max(self.t, t)

    def _serve(self, dt: float, n: int) -> None:
        self.area += n * dt
        self.busy += dt
        self.t += dt

    def _finish(self, key) -> None:
        del self.jobs[key]
        self.done[key] = self.t
        self.sojourn += self.t - self.since.pop(key)
        self.served += 1

    def add(self, t: float, key, demand: float) -> None:
        """A job of ``demand`` seconds (alone on the server) arrives at ``t``."""
        self.advance(t)
        self.since[key] = t
        if demand > 0:
            self.jobs[key] = vf = self.V + demand
            heapq.heappush(self.heap, (vf, key))
        else:
            self.jobs[key] = self.V
            self._finish(key)

    def drain(self) -> None:
        self.advance(math.inf)

    def end(self, key) -> float:
        """Departure of job ``key``: done, or projected with no further arrivals."""
        if key not in self.jobs:
            return self.done[key]
        vf, V = self.jobs[key], self.V
        return self.t + sum(min(v, vf) - V for v, _ in self.heap)


class SharedLevel:
    """Engine-side state of the shared level: its LRU(s), the network servers, pending fetches
    and the accounting (see the module docstring)."""

    def __init__(self, spec: SimPool | SimP2P, n_inst: int, block_tokens: int, tok_B: float):
        self.spec, self.n, self.bt, self.tok_B = spec, n_inst, block_tokens, tok_B
        self.pool = isinstance(spec, SimPool)
        self.cap = int(spec.capacity_blocks)
        client = spec.client_nics * _link_Bps("client_nic", spec.client_nic)
        self.Bps: dict[str, float] = {}
        for i in range(n_inst):
            self.Bps[f"rx[{i}]"] = self.Bps[f"tx[{i}]"] = client
        if self.pool:
            get, put = spec.server_Bps()
            for s in range(spec.servers):
                self.Bps[f"pool_tx[{s}]"], self.Bps[f"pool_rx[{s}]"] = get, put
            self.lru = LRUCache(self.cap)
        else:
            for i in range(n_inst):
                self.Bps[f"host[{i}]"] = spec.local_Bps
            self.parts = [LRUCache(self.cap) for _ in range(n_inst)]
        self.srv = {k: VirtualPS() for k in self.Bps}
        self.get_B = dict.fromkeys(self.Bps, 0.0)
        self.put_B = dict.fromkeys(self.Bps, 0.0)
        self.levels = {"pool": 0} if self.pool else {"peer_local": 0, "peer": 0}
        self.plan: dict[int, tuple[list, float]] = {}   # rid -> ([(server, bytes)], lookup s)
        self.puts: dict[int, list] = {}                  # rid -> [(server, bytes)]
        self.pending: dict[int, list] = {}               # rid -> [prefill entry, fixed, servers]
        self.ready: dict[int, float] = {}                # rid -> projected fetch end + lookup
        self.owner_memo: dict[int, tuple] = {}
        self.got: set = set()                            # distinct blocks fetched (pool)
        self.stored: set = set()                         # distinct blocks ever put (pool)
        self.put_blocks = dict.fromkeys(("offered", "admitted", "dropped", "evicted"), 0)

    # ---- lookup at arrival -------------------------------------------------------------------
    def lookup(self, t: float, i: int, rid: int, chain: list, h_local: int, cap_tok: int) -> int:
        """Shared hit (blocks) of ``rid`` routed to instance ``i`` after a local hit of
        ``h_local`` blocks; refreshes the shared level and records the fetch and the puts."""
        if self.pool:
            src, missing = self._pool_lookup(t, rid, chain, h_local)
        else:
            src, missing = self._p2p_lookup(t, i, chain, h_local)
        h = len(src)
        bt = self.bt
        tok = min((h_local + h) * bt, cap_tok) - min(h_local * bt, cap_tok)
        gets: dict[str, float] = {}
        for name in src if tok > 0 else ():
            gets[name] = gets.get(name, 0.0) + tok * self.tok_B / h
        remote = sum(v for k, v in gets.items() if not k.startswith("host"))
        if remote > 0:
            gets[f"rx[{i}]"] = remote
        # the pool's metadata is asked whenever the local cache leaves blocks; a peer only
        # when a block comes over the network
        ask = self.cap > 0 and len(chain) > h_local if self.pool else remote > 0
        if gets or ask:
            self.plan[rid] = (list(gets.items()), float(self.spec.lookup_s) if ask else 0.0)
        self._plan_puts(i, rid, missing)
        return h

    def _pool_lookup(self, t: float, rid: int, chain: list, h_local: int) -> tuple[list, dict]:
        lru, S = self.lru, self.spec.servers
        src = []
        for b in chain[h_local:]:
            if not lru.contains(b):
                break
            src.append(f"pool_tx[{_mix(b) % S}]")
            self.got.add(b)
        self.levels["pool"] += len(src)
        missing: dict[str, int] = {}
        new = list(dict.fromkeys(b for b in chain if not lru.contains(b))) if self.cap else []
        for b in new:
            key = f"pool_rx[{_mix(b) % S}]"
            missing[key] = missing.get(key, 0) + 1
        admit = self._admit(t, rid, missing)
        pb = self.put_blocks
        if not admit:
            pb["dropped"] += len(new)
            pb["offered"] += len(new)
            missing = {}
        for b in reversed(chain):
            if lru.contains(b):
                lru.touch(b)
            elif admit and self.cap:   # an insertion: evicts the LRU block when full
                pb["evicted"] += len(lru.od) >= self.cap
                pb["admitted"] += 1
                pb["offered"] += 1
                self.stored.add(b)
                lru.touch(b)
        return src, missing

    def _admit(self, t: float, rid: int, missing: dict) -> bool:
        """Whether ``rid``'s puts are admitted (module doc): its share of ``put_admission``
        (a fixed hash of ``rid``), then the put queues of its target pool servers."""
        if not missing:
            return True
        spec = self.spec
        if spec.put_admission < 1 and _mix(rid + 0x5DEECE66D) / 2.0 ** 47 >= spec.put_admission:
            return False
        if spec.put_queue_limit is None:
            return True
        jobs = sum(self._jobs(t, k) for k in missing) / len(missing)
        return jobs < spec.put_queue_limit

    def _owners(self, b: int, root: int) -> tuple[int, ...]:
        """Owners of block ``b`` (first block of its chain ``root``), memoised per block."""
        own = self.owner_memo.get(b)
        if own is None:
            base = _mix(root if self.spec.placement == "prefix" else b) % self.n
            own = self.owner_memo[b] = tuple((base + k) % self.n
                                             for k in range(self.spec.replication))
        return own

    def _p2p_lookup(self, t: float, i: int, chain: list, h_local: int) -> tuple[list, dict]:
        parts, root, n = self.parts, chain[0] if chain else 0, self.n
        src = []
        for b in chain[h_local:]:
            holders = [o for o in self._owners(b, root) if parts[o].contains(b)]
            if not holders:
                break
            if i in holders:
                src.append(f"host[{i}]")
                continue
            o = holders[0] if len(holders) == 1 else min(
                holders, key=lambda o: (self._jobs(t, f"tx[{o}]"), (o - i) % n))
            src.append(f"tx[{o}]")
        local = sum(1 for s in src if s.startswith("host"))
        self.levels["peer_local"] += local
        self.levels["peer"] += len(src) - local
        missing: dict[int, int] = {}   # owner -> blocks put there
        for b in reversed(chain):
            for o in self._owners(b, root):
                c = parts[o]
                if o != i and self.cap and not c.contains(b):
                    missing[o] = missing.get(o, 0) + 1
                c.touch(b)
        return src, {f"rx[{o}]": k for o, k in missing.items()}

    def _jobs(self, t: float, name: str) -> int:
        s = self.srv[name]
        s.advance(t)
        return len(s.jobs)

    def _plan_puts(self, i: int, rid: int, missing: dict) -> None:
        block_B = self.bt * self.tok_B
        puts = [(k, c * block_B) for k, c in missing.items()]
        total = sum(v for _, v in puts)
        if total > 0:
            self.puts[rid] = puts + [(f"tx[{i}]", total)]

    # ---- transfers ---------------------------------------------------------------------------
    def fetch(self, t: float, rid: int, p: list) -> None:
        """At admission: start ``rid``'s fetch (if it has one); ``p[2]`` (its first-chunk time)
        becomes the fetch's projected end plus the lookup round trip."""
        plan = self.plan.pop(rid, None)
        if plan is None:
            return
        gets, fixed = plan
        for name, nbytes in gets:
            self.srv[name].add(t, ("get", rid), nbytes / self.Bps[name])
            self.get_B[name] += nbytes
        self.pending[rid] = [p, fixed, [k for k, _ in gets]]
        self.ready[rid] = t + fixed
        p[2] = max(p[2], t + fixed)
        self.refresh(rid)

    def refresh(self, rid: int) -> None:
        """Project ``rid``'s fetch end again (later transfers may have slowed it down)."""
        p, fixed, names = self.pending[rid]
        key, end, live = ("get", rid), 0.0, False
        for name in names:
            s = self.srv[name]
            end = max(end, s.end(key))
            live = live or key in s.jobs
        self.ready[rid] = max(self.ready[rid], end + fixed)
        p[2] = max(p[2], end + fixed)
        if not live:
            del self.pending[rid]

    def put(self, t: float, rid: int) -> None:
        """After ``rid``'s prefill: its puts load the servers (nobody waits for them)."""
        for name, nbytes in self.puts.pop(rid, ()):
            self.srv[name].add(t, ("put", rid), nbytes / self.Bps[name])
            self.put_B[name] += nbytes

    # ---- results -----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Hit blocks per shared level, bytes per flow and per network server statistics."""
        net = {}
        for name, s in self.srv.items():
            s.drain()
            net[name] = dict(Bps=self.Bps[name], busy_s=s.busy, area_s=s.area,
                             sojourn_s=s.sojourn, jobs=s.served, get_B=self.get_B[name],
                             put_B=self.put_B[name])
        puts = dict(self.put_blocks, resident=len(self.lru.od)) if self.pool else {}
        return dict(level_hit_blocks=dict(self.levels), network=net,
                    pool_blocks_got=len(self.got), pool_blocks_put=len(self.stored),
                    pool_puts=puts)
