"""Argument checks shared by every public function.

Each raises before any work is done, with a message that names the argument,
the value it got and what is allowed.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Iterable


def positive_int(name: str, value, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    low = 0 if allow_zero else 1
    if value < low:
        allowed = "an integer >= 0" if allow_zero else "an integer >= 1"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def fraction(name: str, value) -> float:
    """A number in the closed interval [0, 1] (NaN refused)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r} ({type(value).__name__})")
    value = float(value)
    if not (0.0 <= value <= 1.0):  # also False for NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def choice(name: str, value, allowed: Iterable):
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
    return value
