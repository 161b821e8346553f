"""Saturation of a mixture of request sizes (kvmodel.instance._estimate._mixed_batch,
_throughput_max_mix): one saturated batch of the mixture, its count set by Little on the
reserved tokens (N = fits/w1) and its decoders at the mixture's context. Hand arithmetic on a
toy whose every step lasts 10 ms, identities, monotonicity and the simulator as an oracle."""

import numpy as np
import pytest

import kvmodel
from kvmodel.catalog.hardware import FrameworkSpec, get_gpu
from kvmodel.instance import _estimate as E
from kvmodel.instance._roofline import Setup
from kvmodel.sim import poisson_requests, simulate
from tests.instance.test_unmixed_steps import TOY

M, G = "llama-3.1-8b", "h100-sxm"
# two classes, prompts 1000 / 9000 (mean 5000), outputs 101 / 301 (mean 201)
TWO = [(0.5, 0, "hbm", 1000, 101), (0.5, 0, "hbm", 9000, 301)]
PKW = (None, "best", "contiguous", 256, 1.0, E.get_connector("ideal"), 1.0)


def _toy() -> Setup:
    """Every step lasts exactly its 10 ms overhead: compute and memory are (almost) free."""
    return Setup(model=TOY, gpu=get_gpu(G), framework=FrameworkSpec("toy", "toy", 0.01, {}),
                 tp=1, pp=1, ep=1, w_B=2.0, kv_B=2.0, act_B=2.0, gemm_Fps=1e30, attn_Fps=1e30,
                 hbm_Bps=1e30, coll_alpha_s=0.0, coll_Bps=1e30, p2p_alpha_s=0.0,
                 overhead_s=0.01)


def _toy_mix(classes=TWO, O=201.0, seq_cap=2048.0):
    s = _toy()
    mix = E._prefix_mix(s, 5000.0, classes, "rate", 0, "hbm", PKW)
    mix.set_output(O)
    mix.seq_cap = seq_cap
    return s, mix


def test_mixed_batch_by_hand():
    """fits 40 mean reservations, budget 2048 − 40 = 2008: chunks 1 and ceil(9000/2008) = 5,
    so the holds are 100 + 1 = 101 and 300 + 5 = 305 steps (mean 203); reservations 1101 and
    9301 (mean 5201); w1 = ½(1101·101 + 9301·305)/(5201·203) = 1474003/1055803, N = 40/w1
    = 28.651. Decoders weighted ½·100 and ½·300 at 1000 + 50.5 and 9000 + 150.5 tokens:
    (50·1050.5 + 150·9150.5)/200 = 7125.5."""
    s, mix = _toy_mix()
    N, ctx = E._mixed_batch(s, 201.0, 40.0, 2048.0, mix)
    assert N == pytest.approx(40.0 * 1055803.0 / 1474003.0, rel=1e-12)
    assert ctx == pytest.approx(7125.5, rel=1e-12)


def test_toy_saturation_by_hand():
    """Every step 10 ms: N requests hold 203 steps on average, so λ_sat = N / (203 · 10 ms)
    = 14.114 req/s (each class alone at the 40 fits gave 40/2.03 = 19.70)."""
    s, mix = _toy_mix()
    sat = E._throughput_max_mix(s, 5000.0, 201.0, 1.0, 40.0, 2048.0, 0.0, mix)
    lam = sat["tok"] / 201.0
    assert lam == pytest.approx(40.0 * 1055803.0 / 1474003.0 / 2.03, rel=1e-6)


def test_max_batch_size_sets_the_batch_where_it_binds():
    """fits = max_batch_size (40): the pool's own count is unknown, the batch stays at 40."""
    s, mix = _toy_mix(seq_cap=40.0)
    assert E._mixed_batch(s, 201.0, 40.0, 2048.0, mix)[0] == 40.0
    lam = E._throughput_max_mix(s, 5000.0, 201.0, 1.0, 40.0, 2048.0, 0.0, mix)["tok"] / 201.0
    assert lam == pytest.approx(40.0 / 2.03, rel=1e-6)


def _sat(classes, I, O=201, **kw):
    return kvmodel.estimate(M, G, input_len=I, output_len=O, request_rate=0.1,
                            prefix_classes=classes, **kw).saturation_request_rate_per_s


def test_one_class_is_todays_saturation_bit_for_bit():
    """One class, or classes of one size (hits of one prompt): no mixed batch, each class at
    the estimate's batch and own context as before."""
    s, mix = _toy_mix([(1.0, 0, "hbm", 5000, 201)])
    assert E._mixed_batch(s, 201.0, 40.0, 2048.0, mix) == (40.0, None)
    s, mix = _toy_mix([(0.5, 0, "hbm"), (0.5, 0, "hbm")])
    assert E._mixed_batch(s, 201.0, 40.0, 2048.0, mix) == (40.0, None)


def test_two_equal_halves_are_one_class():
    one = _sat([(1.0, 0, "hbm", 4000, 201)], 4000)
    halves = _sat([(0.5, 0, "hbm", 4000, 201), (0.5, 0, "hbm", 4000, 201)], 4000)
    assert halves == pytest.approx(one, rel=1e-9)


def test_longer_prompts_never_raise_the_saturation():
    rates = []
    for L2 in (2000, 8000, 20000, 40000, 80000):
        rates.append(_sat([(0.8, 0, "hbm", 2000, 201), (0.2, 0, "hbm", L2, 201)],
                          0.8 * 2000 + 0.2 * L2))
    assert np.all(np.diff(rates) < 0), rates
    more = [_sat([(1 - p, 0, "hbm", 2000, 201), (p, 0, "hbm", 40000, 201)],
                 (1 - p) * 2000 + p * 40000) for p in (0.05, 0.1, 0.2, 0.4)]
    assert np.all(np.diff(more) < 0), more


def test_arrays_of_probabilities_match_their_scalars():
    """A configuration axis of hit-free class probabilities: each element as alone."""
    p = np.array([0.1, 0.3])
    arr = _sat([(1 - p, 0, "hbm", 2000, 201), (p, 0, "hbm", 40000, 201)], 2000 + p * 38000)
    for j, x in enumerate(p):
        one = _sat([(1 - float(x), 0, "hbm", 2000, 201), (float(x), 0, "hbm", 40000, 201)],
                   2000 + float(x) * 38000)
        assert arr[j] == pytest.approx(one, rel=1e-9)


def _stationary(n: int, rate: float, seed: int):
    """Mooncake conversation (prompt, output) pairs drawn i.i.d., Poisson arrivals (the
    stream of benchmarks/kv_slot_occupancy.py --stationary)."""
    base = kvmodel.load_trace("mooncake-conversation")
    k = np.random.default_rng(10_000 + seed).integers(0, len(base.input_len), n)
    return poisson_requests(n, rate, base.input_len[k], base.output_len[k], seed=seed)


@pytest.mark.parametrize("model,tp", [("llama-3.1-8b", 1), ("llama-3.1-70b", 8)])
def test_saturation_against_the_simulator(model, tp):
    """The cluster's prompt bands on one instance, no prefix cache: the closed form's
    λ_sat within 3 % of the simulator's served rate from a backlog (1.2x; finishes n/6 ..
    2n/3). Measured +1.0 % (8B) and −1.3 % (70B TP8); each class alone at the estimate's
    batch and own context gave +9.1 % and +2.6 %."""
    c = kvmodel.Cluster(model, G, instances=1, tp=tp, precision="bf16", routing="round_robin",
                        hbm_cache_fraction=0.0, dram_B=0.0, ssd_B=0.0)
    w = kvmodel.Workload(_stationary(20_000, 1.0, 0)).with_rate(0.1)
    inst = next(iter(kvmodel.evaluate(c, w).instances.values()))
    sat = float(inst.saturation_request_rate_per_s)
    n = 6000
    s = simulate(model, G, _stationary(n, 1.2 * sat, 1), instances=1, tp=tp, precision="bf16")
    done = np.sort(s.arrival_s + s.e2e_s)
    served = (2 * n // 3 - n // 6) / (done[2 * n // 3] - done[n // 6])
    assert sat == pytest.approx(served, rel=0.03)
