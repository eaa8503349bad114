"""What the student learns from: soft targets, several teachers combined, a transfer set
labelled by teachers, the teachers' logits cached on in-memory data, and temperature
schedules.

- soft targets ``q_i = exp(z_i / T) / sum_j exp(z_j / T)`` on the teacher's **logits** z;
- several teachers with weights ``w_k``: ``softmax(sum_k w_k z_k / T)`` (``mode="logits"``)
  or ``sum_k w_k softmax(z_k / T)`` (``mode="probs"``);
- a schedule ``T(epoch)``: constant, linear or cosine from ``start`` to ``end``.

Every function takes ``temperature`` by keyword; its default is
:data:`DEFAULT_TEMPERATURE`, the ``T = 4`` of the course's experiments.

>>> import torch
>>> soft_targets(torch.tensor([[4.0, 1.0, 0.0]]), temperature=4.0).round(decimals=3)
tensor([[0.5430, 0.2570, 0.2000]])
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdlab import _deprecation, _validate

DEFAULT_TEMPERATURE = 4.0
"""The default ``T`` of every kdlab function that takes a temperature."""

MULTI_TEACHER_MODES = ("logits", "probs")


def _temperature(value, name: str = "temperature") -> float:
    return _validate.positive_float(name, value)


def _old_default(temperature, where: str) -> float:
    """``temperature`` as given, or 1.0 (the old default of ``where``) with a warning
    attributed to the caller of ``where`` (which is wrapped by one decorator)."""
    if temperature is not None:
        return temperature
    _deprecation.warn(f"calling {where} without temperature (the old default, T = 1.0)",
                      f"{where}(..., temperature=1.0) for the plain softmax; the default becomes "
                      f"DEFAULT_TEMPERATURE = {DEFAULT_TEMPERATURE}", stacklevel=5)
    return 1.0


@_deprecation.keyword_only(1, ("temperature", "dim"))
def soft_targets(logits: torch.Tensor, *, temperature: float | None = None, dim: int = -1) -> torch.Tensor:
    """Soft targets ``softmax(logits / T)`` along ``dim``.

    ``q_i = exp(z_i / T) / sum_j exp(z_j / T)``. ``T = 1`` is the plain softmax,
    ``T -> 0`` approaches one-hot on the largest logit, ``T -> inf`` the uniform
    distribution. ``T`` divides **logits**: ``softmax(p / T)`` applied to
    probabilities ``p`` is a different distribution (nearly uniform for any T >= 1).

    Args:
        logits: a floating-point tensor of logits.
        temperature: ``T``, a finite number > 0. Leaving it out still means 1.0 in this
            release (with a warning); it will mean :data:`DEFAULT_TEMPERATURE`.
        dim: the class dimension.

    >>> soft_targets(torch.tensor([2.0, 0.0]), temperature=2.0)
    tensor([0.7311, 0.2689])
    """
    logits = _validate.float_tensor("logits", logits, "logits")
    temperature = _temperature(_old_default(temperature, "kdlab.distill.soft_targets"))
    return torch.softmax(logits / temperature, dim=dim)


# --------------------------------------------------------------------------- several teachers

def _weights(name: str, weights, count: int) -> torch.Tensor:
    """Non-negative weights, one per teacher, normalised to sum to 1."""
    if weights is None:
        return torch.full((count,), 1.0 / count)
    if isinstance(weights, torch.Tensor):
        weights = weights.tolist()
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers, one per teacher, got {type(weights).__name__}")
    if len(weights) != count:
        raise ValueError(f"{name} must have one entry per teacher ({count}), got {len(weights)}")
    values = [_validate.positive_float(f"{name}[{i}]", w, allow_zero=True) for i, w in enumerate(weights)]
    if sum(values) == 0:
        raise ValueError(f"{name} must not all be zero, got {list(weights)!r}")
    total = sum(values)
    return torch.tensor([v / total for v in values])


def _stack(teacher_logits) -> torch.Tensor:
    if isinstance(teacher_logits, torch.Tensor):
        if teacher_logits.ndim != 3:
            raise ValueError(f"teacher_logits as one tensor must have shape (teachers, N, C), "
                             f"got {tuple(teacher_logits.shape)}")
        stacked = teacher_logits
    else:
        teacher_logits = list(teacher_logits)
        if not teacher_logits:
            raise ValueError("teacher_logits must hold at least one teacher's logits, got an empty sequence")
        for i, z in enumerate(teacher_logits):
            _validate.float_tensor(f"teacher_logits[{i}]", z, "logits")
            if z.shape != teacher_logits[0].shape:
                raise ValueError(f"teacher_logits[{i}] has shape {tuple(z.shape)}, "
                                 f"teacher_logits[0] has {tuple(teacher_logits[0].shape)}: all must agree")
        stacked = torch.stack(teacher_logits)
    if len(stacked) == 0:
        raise ValueError("teacher_logits must hold at least one teacher's logits, got none")
    return _validate.float_tensor("teacher_logits", stacked, "logits")


def combine(stacked: torch.Tensor, weights: torch.Tensor, temperature: float, mode: str):
    """``(combined logits or None, log of the combined soft targets)`` of ``(K, ..., C)``
    stacked teacher logits, along the last dim (no argument checks: see
    :func:`multi_teacher_targets`)."""
    w = weights.to(stacked).view(-1, *([1] * (stacked.ndim - 1)))
    if mode == "logits":
        logits = (w * stacked).sum(0)
        return logits, F.log_softmax(logits / temperature, dim=-1)
    # log sum_k w_k q_k, kept in log space; zero-weight teachers drop out as log 0 = -inf
    log_q = torch.logsumexp(w.log() + F.log_softmax(stacked / temperature, dim=-1), dim=0)
    return None, log_q


@_deprecation.keyword_only(1, ("temperature", "weights", "mode"))
def multi_teacher_targets(teacher_logits, *, temperature: float = DEFAULT_TEMPERATURE, weights=None,
                          mode: str = "logits") -> torch.Tensor:
    """Soft targets from several teachers, with weights ``w_k >= 0`` normalised to sum 1.

    - ``mode="logits"``: ``softmax(sum_k w_k z_k / T)`` (average the logits, then soften);
    - ``mode="probs"``:  ``sum_k w_k softmax(z_k / T)`` (soften, then average).

    Args:
        teacher_logits: a sequence of ``(N, C)`` tensors, one per teacher (or one
            ``(K, N, C)`` tensor); at least one.
        temperature: ``T``, finite and > 0.
        weights: ``None`` (equal) or one non-negative number per teacher, not all zero.
        mode: ``"logits"`` or ``"probs"``.

    >>> a, b = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    >>> (multi_teacher_targets([a, b], temperature=1.0, mode="logits"),
    ...  multi_teacher_targets([a, b], temperature=1.0, mode="probs"))
    (tensor([[0.8808, 0.1192]]), tensor([[0.7410, 0.2590]]))
    """
    stacked = _stack(teacher_logits)
    temperature = _temperature(temperature)
    _validate.choice("mode", mode, MULTI_TEACHER_MODES)
    w = _weights("weights", weights, len(stacked))
    return combine(stacked, w, temperature, mode)[1].exp()


def teacher_list(teachers, name: str = "teachers") -> list:
    """``teachers`` (one ``nn.Module`` or a non-empty sequence of them) as a list; ``name``
    is the argument's name in the error messages."""
    if isinstance(teachers, nn.Module):
        return [teachers]
    if isinstance(teachers, (str, bytes)) or not isinstance(teachers, Sequence):
        raise TypeError(f"{name} must be an nn.Module or a sequence of them, got {type(teachers).__name__}")
    teachers = list(teachers)
    if not teachers:
        raise ValueError(f"{name} must hold at least one model, got an empty sequence")
    for i, t in enumerate(teachers):
        if not isinstance(t, nn.Module):
            raise TypeError(f"{name}[{i}] must be an nn.Module, got {type(t).__name__}")
    return teachers


def stack_teachers(logits: list) -> torch.Tensor:
    """The teachers' logits stacked to ``(K, N, C)``; they must agree on the classes."""
    widths = [t.shape[-1] for t in logits]
    if len(set(widths)) > 1:
        raise ValueError("the teachers must give logits over the same classes; got "
                         + ", ".join(f"teachers[{i}]: {w} classes" for i, w in enumerate(widths)))
    return torch.stack(logits)


@torch.no_grad()
def transfer_targets(teachers, x: torch.Tensor, *, hard: bool = False, temperature: float | None = None,
                     weights=None, mode: str = "logits", batch_size: int = 512) -> torch.Tensor:
    """Label a transfer set with teachers (in eval mode, without gradients).

    Returns soft targets ``(N, C)`` (:func:`multi_teacher_targets` at ``T``), or with
    ``hard=True`` their argmax ``(N,)``, i.e. pseudo-labels (the same for every ``T``).
    Both plug into :func:`kdlab.train.fit` as targets: ``F.cross_entropy`` accepts class
    probabilities, so ``fit(student, (x, transfer_targets(teacher, x, temperature=T)))``
    trains on soft targets at ``T`` (the KD soft term up to the teacher's constant
    entropy, without the ``T^2`` factor).

    ``temperature`` left out still means 1.0 for soft targets in this release (with a
    warning); it will mean :data:`DEFAULT_TEMPERATURE`.
    """
    from kdlab.evaluate import predict

    teachers = teacher_list(teachers)
    if temperature is None:
        # the argmax of one teacher's, or of averaged logits', soft targets is the same at every T
        same_at_every_t = hard and (mode == "logits" or len(teachers) == 1)
        temperature = 1.0 if same_at_every_t else _old_default(None, "kdlab.distill.transfer_targets")
    logits = [predict(t, x, batch_size=batch_size) for t in teachers]
    probs = multi_teacher_targets(logits, temperature=temperature, weights=weights, mode=mode)
    return probs.argmax(1) if hard else probs


class TeacherCache:
    """The teachers' logits on in-memory inputs, computed once, and the per-example
    targets derived from them at the current temperature; a batch's targets are
    looked up by its examples' indices, ``cache[index]``.

    ``refresh(temperature, build)`` calls ``build(logits, y)`` on all ``N`` examples
    (``logits`` of shape ``(K, N, C)``), only when ``temperature`` differs from the one
    of the targets held, and keeps the tuple of ``(N, ...)`` tensors it returns.

    >>> from torch import nn
    >>> cache = TeacherCache([nn.Linear(3, 2)], torch.zeros(5, 3), torch.zeros(5, dtype=torch.long))
    >>> cache.refresh(4.0, lambda logits, y: (logits[0], y))
    >>> [t.shape for t in cache[torch.tensor([0, 3])]]
    [torch.Size([2, 2]), torch.Size([2])]
    """

    def __init__(self, teachers, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512):
        from kdlab.evaluate import predict

        self.logits = stack_teachers([predict(t, x, batch_size=batch_size) for t in teacher_list(teachers)])
        self.y = y
        self.temperature = None
        self.targets: tuple = ()

    def to(self, device) -> "TeacherCache":
        self.logits, self.y = self.logits.to(device), self.y.to(device)
        self.targets = tuple(None if t is None else t.to(device) for t in self.targets)
        return self

    def refresh(self, temperature: float, build: Callable) -> None:
        if temperature != self.temperature:
            self.targets, self.temperature = tuple(build(self.logits, self.y)), temperature

    def __getitem__(self, index: torch.Tensor) -> tuple:
        return tuple(None if t is None else t.index_select(0, index) for t in self.targets)


# --------------------------------------------------------------------------- temperature schedules

def constant_temperature(temperature: float) -> Callable[[int], float]:
    """``T(epoch) = temperature``."""
    temperature = _temperature(temperature)
    return lambda epoch: temperature


def _ramp(start, end, epochs, shape):
    start, end = _temperature(start, "start"), _temperature(end, "end")
    epochs = _validate.positive_int("epochs", epochs)

    def schedule(epoch: int) -> float:
        epoch = _validate.positive_int("epoch", epoch, allow_zero=True)
        progress = min(epoch / max(epochs - 1, 1), 1.0)
        return start + (end - start) * shape(progress)

    return schedule


def linear_temperature(start: float, end: float, epochs: int) -> Callable[[int], float]:
    """``T(e) = start + (end - start) * min(e / (epochs - 1), 1)`` for epochs ``e = 0, 1, ...``."""
    return _ramp(start, end, epochs, lambda u: u)


def cosine_temperature(start: float, end: float, epochs: int) -> Callable[[int], float]:
    """``T(e) = end + (start - end) * (1 + cos(pi * u)) / 2`` with ``u = min(e / (epochs - 1), 1)``."""
    return _ramp(start, end, epochs, lambda u: (1 - math.cos(math.pi * u)) / 2)
