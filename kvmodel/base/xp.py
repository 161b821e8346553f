"""Tiny array-or-scalar helpers: Python floats stay Python floats (fast scalar path), numpy
arrays broadcast. Model formulas use only these plus + - * / so one code path serves both."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["maximum", "minimum", "where", "ceil", "floor", "is_array", "power", "any_true"]


_A = np.ndarray


def is_array(*xs: object) -> bool:
    for x in xs:  # (a loop: no generator to build per call)
        if isinstance(x, _A):
            return True
    return False


def maximum(a, b):
    if type(a) is float and type(b) is float:  # the scalar paths' common case first
        return a if a >= b else b
    if isinstance(a, _A) or isinstance(b, _A):
        return np.maximum(a, b)
    return a if a >= b else b


def minimum(a, b):
    if type(a) is float and type(b) is float:
        return a if a <= b else b
    if isinstance(a, _A) or isinstance(b, _A):
        return np.minimum(a, b)
    return a if a <= b else b


def where(cond, a, b):
    if type(cond) is bool and type(a) is float and type(b) is float:
        return a if cond else b
    if isinstance(cond, _A) or isinstance(a, _A) or isinstance(b, _A):
        return np.where(cond, a, b)
    return a if cond else b


def ceil(a):
    return np.ceil(a) if isinstance(a, _A) else float(math.ceil(a))


def floor(a):
    return np.floor(a) if isinstance(a, _A) else float(math.floor(a))


def power(a, b):
    if isinstance(a, _A) or isinstance(b, _A):
        return np.power(a, b)
    return a ** b


def any_true(cond) -> bool:
    """``cond.any()`` for arrays, ``bool(cond)`` for scalars."""
    return bool(cond.any()) if isinstance(cond, _A) else bool(cond)
