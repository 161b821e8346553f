"""Service variability of prompt-length classes in the open loop: the prefill server's SCV
counted in seconds (attention grows as n², kvmodel.instance._mixture.PrefixMix.seconds_scv)
and the KV-slot queue counted in reserved tokens (kvmodel.instance._openloop.slot_queue)."""

from types import SimpleNamespace

import pytest

from kvmodel.instance import _openloop as ol
from kvmodel.instance._mixture import PrefixMix

LENS = [1024.0, 7168.0]


def _mix(lengths: bool, lens=LENS) -> PrefixMix:
    none = SimpleNamespace(none=True, loaded=0.0, exposed=0.0, save_sync=False)
    return PrefixMix([0.5, 0.5], [none, none], list(lens), lengths)


def test_seconds_scv_is_the_token_scv_without_attention_pairs():
    mix = _mix(True)
    tokens = mix.new_scv(4096.0, 0.0)
    assert tokens == pytest.approx((0.5 * (1024 ** 2 + 7168 ** 2)) / 4096 ** 2 - 1.0)
    assert mix.seconds_scv(tokens, 1e-5, 0.0) == pytest.approx(tokens)


def test_attention_pairs_weigh_the_long_prompts_more():
    """Each class's seconds: n·σ plus its pairs beyond the mean's per token; the long class's
    pairs grow as n², so the SCV in seconds exceeds the SCV in tokens, more so the dearer a
    pair."""
    mix = _mix(True)
    tokens = mix.new_scv(4096.0, 0.0)
    low, high = (mix.seconds_scv(tokens, 1e-5, s) for s in (1e-10, 1e-9))
    assert tokens < low < high
    secs = [1e-5 * n + 1e-9 * (mix.pairs_k(k) - n * mix.attn) for k, n in enumerate(LENS)]
    mean = sum(secs) / 2
    assert high == pytest.approx(sum(x * x for x in secs) / 2 / mean ** 2 - 1.0)


def test_hit_classes_keep_the_token_scv():
    mix = _mix(False, [4096.0, 4096.0])
    assert mix.seconds_scv(0.7, 1e-5, 1e-9) == 0.7
    assert mix.reserve_scv(128.0) == 0.0


def test_reservation_scv_counts_prompt_and_output():
    r = [L + 128.0 for L in LENS]
    mean = sum(r) / 2
    assert _mix(True).reserve_scv(128.0) == pytest.approx(
        sum(x * x for x in r) / 2 / mean ** 2 - 1.0)


def test_reserved_tokens_widen_the_slot_queue():
    """c_r² = 0 is the count law exactly; variable reservations make the occupancy (in mean
    reservations) more dispersed, so more requests wait and each waits longer."""
    lam, hold, c, sat = 10.0, 8.0, 101.0, 12.0
    args = (lam, hold, 0.02, 1e-4, 128.0, c, sat, 1.0)
    base = ol.slot_queue(*args)
    assert ol.slot_queue(*args, 0.0, 0.0) == base
    w1, p1, N1 = ol.slot_queue(*args, 0.0, 1.3 ** 2)
    assert N1 == base[2]  # the mean occupancy does not move
    assert p1 > base[1] and w1 > base[0]
    w2, p2, _ = ol.slot_queue(*args, 0.0, 2.0 ** 2)
    assert p2 > p1 and w2 > w1


def test_lognormal_spread_bands_keep_the_token_scv():
    """length_cv's bands (PrefixMix.seconds False) stand for a spread of uncached work: no
    attention-pair term."""
    mix = _mix(True)
    mix.seconds = False
    tokens = mix.new_scv(4096.0, 0.0)
    assert mix.seconds_scv(tokens, 1e-5, 1e-9) == tokens
