"""P2P placement: which peer owns a KV block when instances share their DRAM peer to peer.

Variants (registry :data:`REGISTRY`, :data:`kvmodel.policies.P2P_PLACEMENT`): ``rendezvous``
(highest-random-weight hashing) and ``consistent_hash`` (a hash ring) place each block on a
hashed owner; ``prefix_hash`` places every block of a request's prefix on the owner of its first
block (one lookup target per prefix, hot prefixes concentrated); ``directory`` keeps a block
where it was computed and a lookup service maps blocks to their holders. Adding a variant: one
``REGISTRY.register(...)`` call here, with one of the closed forms below.

Closed forms (:mod:`kvmodel.cluster._sharing`, what :func:`kvmodel.evaluate` does), measured on
the trace under the routing's assignment and memoised on its reuse profile:

* ``block_hash``: owner = hash(block), copies on the r-1 next instances; a peer-level hit is
  local when the requester is an owner (about r/N whatever the routing); the hottest owner's
  share of the PEER traffic from the trace; a request's peer blocks spread over the owners.
  Rendezvous and consistent hashing are statistically the same placement (one closed form).
* ``prefix_hash``: owner = hash(first block of the request); a request's peer blocks all come
  from one owner (whole transfers queue there).
* ``directory_writer``: the computing instance holds the block (plus r-1 copies) and every
  instance keeps the blocks it used before, so under prefix affinity most hits are local;
  each request with a peer hit pays ``P2PSpec.lookup_latency_s`` (the directory round trip).

Every form: inserted blocks are written to their owners (r copies minus the writer's own),
owner NIC (out, in) and PCIe uplink utilisations, processor-sharing queue with a tail.
"""

from __future__ import annotations

from kvmodel.policies import PolicyEntry, Registry

__all__ = ["REGISTRY", "CLOSED_FORMS"]

CLOSED_FORMS = ("block_hash", "prefix_hash", "directory_writer")
_NOTES = {
    "block_hash": "owner = hash(block), r copies on successive instances; local share and "
                  "hottest owner's share of the peer traffic measured on the trace",
    "prefix_hash": "owner = hash(first block of the prefix): a prefix's blocks on one owner; "
                   "hot prefixes concentrate on their owner",
    "directory_writer": "block kept where computed (+ r-1 copies), instances keep what they "
                        "used; lookup_latency_s per request with a peer hit",
}

REGISTRY = Registry("p2p_placement", "owner of a block under peer-to-peer sharing")
for _name, _desc, _form in (
        ("rendezvous", "rendezvous (highest random weight) hashing of block ids to peers",
         "block_hash"),
        ("consistent_hash", "consistent hashing of block ids on a ring of peers", "block_hash"),
        ("directory", "a directory service (e.g. Redis/etcd) maps blocks to the instance "
                      "holding them; set P2PSpec.lookup_latency_s to its round trip",
         "directory_writer"),
        ("prefix_hash", "every block of a prefix on the peer its first block hashes to",
         "prefix_hash")):
    REGISTRY.register(PolicyEntry(_name, _desc, _form, closed_form_note=_NOTES[_form]))
