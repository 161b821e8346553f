"""Conformance suite over every entry of every policy registry (kvmodel.policies.FAMILIES):
stable unique names, parameters with defaults, units and checked ranges, the closed form
against the reference simulator within the entry's stated tolerance, more cache never lowering
the hit ratio, and every entry reachable from Cluster/evaluate (and kvmodel.sim where it runs).
Small synthetic traces keep the whole suite to a few seconds."""

import dataclasses
import inspect
import math
import re

import numpy as np
import pytest

import kvmodel
from kvmodel import Cluster, P2PSpec, PoolSpec, Workload, sim
from kvmodel.policies import FAMILIES, UNITS, PolicyRef
from kvmodel.workload._policy_curve import policy_hit_ratio_curve
from kvmodel.workload._reuse_exact import replay

M, G = "llama-3.1-8b", "h100-sxm"
BASE = dict(model=M, gpu=G, instances=4, tp=1, precision="bf16")
# names published so far: a registry may add entries, never drop or rename one
STABLE = {
    "routing": {"round_robin", "random", "least_loaded", "prefix_affinity",
                "prefix_affinity_bounded", "dynamo", "llmd", "sglang", "mooncake"},
    "eviction": {"lru", "fifo", "lfu", "s3fifo", "arc", "lru-admit-reuse"},
    "p2p_placement": {"rendezvous", "consistent_hash", "directory"},
    "sharing": {"none", "central_pool", "p2p"},
    "connector": {"ideal", "vllm-offload-dma", "vllm-offload-kernel", "lmcache-cpu",
                  "mooncake-te-rdma", "mooncake-te-tcp", "nixl-ucx-rdma", "sglang-hicache-l2",
                  "sglang-hicache-l3-3fs"},
}
# the Cluster field each family configures, and the ClusterResult.closed_forms key
SLOT = {"routing": "routing", "eviction": "eviction", "p2p_placement": "placement",
        "sharing": "sharing", "connector": "connector"}
ENTRIES = [(f, n) for f, reg in FAMILIES.items() for n in reg]
PARAMS = [(f, n, p) for f, n in ENTRIES for p in FAMILIES[f][n].params]
SIM_ENTRIES = [(f, n) for f, n in ENTRIES if FAMILIES[f][n].tolerance is not None]


def _ids(cases):
    return ["-".join(str(getattr(x, "name", x)) for x in c) for c in cases]


@pytest.fixture(scope="module")
def small():
    return kvmodel.synthetic_trace(200, seed=1, rate_per_s=4.0)


@pytest.fixture(scope="module")
def workload():
    return Workload(kvmodel.synthetic_trace(300, seed=2, rate_per_s=3.0), request_rate=2.0)


def _cluster(family: str, value, **kw) -> Cluster:
    """A cluster with ``value`` (a name or policy object) in the family's slot."""
    if family == "p2p_placement":
        return Cluster(**BASE, sharing="p2p", p2p=P2PSpec(placement=value), **kw)
    return Cluster(**BASE, **{family: value}, **kw)


# ---------------------------------------------------------------------------- names

def test_names_stable_unique_and_well_formed():
    for family, reg in FAMILIES.items():
        assert reg.family == family
        assert STABLE[family] <= set(reg), f"{family}: dropped {STABLE[family] - set(reg)}"
        assert len(set(reg.names())) == len(reg)
        for name, e in reg.items():
            assert e.name == name and re.fullmatch(r"[a-z][a-z0-9_-]*", name)
    with pytest.raises(ValueError, match="unique|new"):
        FAMILIES["routing"].register(FAMILIES["routing"]["dynamo"])


def test_old_public_names_are_views_of_the_registries():
    assert dict(kvmodel.ROUTING_POLICIES) == {n: e.sim for n, e in FAMILIES["routing"].items()}
    assert tuple(kvmodel.workload.reuse.EVICTION_POLICIES) == FAMILIES["eviction"].names()
    assert kvmodel.cluster.SHARING == FAMILIES["sharing"].names()
    assert set(sim.SIM_ROUTINGS) < set(FAMILIES["routing"])


@pytest.mark.parametrize("family,name", ENTRIES, ids=_ids(ENTRIES))
def test_entry_contract(family, name):
    e = FAMILIES[family][name]
    assert e.description and "\n" not in e.description
    assert e.closed_form and e.closed_form_note
    assert e.closed_form_fn is None or callable(e.closed_form_function())
    for p in e.params:
        assert p.unit in UNITS and p.description and p.ok(p.default), p
    if e.sim is not None:
        assert e.sim.name == name and e.simulators
        sig = inspect.signature(e.sim).parameters.values()
        kw = {p.name: p.default for p in sig if p.kind is p.KEYWORD_ONLY}
        assert kw == e.defaults(), "registered defaults differ from the class signature"
    else:
        assert not e.simulators


def test_sharing_params_are_the_spec_defaults():
    for name, spec in (("central_pool", PoolSpec()), ("p2p", P2PSpec())):
        fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
        assert FAMILIES["sharing"][name].defaults() == fields


# ---------------------------------------------------------------------------- parameters

def _bad_values(p):
    if p.kind in (str, dict):
        return [3]
    bad = [math.nan, True, math.inf] + ([None] if not p.none_ok else [])
    if p.low is not None:
        bad.append(p.low if p.low_open else p.low - 1)
    if p.high is not None:
        bad.append(p.high + 1)
    if p.kind is int:
        bad.append(p.default + 0.5)
    return bad


@pytest.mark.parametrize("family,name,param", PARAMS, ids=_ids(PARAMS))
def test_bad_parameter_values_raise_clear_errors(family, name, param):
    reg = FAMILIES[family]
    for v in _bad_values(param):
        with pytest.raises(ValueError, match=rf"{name}.*{param.name}={re.escape(repr(v))}"):
            reg.make(name, **{param.name: v})
    reg.make(name, **{param.name: param.default})


@pytest.mark.parametrize("family,name", ENTRIES, ids=_ids(ENTRIES))
def test_unknown_names_and_parameters_rejected(family, name):
    reg = FAMILIES[family]
    with pytest.raises(ValueError, match="unknown parameter"):
        reg.make(name, no_such_param=1)
    with pytest.raises(ValueError, match="unknown policy"):
        reg.make(name + "-nope")
    with pytest.raises(ValueError, match=f"{SLOT[family]}.*unknown policy"):
        kvmodel.evaluate(_cluster(family, name + "-nope"), Workload(kvmodel.synthetic_trace(5)))
    with pytest.raises(TypeError, match=family):
        reg.name_of(3.5)


# ---------------------------------------------------------------------------- closed form vs simulator

@pytest.mark.parametrize("family,name", SIM_ENTRIES, ids=_ids(SIM_ENTRIES))
def test_closed_form_agrees_with_simulator(family, name, small):
    """|simulated - closed-form| hit ratio <= the entry's stated tolerance (routing: kvmodel.sim,
    2 instances x 60 blocks; eviction: exact replay at 3 capacities, 1 and 2 instances)."""
    e = FAMILIES[family][name]
    prof = kvmodel.workload._reuse_analytic.reuse_profile(small)
    if family == "routing":
        r = sim.simulate(M, G, small, instances=2, tp=1, routing=name, prefix_cache_blocks=60)
        h_cf = e.closed_form_function()(prof, [120], instances=2, routing=e.closed_form)
        assert abs(r.hit_blocks / r.total_blocks - h_cf[0]) <= e.tolerance
        return
    for n, routing in ((1, "single"), (2, "prefix_affinity_bounded")):
        caps = np.array([20, 60, 200]) * n
        exact = [replay(small, int(c), n, routing, 0, name).hit_ratio for c in caps]
        cf = policy_hit_ratio_curve(small, prof, caps, instances=n, routing=routing, eviction=name)
        np.testing.assert_allclose(cf, exact, atol=e.tolerance, rtol=0)


# ---------------------------------------------------------------------------- reachability, monotonicity

@pytest.mark.parametrize("family,name", ENTRIES, ids=_ids(ENTRIES))
def test_reachable_from_evaluate_and_more_cache_never_lowers_hits(family, name, workload):
    dram = np.array([0.0, 1e8, 1e9, 1e10, 1e11])
    r = kvmodel.evaluate(_cluster(family, name, dram_B=dram, ssd_B=0.0, hbm_cache_fraction=0.01),
                         workload)
    assert r.closed_forms[SLOT[family]] == FAMILIES[family][name].closed_form
    total = sum(r.hit_ratio.values())
    assert np.all(np.diff(total) >= -1e-12), total
    if not (family == "sharing" and name == "central_pool"):  # the pool may hold it all
        assert total[-1] > total[0]


@pytest.mark.parametrize("family,name", ENTRIES, ids=_ids(ENTRIES))
def test_policy_object_evaluates_as_its_name(family, name, workload):
    reg = FAMILIES[family]
    obj = reg.make(name)
    assert reg.name_of(obj) == name
    assert isinstance(obj, reg[name].sim if reg[name].object_from_sim and reg[name].sim
                      else PolicyRef)
    a = kvmodel.evaluate(_cluster(family, name), workload).to_dict()
    b = kvmodel.evaluate(_cluster(family, obj), workload).to_dict()
    assert a == b


@pytest.mark.parametrize("family", ["routing", "p2p_placement", "sharing"])
def test_entries_sharing_a_closed_form_give_identical_numbers(family, workload):
    """What closed_forms reports is what evaluate does: variants merged into one closed form
    (e.g. every P2P placement) are equal.
    (Eviction's closed forms name a method run on the policy itself, not a merge.)"""
    groups = {}
    for name, e in FAMILIES[family].items():
        groups.setdefault(e.closed_form, []).append(name)
    for form, names in groups.items():
        res = [kvmodel.evaluate(_cluster(family, n), workload).to_dict() for n in names]
        assert all(r == res[0] for r in res), (form, names)


def test_routing_object_epsilon_is_used():
    w = Workload(kvmodel.synthetic_trace(300, seed=2, rate_per_s=3.0), request_rate=2.0)
    obj = kvmodel.make_policy("prefix_affinity_bounded", epsilon=1.0)
    a = kvmodel.evaluate(Cluster(**BASE, routing=obj), w)
    b = kvmodel.evaluate(Cluster(**BASE, routing="prefix_affinity_bounded", epsilon=1.0), w)
    assert a.to_dict() == b.to_dict()


@pytest.mark.parametrize("name", list(FAMILIES["routing"]))
def test_every_routing_runs_in_the_simulator(name, small):
    tr = kvmodel.synthetic_trace(40, seed=3, rate_per_s=4.0)
    r = sim.simulate(M, G, tr, instances=2, tp=1, routing=FAMILIES["routing"].make(name),
                     prefix_cache_blocks=20)
    assert len(r.ttft_s) == 40 and np.all(np.isfinite(r.ttft_s))
