"""Tiny array-or-scalar helpers: Python floats stay Python floats (fast scalar path), numpy
arrays broadcast. Model formulas use only these plus + - * / so one code path serves both."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["maximum", "minimum", "where", "ceil", "floor", "is_array", "power"]


def is_array(*xs: object) -> bool:
    return any(isinstance(x, np.ndarray) for x in xs)


def maximum(a, b):
    return np.maximum(a, b) if is_array(a, b) else (a if a >= b else b)


def minimum(a, b):
    return np.minimum(a, b) if is_array(a, b) else (a if a <= b else b)


def where(cond, a, b):
    return np.where(cond, a, b) if is_array(cond, a, b) else (a if cond else b)


def ceil(a):
    return np.ceil(a) if is_array(a) else float(math.ceil(a))


def floor(a):
    return np.floor(a) if is_array(a) else float(math.floor(a))


def power(a, b):
    return np.power(a, b) if is_array(a, b) else a ** b
