"""Open-loop continuous batching as a token-budget batch server (vectorised, SI units).

Prompts arrive at rate λ per replica (inter-arrival SCV ``ca2``); each brings ``new`` uncached
prompt tokens (SCV ``cs2`` across prompts). Every step runs the D decoding sequences and fills
the rest of the token budget, ``b = max_num_tokens − D``, with prefill chunks in arrival order,
so many prompts may share one step (the engine of :mod:`kvmodel.sim`).

**Steps.** A step carries prefill when at least one prompt's chunk is waiting at its start,
i.e. when a prompt arrived during the previous step. Steps are not independent: a busy step
is longer (``t_decode + a`` per prompt in it, a = a prompt's busy-step time), so more prompts
arrive during it and the next step is busier. The prompts of a step are Poisson with mean
``λ·(t_decode + a·N)`` given the N of the previous one: a Galton–Watson process with
immigration ``λ·t_decode`` per step and offspring mean ``m = λ·a`` (= 1 − t_decode/t at the
mean step t, by conservation). Its stationary probability of an empty step is
``exp(−λ·k·t_decode·H(m))``, ``H(m) = Σ_j (1 − z_j)``, ``z_0 = 0``, ``z_{j+1} = exp(−m(1 −
z_j))`` (the generating function iterated; ``k`` chunks per prompt: a prompt keeps k steps
busy), so ``f = 1 − exp(−λ·k·t_decode·H(m))``. For m → 0, H → 1 and t_decode → t: the
independent-step law ``1 − exp(−λ·t·k)``; near saturation H(m) ≪ 1/(1 − m) (the independent
law's exponent λ·t·k) and fewer, fuller busy steps carry the same work: a busy step carries
``P = λ·new·t / f`` prompt tokens (conservation: λ·new tokens per second), capped by ``b``
(then ``f = λ·new·t / b``). The mean step t solves ``t = f·t_busy(P) + (1 − f)·t_decode``.
Against :mod:`kvmodel.sim` (70B TP8 1024/128 at 0.95 of saturation: f 0.738 vs 0.732-0.80
measured, where the independent law gives 0.888; 8B 1024/128 at 0.95: 0.627 vs 0.632).
Throughput-max keeps the independent law at saturation (:func:`busy_share`).

**Chunks.** A prompt of n uncached tokens runs in ``ceil(n/b)`` chunks. Where the prompts
are a mixture (hit or length classes, probabilities π_j, uncached lengths n_j) the count ``k``
above is the expected ``Σ π_j·ceil(n_j/b)``, not the count of the mean prompt ``ceil(n̄/b)``:
chunk-steps start at rate λ·k and a busy step's smallest load is the mean chunk n̄/k, so the
count moves smoothly with the class probabilities instead of jumping when n̄ crosses b.

**Prefill queue.** Measured in tokens, the prefill work is served at ``μ = b / t_full`` tokens
per second while there is a backlog (``t_full``: a step with D decodes and a full budget of
prompt tokens; the decodes go first, prompts get the rest, as a fluid high-priority class),
so its utilisation is ``ρ = λ·new / μ``. In the fluid reading a prompt waits as in G/G/1
(Kingman) on token work, ``W = (ca2 + cs2)/2 · ρ/(1 − ρ) · new/μ``, then runs its own
``ceil(new/b)`` chunks in busy steps (*Split* keeps only its carry). ρ reaches 1 where the
token budget saturates: at the throughput-max rate when its batch is budget-bound
(``B = max_num_tokens·O/(new + O)``); when its batch is slot-bound (``B = bmax``) the KV slots
saturate first (next paragraph).

**KV slots.** A request holds one of the c = ``bmax`` slots from admission to its last token,
``h = W_prefill + S + (O − 1)·TPOT`` on average, so the occupancy N has mean ``N̄ = λ·h``
(Little; capped at ``c·λ/λ_sat``, so it reaches c exactly at the reported saturation rate).
An M/G/c (Erlang C, Allen–Cunneen) reading treats N as Poisson with independent holds; here
the holds are nearly deterministic (O − 1 steps) and all lengthen together when N rises (the
step time grows with the batch), so N is far more dispersed: Var(N) = z·N̄ with
``z = (c_a² + λt)/(1 − κ)²`` (the *TPOT* paragraph: decoders join in batches, feedback gain
``κ = λ(O − 1)·T'``; 2 to 22 in the simulator). As a diffusion below the cap N is then
Gaussian, N(N̄, V). Its local noise is that of its steps: arrivals (variance rate ``λ·c_a²``)
and departures, which come in the batches that finished prefill in one busy step,
``λ(1 + λt)``, so ``σ² = λ(c_a² + 1 + λt)``; the large V is a weak restoring force (the
feedback, the holds' memory), not more local noise. At the cap the batch is full and the
queue of waiting requests drifts down at ``θ = λ_sat − λ`` (a full batch releases slots at
the saturation rate). Zero net flux at the cap makes the probability mass above it (requests
waiting) ``M = σ²·f(c)/(2θ)`` against ``Φ(β)`` below, with ``β = (c − N̄)/√V`` and
``f(c) = φ(β)/√V``: ``P(wait) = M / (Φ(β) + M)``. A waiting request waits while the queue
above the cap drains, exponential with Allen–Cunneen's mean ``(c_a² + c_s²)/2 / θ`` with
deterministic holds (c_s² = 0), so ``W_slot = P(wait)·c_a²/(2θ)``.
For Poisson occupancy (z = 1, κ = 0, h = 1/μ) this is the Halfin–Whitt delay probability
``1/(1 + β·Φ(β)/φ(β))`` of M/M/c. W_slot is finite exactly while λ < λ_sat, so the prefill
and slot queues are both stable exactly below the reported saturation rate.

**KV-slot occupancy.** With request length classes the pool counts reserved tokens r (prompt
+ output, in mean reservations r̄), and its swings are not those of a count
(:func:`slot_moments`). Each class holds its slot for the mean hold plus what sets it apart
(:func:`class_holds`): its own prefill service beyond the mean, with the prefill it leaves
behind (× 1 + ρ_b(1 − t_d/t_busy)/(1 − κ_A)), and its own KV read in each of its O − 1 steps
(a token's KV bytes over the roofline's achieved HBM bandwidth). Little on tokens gives the
mean λ·E[r·h]; independent holds of renewal arrivals the variance λ·E[r²·h] + (c_a² − 1)·λ·
E[r·r'·min(h, h')] (long holds: GI/G/∞ peakedness). Two slow swings come on top. A prompt's
busy steps, Δ_j = S_j(1 − t_d/t_busy)/(1 − κ_A) with the prompts they let in, delay every
request in the pool: the tokens due to leave in the next Δ_j stay, a bump λ·Δ_j·E[r·1{h > t}]
beside the prompt's own r_j (a shot noise, variance 2λ²·E[r_j·Δ_j·E'[r'·min(h', h_j)]] +
λ³·E[Δ²]·E[r·r'·min(h, h')]); and a fuller pool reads more KV in every step, a feedback of
gain κ = λ(O − 1)·(read seconds per token)·c̄ that amplifies the swings by 1/(1 − κ) (a
restoring force (1 − κ)/h̄). A router that reads the instances' in-flight load (least
loaded and the other load-aware rules) sees the swings, which are requests held longer, and
sends arrivals elsewhere: its ``steer`` share of them is taken back. Against
``benchmarks/kv_slot_occupancy.py`` (Llama-3.1-8B on H100, Mooncake conversation, 4
instances) the index is 7.6 / 6.7 / 2.7 (random / round robin / least loaded) against the
simulator's 7.6-9.4 / 5.5-6.5 / 3.9-4.1, the mean 6.4 / 6.1 / 6.7 r̄ against 7.2-8.1 /
6.5-7.1 / 5.5-6.3. The slot queue of classes (:func:`_slot_head`) reads the occupancy as
demand: its free law a Gamma of those moments, of which the pool fits c' = c − (1 + c_r²)/2
(FCFS admits a head when its whole reservation fits, and a head that does not fit finds the
room left uniform on its own reservation, size-biased: mean E[r²]/(2E[r])). Demand above c'
queues: the Gamma's own mass there, S, waits (the slow swings carry the pool to its cap),
and a reflected queue above c' adds M = σ²·f(c')/(2θ) (zero net flux at c', as for the
count), P(wait) = (S + M)/(1 + M). A full pool drains the queue at θ = λ(1 − κ)(c' − X̄)/(X̄
+ κ(c' − X̄)) (+ λ·a, the share a of its arrivals a load-aware router still sends elsewhere,
:func:`pooled_steer`): it releases c'/(w1·h_c) r̄ per second, its holds h_c lengthened by
the feedback κ to λ·w1·h_c = X̄ + κ(c' − X̄), so θ vanishes exactly at the pool's edge X̄ =
c', where Little on tokens fails and the pool is reported unstable: P -> 1 and the wait -> ∞
there, consistently. The mean wait is Little's on the tokens queued, ((1 − κ)·E[(X − c')⁺] +
M·σ²/(2θ))/(1 + M) (of the free demand beyond c' a share κ is the pool's own requests held
longer, already in θ), over the r̄ per second arriving to wait: λ times the waiting
requests' mean size 1/(1 − c_r²/z) (:func:`_blocked_size`). Against the simulator
(``--stationary --instances 1 --routing round_robin``, 3 seeds x 6,000, load a share of the
closed form's 1.377 req/s): P(wait) 0.01/0.06/0.21/0.43 against the simulator's share
without room at arrival 0.007/0.070/0.25/0.55, the wait of a waiting request 7.2/8.6/12.6 s
at 0.7/0.85/0.95 against its KV part 6.6/10.1/22.3 s, the slot wait 0.04/0.43/1.81/5.4 s
against 0.04/0.46/2.50/12.3 s; mean TTFT −1/−0/−14/−48 %, p99 −19/−10/−15/−18 % at
0.5/0.7/0.85/0.95 (the router cells at 85 %, tests/policies/test_routing_vs_sim_load.py: all
14 finite cells inside). The law it replaces (a drain λ_sat/s_f − λ(1 − a) from the reported
saturation rate, the mass M alone, a waiting request waiting σ²/(2θλ)) was right in its mean
only by compensation: P half the simulator's, the wait of a waiting request 1.5-3x, and the
drain not zero at the pool's edge, so a 5 % fuller pool (the classes' own outputs) doubled
the wait (TTFT +19 -> +209 % at 0.85). What is left: at 0.95 both P and the conditional wait
are low (mean TTFT −48 %) (the slow swings' queue: the Gamma's index 21 against the
simulator's capped 4.6 says they are slow, and a queue fed by them outlasts the local σ²'s).
One request size keeps the count law above.

**The classes' KV read.** A decode step reads the KV of the sequences in it, and with length
classes those are not D sequences of the mean context c̄: the pool is hold-weighted (large
prompts hold longest), E[h·c]/E[h] − c̄ tokens more per sequence, and a request sees the
shots' swing: a long prompt's busy steps hold back the count N and the context sum K
together, and a request present at a step sees (Cov_s(N, K) − c̄·Var_s(N))/N̄ tokens more
than the count law's swings at the mean context, amplified by the KV-read feedback 1/(1 − κ)
(:func:`seen_context`, the shot covariance of :func:`slot_moments`' shot noise; at most the
pool's room above its mean occupancy, and a load-aware router takes back its ``steer`` share).
Each token costs the roofline's read seconds; the TPOT a request sees, so every hold, grows by
read_s·(D·(E[h·c]/E[h] − c̄) + seen): one step of the fixed point of hold and step time, the
class moments then taken at the longer holds. Against the simulator on a stationary stream
(``benchmarks/kv_slot_occupancy.py --stationary``: Llama-3.1-8B on H100, prompt and output
pairs drawn i.i.d. from the Mooncake conversation trace, Poisson, one instance, 3 seeds) the
mean hold goes from −7/−8/−7 % to −1/−3/−2 % of the simulator's at 0.5/0.7/0.85 of
saturation (the D-weighted TPOT 17.5 vs 18.7 ms at 0.5 before, 18.2 vs 18.0 after), the mean
occupancy from −13/−13/−10 % to −10/−9/−5 %. What is left of the mean is w1 (1.22 against
1.34 at 0.5): the trace's long prompts have longer outputs (band means 335/352/421/372
tokens from the shortest band up), which the classes, of one output length, do not carry
(band outputs alone give w1 1.28).

**Split.** A prompt that arrives during a step runs in the next one, together with every
prompt that arrived during the same step, and waits beyond it only for what that step's budget
cannot take. (1) The running step: an arrival lands in a step with probability proportional
to its length, so it waits ``R = E[t²]/(2·E[t]) = (t² + Var t)/(2t)``; under the *Steps* law a
step's prompt work given the previous step's length t_n is compound Poisson of mean λ·a·t_n,
so ``Var t = m²·Var t + λ·t·a²(c_a² + c_s²)/k``, i.e. ``λ·t·a²(c_a² + c_s²)/(k(1 − m²))``,
taken for the uncapped work: the budget caps a step's prompt work at t_full − t_decode (the
rest carries over), so Var t is that of the capped work, 0 in decode-only steps and Gamma
in busy ones (70B 2048/256 at 0.95: 12.6e-3 s² vs 13.7e-3 measured, 18.0e-3 uncapped).
Where prompts span several steps (k > 1, a class or the one length) that law's chunk marks
a/k (the mean prompt's work spread over its k chunks) miss what long prompts do: fill whole
steps, n_j/b − 1 of ``t_full`` beyond the first budget's worth (the partial last step taken
as that: continuous in n_j, so a choice of how much prefix to load sees no jump at multiples
of b), one after another. An arrival lands in one with their time share
``q = λ·Σ π_j(n_j/b − 1)⁺·t_full`` and waits
half of it; the rest of the time (decode-only and partial steps, short prompts sharing
them) is the law's: ``R = ½·q·t_full + (1 − q)·R_law`` (:func:`chunk_residual`; prompts
within the budget leave R_law). Against :mod:`kvmodel.sim` on the Mooncake conversation
lengths (one 8B instance, no prefix cache, 0.5/0.7/0.85/0.95 of saturation; the admission
wait of requests the KV pool had room for at arrival, the running step's remainder)
41/54/65/73 ms against 55/72/82/86 ms (the law alone 22/30/37/43: 16 % of the time is spent
in 8,192-token steps of 0.29 s at 0.5); the mean TTFT hardly moves (the carry wait counts
the longer R as work that ends before the prompt's own step). (2)
Its own step holds the prompts that arrived during the length-biased running step, ``λ·new·2R``
tokens (capped by the budget): a single-chunk prompt's service is ``t_decode + a(1 + 2λR)``
(70B 2048/256 at 0.5: 131.5 ms vs 130.8 measured); behind a carry (3) a one-chunk prompt's
own step is a full one, of which the carry's wait already holds the half before the prompt's first token (the
fluid drains up to it): the mates are ``λ·new·2R + ½·p_carry·(b − λ·new·2R)``. (3) The carry:
tokens beyond a step's budget wait for the next. A step gathers Y tokens (mean λ·new·t;
variance that of the step's Poisson count plus its length's, Var t above), read as a Gamma
law: the Galton–Watson steps make Y's right tail far heavier than a Gaussian's. Prompts come
whole, so a step carries when Y passes half a prompt below the budget (continuity
correction); 70B 2048/256 at 0.7/0.85/0.90/0.95: a carrying step in 0.4/1.7/3.3/7.8 % of
steps, the simulator 0.4/2.1/3.9/9.0 % (the Lindley tail of independent Gaussian steps gave
0.0/0.0/0.2/2.2 %). Once over the budget the steps are full ones (t_full), each gathering
λ·t_full·new tokens (variance ``v = λ·t_full·new²(c_a² + c_s²)``) and serving b: the carry
drifts down at ``δ = b(1 − ρ)`` per step, an exponential of the token server's Kingman mean
(*Prefill queue*; the simulator's carry in a carrying step at 0.85/0.90/0.95: 2,260/3,030/
4,410 tokens, Kingman 2,460/3,150/4,380). Zero net flux at the edge, as for the KV slots,
puts the mass ``M = v·f(edge)/(2δ)`` above it against F(edge) below: a step carries with
probability M/(F + M) and a prompt lands in one with that times t_full/t (the simulator's
time share of carrying steps 12.3/18.6/30.0 %, the model 10.2/15.5/26.0 %), then waits the
Kingman wait. Where prompts span several steps (k > 1) a long prompt's own chunks carry
over and a fluid reading may be larger: the Kingman wait less the work that ends before the
prompt's own step, ``R(1 + m)`` (the running step and the mates ahead). The larger of the
two is the prefill wait. Against :mod:`kvmodel.sim` (70B TP8 2048/256, exact rate, 3
seeds, model vs simulator at 0.85/0.90/0.95): mean TTFT 325/384/484 vs 325/385/500 ms;
running step 80/94/112 vs 81/95/118, own step 230/264/313 vs 224/255/306, carry 12/23/55
(the simulator's wait to a prompt's first chunk 17/32/73 ms; a prompt chunked across the
budget starts at once and waits in its own service instead). The TTFT percentiles add the
step position X, R plus the mates' share of the own step (``spread``), as 0 w.p. 1 − p, else
exponential, with p = 2·E[X]²/E[X²] matching its second moment (:func:`step_position`: the
mates come in whole prompts of a busy-step seconds each, which a plain exponential of the
mean misses; 70B 2048/256 at 0.3: p99 309 vs 336 ms measured, 243 with the plain one).

**TPOT.** A request's inter-token time is the step time averaged over the steps it decodes
in, i.e. weighted by D: ``E[D·t] / E[D] = t̄ + Cov(D, t)/E[D]``; and the mean step t̄ is not
the step at the mean D when the step time is convex in D. Let T(D) be the mean step at D
decoders (the root of t = h(t, D) above), with slope T' and curvature T'' (implicit function
theorem). D counts the prompts completed in its last O − 1 steps: decoders join in batches
(the prompts of one busy step, index of dispersion ≈ 1 + λt), and a larger D lengthens the
steps, which lets more prompts in, a feedback of gain ``κ = λ(O−1)·T'`` (< 1 when stable).
So ``Var(D) ≈ D·(1 + λt)/(1 − κ)²`` (at most ``(bmax − D)²``: D never exceeds the largest
batch), the mean step is ``t̄ = T + ½T''·Var(D)/(1 − κ)`` and ``TPOT = t̄ + T'·Var(D)/D``.
D drifts over about O steps, so one request's window sees one level of it: the spread of a
request's mean TPOT adds ``T'²·Var(D)`` to the step-kind noise averaged over its O − 1 steps.
Against :mod:`kvmodel.sim` on Llama-3.1-8B/70B (``benchmarks/queue_vs_sim.py``) this takes
mean TPOT from −17 % to −8..−13 % of the simulator at 95 % load (measured there: D's variance
is 2 to 22 times its mean from 50 % to 95 % load).

**Clusters.** Counted in steps, arrivals are not Poisson: a prompt's busy-step time lengthens
the steps in which further prompts arrive, each of which does the same, a Galton–Watson
cluster of mean offspring ``κ_A = f·(t_busy − t_decode)/t`` (the time a prompt's work adds to a
window of steps, times λ; :func:`cluster_gain`). A count over many steps (D, the slot
occupancy) then has index of dispersion ``1/(1 − κ_A)²``; its excess over Poisson,
``1/(1 − κ_A)² − 1``, is added to the slow D-feedback's index above. Measured in the simulator
(time-weighted occupancy where the slots rarely fill), index vs this sum: 8B 12,288/128 at 0.5
and 0.7: 2.8, 6.0 vs 3.2, 6.2; 8B 2048/256 at 0.7, 0.85: 4.3, 7.7 vs 4.3, 7.9; 70B TP8
1024/128 at 0.85, 0.95: 15.9, 43.9 vs 12.8, 48.3 (the feedback index alone: 1.4, 1.9, 2.8, 5.5,
4.5, 27.8; compounding the two instead of adding them gives 3.9 .. 600, far too wide). The
cluster part varies over a busy period, so a request sees it with the decode slope alone,
``T'·(1 − κ_A)``; its busy-step side is the next paragraph.

**Left-behind prefill.** A request's first token ends a busy step, and the prompts that came
during its prefill sojourn (wait w, own service S) are still queued: ``R₀ = ρ_b·(w + S)`` of
busy-step time (ρ_b = f·t_busy/t, the busy steps' time share, λ times a prompt's busy time).
A window of O − 1 steps from a random step starts with the step-average backlog
``w·t/t_busy + ½f·t_busy`` (time-average work w, Pollaczek–Khinchine, present only in busy
steps). Busy time in a window is its initial backlog plus the work arriving minus the backlog
at its end (work conservation), so a request's window holds ``X = R₀ − w·t/t_busy −
½f·t_busy`` more busy seconds than the mean step assumes, each a decode-only second longer by
``1 − t_decode/t_busy``: ``TPOT += X·(1 − t_decode/t_busy) / ((O − 1)(1 − κ_A))``, the longer
window letting in more prompts (the cluster gain); at most the window's (1 − f)(O − 1)
decode-only steps turn busy (none for O = 1). A share p_slot of prompts waits for a KV
slot and enters prefill when a finish frees one, paced, not in Poisson bursts: w and κ_A act
on the other 1 − p_slot (:func:`left_behind`). The longer TPOT lengthens the slot hold. In the
simulator (12,288/128 at 0.85) a request's decode window holds 9.5 busy steps more than f·(O − 1),
4.7 in its first 20 steps; D-weighted steps equal the measured mean TPOT to 0.1 %. This takes
the long-prompt cases' TPOT from −7..−37 % to −8..+6 % of the simulator from 30 % to 95 % load.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from kvmodel.base import xp as xp
from kvmodel.instance._queueing import kingman_wait, normal_cdf
from kvmodel.instance._roofline import Setup, attn_pairs, step_ops, step_time

__all__ = ["chunk_count", "busy_step", "busy_parts", "busy_ops", "step_parts", "own_service", "pair_seconds",
           "step_spread", "step_residual", "chunk_residual", "step_mates", "step_position", "overflow_wait",
           "token_server", "step_response", "fluctuation", "slot_queue", "cluster_gain",
           "left_behind", "class_holds", "slot_moments", "pooled_steer"]


def _share(lam, t, new, chunks, budget):
    """Busy-step probability f and prompt tokens per busy step P (capped by the budget)."""
    x = lam * t * chunks
    return _filled(x, lam, t, new, chunks, budget)


def _filled(x, lam, t, new, chunks, budget):
    """(f, P) from the busy steps' Poisson exponent ``x`` (f = 1 − e^(−x)): P = λ·new·t/f
    prompt tokens per busy step, at least one chunk, at most the budget (a full budget: f
    from the tokens' rate instead)."""
    f = -np.expm1(-x) if xp.is_array(x) else -math.expm1(-x)
    P = lam * new * t / xp.maximum(f, 1e-300)
    full = P > budget
    P = xp.minimum(xp.maximum(P, new / chunks), budget)
    f = xp.where(full, xp.minimum(lam * new * t / budget, 1.0), f)
    return f, P


_M_MAX = 0.999  # offspring mean kept below critical (the budget cap takes over there)


@functools.cache
def _progeny_table(points: int = 512, terms: int = 3000):
    """(m, H(m)) on a uniform grid of [0, ``_M_MAX``] (:func:`_progeny`), summed once over
    ``terms`` generations plus the geometric tail u/(1 − m) (u ≪ 1 − m by then)."""
    m = np.linspace(0.0, _M_MAX, points)
    u, total = np.ones_like(m), np.zeros_like(m)
    for _ in range(terms):
        total += u
        u = -np.expm1(-m * u)
    return m, total + u / (1.0 - m)


def _progeny(m):
    """H(m) = Σ_j (1 − z_j) with z_0 = 0, z_{j+1} = exp(−m(1 − z_j)): the expected number of
    generations, counted in steps, of a Poisson(m) Galton–Watson line started by one step's
    prompts; 1 for m = 0, at most 1/(1 − m). Interpolated in a table (one call)."""
    grid, H = _progeny_table()
    out = np.interp(m, grid, H)
    return out if np.ndim(out) else float(out)


def _gw_share(lam, t, t_d, new, chunks, budget):
    """Busy-step share f and prompt tokens P of a busy step under the step-to-step law (module
    docstring, *Steps*): the prompts of a step are those that arrived during the previous
    one, Poisson with mean λ·(t_decode + a·N) for N prompts in it (a = a prompt's busy time),
    a Galton–Watson process with immigration λ·t_decode and offspring mean m = λ·a = 1 −
    t_decode/t (conservation at the root). A step is idle with probability
    ``exp(−λ·k·t_decode·H(m))`` (:func:`_progeny`); for m → 0 this is ``exp(−λ·t·k)``.
    P = λ·new·t/f as before, capped by the budget."""
    m = xp.minimum(xp.maximum(1.0 - t_d / xp.maximum(t, 1e-300), 0.0), _M_MAX)
    x = lam * chunks * t_d * _progeny(m)
    return _filled(x, lam, t, new, chunks, budget)


def chunk_count(new, budget, cls=None):
    """Expected prefill chunks per prompt (*Chunks* in the module docstring): ``ceil(new/b)``
    for one prompt length, ``E[ceil(n_j/b)] = Σ π_j·ceil(n_j/b)`` over classes ``cls = (π, n)``
    (arrays with the classes on the last axis, :meth:`~kvmodel.instance._mixture.PrefixMix.uncached`)."""
    if cls is None:
        return xp.ceil(new / xp.minimum(new, budget))
    pi, n = cls
    b = np.asarray(budget)
    if b.ndim == 0 and n.ndim == 1:  # one configuration: a dot product over the classes
        return float(pi @ np.maximum(np.ceil(n / b), 1.0))
    k = np.divide(n, b[..., None])
    np.ceil(k, out=k)
    np.maximum(k, 1.0, out=k)  # a prompt within the budget: one chunk
    k = np.einsum("...k,...k->...", pi, k)  # no (configurations x classes) temporary
    return k if k.ndim else float(k)


def busy_step(s: Setup, t, D, lam, I, new, c, max_tokens, cls=None):
    """Residual of the mean step time ``t`` at D decoders, and the busy step's ops."""
    g, ops, _ = busy_parts(s, t, D, lam, I, new, c, max_tokens, cls)
    return g, ops


def busy_parts(s: Setup, t, D, lam, I, new, c, max_tokens, cls=None, with_ops=True):
    """(:func:`busy_step`'s residual, its ops, :func:`step_parts`) from one pass: a root
    finder's last residual gives the parts at the root without computing its steps again
    (``with_ops`` False: ops None, the step times alone; :func:`busy_ops` at the root's D
    and P gives them)."""
    budget = xp.maximum(max_tokens - D, 1.0)
    chunks = chunk_count(new, budget, cls)
    t_d = step_time(s, D, D, 0.0, D * c, D * c, D)
    f, P = _gw_share(lam, t, t_d, new, chunks, budget)
    if with_ops:
        ops, _, t_p = busy_ops(s, D, P, I, new, c)
    else:
        ops, t_p = None, step_time(s, *_busy_args(s, D, P, I, new, c))
    return f * t_p + (1.0 - f) * t_d - t, ops, (f, t_p, t_d, P)


def busy_ops(s: Setup, D, P, I, new, c):
    """:func:`step_ops` of a busy step: D decoders at context c and P prompt tokens of
    ``new``-token prompts (their causal pairs per layer kind)."""
    return step_ops(s, *_busy_args(s, D, P, I, new, c))


def _busy_args(s: Setup, D, P, I, new, c) -> tuple:
    """:func:`busy_ops`' step_ops arguments."""
    return D + P, D + P / new, attn_pairs(s, P * (I - new / 2.0), I, new), D * c, D * c, D + P


def _busy_residual(s: Setup, t, D, lam, I, new, c, max_tokens, cls=None):
    """:func:`busy_step`'s residual alone for array ``t``, ``D`` (element-wise, the same
    numbers): the decode-only step, then the busy step it shapes."""
    budget = xp.maximum(max_tokens - D, 1.0)
    chunks = chunk_count(new, budget, cls)
    t_d = step_time(s, D, D, 0.0, D * c, D * c, D)
    f, P = _gw_share(lam, t, t_d, new, chunks, budget)
    t_p = step_time(s, *_busy_args(s, D, P, I, new, c))
    return f * t_p + (1.0 - f) * t_d - t


def step_parts(s: Setup, t, D, lam, I, new, c, max_tokens, cls=None):
    """(f, t_busy, t_decode, P) of the mean step: busy share, the two step kinds' times and
    the prompt tokens of a busy step."""
    return busy_parts(s, t, D, lam, I, new, c, max_tokens, cls)[2]


def own_service(n, t_p, t_d, P, budget, others):
    """Seconds a prompt of ``n`` uncached tokens spends in its own busy steps: each of its
    ceil(n/b) steps costs t_d plus σ = (t_p − t_d)/P per prompt token, for its chunk and the
    ``others`` tokens of the prompts that joined the step with it (:func:`step_mates`), at
    most the budget its chunk leaves."""
    sigma = (t_p - t_d) / xp.maximum(P, 1e-300)
    mine = xp.ceil(n / xp.minimum(n, budget))
    return mine * (t_d + sigma * xp.minimum(others, budget - n / mine)) + sigma * n


def step_spread(lam, t, t_d, t_full, a, chunks, ca2, cs2, share=1.0):
    """Variance of the step time under the step-to-step law (module docstring, *Split*): a
    step's prompt work, given the previous step's length t_n, is compound Poisson with mean
    λ·a·t_n (a = a prompt's busy seconds, chunk marks a/k at rate λ·k, mark SCV ``cs2``,
    arrival SCV ``ca2``: a count's variance λ·t·ca2), so Var(t) = m²·Var(t) + λ·t·a²(ca2 +
    cs2)/k, m = 1 − t_decode/t: ``λ·t·a²(ca2 + cs2)/(k(1 − m²))``. The budget caps a step's
    prompt work at t_full − t_decode (the rest carries over): the variance of the capped work
    (:func:`_capped_variance`; ``share``: the busy steps' share f)."""
    m = step_memory(t, t_d)
    var = lam * t * a * a * (ca2 + cs2) / (chunks * (1.0 - m * m))
    return _capped_variance(xp.maximum(t - t_d, 0.0), var, xp.maximum(t_full - t_d, 0.0), share)


def step_memory(t, t_d):
    """The step-to-step law's coefficient m = 1 − t_decode/t (:func:`step_spread`): a step's
    prompt work is m times the previous step's length in prompts' seconds, so step times are
    AR(1) with lag-k correlation m^k (kept below critical)."""
    return xp.minimum(xp.maximum(1.0 - t_d / xp.maximum(t, 1e-300), 0.0), _M_MAX)


def _capped_variance(mean, var, cap, share):
    """Var(min(Z, cap)) of a step's prompt work Z (mean, variance): 0 in a decode-only step,
    and in a busy one (probability ``share``; at least mean²/(var + mean²), where the two-point
    law alone has the variance) Gamma-distributed with the matching conditional mean and
    variance (:func:`_capped_moments`). Against :mod:`kvmodel.sim` (70B TP8 2048/256 at 0.85,
    0.95, in 1e-3 s²): 6.2, 12.6 vs 6.2, 13.7 measured (uncapped 6.6, 18.0)."""
    m1, m2, _ = _capped_moments(mean, var, cap, share)
    out = xp.maximum(m2 - m1 * m1, 0.0)
    return out if xp.is_array(out) else float(out)


def _capped_moments(mean, var, cap, share):
    """First three raw moments of min(Z, cap) for the law of :func:`_capped_variance`, from the
    Gamma partial moments ``E[Z^j; Z < cap] = θ^j·Γ(k + j)/Γ(k)·P(k + j, cap/θ)`` (shape k,
    scale θ, P the regularised lower incomplete gamma function)."""
    mean, var = xp.maximum(mean, 1e-300), xp.maximum(var, 1e-300)
    # at least the share whose two-point law (0 or the busy mean) alone has the variance
    f = xp.minimum(xp.maximum(share, mean * mean / (var + mean * mean)), 1.0)
    cm = mean / f  # a busy step's mean work
    cv = xp.maximum((var + mean * mean) / f - cm * cm, 1e-9 * cm * cm)
    k, theta = cm * cm / cv, cv / cm
    x = cap / theta
    above = 1.0 - _gammainc(k, x)  # P(Z >= cap | busy)
    rising, out = 1.0, []
    for j in (1, 2, 3):
        rising = rising * theta * (k + j - 1.0)  # θ^j·Γ(k + j)/Γ(k)
        out.append(f * (rising * _gammainc(k + j, x) + cap ** j * above))
    return tuple(out)


def step_position(lam, t, t_d, t_full, a, var, share, ca2):
    """Probability p of the step-position law (module docstring, *Split*): the running step's
    residual U·L and the busy seconds ``a`` of each of its K mates, L length-biased (its
    moments E[t^(j+1)]/E[t] under the capped step law, :func:`_capped_moments`), U uniform,
    K Poisson in λ·L with index ``ca2``; the spread read as 0 w.p. 1 − p, else exponential,
    ``p = 2·E[X]²/E[X²]`` (at most 1) matching its second moment."""
    z1, z2, z3 = _capped_moments(xp.maximum(t - t_d, 0.0), var, xp.maximum(t_full - t_d, 0.0),
                                 share)
    e1 = t_d + z1
    L1 = (t_d * t_d + 2.0 * t_d * z1 + z2) / e1  # E[L], E[L²] of the length-biased step
    L2 = (t_d ** 3 + 3.0 * t_d * t_d * z1 + 3.0 * t_d * z2 + z3) / e1
    g = a * lam  # the mates' busy seconds per second of step; X1, X2 over (1 + g), (1 + g)²
    u, v = 1.0 / (1.0 + g), g / (1.0 + g)  # (scale-free: no overflow at absurd rates)
    X1 = (0.5 * u + v) * L1
    X2 = (L2 / 3.0 * u + v * L2) * u + v * (a * ca2 * L1 * u + v * L2)
    return xp.minimum(2.0 * X1 * X1 / xp.maximum(X2, 1e-300), 1.0)


def step_residual(t, var):
    """Mean remaining time of the step an arrival lands in: E[t²]/(2·E[t]) = (t² + Var)/(2t)."""
    return (t * t + var) / (2.0 * xp.maximum(t, 1e-300))


def chunk_residual(lam, t_full, budget, cls, R):
    """The running step's mean remainder where long prompts fill whole steps (module
    docstring, *Split*, (1)): a class-j prompt (rate λ·π_j, ``cls = (π, n)`` as
    :func:`chunk_count`) fills ``n_j/b − 1`` steps of ``t_full`` beyond its first budget's
    worth (its last, partial step taken as that: continuous in n_j, exact where n_j is a
    multiple of b). An arrival lands in a step with probability its length times its rate: in a
    full step with the full steps' time share ``q = λ·Σ π_j(n_j/b − 1)⁺·t_full``, waiting half
    of it, and in the rest of the time (decode-only and partial steps, with the short prompts
    that share them) as the step-to-step law says, ``R``:
    ``½·q·t_full + (1 − q)·R``. Prompts within the budget leave ``R``."""
    pi, n = cls
    if not xp.is_array(lam, t_full, budget, R) and np.ndim(n) == 1:
        b, t_full = float(budget), float(t_full)  # one configuration: the classes in floats
        q = float(lam) * t_full * sum(p * max(x / b - 1.0, 0.0)
                                      for p, x in zip(pi.tolist(), n.tolist()))
        return 0.5 * q * t_full + max(1.0 - q, 0.0) * float(R)
    full = np.maximum(n / np.asarray(budget, dtype=float)[..., None] - 1.0, 0.0)
    q = lam * (pi * full).sum(-1) * t_full  # time share of full steps
    return 0.5 * q * t_full + xp.maximum(1.0 - q, 0.0) * R


def step_mates(lam, new, R):
    """Prompt tokens that join a prompt's first step: those that arrived during the step it
    landed in, Poisson in its length-biased length 2R (R: :func:`step_residual`)."""
    return lam * new * 2.0 * R


def overflow_wait(lam, new, t, var, budget, t_full, ca2, cs2, fluid):
    """Wait of a prompt for the prefill tokens carried over beyond the steps' budget (module
    docstring, *Split* (3)). The tokens Y a step gathers (mean λ·new·t, variance λ·t·new²(ca2 +
    cs2) + (λ·new)²·Var(t)) are read as a Gamma law; above the budget b the carry is a queue
    of full steps, each gathering λ·t_full·new tokens (variance ``v = λ·t_full·new²(ca2 +
    cs2)``) and serving b, drift ``δ = b(1 − ρ)``. Zero net flux at b puts the mass
    ``M = v·f(b)/(2δ)`` above it against F(b) below: a step carries with probability ``M/(F(b)
    + M)``, a prompt lands in one with that times t_full/t (carrying steps are full ones) and
    then waits for the carry, exponential with the token server's Kingman mean ``W``.
    ``fluid = (ρ, W, ahead)``: the token server's utilisation and Kingman wait
    (:func:`token_server`) and the work ahead that ends before the own step; where prompts span
    several steps W − ahead (the fluid reading) may be the larger. The wait's mean is the
    larger reading's, its mean once waiting the larger of the two readings' (the carry's W,
    the fluid's (W − ahead)/ρ: a prompt waits on the fluid only when it finds the server
    busy), and its probability their ratio: the carry's probability where the carry holds
    both, ρ where the fluid does, and continuous where they cross (taking each reading's own
    probability with its mean jumped there: p_wait 0.90 -> 0.67 and p99 TTFT +13 % for a 6 %
    larger DRAM cache, studies/dram_for_slo.md). Returns (mean wait, probability of waiting,
    probability of landing behind a carry); ρ >= 1 is the caller's to mask."""
    rho, w_tok, ahead = fluid
    lam = xp.where(rho < 1.0, lam, 0.5 * lam / xp.maximum(rho, 1e-300))  # ρ >= 1: masked (ρ 0.5)
    mu = xp.maximum(lam * new * t, 1e-300)
    s2 = xp.minimum(lam * t * new * new * (ca2 + cs2) + (lam * new) * (lam * new) * var, 1e300)
    s2 = xp.maximum(s2, 1e-300)
    edge = budget - 0.5 * xp.minimum(new, budget)  # prompts come whole: half a prompt below b
    shape, x = mu * mu / s2, edge * mu / s2  # Gamma(shape, s2/mu) at the budget's edge
    dens = np.exp((shape - 1.0) * np.log(x) - x - _gammaln(shape)) * mu / s2
    below = _gammainc(shape, x)
    drift = budget * xp.maximum(1.0 - rho, 1e-9)
    mass = lam * t_full * new * new * (ca2 + cs2) * dens / (2.0 * drift)
    p = xp.minimum(mass / xp.maximum(below + mass, 1e-300) * t_full / xp.maximum(t, 1e-300), 1.0)
    p = p if xp.is_array(p) else float(p)
    w_f = w_tok - ahead  # fluid: the token work ahead less what ends before the own step
    mean = xp.maximum(p * w_tok, w_f)
    once = xp.maximum(w_tok, w_f / xp.maximum(rho, 1e-300))  # mean wait of a waiting prompt
    return mean, xp.where(mean > 0.0, mean / xp.maximum(once, 1e-300), xp.maximum(p, 1e-12)), p


def pair_seconds(s: Setup, t_p, D, P, I, new, c):
    """Seconds one more causal attention pair of prompt tokens adds to a busy step: the slope
    of the step time between the busy step's pairs and twice as many (a prompt longer than
    the mean computes more pairs per token; :meth:`~kvmodel.instance._mixture.PrefixMix.own`)."""
    pairs = P * (I - new / 2.0)
    t2 = step_time(s, D + P, D + P / new, 2.0 * attn_pairs(s, pairs, I, new), D * c, D * c,
                   D + P)
    return (t2 - t_p) / xp.maximum(pairs, 1e-300)


def token_server(s: Setup, lam, D, I, new, c, max_tokens, ca2, cs2):
    """Utilisation and mean wait of the token-budget prefill server (module docstring).

    Returns ``(rho, wait_s, t_full)``; ``rho`` >= 1 marks an unstable element (its wait is
    then computed at rho = 0.5 and must be masked by the caller)."""
    budget = xp.maximum(max_tokens - D, 1.0)
    t_full = step_time(s, D + budget, D + budget / new,
                       attn_pairs(s, budget * (I - new / 2.0), I, new), D * c, D * c, D + budget)
    per_prompt = new * t_full / budget  # seconds of full-budget service per prompt
    rho = lam * per_prompt
    rho_s = xp.where(rho < 1.0, rho, 0.5)
    return rho, kingman_wait(rho_s, ca2, cs2, per_prompt), t_full


_DT = np.array([0.0, 1.0, -1.0, 0.0, 1.0])  # stencil of (t, D) points around the root
_DD = np.array([0.0, 0.0, 0.0, 1.0, 1.0])


def step_response(s: Setup, t, D, lam, I, new, c, max_tokens, cls=None):
    """T'(D) and T''(D) of the mean step T(D) at fixed λ, where T solves t = h(t, D)
    (:func:`busy_step`), by the implicit function theorem on finite differences of h at five
    points evaluated in one vectorised call."""
    e, d = xp.maximum(0.02 * t, 1e-9), xp.maximum(0.05 * D, 0.5)
    nd = np.ndim(t + D + e)
    axis = (slice(None),) + (None,) * nd
    tt, DD = t + _DT[axis] * e, D + _DD[axis] * d
    h = _busy_residual(s, tt, DD, lam, I, new, c, max_tokens, cls) + tt
    h0, hp, hm, hd, hpd = h[0], h[1], h[2], h[3], h[4]
    h_t, h_tt = (hp - hm) / (2.0 * e), (hp - 2.0 * h0 + hm) / (e * e)
    h_D, h_tD = (hd - h0) / d, (hpd - hp - hd + h0) / (e * d)
    den = np.maximum(1.0 - h_t, 1e-6)
    T1 = np.maximum(h_D / den, 0.0)
    T2 = np.maximum((h_tt * T1 * T1 + 2.0 * h_tD * T1) / den, 0.0)
    return (T1, T2) if nd else (float(T1), float(T2))


def fluctuation(t, T1, T2, D, lam, O, bmax, kA=0.0):
    """Mean step and D-weighted TPOT under the fluctuations of D (module docstring).

    Var(D) = D·(1 + λt)/(1 − κ)² (decoders join in batches of a busy step's prompts, index of
    dispersion 1 + λt, amplified by the feedback κ = λ(O−1)·T'); the mean step rises by
    ½T''·Var/(1 − κ) (convexity, fed back through D = λ(O−1)t) and a request sees
    t + T'·Var/D. D never exceeds the largest batch ``bmax``: Var(D) <= (bmax − D)².
    ``kA``: the busy steps' cluster gain (:func:`cluster_gain`); its excess variance
    D·(1/(1 − κ_A)² − 1) adds the decode slope T'·(1 − κ_A) (T' without the busy-step
    amplification, which :func:`left_behind` carries) over D. Returns (mean step, TPOT,
    Var(D)) with the slow part of Var(D), the level a request's window sees."""
    kappa = xp.minimum(lam * (O - 1.0) * T1, KAPPA_MAX)
    var = xp.minimum(D * (1.0 + lam * t) / (1.0 - kappa) ** 2, (bmax - D) ** 2)
    t_mean = t + 0.5 * T2 * var / (1.0 - kappa)
    v_c = xp.minimum(D * _cluster_excess(kA), xp.maximum((bmax - D) ** 2 - var, 0.0))
    seen = (T1 * var + T1 * (1.0 - kA) * v_c) / xp.maximum(D, 1e-9)
    return t_mean, t_mean + seen, var


KAPPA_MAX = 0.9



def slot_queue(lam, hold, t, T1, O, bmax, lam_sat, ca2, kA=0.0, cr2=0.0, moments=None,
               steer=0.0):
    """Wait for one of ``bmax`` KV slots (module docstring, *KV slots*).

    ``hold``: mean seconds a request holds its slot; ``t``, ``T1``: mean step and its slope
    in the batch (:func:`step_response`); ``lam_sat``: the rate at which a full batch releases
    slots; ``kA``: the busy steps' cluster gain (:func:`cluster_gain`), whose excess variance
    1/(1 − κ_A)² − 1 adds to the index of dispersion; ``cr2``: SCV of the KV tokens a request
    reserves (:func:`_reserved`: the slots are ``bmax`` mean reservations of a token pool).
    ``moments``: the token occupancy of request classes (:func:`slot_moments`), which replaces
    the count law by a head-of-line one (:func:`_slot_head`; ``steer``: a load-aware router's
    share; None: one request size, the count law below).
    Returns ``(wait, p_wait, occupancy)``: mean wait, probability of waiting and the mean
    occupancy; the wait of a waiting request is exponential with mean ``wait/p_wait``."""
    if moments is not None:
        return _slot_head(lam, t, bmax, lam_sat, ca2, cr2, moments, steer)
    kappa = xp.minimum(lam * (O - 1.0) * T1, KAPPA_MAX)
    z = (ca2 + lam * t) / (1.0 - kappa) ** 2 + _cluster_excess(kA)  # occupancy's dispersion
    theta = lam_sat - lam  # drift of the queue above the cap
    ok = theta > 0
    N = xp.minimum(lam * hold, bmax * lam / lam_sat)
    lam = xp.where(ok, lam, 0.5 * lam_sat)  # unstable: the law's values are masked below
    N_s = xp.where(ok, N, 0.5 * bmax)
    z, sigma2, ca2 = _reserved(xp.where(ok, z, 1.0), lam * (ca2 + 1.0 + lam * t), lam, ca2, cr2)
    V = xp.maximum(N_s * z, 1e-12)
    sd = V ** 0.5
    beta = (bmax - N_s) / sd
    dens = np.exp(-0.5 * beta * beta) / (_SQRT_2PI * sd)  # occupancy density at the cap
    mass = sigma2 * dens / (2.0 * xp.where(ok, theta, 1.0))  # the queue's share
    p = mass / (normal_cdf(beta) + mass)
    wait = p * ca2 / (2.0 * xp.where(ok, theta, 1.0))
    return xp.where(ok, wait, 0.0), xp.where(ok, p, 1.0), N


def class_holds(hold, S_k, S, O, amp, read_s, c_k, c, outs=None, tpot=0.0):
    """Each class's KV-slot hold (seconds): the mean ``hold`` plus what sets the class apart
    (module docstring, *KV-slot occupancy*): its own prefill service ``S_k`` beyond the mean
    ``S`` with the prefill it leaves behind (``amp``: 1 + ρ_b(1 − t_d/t_busy)/(1 − κ_A)), and
    its own KV read in each of its O − 1 decode steps, ``read_s`` seconds per token of its
    context ``c_k`` beyond the mean ``c``. Holds average to ``hold`` where S, c are the
    classes' means. ``outs``: each class's own output O_k (None: all at ``O``), which adds
    (O_k − O)·``tpot`` seconds of decode and reads in its O_k − 1 steps (``c`` then the
    decode steps' mean context, weighted by π_k·(O_k − 1))."""
    if outs is None:
        return [xp.maximum(hold + amp * (s_k - S) + (O - 1.0) * read_s * (ck - c), 0.0)
                for s_k, ck in zip(S_k, c_k)]
    return [xp.maximum(hold + amp * (s_k - S) + (o - O) * tpot + (o - 1.0) * read_s * (ck - c),
                       0.0) for s_k, ck, o in zip(S_k, c_k, outs)]


def slot_moments(probs, sizes, holds, lam, ca2, kappa, steer=0.0, shots=None):
    """(mean, index of dispersion, w1, w3) of a pool's reserved tokens, in mean reservations
    r̄, from request classes (``probs``, reserved tokens ``sizes``, ``holds`` seconds;
    module docstring, *KV-slot occupancy*): Little on tokens, mean λ·E[r·h]/r̄; independent
    holds of renewal arrivals (SCV ``ca2``), variance λ·E[r²·h] + (c_a² − 1)·λ·E[r·r'·min(h,
    h')] (r̄² units); ``shots``: each class's prefill delays every request in the pool by Δ_j
    seconds, holding back the tokens due to leave, λ·Δ_j·E[r·1{h > t}] at t after it
    (a shot noise: 2λ²·E[r_j·Δ_j·E_i[r_i·min(h_i, h_j)]] + λ³·E[Δ²]·E[r·r'·min(h, h')]);
    the pool's feedback on its holds (gain ``kappa``) amplifies the
    variance by 1/(1 − κ) (a restoring force (1 − κ)/h̄). A load-aware router (``steer``)
    removes that share of the swings above independent holds; its arrivals follow the pool
    (it sends them where requests left), not a renewal stream beside it, so the same share
    of the independent holds keeps Poisson's variance (c_a² → 1: its smoothing is the steer;
    least loaded, steer 1, SCV 0.43, on the benchmark below: index 3.2 against the
    simulator's 3.1-4.3, 2.7 with the renewal reduction; a router over n pools takes back
    1 − 1/n, :func:`pooled_steer`). w1 = E[r·h]/(r̄·h̄), w3 =
    E[r²·h]/(E[r·h]·r̄) (the index of Poisson arrivals without shots or feedback)."""
    rb, hb, rh, r2h, pair, cross, sq = _class_sums(probs, sizes, holds, shots)
    mean = lam * rh / rb
    ind = lam * (r2h + (1.0 - steer) * (ca2 - 1.0) * pair)  # independent holds
    gain = 1.0 / (1.0 - xp.minimum(kappa, KAPPA_MAX))
    slow = ind * (gain - 1.0)
    if shots is not None:
        slow = slow + (2.0 * lam * lam * cross + lam * lam * lam * sq * pair) * gain
    var = (ind + slow * (1.0 - steer)) / (rb * rb)
    return mean, var / xp.maximum(mean, 1e-300), rh / (rb * hb), r2h / (rh * rb)


def _class_sums(probs, sizes, holds, shots):
    """E[r], E[h], E[r·h], E[r²·h], E[r·r'·min(h, h')], E[r·Δ·E'[r'·min(h', h)]], E[Δ²] over
    the classes (``shots`` Δ, None: 0), the pairs from the holds in ascending order:
    E'[r'·min(h', h_j)] = Σ_{h_i <= h_j} π_i·r_i·h_i + h_j·Σ_{h_i > h_j} π_i·r_i."""
    shots = [0.0] * len(probs) if shots is None else shots
    if xp.is_array(*probs, *sizes, *holds, *shots):
        return _class_sums_array(probs, sizes, holds, shots)
    rows = sorted(zip(map(float, holds), map(float, sizes), map(float, probs), map(float, shots)))
    rb = hb = rh = r2h = pair = cross = sq = done = part = 0.0
    total = sum(p * r for p, r in zip(probs, sizes))
    for h, r, p, d in rows:
        a = p * r
        rb, hb, rh, r2h, sq = rb + a, hb + p * h, rh + a * h, r2h + a * r * h, sq + p * d * d
        part, done = part + a * h, done + a
        near = part + h * (total - done)
        pair, cross = pair + a * near, cross + a * d * near
    return rb, hb, rh, r2h, pair, cross, sq


def _by_hold(probs, values, holds, shots) -> tuple:
    """The classes' (probabilities, ``values``, holds, shots) over configuration arrays,
    stacked on a last axis in the order of their holds."""
    n = len(probs)
    X = np.stack(np.broadcast_arrays(*probs, *values, *holds, *shots), -1).astype(float)
    order = np.argsort(X[..., 2 * n:3 * n], axis=-1)
    return tuple(np.take_along_axis(X[..., k * n:(k + 1) * n], order, -1) for k in range(4))


def _class_sums_array(probs, sizes, holds, shots):
    """:func:`_class_sums` over configuration arrays (the classes stacked on a last axis)."""
    P, R, H, D = _by_hold(probs, sizes, holds, shots)
    A = P * R
    near = np.cumsum(A * H, -1) + H * (A.sum(-1, keepdims=True) - np.cumsum(A, -1))
    return tuple(x.sum(-1) for x in (A, P * H, A * H, A * R * H, A * near, A * D * near,
                                      P * D * D))


def seen_context(probs, ctx, holds, lam, kappa, shots):
    """KV tokens a decode step reads beyond ``D·c̄`` (c̄ = E[c], the classes' mean context
    ``ctx``), per decoder seen (module docstring, *KV-slot occupancy*): (1) the pool is
    hold-weighted, E[h·c]/E[h] − c̄ per sequence, and (2) the prefill shots Δ_j (seconds)
    swing the count N and the context sum K together, so a request sees
    (Cov_s(N, K) − c̄·Var_s(N))/N̄ more, the shot covariance beyond the count's own swings
    at the mean context (those are the count law's, :func:`fluctuation`), amplified by the
    feedback 1/(1 − ``kappa``). The shot covariance of marks a, b (the shot noise of
    :func:`slot_moments`): λ²·E[Δ_j(a_j·M_b(j) + b_j·M_a(j))] + λ³·E[Δ²]·E[a_j·M_b(j)],
    M_b(j) = E'[b'·min(h', h_j)]. Returns (per-sequence weighting, seen excess) in tokens."""
    sums = (_context_sums_array if xp.is_array(*probs, *ctx, *holds, *shots)
            else _context_sums)(probs, ctx, holds, shots)
    hb, cb, hc, sq, d1, dc, e1, ec = sums
    var_n = 2.0 * lam * d1 + lam * lam * sq * e1  # Var_s(N)/λ, Cov_s(N, K)/λ
    cov = lam * dc + lam * lam * sq * ec
    gain = 1.0 / (1.0 - xp.minimum(kappa, KAPPA_MAX))
    seen = (cov - cb * var_n) * gain / xp.maximum(hb, 1e-300)
    out = (hc / xp.maximum(hb, 1e-300) - cb, seen)
    return tuple(np.broadcast_arrays(*out)) if xp.is_array(*out) else out


def _context_sums(probs, ctx, holds, shots):
    """E[h], E[c], E[h·c], E[Δ²], E[Δ·M_1], E[Δ(M_c + c·M_1)], E[M_1], E[M_c] over the
    classes (:func:`seen_context`), scalars: the classes in ascending hold."""
    rows = sorted(zip(map(float, holds), map(float, ctx), map(float, probs), map(float, shots)))
    tp = sum(p for _, _, p, _ in rows)
    tc = sum(p * c for _, c, p, _ in rows)
    hb = cb = hc = sq = d1 = dc = e1 = ec = a1 = ac = f1 = fc = 0.0
    for h, c, p, d in rows:
        a1, ac, f1, fc = a1 + p * h, ac + p * c * h, f1 + p, fc + p * c
        m1, mc = a1 + h * (tp - f1), ac + h * (tc - fc)
        hb, cb, hc, sq = hb + p * h, cb + p * c, hc + p * h * c, sq + p * d * d
        d1, dc, e1, ec = d1 + p * d * m1, dc + p * d * (mc + c * m1), e1 + p * m1, ec + p * mc
    return hb, cb, hc, sq, d1, dc, e1, ec


def _context_sums_array(probs, ctx, holds, shots):
    """:func:`_context_sums` over configuration arrays (the classes on a last axis)."""
    P, C, H, D = _by_hold(probs, ctx, holds, shots)
    pc = P * C
    m1 = np.cumsum(P * H, -1) + H * (P.sum(-1, keepdims=True) - np.cumsum(P, -1))
    mc = np.cumsum(pc * H, -1) + H * (pc.sum(-1, keepdims=True) - np.cumsum(pc, -1))
    return tuple(x.sum(-1) for x in (P * H, pc, pc * H, P * D * D, P * D * m1,
                                      P * D * (mc + C * m1), P * m1, P * mc))


def _slot_head(lam, t, bmax, lam_sat, ca2, cr2, moments, steer=0.0):
    """:func:`slot_queue` for request classes (module docstring, *KV-slot admission*). ``moments``:
    (X̄, z, w1, w3[, κ]) of the reserved tokens in r̄ (:func:`slot_moments`; κ the pool's
    feedback gain, 0 when absent). The pool fits c' = c − (1 + c_r²)/2 (a head that does not
    fit finds the room left uniform on its own size-biased reservation); the occupancy's
    free law is a Gamma of mean X̄ and index z; above c' the demand queues and a full pool
    drains it at θ (:func:`_full_drain`). The probability of waiting is the free law's own
    mass above c', S, plus the reflected queue's, M = σ²·f(c')/(2θ) (zero net flux at c'),
    out of 1 + M; the mean wait is Little's on the tokens queued, the free excess (1 −
    κ)·E[(X − c')⁺] (the rest is the feedback's longer holds, in θ) plus M·σ²/(2θ), over 1 +
    M, per r̄ arriving to wait (λ times the waiting requests' mean size,
    :func:`_blocked_size`). σ² = λ(c_a² + 1 + λt) + 2λc_r²: arrivals and the ends of
    independent holds, each a reservation of SCV c_r². Unstable where Little on tokens
    fails, X̄ >= c' (θ = 0 there: P -> 1, wait -> ∞)."""
    mean, z, w1, w3 = moments[:4]
    kappa = xp.minimum(moments[4], KAPPA_MAX) if len(moments) > 4 else 0.0
    cap = bmax - 0.5 * (1.0 + cr2)  # the head's room: the pool is full short of the cap
    N = xp.minimum(mean / w1, bmax * lam / lam_sat)  # requests in the pool
    ok = (mean < cap) & (lam > 0.0)
    m = xp.where(ok, mean, 0.5 * cap)  # unstable: the law's values are masked below
    lam_s = xp.where(ok, lam, 1.0)
    away = pooled_steer(m, z, w3, cap, steer)  # a full pool's arrivals sent elsewhere
    theta = _full_drain(lam_s, m, cap, kappa, away)
    sigma2 = lam_s * (ca2 + 1.0 + lam_s * t) + 2.0 * lam_s * cr2
    p, queued = _slot_law(m, xp.maximum(m * z, 1e-12), cap, sigma2, theta, 1.0 - kappa)
    per_s = lam_s * _blocked_size(z, cr2)  # r̄ per second of the arrivals that queue
    return (xp.where(ok, queued / per_s, 0.0), xp.where(ok, p, 1.0),
            xp.where(ok, N, bmax))


def _blocked_size(z, cr2):
    """Mean reservation (r̄) of the requests that wait: a request of r finds no room where the
    pool holds more than c' − (r − 1), the Gamma's tail there, exponential of scale z (the
    occupancy's index), so the waiting ones are tilted by e^{r/z}: over reservations of a
    Gamma law (mean 1, SCV ``cr2``) their mean is 1/(1 − c_r²/z) (the tilted Gamma's), at most
    the size-biased 1 + c_r² (where z <= 1 + c_r², continuous there). Little on the tokens queued counts
    them, so the wait is the tokens queued over λ times this size. Against the simulator's
    blocked sizes (``--stationary --instances 1``): 1.25/1.15/1.10/1.08 against 1.45/1.20/
    1.08/1.04 at 0.5/0.7/0.85/0.95."""
    return xp.where(z > 1.0 + cr2, z / xp.maximum(z - cr2, 1e-300), 1.0 + cr2)


def _full_drain(lam, mean, cap, kappa, away=0.0):
    """Net drain θ (r̄ per second) of the tokens queued above a full pool: a full pool holds
    ``cap`` r̄ and releases them at cap/(w1·h_c) per second, h_c the hold at a full pool, while
    the arrivals a router still sends it, λ(1 − ``away``), add to the queue. Its holds are
    longer than the mean h̄ by the pool's feedback (gain κ = d(λ·w1·h)/dX, the demand one
    more r̄ held makes): λ·w1·h_c = X̄ + κ(cap − X̄), so θ = λ·(1 − κ)(cap − X̄)/(X̄ + κ(cap −
    X̄)) + λ·away, which vanishes exactly at the pool's own edge X̄ = cap (without a router)."""
    room = xp.maximum(cap - mean, 0.0)
    return lam * (1.0 - kappa) * room / xp.maximum(mean + kappa * room, 1e-300) + lam * away


def pooled_steer(mean, z, w3, cap, steer):
    """Share of a full pool's arrivals a load-aware router still sends elsewhere: the
    probability that another pool has room when this one is full (:func:`_slot_head`).
    ``steer`` = b(1 − 1/n) is the share of the slow swings the router takes back
    (:func:`slot_moments`): balancing n pools moves a pool's swing onto the others but not the
    cluster's own, whose average S/n keeps 1/n of every pool's variance. A pool's occupancy X
    (mean X̄, index ``z`` in r̄) is S/n plus its own deviation; the deviation carries the
    steered share of the independent holds, steer·X̄·w3 (Poisson's variance λE[r²h]/r̄² is
    X̄·w3), so S/n has index z − steer·w3. Nowhere to steer to means every pool full, S/n
    above the cap ``cap``, which (a pool's deviation being symmetric about S/n) is inside X
    full: P(no room elsewhere | X full) = P(S/n >= cap)/P(X >= cap), both Gamma tails of mean
    X̄. The share sent elsewhere, 1 minus that, is 1 far below the cap (the narrower law's tail
    falls faster) and falls towards 0 as the pools fill (both tails reach 1/2 as X̄ reaches
    the cap); steer 0 (round robin, random, one pool): z − 0 = z, the ratio 1, share 0."""
    if not xp.is_array(steer) and steer == 0.0:
        return 0.0
    from scipy import special  # the upper tail itself: 1 − P(a, x) loses the deep tails
    zp = xp.maximum(z - steer * w3, 1e-9 * z)
    p_x, p_s = (special.gammaincc(mean / k, cap / k) for k in (z, zp))
    share = 1.0 - xp.minimum(p_s / xp.maximum(p_x, 1e-300), 1.0)
    return xp.where(p_x > 1e-300, share, xp.where(steer > 0.0, 1.0, 0.0))


def _slot_law(mean, var, cap, sigma2, theta, kept=1.0):
    """(probability of waiting, mean r̄ queued) at a pool of ``cap`` r̄: the occupancy's free
    law a Gamma of ``mean`` and ``var`` (shape k = X̄²/V, scale V/X̄; density f, upper tail
    S = Q(k, cap/scale) at the cap, free excess E[(X − cap)⁺] = X̄·Q(k + 1, ·) − cap·S); the
    queue above the cap a reflected diffusion of variance rate ``sigma2`` and drift
    −``theta`` (exponential, mean σ²/(2θ)) whose mass M = σ²·f(cap)/(2θ) (zero net flux at
    the cap; Halfin–Whitt's 1/(1 + β·Φ(β)/φ(β)) for a Gaussian occupancy of Poisson noise,
    Halfin and Whitt, "Heavy-traffic limits for queues with many exponential servers",
    Oper. Res. 29 (1981)). P = (S + M)/(1 + M); queued = (``kept``·excess + M·σ²/(2θ))/(1 + M):
    of the free demand beyond the cap a share κ (``kept`` = 1 − κ) is the pool's own requests
    held longer by the feedback of a fuller pool, not arrivals waiting; a full pool's drain
    already counts it (its longer holds h_c, :func:`_full_drain`)."""
    shape, scale = mean * mean / var, var / mean
    x = cap / scale
    dens = np.exp((shape - 1.0) * np.log(xp.maximum(x, 1e-300)) - x - _gammaln(shape)) / scale
    tail = _gammaincc(shape, x)
    excess = xp.maximum(mean * _gammaincc(shape + 1.0, x) - cap * tail, 0.0)
    th = xp.maximum(theta, 1e-300)
    mass = xp.minimum(sigma2 * dens / (2.0 * th), 1e300)
    queue = sigma2 / (2.0 * th)
    p = (tail + mass) / (1.0 + mass)
    return p, xp.where(mass < 1e300, (kept * excess + mass * queue) / (1.0 + mass), 1e300)


def _reserved(z, sigma2, lam, ca2, cr2):
    """The slot queue's (index of dispersion, local variance, work SCV) counted in reserved
    KV tokens, in units of the mean reservation, instead of requests. The simulator (and
    vLLM's scheduler) admits a request when the pool holds its whole prompt + output, so a
    slot is a share of tokens whose size has SCV ``cr2``. A sum of N marks of SCV cr2 has
    variance ``Var(N) + E[N]·cr2`` (compound sum), so the occupancy's index rises from z to
    z + cr2; every arrival and every departure moves it by one mark (``sigma2`` = λ(c_a² + 1
    + λt) requests² per second gains 2λ·cr2); above the cap the queue is a G/G/1 on token
    work (Kingman, Allen–Cunneen with c_s² = cr2: a waiting request waits (c_a² + cr2)/(2θ)
    on average). cr2 = 0 gives the count law."""
    return z + cr2, sigma2 + 2.0 * lam * cr2, ca2 + cr2


_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _gammainc(a, x):
    """Regularised lower incomplete gamma function P(a, x), element-wise (scipy imported only
    when an open-loop queue needs it: ``import kvmodel`` stays light)."""
    from scipy import special
    return special.gammainc(a, x)


def _gammaincc(a, x):
    """Regularised upper incomplete gamma function Q(a, x) = 1 − P(a, x), element-wise (the
    upper tail itself: 1 − P loses the deep tails)."""
    from scipy import special
    return special.gammaincc(a, x)


def _gammaln(a):
    """log Γ(a), element-wise (scipy on first use, as :func:`_gammainc`)."""
    from scipy import special
    return special.gammaln(a)


def busy_share(lam, t, new, chunks, budget):
    """Busy-step share f and prompt tokens P of a busy step (the *Steps* law of the module
    docstring), for callers outside the open loop: throughput-max's steps at saturation."""
    return _share(lam, t, new, chunks, budget)


def cluster_gain(f, t_p, t_d, t):
    """κ_A = f·(t_busy − t_decode)/t, the busy steps' self-excitation (module docstring,
    *Clusters*): the prompts one prompt's busy-step time lets in, capped at ``KAPPA_MAX``."""
    return xp.minimum(f * (t_p - t_d) / xp.maximum(t, 1e-300), KAPPA_MAX)


def _cluster_excess(kA):
    """Index of dispersion above Poisson of a count over many steps when arrivals come in
    clusters of mean offspring κ_A: 1/(1 − κ_A)² − 1 (Galton–Watson total progeny)."""
    return 1.0 / (1.0 - kA) ** 2 - 1.0


def left_behind(f, t_p, t_d, t, w_pf, S, O, p_slot, kA, renewal=None):
    """TPOT a request sees above the mean step from the prefill work queued behind it when its
    first token comes (module docstring, *Left-behind prefill*): ``w_pf``, ``S`` the prefill
    wait and own service, ``p_slot`` the share gated by the KV slots, ``kA`` the cluster gain;
    ``renewal``: (λ, c_a²) of the instance's arrivals behind a router (None: Poisson), whose
    count in the window after a request's own arrival is :func:`renewal_share` of Poisson's."""
    busy = behind_steps(f, t_p, t, w_pf, S, p_slot, kA, renewal)[0]
    n = xp.maximum(O - 1.0, 0.0)  # the window's steps: at most its decode-only ones turn busy
    busy = xp.minimum(busy, (1.0 - f) * n)
    return busy * (t_p - t_d) / xp.maximum(n, 1.0)


def behind_steps(f, t_p, t, w_pf, S, p_slot, kA, renewal=None):
    """(mean busy steps B̄ left behind a request's first token, the expected prompts behind
    it M): the prompts that came during its wait and own service τ = w + S, X = ρ_b·τ·r −
    w·t/t_busy − f·t_busy/2 busy seconds (r: :func:`renewal_share`, 1 for Poisson), over a
    busy step's seconds less the cluster gain; M = λ·τ·r."""
    w = w_pf * (1.0 - p_slot)  # a slot-gated prompt enters paced by finishes: no burst behind it
    rho_b = f * t_p / xp.maximum(t, 1e-300)  # time share of busy steps
    r, M = (1.0, None) if renewal is None else renewal_share(renewal[0], w + S, renewal[1])
    X = xp.maximum(rho_b * (w + S) * r - w * t / t_p - 0.5 * f * t_p, 0.0)
    gain = kA * (1.0 - p_slot)  # the longer window lets more prompts in, unless slot-gated
    return X / (t_p * (1.0 - gain)), M


def renewal_share(lam, tau, ca2):
    """(r, λτr): the expected arrivals in the τ seconds after an arrival of a renewal stream of
    rate λ and SCV c_a², over Poisson's λτ: r = max(1 − (1 − c_a²)/(2λτ), c_a²) (the renewal
    function's long-window asymptote λτ + (c_a² − 1)/2, floored by c_a²·λτ where the window
    is shorter than the gaps: exact for c_a² = 1, the floor λτ − 1/2 of a clock (c_a² = 0),
    round robin's Erlang-N gaps c_a² = 1/N). Against :mod:`kvmodel.sim` (32 x 70B TP8 fp8,
    round robin, Mooncake conversation at 29.5 req/s): B̄ = 0.30 busy steps behind a first
    token (Poisson: 1.52); the simulated requests with 2-3 / 4-10 output tokens see 0.2-0.3
    busy steps above the long ones'."""
    lt = xp.maximum(lam * tau, 1e-300)
    r = xp.maximum(1.0 - (1.0 - ca2) / (2.0 * lt), xp.minimum(ca2, 1.0))
    r = xp.where(ca2 >= 1.0, 1.0, r) if xp.is_array(ca2) else (1.0 if ca2 >= 1.0 else r)
    return r, lt * r
