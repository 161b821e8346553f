"""Queue term of the load-aware routers (kvmodel.cluster._routing_queue): the mixed supermarket
fixed point against Mitzenmacher's closed form, the M/M/N floor, identities where the rule
ignores the load, each rule's load choice count on hand-made views, and the term reaching
evaluate (queue-aware routers' p99 below the cache-blind balance of the same load)."""

import dataclasses
import math

import numpy as np
import pytest

import kvmodel
from kvmodel import Cluster, Workload
from kvmodel.cluster import _routing_queue as RQ
from kvmodel.instance._queueing import erlang_c
from kvmodel.policies.routing import RouteRequest, RoutingView, make_policy
from kvmodel.workload._routing_closed import routed_load_stats


def _mix(n: int, d: int) -> np.ndarray:
    m = np.zeros(n)
    m[d - 1] = 1.0
    return m


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_supermarket_matches_mitzenmacher(d, rho):
    """Pure d choices: P(wait) = ρ^d and mean wait Σ_{i≥2} ρ^((d^i − d)/(d − 1)) (time in
    system T_d less one service, Mitzenmacher 2001, Sec. 3)."""
    p, w = RQ._supermarket(_mix(d, d), np.array([rho]))
    want = sum(rho ** ((d ** i - d) / (d - 1)) for i in range(2, 40))
    assert p[0] == pytest.approx(rho ** d, rel=1e-9)
    assert w[0] == pytest.approx(want, rel=1e-6)


def test_one_choice_is_the_instance_law_exactly():
    """d = 1 for every request: the factors are 1 (work and count signals) and the wait law
    and percentiles come back unchanged."""
    rho = np.linspace(0.01, 0.99, 25)
    for residual in (None, 1.35, 0.6):
        fw, fp = RQ.wait_factors(_mix(8, 1), rho, residual)
        np.testing.assert_allclose(fw, 1.0, rtol=1e-6)
        np.testing.assert_allclose(fp, 1.0, rtol=1e-6)
    m = dict(ttft=2.0, ttft50=1.5, ttft90=3.0, ttft99=6.0, wait=0.8, pwait=0.6)
    W, p = RQ.routed_law(_mix(8, 1), m["wait"], m["pwait"])
    out = RQ.routed_percentiles(m, W, p, [(0.5, 0.0, "dram", 1000.0), (0.5, 500.0, "dram", 3000.0)])
    for k, v in m.items():
        assert out[k] == pytest.approx(v, rel=1e-6)


def test_all_choices_reach_the_central_queue_floor():
    """JSQ over all N with a work signal is no better than one M/M/N queue (Erlang C)."""
    n, rho = 8, 0.8
    fw, fp = RQ.wait_factors(_mix(n, n), rho)
    c = erlang_c(n, n * rho)
    assert fp * rho == pytest.approx(c, rel=1e-3)
    assert fw * rho / (1 - rho) == pytest.approx(c / (n * (1 - rho)), rel=1e-3)


def test_more_choices_never_wait_longer():
    rho = np.linspace(0.05, 0.98, 30)
    prev_w, prev_p = np.ones_like(rho), np.ones_like(rho)
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        mix = np.zeros(16)
        mix[0], mix[3] = 1 - share, share
        fw, fp = RQ.wait_factors(mix, rho)
        assert np.all(fw <= prev_w + 1e-9) and np.all(fp <= prev_p + 1e-9)
        prev_w, prev_p = fw, fp


def test_count_signal_keeps_the_probability_of_waiting():
    """A request count does not see the prompt in service: P(wait) stays, the M/G/1 wait's
    residual share 1 − ρ stays and its queued share ρ is cut as M/M/1's queue; the residual's
    length scales both shares alike, so it cancels."""
    rho = 0.8
    fw_low, fp = RQ.wait_factors(_mix(8, 8), rho, 0.6)
    fw_high, _ = RQ.wait_factors(_mix(8, 8), rho, 2.25)
    fw_work, _ = RQ.wait_factors(_mix(8, 8), rho)
    assert fp == 1.0
    assert fw_low == pytest.approx(fw_high, rel=1e-12)
    assert fw_work < fw_low < 1.0
    queued = rho ** 9  # d = 8: s_2 = ρ·ρ^8, a_2 = s_2^8 ≈ 0, so Σ_{k≥2} a_k ≈ 0
    assert fw_low == pytest.approx(1.0 - rho, abs=queued)


def test_bad_mix_and_residual_are_rejected():
    with pytest.raises(ValueError, match="mix="):
        RQ.wait_factors([0.5, 0.2], 0.5)
    with pytest.raises(ValueError, match="residual="):
        RQ.wait_factors([0.3, 0.7], 0.5, -1.0)


def _view(**kw):
    n = len(kw["active"])
    return RoutingView(n, block_tokens=16, **kw)


def test_token_weighted_signals_read_as_work():
    """llm-d's kv-utilisation (reserved tokens) and sglang's tree (routed prompt blocks) see a
    long prompt in service; least_loaded's active requests do not."""
    from kvmodel.policies import ROUTING
    signal = {r: getattr(ROUTING[r].sim, "load_signal", "count") for r in ROUTING}
    assert signal["llmd"] == signal["sglang"] == signal["dynamo"] == "work"
    assert signal["least_loaded"] == "count"


def test_load_choices_of_each_rule():
    req = RouteRequest(0, 16 * 10, 8, 10)
    cached = [{"hbm": 10}, {"hbm": 0}, {"hbm": 0}, {"hbm": 9}]
    busy = dict(active=[20, 20, 20, 20], waiting=[2, 2, 2, 2], cached=cached,
                queued_prefill_tokens=[400, 400, 400, 400], kv_blocks=[200] * 4,
                kv_usage=[0.5] * 4)
    idle = dict(busy, active=[0] * 4, waiting=[0] * 4, queued_prefill_tokens=[0] * 4,
                kv_blocks=[0] * 4, kv_usage=[0.0] * 4)
    assert make_policy("least_loaded").load_choices(req, _view(**idle)) == 4
    assert make_policy("sglang").load_choices(req, _view(**idle)) == 1  # one longest prefix
    none_cached = dict(idle, cached=[{}] * 4)
    # the smallest tree weighs the routed prompt work: every instance is a choice
    assert make_policy("sglang").load_choices(req, _view(**none_cached)) == 4
    for name in ("mooncake", "dynamo", "llmd"):
        assert make_policy(name).load_choices(req, _view(**idle)) == 1  # cache decides
        assert make_policy(name).load_choices(req, _view(**busy)) >= 2  # load reaches
    assert make_policy("round_robin").load_choices(req, _view(**busy)) == 1
    assert make_policy("sglang", balance_abs_threshold=1).load_choices(
        req, _view(**dict(busy, active=[10, 0, 0, 0]))) == 4


@pytest.fixture(scope="module")
def loaded_cluster():
    w = Workload(kvmodel.synthetic_trace(1000, seed=5, rate_per_s=100.0, n_system_prompts=16,
                                         session_fraction=0.6))
    return w


def test_queue_term_reaches_evaluate_and_says_its_mix(loaded_cluster):
    """least_loaded (all N choices, cache-blind) waits less than random routing at the same
    hit ratio; every served request of least_loaded has N choices."""
    w = loaded_cluster
    c = Cluster("llama-3.1-8b", "h100-sxm", instances=8, tp=1, precision="bf16")
    ll = kvmodel.evaluate(dataclasses.replace(c, routing="least_loaded"), w)
    rnd = kvmodel.evaluate(dataclasses.replace(c, routing="random"), w)
    assert ll.stable and rnd.stable
    assert ll.ttft_p99_s < rnd.ttft_p99_s
    mix, imb = routed_load_stats(w.profile, 8, "least_loaded", None)
    assert mix[-1] == pytest.approx(1.0) and math.isfinite(imb) and imb >= 1.0


def test_work_signal_pools_the_flexible_share():
    """A rule weighing the work left evens out the busiest instance's excess with the
    requests that have a choice; only the share without one keeps its imbalance."""
    from kvmodel.cluster._routing_load import _pooled
    assert _pooled(((0.1, 0.0, 0.9), 1.08), work=True) == 1.0
    assert _pooled(((1.0, 0.0, 0.0), 1.08), work=True) == pytest.approx(1.08)
    assert _pooled(((0.1, 0.0, 0.9), 1.08), work=False) == pytest.approx(1.08)


# ---------------------------------------------------------------- bounded prefix affinity

def _toy_profile():
    """r0 [1, 2] nowhere cached: both tie (d = 2), to instance 0; r1 [1, 3]: block 1 only on
    instance 0 (d = 1); r2 [4]: nowhere (d = 2), to the fewest routed, instance 1; r3
    [1, 2, 5]: blocks 1, 2 on instance 0 (d = 1)."""
    from kvmodel.workload._reuse_analytic import reuse_profile
    return reuse_profile(kvmodel.Trace.from_lists([[1, 2], [1, 3], [4], [1, 2, 5]]))


def test_bounded_choice_mix_by_hand():
    prof = _toy_profile()
    assert RQ.bounded_choice_mix(prof, 2, 10.0, 100) == pytest.approx((0.5, 0.5))
    # no cache: every eligible instance ties at the empty prefix
    assert RQ.bounded_choice_mix(prof, 2, 10.0, 0) == pytest.approx((0.0, 1.0))
    # epsilon 0.01: bound ceil(1.01 (k + 1) / 2) = 1, 2, 2, 3; r2 finds instance 0 full
    # (2 routed) and has one eligible instance
    assert RQ.bounded_choice_mix(prof, 2, 0.01, 100) == pytest.approx((0.75, 0.25))


def test_bounded_load_choices_on_views():
    """The policy's own count: eligible instances tied at the longest prefix."""
    pab = make_policy("prefix_affinity_bounded", epsilon=0.25)
    req = RouteRequest(0, 16 * 4, 8, 4)
    cached = [{"hbm": 3}, {"hbm": 3}, {}, {"hbm": 1}]
    assert pab.load_choices(req, _view(active=[0] * 4, cached=cached, routed=[5] * 4)) == 2
    # instance 0 at the bound (ceil(1.25 · 21 / 4) = 7): instance 1 alone has the prefix
    view = _view(active=[0] * 4, cached=cached, routed=[7, 5, 4, 4])
    assert pab.load_choices(req, view) == 1 and pab.choose(req, view) == 1
    assert pab.load_choices(req, _view(active=[0] * 4, cached=[{}] * 4, routed=[0] * 4)) == 4


def test_bounded_mix_matches_the_simulators_views():
    """The replayed mix against the simulator's routing views (the policy's load_choices at
    each decision), through the wait it gives (count signal, ρ = 0.6). The simulator breaks
    ties by requests in flight (often all 0 at this load: the lowest index), the replay by
    requests routed, and a prefix reaches the simulator's cache only after its prefill, so
    the shares differ on this synthetic trace by up to 0.3; the wait factor by at most 30 %
    (on the Mooncake conversation trace the share with one choice is 6.0 % replayed, 5.7 %
    in the simulator)."""
    from kvmodel.policies.routing import PrefixAffinityBounded
    from kvmodel.sim import simulate
    from kvmodel.workload._reuse_analytic import reuse_profile

    class Recording(PrefixAffinityBounded):
        seen: list = []

        def choose(self, req, view):
            self.seen.append(self.load_choices(req, view))
            return super().choose(req, view)

    tr = kvmodel.synthetic_trace(600, seed=3, rate_per_s=40.0, n_system_prompts=4,
                                 session_fraction=0.6)
    for blocks in (8, 200):
        Recording.seen = []
        simulate("llama-3.1-8b", "h100-sxm", tr, instances=4, tp=1, precision="bf16",
                 routing=Recording(epsilon=0.25), prefix_cache_blocks=blocks)
        sim = np.bincount(Recording.seen, minlength=5)[1:] / len(Recording.seen)
        mix = RQ.bounded_choice_mix(reuse_profile(tr), 4, 0.25, blocks)
        got, want = (RQ.wait_factors(tuple(m), 0.6, 1.0)[0] for m in (mix, sim))
        assert got == pytest.approx(want, rel=0.30), (blocks, mix, sim)
        assert 0.1 < mix[0] < 0.9 and 0.1 < sim[0] < 0.9  # both mix choices and affinity


def _jsq_chain(n: int, rho: float, q: float, top: int = 30) -> float:
    """Exact mean wait (service times) of n exponential servers, Poisson arrivals at n·ρ, a
    share q joining the shortest queue and the rest a uniform one: the continuous-time chain
    on sorted queue lengths (truncated at ``top`` per queue) solved with scipy, the wait from
    the mean number in system by Little's law over the carried rate."""
    import itertools

    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve
    states = list(itertools.combinations_with_replacement(range(top + 1), n))
    index = {s: i for i, s in enumerate(states)}
    Q = lil_matrix((len(states), len(states)))

    def move(s, i, step, rate):
        t = list(s)
        t[i] += step
        j = index[tuple(sorted(t))]
        Q[index[s], j] += rate
        Q[index[s], index[s]] -= rate

    carried = np.zeros(len(states))
    for s in states:
        for i in range(n):
            rate = n * rho * ((1 - q) / n + (q if i == 0 else 0.0))
            if s[i] < top and rate > 0:
                move(s, i, +1, rate)
                carried[index[s]] += rate
            if s[i] > 0:
                move(s, i, -1, 1.0)
    A = Q.T.tolil()
    A[0, :] = 1.0  # normalisation replaces one balance equation
    b = np.zeros(len(states))
    b[0] = 1.0
    pi = spsolve(A.tocsc(), b)
    L = sum(p * sum(s) for p, s in zip(pi, states))
    return L / float(pi @ carried) - 1.0


def test_bounded_mix_law_against_the_exact_chain():
    """The mixed supermarket law with a share q of the requests joining the shortest of N = 3
    (work signal: the M/M law) against the exact finite chain: q = 0 is M/M/1 exactly; with
    ties the law falls with q as the exact wait does, stays between M/M/3 and M/M/1, and is
    optimistic (the N → ∞ fixed point misses how few instances there are to choose from:
    exact 0.44, law 0.30 service times at q = 0.94, ρ = 0.6)."""
    n, rho = 3, 0.6
    exact, law = [], []
    for q in (0.0, 0.6, 0.94):
        exact.append(_jsq_chain(n, rho, q, top=28))
        law.append(RQ.wait_factors((1 - q, 0.0, q), rho)[0] * rho / (1 - rho))
    assert exact[0] == pytest.approx(rho / (1 - rho), rel=1e-3)
    assert law[0] == pytest.approx(exact[0], rel=1e-3)
    assert exact[0] > exact[1] > exact[2] and law[0] > law[1] > law[2]
    floor = erlang_c(n, n * rho) / (n * (1 - rho))
    for e, x in zip(exact[1:], law[1:]):
        assert floor <= x <= e and x >= 0.6 * e


def test_bounded_affinity_law_reaches_evaluate():
    """The tie share shortens the wait: with every request tied (no cache) the wait is the
    count signal's over all N, with caches some requests follow their prefix (d = 1); only
    the mean TTFT moves. An array of capacities gives each configuration its scalar
    evaluation (the same anchors)."""
    from kvmodel.workload._reuse_analytic import reuse_profile
    tr = kvmodel.synthetic_trace(800, seed=5, rate_per_s=100.0, n_system_prompts=16,
                                 session_fraction=0.6)
    prof = reuse_profile(tr)
    m = dict(ttft=2.0, ttft50=1.5, ttft90=3.0, ttft99=6.0, wait=0.8, pwait=0.6)
    none = RQ.bounded_affinity_waits(prof, 8, 0.25, "lru", 0, m, 1.0)
    some = RQ.bounded_affinity_waits(prof, 8, 0.25, "lru", 10**6, m, 1.0)
    assert none["wait"] < some["wait"] < m["wait"]
    assert none["ttft"] - m["ttft"] == pytest.approx(none["wait"] - m["wait"])
    assert none["pwait"] == m["pwait"]  # a count signal: P(wait) stays
    assert all(none[k] == m[k] for k in ("ttft50", "ttft90", "ttft99"))  # the mean moves
    inf = dict(m, wait=math.inf, ttft=math.inf)
    assert RQ.bounded_affinity_waits(prof, 8, 0.25, "lru", 0, inf, 1.0) == inf
    assert RQ.bounded_choice_mix(prof, 8, 0.25, 0)[-1] > 0.98  # the bound, early on
    w = Workload(tr)
    c = Cluster("llama-3.1-8b", "h100-sxm", instances=4, tp=1, precision="bf16",
                routing="prefix_affinity_bounded", hbm_cache_fraction=0.0, ssd_B=0.0)
    caps = np.array([0.0, 1e8, 3e8, 2e9])
    vec = kvmodel.evaluate(dataclasses.replace(c, dram_B=caps), w)
    for i, d in enumerate(caps):
        one = kvmodel.evaluate(dataclasses.replace(c, dram_B=float(d)), w)
        assert vec.ttft_s[i] == pytest.approx(one.ttft_s, rel=1e-9)
        assert vec.ttft_p99_s[i] == pytest.approx(one.ttft_p99_s, rel=1e-9)


def _lru_ties_oracle(trace, n: int, eps: float, cap: int) -> tuple:
    """The bounded rule replayed block by block with one LRUCache per instance (the
    CachePolicy contract: contains along the chain, touch last block to first)."""
    from kvmodel.policies.eviction import LRUCache
    caches, counts, ties = [LRUCache(cap) for _ in range(n)], [0] * n, [0] * n
    for r, chain in enumerate(trace):
        bound = math.ceil((1.0 + eps) * (r + 1) / n)
        held = {}
        for i in range(n):
            if counts[i] < bound:
                held[i] = next((k for k, b in enumerate(chain) if not caches[i].contains(b)),
                               len(chain))
        tied = [i for i, k in held.items() if k == max(held.values())]
        ties[len(tied) - 1] += 1
        c = min(tied, key=lambda i: (counts[i], i))
        counts[c] += 1
        for b in reversed(chain):
            caches[c].touch(b)
    return tuple(t / len(trace) for t in ties)


@pytest.mark.parametrize("prefix", [True, False])
def test_lru_tie_mix_equals_the_block_by_block_replay(prefix):
    """The compressed LRU replay (instance masks, last accesses as anonymous runs, the
    never-evicting size from the assignment replay) against the block-by-block oracle at
    capacities from none to beyond every instance's blocks: the same counts. ``prefix``
    False: chains that are not prefix chains (a block after different blocks), which the
    replay hands to the per-policy caches."""
    from kvmodel.workload._reuse_analytic import prefix_chains, reuse_profile
    tr = kvmodel.synthetic_trace(400, seed=5, rate_per_s=40.0, n_system_prompts=3,
                                 session_fraction=0.6)
    chains = [[int(b) for b in c] for c in np.split(reuse_profile(tr).block_ids,
                                                     reuse_profile(tr).block_offsets[1:-1])]
    if not prefix:  # rotate every third chain: its blocks follow other blocks
        chains = [c[1:] + c[:1] if r % 3 == 0 else c for r, c in enumerate(chains)]
    prof = reuse_profile(kvmodel.Trace.from_lists(chains))
    assert (prefix_chains(prof) is not None) == prefix
    for n, eps in ((2, 0.25), (3, 0.02), (5, 0.25)):
        for cap in (0, 1, 4, 9, 60, 300, 10 ** 6):
            want = _lru_ties_oracle(chains, n, eps, cap)
            assert RQ.bounded_choice_mix(prof, n, eps, cap) == pytest.approx(want, abs=1e-15)


def test_routed_law_reads_the_utilisation_by_hand():
    """Two instances, every request tied (d = 2), a count signal at ρ = 0.5: s_1 = 0.5,
    a_1 = 0.25, s_2 = 0.125, a_2 = 0.015625, s_3 = 0.0078125, a_3 = 0.00006103515625, ...:
    Σ_{k≥2} a_k = 0.0156860, so W'/W = (ρ + 0.0156860)(1 − ρ)/ρ = 0.515686 whatever the
    instance's P(wait) (0.99 here: a KV-slot wait moment-matched into it); P(wait) stays.
    Read at P(wait) instead, the residual share 1 − 0.99 would cut the wait to 0.045."""
    W, p = RQ.routed_law((0.0, 1.0), 1.0, 0.99, 1.5, rho=0.5)
    assert W == pytest.approx(0.515686, abs=1e-6) and p == 0.99
    assert RQ.routed_law((0.0, 1.0), 1.0, 0.99, 1.5)[0] < 0.05  # the old reading
    assert RQ.utilisation(dict(pwait=0.99, util=0.5)) == 0.5
    assert RQ.utilisation(dict(pwait=0.99)) == 0.99  # no utilisation given: P(wait)


@pytest.mark.parametrize("routing", [
    # its 5 % dip at 0.92-0.97 left with the pooled steer (stop 23); the 0.4 % dip the
    # mixed-batch saturation brought (sat) is gone beside the new KV-slot law (slot, stop 24)
    "prefix_affinity_bounded",
    "llmd", "sglang",
    # least_loaded dipped 6 % (0.962 -> 0.909 s) at 0.83-0.97 of saturation while the whole
    # wait was read at lambda/lambda_sat (read at P(wait) 27 %); rises since the prefill
    # carry wait is read at its own token server's utilisation (tests/cluster/
    # test_routed_parts.py)
    "least_loaded"])
def test_routed_mean_never_falls_with_the_rate(routing):
    """Higher rate, never a shorter mean TTFT, up to 0.97 of saturation (8 x Llama-3.1-70B
    fp8 TP8, 256 GB DRAM each, Mooncake): read at P(wait), bounded prefix affinity's mean
    fell from 0.85 s at 0.68 to 0.54 s at 0.78 of its saturation, where the moment-matched
    P(wait) reached 1."""
    w = Workload(kvmodel.load_trace("mooncake-conversation"))
    c = Cluster("llama-3.1-70b", "h100-sxm", instances=8, tp=8, precision="fp8",
                routing=routing, epsilon=0.1, hbm_cache_fraction=0.0, dram_B=256e9, ssd_B=0.0)
    sat = kvmodel.cluster.max_rate_at_slo(c, w.with_rate(4.0), ttft_slo_s=1e9, tpot_slo_s=1e9)
    x = kvmodel.evaluate(c, w.with_rate(np.linspace(0.3, 0.97, 15) * float(sat)))
    t = np.asarray(x.ttft_s)
    assert np.all(np.asarray(x.stable)) and np.all(np.diff(t) >= 0), t
