"""SGLang's ``match``: the rule against the instance's resident cache ("cache", the default)
or against the router's own tree of every prompt routed there ("tree", as sglang's
cache_aware router: sgl-router/src/policies/cache_aware.rs matches the prompt in its
approximate radix tree, evicted only above max_tree_size). A prefix the instance evicted
still attracts its requests under "tree"."""

import numpy as np
import pytest

from kvmodel.policies import FAMILIES
from kvmodel.policies.routing import RouteRequest, RoutingView, SGLang, make_policy
from kvmodel.sim import simulate
from kvmodel.workload import Trace

M, G, BT = "llama-3.1-8b", "h100-sxm", 64


def test_tree_match_reads_the_routed_prompts():
    """Instance 0 was routed 5 of the prompt's 8 blocks but evicted them: "cache" sees no
    match and takes the smaller tree (instance 1), "tree" matches 5/8 > 0.3 (instance 0)."""
    view = RoutingView(2, cached=[{}, {}],
                       routed_prefix_blocks=[5, 0], tree_blocks=[10, 2])
    req = RouteRequest(0, 8 * BT, 4, 8)
    assert SGLang().choose(req, view) == 1
    assert SGLang(match="tree").choose(req, view) == 0
    assert SGLang(match="tree").load_choices(req, view) == 1
    # a hand-made view without the field: the tree is the cache (the closed forms' replay)
    plain = RoutingView(2, cached=[{"hbm": 5}, {}], tree_blocks=[10, 2])
    assert plain.routed_prefix_blocks == [5, 0]
    assert SGLang(match="tree").choose(req, plain) == SGLang().choose(req, plain) == 0


def test_match_registered_and_validated():
    e = FAMILIES["routing"]["sglang"]
    p = {q.name: q for q in e.params}["match"]
    assert p.default == "cache" and p.kind is str
    assert make_policy("sglang", match="tree").params()["match"] == "tree"
    with pytest.raises(ValueError, match=r"sglang: match='radix': must be one of 'cache', 'tree'"):
        make_policy("sglang", match="radix")
    with pytest.raises(ValueError, match="match=3"):
        make_policy("sglang", match=3)
    with pytest.raises(ValueError, match="routed_prefix_blocks: 1 entries, expected 2"):
        RoutingView(2, routed_prefix_blocks=[1])


def _toy() -> Trace:
    """Prompts A, B, C, A of 6 blocks each, far apart (never imbalanced), on 2 instances with
    6 cache blocks: A -> 0 (empty trees tie), B -> 1 (smaller tree), C -> 0 (trees tie),
    evicting A from 0's cache. The second A: under "cache" no instance holds it, so the
    smaller tree takes it (instance 1 under "cache": its tree is 6 blocks, 0's is 12); under
    "tree" instance 0's tree matches all of A (a miss in its cache)."""
    chains = [np.arange(6), 100 + np.arange(6), 200 + np.arange(6), np.arange(6)]
    n = len(chains)
    return Trace(np.arange(n) * 10.0, np.full(n, 6 * BT), np.full(n, 4),
                 np.arange(n + 1, dtype=np.int64) * 6,
                 np.concatenate(chains).astype(np.int64), block_tokens=BT)


@pytest.mark.parametrize("match,where", [("cache", [0, 1, 0, 1]), ("tree", [0, 1, 0, 0])])
def test_an_evicted_prefix_still_attracts_under_tree(match, where):
    r = simulate(M, G, _toy(), instances=2, routing="sglang", prefix_cache_blocks=6,
                 block_tokens=BT, routing_params={"match": match})
    assert r.instance.tolist() == where
    assert r.hit_blocks == 0  # the second A misses either way: 0 evicted it, 1 never had it


def test_tree_size_is_the_distinct_routed_blocks():
    """Under "tree" the smallest-tree fallback reads the tree's distinct blocks: a prompt
    routed twice to one instance does not grow its tree (under "cache" a re-inserted evicted
    prompt counts again)."""
    chains = [np.arange(6), 100 + np.arange(6), 200 + np.arange(6), np.arange(6),
              300 + np.arange(6)]
    n = len(chains)
    tr = Trace(np.arange(n) * 10.0, np.full(n, 6 * BT), np.full(n, 4),
               np.arange(n + 1, dtype=np.int64) * 6, np.concatenate(chains).astype(np.int64),
               block_tokens=BT)
    kw = dict(instances=2, routing="sglang", prefix_cache_blocks=6, block_tokens=BT)
    # tree: trees 12 (A, C; A again adds nothing) and 6: D goes to 1; cache: A went to 1
    # (trees 12 and 12), D to 0 (tie, lowest index)
    assert simulate(M, G, tr, **kw, routing_params={"match": "tree"}).instance[-1] == 1
    assert simulate(M, G, tr, **kw, routing_params={"match": "cache"}).instance[-1] == 0
