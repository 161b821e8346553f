"""Closed forms of KV sharing between instances: a central pool and peer to peer, with their
traffic, queues (with tails), lookups, churn and cost.

Semantics (what a simulator must run to referee these closed forms):

* **Local first.** A request's blocks are looked up in its instance's own tiers (HBM, DRAM,
  CXL, SSD: the routing's per-instance LRU curve), then in the shared level.
* **Central pool** (``PoolSpec``): one global LRU of the pool's capacity, inclusive of the local
  tiers (``scope="cluster"``), or one pool per rack of ``rack_nodes`` nodes whose hit ratio is
  the routing's curve over the racks (``scope="rack"``: the racks play the instances). The pool
  DRAM is the hot part of its LRU stack: pool hits up to the pool's DRAM capacity come from
  DRAM, the rest from its SSDs at the drives' read bandwidth. Every recomputed block is offered
  to the pool as a put (new KV): NIC ingress, DRAM writes, and SSD writes when the pool has
  SSDs. Each request pays one metadata round trip (``PoolSpec.metadata_rtt_s``; default the
  calibration's ``pool_metadata_rtt``) before its transfer.
* **Put admission** (``PoolSpec.put_policy``). ``"all"`` (default): write-through, a put path
  above its bandwidth makes the configuration unstable. ``"fraction"``: a share
  ``put_admission`` of the requests' puts is admitted. ``"throttle"``: the put path of a pool
  server is an M/G/1-PS queue holding at most ``put_queue_limit`` puts (one per request); a put
  arriving to a full queue is dropped (Mooncake Store / LMCache remote drop puts rather than
  back-pressure). Its admission is 1 - P_K with the finite PS queue's blocking probability
  P_K = (1 - rho) rho^K / (1 - rho^(K+1)) (insensitive to the size law, PASTA), rho the offered
  put load, which itself grows as drops turn later hits into misses: the admission solves
  a = 1 - P_K(rho(a)) (bisection). A request's puts are admitted or dropped together (its chain
  stays a prefix). *Lost hits*: a block whose put is dropped is recomputed at its next access
  and offered again, so along a block's accesses a pool-level hit that is the j-th re-access
  since the block was last absent from the pool is lost with probability (1 - a)^j (all j
  offers before it dropped). The share of such hits at each run position j is measured once
  on the trace's single-cache stream (:func:`put_run_table`, tabulated against the pool's
  cumulative hit ratio) and applied to the pool level's hits in proportion (local-tier hits
  cost nothing: a local tier stores the block whatever the pool does, but a local hit of a
  block absent from the pool offers it again, with the same probability). *Room*: a dropped
  block takes no room in the pool's LRU, so a capacity-bound pool keeps other blocks longer.
  In the window in which an admit-all LRU of k blocks sees k distinct blocks (tau(k) accesses,
  dD/dt = miss ratio), (1 - H(k)) tau(k) of them are misses offered as puts, and a share
  1 - a is dropped: the pool of C blocks reaches as far as an admit-all LRU of k' blocks with
  k' - (1 - a)(1 - H(k')) tau(k') = C, and its curve gives H(k') before the lost hits
  (:func:`pool_room_hit`; LRU pools, the pool's own curve tabulated once per profile). The
  admission, the offered load and the pool's hit are solved together. First order: a
  dropped block admitted again later in the same window is counted as room (a second-order
  term for it was tried and matched the simulator less well). The pool DRAM/SSD split keeps
  the admit-all curve.
* **P2P** (``P2PSpec``): the peers' DRAM is one cache of N x C_dram / replication blocks.
  Which peer holds a block is the placement's closed form (``kvmodel.policies.placement``):
  ``block_hash`` (rendezvous, consistent hashing: each block hashed to an owner, r copies on
  successive owners; a hit is local when the requester is an owner), ``prefix_hash`` (every block
  of a request's prefix on the owner of its first block) and ``directory_writer`` (a block stays
  on the instance that computed it, copies on r-1 successors; an instance also keeps the blocks
  it used before, so under prefix affinity most hits are local). The local share of shared-level
  hits and the busiest owner's share of PEER traffic (blocks that miss the requester's HBM and
  are fetched from another instance, weighted by accesses) are measured on the trace under the
  routing's assignment (round robin stands for random routing), tabulated against the HBM hit
  ratio once per (placement, N, routing, replication) and memoised on the reuse profile.
  Requests whose peer blocks miss HBM are taken to be those with the longest per-instance reuse
  gaps (an LRU keeps the shortest). Inserted blocks are written to their owners (puts: r copies
  minus the one the writer holds; the busiest receiver's share measured like the gets);
  lookups cost ``P2PSpec.lookup_latency_s`` per request with a peer hit (default: the
  directory's key-value round trip, calibration ``pool_metadata_rtt``; 0 for hashes).
* **Transfers** cross NICs modelled as processor-sharing servers (M/G/1-PS: mean response
  S/(1-rho), insensitive to the size distribution); a server at utilisation >= 1 is saturated.
  The PS slowdown beyond the service time is taken as an atom at 0 (probability 1 - rho) plus an
  exponential tail of mean S/(1-rho) (probability rho), so its mean is the exact rho S/(1-rho).
  Several network queues of one request are merged into one such law (P = 1 - prod(1 - rho_i),
  means added).
* **TTFT percentiles.** The network delay is convolved with the instance's queue wait, itself
  an atom at 0 plus an exponential tail (``Estimate.queue_wait_prob``, ``queue_wait_s``); a
  percentile of the cluster TTFT is the instance's percentile plus the increase of that
  percentile of the wait when the network delay is added (exact for the two-atom-exponential
  laws, solved by bisection; never below the mean shift's lower bound 0). Deterministic costs
  (lookups, SSD exposure) shift every percentile.
* **Churn.** Losing one instance loses its 1/N of the shared level's contents when r = 1 (with
  r >= 2 every block survives and 1/N of the shared content is re-replicated); the hit-ratio
  dip and the re-warm time (the shared level's capacity / the put rate: the LRU's turnover
  time, an upper bound, the hot blocks return first) are reported. A pool server's loss drops
  1/servers of the pool hits. Scale-out: a hash placement moves 1/(N+1) of the shared bytes to
  a new instance; a writer-owned one moves none.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.catalog.hardware import get_calibration, get_gpu, get_link, get_memory

__all__ = ["PLACEMENT_FORMS", "p2p_table", "p2p_lookup", "p2p_shares", "ps_queue", "check_pool",
           "sum_wait_quantile", "PUT_POLICIES", "put_run_table", "put_loss", "ps_block_prob",
           "pool_admission", "pool_room_table", "pool_room_hit",
           "SharingFlows", "flows", "delays", "pool_cost_per_hour", "pool_prices", "pool_racks"]

PLACEMENT_FORMS = ("block_hash", "prefix_hash", "directory_writer")
_GRID = np.linspace(0.0, 1.0, 41)   # HBM hit ratio grid of the P2P tables
_LOCAL_KINDS = ("hbm", "dram", "cxl", "ssd")
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


# ---- P2P placement tables --------------------------------------------------------------------
def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser of int64 ids (a fixed, well-spread hash)."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _accesses(prof, assign: np.ndarray) -> dict[str, np.ndarray]:
    """Per access (trace order): requesting instance, dense block index, first access of the
    block, ticks since the block's previous access on the same instance (inf: none), the
    instance that first computed the block, and the request's first block id."""
    lens = np.diff(prof.block_offsets)
    req = np.repeat(np.arange(len(lens)), lens)
    inst = assign[req]
    _, b = np.unique(prof.block_ids, return_inverse=True)
    tick = np.arange(b.size)
    by_block = np.lexsort((tick, b))
    head = np.r_[True, b[by_block][1:] != b[by_block][:-1]]
    first = np.zeros(b.size, dtype=bool)
    first[by_block[head]] = True
    writer = np.empty(int(b.max()) + 1 if b.size else 0, dtype=np.int64)
    writer[b[by_block[head]]] = inst[by_block[head]]
    o = np.lexsort((tick, b, inst))
    same = (b[o][1:] == b[o][:-1]) & (inst[o][1:] == inst[o][:-1])
    gap = np.full(b.size, np.inf)
    gap[o[1:][same]] = np.diff(tick[o])[same]
    root = prof.block_ids[prof.block_offsets[:-1]][req] if b.size else b
    return dict(inst=inst, b=b, first=first, gap=gap, writer=writer[b], root=root)


def _owners(acc: dict, form: str, n: int, r: int) -> np.ndarray:
    """Owner of each copy (r x accesses): successive instances after the placement's owner."""
    if form == "block_hash":
        o0 = (_mix(acc["b"]) % np.uint64(n)).astype(np.int64)
    elif form == "prefix_hash":
        o0 = (_mix(acc["root"]) % np.uint64(n)).astype(np.int64)
    else:
        o0 = acc["writer"]
    return (o0[None, :] + np.arange(min(r, n))[:, None]) % n


def _table(acc: dict, form: str, n: int, r: int) -> dict[str, np.ndarray]:
    owners = _owners(acc, form, n, r)
    local = (owners == acc["inst"][None, :]).any(axis=0)
    if form == "directory_writer":
        local |= np.isfinite(acc["gap"])  # an instance keeps the blocks it used before
    M = acc["b"].size
    order = np.argsort(acc["gap"], kind="stable")  # HBM hits: the shortest per-instance gaps
    finite = int(np.isfinite(acc["gap"]).sum())
    cut = np.minimum(np.round(_GRID * M).astype(np.int64), finite)
    seg = np.searchsorted(cut, np.arange(M), side="right")  # grid points whose HBM set excludes
    cand = ~acc["first"][order]
    loc = (cand & local[order]).astype(float)
    remote = (cand & ~local[order]).astype(float)
    G = _GRID.size
    cand_n = np.cumsum(np.bincount(seg, cand.astype(float), G + 1)[::-1])[::-1]
    loc_n = np.cumsum(np.bincount(seg, loc, G + 1)[::-1])[::-1]
    k = owners.shape[0]
    idx = (seg[None, :] * n + owners[:, order]).ravel()
    load = np.bincount(idx, np.tile(remote / k, k), (G + 1) * n).reshape(G + 1, n)
    load = np.cumsum(load[::-1], axis=0)[::-1]
    # grid point j excludes the first cut[j] accesses: its candidates are segments > j
    cand_j, loc_j, load_j = cand_n[1:], loc_n[1:], load[1:]
    tot = load_j.sum(axis=1)
    fallback = min(1.0, r / n)
    local_share = np.where(cand_j > 0, loc_j / np.maximum(cand_j, 1.0), fallback)
    hot = np.where(tot > 0, load_j.max(axis=1) / np.where(tot > 0, tot, 1.0), 1.0 / n)
    writer_owns = float((owners == acc["inst"][None, :]).any(axis=0)[acc["first"]].mean()) \
        if acc["first"].any() else fallback
    return dict(local=local_share, hot=np.maximum(hot, 1.0 / n),
                put_copies=np.array(min(r, n) - (1.0 if form == "directory_writer"
                                                  else writer_owns)),
                put_hot=np.array(_put_hot(acc, owners, form, n)))


def _put_hot(acc: dict, owners: np.ndarray, form: str, n: int) -> float:
    """Busiest owner's share of the copies of inserted blocks written over the network."""
    f = acc["first"]
    ow = owners[:, f]
    if form == "directory_writer":
        ow = ow[1:]  # the writer keeps copy 0
    sent = ow[ow != acc["inst"][f][None, :]]
    cnt = np.bincount(sent, minlength=n)
    return float(max(cnt.max() / cnt.sum(), 1.0 / n)) if cnt.sum() else 1.0 / n


def p2p_table(prof, assign_fn, n: int, routing: str, eps: float, form: str,
              r: int) -> dict[str, np.ndarray]:
    """Placement table of a trace profile (memoised on it): over the HBM hit-ratio grid, the
    local share of shared-level hits (``local``) and the busiest owner's share of the peer
    traffic (``hot``); ``put_copies``: copies of an inserted block written over the network."""
    if form not in PLACEMENT_FORMS:
        raise ValueError(f"placement closed form {form!r}: allowed {PLACEMENT_FORMS}")
    key = ("p2p_table", form, n, routing, eps, int(r))
    if not prof.block_ids.size:  # a trace without KV blocks shares nothing: uniform owners
        share = min(1.0, int(r) / n)
        return dict(local=np.full(_GRID.size, share), hot=np.full(_GRID.size, 1.0 / n),
                    put_copies=np.array(min(int(r), n) - share), put_hot=np.array(1.0 / n))
    if key not in prof._cache:
        akey = ("p2p_access", n, routing, eps)
        if akey not in prof._cache:
            prof._cache[akey] = _accesses(prof, assign_fn())
        prof._cache[key] = _table(prof._cache[akey], form, n, int(r))
    return prof._cache[key]


def p2p_lookup(table_of, r, h_hbm) -> tuple[Any, Any, Any, Any]:
    """(local share, hot-owner share, put copies, busiest owner's share of the puts) at HBM hit
    ratio(s) ``h_hbm`` and replication(s) ``r`` (scalars or arrays); ``table_of(r)`` gives
    the table of one r."""
    if not xp.is_array(r, h_hbm):
        t = table_of(int(r))
        return (float(np.interp(h_hbm, _GRID, t["local"])),
                float(np.interp(h_hbm, _GRID, t["hot"])), float(t["put_copies"]),
                float(t["put_hot"]))
    r_a, h_a = np.broadcast_arrays(np.asarray(r, dtype=float), np.asarray(h_hbm, dtype=float))
    out = [np.empty(r_a.shape) for _ in range(4)]
    for rv in np.unique(r_a):
        m = r_a == rv
        t = table_of(int(rv))
        out[0][m] = np.interp(h_a[m], _GRID, t["local"])
        out[1][m] = np.interp(h_a[m], _GRID, t["hot"])
        out[2][m] = float(t["put_copies"])
        out[3][m] = float(t["put_hot"])
    return tuple(out)


# ---- queues ----------------------------------------------------------------------------------
def ps_queue(job_rate, service_s, rho) -> dict[str, Any]:
    """M/G/1 processor-sharing server: jobs/s ``job_rate``, mean service ``service_s`` (s),
    utilisation ``rho`` (= job_rate x service_s). Returns the mean slowdown delay beyond the
    service (``wait_s`` = rho S / (1 - rho)), its probability of being positive (``p_wait`` =
    rho), the mean response ``response_s`` = S / (1 - rho) and the mean number in the system
    ``L`` = job_rate x response_s (Little) = rho / (1 - rho); zeros where rho is 0 or >= 1."""
    ok = (rho > 0) & (rho < 1)
    r = xp.where(ok, rho, 0.0)
    s = xp.where(ok, service_s, 0.0)
    resp = s / (1 - r)
    lam = xp.where(ok, job_rate, 0.0)
    return dict(rho=rho, job_rate=lam, service_s=s, wait_s=r * s / (1 - r), p_wait=r,
                response_s=resp, L=lam * resp)


def _tail(t, a, ma, b, mb):
    """P(X + Y > t) for independent X = Bern(a) Exp(mean ma), Y = Bern(b) Exp(mean mb)."""
    ea = np.exp(-t / np.maximum(ma, 1e-300))
    eb = np.exp(-t / np.maximum(mb, 1e-300))
    close = np.abs(ma - mb) <= 1e-9 * np.maximum(ma, mb)
    d = np.where(close, 1.0, ma - mb)
    both = np.where(close, (1 + t / np.maximum(ma, 1e-300)) * ea, (ma * ea - mb * eb) / d)
    return a * (1 - b) * ea + b * (1 - a) * eb + a * b * both


def _single_quantile(p, pr, m):
    """p-quantile of Bern(pr) Exp(mean m): m ln(pr / (1 - p)) where pr > 1 - p, else 0."""
    q = 1.0 - p
    return np.where(pr > q, m * np.log(np.maximum(pr, 1e-300) / q), 0.0)


def sum_wait_quantile(p, a, ma, b, mb, iters: int = 32):
    """p-quantile(s) of X + Y (laws of :func:`_tail`; ``ma``, ``mb`` the conditional means;
    ``p`` may be an array broadcasting with the others), by bisection between the larger and
    the sum of the single quantiles at the halved tail (union bound)."""
    p, a, ma, b, mb = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (p, a, ma, b, mb)))
    q = 1.0 - p
    lo = np.maximum(_single_quantile(p, a, ma), _single_quantile(p, b, mb))
    hi = _single_quantile(1 - q / 2, a, ma) + _single_quantile(1 - q / 2, b, mb) + 1e-15
    for _ in range(iters):
        mid = (lo + hi) / 2
        above = _tail(mid, a, ma, b, mb) > q
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return hi


# ---- pool put admission -----------------------------------------------------------------------
PUT_POLICIES = ("all", "fraction", "throttle")
_RUN_J = 64                            # run positions tabulated (later ones lumped at the last)
_ADMIT_GRID = np.linspace(0.0, 1.0, 101)


def _run_rows(gap: np.ndarray, weight: np.ndarray, xs: np.ndarray) -> tuple:
    """Per reach ``x`` of ``xs``: hits (weighted) and their count by run position j = 1.._RUN_J
    (consecutive accesses with gap <= x since the block's last access with a longer gap; ``gap``
    in (block, time) order, ticks since the block's previous access, inf at its first)."""
    idx = np.arange(gap.size)
    h, rows = np.empty(xs.size), np.empty((xs.size, _RUN_J))
    for k, x in enumerate(xs):
        hit = gap <= x
        start = np.maximum.accumulate(np.where(hit, 0, idx))
        j = np.minimum(idx - start, _RUN_J)[hit]
        rows[k] = np.bincount(j, weight[hit], _RUN_J + 1)[1:]
        h[k] = rows[k].sum()
    return h, rows


def put_run_table(prof) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative single-cache hit ratio grid, share of lost hits at admission a): the table
    ``(h_grid, loss[g, i])`` of :func:`put_loss` at ``_ADMIT_GRID[i]``, measured once on the
    trace (memoised on the profile): the reach of an LRU at hit ratio h, the hits' run
    positions j, and loss = sum_j n_j (1 - a)^j / sum_j n_j (module doc)."""
    key = ("put_run_table",)
    if key in prof._cache:
        return prof._cache[key]
    acc = _accesses(prof, np.zeros(prof.n_requests, dtype=np.int64))   # one cache
    order = np.lexsort((np.arange(acc["b"].size), acc["b"]))           # by (block, time)
    gap, weight = acc["gap"][order], np.ones(order.size)
    finite = np.sort(gap[np.isfinite(gap)])
    xs = (np.r_[finite[np.linspace(0, finite.size - 1, 40).astype(np.int64)], np.inf]
          if finite.size else np.array([np.inf]))
    h, rows = _run_rows(gap, weight, xs)
    pw = (1.0 - _ADMIT_GRID)[:, None] ** np.arange(1, _RUN_J + 1)[None, :]   # [A, J]
    loss = rows @ pw.T / np.maximum(h, 1e-300)[:, None]                       # [G, A]
    h_grid = np.r_[0.0, h / max(prof.total_accesses, 1)]
    loss = np.vstack([loss[:1], loss])
    prof._cache[key] = (h_grid, loss)
    return prof._cache[key]


def put_loss(prof, h_cum, admit):
    """Share of the pool level's hits lost when a share ``admit`` of the puts is admitted, at
    the pool's cumulative hit ratio ``h_cum`` (bilinear in the table of :func:`put_run_table`;
    scalars or arrays)."""
    return _loss_at(_loss_row(prof, h_cum), admit)


def _loss_row(prof, h_cum) -> np.ndarray:
    """The loss table's row at ``h_cum`` (linear between grid rows): [..., admission grid]."""
    h_grid, loss = put_run_table(prof)
    h = np.clip(np.asarray(h_cum, dtype=float), h_grid[0], h_grid[-1])
    g = np.clip(np.searchsorted(h_grid, h, side="right") - 1, 0, h_grid.size - 2)
    span = h_grid[g + 1] - h_grid[g]
    fg = np.where(span > 0, (h - h_grid[g]) / np.where(span > 0, span, 1.0), 0.0)
    return loss[g] * (1 - fg)[..., None] + loss[g + 1] * fg[..., None]


def _loss_at(row: np.ndarray, admit):
    """A loss row (:func:`_loss_row`) at admission(s) ``admit`` (linear on its grid)."""
    if row.ndim == 1 and np.ndim(admit) == 0:
        return float(np.interp(min(max(float(admit), 0.0), 1.0), _ADMIT_GRID, row))
    a = np.clip(np.asarray(admit, dtype=float), 0.0, 1.0)
    a = np.broadcast_to(a, np.broadcast_shapes(a.shape, row.shape[:-1]))
    i = np.clip((a * (_ADMIT_GRID.size - 1)).astype(np.int64), 0, _ADMIT_GRID.size - 2)
    fa = a * (_ADMIT_GRID.size - 1) - i
    row = np.broadcast_to(row, a.shape + row.shape[-1:])
    out = (np.take_along_axis(row, i[..., None], -1)[..., 0] * (1 - fa)
           + np.take_along_axis(row, (i + 1)[..., None], -1)[..., 0] * fa)
    return float(out) if out.ndim == 0 else out


def ps_block_prob(rho, k: int):
    """Blocking probability of an M/G/1-PS queue holding at most ``k`` jobs at offered load
    ``rho``: (1 - rho) rho^k / (1 - rho^(k+1)) (1/(k+1) at rho = 1; insensitive, PASTA)."""
    if np.ndim(rho) == 0:
        x = max(float(rho), 0.0)
        r = 1.0 / x if x > 1.0 else x                     # the form in r <= 1
        if abs(1.0 - r) < 1e-9:
            return 1.0 / (k + 1)
        return (1.0 - r) / (1.0 - r ** (k + 1)) * (1.0 if x > 1.0 else r ** k)
    rho = np.maximum(np.asarray(rho, dtype=float), 0.0)
    r = np.where(rho > 1.0, 1.0 / np.maximum(rho, 1e-300), rho)   # the form in r <= 1
    one = np.abs(1.0 - r) < 1e-9
    rs = np.where(one, 0.5, r)
    tail = (1.0 - rs) * rs ** k / (1.0 - rs ** (k + 1))            # rho <= 1
    over = (1.0 - rs) / (1.0 - rs ** (k + 1))                       # rho > 1 (r = 1/rho)
    return np.where(one, 1.0 / (k + 1), np.where(rho > 1.0, over, tail))


def _put_capacity(pl, pool_Bps: dict, get_load_Bps):
    """Bytes/s the put path of the pools takes: NIC ingress, SSD writes, DRAM left by gets."""
    has_ssd = pl.ssd_B > 0
    dram = xp.maximum(pool_Bps["dram"] - get_load_Bps, 1e-9 * pool_Bps["dram"])
    cap = xp.minimum(pool_Bps["nic"], dram / xp.where(has_ssd, 2.0, 1.0))
    return xp.where(has_ssd, xp.minimum(cap, xp.where(has_ssd, pool_Bps["ssd_wr"], 1.0)), cap)


def _pool_Bps(pl) -> dict[str, Any]:
    """Bandwidths (bytes/s, one pool, all its servers): NIC, DRAM, SSD read and write."""
    nic = get_link(pl.nic).achieved_bw_Bps * pl.nics * pl.servers
    mem, nvme = get_memory(pl.memory), get_memory(pl.nvme)
    drives = xp.where(pl.ssd_B > 0, xp.maximum(1.0, xp.ceil(pl.ssd_B / nvme.capacity_B)), 0.0)
    return dict(nic=nic, dram=mem.socket_read_bw_Bps * pl.sockets * pl.servers,
                ssd_rd=drives * nvme.read_bw_Bps * pl.servers,
                ssd_wr=drives * nvme.write_bw_Bps * pl.servers)


def pool_admission(c, w, hits, block_B, rate, racks: int, h_pool_dram, curve=None):
    """(hits with the pool level's lost hits removed, admitted share of the puts, lost pool
    hit ratio, re-offered local hits) under ``PoolSpec.put_policy`` (module doc); ``hits``
    unchanged for "all". With ``curve`` (one pool's capacity in blocks -> the cluster's hit
    ratio through it) the pool's hit grows with the room dropped puts leave
    (:func:`pool_room_hit`), so the offered puts, the admission and the losses are solved
    together."""
    pl = c.pool
    if "pool" not in hits or pl.put_policy == "all":
        return hits, 1.0, 0.0, 0.0
    h_prev = sum(v for k, v in hits.items() if k != "pool")
    cum = _room_cum(c, w, hits, block_B, (racks, curve), h_prev)
    if pl.put_policy == "fraction":
        a = pl.put_admission + 0.0 * hits["pool"]
    else:
        per_req = w.blocks_per_request * block_B * rate / racks     # B/s of one pool
        bw = _pool_Bps(pl)
        hp = hits["pool"]
        get_ssd = xp.maximum(hp - xp.minimum(h_pool_dram, hp), 0.0)
        cap = _put_capacity(pl, bw, per_req * (hp + get_ssd))
        a = _fixed_point(w.profile, cum, per_req / cap, pl.put_queue_limit,
                         xp.is_array(hp, rate, cap))
    h_cum = cum(a)
    hp = h_cum - h_prev
    loss = _loss_at(_loss_row(w.profile, h_cum), a)
    return dict(hits, pool=hp - hp * loss), a, hp * loss, h_prev * loss


def _put_rho(prof, cum, rho_req, a):
    """Offered put load at admission ``a``: ``rho_req`` (one request's whole chain, as a share
    of the put path) x (misses + hits lost to earlier drops), at the pool's hit ``cum(a)``."""
    h = cum(a)
    if isinstance(h, float) and isinstance(a, float):
        return rho_req * ((1.0 - h) + h * _loss_scalar(prof, h, a))
    return rho_req * ((1.0 - h) + h * _loss_at(_loss_row(prof, h), a))


def _loss_scalar(prof, h: float, a: float) -> float:
    """:func:`put_loss` for one (h, a) in plain Python (the bisection's inner loop)."""
    key = ("put_run_lists",)
    if key not in prof._cache:
        h_grid, loss = put_run_table(prof)
        prof._cache[key] = (h_grid.tolist(), loss.tolist())
    h_grid, loss = prof._cache[key]
    h = min(max(h, h_grid[0]), h_grid[-1])
    g = min(max(bisect.bisect_right(h_grid, h) - 1, 0), len(h_grid) - 2)
    span = h_grid[g + 1] - h_grid[g]
    fg = (h - h_grid[g]) / span if span > 0 else 0.0
    n = _ADMIT_GRID.size - 1
    x = min(max(a, 0.0), 1.0) * n
    i = min(int(x), n - 1)
    fa = x - i
    lo, hi = loss[g], loss[g + 1]
    return ((lo[i] * (1 - fg) + hi[i] * fg) * (1 - fa)
            + (lo[i + 1] * (1 - fg) + hi[i + 1] * fg) * fa)


def _fixed_point(prof, cum, rho_req, k: int, vector: bool):
    """Admission a = 1 - P_K(rho(a)) (:func:`_put_rho`), by bisection (a - g(a) rises from
    <= 0 at a = 0 to >= 0 at 1); the lower end, so the admitted put load stays below the
    path's bandwidth."""
    if not vector:
        lo, hi = 0.0, 1.0
        for _ in range(24):
            mid = (lo + hi) / 2
            if mid >= 1.0 - ps_block_prob(_put_rho(prof, cum, rho_req, mid), k):
                hi = mid
            else:
                lo = mid
        return lo
    lo, hi = np.zeros(np.shape(rho_req)), np.ones(np.shape(rho_req))
    for _ in range(24):
        mid = (lo + hi) / 2
        up = mid >= 1.0 - ps_block_prob(_put_rho(prof, cum, rho_req, mid), k)
        lo, hi = np.where(up, lo, mid), np.where(up, mid, hi)
    return lo


# ---- the room dropped puts leave in the pool's LRU ---------------------------------------------
_ROOM_GRID = 96                        # capacities tabulated (geometric, 1 .. distinct blocks)


def pool_room_table(prof, curve, key: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(capacity k, hit ratio H(k), misses in the LRU's window (1 - H(k)) tau(k)) of one
    pool's LRU curve ``curve`` (capacities -> hit ratio), memoised on the profile under
    ``key``. tau(k) = integral of dk' / (1 - H(k')) is the window, in accesses, in which the
    stream touches k distinct blocks (an LRU of k blocks: the working-set relation
    dD/dt = miss ratio at size D)."""
    key = ("pool_room",) + key
    if key not in prof._cache:
        k = np.r_[0.0, np.geomspace(1.0, max(float(prof.unique_blocks), 2.0), _ROOM_GRID)]
        H = np.minimum(np.asarray(curve(k), dtype=float), 1.0 - 1e-9)
        inv = 1.0 / (1.0 - H)
        tau = np.r_[0.0, np.cumsum(np.diff(k) * (inv[1:] + inv[:-1]) / 2.0)]
        prof._cache[key] = (k, H, (1.0 - H) * tau)
    return prof._cache[key]


def pool_room_hit(table, cap, admit):
    """Hit ratio of an LRU of ``cap`` blocks (scalars or arrays) that stores only a share
    ``admit`` of the blocks offered to it (table: :func:`pool_room_table`).

    Within the window of an admit-all LRU of k blocks the stream touches k distinct blocks;
    those whose first access there is a miss, (1 - H(k)) tau(k), are offered, and a share
    1 - a of them is dropped and takes no room. The pool of ``cap`` blocks therefore reaches
    as far as an admit-all LRU of k' blocks, k' - (1 - a)(1 - H(k')) tau(k') = cap (the
    left side rises with k'), and hits H(k'); a = 1 gives k' = cap. First order: a dropped
    block re-offered and admitted later in the same window is counted as room."""
    k, H, miss_w = table
    if np.ndim(cap) == 0:
        a_n, h_n = _room_nodes(table, float(cap))
        out = np.interp(admit, a_n, h_n)
        return float(out) if np.ndim(out) == 0 else out
    cap = np.asarray(cap, dtype=float)[..., None]
    A = np.where(k > cap, 1.0 - (k - cap) / np.maximum(miss_w, 1e-300), np.inf)
    A = np.minimum.accumulate(A, axis=-1)                      # [..., K], falls where k > cap
    a = np.asarray(admit, dtype=float)[..., None]
    A, a = np.broadcast_arrays(A, a)
    j0 = (k <= cap).sum(-1)                                    # first node beyond cap
    j = np.broadcast_to(j0, A.shape[:-1]) + np.maximum((A >= a).sum(-1) - j0, 0)
    hc = np.broadcast_to(np.interp(cap[..., 0], k, H), A.shape[:-1])
    left = j > np.broadcast_to(j0, j.shape)
    jl, jr = np.clip(j - 1, 0, k.size - 1), np.clip(j, 0, k.size - 1)
    a_l = np.where(left, np.take_along_axis(A, jl[..., None], -1)[..., 0], 1.0)
    h_l = np.where(left, H[jl], hc)
    a_r = np.take_along_axis(A, jr[..., None], -1)[..., 0]
    f = np.clip((a_l - a[..., 0]) / np.maximum(a_l - a_r, 1e-300), 0.0, 1.0)
    return np.where(j >= k.size, h_l, h_l + f * (H[jr] - h_l))


def _room_nodes(table, cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Admission a at which an admit-all reach of each tabulated k > cap fills ``cap``
    (increasing), and the hit there; the last node (a = 1, the curve at cap)."""
    k, H, miss_w = table
    beyond = k > cap
    A = np.minimum.accumulate(1.0 - (k[beyond] - cap) / np.maximum(miss_w[beyond], 1e-300))
    return np.r_[A[::-1], 1.0], np.r_[H[beyond][::-1], np.interp(cap, k, H)]


def _room_cum(c, w, hits, block_B, pools: tuple, h_prev):
    """The pool's cumulative hit ratio as a function of the admission a: the evaluated one
    (``hits``, at a = 1) raised by the room of :func:`pool_room_hit` (LRU pools with a
    ``curve``; ``pools`` = (racks, curve))."""
    h0 = h_prev + hits["pool"]
    racks, curve = pools
    if c.eviction != "lru" or curve is None:
        return lambda a: h0
    key = (racks, c.routing if racks > 1 else "single", c.epsilon)
    table = pool_room_table(w.profile, curve, key)
    cap = c.pool.servers * (c.pool.dram_B + c.pool.ssd_B) / block_B
    if np.all(cap >= table[0][-1]):                         # holds every block: no room to gain
        return lambda a: h0
    if np.ndim(cap) or np.ndim(h0):
        base = pool_room_hit(table, cap, 1.0)
        ref = xp.where(hits["pool"] > 0, h0, base)          # the pool curve's own value at cap
        return lambda a: xp.maximum(h0, ref + pool_room_hit(table, cap, a) - base)
    a_n, h_n = (v.tolist() for v in _room_nodes(table, float(cap)))
    base = h_n[-1]
    ref = h0 if hits["pool"] > 0 else base

    def cum(a):       # the scalar bisection's: np.interp on the nodes, in plain Python
        if not isinstance(a, float):
            return np.maximum(h0, ref + np.interp(a, a_n, h_n) - base)
        i = bisect.bisect_right(a_n, a)
        if i == 0 or i == len(a_n):
            h = h_n[0] if i == 0 else h_n[-1]
        else:
            x0, x1 = a_n[i - 1], a_n[i]
            h = h_n[i - 1] + (a - x0) / (x1 - x0) * (h_n[i] - h_n[i - 1]) if x1 > x0 else h_n[i]
        return max(h0, ref + h - base)
    return cum


# ---- flows of a configuration ----------------------------------------------------------------
class SharingFlows(dict):
    """What :func:`flows` computes: ``util`` (utilisation per resource, >= 1 saturated),
    ``queues`` (per resource, :func:`ps_queue`), ``fixed_s`` (deterministic per-request delay),
    ``detail`` (bytes/s, shares, churn: :attr:`ClusterResult.sharing`)."""


def pool_racks(c, nodes: int) -> int:
    """Pools in the cluster: 1 (scope cluster) or one per rack of ``rack_nodes`` nodes."""
    if c.pool.scope == "cluster":
        return 1
    return max(1, math.ceil(nodes / c.pool.rack_nodes))


def _pool_rtt(c) -> float:
    v = c.pool.metadata_rtt_s
    return get_calibration()["pool_metadata_rtt"].si if v is None else v


def _pool(c, w, hits, block_B, rate, racks: int, h_pool_dram, instance_Bps,
          admit=(1.0, 0.0, 0.0)) -> SharingFlows:
    """Central pool: NIC out (gets) and in (puts), DRAM and SSD bandwidth, per pool; ``admit``:
    (share of the offered puts written, pool hit ratio the drops cost, local hits re-offered)."""
    admit, lost, reoffer = admit
    pl = c.pool
    bw = _pool_Bps(pl)
    nic, dram_Bps, ssd_rd, ssd_wr = bw["nic"], bw["dram"], bw["ssd_rd"], bw["ssd_wr"]
    per_req = w.blocks_per_request * block_B
    lam = rate / racks                                  # requests/s reaching one pool
    total = sum(hits.values())
    get_dram = xp.minimum(h_pool_dram, hits["pool"])
    get_ssd = xp.maximum(hits["pool"] - get_dram, 0.0)
    get_ssd = xp.where(get_ssd > 1e-12, get_ssd, 0.0)  # rounding residue
    offered = xp.maximum(0.0, 1.0 - total) + reoffer    # recomputed (or absent) blocks offered
    put = offered * admit                               # ... and written
    Bps = {k: lam * f * per_req for k, f in (("get", hits["pool"]), ("get_dram", get_dram),
                                              ("get_ssd", get_ssd), ("put", put))}
    has_ssd = pl.ssd_B > 0
    util = {"pool_nic": Bps["get"] / nic, "pool_nic_in": Bps["put"] / nic,
            "pool_dram": (Bps["get"] + Bps["get_ssd"] + Bps["put"]
                          + xp.where(has_ssd, Bps["put"], 0.0)) / dram_Bps}
    if xp.any_true(has_ssd):
        util["pool_ssd"] = xp.where(has_ssd, Bps["get_ssd"] / xp.where(has_ssd, ssd_rd, 1.0), 0.0)
        util["pool_ssd_write"] = xp.where(has_ssd, Bps["put"] / xp.where(has_ssd, ssd_wr, 1.0),
                                          0.0)
    q = {"pool_nic": ps_queue(lam, hits["pool"] * per_req / nic, util["pool_nic"])}
    ssd_s = xp.where(has_ssd, get_ssd * per_req / xp.where(has_ssd, ssd_rd, 1.0), 0.0)
    if "pool_ssd" in util:
        q["pool_ssd"] = ps_queue(lam, ssd_s, util["pool_ssd"])
    # SSD reads pipeline into the NIC send the instance already pays for: only the part slower
    # than the instance's own network share is exposed
    exposed = xp.maximum(0.0, ssd_s - get_ssd * per_req / instance_Bps)
    cap_B = pl.servers * (pl.dram_B + pl.ssd_B)
    detail = {"pool_get_Bps": Bps["get"] * racks, "pool_put_Bps": Bps["put"] * racks,
              "pool_get_dram": get_dram, "pool_get_ssd": get_ssd,
              "pool_metadata_s": _pool_rtt(c) + 0.0 * total, "pool_racks": float(racks) + 0.0 * total,
              "churn_pool_server_dip": hits["pool"] / pl.servers,
              "churn_rewarm_s": xp.where(Bps["put"] > 0, cap_B / xp.where(Bps["put"] > 0,
                                                                          Bps["put"], 1.0), math.inf)}
    if pl.put_policy != "all":
        offered_Bps = lam * offered * per_req * racks
        detail.update(pool_put_admitted=admit + 0.0 * total, pool_put_offered_Bps=offered_Bps,
                      pool_put_dropped_Bps=offered_Bps - Bps["put"] * racks,
                      pool_hit_lost=lost + 0.0 * total)
    return SharingFlows(util=util, queues=q, fixed_s=_pool_rtt(c) + exposed, detail=detail)


def _p2p(c, w, node, hits, block_B, rate, n, shares, peer_Bps, dram_B_inst) -> SharingFlows:
    """P2P: the hottest owner's NIC out (gets) and its PCIe uplink; NIC in (puts), lookups."""
    local_share, hot, put_copies, put_hot, form = shares
    per_req = w.blocks_per_request * block_B
    peer_B = rate * hits["peer"] * per_req              # peer gets, whole cluster, B/s
    put_B = rate * xp.maximum(0.0, 1.0 - sum(hits.values())) * per_req * put_copies
    put_B = xp.where(dram_B_inst > 0, put_B, 0.0)  # no DRAM tier: nothing shared, no puts
    out_hot = peer_B * hot
    gpu = get_gpu(c.gpu)
    uplink = get_link(gpu.host_link).achieved_bw_Bps * _gpus(c)  # one PCIe uplink per GPU
    dram_B = rate * hits.get("dram", 0.0) * per_req / n      # the owner's own DRAM loads
    in_hot = put_B * put_hot                            # puts reaching the busiest receiver
    util = {"peer_nic_hottest": out_hot / peer_Bps, "peer_nic_in": in_hot / peer_Bps,
            "peer_pcie_hottest": xp.maximum(out_hot + dram_B, in_hot) / uplink}
    # per-block hashing spreads a request's peer blocks over the owners (every request is a
    # job at the hot owner with its share); per-prefix and writer placements send a request's
    # peer blocks to one owner (the hot owner sees its share of the requests, whole transfers)
    per_job = 1.0 if form == "block_hash" else hot
    job_rate = rate * per_job
    service = xp.where(job_rate > 0, out_hot / peer_Bps / xp.where(job_rate > 0, job_rate, 1.0),
                       0.0)
    q = {"peer_nic_hottest": ps_queue(job_rate, service, util["peer_nic_hottest"])}
    shared = hits.get("dram", 0.0) + hits["peer"]
    r = c.p2p.replication
    detail = {"peer_get_Bps": peer_B, "peer_put_Bps": put_B, "peer_local_share": local_share,
              "peer_hot_owner_share": hot, "peer_put_hot_share": put_hot,
              "churn_instance_loss_dip": xp.where(r > 1, 0.0, shared / n),
              "churn_rereplicate_B": xp.where(r > 1, _p2p_bytes(c, dram_B_inst, n) / n, 0.0),
              # adding an instance: hashing moves 1/(N+1) of the shared blocks to it; a
              # writer-owned placement moves nothing (the new instance fills as it computes)
              "churn_scale_out_move_B": (0.0 if form == "directory_writer"
                                         else _p2p_bytes(c, dram_B_inst, n) / (n + 1)),
              "churn_rewarm_s": xp.where(put_B > 0, _p2p_bytes(c, dram_B_inst, n)
                                         / xp.where(put_B > 0, put_B, 1.0), math.inf)}
    lookup = xp.where(hits["peer"] > 0, _p2p_lookup_s(c, form), 0.0)
    return SharingFlows(util=util, queues=q, fixed_s=lookup, detail=detail)


def _gpus(c) -> int:
    """GPUs of one owner instance, each with its PCIe uplink: its EP group with DP attention (on
    every node it spans), else its TP group."""
    from kvmodel.cluster import gpus_per_instance
    return gpus_per_instance(c)


def _p2p_lookup_s(c, form: str):
    """Seconds of the owner lookup per request with a peer hit: the user's, else a directory
    round trip (calibration ``pool_metadata_rtt``) for the writer-owned placement, 0 for hashes."""
    if c.p2p.lookup_latency_s is not None:
        return c.p2p.lookup_latency_s
    return get_calibration()["pool_metadata_rtt"].si if form == "directory_writer" else 0.0


def _p2p_bytes(c, dram_B, n):
    """Bytes of distinct blocks held in the shared DRAM level (N x C_dram / r)."""
    return n * dram_B / c.p2p.replication


def flows(c, w, node, hits, block_B, rate, n, *, racks=1, h_pool_dram=0.0, shares=None,
          peer_Bps=1.0, instance_Bps=1.0, dram_B_inst=0.0,
          admit=(1.0, 0.0, 0.0)) -> SharingFlows:
    """Traffic, utilisations and queues of the cluster's sharing mode (empty for ``none``).
    Each queue's arrival rate, mean response and mean number in system (Little's law) are
    copied into ``detail`` as ``queue_<name>_jobs_per_s``, ``_response_s``, ``_in_system``."""
    if "pool" in hits:
        f = _pool(c, w, hits, block_B, rate, racks, h_pool_dram, instance_Bps, admit)
    elif "peer" in hits:
        f = _p2p(c, w, node, hits, block_B, rate, n, shares, peer_Bps, dram_B_inst)
    else:
        return SharingFlows(util={}, queues={}, fixed_s=0.0, detail={})
    for name, q in f["queues"].items():
        f["detail"].update({f"queue_{name}_jobs_per_s": q["job_rate"],
                            f"queue_{name}_response_s": q["response_s"],
                            f"queue_{name}_in_system": q["L"]})
    return f


# ---- delays ----------------------------------------------------------------------------------
def _waits(f: SharingFlows, m: dict[str, Any]):
    """(instance wait prob, its conditional mean, network delay prob, conditional mean, mean
    network delay): the two atom-plus-exponential laws of :func:`delays`."""
    mean, none = 0.0, 1.0
    for q in f["queues"].values():
        mean = mean + q["wait_s"]
        none = none * (1 - q["p_wait"])
    pn = 1 - none
    pi = xp.minimum(xp.maximum(m["pwait"], 0.0), 1.0)
    wi = m["wait"]
    mn = xp.where(pn > 0, mean / xp.where(pn > 0, pn, 1.0), 0.0)
    good = (wi < math.inf) & (mn < math.inf) & (pn > 0)
    mi = xp.where((pi > 0) & good, wi / xp.where(pi > 0, pi, 1.0), 0.0)
    return (xp.where(good, pi, 0.0), xp.where(good, mi, 0.0), xp.where(good, pn, 0.0),
            xp.where(good, mn, 0.0), mean)


def _quantile_scalar(p: float, a: float, ma: float, b: float, mb: float) -> float:
    """:func:`sum_wait_quantile` minus the instance-only quantile, on Python floats: bisection
    on the tail ``a(1−b)·e^(−t/ma) + b(1−a)·e^(−t/mb) + ab·both(t)``, its constant factors
    computed once (the same operations, in the same order, at every step)."""
    q = 1.0 - p

    def single(pp, pr, mm):
        return mm * math.log(pr / (1.0 - pp)) if pr > 1.0 - pp else 0.0
    ca, cb, cab = a * (1 - b), b * (1 - a), a * b
    same = abs(ma - mb) <= 1e-9 * max(ma, mb)
    dm = ma - mb
    alone = single(p, a, ma)
    lo = max(alone, single(p, b, mb))
    hi = single(1 - q / 2, a, ma) + single(1 - q / 2, b, mb) + 1e-15
    if ma > 0 and mb > 0 and not same:  # the common case, its branches taken once
        hi = _bisect_apart(q, lo, hi, (ca, cb, cab), ma, mb, dm)
        return max(hi - alone, 0.0)
    for _ in range(32):
        mid = (lo + hi) / 2
        ea = math.exp(-mid / ma) if ma > 0 else 0.0
        eb = math.exp(-mid / mb) if mb > 0 else 0.0
        if same:
            both = (1 + mid / ma) * ea if ma > 0 else 0.0
        else:
            both = (ma * ea - mb * eb) / dm
        if ca * ea + cb * eb + cab * both > q:
            lo = mid
        else:
            hi = mid
    return max(hi - alone, 0.0)


def _bisect_apart(q: float, lo: float, hi: float, coef: tuple, ma: float, mb: float,
                  dm: float) -> float:
    """:func:`_quantile_scalar`'s bisection where both means are positive and apart: the
    same operations in the same order, without the branches of the other cases."""
    ca, cb, cab = coef
    exp = math.exp
    for _ in range(32):
        mid = (lo + hi) / 2
        ea = exp(-mid / ma)
        eb = exp(-mid / mb)
        if ca * ea + cb * eb + cab * ((ma * ea - mb * eb) / dm) > q:
            lo = mid
        else:
            hi = mid
    return hi


def delays(f: SharingFlows, m: dict[str, Any]) -> dict[str, Any]:
    """Per-request delay outside the compute pipeline: its mean and the increase of each TTFT
    percentile (``p50``, ``p90``, ``p99``), from the network queues convolved with the
    instance's wait (module doc)."""
    fixed = f["fixed_s"]
    if not f["queues"]:
        return {"mean": fixed, **{k: fixed for k in PERCENTILES}}
    pi, mi, pn, mn, mean = _waits(f, m)
    out = {"mean": fixed + mean}
    if not xp.is_array(pi, mi, pn, mn, fixed):
        for k, p in PERCENTILES.items():
            out[k] = fixed + (_quantile_scalar(p, pi, mi, pn, mn) if pn > 0 else 0.0)
        return out
    ps = np.array(list(PERCENTILES.values())).reshape((-1,) + (1,) * np.ndim(pn))
    inc = np.maximum(sum_wait_quantile(ps, pi, mi, pn, mn) - _single_quantile(ps, pi, mi), 0.0)
    for i, k in enumerate(PERCENTILES):
        out[k] = fixed + inc[i]
    return out


# ---- cost ------------------------------------------------------------------------------------
def pool_prices(pool) -> tuple[float, float]:
    """(server, port) purchase prices in USD: the user's ``PoolSpec.server_cost_usd`` /
    ``port_cost_usd``, or where None the sourced ``hardware_db/calibration.toml`` prices: a
    2-socket storage server without media (``pool_server_price``) and one ConnectX-7 400G NIC
    plus its share of a 64-port 400G switch (``pool_nic_price + pool_switch_port_price``)."""
    cal = get_calibration()
    server = cal["pool_server_price"].si if pool.server_cost_usd is None else pool.server_cost_usd
    port = (cal["pool_nic_price"].si + cal["pool_switch_port_price"].si
            if pool.port_cost_usd is None else pool.port_cost_usd)
    return server, port


def pool_cost_per_hour(c, nodes: int, hours: float) -> Any:
    """$/h of the pools: media (DRAM, SSD) plus servers and their NIC ports (prices:
    :func:`pool_prices`), amortised over ``hours``, times the number of pools."""
    pl = c.pool
    media = (pl.dram_B * get_memory(pl.memory).price_per_B
             + pl.ssd_B * get_memory(pl.nvme).price_per_B)
    server, port = pool_prices(pl)
    per_server = media + server + pl.nics * port
    return pool_racks(c, nodes) * pl.servers * per_server / hours


# ---- P2P shares of a configuration -----------------------------------------------------------
def p2p_shares(prof, assign_fn, n: int, routing: str, eps: float, form: str, r, h_hbm):
    """(local share, hot-owner share, put copies, put hot share, form) of a P2P configuration
    at HBM hit ratio(s) ``h_hbm`` (see :func:`p2p_table`); ``assign_fn()``: instance of each
    request."""
    eps_key = eps if routing == "prefix_affinity_bounded" else None

    def table_of(rv: int):
        return p2p_table(prof, assign_fn, n, routing, eps_key, form, rv)
    return (*p2p_lookup(table_of, r, h_hbm), form)


def check_pool(pool) -> None:
    """Validate the PoolSpec fields this module reads (ValueError naming field and value)."""
    if pool.scope not in ("cluster", "rack"):
        raise ValueError(f"pool.scope={pool.scope!r}: allowed 'cluster' or 'rack'")
    if pool.put_policy not in PUT_POLICIES:
        raise ValueError(f"pool.put_policy={pool.put_policy!r}: allowed {PUT_POLICIES}")
    a = pool.put_admission
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a <= 1:
        raise ValueError(f"pool.put_admission={a!r}: must be a number in (0, 1] (share of "
                         "puts admitted)")
    for name, lo in (("rack_nodes", 1), ("sockets", 1), ("put_queue_limit", 1)):
        v = getattr(pool, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"pool.{name}={v!r}: must be an integer >= {lo}")
    for name in ("server_cost_usd", "port_cost_usd", "metadata_rtt_s"):
        v = getattr(pool, name)
        if v is None:  # metadata_rtt_s: the calibration's; prices: hardware_db's (pool_prices)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
            raise ValueError(f"pool.{name}={v!r}: must be a finite number >= 0")
