"""Conformance of every registered router (kvmodel.policies.ROUTING): the closed form
(kvmodel.evaluate) against the simulator running the exact rule (kvmodel.sim.simulate).

Settings chosen before measuring: Llama-3.1-8B bf16 TP1 on H100, 4 instances, a 64 GB DRAM
prefix cache per instance (no HBM share, no SSD), the bundled Mooncake conversation trace
(12,031 requests) with seeded Poisson arrivals at 50 % of round robin's saturation rate.
The referee's stream is the trace in a stationary order (:func:`stationary_order`: its
conversations at random phases, each keeping its turns' spacing), the closed form's profile
extracted from that stream and the simulator's first WARMUP requests left out of its TTFT
statistics (tests/policies/test_routing_vs_sim_load.py: near saturation the file's order
referees its own transient). At 50 % the two referees agree within a few per cent.
Bars (issue 13): hit ratio within 0.02, mean TTFT within 20 %, p99 TTFT within 35 %.
The cells that miss a bar are strict xfails with the error measured when the file was written
(closed / sim - 1); a cell that starts to pass fails the suite, so the list stays honest."""

import dataclasses
import types

import numpy as np
import pytest

import kvmodel
from kvmodel.cluster import max_rate_at_slo
from kvmodel.policies import ROUTING
from kvmodel.sim import simulate

pytestmark = pytest.mark.slow

M, G, N, DRAM_B, LOAD = "llama-3.1-8b", "h100-sxm", 4, 64e9, 0.5
HIT_TOL, MEAN_TOL, P99_TOL = 0.02, 0.20, 0.35
# router -> (metric, measured closed/sim - 1) for cells that miss the bar at LOAD
# (least_loaded p99 -0.36 -> -0.28 and sglang mean +0.27 -> +0.10 once the replay's work
# smoothing is the instance's arrival SCV and a count signal's percentiles fall by at most
# a waiting request's mean cut; the simulator's unbounded prefix affinity is overloaded
# too: all on one instance, 2,512 s mean)
# round robin -0.18 -> -0.27 (mean), -0.29 -> -0.40 (p99) once each instance takes its exact
# Erlang-4 arrivals (SCV 1/4, routed_arrival_scv): the closed form's RR / random mean TTFT
# ratio 0.99 -> 0.88, the simulator's 0.73 (0.862 / 1.181 s), so the smoothing is real and
# still under-counted; the base instance wait is short on this long-tailed trace, as random's
# Poisson split shows. With the prefill service SCV in seconds (3.6, was 1.6 in tokens):
# round robin -0.27/-0.40 -> -0.02/-0.21 and random -0.39/-0.42 -> -0.21/-0.29 (its p99
# passes; the mean misses the simulator's rare KV-slot waits, 1.7 % of requests > 3 s, which
# the Gaussian occupancy at 6 of 36 slots cannot reach); prefix_affinity_bounded's mean
# -0.00 -> +0.29 (its wait law is the random split's: the count bound's smoothing is not
# modelled). With s18-carry's budget-overflow carry merged beside it: random's mean -0.20
# (0.947 / 1.181 s, inside the bar by 0.002), prefix_affinity_bounded +0.30, mooncake +0.11.
# prefix_affinity_bounded +0.30 -> +0.10 (p99 -0.04, kept) once its ties -- 94 % of the
# requests share their longest cached prefix with every instance and go to the fewest active
# -- are a join-the-shortest-queue (kvmodel.cluster._routing_queue, bounded_choice_mix)
# random refereed over 3 seeds (SEEDS below; stop 19): -0.198 / -0.285 at seed 0 were seed luck,
# pooled -0.24 (0.947 / 1.245 s) and -0.43 (6.56 / 11.52 s): the closed form has no KV-slot
# wait where the simulator's random split gives 0.15 s of it; a head-of-line slot law with the
# measured drain (benchmarks/kv_slot_occupancy.py docstring) did not close it with the model's
# own occupancy moments and pushed least_loaded's mean to +0.14, so it was not adopted.
# random -0.24 / -0.43 -> -0.16 / -0.31 (0.887 / 1.057 s, 6.56 / 9.46 s; round robin +0.03 /
# -0.09, least loaded +0.09 / -0.09) once length classes hold their KV slots by the
# token-occupancy moments (kvmodel.instance._openloop.slot_moments: prefill shots, steering)
# behind a head-of-line law, unstable where Little on tokens fails (lambda * h * w1 >= the
# pool): round robin's saturation here falls from 6.57 to 5.90 /s (the simulator's RR queue
# at 5.97 /s already runs to 50-99 s and grows at 6.35 and 6.70), so LOAD's rate falls 10 %;
# the base closed form at the new rate gives random -0.18 / -0.31: the slot law adds +0.02 s
# On the stationary referee (stationary_order, WARMUP; stop 22) every cell moves by <= 0.05:
# random -0.10 / -0.22 at seed 0 (file order -0.12 / -0.21), round robin +0.00 / -0.14,
# least_loaded +0.03 / -0.11, mooncake +0.11 / +0.02 (benchmarks/router_referee.py)
# The routed law reading the prefill carry wait at its token server's utilisation (stop 25,
# kvmodel.cluster._routing_queue.routed_law ``parts``; one seed, stop 24's main -> then):
# least_loaded +0.05 / -0.11 -> +0.14 / -0.08, prefix_affinity_bounded +0.05 / -0.10 ->
# +0.14 / -0.10, dynamo +0.06 / -0.04 -> +0.04 / -0.04, llmd +0.05 / -0.05 -> +0.05 / +0.01,
# sglang +0.09 / -0.08 -> +0.10 / +0.01, mooncake +0.16 / +0.01 -> +0.16 / +0.01
MISSES = {("prefix_affinity", "mean"): float("inf"), ("prefix_affinity", "p99"): float("inf")}


def cluster(routing: str) -> kvmodel.Cluster:
    """The cells' cluster with ``routing`` (also tests/policies/test_routing_vs_sim_load.py)."""
    return kvmodel.Cluster(M, G, instances=N, tp=1, precision="bf16", routing=routing,
                           hbm_cache_fraction=0.0, dram_B=DRAM_B, ssd_B=0.0)


def prefix_groups(trace) -> np.ndarray:
    """Group index of every request: its conversation, the requests that share its second
    prefix block. Block ids are chained (an id stands for the whole prefix up to it), so two
    requests share any block past the first only inside one group; the first block (the
    system prompt every Mooncake request carries) is the only reuse across groups. A request
    of one block is a group of its own."""
    off, ids = trace.block_offsets, trace.block_ids
    one = np.diff(off) <= 1
    second = ids[np.minimum(off[:-1] + 1, max(len(ids) - 1, 0))] if len(ids) else off[:-1]
    key = np.where(one, -1 - np.arange(len(trace)), second)
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def stationary_order(trace, seed: int):
    """``trace`` with its conversations placed at random phases: each group
    (:func:`prefix_groups`) keeps its turns' arrival offsets and is shifted by a uniform
    draw over the trace's span, wrapped around it; the requests are re-ordered by the shifted
    times (arrival_s: the old times, sorted, to be replaced by the caller's arrivals).

    The bundled Mooncake trace is not stationary (its first 3,000 requests carry 13.7k prompt
    tokens on average, the whole trace 12.0k), so near saturation the simulator's means
    include a transient. Shuffling single requests would be stationary too, but it would
    put a conversation's turns at random distances: a turn's reuse distance (its conversation's
    earlier turns, hundreds of requests back) decides whether its prefix is still in a
    950-block LRU cache. A group moved as a unit keeps every within-group distance except
    where it wraps, and every group's work is spread evenly over the span."""
    g = prefix_groups(trace)
    span = trace.arrival_s[-1] - trace.arrival_s[0] + np.diff(trace.arrival_s).mean()
    start = np.full(g.max() + 1, np.inf)
    np.minimum.at(start, g, trace.arrival_s)
    shift = np.random.default_rng(seed).uniform(0.0, span, g.max() + 1)
    order = np.argsort(np.mod(trace.arrival_s - start[g] + shift[g], span), kind="stable")
    lens = np.diff(trace.block_offsets)[order]
    ids = np.concatenate([trace.hash_ids(i) for i in order]).astype(np.int64)
    return dataclasses.replace(
        trace, arrival_s=np.sort(trace.arrival_s), input_len=trace.input_len[order],
        output_len=trace.output_len[order], block_ids=ids,
        block_offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        session=None if trace.session is None else trace.session[order])


def make_setting(load: float, stationary: bool = True):
    """(workload at ``load`` x round robin's saturation, a function giving the trace of a seed
    with Poisson arrivals of that seed, blocks, requests left out at the head of a run). The
    trace of seed s is the Mooncake conversation trace in stationary order ORDER_SEED + s
    (:func:`stationary_order`; WARMUP left out); the closed form's profile (hit curves, the
    routers' replays) is extracted from order ORDER_SEED, the stream of seed 0. The order's
    draw moves the simulator near saturation more than the arrivals' (85 %, dynamo's mean:
    per-seed spread 19 % over orders and arrivals 0-3, 8 % over arrivals 0-3 on order 0),
    the closed form by <= 1.5 % (mean and p99 TTFT, every router), so seeds pool orders too.
    ``stationary=False``: the file's order for every seed, none left out."""
    t = kvmodel.load_trace("mooncake-conversation")
    w = kvmodel.Workload(stationary_order(t, ORDER_SEED) if stationary else t)
    sat = float(max_rate_at_slo(cluster("round_robin"), w.with_rate(N), ttft_slo_s=1e9,
                                tpot_slo_s=1e9))
    rate = load * sat

    def trace(seed: int):
        gaps = np.random.default_rng(seed).exponential(1.0 / rate, len(w.trace))
        order = (w.trace if not stationary or seed == ORDER_SEED
                 else stationary_order(t, ORDER_SEED + seed))
        return dataclasses.replace(order, arrival_s=np.cumsum(gaps) - gaps[0])

    block_B = w.trace.block_tokens * kvmodel.get_model(M).kv_bytes_per_token("bf16")
    return w.with_rate(rate), trace, int(DRAM_B / block_B), WARMUP if stationary else 0


@pytest.fixture(scope="module")
def setting():
    return make_setting(LOAD)


# The referee's stream (make_setting): the stationary order's seed, and the requests at the
# head of every simulated run left out of its TTFT statistics (the instances' caches and
# queues start empty; the closed form is a steady state). 2,000 requests are ~400 s at 85 %.
ORDER_SEED, WARMUP = 0, 2000
# Routers refereed over several seeds (arrival and router seed s = 0 .. k - 1, the simulator's
# TTFTs pooled): random's simulated TTFT rests on ~20 KV-slot blocking episodes, and
# over arrival seeds 0-2 x router seeds 0-2 its mean is 1.17-1.42 s, so one seed decides the
# cell by luck (benchmarks/kv_slot_occupancy.py); round robin and least loaded move by a few
# per cent over seeds, the others' rules break ties deterministically or rarely draw
SEEDS = {"random": 3}
_cache: dict = {}


def sim_figures(runs: list, warmup: int) -> types.SimpleNamespace:
    """The simulator's figures over ``runs`` (one per seed, same stream): hit ratio over the
    whole stream (the closed form's replay covers it all), mean and p99 TTFT of the served
    requests after ``warmup`` pooled over the runs, and the spread of the per-run mean and
    p99 (sample standard deviation over the pooled value; 0 for one run)."""
    tails = [r.ttft_s[warmup:][r.served[warmup:]] for r in runs]
    pooled = np.concatenate(tails)
    mean, p99 = float(pooled.mean()), float(np.percentile(pooled, 99))
    each = np.array([[t.mean(), np.percentile(t, 99)] for t in tails])
    spread = each.std(axis=0, ddof=1) / (mean, p99) if len(runs) > 1 else np.zeros(2)
    return types.SimpleNamespace(
        hit_ratio=float(np.mean([r.hit_ratio for r in runs])), ttft_mean_s=mean,
        ttft_p99_s=p99, mean_spread=float(spread[0]), p99_spread=float(spread[1]))


def pair(setting, routing: str, cache: dict, seeds: int | None = None):
    """(closed-form result, simulator figures of :func:`sim_figures`) of one router,
    computed once per ``cache``; over ``seeds`` seeds (None: the router's SEEDS, else 1)."""
    if routing not in cache:
        w, trace, blocks, warmup = setting
        k = SEEDS.get(routing, 1) if seeds is None else seeds
        runs = [simulate(M, G, trace(s), instances=N, tp=1, precision="bf16", routing=routing,
                         prefix_cache_blocks=blocks, cache_tier="dram", seed=s)
                for s in range(k)]
        cache[routing] = (kvmodel.evaluate(cluster(routing), w), sim_figures(runs, warmup))
    return cache[routing]


def _pair(setting, routing: str):
    return pair(setting, routing, _cache)


def _cells(metric: str):
    return cells(MISSES, metric)


def cells(misses: dict, metric: str) -> list:
    """Every router as a parameter, a strict xfail where ``misses`` holds (router, metric)."""
    out = []
    for r in ROUTING:
        miss = misses.get((r, metric))
        marks = [pytest.mark.xfail(strict=True, reason=f"measured {miss:+.2f}")] if miss else []
        out.append(pytest.param(r, marks=marks, id=r))
    return out


@pytest.mark.parametrize("routing", list(ROUTING))
def test_hit_ratio_matches_the_simulator(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(sum(x.hit_ratio.values()) - s.hit_ratio) <= HIT_TOL


@pytest.mark.parametrize("routing", _cells("mean"))
def test_mean_ttft_matches_the_simulator(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(x.ttft_s / s.ttft_mean_s - 1) <= MEAN_TOL, (x.ttft_s, s.ttft_mean_s)


@pytest.mark.parametrize("routing", _cells("p99"))
def test_p99_ttft_matches_the_simulator(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(x.ttft_p99_s / s.ttft_p99_s - 1) <= P99_TOL, (x.ttft_p99_s, s.ttft_p99_s)


def _quarters(x: np.ndarray) -> np.ndarray:
    """Each quarter's mean over the whole mean, minus 1."""
    return np.array([q.mean() for q in np.array_split(x, 4)]) / x.mean() - 1


def test_the_referee_stream_is_stationary():
    """The stationary order moves whole requests (each keeps its lengths and block chain),
    keeps every conversation's turns in their order but where it wraps, and spreads the work:
    each quarter's mean prompt is within 5 % of the trace's, where the file's first quarter
    is 12 % above it."""
    t = kvmodel.load_trace("mooncake-conversation")
    s = stationary_order(t, ORDER_SEED)
    key = [(int(a), tuple(s.hash_ids(i))) for i, a in enumerate(s.input_len)]
    assert sorted(key) == sorted((int(a), tuple(t.hash_ids(i))) for i, a in enumerate(t.input_len))
    assert _quarters(t.input_len)[0] > 0.10
    assert np.abs(_quarters(s.input_len)).max() < 0.05
    g = prefix_groups(s)
    turns = np.diff(s.blocks_per_request[np.argsort(g, kind="stable")])
    same = np.diff(np.sort(g)) == 0
    assert (turns[same] >= 0).mean() > 0.8
