"""Cluster model: N serving instances (colocated, or prefill and decode pools) sharing KV
through local tiers only, a central pool, or peer to peer — closed form, about a millisecond.

``evaluate(cluster, workload)`` combines:

1. **Reuse.** The workload's analytic reuse profile gives the hit ratio H(C) of each cache
   level (per-instance levels under the routing policy; shared levels as one cache), split by
   cumulative capacity as in :mod:`kvmodel.workload.placement`. Central pool: a global LRU of the pool's
   capacity (inclusive of the local tiers; or a pool per rack). P2P: the peers' DRAM forms
   one cache of N·C_dram / replication blocks; the placement's closed form gives the local
   share of its hits and the hottest owner's share of the peer traffic, measured on the trace
   (:mod:`kvmodel.cluster._sharing`). ``Cluster.eviction`` other than ``lru`` (fifo, lfu,
   s3fifo, arc, lru-admit-reuse) replaces the analytic LRU curve by the policy's exact replay
   at a few capacities, interpolated (:mod:`kvmodel.workload._policy_curve`; about 2-3 s to build per
   policy, routing and instance count, then microseconds). The split by cumulative capacity
   reads each tier as the next stretch of one cache, exact for stack policies (LRU, LFU) and
   an approximation for the others.
2. **Network.** (:mod:`kvmodel.cluster._sharing`) Pool: NICs out (gets) and in (puts of new KV,
   all written or admitted under ``PoolSpec.put_policy``: dropped puts cost the pool the hits
   they would have served), DRAM and SSD bandwidth, a metadata round trip per request. P2P: the
   hottest owner's NIC and PCIe uplink, puts, lookups. Transfers queue at processor-sharing
   servers whose delay tails feed the TTFT percentiles; utilisation >= 1 is unstable. Churn in
   ``ClusterResult.sharing``.
3. **Instances.** ``kvmodel.estimate(request_rate=...)`` per instance at its share of the load
   (busiest instance for stability and percentiles, load imbalance of the routing from its
   assignment; a load-aware router's wait law as it shortens the queues,
   :mod:`kvmodel.cluster._routing_queue`), its requests split into hit classes (a miss, or a
   hit in one level loading its own prefix: :mod:`kvmodel.cluster._classes`). Disaggregated: prefill
   instances (output_len=1), KV streamed layer by layer to decode instances over NVLink (same
   node) or RDMA, decode instances with the prompt's KV already in HBM.
   Closed loop (``Workload.concurrency``, think time), bursts (``Workload.burst``) and closed
   multi-turn sessions (``Workload.session_mode="closed"``): :mod:`kvmodel.cluster._workloads`
   (colocated clusters, scalar fields; ``ClusterResult.workload`` reports what they derive).
4. **Cost.** Nodes at their $/h (``ClusterResult.nodes``; a P/D decode pool on another GPU
   on its own node template), extra DRAM/CXL/SSD and pool media (+ servers and ports at
   the user's prices) amortised over
   ``hardware_amortization`` hours; $/Mtok; goodput = served rate × P(TTFT ≤ SLO) × P(TPOT ≤ SLO).

**Vectorised evaluation.** These fields accept numpy arrays (or lists), which broadcast
together to any shape; one call then evaluates every configuration of the grid at once:

- ``Cluster.hbm_cache_fraction``, ``Cluster.dram_B``, ``Cluster.cxl_B``, ``Cluster.ssd_B``
- ``PoolSpec.servers``, ``PoolSpec.dram_B``, ``PoolSpec.ssd_B``, ``PoolSpec.nics``
- ``P2PSpec.replication``, ``P2PSpec.lookup_latency_s``
- ``Workload.request_rate``

Every other field is structural (model, gpu, tp, precision, instance counts, sharing, routing,
epsilon, node, NICs, pool memory/NVMe, P2P placement, framework, DP attention, ep, speculative
decoding, SLOs) and must be a scalar:
an array there raises ValueError (group the configurations by those fields and call once per
group). With an array input every numeric field of the :class:`ClusterResult` is an array of
the broadcast shape (``stable`` bool, ``reason`` an object array of str, ``hit_ratio`` and
``utilisation`` dicts of arrays holding every key of the sharing mode, zeros where the scalar
evaluation omits the key); element ``i`` equals the scalar evaluation of configuration ``i``.
All-scalar inputs give Python floats, bools and str, as before.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.base.fields import add_aliases, fields_dict
from kvmodel.base.schema import typed_table
from kvmodel.catalog.hardware import (
    catalog_arg,
    current,
    get_calibration,
    get_connector,
    get_framework,
    get_gpu,
    get_link,
    get_memory,
    get_node,
)
from kvmodel.catalog.models import default_kv_precision, get_model, snapshot_interval, snapshot_mode
from kvmodel.cluster import _sharing, _workloads
from kvmodel.cluster._classes import (
    floor_to_grid,
    hit_classes,
    leading_reuse,
    reuse_grid,
    trace_bands,
    whole_prefix_share,
    with_lengths,
)
from kvmodel.cluster._routing_load import (
    curve_row,
    is_loaded,
    loaded_curve,
    loaded_imbalance,
    params_text,
    row_hits,
    work_signal,
)
from kvmodel.instance._estimate import Estimate, estimate
from kvmodel.instance._queueing import normal_quantile
from kvmodel.instance._speculative import check_model as _speculative_model
from kvmodel.instance._speculative import speculative_arg as _speculative_arg
from kvmodel.instance._tpot_law import output_law
from kvmodel.instance._wide_ep import wide_ep_arg as _wide_ep_arg
from kvmodel.instance.seam import kv_cache_auto
from kvmodel.instance.seam import params as _params
from kvmodel.policies import CONNECTOR, EVICTION, P2P_PLACEMENT, ROUTING
from kvmodel.policies import SHARING as SHARING_ARCHITECTURES
from kvmodel.tiers import (
    Tier,
    TransferPath,
    default_node_for_gpu,
    nic_aggregate_Bps,
    node_tiers,
    ssd_drives,
    transfer_seconds,
)
from kvmodel.workload._policy_curve import policy_hit_ratio_curve
from kvmodel.workload._reuse_analytic import (
    ReuseProfile,
    analytic_hit_ratio_curve,
    assignment,
    reuse_profile,
)
from kvmodel.workload._routing_closed import LOADED_FORMS
from kvmodel.workload._trace_types import Trace

__all__ = ["Cluster", "PoolSpec", "P2PSpec", "Workload", "ClusterResult", "evaluate", "SHARING",
           "load_cluster_config", "layout", "kv_precision", "kv_capacity_tokens", "cost_per_hour",
           "inclusive_tiers", "tier_utilisation", "tier_traffic", "meets_slo", "max_rate_at_slo",
           "TTFT_PERCENTILES", "TPOT_PERCENTILES", "snapshot_grid", "block_bytes",
           "gpus_per_instance", "parallel_kw"]

# policy names come from the registries of kvmodel.policies (routing, eviction, P2P placement,
# sharing); each entry names the closed form evaluate() uses for it (ClusterResult.closed_forms)
SHARING = SHARING_ARCHITECTURES.names()
_CXL_DEVICE = "cxl-micron-cz120"  # node_tiers' default CXL expander


@dataclass(frozen=True)
class PoolSpec:
    """Central KV pool (Mooncake-Store / LMCache-server like): DRAM (+SSD) servers behind NICs,
    shared by the whole cluster (used when ``Cluster.sharing == "central_pool"``).
    ``servers``, ``dram_B``, ``ssd_B`` and ``nics`` may be numpy arrays (see the module doc).

    Fields (per server unless said otherwise):
      servers: pool servers in the cluster (count).
      dram_B: DRAM per server, bytes (1e12 = 1 TB).
      ssd_B: SSD per server, bytes (0: DRAM only).
      nic: link key of each server's NICs (``kvmodel hardware link``).
      nics: NICs per server (count).
      memory, nvme: hardware_db keys of the server's DRAM and NVMe (bandwidth, $/GB).
      metadata_rtt_s: seconds of the metadata lookup each request makes (None: the
        calibration's ``pool_metadata_rtt``, a datacenter key-value round trip).
      scope: "cluster" (one pool) or "rack" (one pool of ``servers`` per rack of
        ``rack_nodes`` nodes; its hit ratio from the rack's own traffic).
      sockets: CPU sockets per server (DRAM bandwidth = sockets x the memory's per-socket rate).
      server_cost_usd, port_cost_usd: purchase price of a server (chassis, CPUs, without the
        media) and of one NIC with its switch port, US dollars, amortised like the media; None
        (default): the sourced prices in hardware_db/calibration.toml (``pool_server_price``;
        ``pool_nic_price + pool_switch_port_price``), see ``_sharing.pool_prices``.
      put_policy: admission of puts of new KV (:data:`kvmodel.cluster._sharing.PUT_POLICIES`):
        "all" (write-through; a saturated put path is unstable), "fraction" (admit
        ``put_admission`` of the requests' puts) or "throttle" (drop a put when
        ``put_queue_limit`` puts are queued at the pool server; hits of dropped blocks lost).
      put_admission: share of puts admitted under "fraction", in (0, 1].
      put_queue_limit: puts queued at a pool server (count, >= 1) beyond which "throttle"
        drops new ones.
    Semantics (DRAM/SSD split, puts and their admission, queues): :mod:`kvmodel.cluster._sharing`.
    """
    servers: int = 4
    dram_B: float = 1e12
    ssd_B: float = 0.0
    nic: str = "roce-400g"
    nics: int = 2
    memory: str = "ddr5-4800"
    nvme: str = "nvme-gen5"
    metadata_rtt_s: float | None = None
    scope: str = "cluster"
    rack_nodes: int = 8
    sockets: int = 2
    server_cost_usd: float | None = None
    port_cost_usd: float | None = None
    put_policy: str = "all"
    put_admission: float = 1.0
    put_queue_limit: int = 8


@dataclass(frozen=True)
class P2PSpec:
    """Peer-to-peer sharing of the instances' DRAM tiers (used when ``Cluster.sharing ==
    "p2p"``); cluster-wide settings. ``lookup_latency_s`` and ``replication`` may be numpy
    arrays (see the module doc).

    Fields:
      placement: which peer owns a block: a name of ``kvmodel.policies.P2P_PLACEMENT``
        (rendezvous | consistent_hash | prefix_hash | directory) or its policy object; its
        closed form (block hash, prefix hash, writer-owned with a directory) sets the local
        share of peer-level hits and the hottest owner's share of the peer traffic, both
        measured on the trace (:mod:`kvmodel.cluster._sharing`).
      lookup_latency_s: seconds per request with a peer hit (None: the directory placement
        pays the calibration's ``pool_metadata_rtt``, a key-value round trip; hash placements
        compute the owner and pay 0).
      replication: copies of each block in the cluster (count; hot prefixes spread).
    """
    placement: str = "rendezvous"
    lookup_latency_s: float | None = None
    replication: int = 1


@dataclass(frozen=True)
class Cluster:
    """A cluster configuration. ``hbm_cache_fraction``, ``dram_B``, ``cxl_B`` and ``ssd_B``
    may be numpy arrays (see the module doc); every other field is a scalar.

    Fields:
      model, gpu: catalog keys (``kvmodel models``, ``kvmodel hardware gpu``).
      instances: serving instances in the cluster (colocated prefill+decode), count.
      tp: GPUs per instance (tensor parallel); instances per node = GPUs per node // tp.
      precision: weight precision (fp16, bf16, fp8, ...), every instance.
      prefill_instances, decode_instances: > 0 both: P/D disaggregation with that many
        instances of each role in the cluster (``instances`` is then ignored).
      decode_gpu: GPU key of the decode instances (None: ``gpu``). Another GPU than ``gpu``
        puts the decode pool on that GPU's first node template, counted and priced apart
        (whole nodes; the KV handoff then crosses the NICs).
      sharing: none | central_pool | p2p (:data:`SHARING`), cluster-wide.
      routing: request routing policy, cluster-wide: a name of ``kvmodel.policies.ROUTING``
        or a policy object (``kvmodel.make_policy(...)``). The closed form of each name is in
        the registry and in ``ClusterResult.closed_forms``: least_loaded, dynamo, llmd,
        sglang and mooncake replay their own rule against the fluid load of the workload's
        rate, quantised to a few utilisation levels (:mod:`kvmodel.cluster._routing_load`).
      epsilon: load bound of the bounded prefix-affinity routers (fraction above the mean);
        a routing object with its own ``epsilon`` overrides it.
      routing_params: parameters of the routing policy (its registry entry's names; None:
        the defaults); a routing object carries its own. The load-aware closed forms
        (least_loaded, dynamo, llmd, sglang, mooncake) replay the policy's rule with them.
      node: node template key (None: the default node for ``gpu``).
      hbm_cache_fraction: share of each instance's KV pool kept as prefix cache (0..1); the
        requests reserve their KV from the rest (a partition, as the simulator's).
      dram_B, cxl_B, ssd_B: prefix-cache capacity per instance in host DRAM, CXL memory and
        local SSD, bytes (None: the instance's share of its node's DRAM / NVMe, or every
        node's it spans for a DP-attention group wider than a node; 0: no tier). DRAM and
        SSD beyond the node template's are bought (``cost_usd_per_h``).
      nic: link key of each node's NICs (None: the node template's); with DP attention also
        the NICs of the wide-EP all-to-all.
      pool: :class:`PoolSpec` (central pool), p2p: :class:`P2PSpec` (peer to peer).
      framework: serving framework key (step overheads), every instance.
      eviction: prefix-cache eviction/admission policy: a name of
        ``kvmodel.policies.EVICTION`` (lru, fifo, lfu, s3fifo, arc, lru-admit-reuse) or its
        CachePolicy class.
      connector: KV connector moving prefixes between tiers and HBM, every instance: a name of
        ``kvmodel.policies.CONNECTOR`` (``hardware_db/connectors.toml``) or its policy object;
        "ideal" is bytes / path bandwidth. Passed to ``estimate(connector=)`` where the
        instance model accepts it.
      attention_dp: DP attention with wide expert parallelism (MoE models): True (or a mapping
        ``{"dispatch": precision, "combine": precision}``) makes every instance an EP group of
        ``ep`` GPUs, ``ep / tp`` data-parallel attention ranks of ``tp`` GPUs each with its own
        requests and KV, the routed experts sharded over the ``ep`` GPUs and an all-to-all per
        MoE layer over NVLink and the node's NICs (``estimate(attention_dp=, ep=, num_gpus=ep,
        node=)``, :mod:`kvmodel.instance._wide_ep`). The instance's HBM prefix cache is its
        ranks' together (a prefix-aware balancer inside the group assumed); a group wider than
        a node takes ``ceil(ep / gpus_per_node)`` whole nodes.
      ep: expert-parallel GPUs: with ``attention_dp`` the GPUs of each instance (a multiple of
        ``tp``); without it experts split inside the TP group (``ep`` divides ``tp``). MoE only.
      speculative: speculative decoding of every instance (None: off): a mapping ``{"method":
        "mtp" | "draft", "k": drafted tokens, "acceptance": α, "draft_model": name,
        "mtp_layers": n}`` or a :class:`kvmodel.instance._speculative.Speculative`; TPOT scaled
        by the verify/draft factor, the drafter's weights and KV taken from the KV cache
        (:mod:`kvmodel.instance._speculative`).
    """
    model: str
    gpu: str
    instances: int = 8
    tp: int = 8
    precision: str = "fp8"
    prefill_instances: int = 0
    decode_instances: int = 0
    decode_gpu: str | None = None
    sharing: str = "none"
    routing: Any = "round_robin"
    epsilon: float = 0.25
    routing_params: dict | None = None
    node: str | None = None
    hbm_cache_fraction: float = 0.3
    dram_B: float | None = None         # per instance
    cxl_B: float = 0.0                  # per instance
    ssd_B: float | None = None          # per instance
    nic: str | None = None
    pool: PoolSpec = field(default_factory=PoolSpec)
    p2p: P2PSpec = field(default_factory=P2PSpec)
    framework: str = "tensorrt-llm"
    eviction: Any = "lru"
    connector: Any = "ideal"
    attention_dp: Any = False
    ep: int = 1
    speculative: Any = None


@dataclass(frozen=True)
class Workload:
    """A trace (its reuse profile is extracted once and cached) under a load, with SLOs.
    ``request_rate`` may be a numpy array (see the module doc).

    The load is one of (:mod:`kvmodel.cluster._workloads` has the closed forms):
    ``request_rate`` (open loop, the default: the trace's own rate), ``concurrency`` (closed
    loop) or ``burst`` (finite). ``ClusterResult.workload`` reports what each mode derives.

    Fields:
      trace: the requests (:class:`kvmodel.Trace`): lengths in tokens, KV block ids.
      request_rate: requests/s offered to the whole cluster (None: the trace's own rate).
      ttft_slo_s: TTFT objective per request, seconds.
      tpot_slo_s: TPOT (time per output token after the first) objective, seconds.
      concurrency: closed loop of this many clients across the cluster (count), each sending
        its next request ``think_time_s`` after its previous one completed.
      burst: this many prompts at t = 0 (count), served once (makespan, TTFT statistics).
      think_time_s: seconds a client thinks between a response and its next request
        (None: 0 for clients; for closed sessions the trace's own gap between turns).
      session_mode: ``"open"`` (arrivals as the trace gives them) or ``"closed"`` (a
        session's turn k is sent think time after turn k-1 completed, so whether its prefix,
        turn k-1's context, is still cached depends on the cluster's speed).
    """
    trace: Trace
    request_rate: float | None = None
    ttft_slo_s: float = 2.0
    tpot_slo_s: float = 0.1
    concurrency: int | None = None
    burst: int | None = None
    think_time_s: float | None = None
    session_mode: str = "open"
    _profile: list = field(default_factory=list, compare=False, repr=False)

    @property
    def profile(self) -> ReuseProfile:
        if not self._profile:
            self._profile.append(reuse_profile(self.trace))
        return self._profile[0]

    @property
    def rate(self) -> Any:
        """Request rate (requests/s): a float, or a float array for an array ``request_rate``."""
        if self.request_rate is not None:
            if isinstance(self.request_rate, (np.ndarray, list, tuple)):
                return np.asarray(self.request_rate, dtype=float)
            return float(self.request_rate)
        span = float(self.trace.arrival_s[-1] - self.trace.arrival_s[0])
        return len(self.trace) / span if span > 0 else 1.0

    def _memo(self, key: str, fn) -> Any:
        """Trace statistics computed once per Workload (the trace is not modified)."""
        d = self.__dict__
        if key not in d:
            d[key] = fn()
        return d[key]

    @property
    def input_len(self) -> float:
        return self._memo("_input_len", lambda: float(np.mean(self.trace.input_len)))

    @property
    def output_len(self) -> float:
        return self._memo("_output_len", lambda: float(np.mean(self.trace.output_len)))

    @property
    def output_law(self) -> tuple | None:
        """The requests' output lengths as a small quadrature (requests with two or more
        tokens; :func:`kvmodel.instance._tpot_law.output_law`): the instances' TPOT
        percentiles mix over it."""
        return self._memo("_output_law", lambda: output_law(self.trace.output_len))

    @property
    def length_cv(self) -> float:
        """Coefficient of variation of prompt lengths (prefill service time ~ prompt length)."""
        return self._memo("_length_cv", lambda: float(
            np.std(self.trace.input_len) / max(np.mean(self.trace.input_len), 1e-12)))

    @property
    def blocks_per_request(self) -> float:
        """Mean KV blocks per request."""
        return self._memo("_blocks", lambda: float(np.mean(self.trace.blocks_per_request)))

    @property
    def top_block_share(self) -> float:
        """Share of block accesses that go to the single most-shared block."""
        def share() -> float:
            ids = self.trace.block_ids
            if not len(ids):
                return 0.0
            return float(np.bincount(np.unique(ids, return_inverse=True)[1]).max() / len(ids))
        return self._memo("top", share)

    def with_rate(self, rate: Any) -> "Workload":
        """This workload at request rate ``rate`` (requests/s, a float or an array), sharing
        the trace, its reuse profile and the trace statistics already computed."""
        w = dataclasses.replace(self, request_rate=rate)
        w.__dict__.update({k: v for k, v in self.__dict__.items() if k in _MEMO_KEYS})
        return w


_MEMO_KEYS = ("_input_len", "_output_len", "_output_law", "_length_cv", "_blocks", "top", "_length_bands")


@dataclass(frozen=True)
class ClusterResult:
    """Result of :func:`evaluate`: Python scalars, or arrays of the broadcast shape when any
    vectorised field was an array (see the module doc). Whole-cluster figures unless the name
    says otherwise; times in seconds (``ttft_s``, ``tpot_s``, ``e2e_s`` are means), rates per
    second, money in US dollars."""
    ttft_s: Any
    ttft_p50_s: Any
    tpot_s: Any
    e2e_s: Any
    ttft_p90_s: Any
    ttft_p99_s: Any
    tpot_p99_s: Any
    output_tok_per_s: Any           # generated tokens/s, whole cluster
    served_rate_per_s: Any          # requests/s served (0 when unstable)
    stable: Any
    reason: Any
    goodput_per_s: Any              # requests/s served within both SLOs
    cost_usd_per_h: Any             # hardware cost of the whole cluster, $/h
    cost_usd_per_mtok: Any          # $ per million output tokens (inf without tokens)
    hit_ratio: dict[str, Any]       # share of KV block accesses served by each cache level
    per_instance_rate_per_s: Any    # requests/s reaching the busiest instance
    imbalance: Any                  # busiest instance's load / mean load (>= 1)
    utilisation: dict[str, Any]     # network link utilisations (1 = saturated)
    instances: dict[str, Any]       # the per-instance Estimate of each role
    # closed form used for routing / eviction / sharing / placement (kvmodel.policies entries)
    closed_forms: dict[str, str] = field(default_factory=dict)
    # load mode and what it derives: clients per instance, active clients, throughput, burst
    # makespan, session re-timing (kvmodel.cluster._workloads)
    workload: dict[str, Any] = field(default_factory=dict)
    # sharing traffic (B/s), placement shares, churn (kvmodel.cluster._sharing.flows)
    sharing: dict[str, Any] = field(default_factory=dict)
    # whole nodes of the cluster, every node pool on its own template (what cost_usd_per_h pays)
    nodes: Any = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (arrays become lists, non-finite floats None, each
        instance's Estimate its own ``to_dict``)."""
        return fields_dict(self)


add_aliases(ClusterResult, {"output_tok_s": "output_tok_per_s",
                            "served_rate": "served_rate_per_s",
                            "goodput_rps": "goodput_per_s",
                            "cost_per_hour": "cost_usd_per_h",
                            "cost_per_mtok": "cost_usd_per_mtok",
                            "per_instance_rate": "per_instance_rate_per_s"})


# ---- array inputs ----------------------------------------------------------------------------
_VECTOR_FIELDS = (("Cluster", ("hbm_cache_fraction", "dram_B", "cxl_B", "ssd_B")),
                  ("pool", ("servers", "dram_B", "ssd_B", "nics")),
                  ("p2p", ("replication", "lookup_latency_s")),
                  ("Workload", ("request_rate",)))
_SCALAR_FIELDS = (("Cluster", ("model", "gpu", "instances", "tp", "precision", "prefill_instances",
                               "decode_instances", "decode_gpu", "sharing", "routing", "epsilon",
                               "node", "nic", "framework", "eviction", "attention_dp", "ep",
                               "speculative")),
                  ("pool", ("nic", "memory", "nvme", "put_policy", "put_admission",
                            "put_queue_limit")),
                  ("p2p", ("placement",)),
                  ("Workload", ("ttft_slo_s", "tpot_slo_s")))
_SEQ = (np.ndarray, list, tuple)


def _resolve(c: Cluster, w: Workload) -> tuple[Cluster, Any, tuple[int, ...] | None]:
    """(cluster with its array fields as float arrays, request rate, broadcast shape or None
    when every input is a scalar). Arrays in structural fields raise ValueError."""
    objs = {"Cluster": c, "pool": c.pool, "p2p": c.p2p, "Workload": w}
    for owner, names in _SCALAR_FIELDS:
        o = objs[owner]
        for name in names:
            if isinstance(getattr(o, name), _SEQ):
                raise ValueError(f"{owner}.{name} must be a scalar, got an array: only "
                                 f"{_vector_names()} may be arrays (group configurations by "
                                 f"{owner}.{name} and evaluate each group)")
    arrays: dict[tuple[str, str], np.ndarray] = {}
    for owner, names in _VECTOR_FIELDS:
        o = objs[owner]
        for name in names:
            v = getattr(o, name)
            if isinstance(v, _SEQ):
                try:
                    arrays[owner, name] = np.asarray(v, dtype=float)
                except (TypeError, ValueError):
                    raise ValueError(f"{owner}.{name}: expected numbers, got {v!r}") from None
    if not arrays:
        return c, w.rate, None
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        raise ValueError("array fields do not broadcast together: " + ", ".join(
            f"{o}.{n} {a.shape}" for (o, n), a in arrays.items())) from None
    if 0 in shape:
        raise ValueError(f"array fields broadcast to an empty shape {shape}")
    vals = {k: (float(a) if not shape else a) for k, a in arrays.items()}

    def pick(owner):
        return {n: v for (o, n), v in vals.items() if o == owner}
    kw = pick("Cluster")
    if pick("pool"):
        kw["pool"] = dataclasses.replace(c.pool, **pick("pool"))
    if pick("p2p"):
        kw["p2p"] = dataclasses.replace(c.p2p, **pick("p2p"))
    c = dataclasses.replace(c, **kw) if kw else c
    rate = vals.get(("Workload", "request_rate"), w.rate)
    return c, rate, (shape or None)


def _vector_names() -> str:
    return ", ".join(f"{o}.{n}" for o, names in _VECTOR_FIELDS for n in names)


def _all(cond) -> bool:
    return bool(cond.all()) if isinstance(cond, np.ndarray) else bool(cond)


def _show(v, ok) -> str:
    """A value in an error message: the scalar itself, or the first offending array element."""
    if not isinstance(v, np.ndarray):
        return repr(v)
    bad = np.flatnonzero(~np.broadcast_to(ok, v.shape))
    i = int(bad[0]) if bad.size else 0
    return f"{v.flat[i].item()!r} (element {i} of an array)"


# ---- validation ------------------------------------------------------------------------------
MAX_INSTANCES = 4096   # instances per cluster (per pool when disaggregated): bounds memory and time
MAX_TP = 1024          # GPUs in one tensor-parallel group


def _count(name: str, v: Any, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise ValueError(f"{name}={v!r}: must be an integer in [{lo}, {hi}]")


def _check_sizes(c: Cluster) -> None:
    """Counts are integers within documented bounds, checked before anything is allocated."""
    disagg = c.prefill_instances > 0 or c.decode_instances > 0
    for name in (("prefill_instances", "decode_instances") if disagg else ("instances",)):
        _count(f"Cluster.{name}", getattr(c, name), 1, MAX_INSTANCES)
    _count("Cluster.tp", c.tp, 1, MAX_TP)
    _count("Cluster.ep", c.ep, 1, MAX_TP)
    eps = c.epsilon
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < math.inf:
        raise ValueError(f"Cluster.epsilon={eps!r}: must be a finite number >= 0 (bounded "
                         f"prefix affinity's load slack)")


def _check(c: Cluster) -> None:
    _check_sizes(c)
    _check_policies(c)
    _check_parallel(c)
    disagg = c.prefill_instances > 0 or c.decode_instances > 0
    if disagg and (c.prefill_instances < 1 or c.decode_instances < 1):
        raise ValueError("prefill_instances and decode_instances must both be >= 1 to disaggregate")
    if not disagg and c.instances < 1:
        raise ValueError(f"instances={c.instances}: must be >= 1")
    h = c.hbm_cache_fraction
    ok = (h >= 0.0) & (h < 1.0)
    if not _all(ok):
        shown = _show(h, ok) if isinstance(h, np.ndarray) else h
        raise ValueError(f"hbm_cache_fraction={shown}: must be in [0, 1)")
    lookup = 0.0 if c.p2p.lookup_latency_s is None else c.p2p.lookup_latency_s
    if not _all((c.p2p.replication >= 1) & (lookup >= 0)):
        raise ValueError("p2p.replication must be >= 1 and p2p.lookup_latency_s >= 0")
    pl = c.pool
    _sharing.check_pool(pl)
    if not _all((pl.servers >= 1) & (pl.nics >= 1) & (pl.dram_B >= 0) & (pl.ssd_B >= 0)):
        raise ValueError("pool: servers and nics must be >= 1, capacities >= 0")
    for name in ("dram_B", "ssd_B", "cxl_B"):
        v = getattr(c, name)
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            ok = np.isfinite(v) & (v >= 0)
            if not ok.all():
                raise ValueError(f"{name}={_show(v, ok)}: must be a finite number >= 0 (bytes)")
        elif not math.isfinite(v) or v < 0:
            raise ValueError(f"{name}={v!r}: must be a finite number >= 0 (bytes)")


def _check_parallel(c: Cluster) -> None:
    """``attention_dp``, ``ep`` and ``speculative``: their types, the MoE model DP attention
    and expert parallelism need, ``ep`` against ``tp``, the speculative mapping's fields."""
    dp = c.attention_dp
    if type(dp) is bool:  # the common case, without the ABC check
        pass
    elif isinstance(dp, Mapping):
        _wide_ep_arg(dp)
    elif not isinstance(dp, np.bool_):
        raise ValueError(f"Cluster.attention_dp={dp!r}: expected True, False or a mapping with "
                         f"keys among ['dispatch', 'combine'] (precisions)")
    if (_dp_on(c) or c.ep > 1) and not get_model(c.model).is_moe:
        raise ValueError(f"Cluster.attention_dp={dp!r}, ep={c.ep}: DP attention and expert "
                         f"parallelism need an MoE model; {c.model!r} is dense")
    if _dp_on(c) and c.ep % c.tp:
        raise ValueError(f"Cluster.ep={c.ep}: with attention_dp every instance is an EP group "
                         f"of ep GPUs, ep / tp attention ranks; ep must be a multiple of "
                         f"tp={c.tp}")
    if not _dp_on(c) and c.tp % c.ep:
        raise ValueError(f"Cluster.ep={c.ep} must divide tp={c.tp} without attention_dp (experts "
                         f"split inside the TP group); attention_dp=True for a wider EP group")
    if c.speculative is not None:
        try:
            _speculative_model(_speculative_arg(c.speculative, _params()), get_model(c.model))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Cluster.speculative={c.speculative!r}: {exc}") from None


def _dp_on(c: Cluster) -> bool:
    """DP attention is on: True or a mapping of its precisions (a cluster-like object without
    the field: off)."""
    dp = getattr(c, "attention_dp", False)
    if type(dp) is bool:  # the common case, without the ABC check
        return dp
    return isinstance(dp, Mapping) or bool(dp)


def gpus_per_instance(c: Cluster) -> int:
    """GPUs of one instance: its EP group (``ep``) with DP attention, else its TP group."""
    return c.ep if _dp_on(c) else c.tp


def _ranks(c: Cluster) -> int:
    """Attention ranks of one instance, each with its own KV pool (1 without DP attention)."""
    return c.ep // c.tp if _dp_on(c) else 1


def _nodes_per_instance(c: Cluster, node) -> int:
    """Whole nodes one instance spans: an EP group wider than a node takes several (1 else;
    a TP group wider than a node is counted as before, one node per instance)."""
    if not _dp_on(c):
        return 1
    return max(1, math.ceil(c.ep / node.gpus_per_node))


def _instance_share(c: Cluster, node, per_node: int, node_amount):
    """An instance's part of a node-wide amount (DRAM or NVMe bytes, NIC bandwidth): the nodes
    it spans over the instances packed on them, ``amount × span / per_node`` (a DP-attention
    EP16 instance on 8-GPU nodes owns two nodes' worth; two TP4 instances half a node each)."""
    return node_amount * _nodes_per_instance(c, node) / per_node


def _node_amount(c: Cluster, node, per_node: int, instance_amount):
    """One node's part of a per-instance amount (the inverse of :func:`_instance_share`):
    ``amount × per_node / span``."""
    return instance_amount * per_node / _nodes_per_instance(c, node)


def _node_pools(c: Cluster) -> list[tuple[Any, int, int]]:
    """(node spec, instances, instances per node) of each group of nodes counted and priced on
    its own template: the cluster's instances on its node template, or with a P/D decode pool
    on another GPU (``decode_gpu``) the prefill pool, then the decode pool on its GPU's node
    template, whole nodes each. The first group holds the cache instances."""
    _, node, _, per_node = layout(c)
    dkey = _decode_node_key(c)
    if dkey is None:
        return [(node, _instances_total(c), per_node)]
    dnode = get_node(dkey)
    return [(node, c.prefill_instances, per_node),
            (dnode, c.decode_instances, max(1, dnode.gpus_per_node // gpus_per_instance(c)))]


def _pool_nodes(c: Cluster, node, instances: int, per_node: int) -> int:
    """Whole nodes of ``instances`` packed ``per_node`` to a node, an instance wider than a node
    (a DP-attention EP group) on :func:`_nodes_per_instance` nodes."""
    return math.ceil(instances / per_node) * _nodes_per_instance(c, node)


def _nodes(c: Cluster, node, per_node: int) -> int:
    """Nodes holding the cluster's cache instances (``node`` packed ``per_node`` to a node):
    the whole cluster, but a P/D decode pool on its own template (:func:`_node_pools`), whose
    nodes neither reach the pool nor serve prefix hits."""
    return _pool_nodes(c, node, _node_pools(c)[0][1], per_node)


def _decode_node_key(c: Cluster) -> str | None:
    """Node template of a P/D decode pool whose GPU (``decode_gpu``) is not the cluster's
    (None otherwise: it packs on the cluster's nodes)."""
    if not c.prefill_instances or getattr(c, "decode_gpu", None) in (None, c.gpu):
        return None
    return _node_key(c, c.decode_gpu)


def _node_key(c: Cluster, gpu: str) -> str:
    """The cluster's node template when it holds ``gpu``, else the GPU's first template."""
    key = layout(c)[0]
    if get_node(key).gpu != gpu:
        key = default_node_for_gpu(gpu)
        if key is None:
            raise ValueError(f"Cluster.decode_gpu={gpu!r}: no node template has this GPU (the "
                             f"decode pool's nodes need one: price, GPUs per node, NICs); "
                             f"see kvmodel hardware node")
    return key


def _dp_node(c: Cluster, gpu: str | None = None):
    """Node template of a DP-attention instance on ``gpu`` (None: the cluster's ``gpu``): the
    cluster's node when it holds that GPU, else the GPU's first template (a P/D decode pool on
    ``decode_gpu``); with ``Cluster.nic`` set, the template with that NIC link (a spec object,
    which ``estimate(node=...)`` takes as is)."""
    key = layout(c)[0] if gpu is None else _node_key(c, gpu)
    if c.nic is None:
        return key
    return dataclasses.replace(get_node(key), nic_link=c.nic)


def parallel_kw(c: Cluster, gpu: str | None = None) -> dict[str, Any]:
    """``estimate`` keyword arguments of DP attention, expert parallelism and speculative
    decoding on ``gpu`` (None: the cluster's; {} for plain TP instances: the calls stay as
    before)."""
    kw: dict[str, Any] = {}
    if _dp_on(c):
        kw.update(attention_dp=c.attention_dp, ep=c.ep, num_gpus=c.ep, node=_dp_node(c, gpu))
    elif c.ep > 1:
        kw["ep"] = c.ep
    if c.speculative is not None:
        kw["speculative"] = c.speculative
    return kw


def _instance_kw(c: Cluster) -> dict[str, Any]:
    """Every ``estimate`` keyword argument of an instance beyond model, GPU, TP, precision,
    lengths and load: its connector, DP attention / EP and speculative decoding."""
    return {**_connector_kw(c), **parallel_kw(c)}


# ---- policies --------------------------------------------------------------------------------
def _check_policies(c: Cluster) -> None:
    """Sharing, routing, eviction and P2P placement are registered names or policy objects."""
    SHARING_ARCHITECTURES.name_of(c.sharing, "sharing")
    ROUTING.check_params(ROUTING.name_of(c.routing, "routing"), c.routing_params or {})
    EVICTION.name_of(c.eviction, "eviction")
    CONNECTOR.name_of(c.connector, "connector")
    P2P_PLACEMENT.name_of(c.p2p.placement, "p2p.placement")


def _named_policies(c: Cluster) -> Cluster:
    """``c`` with policy objects replaced by their registered names (a routing object's own
    ``epsilon``, if it has one, replaces ``Cluster.epsilon``)."""
    def obj(v):  # a policy object (arrays are left for _resolve to reject)
        return not isinstance(v, (str, *_SEQ))
    kw = {}
    for f, reg in (("sharing", SHARING_ARCHITECTURES), ("routing", ROUTING),
                   ("eviction", EVICTION), ("connector", CONNECTOR)):
        if obj(getattr(c, f)):
            kw[f] = reg.name_of(getattr(c, f), f)
    if obj(c.routing) and getattr(c.routing, "epsilon", None) is not None:
        kw["epsilon"] = c.routing.epsilon
    if obj(c.routing) and hasattr(c.routing, "params"):  # its parameters go to the closed form
        kw["routing_params"] = {**(c.routing_params or {}), **c.routing.params()}
    if obj(c.p2p.placement):
        kw["p2p"] = dataclasses.replace(
            c.p2p, placement=P2P_PLACEMENT.name_of(c.p2p.placement, "p2p.placement"))
    return dataclasses.replace(c, **kw) if kw else c


def _closed_forms(c: Cluster, n: int) -> dict[str, str]:
    """Closed form evaluate() uses for each policy family of ``c`` (names of the registries)."""
    own = n > 1 and is_loaded(c.routing) and c.eviction == "lru"  # else the fallback of _curve
    return {"routing": ("single" if n == 1 else ROUTING[c.routing].closed_form if own or not
                        is_loaded(c.routing) else "prefix_affinity_bounded"),
            "routing_params": params_text(c) if own else "",
            "eviction": EVICTION[c.eviction].closed_form,
            "connector": CONNECTOR[c.connector].closed_form,
            "sharing": SHARING_ARCHITECTURES[c.sharing].closed_form,
            "placement": (P2P_PLACEMENT[c.p2p.placement].closed_form if c.sharing == "p2p"
                          else "unused")}


# ---- reuse -----------------------------------------------------------------------------------
def kv_precision(c: Cluster) -> str:
    """KV-cache precision of the cluster's instances: the framework's default next to the
    weights (fp8 next to 8-bit and fp4 weights unless the framework's cache follows the model
    dtype; 16-bit next to weight-only formats)."""
    return default_kv_precision(c.precision, kv_cache_auto(get_framework(c.framework)))


def snapshot_grid(c: Cluster, w: Workload) -> tuple[str, Any]:
    """(snapshot mode, reuse grid) of the instances' prefix cache. Hybrid models (recurrent
    state) reuse a prefix only up to a state snapshot, kept where the framework's entry
    says (``hybrid_prefix_cache``, :data:`~kvmodel.catalog.models.SNAPSHOT_MODES`): ``block``
    at every boundary of the engine's hybrid block (:meth:`ModelSpec.state_block_tokens` at
    the instances' KV precision and TP, never finer than the trace's blocks); vLLM ``align``
    at the prompt's last such boundary and every prefill chunk, SGLang ``node`` and
    TensorRT-LLM ``interval`` at the prompt's end (the trace's blocks) and every
    ``hybrid_snapshot_interval`` tokens (the tier of the instances' GPU memory,
    :func:`~kvmodel.catalog.models.snapshot_interval`): a mix by the trace's :func:`whole_prefix_share`
    (:func:`~kvmodel.cluster._classes.reuse_grid`). None for attention-only models.
    Memoised like :func:`block_bytes`."""
    return _per_instance(c, w, "_snapshot_grid", _snapshot_grid)


def _per_instance(c: Cluster, w: Workload, name: str, fn) -> Any:
    """``fn(c, w)`` memoised on the workload (``name``) per model, framework (and its
    snapshot mode), GPU (its memory sets the snapshot interval), TP and KV precision in the
    active catalog: what depends on the trace and the instance's KV only."""
    memo, cat = w._memo(name, dict), current()
    key = (c.model, c.framework, snapshot_mode(c.framework), c.gpu, c.tp, kv_precision(c))
    got = memo.get(key)
    if got is None or got[0] is not cat:
        got = memo[key] = (cat, fn(c, w))
    return got[1]


def _snapshot_grid(c: Cluster, w: Workload) -> tuple[str, Any]:
    m, mode = get_model(c.model), snapshot_mode(c.framework)
    if not m.has_recurrent_state:
        return mode, None
    b = float(w.trace.block_tokens)
    if mode in ("block", "align"):
        b = max(b, float(m.state_block_tokens(kv_precision(c), tp=c.tp)))
    share = w._memo("_whole_prefix_share", lambda: whole_prefix_share(w.trace))
    return mode, reuse_grid(mode, b, snapshot_interval(c.framework, c.gpu), share)


def block_bytes(c: Cluster, w: Workload) -> float:
    """Bytes of one of the trace's KV blocks in the cluster's prefix caches
    (:meth:`ModelSpec.cache_block_bytes`: windows bounded, state snapshots where the
    framework keeps them, :func:`snapshot_grid`); memoised (:func:`_per_instance`)."""
    return _per_instance(c, w, "_block_B", _block_bytes)


def _block_bytes(c: Cluster, w: Workload) -> float:
    mode, grid = snapshot_grid(c, w)
    kw = {}
    if grid is not None:  # the prefix floored to the engine's block (block, align), else the trace's
        step = (grid if not isinstance(grid, tuple) else grid[0][1] if mode == "align"
                else float(w.trace.block_tokens))
        kw = {"snapshot_tokens": step, "snapshots": mode,
              "interval": snapshot_interval(c.framework, c.gpu)}
    return get_model(c.model).cache_block_bytes(w.trace.block_tokens, kv_precision(c),
                                                w.input_len, **kw)


def layout(c: Cluster) -> tuple[str, Any, int, int]:
    """(node key, node spec, cache instances N, instances per node) of a cluster."""
    key = c.node or default_node_for_gpu(c.gpu)
    if key is None:
        raise ValueError(f"no node template uses gpu {c.gpu!r}; set Cluster.node")
    node = get_node(key)
    n = c.prefill_instances if c.prefill_instances else c.instances
    return key, node, n, max(1, node.gpus_per_node // gpus_per_instance(c))


def _curve(w: Workload, cap_blocks, n: int, routing: str, eps: float,
           eviction: str = "lru", c: Cluster | None = None) -> np.ndarray:
    """Hit ratio at total capacities ``cap_blocks`` over n instances: the analytic LRU curve,
    or for another eviction policy the exact replay at a few capacities, interpolated
    (kvmodel.workload._policy_curve; built once per policy, routing and n, then microseconds).
    Load-aware routers (``c`` given): their own rule replayed at the load level of the
    workload's rate (kvmodel.cluster._routing_load), with LRU; with another eviction policy
    they fall back to the bounded prefix-affinity assignment."""
    r = "single" if n == 1 else ROUTING[routing].closed_form
    cap = np.floor(np.maximum(np.atleast_1d(np.asarray(cap_blocks, dtype=float)), 0.0))
    loaded = r in LOADED_FORMS
    if loaded and eviction == "lru" and c is not None:
        return loaded_curve(c, w, cap, n)
    r = "prefix_affinity_bounded" if loaded else r
    if eviction != "lru":
        return policy_hit_ratio_curve(w.trace, w.profile, cap, instances=n, routing=r,
                                      epsilon=eps, eviction=eviction)
    return _analytic(w.profile, cap, n, r, eps)


def _analytic(prof, cap: np.ndarray, n: int, routing: str, eps: float) -> np.ndarray:
    """:func:`analytic_hit_ratio_curve` at whole capacities ``cap``, looked up in its row
    (:func:`~kvmodel.cluster._routing_load.curve_row`, built once per profile, n, routing and
    epsilon; the same values)."""
    def curve(x):
        if x.size <= 64:
            return analytic_hit_ratio_curve(prof, x, instances=n, routing=routing, epsilon=eps)
        # large grids: the curve at each distinct capacity, in increasing order (its table
        # look-ups then walk forward instead of jumping at random: ~10x faster), same values
        u, inv = np.unique(x, return_inverse=True)
        h = analytic_hit_ratio_curve(prof, u, instances=n, routing=routing, epsilon=eps)
        return h[inv].reshape(x.shape)
    key = ("analytic_row", n, routing, eps)
    if key not in prof._cache:
        prof._cache[key] = curve_row(curve, prof.unique_blocks, n)
    return row_hits(prof._cache[key], cap, n, curve)


def _stack(values: list) -> np.ndarray:
    """Stack scalars (1-d) or arrays broadcast together (levels along axis 0)."""
    if xp.is_array(*values):
        return np.stack(np.broadcast_arrays(*values))
    return np.array(values, dtype=float)


def _hits(c: Cluster, w: Workload, caps: dict[str, Any], n: int,
          vector: bool = False) -> dict[str, Any]:
    """Fraction of block accesses served by each tier, fastest first (the rest are recomputed).

    Each level holds the next stretch of one LRU stack: per-instance levels follow the routing
    curve at the cumulative capacity; shared levels (pool, P2P DRAM) the single-cache curve.
    All curve points are evaluated in two vectorised calls (capacities may be arrays).
    ``vector``: keep every level of the sharing mode (zeros where a scalar evaluation has none).
    """
    kinds = ("hbm", "dram", "cxl", "ssd")
    local = n * np.cumsum(_stack([caps[t] for t in kinds]), axis=0)
    h_local = _curve(w, local, n, c.routing, c.epsilon, c.eviction, c)
    r = c.p2p.replication
    shared = _stack([caps["pool"], n * (caps["hbm"] + caps["dram"] / r)])
    h_shared = _curve(w, shared, 1, "single", c.epsilon, c.eviction)
    vec = h_local.ndim > 1 or h_shared.ndim > 1
    if not vec:
        h_local, h_shared = h_local.tolist(), h_shared.tolist()  # Python floats
    out, h_prev = {}, 0.0
    for i, t in enumerate(kinds):
        present = caps[t] > 0  # an absent tier serves nothing
        if t == "dram" and c.sharing == "p2p":
            h = xp.where(present, xp.maximum(h_prev, h_shared[1]), h_prev)
            share = _p2p_shares(c, w, n, h_prev)[0]
            out["dram"], out["peer"] = (h - h_prev) * share, (h - h_prev) * (1 - share)
            if not vector and not present:
                del out["peer"]  # scalar evaluation: no peer level without DRAM
        else:
            h = xp.where(present, xp.maximum(h_prev, h_local[i]), h_prev)
            out[t] = h - h_prev
        h_prev = h
    if c.sharing == "central_pool":
        h_pool = h_shared[0] if c.pool.scope == "cluster" else _pool_curve(c, w, caps["pool"], n)
        out["pool"] = xp.maximum(h_prev, h_pool) - h_prev
    return out


def _p2p_shares(c: Cluster, w: Workload, n: int, h_hbm):
    """(local share, hot-owner share, put copies, put hot share, form) of the P2P placement
    (kvmodel.cluster._sharing)."""
    routing = "single" if n == 1 else ROUTING[c.routing].closed_form
    prof = w.profile
    loaded = n > 1 and routing in LOADED_FORMS
    if loaded:  # the router's own replay at the middle load level (one table per router, not
        # per rate: scalar and array rates agree), its parameters in the memo key
        routing = f"{routing}[{params_text(c)}]"

    def assign():  # prefix affinity: the reuse model's assignment; load-aware routers: their
        # own replay; the others spread like round robin
        if loaded:
            return _routed_mid_load(c, w, n)
        if routing in ("prefix_affinity", "prefix_affinity_bounded"):
            from kvmodel.workload._reuse_analytic import _assignment
            return np.asarray(_assignment(prof, n, routing, c.epsilon), dtype=np.int64)
        return np.arange(prof.n_requests, dtype=np.int64) % n
    return _sharing.p2p_shares(prof, assign, n, routing, c.epsilon,
                               P2P_PLACEMENT[c.p2p.placement].closed_form, c.p2p.replication,
                               h_hbm)


def _pool_curve(c: Cluster, w: Workload, cap_blocks, n: int):
    """Hit ratio of the pools at ``cap_blocks`` per pool: one global LRU (scope cluster), or
    one pool per rack, the racks playing the routing's instances (scope rack)."""
    _, node, _, per_node = layout(c)
    racks = _sharing.pool_racks(c, _nodes(c, node, per_node))
    if racks == 1:
        h = _curve(w, cap_blocks, 1, "single", c.epsilon, c.eviction)
    else:
        h = _curve(w, racks * np.asarray(cap_blocks, dtype=float), racks, c.routing, c.epsilon,
                   c.eviction)
    return float(h.flat[0]) if np.ndim(cap_blocks) == 0 else h


def _instances_total(c: Cluster) -> int:
    return (c.prefill_instances + c.decode_instances) or c.instances


def _routed_mid_load(c: Cluster, w: Workload, n: int) -> np.ndarray:
    """Instance of each request under a load-aware router's own rule at load level 0.5
    (kvmodel.cluster._routing_load; rejected requests, -1, stay on instance 0)."""
    from kvmodel.cluster._routing_load import level_loads, routing_params
    from kvmodel.workload._routing_closed import LOAD_LEVELS, routed_assignment
    j = int(np.abs(np.asarray(LOAD_LEVELS) - 0.5).argmin())
    a = routed_assignment(w.profile, n, c.routing, routing_params(c), level_loads(c, w, n)[1][j])
    return np.maximum(np.asarray(a, dtype=np.int64), 0)


def _imbalance(c: Cluster, w: Workload, n: int) -> Any:
    """Busiest instance's share of requests × n, from the routing's assignment (load-aware
    routers: at the workload's load level; an array for an array rate; random: the expected
    balls-into-bins maximum over the trace's requests)."""
    routing = ROUTING[c.routing].closed_form
    if n > 1 and routing in LOADED_FORMS:
        if c.eviction == "lru":
            return loaded_imbalance(c, w, n)
        routing = "prefix_affinity_bounded"  # the fallback of _curve
    prof = w.profile
    if n > 1 and routing == "random":  # balls into bins over the trace's requests (memoised:
        # a pure function of the request and instance counts, ~1 ms of scipy per call)
        from kvmodel.workload._routing_closed import random_imbalance
        key = ("imbalance", routing, n)
        if key not in prof._cache:
            prof._cache[key] = random_imbalance(prof.n_requests, n)
        return prof._cache[key]
    if n == 1 or routing not in ("prefix_affinity", "prefix_affinity_bounded"):
        return 1.0
    key = ("imbalance", routing, n, c.epsilon)
    if key not in prof._cache:
        counts = np.bincount(assignment(prof, n, routing, c.epsilon), minlength=n)
        prof._cache[key] = float(counts.max() * n / counts.sum())
    return prof._cache[key]


# ---- capacities and paths --------------------------------------------------------------------
def kv_capacity_tokens(model: str, gpu: str, tp: int, precision: str, input_len: int,
                       output_len: int, framework: str = "tensorrt-llm", **parallel) -> float:
    """KV-cache capacity (tokens) of one instance (of one attention rank with DP attention);
    ValueError when the instance is infeasible. ``parallel``: DP attention / EP / speculative
    ``estimate`` arguments (:func:`parallel_kw`). Memoised in the active catalog (a new
    catalog, e.g. another calibration, starts afresh)."""
    key = (model, gpu, tp, precision, input_len, output_len, framework)
    if parallel:
        key += (repr(sorted(parallel.items())),)
    return current().cached("kv_capacity_tokens", key,
                            lambda: _kv_capacity(*key[:7], **parallel))


def _instance_kv_tokens(c: Cluster, w: Workload) -> float:
    """KV-cache capacity (tokens) of one of the cluster's instances: all its attention ranks."""
    return _ranks(c) * kv_capacity_tokens(c.model, c.gpu, c.tp, c.precision,
                                          round(w.input_len), round(w.output_len), c.framework,
                                          **parallel_kw(c))


def _kv_capacity(model, gpu, tp, precision, I, O, framework, **parallel) -> float:
    probe = estimate(model, gpu, tp=tp, precision=precision, input_len=I, output_len=O,
                     framework=framework, **parallel)
    if not probe.feasible:
        raise ValueError(f"instance infeasible: {probe.reason}")
    return float(probe.kv_capacity_tokens)


def _caps(c: Cluster, w: Workload, node, per_node: int, block_B: float) -> dict[str, Any]:
    """Cache capacity per instance (blocks) of each tier; the pool's total."""
    kv_tokens = _instance_kv_tokens(c, w)
    tok_B = _per_instance(c, w, "_tok_B", lambda c1, _: get_model(c1.model).kv_bytes_per_token(
        kv_precision(c1)))
    dram, ssd = _host_caps(c, node, per_node)
    return {"hbm": c.hbm_cache_fraction * kv_tokens * tok_B / block_B,
            "dram": dram / block_B, "cxl": c.cxl_B / block_B, "ssd": ssd / block_B,
            "pool": c.pool.servers * (c.pool.dram_B + c.pool.ssd_B) / block_B}


def _host_caps(c: Cluster, node, per_node: int) -> tuple[Any, Any]:
    """(DRAM, SSD) bytes of one instance's host tiers: ``dram_B`` / ``ssd_B``, or where None its
    share of the nodes it spans (:func:`_instance_share`)."""
    dram = (_instance_share(c, node, per_node, node.host_dram_B) if c.dram_B is None
            else c.dram_B)
    ssd = (_instance_share(c, node, per_node, node.nvme_capacity_B) if c.ssd_B is None
           else c.ssd_B)
    return dram, ssd


def _with_source(tier: Tier, capacity_B, devices, gpus_per_node: int, meta_key: str) -> Tier:
    """``tier`` with array capacities: its path's source bandwidth scaled by the device count
    (per-device rates and any cap from the tier's ``meta``, as :func:`node_tiers` sets them)."""
    cap = tier.meta.get("source_cap_Bps", np.inf)
    rd, wr = tier.meta["device_read_Bps"], tier.meta["device_write_Bps"]
    path = dataclasses.replace(tier.path, source_Bps=np.minimum(rd * devices / gpus_per_node, cap),
                               source_write_Bps=np.minimum(wr * devices / gpus_per_node, cap))
    return dataclasses.replace(tier, capacity_B=capacity_B, path=path,
                               meta={**tier.meta, meta_key: devices}, write_Bps=wr * devices)


def _node_tiers(key, gpu, dram_B, cxl_B, ssd_B, nic) -> dict[str, Tier]:
    """node_tiers for scalar capacities, memoised in the active catalog (searches revisit the
    same capacities, whose tiers, kept, also key the instances' prefix-mixture memo; the
    paths' size curves cost ~0.1 ms to build). A DRAM size resizes the template's DRAM tier
    (its capacity is all that it changes)."""
    if dram_B is not None:
        def resized():
            t = _node_tiers(key, gpu, None, cxl_B, ssd_B, nic)
            return {**t, "dram": dataclasses.replace(t["dram"], capacity_B=dram_B)}
        return current().cached("node_tiers_dram", (key, gpu, dram_B, cxl_B, ssd_B, nic),
                                resized, maxsize=1024)
    return current().cached("node_tiers", (key, gpu, dram_B, cxl_B, ssd_B, nic), lambda: node_tiers(
        key, gpu, dram_B=dram_B, cxl_B=cxl_B, ssd_B=ssd_B, remote_B=1.0, nic=nic), maxsize=1024)


def _tiers(c: Cluster, key: str, per_node: int) -> dict[str, Tier]:
    """Tiers of an instance's node (one node's part of the instances' capacities,
    :func:`_node_amount`: × instances per node, ÷ nodes an instance spans). Array capacities:
    the paths come from the node template and the CXL/SSD source bandwidth follows the device
    count of each element (as in :func:`kvmodel.node_tiers`)."""
    node = get_node(key)

    def arr(v):
        return isinstance(v, np.ndarray)

    def scaled(v):
        return None if v is None else (0.0 if arr(v) else _node_amount(c, node, per_node, v))
    t = dict(_node_tiers(key, c.gpu, scaled(c.dram_B), scaled(c.cxl_B), scaled(c.ssd_B),
                         c.nic))
    if arr(c.dram_B):
        t["dram"] = dataclasses.replace(
            t["dram"], capacity_B=_node_amount(c, node, per_node, c.dram_B))
    if arr(c.cxl_B) or arr(c.ssd_B):
        if arr(c.cxl_B):
            mem, cap = get_memory(_CXL_DEVICE), _node_amount(c, node, per_node, c.cxl_B)
            dev = np.where(cap > 0, np.maximum(1.0, np.ceil(cap / mem.capacity_B)), 0.0)
            t["cxl"] = _with_source(t["cxl"], cap, dev, node.gpus_per_node, "devices")
        if arr(c.ssd_B):
            mem, cap = get_memory(node.nvme), _node_amount(c, node, per_node, c.ssd_B)
            dev = ssd_drives(node, mem, cap)
            t["ssd"] = _with_source(t["ssd"], cap, dev, node.gpus_per_node, "drives")
    return {"hbm": t["hbm"], "dram": t["dram"], "cxl": t["cxl"], "ssd": t["ssd"],
            "pool": t["remote"], "peer": t["remote"]}


def _pool_kw(c: Cluster, w: Workload, hits, block_B: float, n: int) -> dict[str, Any]:
    """Pools in the cluster (``racks``) and the pool hit ratio its DRAM serves."""
    _, node, _, per_node = layout(c)
    nodes = _nodes(c, node, per_node)
    h_prev = sum(v for k, v in hits.items() if k != "pool")
    h_dram = _pool_curve(c, w, c.pool.servers * c.pool.dram_B / block_B, n)
    return dict(racks=_sharing.pool_racks(c, nodes), h_pool_dram=xp.maximum(h_dram - h_prev, 0.0))


def _admitted(c: Cluster, w: Workload, hits, block_B: float, rate, n: int):
    """(hits, (admitted share of the pool's puts, pool hit ratio lost to dropped puts, local
    hits offered again)) under ``PoolSpec.put_policy`` (kvmodel.cluster._sharing.pool_admission)."""
    if "pool" not in hits or c.pool.put_policy == "all":
        return hits, (1.0, 0.0, 0.0)
    kw = _pool_kw(c, w, hits, block_B, n)
    hits, *admit = _sharing.pool_admission(c, w, hits, block_B, rate, kw["racks"],
                                           kw["h_pool_dram"], lambda k: _pool_curve(c, w, k, n))
    return hits, tuple(admit)


def _network(c: Cluster, w: Workload, node, hits, block_B: float, rate,
             caps: dict[str, Any], admit=(1.0, 0.0, 0.0)) -> "_sharing.SharingFlows":
    """Traffic, utilisations and queues of the sharing mode (kvmodel.cluster._sharing): pool
    NICs (out and in), DRAM and SSDs, puts as admitted (``admit``: :func:`_admitted`); or the
    hottest peer's NIC and PCIe uplink, puts."""
    n = c.prefill_instances or c.instances
    kw: dict[str, Any] = {"peer_Bps": _peer_Bps(c, node), "instance_Bps": _peer_Bps(c, node)}
    if "pool" in hits:
        kw.update(_pool_kw(c, w, hits, block_B, n), admit=admit)
    if "peer" in hits:
        kw.update(shares=_p2p_shares(c, w, n, hits["hbm"]), dram_B_inst=caps["dram"] * block_B)
    return _sharing.flows(c, w, node, hits, block_B, rate, n, **kw)


def _peer_Bps(c: Cluster, node) -> float:
    """NIC bandwidth one peer (instance) serves its blocks with: its share of the NICs of the
    nodes it spans (:func:`_instance_share`; the cluster's ``nic`` link, else the node
    template's)."""
    nic = get_link(c.nic or node.nic_link)
    per_node = max(1, node.gpus_per_node // gpus_per_instance(c))
    return _instance_share(c, node, per_node, node.nics * nic.achieved_bw_Bps)


def _extra_delay(flows: "_sharing.SharingFlows", m: dict[str, Any]) -> dict[str, Any]:
    """Per-request delay outside the compute pipeline (lookups, exposed SSD time, network
    queues with tails): ``mean`` and the increase of each TTFT percentile (``p50``..``p99``)."""
    return _sharing.delays(flows, m)


# ---- instances -------------------------------------------------------------------------------
class _PrefixArgs(dict):
    """``estimate`` keyword arguments of the mean cached prefix (``cached_prefix_len``,
    ``cache_tier``: what the closed-loop and burst instances use) that also keeps the hit
    shares, so the open-loop instances can ask for request-level hit classes instead."""

    def __init__(self, hits: dict, tiers: dict, grid: Any = None):
        super().__init__()
        self.hits, self.tiers, self.grid = hits, tiers, grid


def _prefix_args(hits: dict[str, Any], tiers: dict[str, Tier], I: float,
                 grid: Any = None) -> dict[str, Any]:
    """Cached prefix length (tokens) and the tier mix it loads from. With array hit ratios the
    length and the fractions are arrays (0 tokens where nothing hits: no prefix there). The
    result also keeps ``hits``, ``tiers`` and the reuse ``grid`` (:func:`snapshot_grid`: a
    hybrid model's prefix is floored to it) for :func:`_hit_kw`."""
    kept = {t: xp.where(f > 1e-12, f, 0.0) for t, f in hits.items()}  # drop rounding residue
    total = sum(kept.values())
    P = xp.floor(xp.minimum(total * I, I - 1.0))
    P = floor_to_grid(P, grid)
    out = _PrefixArgs(hits, tiers, grid)
    if not xp.any_true(P > 0):
        return out
    safe = xp.where(total > 0, total, 1.0)
    mix = [(tiers[t], f / safe) for t, f in kept.items()]
    if xp.is_array(total):  # elements with no hits still need fractions summing to 1
        mix[0] = (mix[0][0], np.where(total > 0, mix[0][1], 1.0))
    out.update(cached_prefix_len=P, cache_tier=mix)
    return out


def _hit_kw(pre: dict, w: "Workload") -> dict[str, Any]:
    """Open-loop instances: request-level hit classes (a miss, or a hit in one level loading
    its own prefix) crossed with the trace's prompt-length bands, in place of the mean prefix
    and ``length_cv`` (:mod:`kvmodel.cluster._classes`)."""
    if not isinstance(pre, _PrefixArgs):
        return dict(pre, length_cv=w.length_cv)
    last = _LAST_HIT_KW[0]  # the same hits, tiers and workload again (the routed queue's)
    if last and last[0] is pre.hits and last[1] is pre.tiers and last[2] is w and (
            last[3] == pre.grid):
        return dict(last[4])
    classes = None
    if pre:
        reuse = w._memo("_leading_reuse", lambda: leading_reuse(w.trace))
        classes = hit_classes(pre.hits, pre.tiers, w.input_len, reuse)
    bands = w._memo("_length_bands", lambda: trace_bands(w.trace.input_len,
                                                         output_len=w.trace.output_len))
    classes = with_lengths(classes or [(1.0, 0, "hbm")], bands, w.input_len, pre.grid,
                           O=round(w.output_len))  # each band's output, the instance's mean
    out = dict(prefix_classes=classes, length_cv=0.0)
    _LAST_HIT_KW[0] = (pre.hits, pre.tiers, w, pre.grid, out)  # objects kept: ids not reused
    return dict(out)


_LAST_HIT_KW: list = [None]  # (hits, tiers, workload, grid, result) of the last _hit_kw


def _prefill_kw(kw: dict) -> dict:
    """:func:`_hit_kw`'s arguments for a prefill pool (``output_len=1``): its classes
    without their own output lengths (the decode pool holds the outputs)."""
    if kw.get("prefix_classes") is None:
        return kw
    return dict(kw, prefix_classes=[c[:4] for c in kw["prefix_classes"]])


_ESTIMATE_TAKES_CONNECTOR = "connector" in inspect.signature(estimate).parameters


def _connector_kw(c: Cluster) -> dict:
    """``{"connector": name}`` when the instance model takes one (``estimate(connector=)``),
    else ``{}`` (then only "ideal", today's transfer model, is what the instances use)."""
    if not _ESTIMATE_TAKES_CONNECTOR:
        return {}
    return {"connector": c.connector}


def _colocated(c: Cluster, w: Workload, lam_i, pre: dict,
               arrival_cv: Any = 1.0, slot_steer: float = 0.0,
               smooth: float | None = None) -> dict[str, Estimate]:
    e = estimate(c.model, c.gpu, tp=c.tp, precision=c.precision, input_len=round(w.input_len),
                 output_len=round(w.output_len), request_rate=lam_i, framework=c.framework,
                 arrival_cv=arrival_cv, slot_steer=slot_steer, output_law=w.output_law,
                 hbm_cache_fraction=c.hbm_cache_fraction, **_hit_kw(pre, w), **_instance_kw(c),
                 work_smoothing=smooth)
    return {"instance": e}


def _work_smoothing(c: Cluster, n: int) -> float | None:
    """Share of an instance's prompt work its router steers by the instances' routed work
    (``estimate``'s ``work_smoothing``), from the rule: a router with a work signal
    (``load_signal`` "work": sglang, dynamo, llm-d, mooncake) sends the next prompt away from
    an instance that just took a long one: 1; a length-blind router (round robin, random,
    prefix affinity, or a count signal: least_loaded) gives each instance a random sample of
    prompts: 0. One instance: None (no router; the instance law as calibrated).

    Known limit (tests/cluster/test_router_tpot_cells.py, strict xfails): one number per rule
    fits round robin, random, sglang and mooncake (p99 TPOT within 35 % of the simulator on
    8 x 70B), not bounded affinity and least_loaded (closed 2.1-2.7x high: they send less
    prompt work into short requests' decode windows than a random sample) nor dynamo and
    llm-d (~67 % low: more than a work-steered rule); benchmarks/router_tpot_arrivals.py
    --windows measures the share each rule sends."""
    if n == 1:
        return None
    return 1.0 if is_loaded(c.routing) and work_signal(c.routing) else 0.0


def _arrival_cv(c: Cluster, w: Workload, n: int) -> Any:
    """Inter-arrival CV of an instance's requests: 1 (Poisson split), or behind a load-aware
    router (the colocated open loop of :func:`_routed_queue`) the smoothing its replay
    measures (:func:`kvmodel.cluster._routing_load.routed_arrival_scv`); round robin: every
    N-th arrival, Erlang-N (whatever the eviction)."""
    rr = ROUTING[c.routing].closed_form == "round_robin"
    if n == 1 or not (rr or (c.eviction == "lru" and is_loaded(c.routing))):
        return 1.0
    from kvmodel.cluster._routing_load import routed_arrival_scv
    ca2 = routed_arrival_scv(c, w, n)
    return np.sqrt(ca2) if isinstance(ca2, np.ndarray) else math.sqrt(ca2)


def _slot_steer(c: Cluster, w: Workload, n: int, caps: dict | None) -> Any:
    """Share of the KV-slot swings the router takes back
    (:func:`kvmodel.cluster._routing_load.routed_slot_steer`, with the cache blocks per
    instance ``caps`` gives; one instance: none)."""
    from kvmodel.cluster._routing_load import routed_slot_steer
    if n == 1:
        return 0.0
    local = None if caps is None else caps["hbm"] + caps["dram"] + caps["cxl"] + caps["ssd"]
    return routed_slot_steer(c, w if caps is not None else None, n, local)


def _disaggregated(c: Cluster, w: Workload, lam, lam_p, pre: dict, node):
    """Prefill pool at ``lam_p`` per instance (its busiest), decode pool at its share of ``lam``."""
    I, O = round(w.input_len), round(w.output_len)
    p = estimate(c.model, c.gpu, tp=c.tp, precision=c.precision, input_len=I, output_len=1,
                 request_rate=lam_p, framework=c.framework,
                 hbm_cache_fraction=c.hbm_cache_fraction, **_prefill_kw(_hit_kw(pre, w)),
                 **_instance_kw(c))
    dgpu = c.decode_gpu or c.gpu
    d = estimate(c.model, dgpu, tp=c.tp, precision=c.precision, input_len=I, output_len=O,
                 request_rate=lam / c.decode_instances, framework=c.framework,
                 prefix_classes=[(1.0, I - 1, "hbm")], output_law=w.output_law,
                 **parallel_kw(c, dgpu))
    # handed-off KV: each request's own, never floored to a hybrid model's snapshot grid, and
    # not a shared prefix partition of the decode GPU's KV pool (a plain cached_prefix_len is)
    return {"prefill": p, "decode": d, "kv_transfer_s": _handoff_s(c, w, p, node, I)}


def _handoff_s(c: Cluster, w: Workload, p: Estimate, node, I):
    """Exposed seconds of the P/D KV handoff of one request, per GPU: its connector's costs
    plus bytes over the scale-up link (same node) or this GPU's share of the node's NICs, all
    blocks posted at once (one link setup). A layer-wise connector streams layer by layer
    under the prefill (only the part slower than it is exposed, at least one layer's share);
    one that sends after the prefill exposes all of it."""
    link, per_gpu = _handoff_link(c, node)
    per_tok = get_model(c.model).kv_bytes_per_token(kv_precision(c)) / c.tp
    kv_B, block_B = I * per_tok, w.trace.block_tokens * per_tok
    conn = get_connector(getattr(c, "connector", "ideal"))
    path = TransferPath(f"P/D handoff over {link.key}", (), per_gpu, link.latency_s)
    t_tr = transfer_seconds(path, kv_B, block_B, connector=conn, in_flight=math.ceil(kv_B / block_B))
    if conn.streaming != "layer":
        return t_tr + 0.0 * p.ttft_s
    L = get_model(c.model).num_layers
    slow = t_tr - (p.ttft_s - p.queue_wait_s)  # NaN (inf - inf) where the prefill is unstable
    return xp.where(slow > t_tr / L, slow, t_tr / L)


def _handoff_link(c: Cluster, node) -> tuple[Any, float]:
    """(link, bytes/s per GPU) of the P/D handoff: the GPU's scale-up link when both pools fit
    one node of ``node`` (the same template), else each end's per-GPU share of its node's NICs
    (``Cluster.nic``, else its template's link), the slower end's (a decode pool on another
    GPU sits on its own nodes, :func:`_node_pools`)."""
    dkey = _decode_node_key(c)
    gpus = (c.prefill_instances + c.decode_instances) * gpus_per_instance(c)
    if dkey is None and gpus <= node.gpus_per_node:
        link = get_link(get_gpu(c.gpu).scale_up_link)
        return link, link.achieved_bw_Bps
    ends = []
    for nd in (node,) if dkey is None else (node, get_node(dkey)):
        link = get_link(c.nic or nd.nic_link)
        ends.append((nic_aggregate_Bps(link, nd.nics) / nd.gpus_per_node, link))
    per_gpu, link = min(ends, key=lambda e: e[0])
    return link, per_gpu


def _either(a, b):
    """First non-empty reason (element-wise for object arrays)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.where(a != "", a, b)
    return str(a or b)


def _utilisation(e) -> Any:
    """The instance's utilisation: its request rate over its saturation rate (the load-aware
    routers' wait laws read their ρ here, :func:`kvmodel.cluster._routing_queue.routed_law`);
    None outside the open loop."""
    rate = e.inputs.get("request_rate")
    if rate is None:
        return None
    return rate / xp.maximum(e.saturation_request_rate_per_s, 1e-300)


def _combine(parts: dict) -> dict[str, Any]:
    if "instance" in parts:
        e = parts["instance"]
        return dict(ttft=e.ttft_s, ttft50=e.ttft_p50_s, tpot=e.tpot_s, ttft90=e.ttft_p90_s,
                    ttft99=e.ttft_p99_s, tpot99=e.tpot_p99_s, wait=e.queue_wait_s,
                    pwait=e.queue_wait_prob, tpot90=e.tpot_p90_s, stable=e.stable,
                    feasible=e.feasible, reason=e.reason, util=_utilisation(e),
                    mixture=getattr(e, "ttft_mixture", None),
                    parts=getattr(e, "wait_parts", None))
    p, d, tr = parts["prefill"], parts["decode"], parts["kv_transfer_s"]
    # transfer, then the decode side's first step; the request's fixed overhead (API, tokenise)
    # is already in the prefill side's TTFT, not paid again on the decode side
    extra = tr + d.ttft_s - d.queue_wait_s - _params()["request_overhead"]
    return dict(ttft=p.ttft_s + extra + d.queue_wait_s, ttft50=p.ttft_p50_s + extra,
                tpot=d.tpot_s, ttft90=p.ttft_p90_s + extra,
                ttft99=p.ttft_p99_s + extra, tpot99=d.tpot_p99_s, tpot90=d.tpot_p90_s,
                wait=p.queue_wait_s + d.queue_wait_s,
                pwait=xp.maximum(p.queue_wait_prob, d.queue_wait_prob),
                stable=p.stable & d.stable, feasible=p.feasible & d.feasible,
                reason=_either(p.reason, d.reason))


# ---- cost and goodput ------------------------------------------------------------------------
def cost_per_hour(c: Cluster) -> Any:
    """Hardware cost of the whole cluster, $/h: nodes at their price (each node pool at its own
    template, :func:`_node_pools`), extra DRAM/CXL/SSD beyond the node templates and the
    central pools amortised over ``hardware_amortization``."""
    return _cost_per_hour(c)


def _node_count(c: Cluster) -> int:
    """Whole nodes of the cluster: every node pool (:func:`_node_pools`) on its template."""
    return sum(_pool_nodes(c, nd, k, per) for nd, k, per in _node_pools(c))


def _cost_per_hour(c: Cluster) -> Any:
    n = _instances_total(c)
    hours = get_calibration()["hardware_amortization"].si
    pools = [(nd, per, _pool_nodes(c, nd, k, per)) for nd, k, per in _node_pools(c)]
    dollars = sum(nodes * nd.price_per_s * 3600.0 for nd, _, nodes in pools)
    if xp.is_array(c.cxl_B) or c.cxl_B:  # arrays add 0 where there is no CXL
        dollars = dollars + n * c.cxl_B * get_memory(_CXL_DEVICE).price_per_B / hours
    if c.dram_B is not None:
        dollars = dollars + _extra_host_cost(c, pools, c.dram_B, "host_dram_B", "host_memory",
                                             hours)
    if c.ssd_B is not None:
        dollars = dollars + _extra_host_cost(c, pools, c.ssd_B, "nvme_capacity_B", "nvme", hours)
    if c.sharing == "central_pool":
        _, node, _, per_node = layout(c)
        dollars = dollars + _sharing.pool_cost_per_hour(c, _nodes(c, node, per_node), hours)
    return dollars


def _extra_host_cost(c: Cluster, pools: list, amount, capacity: str, device: str,
                     hours: float) -> Any:
    """$/h of the host memory or drives (node field ``capacity`` of device ``device``) bought
    beyond each node template's for ``amount`` bytes per instance: per node, its part of the
    instances' amount (:func:`_node_amount`) less the template's, on every node of the pool."""
    dollars = 0.0
    for nd, per, nodes in pools:
        extra = xp.maximum(0.0, _node_amount(c, nd, per, amount) - getattr(nd, capacity)) * nodes
        dollars = dollars + extra * get_memory(getattr(nd, device)).price_per_B / hours
    return dollars


def _slo_fraction(m: dict[str, Any], ttft_slo: float, tpot_slo: float) -> Any:
    """P(TTFT <= SLO) x P(TPOT <= SLO) from the wait law and the TPOT spread."""
    vec = xp.is_array(m["ttft"], m["wait"], m["pwait"], m["tpot"], m["tpot90"])
    from scipy import special  # scipy only on the array path
    exp, erfc = (np.exp, special.erfc) if vec else (math.exp, math.erfc)
    base, W, p = m["ttft"] - m["wait"], m["wait"], m["pwait"]
    late = ttft_slo < base
    waits = (W > 0) & (p > 0) & ~late if vec else (W > 0 and p > 0 and not late)
    gap, Ws, ps = (xp.where(waits, ttft_slo - base, 0.0), xp.where(waits, W, 1.0),
                   xp.where(waits, p, 0.0))
    f_ttft = xp.where(late, 0.0, xp.where(waits, 1.0 - ps * exp(-gap * ps / Ws), 1.0))
    sd = xp.maximum((m["tpot90"] - m["tpot"]) / normal_quantile(0.9), 1e-12)
    f_tpot = 0.5 * erfc(-(tpot_slo - m["tpot"]) / (sd * math.sqrt(2.0)))
    return f_ttft * f_tpot


def _reasons(m_reason, util: dict[str, Any], net_ok, stable, shape) -> Any:
    """Why elements are unstable: the instance's reason, saturated networks, or the rate."""
    if shape is None:
        reason = m_reason or ("" if net_ok else "network saturated: " + ", ".join(
            f"{k} utilisation {u:.2f}" for k, u in util.items() if u >= 1.0))
        if not stable and not reason:
            reason = "unstable at this request rate"
        return str(reason)
    reason = np.array(np.broadcast_to(np.asarray(m_reason, dtype=object), shape))
    idx = np.nonzero(np.broadcast_to(~net_ok, shape) & (reason == ""))
    if idx[0].size:  # format only the saturated elements
        text = np.full(idx[0].size, "", dtype=object)
        for k, u in util.items():
            ub = np.broadcast_to(u, shape)[idx]
            part = np.char.add(f"{k} utilisation ", np.char.mod("%.2f", ub)).astype(object)
            part = np.where(ub >= 1.0, part, "")
            text = np.where(part == "", text, np.where(text == "", part, text + ", " + part))
        reason[idx] = "network saturated: " + text
    reason[np.broadcast_to(~stable, shape) & (reason == "")] = "unstable at this request rate"
    return reason


@catalog_arg
def evaluate(c: Cluster, w: Workload, catalog: Any = None) -> ClusterResult:
    """Closed-form evaluation of a cluster on a workload (see the module docstring); the
    fields listed there may be numpy arrays, evaluated in one vectorised pass. ``catalog``:
    the :class:`kvmodel.Catalog` that names are looked up in (default: the active one)."""
    _workloads.check_load(w)
    if w.session_mode == "closed":
        return _workloads.closed_sessions(c, w, lambda c1, w1: evaluate(c1, w1, catalog))
    c, lam, shape = _resolve(_named_policies(c), w)
    if shape is None:
        return _evaluate(c, w, lam, None)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _evaluate(c, w, lam, shape)


def _check_workload(w: Workload) -> None:
    if len(w.trace) == 0:
        raise ValueError(f"Workload.trace {w.trace.name!r} has no requests")
    for name in ("ttft_slo_s", "tpot_slo_s"):
        v = getattr(w, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise ValueError(f"Workload.{name}={v!r}: must be a finite number > 0 (seconds)")


def _evaluate(c: Cluster, w: Workload, lam, shape) -> ClusterResult:
    _check(c)
    _check_workload(w)
    key, node, n, per_node = layout(c)
    block_B = block_bytes(c, w)  # windows, state snapshots
    caps = _caps(c, w, node, per_node, block_B)
    hits = _hits(c, w, caps, n, shape is not None)
    imb = _imbalance(c, w, n)
    tiers = _tiers(c, key, per_node)
    hits, admit, parts, lam, info = _served(c, w, lam, shape, hits, tiers, imb, n, node,
                                            block_B, caps)
    flows = _network(c, w, node, hits, block_B, lam, caps, admit)
    util = flows["util"]
    m = _routed_queue(c, w, n, _combine(parts), hits, tiers, caps)
    net_ok = True
    for u in util.values():
        net_ok = net_ok & (u < 1.0)
    stable = m["stable"] & m["feasible"] & net_ok
    if shape is None:
        stable = bool(stable)
    reason = _reasons(m["reason"], util, net_ok, stable, shape)
    out = _figures(c, w, lam, m, _extra_delay(flows, m), stable, shape)
    out.update(per_instance_rate_per_s=lam * imb / n, imbalance=imb)
    return _workloads.finish(_result(out, stable, reason, hits, util, flows["detail"], shape,
                                     instances=parts, closed_forms=_closed_forms(c, n),
                                     workload=_workloads.describe(w)), w, info)


def _routed_queue(c: Cluster, w: Workload, n: int, m: dict, hits, tiers,
                  caps: dict) -> dict:
    """Colocated open loop behind a load-aware router: the instance's wait law as the router
    shortens it (:mod:`kvmodel.cluster._routing_queue`); otherwise ``m`` unchanged."""
    if n == 1 or c.prefill_instances or _workloads.load_mode(w) != "rate":
        return m
    if ROUTING[c.routing].closed_form == "prefix_affinity_bounded":  # ties join the shortest
        from kvmodel.cluster._routing_queue import bounded_affinity_waits
        local = caps["hbm"] + caps["dram"] + caps["cxl"] + caps["ssd"]  # blocks per instance
        return bounded_affinity_waits(w.profile, n, c.epsilon, c.eviction, local, m,
                                      w.length_cv)
    if c.eviction != "lru" or not is_loaded(c.routing):
        return m
    from kvmodel.cluster._routing_load import routed_waits
    classes = _hit_kw(_prefix_args(hits, tiers, w.input_len), w)["prefix_classes"]
    return routed_waits(c, w, n, m, [k[:4] for k in classes])  # (rows of the prefill work)


def _instances(c: Cluster, w: Workload, lam, shape, pre, imb, n: int, node,
               caps: dict | None = None):
    """(instance estimates of each role, the request rate served, what the load mode derives):
    open loop at ``lam`` (the busiest instance at its share), or closed loop / burst."""
    if _workloads.load_mode(w) != "rate":  # closed loop or burst: lam is what it serves
        return _workloads.instances(c, w, pre, imb, n, _instance_kw(c), shape, kv_precision(c))
    # vector: the instance sees every configuration (prefix and rate broadcast together)
    lam_e = lam if shape is None else np.broadcast_to(np.asarray(lam, dtype=float), shape)
    parts = (_disaggregated(c, w, lam, lam_e * imb / c.prefill_instances, pre, node)
             if c.prefill_instances else _colocated(c, w, lam_e * imb / n, pre,
                                                    _arrival_cv(c, w, n),
                                                    _slot_steer(c, w, n, caps),
                                                    _work_smoothing(c, n)))
    return parts, lam, {}


def _served(c: Cluster, w: Workload, lam, shape, hits, tiers, imb, n: int, node, block_B,
            caps: dict | None = None):
    """(hits after pool put admission, admission figures, instance estimates, rate served,
    load-mode info). Throttled pool puts under a closed loop or burst are admitted at the rate
    the loop serves, then its instances are solved again with the hits the drops leave."""
    later = (_workloads.load_mode(w) != "rate" and c.sharing == "central_pool"
             and c.pool.put_policy == "throttle")
    admit, grid = (1.0, 0.0, 0.0), snapshot_grid(c, w)[1]
    if not later:
        hits, admit = _admitted(c, w, hits, block_B, lam, n)
    parts, lam, info = _instances(c, w, lam, shape,
                                  _prefix_args(hits, tiers, w.input_len, grid), imb, n, node,
                                  caps)
    if later:
        hits, admit = _admitted(c, w, hits, block_B, lam, n)
        parts, lam, info = _instances(c, w, lam, shape,
                                      _prefix_args(hits, tiers, w.input_len, grid), imb, n, node,
                                      caps)
    return hits, admit, parts, lam, info


def _figures(c: Cluster, w: Workload, lam, m: dict, delay: dict, stable,
             shape) -> dict[str, Any]:
    """Latencies (inf where unstable), served rate, tokens, goodput and cost of the cluster."""
    inf = math.inf
    O = w.output_len
    served = xp.where(stable, lam, 0.0)
    cost = _cost_per_hour(c)
    tok = served * O
    ttft = m["ttft"] + delay["mean"]
    frac = _slo_fraction(dict(m, ttft=ttft), w.ttft_slo_s, w.tpot_slo_s) if (
        shape is not None or stable) else 0.0
    good = xp.where(stable, served * frac, 0.0)
    has_tok = tok > 0
    return dict(
        ttft_s=xp.where(stable, ttft, inf),
        ttft_p50_s=xp.where(stable, m["ttft50"] + delay["p50"], inf),
        tpot_s=xp.where(stable, m["tpot"], inf),
        e2e_s=xp.where(stable, ttft + (O - 1) * m["tpot"], inf),
        ttft_p90_s=xp.where(stable, m["ttft90"] + delay["p90"], inf),
        ttft_p99_s=xp.where(stable, m["ttft99"] + delay["p99"], inf),
        tpot_p99_s=xp.where(stable, m["tpot99"], inf), output_tok_per_s=tok,
        served_rate_per_s=served, goodput_per_s=good, cost_usd_per_h=cost, nodes=_node_count(c),
        cost_usd_per_mtok=xp.where(has_tok, cost / xp.where(has_tok, tok * 3600 / 1e6, 1.0), inf))


def _result(out: dict, stable, reason, hits: dict, util: dict, detail: dict, shape,
            **rest) -> ClusterResult:
    """The ClusterResult: Python floats for a scalar evaluation, else arrays of ``shape``."""
    if shape is None:
        def full(v, dtype=float):
            return float(v)
    else:
        def full(v, dtype=float):
            return np.array(np.broadcast_to(np.asarray(v, dtype=dtype), shape))
        stable = full(stable, bool)
    return ClusterResult(
        **{k: full(v) for k, v in out.items()}, stable=stable, reason=reason,
        hit_ratio={k: full(v) for k, v in hits.items()},
        utilisation={k: full(v) for k, v in util.items()},
        sharing={k: full(v) for k, v in detail.items()}, **rest)


# ---- derived quantities of a configuration (used by kvmodel.search) --------------------------
def inclusive_tiers(c: Cluster, w: Workload) -> Cluster:
    """The cluster with the effective capacities of an inclusive hierarchy: each lower tier adds
    only the capacity beyond the largest tier above it (it also holds their blocks). Capacities
    may be arrays."""
    key, node, n, per_node = layout(c)
    tok = _instance_kv_tokens(c, w)
    kv_B = get_model(c.model).kv_bytes_per_token(kv_precision(c))
    hbm = c.hbm_cache_fraction * tok * kv_B
    dram, ssd = _host_caps(c, node, per_node)
    top, eff = hbm, []
    for cap in (dram, c.cxl_B, ssd):  # numpy maximum: capacities may be arrays (grid)
        eff.append(_same(np.maximum(0.0, np.asarray(cap) - top)))
        top = np.maximum(top, cap)
    return dataclasses.replace(c, dram_B=eff[0], cxl_B=eff[1], ssd_B=eff[2])


def _same(v):
    """A 0-d array back to a Python float (the scalar path keeps scalar fields)."""
    return float(v) if np.ndim(v) == 0 else v


def tier_utilisation(c: Cluster, w: Workload, write: str, inclusive: bool) -> float:
    """Highest tier-path utilisation of one node (HBM, DRAM, CXL, SSD) under the write policy
    (``through`` | ``back``), from :func:`kvmodel.place`; scalar capacities only."""
    return float(np.max(_tier_placement(c, w, write, inclusive).utilisation))


def tier_traffic(c: Cluster, w: Workload, write: str = "through", inclusive: bool = True,
                 admit: float = 1.0) -> list[dict[str, Any]]:
    """Per tier of one node (HBM, DRAM, CXL, SSD): hit fraction, read and write B/s (KV
    saves under the write policy, ``admit`` of new blocks written), path utilisation and
    whether the tier sustains it, from :func:`kvmodel.place`; scalar capacities only."""
    return _tier_placement(c, w, write, inclusive, admit).table()


def _tier_placement(c: Cluster, w: Workload, write: str, inclusive: bool, admit: float = 1.0):
    from kvmodel.workload.placement import place
    key, node, n, per_node = layout(c)

    def at_node(v):  # one node's part of an instance capacity (a DP instance spans nodes)
        return None if v is None else _node_amount(c, node, per_node, v)
    tiers = node_tiers(key, c.gpu, dram_B=at_node(c.dram_B), cxl_B=at_node(c.cxl_B),
                       ssd_B=at_node(c.ssd_B), nic=c.nic)
    tok = _instance_kv_tokens(c, w)
    tok_B = get_model(c.model).kv_bytes_per_token(kv_precision(c))
    chain = [Tier("hbm", at_node(c.hbm_cache_fraction * tok * tok_B), None)]
    chain += [tiers[t] for t in ("dram", "cxl", "ssd") if tiers[t].capacity_B > 0]
    nodes = _nodes(c, node, per_node)
    rate = w.rate * float(np.mean(w.trace.blocks_per_request)) / nodes
    block_B = block_bytes(c, w)
    return place(w.profile, chain, block_bytes=block_B, block_rate=rate,
                 inclusive=inclusive, write=write, gpus_per_node=node.gpus_per_node, admit=admit)


#: ClusterResult field of each SLO percentile
TTFT_PERCENTILES = {"mean": "ttft_s", "p90": "ttft_p90_s", "p99": "ttft_p99_s"}
TPOT_PERCENTILES = {"mean": "tpot_s", "p99": "tpot_p99_s"}


def _slo_targets(w: Workload, ttft_percentile: str, tpot_percentile: str, ttft_slo_s, tpot_slo_s):
    if ttft_percentile not in TTFT_PERCENTILES:
        raise ValueError(f"ttft_percentile={ttft_percentile!r}; allowed: {list(TTFT_PERCENTILES)}")
    if tpot_percentile not in TPOT_PERCENTILES:
        raise ValueError(f"tpot_percentile={tpot_percentile!r}; allowed: {list(TPOT_PERCENTILES)}")
    return (TTFT_PERCENTILES[ttft_percentile], TPOT_PERCENTILES[tpot_percentile],
            w.ttft_slo_s if ttft_slo_s is None else ttft_slo_s,
            w.tpot_slo_s if tpot_slo_s is None else tpot_slo_s)


def meets_slo(c: Cluster, w: Workload, rate: Any, ttft_percentile: str = "p99",
              tpot_percentile: str = "p99", ttft_slo_s: float | None = None,
              tpot_slo_s: float | None = None) -> Any:
    """Whether the cluster is stable at request rate(s) ``rate`` with the TTFT/TPOT
    percentiles within the SLOs (default: the workload's); a bool array for array inputs."""
    t_f, d_f, t_slo, d_slo = _slo_targets(w, ttft_percentile, tpot_percentile, ttft_slo_s,
                                          tpot_slo_s)
    r = evaluate(c, w.with_rate(rate))
    return (np.asarray(r.stable) & (np.asarray(getattr(r, t_f)) <= t_slo)
            & (np.asarray(getattr(r, d_f)) <= d_slo))


def max_rate_at_slo(c: Cluster, w: Workload, ttft_percentile: str = "p99",
                    tpot_percentile: str = "p99", ttft_slo_s: float | None = None,
                    tpot_slo_s: float | None = None, iters: int = 12) -> Any:
    """Largest request rate (bisection, relative precision 2**-iters of the bracket) at which
    :func:`meets_slo` holds; 0 when even a trickle misses the SLOs. Works elementwise when the
    cluster's capacity fields are arrays (every step is one vectorised evaluate); a float for
    a scalar cluster."""
    def meets(rate):
        return meets_slo(c, w, rate, ttft_percentile, tpot_percentile, ttft_slo_s, tpot_slo_s)
    hi0 = max(w.rate, 1e-3)
    trickle = meets(hi0 * 1e-3)
    shape = np.shape(trickle)
    lo, hi = np.zeros(shape), np.full(shape, hi0)
    grow = np.ones(shape, dtype=bool)
    while grow.any():  # widen the bracket: x4 while the SLOs still hold
        grow &= meets(hi) & (hi < 1e6)
        lo, hi = np.where(grow, hi, lo), np.where(grow, hi * 4, hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        ok = meets(mid)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return _same(np.where(trickle, lo, 0.0))


# ---- configuration files ---------------------------------------------------------------------
_CLUSTER_KEYS = {
    "model": str, "gpu": str, "instances": int, "tp": int, "precision": str,
    "prefill_instances": int, "decode_instances": int, "decode_gpu": str, "sharing": str,
    "routing": str, "epsilon": float, "node": str, "hbm_cache_fraction": float,
    "dram_GB": float, "cxl_GB": float, "ssd_GB": float, "nic": str, "framework": str,
    "eviction": str, "attention_dp": bool, "ep": int, "speculative": dict,
}
_POOL_KEYS = {"servers": int, "dram_GB": float, "ssd_GB": float, "nic": str, "nics": int,
              "memory": str, "nvme": str, "metadata_rtt_us": float, "scope": str,
              "rack_nodes": int, "sockets": int, "server_cost_usd": float,
              "port_cost_usd": float, "put_policy": str, "put_admission": float,
              "put_queue_limit": int}
_P2P_KEYS = {"placement": str, "lookup_latency_us": float, "replication": int}
_WORKLOAD_KEYS = {"trace": str, "request_rate": float, "ttft_slo_s": float, "tpot_slo_s": float,
                  "concurrency": int, "burst": int, "think_time_s": float, "session_mode": str}


def _gb(d: dict, key: str) -> dict:
    if key in d:
        d[key[:-3] + "_B"] = d.pop(key) * 1e9
    return d


def load_cluster_config(path) -> tuple[Cluster, dict[str, Any]]:
    """Read a cluster TOML file: ``[cluster]`` (+ ``[cluster.pool]``, ``[cluster.p2p]``) and an
    optional ``[workload]`` (trace, SLOs and one load: request_rate, concurrency or burst;
    think_time_s, session_mode). Capacities in GB (1e9 B), lookup latency in µs. Returns the Cluster
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
    for table in ("cluster", "workload"):
        if not isinstance(data.get(table, {}), dict):
            raise ValueError(f"{p}: {table} = {data[table]!r}: expected a [{table}] table")
    raw = dict(data["cluster"])
    pool, p2p = raw.pop("pool", {}), raw.pop("p2p", {})
    cl = _gb(_gb(_gb(typed_table(raw, _CLUSTER_KEYS, f"{p}: [cluster]"), "dram_GB"), "cxl_GB"), "ssd_GB")
    for need in ("model", "gpu"):
        if need not in cl:
            raise ValueError(f"{p}: [cluster].{need}: missing required key")
    pl = _gb(_gb(typed_table(pool, _POOL_KEYS, f"{p}: [cluster.pool]"), "dram_GB"), "ssd_GB")
    if "metadata_rtt_us" in pl:
        pl["metadata_rtt_s"] = pl.pop("metadata_rtt_us") * 1e-6
    pp = typed_table(p2p, _P2P_KEYS, f"{p}: [cluster.p2p]")
    if "lookup_latency_us" in pp:
        pp["lookup_latency_s"] = pp.pop("lookup_latency_us") * 1e-6
    c = Cluster(**cl, pool=PoolSpec(**pl), p2p=P2PSpec(**pp))
    _check(c)
    wk = typed_table(data.get("workload", {}), _WORKLOAD_KEYS, f"{p}: [workload]")
    _workloads.check_load_keys(wk, f"{p}: [workload]")
    return c, wk
