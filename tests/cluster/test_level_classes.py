"""The routers' level estimate as the replay's two-point hit / miss mixture of uncached work
(kvmodel.workload._routing_closed.routed_work_classes, kvmodel.cluster._routing_load.
level_classes): the classes of a hand-made trace, their interpolation between load levels by
hand, conservation (shares sum to 1, their mean uncached work is the token hit's), and the
instance model's mixture over them."""

import numpy as np
import pytest

import kvmodel
from kvmodel.cluster._routing_load import level_classes
from kvmodel.workload._routing_closed import (
    LOAD_LEVELS,
    RouterLoad,
    routed_token_hit,
    routed_work_classes,
)
from kvmodel.workload._trace_types import Trace


def _toy() -> Trace:
    """Four requests, 100-token blocks, one instance: a 1,000-token prefix (blocks 0-9) missed,
    then found under a 200-token turn, an unrelated 800-token prompt missed, the prefix found
    again under a 400-token turn."""
    chains = [list(range(10)), list(range(10)) + [10, 11], list(range(20, 28)),
              list(range(10)) + [30, 31, 32, 33]]
    off = np.cumsum([0] + [len(c) for c in chains])
    return Trace(np.arange(4.0), np.array([1000, 1200, 800, 1400]), np.full(4, 10), off,
                 np.concatenate(chains).astype(np.int64), block_tokens=100)


def test_toy_trace_classes_by_hand():
    """Hits: r1 (1,200 tokens, 200 uncached) and r3 (1,400, 400): share 1/2, mean prompt 1,300,
    mean uncached 300. Misses: r0 (1,000) and r2 (800): share 1/2, mean 900 computed whole.
    Mean uncached 600 = (1 − h)·1,100 with h = 2,000 / 4,400 cached tokens."""
    hit, miss = routed_work_classes(_toy(), 1, "least_loaded")
    assert hit == pytest.approx((0.5, 1300.0, 300.0))
    assert miss == pytest.approx((0.5, 900.0, 900.0))
    h = routed_token_hit(_toy(), 1, "least_loaded")
    assert h == pytest.approx(2000 / 4400)
    assert hit[0] * hit[2] + miss[0] * miss[2] == pytest.approx((1 - h) * 1100.0, rel=1e-12)


def test_interpolated_level_classes_by_hand():
    """Anchors at the first and last level: hits (0.8, 1,000, 200) then (0.6, 1,200, 300),
    misses (0.2, 900, 900) then (0.4, 1,000, 1,000). Half way (level 0.5): hit share 0.7,
    share-weighted prompt (800 + 720)/2 = 760 -> 1,085.71 tokens, uncached (160 + 180)/2 = 170
    -> 242.86, cached floor(842.86) = 842; miss share 0.3, prompt (180 + 400)/2 / 0.3 =
    966.67 computed whole. Shares sum to 1 at every level; the mean uncached work
    0.7·242.86 + 0.3·966.67 = 460 is the anchors' means (340, 580) half way."""
    a = [((0.8, 1000.0, 200.0), (0.2, 900.0, 900.0)),
         ((0.6, 1200.0, 300.0), (0.4, 1000.0, 1000.0))]
    (ph, Ph, th, Ih), (pm, Pm, tm, Im) = level_classes(a, [LOAD_LEVELS[0], LOAD_LEVELS[-1]])
    k = LOAD_LEVELS.index(0.5)
    assert (th, tm, Pm) == ("hbm", "hbm", 0)
    assert ph[k] == pytest.approx(0.7) and pm[k] == pytest.approx(0.3)
    assert Ih[k] == pytest.approx(760 / 0.7) and Ph[k] == 842.0
    assert Im[k] == pytest.approx(290 / 0.3)
    assert np.allclose(ph + pm, 1.0, rtol=0, atol=1e-12)
    lv = np.asarray(LOAD_LEVELS)
    t = (lv - lv[0]) / (lv[-1] - lv[0])
    mean = ph * (Ih - Ph) + pm * Im  # the hit's cached prefix floored: at most 1 token more
    assert np.all(mean - ((1 - t) * 340 + t * 580) >= -1e-9)
    assert np.all(mean - ((1 - t) * 340 + t * 580) <= ph + 1e-9)
    assert mean[k] == pytest.approx(460.0, abs=0.7)


def test_a_class_no_level_holds_keeps_valid_lengths():
    """No hit anywhere: the hit class has share 0 and caches nothing (a valid prefix)."""
    a = [((0.0, 900.0, 900.0), (1.0, 900.0, 900.0))] * 2
    (ph, Ph, _, Ih), (pm, _, _, Im) = level_classes(a, [LOAD_LEVELS[0], LOAD_LEVELS[-1]])
    assert np.all(ph == 0) and np.all(Ph == 0) and np.all(pm == 1)
    assert np.allclose(Ih, 900.0) and np.allclose(Im, 900.0)


@pytest.mark.parametrize("routing", ["llmd", "sglang", "least_loaded"])
def test_classes_conserve_the_replayed_uncached_work(routing):
    """On a shared-prompt trace at a loaded level: shares sum to 1 and Σ share·uncached is
    the replay's mean uncached work, (1 − token hit) x the mean prompt (nothing rejected)."""
    tr = kvmodel.synthetic_trace(400, seed=2, n_system_prompts=8, system_prompt_tokens=4096,
                                 zipf_alpha=1.0, session_fraction=0.2, user_tokens_mean=512,
                                 output_tokens_mean=64)
    load = RouterLoad(rate_per_s=20.0, residence_s=2.0, prefill_s=0.3, waiting_s=0.1)
    (ph, Ih, uh), (pm, Im, um) = routed_work_classes(tr, 4, routing, load=load)
    h = routed_token_hit(tr, 4, routing, load=load)
    assert ph + pm == pytest.approx(1.0, abs=1e-12) and 0 < pm < 1
    assert um == Im and uh < Ih  # a miss computes its whole prompt, a hit less
    assert ph * uh + pm * um == pytest.approx((1 - h) * float(np.mean(tr.input_len)), rel=1e-9)


def test_level_mixture_at_light_load_is_the_classes_average():
    """The instance model over the two classes at a light load: the mean TTFT is the
    share-weighted TTFT of each class alone (each request prefills by itself); with 5 %
    misses the p99 falls in the miss class (measured 0.243 s, 8 % below the miss alone,
    0.263 s), far above any hit."""
    M, G, lam = "llama-3.1-8b", "h100-sxm", 0.01
    cls = [(0.95, 8000, "hbm", 9000.0), (0.05, 0, "hbm", 9000.0)]
    e = kvmodel.estimate(M, G, input_len=9000, output_len=64, request_rate=lam,
                         prefix_classes=cls)
    hit = kvmodel.estimate(M, G, input_len=9000, output_len=64, request_rate=lam,
                           prefix_classes=[(1.0, 8000, "hbm", 9000.0)])
    miss = kvmodel.estimate(M, G, input_len=9000, output_len=64, request_rate=lam)
    assert e.ttft_s == pytest.approx(0.95 * hit.ttft_s + 0.05 * miss.ttft_s, rel=0.03)
    assert 0.85 * miss.ttft_s <= e.ttft_p99_s <= miss.ttft_p99_s
    assert e.ttft_p99_s > 4 * hit.ttft_p99_s
