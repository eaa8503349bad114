"""What the graded items of several lessons share (``kdlab/grading/items/lNN.py``).

- random draws for a case: :func:`integer`, :func:`uniform`, :func:`fraction`;
- models trained and measured once per process, with one thread as the notebooks
  run (the model cache is keyed by the thread count): :func:`digits`,
  :func:`trained`, :func:`pruned`, :func:`accuracy`;
- the usual unit mistakes of a measured number: :func:`in_percent`, :func:`in_bytes`;
- one factory per kind of item that several lessons grade: :func:`agp_item` (Zhu &
  Gupta's schedule as a function) and :func:`flops_ratio_item` (a measured FLOPs ratio).

Fixtures are measured under ``torch.random.fork_rng``: computing a target never moves
the learner's random state.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Callable

import torch

from kdlab.grading.registry import FunctionItem, NumberItem
from kdlab.train import num_threads


# --------------------------------------------------------------------------- draws

def integer(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """A float in ``[low, high)``."""
    return float(torch.empty(1).uniform_(low, high, generator=generator))


def fraction(generator: torch.Generator) -> float:
    """A fraction in [0, 1] with three decimals."""
    return round(float(torch.rand(1, generator=generator)), 3)


# --------------------------------------------------------------------------- measured once

@lru_cache(maxsize=None)
def digits(flat: bool = True, validation: float | None = None):
    """The digits split of seed 0 (flat vectors, or 1x8x8 images), with a validation part
    of the fraction ``validation`` carved out of its training part if given."""
    from kdlab.data import load_digits

    split = load_digits(flat=flat)
    return split if validation is None else split.with_validation(validation)


@lru_cache(maxsize=None)
def trained(preset: str, flat: bool = True, validation: float | None = None):
    """``kdlab.models.pretrained(preset)`` trained on the training part of :func:`digits`;
    shared, so never change it (prune or train a copy)."""
    from kdlab.models import pretrained

    with num_threads(1):
        return pretrained(preset, data=digits(flat, validation))


def pruned(preset: str, amount: float, validation: float | None = None):
    """A copy of :func:`trained` with the fraction ``amount`` of its prunable weights
    removed by global magnitude, without fine-tuning."""
    from kdlab.prune import magnitude_prune

    model = copy.deepcopy(trained(preset, validation=validation))
    magnitude_prune(model, amount)
    return model


@lru_cache(maxsize=None)
def accuracy(preset: str, part: str = "test") -> float:
    """Accuracy (a fraction) of :func:`trained` on the ``"train"`` or ``"test"`` part of :func:`digits`."""
    from kdlab.evaluate import accuracy as measure

    split = digits()
    with num_threads(1):
        return measure(trained(preset), split.train if part == "train" else split.test)


def in_percent(target: Callable, hint: str = "give a fraction in [0, 1], not a percentage") -> tuple:
    """The usual wrong answer of a fraction ``target``: the same number in percent."""
    return (lambda: 100 * target(), hint)


def in_bytes(target: Callable) -> tuple:
    """The usual wrong answer of a size ``target`` in kB: the same size in bytes."""
    return (lambda: 1000 * target(), "give kilobytes, not bytes")


# --------------------------------------------------------------------------- item factories

def agp_reference(step, initial, final, start, end, frequency):
    from kdlab.prune import AGP

    return AGP(initial, final, start=start, end=end, frequency=frequency).sparsity_at(step)


def _agp_case(generator):
    initial, final = sorted(fraction(generator) for _ in range(2))
    start = integer(generator, 0, 50)
    end = start + integer(generator, 1, 200)
    frequency = integer(generator, 1, 20)
    return integer(generator, 0, end + 30), initial, final, start, end, frequency


def _quantised_progress(step, start, end, frequency) -> float:
    return (step - start) // frequency * frequency / (end - start)


def _agp_shape(shape: Callable, quantised: bool = True):
    """A schedule that is 0 before ``start`` and ``final`` from ``end`` on, with another
    shape of the progress in between: the usual mistakes of :func:`agp_item`."""

    def schedule(step, initial, final, start, end, frequency):
        if step < start:
            return 0.0
        if step >= end:
            return final
        progress = _quantised_progress(step, start, end, frequency if quantised else 1)
        return shape(progress, initial, final)

    return schedule


def _agp_initial_before_start(step, initial, final, start, end, frequency):
    return initial if step < start else agp_reference(step, initial, final, start, end, frequency)


AGP_MISTAKES = [
    (_agp_shape(lambda u, a, b: b + (a - b) * (1 - u) ** 3, quantised=False),
     "the sparsity changes only every `frequency` steps: round the step down to "
     "start + k * frequency first"),
    (_agp_shape(lambda u, a, b: a + (b - a) * u),
     "that is a linear ramp; the schedule is cubic, s_f + (s_i - s_f)(1 - progress)^3"),
    (_agp_shape(lambda u, a, b: a + (b - a) * u ** 3),
     "your cubic is backwards: AGP prunes fast at first and slowly at the end, "
     "s_f + (s_i - s_f)(1 - progress)^3"),
    (_agp_initial_before_start, "before `start` nothing is pruned yet: return 0.0"),
]
"""The usual mistakes of Zhu & Gupta's schedule, with their hints."""


def agp_item(item_id: str, *, points: float, prompt: str) -> FunctionItem:
    """``agp_sparsity(step, initial, final, start, end, frequency)``: Zhu & Gupta's gradual
    schedule, ``s_t = s_f + (s_i - s_f)(1 - (t_q - start) / (end - start))^3`` with
    ``t_q = start + floor((step - start) / frequency) * frequency``, 0 before ``start``
    and ``s_f`` from ``end`` on; checked against :class:`kdlab.prune.AGP`."""
    return FunctionItem(
        item_id, points=points, prompt=prompt, reference=agp_reference, inputs=_agp_case,
        describe=lambda a: "step={}, initial={:.3f}, final={:.3f}, start={}, end={}, frequency={}".format(*a),
        wrong=AGP_MISTAKES)


def flops_ratio_item(item_id: str, *, models: Callable, inverted: str = "", wrong=(), points: float = 1,
                     **kw) -> NumberItem:
    """A measured ratio ``flops(a, x) / flops(b, x)`` (:func:`kdlab.evaluate.flops`), where
    ``models() -> (a, b, x)`` builds both models and the example input; measured once,
    under ``torch.random.fork_rng``. ``inverted``: the hint for ``b / a``, the ratio the
    wrong way round; ``wrong`` and ``kw`` as in :class:`NumberItem`."""

    @lru_cache(maxsize=None)
    def ratio() -> float:
        from kdlab.evaluate import flops

        with torch.random.fork_rng(devices=[]), num_threads(1):
            a, b, x = models()
            return flops(a, x) / flops(b, x)

    mistakes = [*wrong, (lambda: 1 / ratio(), inverted)] if inverted else list(wrong)
    return NumberItem(item_id, points=points, target=ratio, wrong=mistakes, **kw)
