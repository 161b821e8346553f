"""Conformance of every registered router near saturation: the setting of
tests/policies/test_routing_vs_sim.py (Llama-3.1-8B bf16 TP1 on H100, 4 instances, 64 GB DRAM
prefix cache each, the Mooncake conversation trace in stationary orders with seeded Poisson
arrivals, a 2,000-request warm-up left out) at 85 % of round robin's saturation rate (5.02/s of
5.90/s) instead of 50 %, every router's simulator TTFTs pooled over K seeds (orders and arrivals).
Bars (issue 13): hit ratio within 0.02, mean TTFT within 20 %, p99 TTFT within 35 %.

The referee. In the file's order the trace is not stationary (its first quarter carries 12 %
more prompt tokens than the whole), so the simulator's means held a transient: over 4 seeds
round robin's mean was 9.9 s there against 4.9 s on the stationary streams, and every cell
missed (closed / sim - 1, mean / p99: round robin -0.73 / -0.69, random -0.65 / -0.59,
least_loaded -0.78 / -0.76, dynamo -0.70 / -0.64, llmd -0.66 / -0.66, sglang -0.76 / -0.78,
mooncake -0.67 / -0.61, prefix_affinity_bounded -0.45 / +0.35; the simulator's mean over 4
seeds of the file's order, benchmarks/router_referee.py --referee trace). Near saturation one
run is not enough: the simulator's per-seed spread is 13-23 % here (orders as much as
arrivals), so a cell is judged only where the pooled figure's standard error is at most half
the bar (test_the_simulator_spread_is_inside_the_bar).

What remains is the instance's own wait law, not the routers'. random is an exact Poisson
split, so its cell is the instance's law under Poisson arrivals: -0.37 / -0.24. One instance
fed a quarter of the rate (benchmarks/router_referee.py --instance) gives closed / sim - 1 of
the mean -0.08 at 50 %, -0.22 at 70 % and -0.33 at 85 % (Poisson; 1-2 seeds): the closed
form's queue grows too slowly towards a saturation the simulator reaches first (its admission
wait 0.10 / 0.82 / 4.1 s at 50 / 70 / 85 %; an M/G/1 growth through the last two points puts
the simulated saturation ~10 % below the closed form's 5.90/s, a rough two-point fit). Round
robin's Erlang-4 smoothing is right within the noise (closed round robin / random 0.67,
simulated 0.82; one instance under Erlang-4 against Poisson arrivals 0.67 at 85 %), and the
load-aware routers' cut of round robin's wait is too: least_loaded's, sglang's, dynamo's,
llm-d's and mooncake's means are 0.28, 0.25, 0.25, 0.25, 0.25 of round robin's in the closed
form, 0.30, 0.26, 0.19, 0.20, 0.18 in the simulator, so each inherits round robin's -0.45 less
what its cut differs by. The misses are strict xfails with the error measured when the file
was last run, so that a change in the instance's law shows here. Stop 22 moved them twice:
the classes' KV read (tests/instance/test_slot_seen_context.py) and bounded affinity's steering
share gave round robin -0.47 / -0.47, random -0.37 / -0.24, least_loaded -0.45 / -0.46,
prefix_affinity_bounded -0.40 / -0.32 (-0.14 / +0.85 unsteered), dynamo -0.25 / -0.24, llmd
-0.29 / -0.29, sglang -0.39 / -0.49, mooncake -0.18 / -0.27; then the slot wait of a full pool
drained by independent holds (tests/instance/test_slot_drain.py) gave round robin -0.13 / +0.25,
random -0.01 / +0.51, least_loaded -0.45 / -0.44, prefix_affinity_bounded -0.40 / -0.30,
dynamo -0.24 / -0.23, llmd -0.28 / -0.28, sglang -0.39 / -0.48, mooncake -0.17 / -0.26
(benchmarks/router_referee.py --load 0.85 --seeds 4; round robin is judged over 6 seeds here,
its mean's per-seed spread being 23 %). The load-aware routers moved by at most 0.02 with
the slot wait: their steer of 1 took back every slow swing and every arrival to a full pool.
Stop 23 made the steer partial (kvmodel.instance._openloop.pooled_steer): a router balancing n
pools keeps 1/n of the swings (the cluster's own), and a full pool's arrivals go elsewhere only
where another pool has room, 1 - P(S/n >= cap)/P(X >= cap), which falls towards 0 as every pool
fills: least_loaded -0.33 / +0.10 (its p99 passes), prefix_affinity_bounded -0.31 / +0.14,
dynamo -0.21 / -0.05, llmd -0.25 / -0.13, sglang -0.36 / -0.40, mooncake -0.14 / -0.12; round
robin -0.13 / +0.25 and random -0.01 / +0.51 as they were (their steer is 0; round robin's mean
is -0.17 over the 6 seeds this file pools). The slot wait moves the p99 far more than the mean
(least_loaded with a full pool's arrivals all kept, steer 0 at the drain: +1.78 / +7.7): what
is left of the means is the probability of waiting (many short waits in the simulator, a few
long ones in the closed form's slot law; tests/instance/test_slot_drain.py), not the steer.
Merged with the same stop's running-step residual of long prompts (kvmodel.instance._openloop.
chunk_residual) and the prefill carry wait's continuous probability (tests/instance/
test_carry_wait_law.py): round robin -0.13 / +0.26, random -0.01 / +0.52, least_loaded -0.32 /
+0.09, prefix_affinity_bounded -0.31 / +0.13, dynamo -0.17 / -0.06 (its mean passes), llmd
-0.22 / -0.09, sglang -0.38 / -0.44, mooncake -0.12 / -0.11: 10 of the 16 cells inside.
Stop 24 gave the classes their own output lengths (slot holds +5 %, which the old slot law
turned into round robin +1.59 / +2.69, random +1.85 / +2.58 over 2 seeds) and replaced the slot
law of classes (kvmodel.instance._openloop._slot_head: the free occupancy's mass above the
head's room plus a reflected queue drained at a full pool's rate, zero at the pool's edge;
tests/instance/test_slot_drain.py): round robin -0.11 / -0.05, random -0.15 / -0.08,
least_loaded -0.13 / +0.26, prefix_affinity_bounded -0.15 / +0.16, dynamo +0.01 / +0.20, llmd
-0.07 / +0.08, sglang -0.15 / -0.16, mooncake +0.11 / +0.16: all 16 finite cells inside
(4 seeds; the rate is 85 % of a closed-form saturation 1.4 % lower, the pool's edge now at
its head's room). Merged with the mixed-batch saturation (sat: lam_sat 3.5 % lower, so the
referee's rate too), the TPOT mixture and the routed percentiles from the instance's own TTFT
mixture (stop 24's main, 8297f1a, `python benchmarks/router_referee.py --load 0.85 --seeds 4`):
round robin -0.12 / -0.07, random -0.16 / -0.08, least_loaded -0.24 / +0.17,
prefix_affinity_bounded -0.24 / +0.19, dynamo +0.02 / +0.20, llmd -0.05 / +0.09, sglang
-0.25 / -0.27, mooncake +0.12 / +0.17: 13 of 16 finite cells inside; the three load-aware
means (-0.24, -0.24, -0.25) are strict xfails again. sglang's p99 spreads 0.49 per seed, too
wide to judge over 4 seeds (0.24 > half the 35 % bar): it takes 8 (sd 0.39, mean -0.22,
p99 -0.22). Those three moved with the closed form's lam_sat, not its wait: at one fixed
rate (4.777/s) the instances' waits moved < 1 % from the slot branch to sat's merge, but
the routed law read the whole wait at lam/lam_sat (0.79 ->
0.85 for least_loaded's busiest instance), and the count law keeps the residual share 1 - rho
of it (least_loaded's routed wait 0.394 -> 0.289 s, mean -10.8 %). Most of that wait is the
prefill carry wait, whose token server is only ~0.5 busy at 85 % of lam_sat (the KV pool
saturates first). Read each wait at its own server's utilisation (kvmodel.cluster.
_routing_queue.routed_law, ``parts``; tests/cluster/test_routed_parts.py), same rate, same
simulator figures: round robin -0.12 / -0.07, random -0.16 / -0.08, least_loaded -0.01 /
+0.22, prefix_affinity_bounded -0.03 / +0.19, dynamo -0.07 / +0.17, llmd -0.06 / +0.08,
sglang -0.21 / -0.26 (over 8 seeds -0.19 / -0.21), mooncake +0.07 / +0.16: all 16 finite
cells inside (50 %, one seed:
least_loaded +0.05 -> +0.14, prefix_affinity_bounded +0.05 -> +0.14, sglang +0.09 -> +0.10,
mooncake +0.16 -> +0.16, dynamo +0.06 -> +0.04, llmd +0.05 -> +0.05).

Stop 25 (the router-dependent TPOT law, kvmodel.instance._tpot_law.router_terms, and the
routed percentiles near saturation, kvmodel.cluster._routing_queue, *Near saturation*;
`python benchmarks/router_referee.py --load 0.85 --seeds 4`): round robin -0.15 / -0.10,
random -0.17 / -0.08, least_loaded -0.01 / +0.05, prefix_affinity_bounded -0.03 / +0.19,
dynamo -0.08 / +0.07, llmd -0.09 / -0.03, mooncake +0.05 / +0.05; sglang over its 8 seeds
-0.23 / -0.37 (strict xfails). sglang's closed form barely moved (mean 0.772 -> 0.768 s;
p99 6.98 -> 6.48 s, the routed percentile now falling with the routed mean near saturation):
the referee's rate did. Round robin's closed-form saturation rose 0.7 % with the TPOT law
(less prefill left behind a first token under evenly spaced arrivals), so the cells run at
4.812/s, not 4.777/s, and the simulator's sglang mean there is 0.994 s (about 0.95 s at
4.777/s): sglang's cell sits near its simulated edge, where the closed form's routed wait
(the work-signal router taken as a near-perfect shortest-work choice) is too short. Read
sglang's smallest tree as balancing the work sent, not the work left (its tree-decided
share's wait blends the choice law with the heavy-traffic factor of its smoothed work
arrivals, kvmodel.cluster._routing_queue, *Work sent*): sglang -0.15 / -0.34 over 8 seeds,
inside again; no other router moves."""

import pytest

import kvmodel
from kvmodel.policies import ROUTING
from tests.policies.test_routing_vs_sim import (
    HIT_TOL,
    MEAN_TOL,
    P99_TOL,
    cells,
    cluster,
    make_setting,
    pair,
)

pytestmark = pytest.mark.slow

LOAD = 0.85
# Every router refereed over K seeds (arrival and router seed s = 0 .. K - 1, TTFTs pooled);
# prefix_affinity over one (unstable in both models). A cell is judged only where the
# simulator's own spread is well inside the bar: the per-seed spread over sqrt(K) at most
# SPREAD_SHARE of it (test_the_simulator_spread_is_inside_the_bar).
K, SPREAD_SHARE = 4, 0.5
_SEEDS = {"prefix_affinity": 1, "round_robin": 6,  # round robin's mean spreads 23 % per seed
          "sglang": 8}  # its p99 spreads 39-49 % per seed: 8 seeds judge it, 4 cannot
# router -> (mean, p99) measured closed / sim - 1 at LOAD, stationary referee, K seeds pooled
_MEASURED = {"round_robin": (None, None), "random": (None, None),
             "least_loaded": (None, None), "prefix_affinity": (float("inf"), float("inf")),
             "prefix_affinity_bounded": (None, None), "dynamo": (None, None),
             "llmd": (None, None), "sglang": (None, None), "mooncake": (None, None)}
MISSES = {(r, m): v[i] for r, v in _MEASURED.items() for i, m in enumerate(("mean", "p99"))
          if v[i] is not None}


@pytest.fixture(scope="module")
def setting():
    return make_setting(LOAD)


_cache: dict = {}


def _pair(setting, routing: str):
    return pair(setting, routing, _cache, _SEEDS.get(routing, K))




@pytest.mark.parametrize("routing", list(ROUTING))
def test_hit_ratio_matches_the_simulator_near_saturation(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(sum(x.hit_ratio.values()) - s.hit_ratio) <= HIT_TOL


@pytest.mark.parametrize("routing", cells(MISSES, "mean"))
def test_mean_ttft_matches_the_simulator_near_saturation(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(x.ttft_s / s.ttft_mean_s - 1) <= MEAN_TOL, (x.ttft_s, s.ttft_mean_s)


@pytest.mark.parametrize("routing", cells(MISSES, "p99"))
def test_p99_ttft_matches_the_simulator_near_saturation(setting, routing):
    x, s = _pair(setting, routing)
    assert abs(x.ttft_p99_s / s.ttft_p99_s - 1) <= P99_TOL, (x.ttft_p99_s, s.ttft_p99_s)


@pytest.mark.parametrize("routing", [r for r in ROUTING if r != "prefix_affinity"])
def test_the_simulator_spread_is_inside_the_bar(setting, routing):
    """The pooled simulator figures a passing cell is judged by are known to well inside the
    bar: the standard error over its seeds is at most SPREAD_SHARE of it."""
    _, s = _pair(setting, routing)
    judged = [(sp, tol) for m, sp, tol in (("mean", s.mean_spread, MEAN_TOL),
                                           ("p99", s.p99_spread, P99_TOL))
              if (routing, m) not in MISSES]
    for sp, tol in judged:
        assert sp / _SEEDS.get(routing, K) ** 0.5 <= SPREAD_SHARE * tol, (sp, tol)


def test_the_closed_form_mean_rises_from_half_load(setting):
    """Every stable router's closed-form mean TTFT at LOAD is above its mean at 50 % (the
    rate of test_routing_vs_sim.py): a higher rate never gives a shorter mean."""
    w = setting[0]
    for r in ROUTING:
        hi = kvmodel.evaluate(cluster(r), w)
        lo = kvmodel.evaluate(cluster(r), w.with_rate(w.rate * 0.5 / LOAD))
        if hi.stable:
            assert hi.ttft_s > lo.ttft_s, r
