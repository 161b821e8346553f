"""KV-slot occupancy and admission waits of the simulator, per instance, beside the closed form.

    python benchmarks/kv_slot_occupancy.py [--routing random,round_robin,least_loaded]
                                           [--load 0.5] [--block-s 1.0] [--seed 0]
                                           [--arrival-seed 0]
    python benchmarks/kv_slot_occupancy.py --stationary [--routing round_robin]
                                           [--instances 1] [--loads 0.5,0.7,0.85,0.95]
                                           [--n 6000] [--seeds 3] [--skip 0.1] [--sat-n 0]

The router cells of tests/policies/test_routing_vs_sim.py (Llama-3.1-8B bf16 TP1 on H100,
4 instances, 64 GB DRAM prefix cache each, the bundled Mooncake conversation trace with seeded
Poisson arrivals at ``--load`` of round robin's saturation rate). The simulator admits the
head of an instance's queue when its pool can reserve the request's whole prompt + output
(strict FCFS), so its reserved tokens are a step function of the admission and finish times
(``queue_s``, ``e2e_s``); this script rebuilds it (``occupancy``) and prints, per instance,
in units of the mean reservation r̄ (``cap/r``: the pool in mean reservations, the closed
form's ``max_batch``):

* ``lam``: arrivals per second; ``E[h]``: seconds from admission to the last token; ``w1``:
  E[r·h] / (E[r]·E[h]), the hold weighting (large requests hold longer), so the mean occupancy
  is ``λ·E[h]·w1`` reservations (Little's law on tokens, checked: ``occ`` equals it);
* ``occ``, ``idx``, ``skew``: time-averaged occupancy, its index of dispersion (variance over
  mean, in r̄) and skewness; ``idx_ind``: the index of independent holds (M/G/∞:
  λ·E[r²·h]/r̄ over the mean), so ``idx / idx_ind`` is what the holds' correlation in time
  adds; ``P>.8``: the time share with more than 80 % of the pool reserved; ``gamma``: that
  share under a Gamma law with the measured mean and index (the tail shape is right once the
  moments are);
* ``kappa``: the feedback gain of the occupancy on itself, λ·E[O − 1]·s·r̄ with ``s`` the
  slope of a request's TPOT on the mean reserved tokens over its life (least squares): a
  fuller pool makes every decode step longer, so every hold longer;
* ``blk``: share of requests admitted more than ``--block-s`` after arrival (a KV-slot wait,
  not a step boundary), ``wait``: their mean wait, ``dTTFT``: their share of the mean TTFT;
  ``head``: the mean reservation of the queue's head while they waited, over r̄; ``eps``:
  blocking episodes per request (a blocked request with nobody waiting ahead of it, the
  head-of-line event a slot model has to predict), ``per_ep``: seconds of waiting per episode
  (the head's and everyone's queued behind it); ``fin``: finishes per second while some
  request is blocked (the slot queue's service rate at a full pool), ``n_full`` and
  ``size_full``: the requests in the pool when a blocked interval starts and their mean
  reservation over r̄.

The closed form's line gives its mean TTFT, batch (its mean occupancy, in requests) and the
pool in mean reservations. Measured at load 0.5 (at 1fae5cf, 25 s for the three routers):

* random: occupancy 8.8-9.9 r̄ (Little on tokens to 0.5 %) against the closed form's batch 6.0
  (its hold 7.7 s, class-weighted by its own per-class prefill service: w1 1.12); w1 1.30-1.35,
  ``big`` 1.56-1.70 (the largest tenth's TPOT 38-40 ms against 23-25: its own KV read in every
  step, the prefill it leaves behind, the fuller pool it lives in); index 7.9-10.3 against
  3.4-3.7 for independent holds, kappa 0.47-0.52 (the closed form's count feedback λ(O − 1)T'
  is 0.24), skew 1.2-1.5; P>.8 3.6-7.6 %, Gamma with the measured moments 3.0-4.8 %; 0.9-3.9 %
  of requests wait on the pool, 4.7-7.7 s each, behind a head of 2.4-3.6 r̄: 0.05-0.29 s of the
  mean TTFT (0.15 s over the cluster, the closed form's slot wait is 0);
* round robin: the same w1 and kappa, index 5.9-7.1, P>.8 1.2-3.2 %, 0.003-0.06 s of the mean;
* least loaded: index 3.6-4.0 (its routing undoes the slow swings), P>.8 0.2-0.4 %, 0-0.005 s.

The random cell rests on ~20 blocking episodes (eps 0.0007-0.0033 per instance): over
arrival seeds 0-2 x router seeds 0-2 the simulator's mean TTFT is 1.17-1.42 s (closed form
0.947: -0.19 .. -0.34, six of nine out of the 20 % bar; p99 -0.29 .. -0.59, six of nine out of
35 %), its slot waits 0.13-0.41 s of the mean; round robin -0.01 .. -0.06 (p99 -0.14 .. -0.17)
and least loaded +0.05 .. +0.09 (p99 -0.08 .. -0.15) over arrival seeds 0-2 are steady. The
bar cell's seed (0, 0) is one of the kindest.

The drain is the other missing half. While a random-routed instance has a request blocked,
its pool holds 19-24 requests of 1.4-1.9 r̄ each and finishes 0.74-0.92 of them per second,
about the arrival rate (0.81-0.84): the queue barely drains, and blocked intervals last 11-13 s
(router seeds 0-1). The closed form drains it at θ = λ_sat − λ = 0.81/s, λ_sat = 1.64/s being
the rate of a full batch of 36 mean reservations; a pool filled by the requests that stay
longest (the large ones: ``w1``) holds 1/size_full as many, so it releases about λ_sat/size_full
= 0.9-1.2 per second, θ ≈ 0.05-0.4/s. A head-of-line wait needs that hold-weighted drain as
well as the head's threshold, and it lowers the pool's own saturation rate below λ_sat (a
change to the stability limit, which the closed form ties to λ_sat).

So the simulator's slot waits come from the occupancy's moments, not from its tail shape or
the head's size alone. Holds weighted from the closed form's own per-class parts (the class's
prefill service S_j, amplified by the prefill it leaves behind, 1 + ρ_b(1 − t_d/t_busy)/(1 −
κ_A) = 1.49, and its own KV read in each of its O − 1 steps, 0.29 s per r̄) give w1 1.23,
mean 7.9 r̄, index 4.8 (random), 3.8 (round robin), 4.1 (least loaded); a head of class j
blocked when X > C − r_j then has probability (over the classes) 1.6e-5 / 1.1e-6 / 7.6e-6 under
a Gaussian X and 3.2e-3 / 1.0e-3 / 2.0e-3 under a Gamma one, against the simulator's episode
heads (waiting over 1 s) 1.8e-3 / 1.2e-3 / 1e-4 per request: the Gaussian cannot reach the cap,
and an instance law that does reach it puts least loaded's slot waits above round robin's (its
arrival SCV 0.44 > 0.25), where the simulator's least loaded has almost none: its index 3.6-4.0
is the independent holds' (the router steers away from a filling pool), random's and round
robin's excess 5.5 and 3.1 are slow swings the router leaves alone. The slot law needs a
router-level signal of that steering before a head-of-line wait can be added without pushing
least loaded (+0.07 mean now) out of its bar.

A head-of-line law, tried and not adopted (branch slotwait2): the occupancy in r̄ a Gamma law,
the queue above the pool a reflected diffusion (mass σ²·f(C)/(2θ) against F(C), zero flux at
C), drained at θ = λ_sat/s_f − λ, s_f the mean reservation in a full pool from the count's
linear regression on the occupancy, E[N | X = C] = N + Cov(N, X)/Var(X)·(C − E[X]). That
regression gives random's pool 25 requests of 1.43 r̄ (measured 19-24 of 1.4-1.9), θ 0.33/s.
Fed the measured moments (random: mean 8.8-9.9, index 7.9-10.3; round robin index 6.5; least
loaded 3.8) and θ 0.2 the law gives 0.10-0.17 / 0.05 / 0.015 s of the mean TTFT, against the
simulator's 0.15 / 0.003-0.06 / 0-0.005. Fed the closed form's (random: mean 6.9, index 6.65;
round robin 6.55, 5.2; hold weights from the classes' own prefill service, w1 1.12) it gives
0.017 s to random, 0.039 to round robin and 0.05 to least loaded (its ca2 0.44): pooled mean
error (3 arrival x 3 router seeds) random −0.246 → −0.245, round robin −0.027 → +0.001,
least loaded +0.076 → +0.145; the Gamma tail also moves the single-instance 8B 12,288/128 p99
at 0.85 from −29 % to −35.1 % (queue_vs_sim.py, 3 seeds, exact rate). The law and the drain
hold; the closed form's occupancy mean (w1 1.12 against 1.30-1.35) and index (its feedback
κ 0.24 against 0.47-0.52) are what is missing. The drain also puts the pool's stability limit
at λ_sat/s_f < λ_sat: a law that adopts it has to report that limit (θ <= 0) as unstable.

The closed form's own moments (``closed form:`` line, branch slotwait3: the last scalar call of
:func:`kvmodel.instance._openloop.slot_moments` in ``evaluate``; ``idx_ind`` there is w3, the
index of Poisson arrivals without shots or feedback). Holds per length class from the model's
parts (own prefill service with the prefill it leaves behind, own KV read per decode step at
the roofline's bytes per token over its HBM bandwidth, 4.6e-8 s per token here), renewal
arrivals' (c_a² − 1)·λ·E[r·r'·min(h, h')], the feedback κ = λ(O − 1)·(read s/token)·c̄ = 0.15,
and the prefill shots: an arrival's busy steps, Δ_j = S_j(1 − t_d/t_busy)/(1 − κ_A), delay
every request in the pool and hold back the tokens due to leave. The shots are the slow
swings: without them the index is 3.8 / 3.1 / 3.2 (random / RR / LL, at the old rate 3.29/s).
At 50 % of the new closed-form RR saturation (5.90/s, rate 2.95/s; the simulator's RR queue
already runs to 50-99 s at 5.97/s and grows at 6.35 and 6.70/s), measured (4 instances) vs
closed form: random occupancy 7.2-8.1 vs 6.4 r̄, index 7.6-9.4 vs 7.6, w1 1.31-1.38 vs 1.23;
round robin 6.5-7.1 vs 6.1, index 5.5-6.5 vs 6.7; least loaded (steer 1: the rule reads the
in-flight count the swings raise) 5.5-6.3 vs 6.7, index 3.9-4.1 vs 2.7 (the steered index is
the independent holds' at its arrival SCV 0.43; the measured Poisson-formula one is 3.5-3.7).
The measured κ 0.39-0.50 is a regression of TPOT on the pool level, which the shots confound
(a large arrival raises both); the model's KV-read κ is 0.15.

``--stationary`` (:func:`stationary`) takes the trace's non-stationarity out: (prompt, output)
pairs drawn i.i.d. from the trace, Poisson arrivals (each run's measured requests at exactly
the nominal rate), no prefix cache, at ``--loads`` x the closed form's own saturation (the
pool's edge, ``max_rate_at_slo`` without SLOs), ``--seeds`` runs pooled; per load the closed
form / simulator mean occupancy, index (the closed form's also capped at the pool,
:func:`capped_index`), hold, w1, mean and p99 TTFT; ``--sat-n`` adds the simulator's served
rate from a backlog (1.2x) over the closed form's edge. One instance, 3 x 6,000 requests
(stop 22, before / after the classes' KV read of :mod:`kvmodel.instance._openloop`):

* edge 1.439 / 1.426 req/s, the simulator's 1.46 (1.015 / 1.024 of it);
* hold (closed/sim) at 0.5/0.7/0.85/0.95: before −7/−8/−7/0 %, after −1/−3/−2/+5 %;
  occupancy before −13/−13/−10/0 %, after −10/−9/−5/+4 % (w1 1.22 vs 1.34 at 0.5 is the rest);
  index capped 7.0/8.7/8.2/6.6 against 7.4/8.4/6.6/3.3; mean TTFT −6/−18/−40/−67 %, p99
  −22/−38/−37/−35 % after (before −6/−18/−39/−61, −22/−35/−30/−22: at a 1 % lower edge).

Four instances, round robin, 3 x 16,000: edge 5.787 / 5.737, simulator ~5.85; hold before
0/−6/−5/−1 %, after +6/0/0/+4 %; occupancy before −11/−14/−9/−1 %, after −7/−9/−5/+3 %;
mean TTFT after +4/−13/−47/−68 % (before +3/−13/−45/−63), p99 after −11/−37/−48/−47 %
(before −11/−35/−42/−33). Near saturation the mean TTFT is the slot wait's and the model's is
far short although the capped index, the hold and the mean are close: the head-of-line
law's drain (θ), not the occupancy, is what is left.

The ``why sim`` line (:func:`wait_split`, stop 23) splits the simulator's admission waits by
cause: a request had room at arrival (the pool's reserved tokens, those of the requests
queued ahead of it and its own within the pool: it waited only for the running step to end)
or not (the KV part: arrival to the finish that makes room for it and those ahead; the step
part after it is 0 in every run: the engine admits at the step boundary where a finish frees
room). One instance, 3 x 6,000, at 0.5/0.7/0.85/0.95 of saturation: waits over 0.1 s 0.20/
0.32/0.53/0.78 of requests, of which a step only 0.19/0.24/0.20/0.10 (0.22-0.23 s each: a
long prompt's 8,192-token steps of ~0.3 s), KV room 0.009/0.086/0.33/0.67 (5.4/7.1/11.7/32.5
s each), both 0; the step-only wait over all requests with room 55/72/82/86 ms. The closed
form's slot law has 0.004/0.046/0.19/0.41 of P(wait) and 7.9/10.8/16.5/29 s per waiting
request: P about half the simulator's at every load, its conditional wait 1.4-1.5x long
below 0.95. The heads of blocked episodes are size-biased, 3.6/2.7/2.5/2.2 r̄ (all blocked
requests 1.35/1.17/1.09/1.03 r̄), but an arrival blocked by its own size where the pool is
below the cap, Σπ_j(F(C) − F(C − r_j)) under the closed form's Gamma law, adds only 0.001/
0.005/0.010/0.011 to P: the queue's mass above the cap dominates, and the Gamma density near
the cap is what is short (at 0.5 the index matches, 7.4 vs 7.4, yet P is 0.4x).
Counting the Gamma's own mass above the cap as blocked (a slow swing that carries the demand
over the pool keeps arrivals waiting while it lasts) beside the queue's, P = (1 − F(C) + M)/
(1 + M), gives 0.009/0.092/0.30/0.54 against the simulator's 0.010/0.087/0.33/0.67, but its
wait by Little, (E[(X − C)⁺] + M·σ²/(2θ))/(λ(1 + M)), is 0.08/1.04/4.8/13.2 s against
0.054/0.61/3.9/21.9 (mean TTFT at 0.7 would go from −4 % to about +25 %): the Gamma's tail
above the cap is too heavy where its density at the cap is too light, so it was not adopted.
Four instances round robin (3 x 16,000): no room at arrival 0.003/0.065/0.32/0.75, the
step-only wait 42/60/71/73 ms (the closed form's running step 43/58/68/76 with whole steps
counted ceil(n/b) − 1, a ms or two less with (n/b − 1)⁺; one instance 41/54/65/73).

The edge (stop 25). From a backlog (``--sat-n 6000``, one instance) the simulator serves
1.461 req/s and its pool holds 36.65 of its 37.57 mean reservations (the gap 0.92 r̄), w1
1.08, hold 23.0 s; while a request waits for room (``blocked pool`` line,
:func:`blocked_release`) the pool releases 1.44-1.47 / 1.22-1.47 / 1.37-1.41 / 1.42-1.46
r̄/s at 0.5 / 0.7 / 0.85 / 0.95 of 1.420 req/s (seeds 0-1): about the backlogged rate at
every load, where the slot law's drain, extrapolated from the mean holds (λ·w1·h_c = X̄ +
κ(c' − X̄), :func:`kvmodel.instance._openloop._full_drain`), gives 2.4 / 2.0 / 1.7 / 1.5 and
puts the edge at X̄ = c', 1.382 req/s (0.946 of the simulator's). A trial law (stop 25,
not adopted) drained a full pool at min(λ_sat, λ·c/X̄) − λ with the classes' pool unfloored
(36.94 r̄, not 36) and the class holds' prefill amplification gated by P(wait): its edge
1.444 req/s (the simulator's 1.011 of it), but near the edge P and the wait of a waiting
request stayed ~25 % short at 0.85 and half at 0.95 (mean TTFT −1/+4/−19/−56 % at
0.5/0.7/0.85/0.95 of 1.444), and the 85 % router cells, now nearer the simulator's own
edge, fell to sglang −0.31 and round robin −0.21 (mean TTFT). The simulator near its edge is
seed-bound (0.95 of 1.420: mean TTFT 12.7 / 20.3 / 31.8 s over seeds 0-2, episodes of
1,300-13,700 s of waiting; the draws' mean reservation 12,331 / 12,126 / 12,579 tokens moves
the pool ±2 %). The blocked pool releases 4-6 % less than from a backlog at 0.85 (the pools
that fill are those of slow compositions), which a drain conditioned on blocking would add.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

import kvmodel
import kvmodel.instance._openloop as _ol
from kvmodel.cluster import max_rate_at_slo
from kvmodel.sim import poisson_requests, simulate

M, G, N, DRAM_B = "llama-3.1-8b", "h100-sxm", 4, 64e9


def _cluster(routing: str) -> kvmodel.Cluster:
    return kvmodel.Cluster(M, G, instances=N, tp=1, precision="bf16", routing=routing,
                           hbm_cache_fraction=0.0, dram_B=DRAM_B, ssd_B=0.0)


def setting(load: float, arrival_seed: int = 0):
    """(workload at ``load`` x round robin's saturation, the Poisson-arrival trace, blocks):
    the fixture of tests/policies/test_routing_vs_sim.py (``arrival_seed`` 0)."""
    w = kvmodel.Workload(kvmodel.load_trace("mooncake-conversation"))
    sat = float(max_rate_at_slo(_cluster("round_robin"), w.with_rate(N), ttft_slo_s=1e9,
                                tpot_slo_s=1e9))
    gaps = np.random.default_rng(arrival_seed).exponential(1.0 / (load * sat), len(w.trace))
    trace = dataclasses.replace(w.trace, arrival_s=np.cumsum(gaps) - gaps[0])
    block_B = w.trace.block_tokens * kvmodel.get_model(M).kv_bytes_per_token("bf16")
    return w.with_rate(load * sat), trace, int(DRAM_B / block_B)


def occupancy(on, off, r):
    """Reserved tokens as a step function: (event times, level after each event) of
    reservations ``r`` held over [on, off)."""
    t = np.concatenate([on, off])
    order = np.argsort(t, kind="stable")
    return t[order], np.cumsum(np.concatenate([r, -r])[order])


def _time_moments(t, level):
    """Time-weighted mean, variance, skewness of a step function, and its weights."""
    dt, x = np.diff(t), level[:-1]
    wts = dt / dt.sum()
    mean = (wts * x).sum()
    var = (wts * (x - mean) ** 2).sum()
    return mean, var, (wts * (x - mean) ** 3).sum() / var ** 1.5, wts


def _life_mean(t, level, on, off):
    """Mean level over each [on, off) (the cumulative area is piecewise linear in time)."""
    area = np.concatenate([[0.0], np.cumsum(np.diff(t) * level[:-1])])
    return (np.interp(off, t, area) - np.interp(on, t, area)) / np.maximum(off - on, 1e-12)


def _heads(arr, adm, r, blocked):
    """Mean reservation of the queue's head (the earliest arrival not yet admitted) at the
    arrival of each blocked request."""
    out = [r[np.flatnonzero((arr <= arr[j]) & (adm > arr[j]))[0]] for j in blocked]
    return float(np.mean(out)) if out else float("nan")


def _episodes(arr, adm, blk):
    """Blocked intervals: the union of [arrival, admission] of the blocked requests."""
    out = []
    for a, b in sorted(zip(arr[blk], adm[blk])):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return np.array(out).reshape(-1, 2)


def _drain(arr, adm, done, r, blk):
    """(finishes per second while blocked, requests and their reserved tokens in the pool when
    a blocked interval starts): how fast a full pool releases its slots."""
    iv = _episodes(arr, adm, blk)
    if not len(iv):
        return float("nan"), float("nan"), float("nan")
    a, b = iv[:, :1], iv[:, 1:]
    fin = ((done > a) & (done <= b)).sum() / (b - a).sum()
    held = (adm <= a) & (done > a)
    return fin, held.sum(axis=1).mean(), (held * r).sum(axis=1).mean()


def instance_row(s, sel, cap, block_s):
    """The per-instance figures of the module docstring (requests ``sel``, in arrival order)."""
    from scipy import stats
    arr, q, O = s.arrival_s[sel], s.queue_s[sel], s.output_len[sel]
    r = (s.input_len[sel] + O).astype(float)  # reserved tokens (all layers full: I + O)
    adm, done = arr + q, arr + s.e2e_s[sel]
    h, rb = done - adm, r.mean()
    lam = len(arr) / (arr.max() - arr.min())
    t, level = occupancy(adm, done, r)
    mean, var, skew, wts = _time_moments(t, level / rb)
    tpot = s.tpot_s[sel]
    slope = np.polyfit(_life_mean(t, level, adm + s.ttft_s[sel] - q, done)[O > 1],
                       tpot[O > 1], 1)[0]
    blk, big = q > block_s, r > np.quantile(r, 0.9)
    ahead = np.maximum.accumulate(np.concatenate([[-np.inf], adm[:-1]]))  # last admission ahead
    first = blk & (ahead <= arr)  # blocked with nobody waiting ahead: an episode's head
    k_g = mean / (var / mean)
    fin, n_full, r_full = _drain(arr, adm, done, r, blk)
    return dict(lam=lam, Eh=h.mean(), w1=(r * h).mean() / (rb * h.mean()), occ=mean,
                little=lam * (r * h).mean() / rb, idx=var / mean,
                idx_ind=lam * (r * r * h).mean() / rb ** 2 / mean, skew=skew,
                p80=(wts * (level[:-1] > 0.8 * cap)).sum(),
                gamma=stats.gamma(k_g, scale=var / mean).sf(0.8 * cap / rb),
                kappa=lam * (O - 1).mean() * slope * rb,
                big=tpot[big & (O > 1)].mean() / tpot[~big & (O > 1)].mean(), cap_r=cap / rb,
                blk=blk.mean(), wait=q[blk].mean() if blk.any() else 0.0,
                dttft=q[blk].sum() / len(q), eps=first.mean(),
                per_ep=q[blk].sum() / max(first.sum(), 1),
                head=_heads(arr, adm, r, np.flatnonzero(blk)) / rb, fin=fin, n_full=n_full,
                size_full=r_full / max(n_full, 1e-9) / rb)


_FMT = ("lam {lam:.3f}  E[h] {Eh:.2f}  w1 {w1:.2f}  occ {occ:.2f} (little {little:.2f})  "
        "idx {idx:.1f} idx_ind {idx_ind:.1f}  skew {skew:.2f}  P>.8 {p80:.4f} gamma {gamma:.4f}"
        "  kappa {kappa:.2f}  big {big:.2f}  cap/r {cap_r:.1f}  blk {blk:.4f} wait {wait:.2f} "
        "dTTFT {dttft:.3f}  eps {eps:.4f} per_ep {per_ep:.0f}  head {head:.2f}  fin {fin:.2f} "
        "n_full {n_full:.1f} size_full {size_full:.2f}")


def closed_moments(cluster, w):
    """(result, moments): ``kvmodel.evaluate`` and the last scalar call of the closed form's
    occupancy moments (:func:`kvmodel.instance._openloop.slot_moments`: its arguments'
    rate, arrival SCV and feedback gain, and its mean, index, w1, w3 in r̄)."""
    seen, slots = [], []
    orig, orig_q = _ol.slot_moments, _ol.slot_queue

    def spy(probs, sizes, holds, lam, ca2, kappa, steer=0.0, shots=None):
        out = orig(probs, sizes, holds, lam, ca2, kappa, steer, shots)
        if not np.ndim(lam):
            seen.append(dict(lam=lam, ca2=ca2, kappa=kappa, steer=steer,
                             **dict(zip(("occ", "idx", "w1", "idx_ind"), out))))
        return out

    def spy_q(*args, **kw):
        out = orig_q(*args, **kw)
        if not np.ndim(args[0]):
            slots.append(out)
        return out
    _ol.slot_moments, _ol.slot_queue = spy, spy_q
    try:
        x = kvmodel.evaluate(cluster, w)
    finally:
        _ol.slot_moments, _ol.slot_queue = orig, orig_q
    mom = seen[-1] if seen else None
    if mom is not None and slots:  # the KV-slot wait and its probability (the last call's)
        mom.update(w_slot=float(slots[-1][0]), p_slot=float(slots[-1][1]))
    return x, mom


_CLOSED = ("  closed form: lam {lam:.3f}  ca2 {ca2:.2f}  w1 {w1:.2f}  occ {occ:.2f}  idx {idx:.1f} "
           "idx_ind {idx_ind:.1f} (Poisson: w3)  kappa {kappa:.2f}  steer {steer:.2f}")


def stationary_trace(n: int, rate: float, seed: int, exact_from: int | None = None):
    """``n`` requests with Poisson arrivals at ``rate`` and (prompt, output) pairs drawn i.i.d.
    from the Mooncake conversation trace (no prefix information: a stationary stream, without
    the trace's conversation order); ``exact_from = k``: requests k .. n−1 arrive at exactly
    ``rate`` (a Poisson process conditioned on its count, as benchmarks/queue_vs_sim.py)."""
    base = kvmodel.load_trace("mooncake-conversation")
    k = np.random.default_rng(10_000 + seed).integers(0, len(base.input_len), n)
    if exact_from is not None:
        a = poisson_requests(n, 1.0, seed=seed).arrival_s
        rate = rate * (a[-1] - a[exact_from]) / (n - exact_from - 1)
    return poisson_requests(n, rate, base.input_len[k], base.output_len[k], seed=seed)


def _stationary_cluster(routing: str, instances: int) -> kvmodel.Cluster:
    return kvmodel.Cluster(M, G, instances=instances, tp=1, precision="bf16", routing=routing,
                           hbm_cache_fraction=0.0, dram_B=0.0, ssd_B=0.0)


def _sim_rows(s, skip: int, cap: float) -> dict:
    """Pooled per-instance occupancy figures of one run (requests ``skip`` .. on)."""
    keep = np.arange(len(s.arrival_s)) >= skip
    rows = [instance_row(s, keep & (s.instance == i), cap, 1.0)
            for i in range(int(s.instance.max()) + 1)]
    return {k: np.array([r[k] for r in rows]) for k in ("occ", "idx", "Eh", "w1", "lam")}


def stationary(routing: str, instances: int, loads, n: int, seeds, skip: float,
               exact: bool = True):
    """Closed form against the simulator on a stationary stream (:func:`stationary_trace`)
    at ``loads`` x the closed form's saturation rate: per load, the closed form's mean
    occupancy and index (r̄), hold and w1, mean/p99 TTFT, and the simulator's, seeds pooled
    (per-instance figures averaged over instances and seeds, TTFT over all requests after the
    first ``skip`` share; ``capped``: the closed form's index of the pool bounded at its
    size, :func:`capped_index`). Returns the printed lines."""
    c = _stationary_cluster(routing, instances)
    w = kvmodel.Workload(stationary_trace(20_000, 1.0, 0))
    sat = float(max_rate_at_slo(c, w.with_rate(instances), ttft_slo_s=1e9, tpot_slo_s=1e9))
    out = [f"{routing} x{instances}: closed-form saturation {sat:.3f} req/s "
           f"({sat / instances:.3f} per instance)"]
    k = int(skip * n)
    for u in loads:
        x, mom = closed_moments(c, w.with_rate(u * sat))
        runs = [simulate(M, G, stationary_trace(n, u * sat, sd, k if exact else None),
                         instances=instances, tp=1, precision="bf16", routing=routing, seed=sd)
                for sd in seeds]
        cap = runs[0].kv_capacity_tokens
        rows = [_sim_rows(r, k, cap) for r in runs]
        sim = {key: np.mean([r[key] for r in rows]) for key in rows[0]}
        ttft = np.concatenate([r.ttft_s[k:] for r in runs])
        hold = float(mom["occ"] / (mom["lam"] * mom["w1"])) if mom else float("nan")
        closed = (float(mom["occ"]), float(mom["idx"]), hold, float(mom["w1"])) if mom else (
            (float("nan"),) * 4)
        cap_r = cap / float((runs[0].input_len + runs[0].output_len).mean())
        out.append(f"  load {u:.2f}: occ {closed[0]:.2f}/{sim['occ']:.2f}  idx {closed[1]:.2f} "
                   f"(capped {capped_index(closed[0], closed[1], cap_r):.2f})/"
                   f"{sim['idx']:.2f}  hold {closed[2]:.2f}/{sim['Eh']:.2f} s  w1 {closed[3]:.2f}/"
                   f"{sim['w1']:.2f}  TTFT {x.ttft_s:.3f}/{ttft.mean():.3f} s "
                   f"({x.ttft_s / ttft.mean() - 1:+.0%})  p99 {x.ttft_p99_s:.3f}/"
                   f"{np.quantile(ttft, 0.99):.3f} s ({x.ttft_p99_s / np.quantile(ttft, 0.99) - 1:+.0%})")
        out.append(_split_line(x, mom, np.concatenate([r.queue_s[k:] for r in runs]), ttft))
        out.append(_why_line([wait_split(r, k, cap) for r in runs]))
        rel = np.array([blocked_release(r, k) for r in runs])
        out.append(f"    blocked pool (waits over 1 s): releases {rel[:, 0].mean():.3f} r̄/s, "
                   f"arrivals then {rel[:, 1].mean():.3f} r̄/s (λ {u * sat / instances:.3f}), "
                   f"time share {rel[:, 2].mean():.3f}")
    return out


def _arrivals(s, i: int) -> tuple:
    """Instance ``i``'s requests in arrival order: (indices, arrival, queue wait, admission,
    finish, reserved tokens I + O)."""
    sel = np.flatnonzero(s.instance == i)
    sel = sel[np.argsort(s.arrival_s[sel], kind="stable")]
    arr, q = s.arrival_s[sel], s.queue_s[sel]
    r = (s.input_len[sel] + s.output_len[sel]).astype(float)
    return sel, arr, q, arr + q, arr + s.e2e_s[sel], r


def blocked_release(s, skip: int, block_s: float = 1.0) -> tuple:
    """(r̄ per second a pool releases while some request waits over ``block_s`` for room,
    r̄ per second arriving then, the share of time so blocked), instances pooled, from the
    ``skip``-th request on: the measured drain of a full pool, beside the slot law's
    (:func:`kvmodel.instance._openloop._full_drain`)."""
    rel = arr_r = T = span = 0.0
    for i in range(int(s.instance.max()) + 1):
        sel, arr, q, adm, done, r = _arrivals(s, i)
        r = r / r.mean()
        blk = (q > block_s) & (np.arange(len(sel)) >= skip / (int(s.instance.max()) + 1))
        span += arr[-1] - arr[min(skip // (int(s.instance.max()) + 1), len(arr) - 1)]
        iv = _episodes(arr, adm, blk)
        if not len(iv):
            continue
        a, b = iv[:, :1], iv[:, 1:]
        T += float((b - a).sum())
        rel += float((((done > a) & (done <= b)) * r).sum())
        arr_r += float((((arr > a) & (arr <= b)) * r).sum())
    return (rel / T, arr_r / T, T / span) if T > 0 else (float("nan"),) * 2 + (0.0,)


def wait_split(s, skip: int, cap: float, thr: float = 0.1):
    """Per request (from the ``skip``-th on), why its admission waited: (committed tokens
    at its arrival over the pool, KV part, step part) in a dict of arrays with its wait
    ``q`` and ``kv`` (no room at arrival: the pool's reserved tokens plus those of the
    requests queued ahead of it, FCFS, plus its own exceed ``cap``; else it waited only for
    a step boundary, the step running at its arrival), ``head`` (no room and nobody queued
    ahead: it heads a blocked episode), ``t_kv`` (arrival to the first finish that makes room
    for it and those ahead: the KV part; the rest of its wait, to admission, the step part)."""
    out = {k: [] for k in ("q", "kv", "head", "t_kv", "r")}
    for i in range(int(s.instance.max()) + 1):
        sel, arr, q, adm, done, r = _arrivals(s, i)
        t, level = occupancy(adm, done, r)
        cum = np.concatenate([[0.0], np.cumsum(r)])
        j = np.arange(len(arr))
        first = np.minimum(np.searchsorted(np.maximum.accumulate(adm), arr, "right"), j)
        lvl = level[np.maximum(np.searchsorted(t, arr, "right") - 1, 0)]
        lvl = np.where(np.searchsorted(t, arr, "right") > 0, lvl, 0.0)
        kv = lvl + cum[j] - cum[first] + r > cap
        t_kv = np.zeros(len(arr))
        for k in np.flatnonzero(kv & (q > 0)):  # first finish that makes room for k
            live = np.flatnonzero(done[:k + 1] > arr[k])  # in the pool or queued ahead, and k
            ev = np.sort(done[live][done[live] <= adm[k]])
            held = r[live].sum() - (r[live] * (done[live] <= ev[:, None])).sum(1)
            ok = np.flatnonzero(held <= cap)
            t_kv[k] = (ev[ok[0]] if len(ok) else adm[k]) - arr[k]
        keep = j >= skip
        for key, v in (("q", q), ("kv", kv), ("head", kv & (first == j)), ("t_kv", t_kv),
                       ("r", r)):
            out[key].append(v[keep])
    return {k: np.concatenate(v) for k, v in out.items()}


def _why_line(splits, thr: float = 0.1) -> str:
    """The simulator's admission waits by cause (:func:`wait_split`, seeds pooled): of the
    requests that waited over ``thr`` s, the share that waited only for a step (room at
    arrival), only for KV room (then admitted within ``thr`` of the finish that made room),
    for both; their mean waits; the share of all requests without room at arrival (the slot
    law's P(wait)), their mean KV part, and the mean size over r̄ of episode heads and of
    all requests blocked."""
    w = {k: np.concatenate([x[k] for x in splits]) for k in splits[0]}
    waited, step_part = w["q"] > thr, w["q"] - w["t_kv"]
    step, kv = waited & ~w["kv"], waited & w["kv"] & (step_part <= thr)
    both, n = waited & w["kv"] & (step_part > thr), len(w["q"])
    rb = w["r"].mean()

    def part(m):
        return f"{m.sum() / n:.3f} ({w['q'][m].mean() if m.any() else 0.0:.2f} s)"
    return (f"    why sim (waited > {thr} s: {waited.mean():.3f}): step {part(step)}  kv "
            f"{part(kv)}  both {part(both)}  no room at arrival {w['kv'].mean():.3f} "
            f"(KV part {w['t_kv'][w['kv']].mean() if w['kv'].any() else 0.0:.2f} s, step part "
            f"{step_part[w['kv']].mean() if w['kv'].any() else 0.0:.3f} s)  step-only wait "
            f"{w['q'][~w['kv']].mean():.3f} s  size heads {w['r'][w['head']].mean() / rb:.2f}"
            f" blocked {w['r'][w['kv']].mean() / rb:.2f}")


def _split_line(x, mom, adm, ttft) -> str:
    """The TTFT split, closed form / simulator: the running step and the KV-slot wait against
    the simulator's admission wait (``adm``: arrival to admission, which includes the step
    running at arrival), the share of requests admitted over 0.1 s after arrival against the
    closed form's slot-wait probability, the prefill carry wait, and the rest (the closed
    form's own service; the simulator's prefill queue behind admission and own service)."""
    e = next(iter(x.instances.values()))
    w_slot, p_slot = (mom["w_slot"], mom["p_slot"]) if mom and "w_slot" in mom else (np.nan,) * 2
    R, wait = float(e.step_residual_s), float(e.queue_wait_s)
    return (f"    split closed/sim: running step + slot wait {R:.3f} + {w_slot:.3f}/"
            f"{adm.mean():.3f} s (P {p_slot:.2f}/{np.mean(adm > 0.1):.2f} over 0.1 s, p99 "
            f"-/{np.quantile(adm, 0.99):.3f})  prefill wait {wait - w_slot:.3f}/-  after "
            f"admission {float(e.ttft_s) - wait - R:.3f}/{(ttft - adm).mean():.3f} s "
            f"(p99 -/{np.quantile(ttft - adm, 0.99):.3f})")


def capped_index(mean: float, idx: float, cap: float) -> float:
    """Index of dispersion of min(X, cap) for X a Gamma law of ``mean`` and index ``idx``
    (r̄): the closed form's occupancy as the pool bounds it (the queue above the cap waits
    outside the pool), to set beside the simulator's near saturation."""
    from scipy import special
    k, th = mean / idx, idx  # shape, scale
    x = cap / th
    m1 = mean * special.gammainc(k + 1.0, x) + cap * special.gammaincc(k, x)
    m2 = mean * th * (k + 1.0) * special.gammainc(k + 2.0, x) + cap * cap * special.gammaincc(k, x)
    return (m2 - m1 * m1) / m1


def sim_saturation(routing: str, instances: int, sat: float, n: int, overload: float = 1.2):
    """Requests/s the simulator serves from a backlogged queue (Poisson arrivals at
    ``overload`` x ``sat``; finishes n/6 .. 2n/3), over ``sat``."""
    s = simulate(M, G, stationary_trace(n, overload * sat, 1), instances=instances, tp=1,
                 precision="bf16", routing=routing)
    done = np.sort(s.arrival_s + s.e2e_s)
    lo, hi = n // 6, 2 * n // 3
    return (hi - lo) / (done[hi] - done[lo]) / sat


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routing", default="random,round_robin,least_loaded")
    ap.add_argument("--load", type=float, default=0.5)
    ap.add_argument("--block-s", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0, help="the simulator's (random's draws)")
    ap.add_argument("--arrival-seed", type=int, default=0, help="the Poisson arrivals' draws")
    ap.add_argument("--stationary", action="store_true",
                    help="i.i.d. lengths from the trace, Poisson arrivals, no prefix cache, at "
                         "--loads x the closed form's saturation (:func:`stationary`)")
    ap.add_argument("--instances", type=int, default=1, help="--stationary: instances")
    ap.add_argument("--loads", default="0.5,0.7,0.85,0.95", help="--stationary: loads")
    ap.add_argument("--n", type=int, default=6000, help="--stationary: requests per run")
    ap.add_argument("--seeds", type=int, default=3, help="--stationary: runs pooled")
    ap.add_argument("--skip", type=float, default=0.1, help="--stationary: warm-up share")
    ap.add_argument("--sat-n", type=int, default=0,
                    help="--stationary: requests of a saturation run (0: none)")
    a = ap.parse_args(argv)
    if a.stationary:
        for routing in a.routing.split(","):
            lines = stationary(routing, a.instances, [float(u) for u in a.loads.split(",")],
                               a.n, range(a.seed, a.seed + a.seeds), a.skip)
            print("\n".join(lines), flush=True)
            if a.sat_n:
                sat = float(lines[0].split("saturation ")[1].split()[0])
                print(f"  simulator saturation / closed form "
                      f"{sim_saturation(routing, a.instances, sat, a.sat_n):.3f}", flush=True)
        return 0
    w, trace, blocks = setting(a.load, a.arrival_seed)
    for routing in a.routing.split(","):
        x, mom = closed_moments(_cluster(routing), w)
        s = simulate(M, G, trace, instances=N, tp=1, precision="bf16", routing=routing,
                     prefix_cache_blocks=blocks, cache_tier="dram", seed=a.seed)
        e = next(iter(x.instances.values()))
        r_mean = float((s.input_len + s.output_len).mean())
        print(f"{routing}: TTFT closed {x.ttft_s:.3f} s, simulator {s.ttft_mean_s:.3f} s; "
              f"closed form per instance: batch {float(e.batch):.2f}, pool "
              f"{e.kv_capacity_tokens / r_mean:.1f} mean reservations")
        for i in range(N):
            row = instance_row(s, s.instance == i, s.kv_capacity_tokens, a.block_s)
            print(f"  inst {i}: " + _FMT.format(**row))
        if mom is not None:
            print(_CLOSED.format(**{k: float(v) for k, v in mom.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
