"""Cluster model: N serving instances (colocated, or prefill and decode pools) sharing KV
through local tiers only, a central pool, or peer to peer — closed form, about a millisecond.

``evaluate(cluster, workload)`` combines:

1. **Reuse.** The workload's analytic reuse profile gives the hit ratio H(C) of each cache
   level (per-instance levels under the routing policy; shared levels as one cache), split by
   cumulative capacity as in :mod:`kvmodel.placement`. Central pool: a global LRU of the pool's
   capacity (inclusive of the local tiers). P2P: the peers' DRAM forms one cache of
   N·C_dram / replication blocks; a hit is local with probability replication/N, else fetched
   from its owner over RDMA after the lookup latency (rendezvous/consistent hashing: 0 unless
   given; directory: its latency).
2. **Network.** Pool NICs carry every pool hit: utilisation ρ = demand / (servers × NICs × NIC
   bandwidth), an M/D/1 wait ρ/(2(1−ρ)) per transfer; ρ ≥ 1 caps the served rate. Peer NICs
   carry remote hits; the owner of the hottest block (the most shared prefix) carries
   ``max(1/N, p_top/replication)`` of them (hot spot).
3. **Instances.** ``kvmodel.estimate(request_rate=...)`` per instance at its share of the load
   (busiest instance for stability and percentiles, load imbalance of the routing from its
   assignment), with the cached prefix loaded from the tier mix. Disaggregated: prefill
   instances (output_len=1), KV streamed layer by layer to decode instances over NVLink (same
   node) or RDMA, decode instances with the prompt's KV already in HBM.
4. **Cost.** Nodes at their $/h, extra DRAM/CXL/SSD and pool media amortised over
   ``hardware_amortization`` hours; $/Mtok; goodput = served rate × P(TTFT ≤ SLO) × P(TPOT ≤ SLO).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ._estimate import Estimate, estimate
from ._queueing import normal_quantile
from ._reuse_analytic import ReuseProfile, analytic_hit_ratio_curve, reuse_profile
from ._trace_types import Trace
from .hardware import get_calibration, get_gpu, get_link, get_memory, get_node
from .models import get_model
from .tiers import Tier, TransferPath, default_node_for_gpu, node_tiers

__all__ = ["Cluster", "PoolSpec", "P2PSpec", "Workload", "ClusterResult", "evaluate", "SHARING",
           "load_cluster_config"]

SHARING = ("none", "central_pool", "p2p")
_ROUTINGS = ("random", "round_robin", "least_loaded", "prefix_affinity", "prefix_affinity_bounded",
             "dynamo", "llmd", "sglang", "mooncake")
# cache + load cost functions trade hit ratio against balance; in the closed form they are
# bounded prefix affinity with the cluster's epsilon (their exact rules run in kvmodel.sim)
_AS_BOUNDED = ("dynamo", "llmd", "sglang", "mooncake")


@dataclass(frozen=True)
class PoolSpec:
    """Central KV pool (Mooncake-Store / LMCache-server like): DRAM (+SSD) servers behind NICs."""
    servers: int = 4
    dram_B: float = 1e12
    ssd_B: float = 0.0
    nic: str = "roce-400g"
    nics: int = 2
    memory: str = "ddr5-4800"
    nvme: str = "nvme-gen5"


@dataclass(frozen=True)
class P2PSpec:
    """Peer-to-peer sharing of the instances' DRAM tiers."""
    placement: str = "rendezvous"       # rendezvous | consistent_hash | directory
    lookup_latency_s: float = 0.0       # directory lookups (e.g. a Redis/etcd round trip)
    replication: int = 1                # copies of each block (hot prefixes spread)


@dataclass(frozen=True)
class Cluster:
    model: str
    gpu: str
    instances: int = 8
    tp: int = 8
    precision: str = "fp8"
    prefill_instances: int = 0          # > 0 with decode_instances: P/D disaggregation
    decode_instances: int = 0
    decode_gpu: str | None = None
    sharing: str = "none"
    routing: str = "round_robin"
    epsilon: float = 0.25
    node: str | None = None
    hbm_cache_fraction: float = 0.3     # share of each instance's KV pool kept as prefix cache
    dram_B: float | None = None         # per instance; None: its share of the node's DRAM
    cxl_B: float = 0.0
    ssd_B: float | None = None
    nic: str | None = None
    pool: PoolSpec = field(default_factory=PoolSpec)
    p2p: P2PSpec = field(default_factory=P2PSpec)
    framework: str = "tensorrt-llm"


@dataclass(frozen=True)
class Workload:
    """A trace (its reuse profile is extracted once and cached) at a request rate, with SLOs."""
    trace: Trace
    request_rate: float | None = None   # requests/s; None: the trace's own rate
    ttft_slo_s: float = 2.0
    tpot_slo_s: float = 0.1
    _profile: list = field(default_factory=list, compare=False, repr=False)

    @property
    def profile(self) -> ReuseProfile:
        if not self._profile:
            self._profile.append(reuse_profile(self.trace))
        return self._profile[0]

    @property
    def rate(self) -> float:
        if self.request_rate is not None:
            return float(self.request_rate)
        span = float(self.trace.arrival_s[-1] - self.trace.arrival_s[0])
        return len(self.trace) / span if span > 0 else 1.0

    @property
    def input_len(self) -> float:
        return float(np.mean(self.trace.input_len))

    @property
    def output_len(self) -> float:
        return float(np.mean(self.trace.output_len))

    @property
    def length_cv(self) -> float:
        """Coefficient of variation of prompt lengths (prefill service time ~ prompt length)."""
        return float(np.std(self.trace.input_len) / max(np.mean(self.trace.input_len), 1e-12))

    @property
    def top_block_share(self) -> float:
        """Share of block accesses that go to the single most-shared block."""
        if "top" not in self.__dict__:
            ids = self.trace.block_ids
            share = np.bincount(np.unique(ids, return_inverse=True)[1]).max() / len(ids) if len(ids) else 0.0
            object.__setattr__(self, "top", float(share))
        return self.__dict__["top"]


@dataclass(frozen=True)
class ClusterResult:
    ttft_s: float
    tpot_s: float
    e2e_s: float
    ttft_p90_s: float
    ttft_p99_s: float
    tpot_p99_s: float
    output_tok_s: float
    served_rate: float
    stable: bool
    reason: str
    goodput_rps: float
    cost_per_hour: float
    cost_per_mtok: float
    hit_ratio: dict[str, float]
    per_instance_rate: float
    imbalance: float
    utilisation: dict[str, float]
    instances: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "instances"}


# ---- validation ------------------------------------------------------------------------------
def _check(c: Cluster) -> None:
    if c.sharing not in SHARING:
        raise ValueError(f"sharing={c.sharing!r}; allowed: {SHARING}")
    if c.routing not in _ROUTINGS:
        raise ValueError(f"routing={c.routing!r}; allowed: {_ROUTINGS}")
    disagg = c.prefill_instances > 0 or c.decode_instances > 0
    if disagg and (c.prefill_instances < 1 or c.decode_instances < 1):
        raise ValueError("prefill_instances and decode_instances must both be >= 1 to disaggregate")
    if not disagg and c.instances < 1:
        raise ValueError(f"instances={c.instances}: must be >= 1")
    if not 0.0 <= c.hbm_cache_fraction < 1.0:
        raise ValueError(f"hbm_cache_fraction={c.hbm_cache_fraction}: must be in [0, 1)")
    if c.p2p.replication < 1 or c.p2p.lookup_latency_s < 0:
        raise ValueError("p2p.replication must be >= 1 and p2p.lookup_latency_s >= 0")
    if c.p2p.placement not in ("rendezvous", "consistent_hash", "directory"):
        raise ValueError(f"p2p.placement={c.p2p.placement!r}; allowed: rendezvous, "
                         "consistent_hash, directory")
    if c.pool.servers < 1 or c.pool.nics < 1 or c.pool.dram_B < 0 or c.pool.ssd_B < 0:
        raise ValueError("pool: servers and nics must be >= 1, capacities >= 0")
    for name in ("dram_B", "ssd_B", "cxl_B"):
        v = getattr(c, name)
        if v is not None and (not math.isfinite(v) or v < 0):
            raise ValueError(f"{name}={v!r}: must be a finite number >= 0 (bytes)")


# ---- reuse -----------------------------------------------------------------------------------
def _kv_precision(c: Cluster) -> str:
    return "fp8" if c.precision in ("fp8", "fp4", "int8") else c.precision


def _layout(c: Cluster):
    """(node key, node, cache instances N, instances per node)."""
    key = c.node or default_node_for_gpu(c.gpu)
    if key is None:
        raise ValueError(f"no node template uses gpu {c.gpu!r}; set Cluster.node")
    node = get_node(key)
    n = c.prefill_instances if c.prefill_instances else c.instances
    return key, node, n, max(1, node.gpus_per_node // c.tp)


def _curve(w: Workload, cap_blocks, n: int, routing: str, eps: float) -> np.ndarray:
    r = {"least_loaded": "random"}.get(routing, routing)  # hit-wise, load balancing ~ random
    r = "prefix_affinity_bounded" if r in _AS_BOUNDED else r
    if n == 1:
        r = "single"
    cap = np.floor(np.maximum(np.atleast_1d(np.asarray(cap_blocks, dtype=float)), 0.0))
    return analytic_hit_ratio_curve(w.profile, cap, instances=n, routing=r, epsilon=eps)


def _hits(c: Cluster, w: Workload, caps: dict[str, float], n: int) -> dict[str, float]:
    """Fraction of block accesses served by each tier, fastest first (the rest are recomputed).

    Each level holds the next stretch of one LRU stack: per-instance levels follow the routing
    curve at the cumulative capacity; shared levels (pool, P2P DRAM) the single-cache curve.
    All curve points are evaluated in two vectorised calls.
    """
    kinds = ("hbm", "dram", "cxl", "ssd")
    local = n * np.cumsum([caps[t] for t in kinds])
    h_local = _curve(w, local, n, c.routing, c.epsilon)
    r = c.p2p.replication
    shared = [caps["pool"], n * (caps["hbm"] + caps["dram"] / r)]
    h_shared = _curve(w, shared, 1, "single", c.epsilon)
    out, h_prev = {}, 0.0
    for i, t in enumerate(kinds):
        if caps[t] <= 0:  # an absent tier serves nothing
            out[t], h = 0.0, h_prev
        elif t == "dram" and c.sharing == "p2p":
            h = max(h_prev, float(h_shared[1]))
            share = min(1.0, r / n)
            out["dram"], out["peer"] = (h - h_prev) * share, (h - h_prev) * (1 - share)
        else:
            h = max(h_prev, float(h_local[i]))
            out[t] = h - h_prev
        h_prev = h
    if c.sharing == "central_pool":
        out["pool"] = max(h_prev, float(h_shared[0])) - h_prev
    return out


def _imbalance(c: Cluster, w: Workload, n: int) -> float:
    """Busiest instance's share of requests × n, from the routing's assignment."""
    routing = "prefix_affinity_bounded" if c.routing in _AS_BOUNDED else c.routing
    if n == 1 or routing not in ("prefix_affinity", "prefix_affinity_bounded"):
        return 1.0
    from ._reuse_analytic import _assignment
    key = ("imbalance", routing, n, c.epsilon)
    prof = w.profile
    if key not in prof._cache:
        counts = np.bincount(_assignment(prof, n, routing, c.epsilon), minlength=n)
        prof._cache[key] = float(counts.max() * n / counts.sum())
    return prof._cache[key]


# ---- capacities and paths --------------------------------------------------------------------
@lru_cache(maxsize=256)
def _kv_capacity_tokens(model, gpu, tp, precision, I, O, framework) -> float:
    probe = estimate(model, gpu, tp=tp, precision=precision, input_len=I, output_len=O,
                     framework=framework)
    if not probe.feasible:
        raise ValueError(f"instance infeasible: {probe.reason}")
    return float(probe.kv_capacity_tokens)


def _caps(c: Cluster, w: Workload, node, per_node: int, block_B: float) -> dict[str, float]:
    """Cache capacity per instance (blocks) of each tier; the pool's total."""
    kv_tokens = _kv_capacity_tokens(c.model, c.gpu, c.tp, c.precision, round(w.input_len),
                                    round(w.output_len), c.framework)
    tok_B = get_model(c.model).kv_bytes_per_token(_kv_precision(c))
    dram = node.host_dram_B / per_node if c.dram_B is None else c.dram_B
    ssd = node.nvme_capacity_B / per_node if c.ssd_B is None else c.ssd_B
    return {"hbm": c.hbm_cache_fraction * kv_tokens * tok_B / block_B,
            "dram": dram / block_B, "cxl": c.cxl_B / block_B, "ssd": ssd / block_B,
            "pool": c.pool.servers * (c.pool.dram_B + c.pool.ssd_B) / block_B}


def _tiers(c: Cluster, key: str, per_node: int) -> dict[str, Tier]:
    def scaled(v, default):
        return None if v is None else v * per_node
    t = node_tiers(key, c.gpu, dram_B=scaled(c.dram_B, None), cxl_B=c.cxl_B * per_node,
                   ssd_B=scaled(c.ssd_B, None), remote_B=1.0, nic=c.nic)
    return {"hbm": t["hbm"], "dram": t["dram"], "cxl": t["cxl"], "ssd": t["ssd"],
            "pool": t["remote"], "peer": t["remote"]}


def _network(c: Cluster, w: Workload, node, hits, block_B: float, rate: float) -> dict[str, float]:
    """Utilisation of the pool's NICs and of the hottest peer's NICs (whole cluster)."""
    blocks_per_req = float(np.mean(w.trace.blocks_per_request))
    util = {}
    if "pool" in hits:
        nic = get_link(c.pool.nic)
        cap = c.pool.servers * c.pool.nics * nic.achieved_bw_Bps
        util["pool_nic"] = rate * hits["pool"] * blocks_per_req * block_B / cap
    if "peer" in hits:
        nic = get_link(c.nic or node.nic_link)
        n = c.prefill_instances or c.instances
        per_owner = node.nics * nic.achieved_bw_Bps / max(1, node.gpus_per_node // c.tp)
        hot = max(1.0 / n, w.top_block_share / c.p2p.replication)
        util["peer_nic_hottest"] = rate * hits["peer"] * blocks_per_req * block_B * hot / per_owner
    return util


def _extra_delay(c: Cluster, w: Workload, hits, util, block_B: float) -> float:
    """Per-request delay outside the compute pipeline: pool NIC queueing, directory lookups."""
    delay = 0.0
    blocks = float(np.mean(w.trace.blocks_per_request))
    if "pool" in hits and 0 < util["pool_nic"] < 1:
        nic = get_link(c.pool.nic)
        service = hits["pool"] * blocks * block_B / (c.pool.servers * c.pool.nics * nic.achieved_bw_Bps)
        delay += util["pool_nic"] / (2 * (1 - util["pool_nic"])) * service
    if "peer" in hits and hits["peer"] > 0:
        delay += c.p2p.lookup_latency_s
        u = util["peer_nic_hottest"]
        if 0 < u < 1:
            nic = get_link(c.nic or "roce-400g")
            delay += u / (2 * (1 - u)) * hits["peer"] * blocks * block_B / nic.achieved_bw_Bps
    return delay


# ---- instances -------------------------------------------------------------------------------
def _prefix_args(hits: dict[str, float], tiers: dict[str, Tier], I: float) -> dict[str, Any]:
    hits = {t: f for t, f in hits.items() if f > 1e-12}  # drop rounding residue of empty tiers
    total = sum(hits.values())
    P = min(math.floor(total * I), I - 1)
    if P <= 0:
        return {}
    mix = [(tiers[t], f / total) for t, f in hits.items() if f > 0]
    return dict(cached_prefix_len=P, cache_tier=mix)


def _colocated(c: Cluster, w: Workload, lam_i: float, pre: dict) -> dict[str, Estimate]:
    e = estimate(c.model, c.gpu, tp=c.tp, precision=c.precision, input_len=round(w.input_len),
                 output_len=round(w.output_len), request_rate=lam_i, framework=c.framework,
                 length_cv=w.length_cv, **pre)
    return {"instance": e}


def _disaggregated(c: Cluster, w: Workload, lam: float, imb: float, pre: dict, node):
    I, O = round(w.input_len), round(w.output_len)
    p = estimate(c.model, c.gpu, tp=c.tp, precision=c.precision, input_len=I, output_len=1,
                 request_rate=lam * imb / c.prefill_instances, framework=c.framework,
                 length_cv=w.length_cv, **pre)
    dgpu = c.decode_gpu or c.gpu
    d = estimate(c.model, dgpu, tp=c.tp, precision=c.precision, input_len=I, output_len=O,
                 request_rate=lam / c.decode_instances, cached_prefix_len=I - 1, cache_tier="hbm",
                 framework=c.framework)
    # KV streamed layer by layer: only the part slower than the prefill compute is exposed
    gpus = (c.prefill_instances + c.decode_instances) * c.tp
    same_node = gpus <= node.gpus_per_node
    link = get_link(get_gpu(c.gpu).scale_up_link if same_node else (c.nic or node.nic_link))
    per_gpu = (link.achieved_bw_Bps if same_node
               else node.nics * link.achieved_bw_Bps / node.gpus_per_node)
    kv_B = I * get_model(c.model).kv_bytes_per_token(_kv_precision(c)) / c.tp
    t_tr = kv_B / per_gpu + link.latency_s
    L = get_model(c.model).num_layers
    exposed = max(t_tr / L, t_tr - (p.ttft_s - p.queue_wait_s))
    return {"prefill": p, "decode": d, "kv_transfer_s": exposed}


def _combine(parts: dict) -> dict[str, float]:
    if "instance" in parts:
        e = parts["instance"]
        return dict(ttft=e.ttft_s, tpot=e.tpot_s, ttft90=e.ttft_p90_s, ttft99=e.ttft_p99_s,
                    tpot99=e.tpot_p99_s, wait=e.queue_wait_s, pwait=e.queue_wait_prob,
                    tpot90=e.tpot_p90_s, stable=bool(e.stable), feasible=bool(e.feasible),
                    reason=str(e.reason))
    p, d, tr = parts["prefill"], parts["decode"], parts["kv_transfer_s"]
    extra = tr + d.ttft_s - d.queue_wait_s  # transfer, then the decode side's first step
    return dict(ttft=p.ttft_s + extra + d.queue_wait_s, tpot=d.tpot_s, ttft90=p.ttft_p90_s + extra,
                ttft99=p.ttft_p99_s + extra, tpot99=d.tpot_p99_s, tpot90=d.tpot_p90_s,
                wait=p.queue_wait_s + d.queue_wait_s, pwait=max(p.queue_wait_prob, d.queue_wait_prob),
                stable=bool(p.stable and d.stable), feasible=bool(p.feasible and d.feasible),
                reason=str(p.reason or d.reason))


# ---- cost and goodput ------------------------------------------------------------------------
def _cost_per_hour(c: Cluster, node, per_node: int) -> float:
    n = (c.prefill_instances + c.decode_instances) or c.instances
    nodes = math.ceil(n / per_node)
    hours = get_calibration()["hardware_amortization"].si
    dollars = nodes * node.price_per_s * 3600.0
    if c.cxl_B:
        dollars += n * c.cxl_B * get_memory("cxl-micron-cz120").price_per_B / hours
    if c.dram_B is not None:
        extra = max(0.0, c.dram_B * per_node - node.host_dram_B) * nodes
        dollars += extra * get_memory(node.host_memory).price_per_B / hours
    if c.ssd_B is not None:
        extra = max(0.0, c.ssd_B * per_node - node.nvme_capacity_B) * nodes
        dollars += extra * get_memory(node.nvme).price_per_B / hours
    if c.sharing == "central_pool":
        media = (c.pool.dram_B * get_memory(c.pool.memory).price_per_B
                 + c.pool.ssd_B * get_memory(c.pool.nvme).price_per_B)
        dollars += c.pool.servers * media / hours
    return dollars


def _slo_fraction(m: dict[str, float], ttft_slo: float, tpot_slo: float) -> float:
    """P(TTFT <= SLO) x P(TPOT <= SLO) from the wait law and the TPOT spread."""
    base, W, p = m["ttft"] - m["wait"], m["wait"], m["pwait"]
    if ttft_slo < base:
        f_ttft = 0.0
    elif W <= 0 or p <= 0:
        f_ttft = 1.0
    else:
        f_ttft = 1.0 - p * math.exp(-(ttft_slo - base) * p / W)
    sd = max((m["tpot90"] - m["tpot"]) / normal_quantile(0.9), 1e-12)
    f_tpot = 0.5 * math.erfc(-(tpot_slo - m["tpot"]) / (sd * math.sqrt(2.0)))
    return f_ttft * f_tpot


def evaluate(c: Cluster, w: Workload) -> ClusterResult:
    """Closed-form evaluation of a cluster on a workload (see the module docstring)."""
    _check(c)
    key, node, n, per_node = _layout(c)
    block_B = w.trace.block_tokens * get_model(c.model).kv_bytes_per_token(_kv_precision(c))
    hits = _hits(c, w, _caps(c, w, node, per_node, block_B), n)
    lam, imb = w.rate, _imbalance(c, w, n)
    util = _network(c, w, node, hits, block_B, lam)
    pre = _prefix_args(hits, _tiers(c, key, per_node), w.input_len)
    parts = (_disaggregated(c, w, lam, imb, pre, node) if c.prefill_instances
             else _colocated(c, w, lam * imb / n, pre))
    m = _combine(parts)
    delay = _extra_delay(c, w, hits, util, block_B)
    net_ok = all(u < 1.0 for u in util.values())
    stable = m["stable"] and m["feasible"] and net_ok
    reason = m["reason"] or ("" if net_ok else "network saturated: " + ", ".join(
        f"{k} utilisation {u:.2f}" for k, u in util.items() if u >= 1.0))
    if not stable and not reason:
        reason = "unstable at this request rate"
    inf = math.inf
    O = w.output_len
    served = lam if stable else 0.0
    cost = _cost_per_hour(c, node, per_node)
    tok = served * O
    good = served * _slo_fraction(dict(m, ttft=m["ttft"] + delay), w.ttft_slo_s, w.tpot_slo_s) if stable else 0.0
    return ClusterResult(
        ttft_s=m["ttft"] + delay if stable else inf, tpot_s=m["tpot"] if stable else inf,
        e2e_s=m["ttft"] + delay + (O - 1) * m["tpot"] if stable else inf,
        ttft_p90_s=m["ttft90"] + delay if stable else inf,
        ttft_p99_s=m["ttft99"] + delay if stable else inf,
        tpot_p99_s=m["tpot99"] if stable else inf, output_tok_s=tok, served_rate=served,
        stable=stable, reason=reason, goodput_rps=good, cost_per_hour=cost,
        cost_per_mtok=cost / (tok * 3600 / 1e6) if tok > 0 else inf,
        hit_ratio={k: float(v) for k, v in hits.items()}, per_instance_rate=lam * imb / n,
        imbalance=imb, utilisation=util, instances=parts)


# ---- configuration files ---------------------------------------------------------------------
_CLUSTER_KEYS = {
    "model": str, "gpu": str, "instances": int, "tp": int, "precision": str,
    "prefill_instances": int, "decode_instances": int, "decode_gpu": str, "sharing": str,
    "routing": str, "epsilon": float, "node": str, "hbm_cache_fraction": float,
    "dram_GB": float, "cxl_GB": float, "ssd_GB": float, "nic": str, "framework": str,
}
_POOL_KEYS = {"servers": int, "dram_GB": float, "ssd_GB": float, "nic": str, "nics": int,
              "memory": str, "nvme": str}
_P2P_KEYS = {"placement": str, "lookup_latency_us": float, "replication": int}
_WORKLOAD_KEYS = {"trace": str, "request_rate": float, "ttft_slo_s": float, "tpot_slo_s": float}


def _typed(table: Any, schema: dict, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: expected a table")
    unknown = set(table) - set(schema)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(schema)}")
    out = {}
    for k, v in table.items():
        want = schema[k]
        ok = isinstance(v, want) and not isinstance(v, bool) or (want is float and isinstance(v, int)
                                                                 and not isinstance(v, bool))
        if not ok:
            raise ValueError(f"{where}.{k}: expected {want.__name__}, got {v!r}")
        out[k] = float(v) if want is float else v
    return out


def _gb(d: dict, key: str) -> dict:
    if key in d:
        d[key[:-3] + "_B"] = d.pop(key) * 1e9
    return d


def load_cluster_config(path) -> tuple[Cluster, dict[str, Any]]:
    """Read a cluster TOML file: ``[cluster]`` (+ ``[cluster.pool]``, ``[cluster.p2p]``) and an
    optional ``[workload]``. Capacities in GB (1e9 B), lookup latency in µs. Returns the Cluster
    and the workload keyword arguments; errors name the file and field."""
    import tomllib
    from pathlib import Path
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{p}: cannot read cluster file: {exc}") from None
    extra = set(data) - {"cluster", "workload"}
    if extra or "cluster" not in data:
        raise ValueError(f"{p}: needs a [cluster] table (and optionally [workload]); "
                         f"unknown: {sorted(extra)}")
    raw = dict(data["cluster"])
    pool, p2p = raw.pop("pool", {}), raw.pop("p2p", {})
    cl = _gb(_gb(_gb(_typed(raw, _CLUSTER_KEYS, f"{p}: [cluster]"), "dram_GB"), "cxl_GB"), "ssd_GB")
    for need in ("model", "gpu"):
        if need not in cl:
            raise ValueError(f"{p}: [cluster].{need}: missing required key")
    pl = _gb(_gb(_typed(pool, _POOL_KEYS, f"{p}: [cluster.pool]"), "dram_GB"), "ssd_GB")
    pp = _typed(p2p, _P2P_KEYS, f"{p}: [cluster.p2p]")
    if "lookup_latency_us" in pp:
        pp["lookup_latency_s"] = pp.pop("lookup_latency_us") * 1e-6
    c = Cluster(**cl, pool=PoolSpec(**pl), p2p=P2PSpec(**pp))
    _check(c)
    return c, _typed(data.get("workload", {}), _WORKLOAD_KEYS, f"{p}: [workload]")
