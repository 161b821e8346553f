"""Policy registries: one per plug-in family, keyed by stable names.

Families (module, registry): routing (:mod:`.routing`, :data:`ROUTING`), eviction/admission
(:mod:`.eviction`, :data:`EVICTION`), P2P placement (:mod:`.placement`,
:data:`P2P_PLACEMENT`), sharing architecture (:mod:`.sharing`, :data:`SHARING`), KV connectors
(:mod:`.connectors`, :data:`CONNECTOR`, one entry per catalog connector). They are all
:class:`Registry` objects of :class:`PolicyEntry`; :data:`FAMILIES` lists them (the conformance
suite ``tests/policies/test_policy_conformance.py`` runs over every entry of every family). A new family
(e.g. KV-transfer connectors) is one module defining ``REGISTRY = Registry("connector", ...)``
and its entries, plus one line in :data:`FAMILIES`.

Contract of an entry (:class:`PolicyEntry`):

* ``name``: stable registry key (lower case, ``[a-z0-9_-]``), never renamed once published;
  ``description``: one line.
* ``params``: :class:`Param` tuple -- name, default, unit (one of :data:`UNITS`) and the allowed
  range. :meth:`Registry.make` rejects unknown names and out-of-range values with a ValueError
  naming the family, the entry, the parameter, the value and what is allowed.
* ``sim``: the implementation the reference simulators run (a class built with the params as
  keyword arguments), or None when no simulator models the entry; ``simulators`` names them.
* ``closed_form``: the name of the closed form :func:`kvmodel.evaluate` uses for this entry
  (several entries may share one: the closed form may merge variants -- it is stated here, and
  every :class:`kvmodel.ClusterResult` reports it in ``closed_forms``); ``closed_form_fn``: the
  function computing it as ``"module:function"`` (imported on demand), or None;
  ``closed_form_note``: what the closed form keeps and what it ignores of the variant.
* ``object_from_sim``: :meth:`Registry.make` returns ``sim(**params)`` (True) or a
  :class:`PolicyRef` (False, e.g. eviction classes, built per cache with a capacity).
* ``tolerance``: stated absolute agreement of the closed form's hit ratio with the simulator's
  (checked by the conformance suite on a small synthetic trace), None when not checked.

A configuration field accepting a policy takes its registered name or a policy object: an
instance (or class) of the entry's ``sim`` class, or a :class:`PolicyRef` from
:meth:`Registry.make` (entries without ``sim``); :meth:`Registry.name_of` maps either to the
name.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Param", "PolicyEntry", "PolicyRef", "Registry", "UNITS", "FAMILIES",
           "ROUTING", "EVICTION", "P2P_PLACEMENT", "SHARING", "CONNECTOR"]

# units a parameter may carry: "1" (dimensionless weight or ratio), "fraction" (of a quantity,
# >= 0), "count", "s", "s/token", "s/block", "B" (bytes), "key" (a hardware_db key),
# "tier->1" (a dict of per-tier weights, keys of kvmodel.TIER_KINDS)
UNITS = ("1", "fraction", "count", "s", "s/token", "s/block", "B", "key", "tier->1")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class Param:
    """One parameter of a policy: ``default`` (may be None when ``none_ok``), ``unit`` (one of
    :data:`UNITS`), numeric range ``low`` (inclusive, exclusive with ``low_open``) to ``high``
    (inclusive; None: unbounded); ``kind`` float, int, str or dict."""
    name: str
    default: Any
    unit: str
    description: str
    low: float | None = 0.0
    low_open: bool = False
    high: float | None = None
    none_ok: bool = False
    kind: type = float

    def allowed(self) -> str:
        """What the parameter accepts, in words (for error messages)."""
        if self.kind in (str, dict):
            what = "a str" if self.kind is str else "a dict"
        else:
            lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
            hi = "" if self.high is None else f"<= {self.high:g}"
            what = f"a finite {'integer' if self.kind is int else 'number'} " + \
                   " and ".join(x for x in (lo, hi) if x)
        return what + (" or None" if self.none_ok else "") + f" ({self.unit})"

    def ok(self, v: Any) -> bool:
        """True when ``v`` is an allowed value."""
        if v is None:
            return self.none_ok
        if self.kind in (str, dict):
            return isinstance(v, self.kind)
        real = isinstance(v, (int, float, np.integer, np.floating))
        if isinstance(v, (bool, np.bool_)) or not real or not math.isfinite(float(v)):
            return False
        if self.kind is int and float(v) != int(v):
            return False
        lo_ok = self.low is None or (v > self.low if self.low_open else v >= self.low)
        return lo_ok and (self.high is None or v <= self.high)


@dataclass(frozen=True)
class PolicyRef:
    """A policy object of an entry without a simulator class: its family, name and params."""
    family: str
    name: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyEntry:
    """One registered variant (contract: the module docstring)."""
    name: str
    description: str
    closed_form: str
    params: tuple[Param, ...] = ()
    sim: type | None = None
    simulators: tuple[str, ...] = ()
    closed_form_fn: str | None = None
    closed_form_note: str = ""
    tolerance: float | None = None
    tags: tuple[str, ...] = ()
    object_from_sim: bool = True

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def closed_form_function(self) -> Callable | None:
        """The closed form's function (imported now), or None."""
        if self.closed_form_fn is None:
            return None
        mod, _, fn = self.closed_form_fn.partition(":")
        return getattr(importlib.import_module(mod), fn)


class Registry(Mapping):
    """Entries of one family keyed by name (a read-only Mapping name -> :class:`PolicyEntry`,
    in registration order). ``family`` is the word used in error messages."""

    def __init__(self, family: str, description: str):
        self.family, self.description = family, description
        self._entries: dict[str, PolicyEntry] = {}

    def register(self, entry: PolicyEntry) -> PolicyEntry:
        """Add ``entry``; ValueError for a malformed or duplicate name or a bad param."""
        if not _NAME.match(entry.name) or entry.name in self._entries:
            raise ValueError(f"{self.family} entry name {entry.name!r}: must match "
                             f"{_NAME.pattern} and be new; registered: {', '.join(self)}")
        for p in entry.params:
            if p.unit not in UNITS or not p.ok(p.default):
                raise ValueError(f"{self.family} {entry.name!r}: param {p.name!r} needs a unit "
                                 f"in {UNITS} and an allowed default, got {p.unit!r}, "
                                 f"{p.default!r}")
        self._entries[entry.name] = entry
        return entry

    def __getitem__(self, name: str) -> PolicyEntry:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}: {', '.join(self)})"

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def get_entry(self, name: Any, label: str | None = None) -> PolicyEntry:
        """The entry of ``name``; ValueError naming ``label`` (default: the family), the value
        and the registered names when it is unknown."""
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        raise ValueError(f"{label or self.family}={name!r}: unknown policy; registered "
                         f"{self.family} policies: {', '.join(self)}")

    def name_of(self, value: Any, label: str | None = None) -> str:
        """Registered name of ``value``: a name, a :class:`PolicyRef` of this family, or an
        instance or class of an entry's ``sim`` (TypeError for another type, ValueError for an
        unknown name)."""
        if isinstance(value, str):
            return self.get_entry(value, label).name
        if isinstance(value, PolicyRef) and value.family == self.family:
            return self.get_entry(value.name, label).name
        cls = value if isinstance(value, type) else type(value)
        for e in self._entries.values():
            if e.sim is not None and issubclass(cls, e.sim) and getattr(value, "name", None) == e.name:
                return e.name
        raise TypeError(f"{label or self.family}={value!r}: expected a registered name "
                        f"({', '.join(self)}) or a policy object of one (Registry.make)")

    def check_params(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` over the entry's defaults; ValueError for an unknown name or a value
        outside its range."""
        e = self.get_entry(name)
        unknown = sorted(set(params) - set(e.param_names))
        if unknown:
            raise ValueError(f"{self.family}={name!r}: unknown parameter(s) {unknown}; "
                             f"accepted: {', '.join(e.param_names) or 'none'}")
        for p in e.params:
            if p.name in params and not p.ok(params[p.name]):
                raise ValueError(f"{self.family}={name!r}: {p.name}={params[p.name]!r}: "
                                 f"must be {p.allowed()}")
        return {**e.defaults(), **params}

    def make(self, name: str, **params: Any) -> Any:
        """A policy object: ``sim(**params)`` when the entry's simulator class is built from the
        params (``object_from_sim``; only the given params are passed), else a
        :class:`PolicyRef` carrying every param (e.g. eviction classes are built per cache,
        with its capacity)."""
        full = self.check_params(name, params)
        e = self._entries[name]
        if e.sim is not None and e.object_from_sim:
            return e.sim(**params)
        return PolicyRef(self.family, name, full)

    def implementations(self) -> "_Implementations":
        """Live read-only view name -> ``sim`` class of the entries that have one."""
        return _Implementations(self)


class _Implementations(Mapping):
    def __init__(self, reg: Registry):
        self._reg = reg

    def __getitem__(self, name):
        e = self._reg._entries.get(name)
        if e is None or e.sim is None:
            raise KeyError(name)
        return e.sim

    def __iter__(self):
        return (n for n, e in self._reg._entries.items() if e.sim is not None)

    def __len__(self):
        return sum(1 for _ in self)

    def __repr__(self):
        return repr(dict(self))


from kvmodel.policies.connectors import REGISTRY as CONNECTOR  # noqa: E402  (entries need the base above)
from kvmodel.policies.eviction import REGISTRY as EVICTION  # noqa: E402
from kvmodel.policies.placement import REGISTRY as P2P_PLACEMENT  # noqa: E402
from kvmodel.policies.routing import REGISTRY as ROUTING  # noqa: E402
from kvmodel.policies.sharing import REGISTRY as SHARING  # noqa: E402

FAMILIES: dict[str, Registry] = {"routing": ROUTING, "eviction": EVICTION,
                                 "p2p_placement": P2P_PLACEMENT, "sharing": SHARING,
                                 "connector": CONNECTOR}
