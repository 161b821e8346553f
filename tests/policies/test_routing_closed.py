"""Load-aware routing closed forms (kvmodel.workload._routing_closed, kvmodel.cluster._routing_load):
each routing entry against the simulator running the exact rule on a prefix-heavy 8-instance
trace, distinct outcomes of the cache-aware routers in evaluate, parameters reaching the closed
form, and the load quantisation.

Tolerances held (8 instances x 200 blocks, synthetic_trace(1000, seed 5, 16 system prompts),
rate_per_s 40 and 100: 20.7 and 44.7 req/s, ~0.14 and ~0.28 of the cache-aware saturation):
hit ratio within 0.02 of the simulator's (measured <= 0.004), load imbalance (busiest
instance's routed share x N) within 30 % (measured <= 23 %: the fluid load replaces the
simulator's exact in-flight counts)."""

import dataclasses

import numpy as np
import pytest

import kvmodel
from kvmodel import Cluster, Workload, sim
from kvmodel.cluster import _routing_load as RL
from kvmodel.policies import ROUTING
from kvmodel.workload import _routing_closed as RC
from kvmodel.workload._reuse_analytic import analytic_hit_ratio_curve
from kvmodel.workload._routing_closed import (
    LOAD_LEVELS,
    LOADED_FORMS,
    RouterLoad,
    canonical_params,
    random_imbalance,
    routed_assignment,
    routed_hit_ratio_curve,
    routed_imbalance,
)

M, G, N, BLOCKS = "llama-3.1-8b", "h100-sxm", 8, 200
HIT_TOL, IMB_REL_TOL = 0.02, 0.30
CACHE_AWARE = ("dynamo", "llmd", "sglang", "mooncake", "prefix_affinity_bounded")


def _trace(rate: float):
    return kvmodel.synthetic_trace(1000, seed=5, rate_per_s=rate, n_system_prompts=16,
                                   session_fraction=0.6)


@pytest.fixture(scope="module", params=[40.0, 100.0], ids=["rho0.3", "rho0.6"])
def loaded(request):
    return Workload(_trace(request.param))


def _closed(w, name):
    form = ROUTING[name].closed_form
    if form in LOADED_FORMS:  # the router's own load level nearest to the trace's rate
        c = Cluster(model=M, gpu=G, instances=N, tp=1, precision="bf16", routing=name)
        load = RL.router_levels(c, w, N)[1][RL.level_index(c, w, N, w.rate)]
        return (routed_hit_ratio_curve(w.profile, [N * BLOCKS], N, name, load=load)[0],
                routed_imbalance(w.profile, N, name, None, load))
    imb = random_imbalance(w.profile.n_requests, N) if form == "random" else None
    return analytic_hit_ratio_curve(w.profile, [N * BLOCKS], N, form)[0], imb


# (router, trace rate) -> why its imbalance misses (none now: llm-d 1.83 vs 1.38 and Mooncake
# 2.40 vs 1.17 at rate 40 pass, 1.38 and 1.43, since the fluid load holds each prompt in the
# queued prefill for its own prefill time and waits half a step for admission)
IMB_MISSES: dict = {}


@pytest.mark.parametrize("name", list(ROUTING))
def test_closed_form_matches_the_simulated_rule(name, loaded, request):
    w = loaded
    r = sim.simulate(M, G, w.trace, instances=N, tp=1, routing=name, prefix_cache_blocks=BLOCKS)
    hit, imb = _closed(w, name)
    assert abs(r.hit_blocks / r.total_blocks - hit) <= HIT_TOL
    if imb is not None:
        counts = r.requests_per_instance
        sim_imb = counts.max() * N / counts.sum()
        miss = IMB_MISSES.get((name, request.node.callspec.params["loaded"]))
        ok = abs(imb / sim_imb - 1) <= IMB_REL_TOL
        if miss:  # a strict expected failure: a cell that starts to pass must leave the list
            assert not ok, f"{name} now within the tolerance: remove it from IMB_MISSES"
            pytest.xfail(miss)
        assert ok, (imb, sim_imb)


class _Watch(kvmodel.RoutingPolicy):
    """Mooncake's rule that keeps the mean over the instances of some view fields at each
    decision."""
    FIELDS = ("active", "running", "waiting", "queued_prefill_tokens", "kv_blocks")

    def __init__(self):
        self.rule, self.seen = kvmodel.make_policy("mooncake"), []

    def choose(self, req, view):
        self.seen.append([np.mean(getattr(view, f)) for f in self.FIELDS])
        return self.rule.choose(req, view)

    def means(self) -> dict:
        return dict(zip(self.FIELDS, np.mean(self.seen, axis=0)))


def test_fluid_view_holds_what_the_simulated_instances_show(loaded, monkeypatch):
    """The replay's view, at the trace's rate with its load level's figures, against the
    view the simulator gives the same rule: requests in flight, decoding, waiting for
    admission (the level's wait and the step in progress), prompt tokens waiting for prefill
    (each for its own prefill time) and KV blocks, per instance, averaged over the decisions.
    Measured within 11 % (queued prefill tokens; the rest within 3 %); before the admission
    and prefill spans followed the instance, waiting was 51-58 % and queued prefill tokens
    67-69 % short."""
    w = loaded
    c = Cluster(model=M, gpu=G, instances=N, tp=1, precision="bf16", routing="mooncake")
    level = RL.router_levels(c, w, N)[1][RL.level_index(c, w, N, w.rate)]
    simulated, replayed = _Watch(), _Watch()
    sim.simulate(M, G, w.trace, instances=N, tp=1, routing=simulated, prefix_cache_blocks=BLOCKS)
    monkeypatch.setattr(RC, "make_policy", lambda name, **params: replayed)
    RC._replay(w.profile, N, "mooncake", canonical_params("mooncake"),
               dataclasses.replace(level, rate_per_s=float(w.rate)))
    want, got = simulated.means(), replayed.means()
    for f in _Watch.FIELDS:
        assert got[f] == pytest.approx(want[f], rel=0.2), (f, got, want)


class _Usage(kvmodel.RoutingPolicy):
    """llm-d's rule that keeps the mean KV usage over the instances at each decision."""

    def __init__(self):
        self.rule, self.seen = kvmodel.make_policy("llmd"), []

    def choose(self, req, view):
        self.seen.append(np.mean(view.kv_usage))
        return self.rule.choose(req, view)


def test_router_kv_capacity_is_the_pool_net_of_the_hbm_cache(loaded, monkeypatch):
    """llm-d's KV-utilisation scorer divides the tokens reserved by the pool requests reserve
    from: the instance's KV pool less the cluster's HBM prefix-cache share. With the share the
    simulator's 200-block cache takes off its pool, the replay's mean KV usage over llm-d's
    decisions is the simulator's within 5 % (measured +0.3 % and +2.4 %; the whole pool gave
    0.78x and 0.79x)."""
    w = loaded
    full = kvmodel.estimate(M, G, tp=1, precision="bf16", input_len=round(w.input_len),
                            output_len=round(w.output_len)).kv_capacity_tokens
    share = BLOCKS * w.trace.block_tokens / full
    c = Cluster(model=M, gpu=G, instances=N, tp=1, precision="bf16", routing="llmd",
                hbm_cache_fraction=share)
    level = RL.router_levels(c, w, N)[1][RL.level_index(c, w, N, w.rate)]
    assert level.kv_capacity_tokens == pytest.approx((1.0 - share) * full, rel=1e-12)
    simulated, replayed = _Usage(), _Usage()
    r = sim.simulate(M, G, w.trace, instances=N, tp=1, routing=simulated,
                     prefix_cache_blocks=BLOCKS)
    assert r.kv_capacity_tokens == pytest.approx(level.kv_capacity_tokens, rel=1e-9)
    monkeypatch.setattr(RC, "make_policy", lambda name, **params: replayed)
    RC._replay(w.profile, N, "llmd", canonical_params("llmd"),
               dataclasses.replace(level, rate_per_s=float(w.rate)))
    assert np.mean(replayed.seen) == pytest.approx(np.mean(simulated.seen), rel=0.05)


@pytest.mark.parametrize("n, instances", [(1000, 8), (100, 8), (1000, 2), (200, 16), (23608, 8)])
def test_random_imbalance_is_the_balls_into_bins_maximum(n, instances):
    """Against seeded multinomial sampling (20,000 runs; its standard error is < 0.1 %)."""
    draws = np.random.default_rng(1).multinomial(n, [1 / instances] * instances, size=20000)
    want = draws.max(axis=1).mean() * instances / n
    assert random_imbalance(n, instances) == pytest.approx(want, rel=0.004)
    assert random_imbalance(n, 1) == random_imbalance(0, instances) == 1.0
    assert random_imbalance(1, instances) == pytest.approx(instances)


def test_random_imbalance_matches_the_simulator_and_reaches_evaluate():
    """8 instances x 1,000 requests: the simulator's busiest share over 12 policy seeds
    average 1.138 against the closed form's 1.130 (one run spans 1.07-1.22); evaluate
    reports it and loads the busiest instance with it."""
    tr = _trace(40.0)
    sims = [sim.simulate(M, G, tr, instances=N, tp=1, routing=kvmodel.make_policy("random",
                         seed=s), prefix_cache_blocks=BLOCKS).requests_per_instance
            for s in range(12)]
    got = np.mean([c.max() * N / c.sum() for c in sims])
    want = random_imbalance(len(tr), N)
    assert want == pytest.approx(got, rel=0.03)
    w = Workload(tr)
    r = kvmodel.evaluate(Cluster(model=M, gpu=G, instances=N, tp=1, precision="bf16",
                                 routing="random"), w)
    assert r.imbalance == want
    assert r.per_instance_rate_per_s == pytest.approx(w.rate * want / N)
    with pytest.raises(ValueError, match="instances"):
        random_imbalance(10, 0)
    with pytest.raises(ValueError, match="requests"):
        random_imbalance(-1, 4)


def test_cache_aware_routers_give_at_least_three_outcomes():
    """Loaded prefix-heavy 8-instance cluster: (hit ratio, imbalance, TTFT) per router."""
    w = Workload(_trace(100.0), request_rate=60.0)
    outcomes = set()
    for name in CACHE_AWARE:
        r = kvmodel.evaluate(Cluster(model=M, gpu=G, instances=N, tp=1, precision="bf16",
                                     routing=name, dram_B=0.0, ssd_B=0.0), w)
        assert r.closed_forms["routing"] == ROUTING[name].closed_form == name
        outcomes.add((round(sum(r.hit_ratio.values()), 6), round(r.imbalance, 6),
                      round(r.ttft_s, 9)))
    assert len(outcomes) >= 3, outcomes


def test_parameters_reach_the_closed_form():
    w = Workload(_trace(100.0), request_rate=60.0)
    base = dict(model=M, gpu=G, instances=N, tp=1, precision="bf16", dram_B=0.0, ssd_B=0.0)
    obj = kvmodel.make_policy("dynamo", overlap_score_weight=8.0)
    a = kvmodel.evaluate(Cluster(**base, routing=obj), w)
    b = kvmodel.evaluate(Cluster(**base, routing="dynamo",
                                 routing_params={"overlap_score_weight": 8.0}), w)
    c = kvmodel.evaluate(Cluster(**base, routing="dynamo"), w)
    assert a.to_dict() == b.to_dict()
    assert "overlap_score_weight=8.0" in a.closed_forms["routing_params"]
    assert sum(a.hit_ratio.values()) > sum(c.hit_ratio.values())  # more weight on the prefix
    with pytest.raises(ValueError, match="overlap_score_weight"):
        kvmodel.evaluate(Cluster(**base, routing="dynamo",
                                 routing_params={"overlap_score_weight": -1.0}), w)
    with pytest.raises(ValueError, match="unknown parameter"):
        kvmodel.evaluate(Cluster(**base, routing="dynamo", routing_params={"bogus": 1}), w)


def test_equivalent_parameters_give_equal_numbers_and_say_so():
    """Scaling llm-d's weights, or Mooncake's prefill time without pool and SLO, cannot change
    a choice: same canonical parameters (shown in closed_forms), same numbers."""
    w = Workload(_trace(100.0), request_rate=60.0)
    base = dict(model=M, gpu=G, instances=N, tp=1, precision="bf16")
    for name, p in (("llmd", dict(prefix_weight=6.0, kv_util_weight=4.0, queue_weight=4.0)),
                    ("mooncake", dict(prefill_s_per_token=1e-3))):
        a = kvmodel.evaluate(Cluster(**base, routing=name), w)
        b = kvmodel.evaluate(Cluster(**base, routing=name, routing_params=p), w)
        assert a.to_dict() == b.to_dict()
    assert canonical_params("llmd", {"prefix_weight": 6.0, "kv_util_weight": 4.0,
                                     "queue_weight": 4.0}) == canonical_params("llmd")


def test_levels_count_the_hits_and_rates_between_interpolate():
    """The router's levels sit at LOAD_LEVELS x a saturation that counts the replay's hits
    (above the plain one on this prefix-heavy trace); a rate between two levels blends them
    linearly (continuous at a level's rate, between the neighbours' values), and a vector of
    rates gives the scalars' numbers exactly."""
    w = Workload(_trace(100.0))
    c = Cluster(model=M, gpu=G, instances=N, tp=1, precision="bf16", routing="llmd")
    sat, plain = RL.level_loads(c, w, N)
    rates, loads = RL.router_levels(c, w, N)
    assert len(loads) == len(rates) == len(LOAD_LEVELS) and sat > 0
    assert np.all(np.diff(rates) > 0) and np.all(rates > [p.rate_per_s for p in plain])
    assert [ld.rate_per_s for ld in loads] == pytest.approx(rates.tolist(), rel=1e-12)
    j, t = RL.level_weights(c, w, N, 0.25 * rates[4] + 0.75 * rates[5])
    assert (j, t) == (4, pytest.approx(0.75))
    assert RL.level_index(c, w, N, rates[[0, 3, 7]]).tolist() == [0, 3, 7]
    assert RL.level_weights(c, w, N, [rates[0] / 2, 2 * rates[-1]])[1].tolist() == [0.0, 1.0]
    probe = np.array([rates[4], 0.25 * rates[4] + 0.75 * rates[5], rates[5],
                      rates[5] * (1 - 1e-9), 0.3 * N * sat])
    vec = kvmodel.evaluate(c, w.with_rate(probe))
    one = [kvmodel.evaluate(c, w.with_rate(float(lam))) for lam in probe]
    for i, x in enumerate(one):
        assert vec.imbalance[i] == x.imbalance
        for k, v in x.hit_ratio.items():
            assert vec.hit_ratio[k][i] == v
    imb = [x.imbalance for x in one]
    assert imb[1] == pytest.approx(0.25 * imb[0] + 0.75 * imb[2])
    assert imb[3] == pytest.approx(imb[2], rel=1e-6)
    # in-flight load from Little's law grows with the level
    assert all(a.residence_s * a.rate_per_s < b.residence_s * b.rate_per_s
               for a, b in zip(loads, loads[1:]))


def test_idle_least_loaded_fills_the_lowest_index():
    """Nothing in flight: every instance has 0 active, ties go to index 0 (the simulator's rule
    at a trickle), so the whole trace lands on instance 0."""
    tr = _trace(100.0)
    a = routed_assignment(tr, 4, "least_loaded", load=RouterLoad(rate_per_s=1e-3))
    assert set(a.tolist()) == {0}


def test_router_load_and_names_are_checked():
    with pytest.raises(ValueError, match="residence_s"):
        RouterLoad(residence_s=-1.0)
    with pytest.raises(ValueError, match="rate_per_s"):
        RouterLoad(rate_per_s=0.0)
    with pytest.raises(ValueError, match="load-aware"):
        routed_hit_ratio_curve(_trace(10.0), [10], 2, "random")
    prof = dataclasses.replace(Workload(_trace(10.0)).profile, arrival_s=None)
    with pytest.raises(ValueError, match="arrival_s"):
        routed_hit_ratio_curve(prof, [10], 2, "dynamo")
