"""KV sharing architectures of a cluster: local tiers only, a central pool, peer to peer.

Variants (registry :data:`REGISTRY`, :data:`kvmodel.policies.SHARING`; ``kvmodel.cluster.SHARING``
is the tuple of its names). Parameters are the fields of :class:`kvmodel.PoolSpec`
(``central_pool``) and :class:`kvmodel.P2PSpec` (``p2p``) with their defaults. Adding a variant: register
it here and give :func:`kvmodel.evaluate` its closed form (``kvmodel.cluster._hits``).
"""

from __future__ import annotations

from kvmodel.policies import Param, PolicyEntry, Registry

__all__ = ["REGISTRY"]

_CURVE = "kvmodel.workload._reuse_analytic:analytic_hit_ratio_curve"
REGISTRY = Registry("sharing", "KV sharing architecture of the cluster")
REGISTRY.register(PolicyEntry(
    "none", "local tiers only: each instance's HBM/DRAM/CXL/SSD under the routing's curve",
    "local_tiers", closed_form_fn=_CURVE,
    closed_form_note="per-instance hit curve under the routing's closed form, split over the "
                     "tiers by cumulative capacity"))
REGISTRY.register(PolicyEntry(
    "central_pool", "a pool of DRAM (+SSD) servers behind NICs shared by every instance",
    "central_pool_lru", (
        Param("servers", 4, "count", "pool servers in the cluster", low=1, kind=int),
        Param("dram_B", 1e12, "B", "DRAM per server"),
        Param("ssd_B", 0.0, "B", "SSD per server"),
        Param("nic", "roce-400g", "key", "link key of each server's NICs", kind=str),
        Param("nics", 2, "count", "NICs per server", low=1, kind=int),
        Param("memory", "ddr5-4800", "key", "hardware_db key of the server DRAM", kind=str),
        Param("nvme", "nvme-gen5", "key", "hardware_db key of the server NVMe", kind=str),
        Param("metadata_rtt_s", None, "s", "metadata lookup per request (None: calibration's "
              "pool_metadata_rtt)", none_ok=True),
        Param("scope", "cluster", "key", "cluster (one pool) or rack (a pool per rack)",
              kind=str),
        Param("rack_nodes", 8, "count", "nodes per rack (scope rack)", low=1, kind=int),
        Param("sockets", 2, "count", "CPU sockets per server (DRAM bandwidth)", low=1,
              kind=int),
        Param("server_cost_usd", None, "1", "purchase price of a server without media, USD "
              "(None: hardware_db's pool_server_price)", none_ok=True),
        Param("port_cost_usd", None, "1", "price of one NIC + switch port, USD (None: "
              "hardware_db's pool_nic_price + pool_switch_port_price)", none_ok=True),
        Param("put_policy", "all", "key", "admission of puts: all | fraction | throttle",
              kind=str),
        Param("put_admission", 1.0, "fraction", "share of puts admitted (put_policy fraction)",
              low=0.0, low_open=True, high=1.0),
        Param("put_queue_limit", 8, "count", "puts queued at a pool server beyond which "
              "throttle drops new ones", low=1, kind=int)),
    closed_form_fn=_CURVE,
    closed_form_note="one global LRU of the pool's capacity (inclusive of the local tiers; or "
                     "one pool per rack); DRAM hot part, SSD at the drives' read bandwidth; "
                     "puts of new KV (all, a share, or throttled at a full put queue: dropped "
                     "puts lose later hits); metadata RTT per request; NICs, DRAM and SSDs as "
                     "processor-sharing queues with tails (kvmodel.cluster._sharing); "
                     "utilisation >= 1 is unstable"))
REGISTRY.register(PolicyEntry(
    "p2p", "peers fetch blocks from the owner's DRAM over RDMA",
    "p2p_shared_dram", (
        Param("placement", "rendezvous", "key", "owner of a block (kvmodel.policies."
              "P2P_PLACEMENT)", kind=str),
        Param("lookup_latency_s", None, "s", "per request with a peer hit (None: directory "
              "pays the calibration's pool_metadata_rtt, hash placements 0)", none_ok=True),
        Param("replication", 1, "count", "copies of each block in the cluster", low=1,
              kind=int)),
    closed_form_fn=_CURVE,
    closed_form_note="the peers' DRAM is one cache of N x C_dram / replication blocks; the "
                     "placement's closed form (kvmodel.policies.placement) gives the local "
                     "share and the hottest owner's share of the peer traffic from the trace; "
                     "owner NIC (PS queue with tail) and PCIe, puts, lookups, churn"))
