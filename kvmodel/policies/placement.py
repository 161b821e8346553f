"""P2P placement: which peer owns a KV block when instances share their DRAM peer to peer.

Variants (registry :data:`REGISTRY`, :data:`kvmodel.policies.P2P_PLACEMENT`): ``rendezvous``
(highest-random-weight hashing), ``consistent_hash`` (a hash ring), ``directory`` (a lookup
service maps blocks to owners). No simulator models them. Adding a variant: one
``REGISTRY.register(...)`` call here.

Closed form (what :func:`kvmodel.evaluate` really does, for every placement alike): owners are
spread uniformly over the N instances -- a peer-level hit is local with probability
replication / N, else fetched from its owner over RDMA; the owner of the hottest block carries
``max(1/N, p_top / replication)`` of the peer traffic (hot spot); each request with a peer hit
waits ``P2PSpec.lookup_latency_s`` once. The placement name itself changes no number: the
difference between a hash and a directory is only the lookup latency the user sets.
"""

from __future__ import annotations

from kvmodel.policies import PolicyEntry, Registry

__all__ = ["REGISTRY", "CLOSED_FORM"]

CLOSED_FORM = "uniform_owner"
_NOTE = ("placement is not read by the closed form: every placement is modelled as owners "
         "spread uniformly (hottest owner max(1/N, p_top/replication)) plus "
         "P2PSpec.lookup_latency_s per request with a peer hit")

REGISTRY = Registry("p2p_placement", "owner of a block under peer-to-peer sharing")
for _name, _desc in (
        ("rendezvous", "rendezvous (highest random weight) hashing of block ids to peers"),
        ("consistent_hash", "consistent hashing of block ids on a ring of peers"),
        ("directory", "a directory service (e.g. Redis/etcd) maps blocks to owners; set "
                      "P2PSpec.lookup_latency_s to its round trip")):
    REGISTRY.register(PolicyEntry(_name, _desc, CLOSED_FORM, closed_form_note=_NOTE))
