"""The scalar evaluate's shortcuts give exactly the numbers of the paths they stand for: the
open loop's root hands its last residual's step parts on (no second pass of the same steps),
the array-or-scalar helpers' Python-float path, and the stable-scalar exit of the unstable
reasons."""

import itertools
import math

import numpy as np

from kvmodel.base import xp
from kvmodel.catalog.hardware import FrameworkSpec, get_gpu
from kvmodel.catalog.models import ModelSpec
from kvmodel.instance import _estimate
from kvmodel.instance import _openloop as ol
from kvmodel.instance._roofline import Setup
from kvmodel.instance.seam import Reasons

TOY = ModelSpec(key="toy", name="toy", hf_id="toy", attention="mha", hidden_size=1000,
                num_layers=10, num_attention_heads=10, num_kv_heads=10, head_dim=100,
                intermediate_size=4000, vocab_size=10_000)


def _setup() -> Setup:
    """Round-number toy hardware: 1 PFLOP/s, 1 TB/s HBM, 1 ms step overhead."""
    fw = FrameworkSpec("toy", "toy", 0.001, {})
    return Setup(model=TOY, gpu=get_gpu("h100-sxm"), framework=fw, tp=1, pp=1, ep=1, w_B=2.0,
                 kv_B=2.0, act_B=2.0, gemm_Fps=1e15, attn_Fps=1e15, hbm_Bps=1e12,
                 coll_alpha_s=0.0, coll_Bps=1e12, p2p_alpha_s=0.0, overhead_s=0.001)


def test_busy_parts_are_busy_step_and_step_parts():
    s = _setup()
    cls = (np.array([0.3, 0.7]), np.array([900.0, 3000.0]))
    for t, D, c in [(0.004, 12.0, None), (0.02, 60.0, cls), (np.array([0.004, 0.02]),
                                                             np.array([12.0, 60.0]), None)]:
        args = (s, t, D, 2.0, 2000.0, 1500.0, 2100.0, 4096.0, c)
        g, ops, parts = ol.busy_parts(*args)
        g1, ops1 = ol.busy_step(*args)
        assert np.array_equal(g, g1) and ops.keys() == ops1.keys()
        for a, b in zip(parts, ol.step_parts(*args)):
            assert np.array_equal(a, b)
        f, t_p, t_d, P = parts
        assert np.array_equal(g, f * t_p + (1.0 - f) * t_d - t)  # the residual is its parts'


def test_open_step_parts_are_those_at_its_root():
    """What the open loop reads after the root is step_parts at the root's t and D."""
    s = _setup()
    t, _, D, parts = _estimate._open_step(s, 5.0, 2000.0, 200.0, 1500.0, 2100.0, 64.0, 4096.0)
    assert parts == ol.step_parts(s, t, D, 5.0, 2000.0, 1500.0, 2100.0, 4096.0)
    f, t_p, t_d, _ = parts
    assert abs(f * t_p + (1.0 - f) * t_d - t) <= 1e-7 * t  # a root of the busy-step residual


def _old_max(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.maximum(a, b)
    return a if a >= b else b


def _old_min(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.minimum(a, b)
    return a if a <= b else b


def _old_where(cond, a, b):
    if isinstance(cond, np.ndarray) or isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.where(cond, a, b)
    return a if cond else b


def _same(x, y) -> bool:
    return type(x) is type(y) and (np.array_equal(x, y, equal_nan=True) if isinstance(
        x, np.ndarray) else (x == y or (x != x and y != y)) and math.copysign(1, x) == math.copysign(1, y))


def test_xp_float_paths_match_the_general_ones():
    vals = [0.0, -0.0, 1.5, -2.0, math.inf, math.nan, 3, np.float64(2.5), np.array([1.0, -1.0])]
    for a, b in itertools.product(vals, repeat=2):
        assert _same(xp.maximum(a, b), _old_max(a, b)), (a, b)
        assert _same(xp.minimum(a, b), _old_min(a, b)), (a, b)
        for cond in (True, False, np.True_, np.array([True, False])):
            assert _same(xp.where(cond, a, b), _old_where(cond, a, b)), (cond, a, b)
    assert xp.is_array(1.0, np.array(2.0)) and not xp.is_array(1.0, np.float64(2.0)) and \
        not xp.is_array()


def _reasons(res, N, sat, own, fast: bool, first=None) -> tuple:
    r = Reasons(())
    if first:
        r.add(True, first)
    if fast:
        _estimate._unstable_reasons(r, res, N, sat, own)
    else:
        saved = _estimate._stable_scalar
        _estimate._stable_scalar = lambda *a: False
        try:
            _estimate._unstable_reasons(r, res, N, sat, own)
        finally:
            _estimate._stable_scalar = saved
    return r.shape, r.ok, r.reason


def test_stable_scalar_exit_says_what_the_full_path_says():
    for stable, why, N, sat, own, names, first in itertools.product(
            (True, False, np.True_, np.False_), (0, 1, 2, 3), (1.0, 5.0, 9.0, math.nan),
            (5.0, 8.0, math.nan), (3.0, 6.0, 10.0), ((), ("nic",)), (None, "infeasible")):
        if why >= 3 and not names:
            continue  # (a path segment's index names a segment)
        res = dict(stable=stable, why=why, path_names=names)
        assert _reasons(res, N, sat, own, True, first) == _reasons(res, N, sat, own, False, first)
    res = dict(stable=np.array([True, False]), why=np.array([0, 1]))  # arrays: the full path
    assert not _estimate._stable_scalar(Reasons(()), res, 1.0, 5.0, 6.0)
