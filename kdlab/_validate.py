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


def class_indices(name: str, y, *, num_classes: int | None = None, allow_unlabelled: bool = False):
    """``y`` as a 1-D tensor of integer class indices in ``[0, num_classes)`` (``-1``,
    kdlab's UNLABELLED, also allowed with ``allow_unlabelled``)."""
    import torch

    try:
        t = torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must hold integer class indices, got {type(y).__name__}") from None
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        example = next((v for v in t.tolist() if float(v) != int(v)), t[0].item() if len(t) else None)
        raise TypeError(f"{name} must hold integer class indices, got {t.dtype} values such as {example!r}"
                        f"; convert with .long() if they are whole numbers")
    if len(t):
        low = -1 if allow_unlabelled else 0
        if int(t.min()) < low:
            hint = (" (-1 marks an unlabelled example, kdlab.data.UNLABELLED; keep only labelled ones here)"
                    if int(t.min()) == -1 else "")
            raise ValueError(f"{name} must hold class indices >= {low}, got {int(t.min())}{hint}")
        if num_classes is not None and int(t.max()) >= num_classes:
            raise ValueError(f"{name} must hold class indices < {num_classes} (the number of classes), "
                             f"got {int(t.max())}")
    return t


def shape(name: str, value) -> tuple:
    """A shape: a tuple (or list) of positive integers."""
    if isinstance(value, (int, bool)) or not isinstance(value, (tuple, list, )) and not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be a shape, a tuple of positive integers such as (64,) or (1, 8, 8); "
                        f"got {value!r}")
    value = tuple(value)
    for i, s in enumerate(value):
        positive_int(f"{name}[{i}]", s)
    return value


def sequence(name: str, value, example: str) -> list:
    """A list, tuple or other iterable of several values (a bare number or string is refused)."""
    if isinstance(value, (str, bytes, int, float, bool)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a sequence such as {example}, got {value!r}")
    return list(value)


def float_tensor(name: str, value, what: str = "values"):
    """A floating-point ``torch.Tensor`` (of ``what``: logits, features, ...)."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of {what}, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def example_input(name: str, value) -> tuple:
    """A model's example input, a tensor or a tuple of tensors, as the tuple of its arguments."""
    import torch

    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, tuple) and value and all(isinstance(t, torch.Tensor) for t in value):
        return value
    raise TypeError(f"{name} must be a tensor or a tuple of tensors, got {type(value).__name__}")
