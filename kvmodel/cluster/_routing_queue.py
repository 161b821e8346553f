"""Queue term of the load-aware routers: the wait law of an instance behind a router that
looks at the load (least_loaded, dynamo, llmd, sglang, mooncake).

The instance model (:mod:`kvmodel.instance._queueing`) gives the wait of one instance fed by
its share of the arrivals as if that share were split off at random: 0 with probability
``1 − p``, else exponential with mean ``W/p`` (p the utilisation for M/M/1). A router that
sends a request to the shortest of ``d`` queues cuts the tail of that wait, not the mean load
(join-the-shortest-queue; the load-share is the replay's, :mod:`kvmodel.cluster._routing_load`).

**Choice count.** Each request's ``d`` comes from its rule replayed over the trace
(:mod:`kvmodel.workload._routing_closed`, ``RoutingPolicy.load_choices``): the instances whose
load-free cost (cache term) is within the reach of the rule's load term at that moment --
least_loaded: all N; sglang: N when imbalanced, the instances tied at the longest prefix when
it passes ``cache_threshold``, else 1 (the smallest tree is cumulative, not current, load);
llm-d: prefix score within ``queue_weight`` (min-max normalised queue scorer) plus the
kv-utilisation scorer's fluctuation; dynamo / mooncake: overlap cost (blocks) / uncached
prefill (tokens) within the Poisson fluctuation of the load signal (``sqrt(2·m·x)``, m the mean
signal per instance, x per request). Prefix affinity thus restricts the choice request by
request: a follow-up turn whose prefix lives on one instance has d = 1. The replay gives the
share ``π_d`` of requests with d choices.

**Mixed supermarket model.** Vvedenskaya, Dobrushin and Karpelevich (Problems of Information
Transmission 32(1), 1996) and Mitzenmacher ("The Power of Two Choices in Randomized Load
Balancing", IEEE TPDS 12(10), 2001, Sec. 3, Theorem 3 and Sec. 3.3): N → ∞ exponential
servers, Poisson arrivals at rate ρ per server, each arrival joins the shortest of d queues
sampled at random. The fraction of queues with at least k requests, s_k, obeys
``ds_k/dt = ρ(s_{k−1}^d − s_k^d) − (s_k − s_{k+1})``; at the fixed point
``s_k = ρ^((d^k − 1)/(d − 1))`` and the mean time in system is ``Σ_{k≥1} s_k^d`` service
times. With a share ``π_d`` of arrivals sampling d queues the same balance gives
``s_k = ρ · Σ_d π_d s_{k−1}^d`` (s_0 = 1, s_1 = ρ); an arrival with d choices finds at least k
ahead with probability ``s_k^d``, so it waits with ``P = Σ_d π_d s_1^d`` and its mean wait (a
queue's residual work is exponential) is ``W = Σ_{k≥1} Σ_d π_d s_k^d`` service times.
π_1 = 1 gives M/M/1: P = ρ, W = ρ/(1 − ρ). N is finite: no routing beats one central
queue, so P and W are floored at M/M/N's (Erlang C, ``C/(N(1 − ρ))``; JSQ over all N
approaches it, Gupta et al., "Analysis of join-the-shortest-queue routing for web server
farms", Performance Evaluation 64, 2007, Sec. 4).

**Count or work.** A rule whose load term weighs the prompt work left (dynamo's prefill
blocks, mooncake's queued prefill tokens, both counting the prompt in service) sees whether
an instance is busy: with d = N that is least-work-left routing, a central FCFS queue (M/G/N)
exactly, whose ratio to M/G/1 is M/M's (Allen–Cunneen: both scale by (1 + c_s²)/2), so the
M/M ratios above apply to the instance's M/G law. A rule that counts requests (least_loaded's
active requests, sglang's when imbalanced) does not see the prompt in service
among ~tens of decoding sequences: it picks by the requests waiting behind it. An arrival
then finds the prompt in service as often as without the router (P = ρ) and waits its
length-biased residual ``r·E[S]``, ``r = (1 + c_s²)/2``, plus the work of the k − 1 ≥ 1
waiting ones, which the choice does cut. In the instance's M/G/1 law (Pollaczek–Khinchine,
``W = r·ρ·E[S]/(1 − ρ)``) the residual is the share ``1 − ρ`` of the wait and the queued
work the share ρ (E[L_q]·E[S] = ρ·W), both scaling with r; the choice cuts the queued share
as it cuts M/M/1's queue, ``ρ²/(1 − ρ)`` to ``Σ_{k≥2} a_k``: ``W'/W = (ρ + Σ_{k≥2} a_k)·(1 −
ρ)/ρ``, whatever c_s (the earlier reading, ``(r·ρ + Σ a_k)/(r·ρ + ρ²/(1 − ρ))``, scaled the
residual by r but not the queue; with the service SCV counted in seconds, 3.6 on Mooncake,
it kept 0.71 of least_loaded's wait where this keeps 0.65).
A rule whose signal counts requests weighted by their tokens is a work signal in this
sense: llm-d's kv-utilisation scorer (reserved KV tokens) and sglang's smallest tree
(cumulative routed prompt blocks: the instance that took a long prompt takes no more until
the others have taken as much) both see a long prompt in service.

**Applied to the instance's law.** With ρ read as the instance's P(wait) (its utilisation
for M/M/1) the routed law scales the instance's: ``W' = W · W_route/W_MM1`` and
``p' = p · P_route/ρ``, exactly the instance's law when every d is 1. The TTFT percentiles
move by the change of the wait's part in the mixture of hit-and-length classes
(:func:`kvmodel.instance._mixture.mixture_quantile` of the old and new law over the
instance's own class offsets and step spread, ``Estimate.ttft_mixture``, so the old law's
quantiles are the instance's percentiles exactly, :func:`routed_percentiles`); the mean TTFT
by ``W' − W``. (The earlier reading, each class's service as ``b_q`` x its uncached tokens
with ``b_q`` fitted per quantile to the instance's percentile, is kept where the instance
gives no mixture: that fit mixes wait and service, so the no-wait service it implied for the
p99 length band moved with the wait, and where the routed wait is small the p99 lands on that
band's no-wait atom: sglang's p99 rose 3.588 -> 3.715 s from 0 to 100 GB of DRAM on
studies/dram_for_slo.py's cluster at 1.6 requests/s per instance while its decisions, which
read the router's never-evicting tree, do not see the DRAM; 3.635 -> 3.613 s now.)
The factors are tabulated once per choice mix
over ρ and interpolated. A percentile falls by at most a waiting request's mean
cut ``(W − W')/p``, under either signal: with prompt service this variable (SCV 3.6 in
seconds) the wait's tail is the residual of a long prompt in service, subexponential
(Embrechts and Veraverbeke, Insurance: Mathematics and Economics 1, 1982: the M/G/1 wait
exceeds x about as often as ``ρ/(1 − ρ)`` residuals do), a length the router does not
shorten: a request that still waits still waits behind one, so the router removes the work
queued ahead on average, not a proportional part of the tail as the exponential law's
quantiles would (simulator, 4 x 8B, Mooncake at 50 %: least_loaded's p99 is 0.92 x round
robin's while its mean is 0.81 x; dynamo's, llm-d's, mooncake's p99 fell 28-30 % below the
simulator's with the exponential cut and lie within 4 % with the bound).

**Near saturation.** The bound is the one-big-jump regime of a light or moderate load: the
wait is the residual of one long prompt. Near saturation the wait of a request that finds
work queued behind the prompt in service is a long sum of such works, close to exponential
(Kingman's heavy-traffic law), and the routed wait (M/G/N-like for d = N) is too, with its
smaller mean: its tail falls with its mean, not by the mean cut. Each percentile therefore
moves by ``(1 − u²)·max(s, cut) + u²·s`` (:func:`_count_bound`; s the routed law's own
quantile shift, cut the bound, u the utilisation of the server holding the wait, the
prefill token server's where the instance gives its parts; u² is M/M/1's probability that
an arrival finds work queued behind the one in service): the bound at light load, the
routed law's quantiles as u -> 1. With the bound alone the p99 rose to 14-18 x the mean near
saturation: the router study's cells (tests/cluster/test_router_edge_cells.py, 70B fp8 TP8,
256 GB DRAM, stationary referee, 4 seeds) dynamo on 8 at 85 % of the cell's saturation
p99 19.80 s against the simulator's 7.49 (+1.64), sglang on 4 at 95 % 18.86 against 7.91
(+1.38); with the blend 7.45 (-0.01) and 9.36 (+0.18), sglang at 70 / 85 / 90 %
-0.18 / -0.11 / -0.09, dynamo at 70 % +0.18 (bound alone: +0.51). The 4 x 8B referee
(benchmarks/router_referee.py) at 85 %: least_loaded p99 +0.22 -> +0.06, dynamo +0.17 ->
+0.10, llmd +0.08 -> +0.02, sglang -0.21 -> -0.30, mooncake +0.16 -> +0.10; at 50 %
dynamo -0.04 -> -0.06, least_loaded -0.08 -> -0.09, the others unmoved. The weight u
(the share of the waiting requests that find queued work, and the queued share of the
Pollaczek-Khinchine mean) was measured too: the cells -0.19 / +0.00 (sglang at 70-90 %
-0.20 to -0.21), the 85 % referee's sglang p99 -0.35, at the bar.

**Which ρ.** The factors are read at the instance's utilisation ``ρ = λ/λ_sat`` (its request
rate over its saturation rate, ``util`` in the cluster's instance figures,
:func:`utilisation`). For the M/G/1 prefill wait alone P(wait) is ρ (PASTA), which is how the
law was first read; the instance's P(wait) is, however, the moment match of the prefill and
KV-slot waits (:func:`kvmodel.instance._queueing.sum_wait_law`, ``p = 2W²/E[W²]``), which is
not ρ and not monotone in the rate: 8 x 70B fp8 TP8, Mooncake, bounded prefix affinity at
0.50 / 0.70 / 0.85 / 0.95 of its saturation gives P(wait) 0.46 / 0.65 / 1.00 / 0.90. The
count law keeps the residual share ``1 − ρ`` of the wait, so reading ρ = 1.00 there cut the
2.0 s wait to 0.9 ms and the mean TTFT fell from 0.87 s at 0.70 to 0.55 s at 0.85 (the
simulator: 1.61 s); read at ρ = 0.85 the mean is 0.91 s, and it rises with the rate.
λ/λ_sat is, however, the utilisation of the KV-slot pool, the server that saturates at
λ_sat, not of the prefill token server, whose carry wait is the other part of the sum and
whose P(wait) is its own ``λ·new/μ`` (:mod:`kvmodel.instance._openloop`, *Prefill queue*).
Where the pool saturates first the two differ: 4 x 8B, Mooncake, least_loaded's busiest
instance at 85 % of the cluster's saturation has λ/λ_sat 0.85 and a token server 0.53 busy,
and reading the whole 1.85 s wait (0.86 s of it prefill) at 0.85 kept 0.16 of it, so the
routed mean moved with λ_sat at a fixed rate (a 7 % lower λ_sat, the mixed-batch
saturation, cut it 11 %). The instance's parts (``parts`` of the instance figures: prefill
wait, its probability, its server's utilisation, the slot wait's probability) are therefore
routed each at its own server's utilisation and summed as the instance sums them
(:func:`routed_law`): against the simulator at 85 % least_loaded's mean -0.24 -> -0.01,
bounded affinity's -0.24 -> -0.03 (the work signal's: dynamo +0.01 -> -0.07, mooncake
+0.12 -> +0.07, sglang -0.25 -> -0.21), at 50 % least_loaded's +0.05 -> +0.14.

**Arrival smoothing.** Besides reacting to the queues, a rule that balances what it has
routed (sglang's smallest tree, the requests in flight) makes each instance's arrivals of
prompt work less variable than a random split's: the instance law is computed with the
inter-arrival SCV ``ca2`` its replay measures
(:func:`kvmodel.workload._routing_closed.routed_work_dispersion`,
:func:`kvmodel.cluster._routing_load.routed_arrival_scv`), and the factors above apply to
that law.

**Work sent.** sglang's smallest tree counts the prompt blocks routed so far, so it evens
out the work *sent* (a work round robin), not the work *left*: it never sees that an instance
is slow to clear its queue. In the simulator (4 x 8B, Mooncake, the 85 % referee, seed 0;
no request took the imbalanced branch at 50 or 85 %) the instances' cumulative routed
uncached work stays within 4-12 mean prompts of each other (dynamo's, a least-work-left
rule: 41-89), while an instance's queued-work excess over the others' mean, seen at each
decision, correlates 0.94 / 0.70 / 0.53 / 0.01 with itself 1 / 10 / 100 / 1000 decisions
later (dynamo: 0.86 / 0.26 / 0.03 / 0.01); the tree's pick is the instance with the least
queued work for 79 % of the requests it decides (a random pick: 50 %), 91 % at 50 % (70 %).
Each instance is then a work queue of its own whose arrivals are smoothed, not a share of a
central queue: near saturation its mean wait is its work arrivals' index of dispersion
over twice the spare capacity (Kingman), the random split's times the replay's dispersion
ratio (:func:`kvmodel.cluster._routing_load.routed_work_spread`, 0.63 of the instance law
on the referee), while at light load the tree still steers away from the long prompt just
sent, which the choice law above counts. The tree-decided share ``τ`` (the replay's d = N
share) takes the blend :func:`tree_factor`, ``(1 − τρ²)·fw + τρ²·spread``, ρ² as in
:func:`_count_bound`; the prefix-matched share goes where its prefix is (its d). The 85 %
referee over 8 seeds: sglang mean / p99 -0.23 / -0.37 -> -0.15 / -0.34; at 50 % (one
seed) +0.11 / -0.00 -> +0.12 / +0.01; the other routers do not move. The router study's
cell (tests/cluster/test_router_edge_cells.py, sglang on 4 x 70B fp8 TP8 at 95 %, 4 seeds):
-0.29 / +0.18 -> -0.07 / +0.27.

**Bounded prefix affinity.** ``prefix_affinity_bounded`` sends a request to the instance with
the longest cached prefix among those whose routed count stays within ``ceil((1 +
epsilon)(k + 1)/N)``, ties to the fewest active requests
(:class:`kvmodel.policies.routing.PrefixAffinityBounded`): a request whose longest prefix is
cached on d eligible instances joins the shortest of those d queues, a request count, so its
wait law is the count signal's above with the choice mix ``π_d`` of the rule replayed over
the trace with each instance's cache (:func:`bounded_choice_mix`; ties there to the fewest
routed, as :func:`kvmodel.workload._reuse_analytic.assignment`; replayed at ``2^j − 1``
blocks per instance, the law blended in ``log2(1 + cap)``, :func:`bounded_affinity_waits`).
A prefix every instance holds (a shared system prompt) ties all N; a follow-up turn whose own
prefix survives in one cache has d = 1. The finite cache matters: on the Mooncake
conversation trace at 953 blocks per instance 6.0 % of requests have d = 1 (the simulator's
views: 5.7 %), with caches that never evict 38.8 %. The bound is on the cumulative routed
count, whose allowed spread grows as ``epsilon·k/N``: with an even demand it stops binding
after the first requests (there it excluded the affinity instance for 0.02 % of requests,
each instance's inter-arrival SCV stayed 0.94-0.99, and the simulator's mean TTFT moved
from 0.688 to 0.709 s with epsilon 0.25 -> 0.02), so the instance's arrivals are kept
Poisson and the bound acts through the eligible set, which the replay counts. A persistently
skewed demand pins the busiest instance at the bound (imbalance 1 + epsilon, from the
assignment) and smooths its arrivals; that smoothing is not modelled. Only the mean TTFT
moves (by ``W' − W``); the percentiles keep the instance's law: the class mixture's quantile
shift (:func:`routed_percentiles`) drops to 0 where the q-quantile lands on a long class's
no-wait atom, and as more DRAM lets more follow-ups keep their prefix (d = 1) the shrinking
cut then outweighs the hits (8 x 70B fp8, Mooncake at 1.3 req/s per instance, epsilon 0.1:
the p99 rose 4.8 % from 169 to 288 GB of DRAM; the simulator's fell 2.2 %, 5.42 -> 5.30 s);
on the conformance setting the p99 is -0.04 against the simulator without the shift, -0.09
with it.

**Steering.** The KV-slot occupancy swings of an instance (requests held longer in a fuller
pool, :func:`kvmodel.instance._openloop.slot_moments`) raise its active count; a request
whose choice reads that count goes elsewhere until the loads even out. Under bounded
affinity two kinds of request read it: the tied ones (d >= 2, to the fewest active of the
tied) and those whose eligible set the bound decided (d = 1 only because the bound excluded
an instance with a longer cached prefix, or one tied with it: without the bound they would
have gone elsewhere or tied). The rest follow their prefix whatever the load. The share of
the two kinds, counted in the same replay as the choice mix (:func:`bounded_steer_share`,
blended in ``log2(1 + cap)`` as the law), is the steering share
(:func:`kvmodel.cluster._routing_load.routed_slot_steer`; least_loaded 1, round robin 0).
4 x 8B, Mooncake, 953 blocks per instance: 0.94 (the ties; the bound decided 5 of the
12,031 requests).
Against the simulator (tests/policies/test_routing_vs_sim*.py) mean / p99 TTFT went from
+0.02 / -0.03 to +0.01 / -0.03 at 50 % and from -0.25 / +0.64 to -0.51 / -0.48 at 85 %
(the +0.64 was the unsteered slot law's head-of-line tail, not the ties'; at 85 % every
steered router is 49-71 % low there: the trace's drift and the simulator's own saturation).
A tie tail (the percentiles of a two-law mixture, the tied share's routed wait beside the
instance law of the share that follows its prefix) was built and measured (stop 23, with the
pooled steer of :func:`kvmodel.instance._openloop.pooled_steer`): p99 +0.14 -> -0.09 at 85 %
but -0.02 -> -0.10 at 50 % (its class no-wait atoms make the shift jump over the rate), no
nearer overall, so it was removed.
"""

from __future__ import annotations

import math
import operator
from collections import OrderedDict
from typing import Any

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.catalog.hardware import current
from kvmodel.instance._mixture import (
    mixture_quantiles,
    scalar_quantiles,
    sorted_classes,
    sorted_quantile,
)
from kvmodel.instance._queueing import erlang_c, sum_wait_law
from kvmodel.workload._reuse_analytic import assignment, fewest_routed, narrowed, prefix_chains

__all__ = ["wait_factors", "tree_factor", "routed_law", "utilisation", "routed_percentiles",
           "bounded_choice_mix", "bounded_affinity_waits"]

_RHO = np.concatenate([np.linspace(0.0, 0.9, 181)[:-1], 1.0 - np.geomspace(0.1, 1e-4, 160)])
_TOP = float(_RHO[-1])
_TABLES: dict = {}


def _supermarket(mix: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P(wait), mean wait in service times) of the mixed supermarket fixed point at each ρ
    (module docstring): ``a_1`` and ``Σ_{k≥1} a_k``, ``a_k = Σ_d π_d s_k^d``. Once the
    terms with d ≥ 2 are negligible (1e-9 of ``a_k``) the recursion is linear,
    ``a_{k+1} = ρ·π_1·a_k``, and the rest closes as its geometric series."""
    d = np.arange(1, len(mix) + 1, dtype=float)
    s = rho.copy()
    a1 = (mix * s[:, None] ** d).sum(1)
    total, ahead = a1.copy(), a1
    while np.any(ahead - mix[0] * s > 1e-9 * ahead) and s.max() > 1e-12:
        s = rho * ahead
        ahead = (mix * s[:, None] ** d).sum(1)
        total += ahead
    r = rho * mix[0]
    return a1, total + ahead * r / np.maximum(1.0 - r, 1e-12)


def wait_factors(mix: Any, rho: Any, residual: float | None = None) -> tuple[Any, Any]:
    """(W_route / W_1, P_route / ρ) for the choice mix ``mix`` (share of requests with
    d = 1 ... N choices, summing to 1) at utilisation ``rho`` (scalar or array, in [0, 1)):
    a work signal (``residual`` None), or a count signal whose job in service has a
    residual of ``residual`` service times (a number > 0; it cancels in the count law,
    module docstring)."""
    key = (mix if isinstance(mix, tuple) else tuple(np.asarray(mix, dtype=float).ravel()),
           residual)
    if key not in _TABLES:
        _TABLES[key] = _build(np.asarray(mix, dtype=float), residual)
    fw, fp = _TABLES[key]
    if xp.is_array(rho):
        r = np.clip(np.asarray(rho, dtype=float), 0.0, _RHO[-1])
    else:  # a number: clipped as np.clip does (NaN kept), without its array overhead
        r = min(max(float(rho), 0.0), _TOP)
    a, b = np.interp(r, _RHO, fw), np.interp(r, _RHO, fp)
    return (float(a), float(b)) if a.ndim == 0 else (a, b)


def _build(mix: np.ndarray, residual: float | None) -> tuple[np.ndarray, np.ndarray]:
    if mix.ndim != 1 or not len(mix) or np.any(mix < 0) or not np.isclose(mix.sum(), 1.0):
        raise ValueError(f"mix={mix!r}: must be shares of d = 1 ... N summing to 1")
    if residual is None:
        return _table(mix)
    if isinstance(residual, bool) or not (isinstance(residual, (int, float)) and residual > 0):
        raise ValueError(f"residual={residual!r}: must be None or a number > 0")
    return _count_table(mix)


def _table(mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Work signal: P = a_1, W = Σ a_k, floored at M/M/N's; ratios to M/M/1."""
    n, rho = len(mix), _RHO
    p, w = _supermarket(mix, rho)
    c = np.asarray(erlang_c(n, n * rho), dtype=float)
    p, w = np.maximum(p, c), np.maximum(w, c / (n * (1.0 - rho)))
    safe = np.maximum(rho, 1e-300)
    fw = np.where(rho > 0, w * (1.0 - rho) / safe, 1.0)
    fp = np.where(rho > 0, p / safe, 1.0)
    return np.minimum(fw, 1.0), np.minimum(fp, 1.0)


def _count_table(mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Count signal: P = ρ, ``W'/W = (ρ + Σ_{k≥2} a_k)·(1 − ρ)/ρ``: the M/G/1 wait's residual
    share 1 − ρ kept, its queued share ρ cut as M/M/1's queue (module docstring; the
    residual's length r scales both shares alike and cancels)."""
    rho = _RHO
    a1, w = _supermarket(mix, rho)
    one = rho + rho * rho / (1.0 - rho)
    fw = np.where(rho > 0, (rho + w - a1) / np.maximum(one, 1e-300), 1.0)
    return np.minimum(fw, 1.0), np.ones_like(rho)


def tree_factor(fw: Any, rho: Any, tree: float, spread: Any) -> Any:
    """Wait factor (routed / instance mean wait) of a rule that balances the work it has sent
    (sglang's smallest tree) for the share ``tree`` of requests it decides
    (module docstring, *Work sent*): ``(1 − tree·ρ²)·fw + tree·ρ²·spread``, ``fw`` the
    choice law's factor (:func:`wait_factors`, what the rule's choice cuts at light load),
    ``spread`` the heavy-traffic factor of its smoothed work arrivals
    (:func:`kvmodel.cluster._routing_load.routed_work_spread`), ρ² M/M/1's probability that
    an arrival finds work queued behind the one in service. ``tree`` 0 is the choice law."""
    for name, v in (("tree", tree), ("spread", spread)):
        a = np.asarray(v)
        if a.dtype.kind not in "iuf" or not np.all((a >= 0.0) & (a <= 1.0)):
            raise ValueError(f"{name}={v!r}: must be numbers in [0, 1]")
    q = tree * xp.minimum(xp.maximum(rho, 0.0), 1.0) ** 2
    return (1.0 - q) * fw + q * spread


def routed_law(mix: Any, wait: Any, p_wait: Any, residual: float | None = None,
               rho: Any = None, parts: Any = None, tree: tuple | None = None) -> tuple:
    """The instance's wait law (mean ``wait``, probability ``p_wait``) behind the router:
    ``(W', p')`` (module docstring; ``residual`` as :func:`wait_factors`'), the factors read
    at the instance's utilisation ``rho`` (None: at ``p_wait``, which is ρ for the M/G/1
    prefill wait alone; module docstring, *Which ρ*); infinite waits stay infinite.
    ``parts`` (the open loop's ``(w_pf, p_pf, rho_pf, p_slot)``, the instance figures'
    ``parts``): the prefill carry wait read at its token server's utilisation ``rho_pf``,
    the KV-slot wait (the rest of ``wait``) at ``rho``, the two routed laws summed as the
    instance sums them (:func:`kvmodel.instance._queueing.sum_wait_law`). ``tree``
    (``(share, spread)``, a rule that balances the work sent): the mean wait's factor is
    :func:`tree_factor`'s."""
    if parts is not None:
        w_pf, p_pf, rho_pf, p_slot = parts
        w1, p1 = routed_law(mix, w_pf, p_pf, residual, rho_pf, tree=tree)
        w2, p2 = routed_law(mix, xp.maximum(wait - w_pf, 0.0), p_slot, residual, rho, tree=tree)
        return sum_wait_law(w1, p1, w2, p2)
    p = xp.minimum(xp.maximum(p_wait, 0.0), 1.0)
    r = p if rho is None else xp.minimum(xp.maximum(rho, 0.0), 1.0)
    fw, fp = wait_factors(mix, r, residual)
    if tree is not None:
        fw = tree_factor(fw, r, *tree)
    return wait * fw, xp.minimum(p * fp, 1.0)


def utilisation(m: dict) -> Any:
    """The ρ the routed law reads for the instance figures ``m``: their utilisation
    (``util``, request rate over saturation rate) where the cluster gives it, else P(wait)
    (module docstring, *Which ρ*)."""
    u = m.get("util")
    return m["pwait"] if u is None else u


def routed_percentiles(m: dict, wait2: Any, p2: Any, classes: list,
                       count: bool = False) -> dict:
    """``m`` (the cluster's instance figures: ttft, ttft50/90/99, wait, pwait) with the wait
    law replaced by ``(wait2, p2)``: the mean moves by the change of the mean wait, each
    percentile by the change of the wait's part in the class mixture (``classes``:
    (probability, cached tokens, tier, prompt tokens) rows). Each class's own service is read
    as ``b_q`` x its uncached tokens, ``b_q`` scaled so that the old law's q-quantile of that
    mixture is the instance's (one secant step from the mean's ``b``). The three quantiles
    share each pass over the classes; each quantile's sort of the offsets serves both laws.
    A percentile falls by at most a waiting request's mean cut ``(W − W')/p`` at light load
    and by the routed law's own shift near saturation (:func:`_count_bound`, weighted by
    :func:`_queued_share`), under a count or a work signal alike (module docstring); ``count``
    (the caller's signal) no longer changes the result."""
    W, p = m["wait"], m["pwait"]
    live = np.isfinite(W) & (W > 0) if xp.is_array(W) else bool(np.isfinite(W) and W > 0)
    if not xp.any_true(live):
        return m
    if m.get("mixture"):
        return _mixture_shifted(m, live, wait2, p2)
    probs = [c[0] for c in classes]
    new = [L - cached for _, cached, _, L in classes]
    if _floats(new):  # xp.maximum's numbers, inline
        new = [x if x >= 1.0 else 1.0 for x in new]
    else:
        new = [xp.maximum(x, 1.0) for x in new]
    mean_new = sum(pi * x for pi, x in zip(probs, new))
    b = xp.maximum(m["ttft"] - W, 0.0) / mean_new
    Ws, ps, W2s = (xp.where(live, v, 0.0) for v in (W, p, wait2))
    p_old, p_new = xp.where(live, ps, 1.0), xp.where(live, p2, 1.0)
    out = dict(m, wait=xp.where(live, wait2, W), pwait=xp.where(live, p2, p),
               ttft=m["ttft"] + xp.where(live, W2s - Ws, 0.0))
    laws = ((Ws, _clipped(p_old)), (W2s, _clipped(p_new)))
    vals = [Ws, W2s, p_old, p_new, b, *probs, *new, *(m[k] for k, _ in _KEYS)]
    arrays = not _floats(vals) and xp.is_array(*vals)
    shifts = (_array_shifts if arrays else _scalar_shifts)(m, live, laws, probs, new, b)
    shifts = _count_bound(shifts, Ws, W2s, p_old, _queued_share(m))
    for (key, _), shift in zip(_KEYS, shifts):
        out[key] = m[key] + xp.where(live, shift, 0.0)
    return out


def _mixture_shifted(m: dict, live: Any, wait2: Any, p2: Any) -> dict:
    """:func:`routed_percentiles` with the instance's own TTFT mixture (``m["mixture"]``,
    :func:`kvmodel.instance._estimate.ttft_mixture`: its class offsets, the step spread law):
    each percentile moves by the change of that mixture's quantile from the instance's wait
    law to ``(wait2, p2)``, at most a waiting request's mean cut (:func:`_count_bound`). The
    old law's quantiles are the instance's percentiles exactly, so where a percentile sits on
    a class's no-wait atom it stays at that class's own service (not at a scaled
    ``b x uncached tokens``, whose fitted scale moved with the wait: module docstring)."""
    W, p = m["wait"], m["pwait"]
    mix = m["mixture"]
    Ws, W2s = xp.where(live, W, 0.0), xp.where(live, wait2, 0.0)
    p_old, p_new = xp.where(live, p, 1.0), xp.where(live, p2, 1.0)

    def quantiles(w: Any, pw: Any) -> list:
        ws, ps = sum_wait_law(w, pw, mix["spread"], mix["spread_p"])
        return mixture_quantiles(ws, ps, mix["offsets"], _QS)

    old, new = quantiles(Ws, p_old), quantiles(W2s, p_new)
    shifts = _count_bound([b - a for a, b in zip(old, new)], Ws, W2s, p_old, _queued_share(m))
    out = dict(m, wait=xp.where(live, wait2, W), pwait=xp.where(live, p2, p),
               ttft=m["ttft"] + xp.where(live, W2s - Ws, 0.0))
    for (key, _), shift in zip(_KEYS, shifts):
        out[key] = m[key] + xp.where(live, shift, 0.0)
    return out


def _queued_share(m: dict) -> Any:
    """Weight of the routed law's own quantile shift in the percentile shift
    (:func:`_count_bound`): ``u²``, u the utilisation of the server that holds the wait --
    the prefill token server where the instance gives its parts (``rho_pf``: most of the
    wait near saturation), else the instance's utilisation (``util``); figures that give
    neither keep the bound alone (0). ``u²`` is M/M/1's probability that an arrival finds
    work queued behind the request in service (P(N >= 2)), the requests whose wait the
    router cuts as a whole (module docstring, *Near saturation*)."""
    parts = m.get("parts")
    r = parts[2] if parts is not None else m.get("util")
    if r is None:
        return 0.0
    r = xp.minimum(xp.maximum(r, 0.0), 1.0)
    return r * r


def _count_bound(shifts: Any, W: Any, W2: Any, p: Any, queued: Any = 0.0) -> list:
    """Percentile shifts ``(1 − queued)·max(s, cut) + queued·s`` (``s`` the routed law's own
    quantile shift, ``queued`` :func:`_queued_share`'s weight): a request that waits for the
    prompt in service alone falls by at most the mean cut of a waiting request,
    ``cut = (W' − W)/p`` (the length-biased residual of a long prompt -- the tail of that
    wait -- is not shortened by the router); one that finds work queued behind it waits a
    sum of many such works near saturation, close to exponential (Kingman's heavy-traffic
    law), whose tail the router cuts with its mean, the routed law's whole quantile shift.
    ``queued`` 0 is the bound alone (to stop 24; module docstring, *Near saturation*)."""
    cut = (W2 - W) / _clipped(p)  # where no request waits there is nothing to cut
    out = []
    for s in shifts:  # b + q·(s − b): where the bound does not bind, s exactly
        b = xp.maximum(s, cut)
        out.append(b + queued * (s - b))
    return out


def _floats(vals: list) -> bool:
    """Every value a float or numpy float64 (then none is an array; cheaper than asking
    each)."""
    return set(map(type, vals)) <= _FLOAT


_FLOAT = {float, np.float64}
_KEYS = (("ttft50", 0.5), ("ttft90", 0.9), ("ttft99", 0.99))
_QS = tuple(q for _, q in _KEYS)


def _clipped(p: Any) -> Any:
    """P(wait) as :func:`~kvmodel.instance._mixture.mixture_quantile` clips it."""
    return xp.minimum(xp.maximum(p, 1e-12), 1.0)


_offset = operator.itemgetter(1)
_MEMO_SIZE = 1024  # memoised shifts per catalog (bounded in long searches)


def _scalar_shifts(m: dict, live: bool, laws: tuple, probs: list, new: list, b: float) -> tuple:
    """Each quantile's shift for numbers (as Python floats: the same values, faster),
    memoised by value (a sweep or a search revisiting a configuration)."""
    (W, p), (W2, p2) = ((float(w), float(pw)) for w, pw in laws)
    b, new, probs = float(b), [float(x) for x in new], [float(w) for w in probs]
    vals = [float(m[k]) for k, _ in _KEYS]
    key = tuple([v if v else repr(v) for v in (W, p, W2, p2, b, *probs, *new, *vals)])
    return current().cached("routed_shifts", key, lambda: _shifts(
        (W, p), (W2, p2), probs, new, b, vals), _MEMO_SIZE)


def _shifts(old: tuple, law: tuple, probs: list, new: list, b: float, vals: list) -> tuple:
    """:func:`_scalar_shifts` computed: the old law's quantiles of the mean's offsets in one
    pass, then per quantile its offsets sorted once for both laws."""
    W, p = old
    g = scalar_quantiles(W, p, sorted(zip(probs, [b * x for x in new]), key=_offset), _QS)
    out = []
    for q, gq, v in zip(_QS, g, vals):
        bq = b * (v / gq if math.isfinite(v) and gq > 0 else 1.0)
        cls = sorted([(pi, bq * x) for pi, x in zip(probs, new)], key=_offset)
        out.append(scalar_quantiles(*law, cls, (q,))[0] - scalar_quantiles(W, p, cls, (q,))[0])
    return tuple(out)


def _array_shifts(m: dict, live: Any, laws: tuple, probs: list, new: list, b: Any) -> list:
    """:func:`_scalar_shifts` on arrays: the quantiles on a leading axis, one sort of the
    mean's offsets and one of every quantile's offsets (shared by both laws)."""
    (W, p), (W2, p2) = laws
    S, pi = sorted_classes(list(zip(probs, [b * x for x in new])),
                           np.broadcast_shapes(np.shape(W), np.shape(p)))
    q = np.reshape(_QS, (len(_QS),) + (1,) * (S.ndim - 1))
    g = sorted_quantile(W, p, S, pi, q)
    bq = []
    for (key, _), gq in zip(_KEYS, g):
        ok = live & np.isfinite(m[key]) & (gq > 0)
        bq.append(b * xp.where(ok, m[key] / xp.where(ok, gq, 1.0), 1.0))
    shape = np.broadcast_shapes(*(np.shape(v) for v in (W, p, W2, p2)))
    offsets = [(w, np.stack(np.broadcast_arrays(*(c * x for c in bq)))) for w, x in zip(probs, new)]
    S, pi = sorted_classes(offsets, (len(_QS),) + shape)
    q = np.reshape(_QS, (len(_QS),) + (1,) * (S.ndim - 2))
    A = np.stack([pi[:, i].sum(axis=0) for i in range(len(_QS))])  # summed as one quantile's
    return list(sorted_quantile(W2, p2, S, pi, q, A) - sorted_quantile(W, p, S, pi, q, A))


# ------------------------------------------------------------------ bounded prefix affinity

def bounded_choice_mix(prof: Any, n: int, epsilon: float, cap: int,
                       eviction: str = "lru") -> tuple:
    """Share of the requests whose load choice count is d (d = 1 ... n) under
    ``prefix_affinity_bounded`` with ``cap`` cache blocks per instance (module docstring,
    *Bounded prefix affinity*): the rule replayed over the trace with ``eviction`` caches
    (ties to the fewest routed so far), d = the eligible instances tied at the longest cached
    prefix. Memoised on the profile."""
    key = ("pab_choice_mix", int(n), float(epsilon), int(cap), eviction)
    if key not in prof._cache:
        prof._cache[key] = _replay_ties(prof, int(n), float(epsilon), int(cap), eviction)
    return prof._cache[key]


def bounded_steer_share(prof: Any, n: int, epsilon: float, cap: Any,
                        eviction: str = "lru") -> Any:
    """Share of the requests whose ``prefix_affinity_bounded`` choice reads the load (module
    docstring, *Steering*): the ties (d >= 2, the fewest active of the tied instances) plus
    the requests left with one eligible instance because the bound excluded others (an
    instance with a longer cached prefix, or one tied with it), from the replay of
    :func:`bounded_choice_mix` at the capacities ``2^j − 1`` blocks, blended linearly in
    ``log2(1 + cap)`` as :func:`bounded_affinity_waits` blends its law (``cap``: blocks per
    instance, a number or an array). One instance: 0 (nothing to steer)."""
    n, eps = int(n), float(epsilon)
    if n == 1:
        return np.zeros(np.shape(cap)) if xp.is_array(cap) else 0.0
    full = _distinct_per_instance(prof, n, eps)

    def share(j: int) -> float:
        c = min(2 ** j - 1, full)
        key = ("pab_steer", n, eps, c, eviction)
        if key not in prof._cache:  # the replay's counts are bounded_choice_mix's, kept too
            ties = _replay_ties(prof, n, eps, c, eviction, steer=True)
            prof._cache.setdefault(("pab_choice_mix", n, eps, c, eviction), ties)
        return prof._cache[key]

    return _log_blend(cap, full, share)


def _log_blend(cap: Any, full: int, per_level) -> Any:
    """``per_level(j)`` (a number per anchor capacity ``2^j − 1``) blended linearly in
    ``x = log2(1 + cap)`` (capped at ``log2(1 + full)``) between ``j = floor(x)`` and j + 1;
    a number or an array shaped like ``cap``."""
    top = math.log2(1.0 + full)
    if not xp.is_array(cap):
        x = min(math.log2(1.0 + max(math.floor(cap), 0.0)), top)
        j, t = int(x), x - int(x)
        v = per_level(j)
        return (1.0 - t) * v + t * per_level(j + 1) if t > 0.0 else float(v)
    x = np.minimum(np.log2(1.0 + np.maximum(np.floor(np.asarray(cap, float)), 0.0)), top)
    j = np.floor(x).astype(np.int64)
    t = x - j
    vals = {int(k): per_level(int(k)) for k in np.unique(np.concatenate([j.ravel(), j.ravel() + 1]))
            if np.any(np.where(j == k, 1.0 - t, 0.0) + np.where(j + 1 == k, t, 0.0) > 0)}
    lo = np.vectorize(lambda k: vals.get(int(k), 0.0), otypes=[float])
    return (1.0 - t) * lo(j) + t * lo(j + 1)


def _replay_ties(prof: Any, n: int, eps: float, cap: int, eviction: str,
                 steer: bool = False) -> tuple:
    """:func:`bounded_choice_mix` replayed: LRU caches through :func:`_replay_lru`, any other
    eviction through its :data:`~kvmodel.policies.eviction.EVICTION_POLICIES` cache. LRU
    caches of at least the most distinct blocks an instance takes without eviction
    (:func:`_distinct_per_instance`) never evict (the replay follows the one without
    eviction, whose instances never hold more), so their counts and the bound's exclusions
    are that replay's (:func:`~kvmodel.workload._reuse_analytic.assignment`, memoised on the
    profile). A replay also memoises :func:`bounded_steer_share`'s share at ``cap``."""
    if n == 1:  # one instance: one choice
        return (1.0,)
    if eviction == "lru" and cap >= _distinct_per_instance(prof, n, eps):
        assignment(prof, n, "prefix_affinity_bounded", eps)
        ties, bound = (prof._cache[("infinite_ties", n, True, eps)],
                       prof._cache[("infinite_excluded", n, eps)])
    else:
        ties, bound = (_replay_lru if eviction == "lru" else _replay_policy)(prof, n, eps,
                                                                             cap, eviction)
    prof._cache[("pab_steer", n, eps, cap, eviction)] = (sum(ties[1:]) + bound) / max(sum(ties), 1)
    total = sum(ties)
    return tuple(t / total for t in ties) if total else (1.0,) + (0.0,) * (n - 1)


def _replay_policy(prof: Any, n: int, eps: float, cap: int, eviction: str) -> tuple:
    """(tie counts, d = 1 ... n; the requests with d = 1 whose eligible set the bound
    changed: :func:`bounded_steer_share`) of the rule replayed with ``eviction`` caches: every
    instance's cached prefix walked block by block (``contains``), the chosen one's cache
    touched last block to first (the :class:`~kvmodel.policies.eviction.CachePolicy`
    contract)."""
    from kvmodel.policies.eviction import EVICTION_POLICIES
    caches = [EVICTION_POLICIES[eviction](cap) for _ in range(n)]
    counts, ties, excluded = [0] * n, [0] * n, 0
    off, ids = prof.block_offsets.tolist(), prof.block_ids.tolist()
    for r in range(prof.n_requests):
        chain = ids[off[r]:off[r + 1]]
        bound = math.ceil((1.0 + eps) * (r + 1) / n)
        tied, top, held = [], -1, []
        for i in range(n):
            k = 0
            for b in chain:
                if not caches[i].contains(b):
                    break
                k += 1
            held.append(k)
            if counts[i] + 1 > bound:
                continue
            if k > top:
                tied, top = [i], k
            elif k == top:
                tied.append(i)
        ties[len(tied) - 1] += 1
        excluded += len(tied) == 1 and (max(held) > top or held.count(top) > 1)
        c = min(tied, key=lambda i: (counts[i], i))
        counts[c] += 1
        for b in reversed(chain):
            caches[c].touch(b)
    return ties, excluded


def _replay_lru(prof: Any, n: int, eps: float, cap: int, *_: Any) -> tuple:
    """:func:`_replay_policy` for LRU caches, the same counts in a fraction of its time
    (falls back to it on a trace whose chains
    :func:`~kvmodel.workload._reuse_analytic.prefix_chains` cannot compress): each block
    maps to the bit mask of the instances holding it, so the eligible instances tied at the
    longest cached prefix are the mask narrowed block by block along the chain (as
    :func:`kvmodel.workload._reuse_analytic.assignment`'s replay without eviction), and the
    chosen instance's cache is touched by :func:`_touch_lru`."""
    pre = prefix_chains(prof)
    if pre is None:
        return _replay_policy(prof, n, eps, cap, "lru")
    chains, live, width = pre
    holders, lrus, sizes = [0] * width, [OrderedDict() for _ in range(n)], [0] * n
    counts, ties, most, full, excluded = [0] * n, [0] * n, 0, (1 << n) - 1, 0
    for r, chain in enumerate(chains):
        bound = math.ceil((1.0 + eps) * (r + 1) / n)
        best = full if most < bound else sum(1 << i for i in range(n) if counts[i] < bound)
        best, k = narrowed(best, chain, holders)
        d = best.bit_count()
        ties[d - 1] += 1
        if d == 1 and most >= bound:  # did the bound decide? the unbounded rule's set
            excluded += narrowed(full, chain, holders)[0] != best
        c = fewest_routed(best, counts, full)
        counts[c] += 1
        most = max(most, counts[c])
        if cap > 0:
            sizes[c] = _touch_lru(lrus[c], holders, c, chain, (k, live[r], r), sizes[c], cap)
    return ties, excluded


def _touch_lru(od: OrderedDict, holders: list, c: int, chain: list, at: tuple, size: int,
               cap: int) -> int:
    """Instance ``c``'s LRU cache ``od`` (least recent first; ``size`` blocks) after request
    ``r`` touches ``chain`` last block to first; returns its new size (at most ``cap``).
    ``at`` = (k, live, r): the cache holds exactly the chain's first k blocks (a prefix
    chain's blocks enter and leave an LRU cache prefix-first,
    :func:`~kvmodel.workload._reuse_analytic.prefix_chains`); only the
    first ``live`` blocks are accessed again later: the rest (the tail, touched first) are
    never looked up again and only take room, so they enter as one anonymous run (key
    ``-1 - r``, value its length; a block is value 1). The cache then drops its least recent
    blocks down to ``cap`` (a run partly): an LRU cache holds the ``cap`` most recently used
    distinct blocks whatever the order of its evictions, so this is the block-by-block
    cache's content. ``holders`` (block -> mask of the instances holding it) follows the
    blocks admitted and evicted."""
    k, live, r = at
    for b in chain[live:k]:  # held, last access: into the run
        del od[b]
    size += len(chain) - k
    if len(chain) > live:
        od[-1 - r] = len(chain) - live
    bit = 1 << c
    for b in reversed(chain[k:live]):
        od[b] = 1
        holders[b] |= bit
    for b in reversed(chain[:min(k, live)]):
        od.move_to_end(b)
    excess, drop = size - cap, ~bit
    while excess > 0:
        key, w = od.popitem(last=False)
        if w > excess:
            od[key] = w - excess
            od.move_to_end(key, last=False)
            break
        excess -= w
        if key >= 0:
            holders[key] &= drop
    return min(size, cap)


def bounded_affinity_waits(prof: Any, n: int, epsilon: float, eviction: str, cap: Any,
                           m: dict, length_cv: float) -> dict:
    """The instance figures ``m`` with the wait law behind ``prefix_affinity_bounded``
    (``cap``: cache blocks per instance, a number or an array): the share ``mix[d − 1]`` of
    requests joins the fewest-active of d instances (a count signal, :func:`routed_law`), the
    rest goes where its prefix is; the mean TTFT moves with the mean wait, the percentiles
    keep the instance's law (:func:`_mean_moved`). Module docstring, *Bounded prefix
    affinity*. The mix is replayed at the capacities ``2^j − 1`` blocks (j = 0, 1, ...) up to
    the most distinct blocks one instance takes in the assignment of the hit curve (beyond it
    the hits, and the law, no longer change: :func:`_distinct_per_instance`) and the law
    blended linearly in ``log2(1 + cap)`` between the two around ``cap``: at most ~log2(those
    blocks) replays per trace, instance count, epsilon and eviction, whatever a search asks."""
    residual = (1.0 + float(length_cv) ** 2) / 2.0
    full = _distinct_per_instance(prof, n, epsilon)
    top = math.log2(1.0 + full)

    def law(j: int, W: Any, p: Any, u: Any, parts: Any) -> tuple:
        mix = bounded_choice_mix(prof, n, epsilon, min(2 ** j - 1, full), eviction)
        return routed_law(mix, W, p, residual, u, parts)

    rho, parts = utilisation(m), m.get("parts")
    if not xp.is_array(cap, m["wait"], m["pwait"], rho, *(parts or ())):
        x = min(math.log2(1.0 + max(math.floor(cap), 0.0)), top)
        j, t = int(x), x - int(x)
        got = law(j, m["wait"], m["pwait"], rho, parts)
        if t > 0.0:
            got = [(1.0 - t) * a + t * b for a, b in zip(got, law(j + 1, m["wait"],
                                                                  m["pwait"], rho, parts))]
        return _mean_moved(m, *(float(v) for v in got))
    shape = np.broadcast_shapes(*(np.shape(v) for v in (cap, m["wait"], m["pwait"], rho,
                                                        *(parts or ()))))
    x = np.minimum(np.log2(1.0 + np.maximum(np.floor(np.broadcast_to(cap, shape)), 0.0)), top)
    j = np.floor(x).astype(np.int64)
    t = x - j
    W, p, u = (np.broadcast_to(v, shape) for v in (m["wait"], m["pwait"], rho))
    laid = None if parts is None else [np.broadcast_to(v, shape) for v in parts]
    got = np.zeros((2,) + shape)
    for k in np.unique(np.concatenate([j.ravel(), j.ravel() + 1])):
        wk = np.where(j == k, 1.0 - t, 0.0) + np.where(j + 1 == k, t, 0.0)
        sel = wk > 0
        if np.any(sel):
            got[:, sel] += wk[sel] * np.stack(np.broadcast_arrays(*law(
                int(k), W[sel], p[sel], u[sel], None if laid is None else [v[sel] for v in laid])))
    return _mean_moved(m, *got)


def _mean_moved(m: dict, wait2: Any, p2: Any) -> dict:
    """``m`` with the wait law ``(wait2, p2)``: the mean TTFT moves by the change of the mean
    wait, the percentiles keep the instance's law (module docstring, *Bounded prefix
    affinity*); an infinite or zero wait stays as it is."""
    W = m["wait"]
    live = np.isfinite(W) & (W > 0) if xp.is_array(W) else bool(np.isfinite(W) and W > 0)
    if not xp.any_true(live):
        return m
    return dict(m, wait=xp.where(live, wait2, W), pwait=xp.where(live, p2, m["pwait"]),
                ttft=m["ttft"] + xp.where(live, xp.where(live, wait2, 0.0)
                                          - xp.where(live, W, 0.0), 0.0))


def _distinct_per_instance(prof: Any, n: int, epsilon: float) -> int:
    """Most distinct blocks any instance takes under the bounded prefix-affinity assignment
    of the hit curve (:func:`kvmodel.workload._reuse_analytic.assignment`): a cache that
    large holds everything its instance ever sees. Memoised on the profile."""
    key = ("pab_distinct", int(n), float(epsilon))
    if key not in prof._cache:
        a = np.repeat(assignment(prof, n, "prefix_affinity_bounded", epsilon),
                      np.diff(prof.block_offsets))
        prof._cache[key] = max(len(np.unique(prof.block_ids[a == i])) for i in range(n))
    return prof._cache[key]
