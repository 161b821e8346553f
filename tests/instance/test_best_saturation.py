"""The saturation of prefix_policy="best" (kvmodel/instance/_contended.py ``fastest``): the
highest throughput-max of recompute, load and split, the same for a cached prefix in every
mode and at every offered rate and for a one-class mixture (issue 13), checked by hand on a
toy link and against the simulator, which always loads."""

import numpy as np
import pytest

import kvmodel
from kvmodel.catalog.hardware import LinkSpec
from kvmodel.sim import poisson_requests, simulate
from kvmodel.tiers import Tier, TransferPath
from kvmodel.workload._trace_types import Trace

M, G, I, O, P, BT = "llama-3.1-8b", "h100-sxm", 9216, 128, 8192, 256
BW = 5e9  # one 5 GB/s link, no latency, an endless source
TOK_B = 2 * 32 * 8 * 128 * 2  # K and V x 32 layers x 8 KV heads x 128 dims x 2 B (bf16)


def _toy_tier():
    link = LinkSpec("toy", "toy link", "pcie", BW, 0.0, "full", BW, None)
    return Tier("dram", 1e15, TransferPath("toy", (link,), source_Bps=float("inf")),
                device="toy-dram")


def _kw(**kw):  # kv_save=0: the link carries the prefix loads only
    return dict(input_len=I, output_len=O, kv_save=0.0, **kw)


def _plain(**kw):
    return kvmodel.estimate(M, G, **_kw(cached_prefix_len=P, cache_tier=_toy_tier(), **kw))


def test_best_saturates_at_the_fastest_candidate_by_hand():
    load = _plain(batch="max", prefix_policy="load")
    assert load.kv_B_per_token == TOK_B
    # loading all 8192 tokens is bound by the link: 5e9 / (8192 x 131072 B) = 4.657 req/s
    assert load.saturation_request_rate_per_s == pytest.approx(BW / (P * TOK_B), rel=1e-9)
    # recomputing moves nothing: the instance without a prefix, 3.336 req/s
    none = kvmodel.estimate(M, G, batch="max", **_kw())
    rec = _plain(batch="max", prefix_policy="recompute")
    assert rec.saturation_request_rate_per_s == none.saturation_request_rate_per_s
    split = _plain(batch="max", prefix_policy="split")
    fastest = max(e.saturation_request_rate_per_s for e in (load, rec, split))
    assert fastest >= BW / (P * TOK_B) > 1.3 * none.saturation_request_rate_per_s
    best = _plain(batch="max")
    # batch="max" reports the candidate best picks by TTFT (recompute: no load to wait for)
    # and, as its saturation, the fastest candidate, as every other mode and a mixture do
    assert best.prefix_loaded_tokens == 0 and best.ttft_s == rec.ttft_s
    sats = [best] + [_plain(**m) for m in (dict(request_rate=1.0), dict(request_rate=4.0),
                                           dict(concurrency=1), dict(batch=4))]
    mix = kvmodel.estimate(M, G, request_rate=1.0,
                           **_kw(prefix_classes=[(1.0, P, _toy_tier())]))
    for e in sats + [mix]:
        assert e.saturation_request_rate_per_s == pytest.approx(fastest, rel=1e-12)


def test_hit_classes_hold_only_within_their_own_choices():
    """A mixture serves each class at its uncontended choice (here: load it all, 4.657 req/s,
    bound by the link); between that and best's saturation it is unstable and says why (the
    link here; an engine-bound choice names its own saturation), where one cached prefix,
    decided under contention, splits the load and holds."""
    at = 0.5 * (BW / (P * TOK_B) + _plain(batch="max").saturation_request_rate_per_s)
    mix = kvmodel.estimate(M, G, request_rate=at, **_kw(prefix_classes=[(1.0, P, _toy_tier())]))
    assert float(mix.prefix_loaded_tokens) == P
    assert mix.saturation_request_rate_per_s > at and not mix.stable
    assert "'link toy' is over capacity" in mix.reason
    assert _plain(request_rate=at).stable  # one cached prefix: best splits the load


def _shared_prefix_trace(n, lam):
    base = poisson_requests(n, lam, I, O, seed=1)
    pb, nb = P // BT, -(-(I - P) // BT)
    ids = np.concatenate([np.concatenate([np.arange(pb), 10**6 + i * nb + np.arange(nb)])
                          for i in range(n)]).astype(np.int64)
    return Trace(base.arrival_s, base.input_len, base.output_len,
                 np.arange(n + 1, dtype=np.int64) * (pb + nb), ids, block_tokens=BT)


def test_simulator_loading_serves_beyond_the_recompute_saturation():
    """The simulator always loads a hit: at 4.4 req/s (1.32x the recompute saturation, 0.94x
    the load's) its queue stays flat, while without the cache it grows without bound."""
    n, lam = 4000, 4.4
    tr = _shared_prefix_trace(n, lam)
    hit = simulate(M, G, tr, prefix_cache_blocks=4000, cache_tier=_toy_tier(), block_tokens=BT,
                   kv_save=0.0)
    miss = simulate(M, G, tr)
    assert hit.request_throughput_per_s == pytest.approx(lam, rel=0.02)
    assert np.mean(hit.queue_s[3 * n // 4:]) < 1.0
    assert np.mean(miss.queue_s[3 * n // 4:]) > 100.0
    assert lam > 1.3 * _plain(batch="max", prefix_policy="recompute").saturation_request_rate_per_s


def _classes_mix(probs_P, arrays: bool):
    """A prefix_classes mixture under best over the toy link, as estimate builds it
    (arrays: a vectorised cached length, one stack per class, its candidates served apart)."""
    from kvmodel.catalog.hardware import get_framework, get_gpu
    from kvmodel.catalog.models import get_model
    from kvmodel.instance import _estimate as E
    from kvmodel.instance.seam import params, setup
    s = setup(get_model(M), get_gpu(G), get_framework("tensorrt-llm"), 1, 1, 1, "bf16", "bf16",
              params(None))
    tier = _toy_tier()
    classes = [(p, np.full(300, float(n)) if arrays else n, tier) for p, n in probs_P]
    pkw = (None, "best", "contiguous", BT, 1.0, kvmodel.catalog.hardware.get_connector("ideal"),
           0.0)
    return s, E._prefix_mix(s, float(I), classes, "rate", 0, "hbm", pkw)


@pytest.mark.parametrize("arrays", [False, True])
def test_hit_classes_own_saturation_read_from_the_candidates(arrays):
    """Under best, each class's own (uncontended) throughput-max is read from its stacked
    candidates' results, element by element the candidate its choice took: the same numbers,
    bit for bit, as serving the own choice once more (a scalar stack of rows, and per class
    with vectorised lengths, whose candidates are served one call each)."""
    from kvmodel.instance import _estimate as E
    s, mix = _classes_mix([(0.3, 0), (0.3, 1024), (0.2, P), (0.2, 4096)], arrays)
    args, chose = (O, 1.0, 64.0, 8192.0, 0.0), 0
    for p, ks, L in mix.stacks:
        own, most = E._stack_served(s, L, *args, p, "best", True)
        direct = E._throughput_max(s, L, *args, p, breakdown=False)
        tok_only = E._stack_served(s, L, *args, p, "best", False)[0]  # a later stack's
        assert np.array_equal(np.asarray(tok_only["tok"]), np.asarray(direct["tok"]))
        for key in ("tok", "ttft", "tpot", "B"):
            assert np.array_equal(np.asarray(own[key]), np.asarray(direct[key])), key
        if most is not None:  # (not the miss's own stack: it loads nothing)
            chose += 1
            assert np.all(np.asarray(most) >= np.asarray(own["tok"]))
    assert chose == (3 if arrays else 1)
