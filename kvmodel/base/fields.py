"""Result-field conventions shared by the public result classes.

Suffixes: ``_s`` seconds, ``_per_s`` rates (per second), ``_B`` bytes, ``_Bps`` bytes/s,
``_usd_per_h`` dollars per hour, ``_usd_per_mtok`` dollars per million output tokens.

:func:`deprecated_alias` keeps a renamed field readable for one release (a read-only property
that warns and returns the new field); :func:`jsonable` turns a dataclass's fields into a
JSON-safe dict (arrays -> lists, non-finite floats -> None).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Mapping

import numpy as np

__all__ = ["deprecated_alias", "add_aliases", "jsonable", "fields_dict", "RenamedDict"]


def deprecated_alias(old: str, new: str) -> property:
    """Read-only property ``old`` returning attribute ``new`` with a DeprecationWarning."""
    def get(self: Any) -> Any:
        warnings.warn(f"{type(self).__name__}.{old} is deprecated; use .{new} (the same value)",
                      DeprecationWarning, stacklevel=2)
        return getattr(self, new)
    return property(get, doc=f"Deprecated alias of ``{new}`` (removed in the next release).")


def add_aliases(cls: type, renames: Mapping[str, str]) -> type:
    """Attach ``old -> new`` deprecation aliases to ``cls``; records them in ``cls.RENAMED``."""
    for old, new in renames.items():
        setattr(cls, old, deprecated_alias(old, new))
    cls.RENAMED = dict(getattr(cls, "RENAMED", {}), **renames)
    return cls


def jsonable(v: Any) -> Any:
    """``v`` with arrays as lists, tuples as lists, numpy scalars as Python scalars and
    non-finite floats as None (recursively through mappings and sequences)."""
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if dataclasses.is_dataclass(v) and hasattr(v, "to_dict"):
        return v.to_dict()
    if isinstance(v, np.generic):
        return jsonable(v.item())
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RenamedDict(dict):
    """A dict whose keys are the current field names; looking up a renamed field's old name
    (``d["goodput_rps"]``) still works for one release, with a DeprecationWarning. Old names
    are not keys: iteration, ``in``, ``len`` and JSON see the new names only."""

    def __init__(self, data: Mapping[str, Any], renamed: Mapping[str, str]):
        super().__init__(data)
        self._renamed = dict(renamed)

    def __missing__(self, key: str) -> Any:
        new = self._renamed.get(key)
        if new is None:
            raise KeyError(key)
        warnings.warn(f"to_dict() key {key!r} is deprecated; use {new!r} (the same value)",
                      DeprecationWarning, stacklevel=2)
        return self[new]


def fields_dict(obj: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """JSON-safe dict of a dataclass instance built from its fields (never a hand list); a
    :class:`RenamedDict` when the class has renamed fields."""
    d = {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
         if f.name not in exclude}
    renamed = getattr(type(obj), "RENAMED", None)
    return RenamedDict(d, renamed) if renamed else d
