"""Request routing across serving instances: one base class, its variants, one registry.

Contract (:class:`RoutingPolicy`): ``choose(req, view)`` returns the index (``0 <= i <
view.n``) of the instance that serves ``req``, or ``None`` to reject it (only policies with
``may_reject = True``; a rejected request is recorded, never served). The choice is a pure
function of the :class:`RouteRequest`, the :class:`RoutingView` and the policy's own state (a
round-robin pointer, a call counter, a ``numpy.random.default_rng(seed)``), so the same
policy parameters, seed and sequence of views give the same choices in any process.
``reset(n_instances, n_requests)`` is called once before a run (it restarts that state and
may pre-draw random numbers); every view of the run then has ``n == n_instances``. Policies
never mutate the view.

The view describes each instance *for this request* at its routing time:

* ``cached[i]``: ``{tier: blocks}`` -- leading blocks of the request's hash chain resident on
  instance i, each counted in the fastest tier holding it (tiers are :data:`kvmodel.TIER_KINDS`
  names; in the simulator only the instance's LRU, in the tier set by ``cache_tier``);
  ``prefix_blocks[i]`` is their sum.
* ``active[i]``: routed, unfinished requests (running + waiting); ``running[i]``: decoding
  sequences; ``waiting[i]``: requests not yet admitted; ``queued_prefill_tokens[i]``: prompt
  tokens routed there and not yet prefilled (cache hits excluded).
* ``kv_blocks[i]``: KV blocks of the routed, unfinished requests as a router tracks them
  (prompt blocks, added at routing, removed at finish); ``kv_usage[i]``: engine KV-cache
  utilisation in [0, 1] (reserved / capacity).
* ``step_s[i]``: the instance's most recent step time (0 before its first step);
  ``routed[i]``: requests routed there so far; ``cache_blocks[i]``: blocks resident in its
  prefix cache; ``tree_blocks[i]``: blocks inserted into its prefix index since the start
  (a router-side radix tree without eviction).
* ``routed_prefix_blocks[i]``: leading blocks of the request's hash chain among the blocks of
  the prompts routed to instance i so far (a router's own tree of routed prompts, never
  evicted), whatever the instance's cache still holds. A hand-made view without it, and the
  closed forms' replay (whose caches never evict), read it as ``prefix_blocks``. The
  simulator tracks it only for a policy with ``router_tree = True``, and then gives
  ``tree_blocks[i]`` as the distinct blocks of that tree.
* scalars ``n``, ``block_tokens`` and ``prefill_s_per_token`` (a prefill-time estimate).

Variants (registry :data:`REGISTRY`, :data:`kvmodel.policies.ROUTING`; built by
:func:`make_policy`; :data:`ROUTING_POLICIES` is its view name -> class):
``round_robin``, ``random``, ``least_loaded``, ``prefix_affinity``,
``prefix_affinity_bounded`` (the simulator's and :mod:`kvmodel.workload._reuse_exact`'s built-ins) and
the published cache+load cost functions ``dynamo``, ``llmd``, ``sglang``, ``mooncake`` (each
class docstring gives the formula, its source and the defaults). Adding a variant: subclass
:class:`RoutingPolicy` here and register it with ``_entry(...)`` below (its parameters with
units and defaults, and the closed form :func:`kvmodel.evaluate` uses for it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np

from kvmodel.tiers import TIER_KINDS

__all__ = ["RouteRequest", "RoutingView", "RoutingPolicy", "ROUTING_POLICIES", "make_policy",
           "policy_params", "REGISTRY", "CLOSED_FORMS", "LOADED_FORMS"]

_PER_INSTANCE = ("cached", "active", "running", "waiting", "queued_prefill_tokens",
                 "kv_blocks", "kv_usage", "step_s", "routed", "cache_blocks", "tree_blocks")


# ------------------------------------------------------------------------------ inputs

@dataclass(frozen=True)
class RouteRequest:
    """The request being routed: its position in arrival order, lengths and chain length."""

    index: int
    input_len: int
    output_len: int
    n_blocks: int


class RoutingView:
    """Per-instance state for one routing decision (fields: see the module docstring).

    Hand-made views (tests, notebooks): ``RoutingView(n, block_tokens=..., active=[...],
    cached=[{"hbm": 3}, ...], ...)``; an omitted per-instance field is all zeros (``cached``:
    empty dicts; ``routed_prefix_blocks``: ``prefix_blocks``). Each given field must have
    ``n`` entries.
    """

    def __init__(self, n: int, *, block_tokens: int = 1, prefill_s_per_token: float = 0.0,
                 **fields: Sequence):
        routed = fields.pop("routed_prefix_blocks", None)
        if routed is not None:
            if len(routed) != int(n):
                raise ValueError(f"RoutingView.routed_prefix_blocks: {len(routed)} entries, "
                                 f"expected {n}")
            self.__dict__["routed_prefix_blocks"] = list(routed)
        unknown = set(fields) - set(_PER_INSTANCE)
        if unknown:
            raise ValueError(f"RoutingView: unknown fields {sorted(unknown)}; "
                             f"allowed: {', '.join(_PER_INSTANCE)}, routed_prefix_blocks")
        self.n, self.block_tokens = int(n), int(block_tokens)
        self.prefill_s_per_token = float(prefill_s_per_token)
        for name in _PER_INSTANCE:
            value = list(fields.get(name, [{} if name == "cached" else 0] * self.n))
            if len(value) != self.n:
                raise ValueError(f"RoutingView.{name}: {len(value)} entries, expected {n}")
            setattr(self, name, value)

    @cached_property
    def prefix_blocks(self) -> list[int]:
        return [sum(d.values()) for d in self.cached]

    @cached_property
    def routed_prefix_blocks(self) -> list[int]:
        """The router's own match (module docstring); ``prefix_blocks`` unless given."""
        return self.prefix_blocks


# ------------------------------------------------------------------------------ base class

class RoutingPolicy:
    """Base class of routing policies (contract: module docstring).

    Subclasses implement :meth:`choose`; constructor keyword arguments are the policy's
    parameters (validated there, ``ValueError`` on bad values); ``name`` is its registry key.
    """

    name = ""
    may_reject = False
    load_signal = "count"
    router_tree = False  # True: the simulator tracks ``routed_prefix_blocks`` for it

    def reset(self, n_instances: int, n_requests: int | None = None) -> None:
        """Restart the policy's own state before a run of ``n_requests`` (if known)."""

    def choose(self, req: RouteRequest, view: RoutingView) -> int | None:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The registry parameters this object was built with (name -> value), so a policy
        object given to :func:`kvmodel.evaluate` carries them to the closed form."""
        return {}

    def load_choices(self, req: RouteRequest, view: RoutingView) -> int:
        """How many instances the rule's load term chooses among for ``req`` (1: the choice
        ignores the instantaneous load). A load-aware rule counts the instances whose
        load-free cost is within the reach of its load term: :func:`_within` of
        :func:`_fluctuation` (the closed form's effective choice count,
        :mod:`kvmodel.cluster._routing_queue`, which also reads ``load_signal``: "count" when
        the load term counts requests, "work" when it weighs their prompt work)."""
        return 1


def _within(static: Sequence[float], reach: float) -> int:
    """Instances whose load-free cost is at most ``reach`` above the lowest one."""
    low = min(static)
    return sum(1 for x in static if x <= low + reach)


def _fluctuation(signal: Sequence[float], counts: Sequence[float]) -> float:
    """Standard deviation of the difference of two instances' load signals when each is a
    compound Poisson sum (requests in flight Poisson, Little's law) of requests of the mean
    size: ``sqrt(2 · m · x)``, m = mean signal per instance, x = signal per counted request."""
    total, k = float(sum(signal)), float(sum(counts))
    if total <= 0 or k <= 0:
        return 0.0
    return math.sqrt(2.0 * total / len(signal) * total / k)


def _argbest(keys: Sequence[tuple]) -> int:
    """Index of the smallest key tuple (first one on exact ties)."""
    return min(range(len(keys)), key=keys.__getitem__)


def _check(name: str, v: Any, lo: float = 0.0, *, above: bool = False,
           none_ok: bool = False) -> None:
    """``v`` must be a finite real >= lo (> lo with ``above``), or None with ``none_ok``."""
    if v is None and none_ok:
        return
    ok = (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
          and math.isfinite(v) and (v > lo if above else v >= lo))
    if not ok:
        raise ValueError(f"{name}={v!r}: must be a finite number {'>' if above else '>='} {lo}")


def _tier_weights(name: str, defaults: dict[str, float], given: dict | None) -> dict[str, float]:
    """``defaults`` updated with ``given`` (keys must be tier kinds, values >= 0)."""
    out = dict(defaults)
    for tier, w in (given or {}).items():
        if tier not in TIER_KINDS:
            raise ValueError(f"{name}: unknown tier {tier!r}; allowed: {', '.join(TIER_KINDS)}")
        _check(f"{name}[{tier!r}]", w)
        out[tier] = float(w)
    return out


def _credit(cached: dict[str, int], weights: dict[str, float]) -> float:
    if len(cached) == 1:  # the common case, without a generator (same value as the sum)
        for tier, blocks in cached.items():
            return 0 + weights[tier] * blocks
    return sum(weights[tier] * blocks for tier, blocks in cached.items())


# ------------------------------------------------------------------------------ simple variants

class RoundRobin(RoutingPolicy):
    """Instance ``k mod N`` for the k-th routed request (a pointer; ignores the view)."""

    name = "round_robin"

    def __init__(self):
        self.k = 0

    def reset(self, n_instances, n_requests=None):
        self.k = 0

    def choose(self, req, view):
        i = self.k % view.n
        self.k += 1
        return i


class Random(RoutingPolicy):
    """Uniform instance per request: ``default_rng(seed).integers(N, size=n_requests)`` drawn
    at :meth:`reset` (the draws of :func:`kvmodel.workload._reuse_exact.replay`), one per call."""

    name = "random"

    def __init__(self, *, seed: int = 0):
        self.seed = seed
        self.reset(0)

    def params(self):
        return {"seed": self.seed}

    def reset(self, n_instances, n_requests=None):
        self.rng = np.random.default_rng(self.seed)
        self.picks = (self.rng.integers(0, n_instances, size=n_requests).tolist()
                      if n_instances and n_requests else [])
        self.k = 0

    def choose(self, req, view):
        i = self.picks[self.k] if self.k < len(self.picks) else int(self.rng.integers(view.n))
        self.k += 1
        return i


class LeastLoaded(RoutingPolicy):
    """Fewest active (routed, unfinished) requests; ties to the lowest index."""

    name = "least_loaded"

    def choose(self, req, view):
        return _argbest([(a, i) for i, a in enumerate(view.active)])

    def load_choices(self, req, view):
        """Every instance (no cache term: join the shortest queue)."""
        return view.n


class PrefixAffinity(RoutingPolicy):
    """Longest cached prefix; ties to the fewest active requests, then the lowest index. It can
    send every request to one instance when all share a first block."""

    name = "prefix_affinity"

    def choose(self, req, view):
        return _argbest([(-p, a, i) for i, (p, a) in
                         enumerate(zip(view.prefix_blocks, view.active))])


class PrefixAffinityBounded(RoutingPolicy):
    """:class:`PrefixAffinity` among instances whose routed count after taking the request is
    <= ceil((1 + epsilon)(k + 1)/N), k = requests routed so far (consistent hashing with
    bounded loads, Mirrokni et al. 2018; the rule of :func:`kvmodel.workload._reuse_exact.replay`).
    The least-routed instance always qualifies. ``epsilon`` > 0 (default 0.25)."""

    name = "prefix_affinity_bounded"

    def __init__(self, *, epsilon: float = 0.25):
        _check("epsilon", epsilon, above=True)
        self.epsilon = float(epsilon)

    def params(self):
        return {"epsilon": self.epsilon}

    def _eligible(self, view: RoutingView) -> list[int]:
        bound = math.ceil((1.0 + self.epsilon) * (sum(view.routed) + 1) / view.n)
        return [i for i, r in enumerate(view.routed) if r + 1 <= bound]

    def choose(self, req, view):
        p, a = view.prefix_blocks, view.active
        return min((-p[i], a[i], i) for i in self._eligible(view))[2]

    def load_choices(self, req, view):
        """The eligible instances tied at the longest cached prefix: the fewest active among
        them takes the request (the closed form's mix,
        :func:`kvmodel.cluster._routing_queue.bounded_choice_mix`)."""
        p, ok = view.prefix_blocks, self._eligible(view)
        top = max(p[i] for i in ok)
        return sum(1 for i in ok if p[i] == top)


# ------------------------------------------------------------------------------ published costs

_DYNAMO_CREDIT = {"hbm": 1.0, "dram": 0.75, "cxl": 0.75, "ssd": 0.25, "remote": 0.25}


class Dynamo(RoutingPolicy):
    """NVIDIA Dynamo KV router: minimise ``cost_i = w * prefill_blocks_i + decode_blocks_i``.

    * ``prefill_blocks_i = max(queued_prefill_tokens_i / B + input_len / B - credit_i, 0)``:
      prompt work already routed to the worker plus this request's prompt, less the overlap
      credit ``credit_i = sum_tier credit[tier] * cached_i[tier]`` (B = block tokens).
    * ``decode_blocks_i = kv_blocks_i + ceil(input_len / B)``: the worker's active KV blocks
      plus the request's own.
    * ``temperature`` 0: argmin, ties to the smallest prefix index (``cache_blocks``), then a
      seeded random pick; > 0: sample with probability ~ exp(-(c - c_min) / ((c_max - c_min)
      * temperature)) (costs min-max normalised), uniform when all costs are equal.

    Sources: Dynamo docs "Router Design" / "Routing Concepts"
    (docs.nvidia.com/dynamo/latest/router/README.html,
    docs.nvidia.com/dynamo/dev/components/router/routing-concepts): ``cost =
    overlap_score_weight * prefill_blocks + decode_blocks``, ``--kv-overlap-score-weight``
    default 1 (docs/router/kv_cache_routing.md), ``--router-temperature`` default 0 (softmax
    over normalised cost logits); later releases write ``cost = prefill_load_scale *
    max(raw_prefill_blocks - overlap_credit_blocks, 0) + decode_blocks`` with per-tier credits
    device ``overlap_score_credit`` 1.0, host ``host_cache_hit_weight`` 0.75, disk
    ``disk_cache_hit_weight`` 0.25 (kv-router config defaults). Both forms coincide here:
    ``overlap_score_weight`` plays ``prefill_load_scale``. Tier mapping (ours): hbm = device,
    dram/cxl = host, ssd/remote = disk.
    """

    name = "dynamo"
    load_signal = "work"

    def __init__(self, *, overlap_score_weight: float = 1.0, temperature: float = 0.0,
                 tier_credit: dict | None = None, seed: int = 0):
        _check("overlap_score_weight", overlap_score_weight)
        _check("temperature", temperature)
        self.w, self.temperature = float(overlap_score_weight), float(temperature)
        self.credit = _tier_weights("tier_credit", _DYNAMO_CREDIT, tier_credit)
        self.seed = seed
        self._tier_credit = tier_credit
        self.reset(0)

    def params(self):
        return {"overlap_score_weight": self.w, "temperature": self.temperature,
                "tier_credit": self._tier_credit, "seed": self.seed}

    def reset(self, n_instances, n_requests=None):
        self.rng = np.random.default_rng(self.seed)

    def costs(self, req: RouteRequest, view: RoutingView) -> list[float]:
        """``cost_i`` for every instance (see the class docstring)."""
        B = view.block_tokens
        own = math.ceil(req.input_len / B)
        return [self.w * max((q + req.input_len) / B - _credit(c, self.credit), 0.0) + kv + own
                for q, c, kv in zip(view.queued_prefill_tokens, view.cached, view.kv_blocks)]

    def choose(self, req, view):
        c = self.costs(req, view)
        if self.temperature > 0:
            return _softmax_min(c, self.temperature, self.rng)
        low = min(c)
        tied = [i for i in range(view.n) if c[i] == low]
        tree = min(view.cache_blocks[i] for i in tied)
        tied = [i for i in tied if view.cache_blocks[i] == tree]
        return tied[0] if len(tied) == 1 else int(self.rng.choice(tied))

    def load_choices(self, req, view):
        """Instances whose overlap cost ``w · max(input_len/B − credit_i, 0)`` is within the
        fluctuation of the load terms ``w · queued_prefill_tokens/B + kv_blocks``."""
        B = view.block_tokens
        static = [self.w * max(req.input_len / B - _credit(c, self.credit), 0.0)
                  for c in view.cached]
        queued = _fluctuation(view.queued_prefill_tokens, view.waiting) * self.w / B
        return _within(static, math.hypot(queued, _fluctuation(view.kv_blocks, view.active)))


def _softmax_min(costs: list[float], temperature: float, rng) -> int:
    """Sample an index favouring low costs (min-max normalised softmax, as Dynamo does)."""
    c = np.asarray(costs, dtype=np.float64)
    span = c.max() - c.min()
    p = np.ones_like(c) if span == 0 else np.exp(-(c - c.min()) / (span * temperature))
    cum = np.cumsum(p / p.sum())
    return int(min(np.searchsorted(cum, rng.random(), side="left"), len(c) - 1))


class LLMD(RoutingPolicy):
    """llm-d inference scheduler: maximise ``sum_k weight_k * scorer_k`` (max-score picker).

    Scorers, each in [0, 1]: prefix-cache = cached prefix blocks / prompt blocks (tiers
    weighted by ``tier_weight``, default 1.0 each); queue = ``(q_max - q_i) / (q_max - q_min)``
    over the waiting-queue sizes (1 when all equal); kv-cache-utilization = ``1 - kv_usage``.
    Ties: a seeded random pick (the picker shuffles before taking the maximum).

    Sources: weights prefix-cache-scorer 3, kv-cache-utilization-scorer 2, queue-scorer 2 are
    the EndpointPickerConfig of llm-d's "intelligent inference scheduling" well-lit path
    (llm-d/llm-d guides/inference-scheduling, gaie values ``default-plugins.yaml``); the
    queue and kv-cache scorers as in
    gateway-api-inference-extension ``pkg/epp/scheduling/framework/plugins/scorer``.
    """

    name = "llmd"
    load_signal = "work"  # kv_usage counts reserved tokens: it sees a long prompt in service

    def __init__(self, *, prefix_weight: float = 3.0, kv_util_weight: float = 2.0,
                 queue_weight: float = 2.0, tier_weight: dict | None = None, seed: int = 0):
        for n, v in (("prefix_weight", prefix_weight), ("kv_util_weight", kv_util_weight),
                     ("queue_weight", queue_weight)):
            _check(n, v)
        self.w = (float(prefix_weight), float(kv_util_weight), float(queue_weight))
        self.tier_weight = _tier_weights("tier_weight", dict.fromkeys(TIER_KINDS, 1.0),
                                         tier_weight)
        self.seed = seed
        self._tier_weight = tier_weight
        self.reset(0)

    def params(self):
        wp, wk, wq = self.w
        return {"prefix_weight": wp, "kv_util_weight": wk, "queue_weight": wq,
                "tier_weight": self._tier_weight, "seed": self.seed}

    def reset(self, n_instances, n_requests=None):
        self.rng = np.random.default_rng(self.seed)

    def scores(self, req: RouteRequest, view: RoutingView) -> list[float]:
        """Weighted score of every instance (see the class docstring)."""
        nb = req.n_blocks
        prefix = [_credit(c, self.tier_weight) / nb if nb else 0.0 for c in view.cached]
        q = view.waiting
        lo, hi = min(q), max(q)
        queue = [1.0 if hi == lo else (hi - x) / (hi - lo) for x in q]
        wp, wk, wq = self.w
        return [wp * p + wk * (1.0 - u) + wq * s
                for p, u, s in zip(prefix, view.kv_usage, queue)]

    def choose(self, req, view):
        s = self.scores(req, view)
        top = max(s)
        best = [i for i, x in enumerate(s) if x == top]
        return best[0] if len(best) == 1 else int(self.rng.choice(best))

    def load_choices(self, req, view):
        """Instances whose weighted prefix score is within the load scorers' reach of the
        best: the queue scorer is min-max normalised, so it spans its whole weight whenever
        the waiting queues differ (probability ``1 − exp(−Σ waiting)``, Poisson), plus the
        fluctuation of the kv-utilisation scorer."""
        nb, (wp, wk, wq) = req.n_blocks, self.w
        static = [-wp * _credit(c, self.tier_weight) / nb if nb else 0.0 for c in view.cached]
        reach = (wq * (1.0 - math.exp(-float(sum(view.waiting))))
                 + wk * _fluctuation(view.kv_usage, view.active))
        return _within(static, reach)


class SGLang(RoutingPolicy):
    """SGLang router ``cache_aware`` policy.

    Loads = active requests. If ``max - min > balance_abs_threshold`` and ``max >
    balance_rel_threshold * min`` (imbalanced): the least-loaded instance. Otherwise the
    instance with the longest cached prefix if its match ratio (prefix blocks / prompt blocks)
    is > ``cache_threshold``, else the instance with the smallest prefix tree. Ties to the
    lowest index (longest prefix: fewest active first).

    ``match`` says which prefix the rule matches: ``"cache"`` (default) the instance's resident
    cache (``prefix_blocks``: what the engine would hit now), ``"tree"`` the router's own radix
    tree of every prompt routed there (``routed_prefix_blocks``, with ``tree_blocks`` that
    tree's size), as the real router does: a prefix the instance has evicted still attracts its
    requests. The closed form replays the rule against routed prompts without eviction, which
    is the tree either way. In the simulator on the router referee cell (4 x Llama-3.1-8B H100,
    64 GB DRAM cache each, Mooncake conversations, 4 seeds; benchmarks/sglang_match.py) "tree"
    leaves the hit ratio at 0.08 but raises the mean / p99 TTFT from 0.98 / 9.5 s to
    1.75 / 16.5 s at 85 % load (0.51 / 5.3 s to 0.67 / 6.8 s at 50 %): the tree grows only by
    distinct blocks, so a request matched to history its instance has evicted recomputes it
    without growing the tree the smallest-tree fallback balances on (busiest instance's
    prompt-token share x N 1.055 against 1.009, seed 0 at 85 %).

    Source: sgl-project/sglang ``sgl-router/src/policies/cache_aware.rs`` (the rule) and
    ``sgl-router/py_src/sglang_router/router_args.py`` (defaults ``cache_threshold`` 0.3,
    ``balance_abs_threshold`` 64, ``balance_rel_threshold`` 1.5; releases before the
    model-gateway rename used 0.5, 32, 1.0001). The router's approximate radix tree keeps every
    routed prompt (eviction only above ``max_tree_size`` = 2**26 characters), so its size is
    modelled by ``tree_blocks`` (blocks inserted so far), not by the resident cache.
    """

    name = "sglang"
    load_signal = "work"  # the tree counts routed prompt blocks (see :meth:`load_choices`)

    MATCHES = ("cache", "tree")

    def __init__(self, *, cache_threshold: float = 0.3, balance_abs_threshold: float = 64,
                 balance_rel_threshold: float = 1.5, match: str = "cache"):
        _check("cache_threshold", cache_threshold)
        _check("balance_abs_threshold", balance_abs_threshold)
        _check("balance_rel_threshold", balance_rel_threshold)
        if not isinstance(match, str) or match not in self.MATCHES:
            raise ValueError(f"sglang: match={match!r}: must be one of "
                             f"{', '.join(map(repr, self.MATCHES))} (the resident cache or the "
                             "router's tree of routed prompts)")
        self.cache_threshold = float(cache_threshold)
        self.abs, self.rel = float(balance_abs_threshold), float(balance_rel_threshold)
        self.match, self.router_tree = match, match == "tree"

    def params(self):
        return {"cache_threshold": self.cache_threshold, "balance_abs_threshold": self.abs,
                "balance_rel_threshold": self.rel, "match": self.match}

    def _prefix(self, view) -> list[int]:
        """The matched blocks per instance: the resident cache's or the router tree's."""
        return view.routed_prefix_blocks if self.router_tree else view.prefix_blocks

    def imbalanced(self, loads: Sequence[int]) -> bool:
        hi, lo = max(loads), min(loads)
        return hi - lo > self.abs and hi > self.rel * lo

    def choose(self, req, view):
        if self.imbalanced(view.active):
            return _argbest([(a, i) for i, a in enumerate(view.active)])
        prefix = self._prefix(view)
        best = _argbest([(-p, a, i) for i, (p, a) in enumerate(zip(prefix, view.active))])
        if req.n_blocks and prefix[best] / req.n_blocks > self.cache_threshold:
            return best
        return _argbest([(t, i) for i, t in enumerate(view.tree_blocks)])

    def load_choices(self, req, view):
        """Every instance when imbalanced (the shortest queue) or when the smallest tree
        decides; else the instances tied at the longest prefix when its match passes the
        threshold (ties to the fewest active). The tree counts the prompt blocks routed so
        far, so the instance that took a long prompt takes no more until the others have taken
        as much: it avoids the work in service as least-work-left does (simulator, 4 x 8B,
        Mooncake at 50 %: sglang's mean TTFT 0.54 s, dynamo's 0.51 s, least_loaded's 0.71 s)."""
        if self.imbalanced(view.active):
            return view.n
        p = self._prefix(view)
        top = max(p)
        if req.n_blocks and top / req.n_blocks > self.cache_threshold:
            return sum(1 for x in p if x == top)
        return view.n


class Mooncake(RoutingPolicy):
    """Mooncake Conductor's KVCache-centric prefill scheduling with early rejection.

    Predicted TTFT on instance i: ``queued_prefill_tokens_i * p + max(input_len - prefix_i *
    B, 1) * p`` (queueing + prefill of the uncached tokens, p = ``prefill_s_per_token``, from
    the view unless given). With a KV pool (``pool_s_per_block`` set) an instance may first
    fetch the blocks it misses up to the longest prefix cached anywhere: ``+ (best - prefix_i)
    * pool_s_per_block`` with prefill from ``best``; the cheaper option counts (the policy only
    predicts -- the simulator itself does not move blocks). Choose the smallest TTFT (ties to
    the fewest active requests, then the lowest index: our choice, the paper gives none); if it
    exceeds ``ttft_slo_s`` reject the request (None: never). The decode-side TBT check of the
    paper has no counterpart in aggregated instances and is left out.

    Source: Qin et al., "Mooncake: Trading More Storage for Less Computation", USENIX FAST
    2025, Sec. 5 / Algorithm 1 (per-instance TTFT = KVCache transfer + queueing + prefill
    time, minimum selected; requests whose predicted TTFT misses the SLO are rejected early;
    arXiv:2407.00079). Mooncake's prefill pool is disaggregated; here decode steps on the
    same instance are not part of the estimate.
    """

    name = "mooncake"
    may_reject = True
    load_signal = "work"

    def __init__(self, *, prefill_s_per_token: float | None = None,
                 ttft_slo_s: float | None = None, pool_s_per_block: float | None = None):
        _check("prefill_s_per_token", prefill_s_per_token, above=True, none_ok=True)
        _check("ttft_slo_s", ttft_slo_s, above=True, none_ok=True)
        _check("pool_s_per_block", pool_s_per_block, none_ok=True)
        self.p, self.slo, self.pool = prefill_s_per_token, ttft_slo_s, pool_s_per_block

    def params(self):
        return {"prefill_s_per_token": self.p, "ttft_slo_s": self.slo,
                "pool_s_per_block": self.pool}

    def ttft(self, req: RouteRequest, view: RoutingView) -> list[float]:
        """Predicted TTFT of every instance (see the class docstring)."""
        p = view.prefill_s_per_token if self.p is None else self.p
        B, best = view.block_tokens, max(view.prefix_blocks)

        def one(q: int, own: int) -> float:
            t = (q + max(req.input_len - own * B, 1)) * p
            if self.pool is not None and best > own:
                t = min(t, (best - own) * self.pool + (q + max(req.input_len - best * B, 1)) * p)
            return t
        return [one(q, own) for q, own in zip(view.queued_prefill_tokens, view.prefix_blocks)]

    def choose(self, req, view):
        t = self.ttft(req, view)
        i = _argbest([(x, a, i) for i, (x, a) in enumerate(zip(t, view.active))])
        return None if self.slo is not None and t[i] > self.slo else i

    def load_choices(self, req, view):
        """Instances whose own prefill (uncached tokens) is within the fluctuation of the
        queued prefill tokens (the pool option is not counted)."""
        B = view.block_tokens
        static = [max(req.input_len - own * B, 1) for own in view.prefix_blocks]
        return _within(static, _fluctuation(view.queued_prefill_tokens, view.waiting))


# ------------------------------------------------------------------------------ registry

from kvmodel.policies import Param, PolicyEntry, Registry  # noqa: E402

# The cache-only closed forms of the reuse layer (kvmodel.workload._reuse_analytic, exact replays
# of kvmodel.workload._reuse_exact): "single" is one instance.
CLOSED_FORMS = ("single", "random", "round_robin", "prefix_affinity", "prefix_affinity_bounded")
# The load-aware closed forms (kvmodel.workload._routing_closed): the policy's own rule replayed
# over the trace against a fluid load (requests in flight from Little's law at the operating
# point, quantised to a few load levels); each policy is its own closed form.
LOADED_FORMS = ("least_loaded", "dynamo", "llmd", "sglang", "mooncake")

REGISTRY = Registry("routing", "request routing across serving instances")
_SIMS = ("kvmodel.sim.simulate",)
_CURVE = "kvmodel.workload._reuse_analytic:analytic_hit_ratio_curve"
_LOADED = "kvmodel.workload._routing_closed:routed_hit_ratio_curve"
_SEED = Param("seed", 0, "1", "seed of the policy's random draws", kind=int)
_EPS = Param("epsilon", 0.25, "fraction", "load bound: routed count <= ceil((1 + epsilon)(k + 1)"
             "/N)", low_open=True)
_OWN = ("its own rule replayed over the trace (kvmodel.workload._routing_closed): cached prefix "
        "= blocks the instance has seen (no eviction), in-flight load from each request's "
        "residence, admission wait and prefill time at the operating point (Little's law, "
        "quantised load levels); "
        "hit ratio: analytic LRU per instance of that assignment; imbalance: busiest instance's "
        "share of the routed uncached prompt tokens x N; wait: the instance's law behind a "
        "join-the-shortest-of-d router, d per request from load_choices "
        "(kvmodel.cluster._routing_queue)")


def _entry(cls: type, description: str, closed_form: str, params=(), note: str = "",
           tolerance: float | None = None, tags=("builtin",)) -> None:
    """Register ``cls``; ``tolerance``: |hit ratio of kvmodel.sim - closed form| stated for
    synthetic_trace(200, seed 1), 2 instances x 60 blocks (the conformance suite) and checked
    again, with the load imbalance, on an 8-instance prefix-heavy trace
    (tests/policies/test_routing_closed.py)."""
    fn = _LOADED if closed_form in LOADED_FORMS else _CURVE
    REGISTRY.register(PolicyEntry(cls.name, description, closed_form, tuple(params), cls, _SIMS,
                                  fn, note, tolerance, tuple(tags)))


_entry(RoundRobin, "instance k mod N for the k-th request", "round_robin",
       note="exact request assignment, analytic (Che) LRU per instance", tolerance=0.03)
_entry(Random, "uniform random instance per request", "random", (_SEED,),
       note="expected hit ratio over the random draws (the seed is not used)", tolerance=0.03)
_entry(LeastLoaded, "fewest active requests, ties to the lowest index", "least_loaded",
       note=_OWN + "; cache-blind, so at high load close to random routing (imbalance ~1), "
            "at low load it fills the lowest indices first", tolerance=0.05)
_entry(PrefixAffinity, "longest cached prefix, ties least loaded", "prefix_affinity",
       note="assignment of an infinite-cache prefix router, analytic LRU per instance",
       tolerance=0.03)
_entry(PrefixAffinityBounded, "longest cached prefix under a load bound (1 + epsilon) x mean",
       "prefix_affinity_bounded", (_EPS,),
       note="assignment of an infinite-cache bounded prefix router, analytic LRU per instance; "
            "epsilon is Cluster.epsilon (or the policy object's, or Cluster.routing_params'); "
            "wait: the instance's law behind a join-the-shortest-of-d router (count signal), "
            "d = eligible instances tied at the longest prefix, replayed with each instance's "
            "cache (kvmodel.cluster._routing_queue)",
       tolerance=0.03)
_entry(Dynamo, "NVIDIA Dynamo KV router: w x prefill blocks + decode blocks", "dynamo",
       (Param("overlap_score_weight", 1.0, "1", "weight of the prefill blocks term"),
        Param("temperature", 0.0, "1", "softmax temperature over normalised costs (0: argmin)",),
        Param("tier_credit", None, "tier->1", "overlap credit per cached block by tier (None: "
              "hbm 1, dram/cxl 0.75, ssd/remote 0.25)", none_ok=True, kind=dict), _SEED),
       note=_OWN + "; cached blocks are credited as hbm", tolerance=0.08, tags=("published",))
_entry(LLMD, "llm-d scheduler: 3 x prefix + 2 x kv-util + 2 x queue scores", "llmd",
       (Param("prefix_weight", 3.0, "1", "weight of the prefix-cache scorer"),
        Param("kv_util_weight", 2.0, "1", "weight of the kv-cache-utilisation scorer"),
        Param("queue_weight", 2.0, "1", "weight of the queue scorer"),
        Param("tier_weight", None, "tier->1", "prefix credit per cached block by tier (None: "
              "1 each)", none_ok=True, kind=dict), _SEED),
       note=_OWN + "; waiting = requests within their admission wait", tolerance=0.08,
       tags=("published",))
_entry(SGLang, "SGLang router cache_aware: prefix match above a threshold unless imbalanced",
       "sglang",
       (Param("cache_threshold", 0.3, "fraction", "minimum prefix match ratio", high=1.0),
        Param("balance_abs_threshold", 64, "count", "imbalance: max - min active requests >"),
        Param("balance_rel_threshold", 1.5, "1", "imbalance: max > this x min active"),
        Param("match", "cache", "key", "prefix matched: cache (the instance's resident cache) "
              "| tree (the router's tree of routed prompts, as sglang's router)", kind=str)),
       note=_OWN + "; match: the replay's prefix is the routed prompts' either way",
       tolerance=0.08, tags=("published",))
_entry(Mooncake, "Mooncake Conductor: smallest predicted TTFT, early rejection above the SLO",
       "mooncake",
       (Param("prefill_s_per_token", None, "s/token", "prefill time per token (None: the "
              "view's estimate)", low_open=True, none_ok=True),
        Param("ttft_slo_s", None, "s", "reject when the predicted TTFT exceeds it (None: never)",
              low_open=True, none_ok=True),
        Param("pool_s_per_block", None, "s/block", "KV pool fetch time per block (None: no "
              "pool)", none_ok=True)),
       note=_OWN + "; queued prefill = uncached tokens within their prefill time; rejected "
            "requests count as misses (the served rate is not reduced)",
       tolerance=0.08, tags=("published",))

# kvmodel.ROUTING_POLICIES: name -> class of every routing entry (a live view of REGISTRY)
ROUTING_POLICIES = REGISTRY.implementations()


def policy_params(name: str) -> tuple[str, ...]:
    """Parameter names the policy registered as ``name`` accepts."""
    return REGISTRY.get_entry(name).param_names


def make_policy(name: str, **params: Any) -> RoutingPolicy:
    """A fresh policy of the registered ``name`` with ``params`` (ValueError when the name or a
    parameter name is unknown, or a value is invalid)."""
    return REGISTRY.make(name, **params)
