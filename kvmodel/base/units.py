"""Unit strings of ``hardware_db`` files, parsed in one place.

Every unit maps to a dimension and a factor to SI (bytes, seconds, FLOP, watts, dollars).
GB = 1e9 B and GiB = 2**30 B are distinct units; line rates in bits (``Gb/s``) are divided by 8.
Unknown units are errors: a bare prefix never stands for a unit.
"""

from __future__ import annotations

__all__ = ["UNITS", "to_si", "dimension_of"]

_DEC = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BIN = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def _build() -> dict[str, tuple[str, float]]:
    units: dict[str, tuple[str, float]] = {}
    for p, f in {**_DEC, **_BIN}.items():
        if p in ("P",):
            continue
        units[f"{p}B"] = ("bytes", f)
        units[f"{p}B/s"] = ("bandwidth", f)
    for p in ("M", "G", "T"):
        units[f"{p}b/s"] = ("bandwidth", _DEC[p] / 8.0)
    for p in ("", "G", "T", "P"):
        units[f"{p}FLOP/s"] = ("compute", _DEC[p])
    units.update({
        "s": ("time", 1.0), "ms": ("time", 1e-3), "us": ("time", 1e-6), "ns": ("time", 1e-9),
        "W": ("power", 1.0), "kW": ("power", 1e3),
        "USD": ("money", 1.0), "USD/h": ("money_rate", 1.0 / 3600.0),
        "USD/GB": ("money_per_byte", 1e-9), "USD/TB": ("money_per_byte", 1e-12),
        "1": ("dimensionless", 1.0), "count": ("count", 1.0),
    })
    return units


UNITS: dict[str, tuple[str, float]] = _build()


def dimension_of(unit: str) -> str:
    """Dimension name of ``unit`` (``bytes``, ``bandwidth``, ``compute``, ``time``...)."""
    try:
        return UNITS[unit][0]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}; allowed: {', '.join(sorted(UNITS))}") from None


def to_si(value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` to SI (B, B/s, FLOP/s, s, W, USD, USD/s, USD/B)."""
    dimension_of(unit)
    return float(value) * UNITS[unit][1]
