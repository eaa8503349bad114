"""Pruning schedules: how sparse the model should be after ``t`` optimizer steps.

Each schedule is a :class:`kdlab.train.Callback`. When training starts and after
every optimizer step it asks ``sparsity_at(t)``; when the target rises it calls
``prune_fn(model, target, previous=masks)`` (any criterion: magnitude global or
per layer, random, taylor, snip...), otherwise it re-applies the current masks
so the pruned weights stay exactly zero. ``previous`` keeps pruned weights pruned.

- :class:`OneShot`:   s_t = s for every t (prune once, then fine-tune).
- :class:`Iterative`: k = min(n, floor((t - t0) / every) + 1) rounds done at t >= t0;
  s_t = s_f * k / n (n equal increments of the total), or with ``geometric=True``
  s_t = 1 - (1 - s_f)^(k / n) (every round removes the same fraction of the weights
  that survived the previous one, as in lottery-ticket iterative magnitude pruning).
- :class:`AGP`:       s_t = s_f + (s_i - s_f) * (1 - (t_q - t0) / (t1 - t0))^3 for
  t0 <= t < t1, with t_q = t0 + floor((t - t0) / dt) * dt, 0 before t0 and s_f from
  t1 on (Zhu & Gupta 2017, gradual pruning every dt steps).

>>> import functools
>>> from kdlab import data, models, prune, train
>>> split = data.load_digits()
>>> model = models.create("mlp-student")
>>> agp = prune.AGP(0.0, 0.8, start=0, end=100, frequency=10,
...                 prune_fn=functools.partial(prune.magnitude_prune, scope="layer"))
>>> _ = train.fit(model, split, epochs=10, callbacks=[agp])
>>> round(prune.sparsity(model)["global"], 2)
0.8
"""
from __future__ import annotations

import math
from typing import Callable

from kdlab import _validate
from kdlab.prune.unstructured import magnitude_prune
from kdlab.train import Callback


class Schedule(Callback):
    """Base class: subclasses define :meth:`sparsity_at`."""

    def __init__(self, prune_fn: Callable | None = None):
        if prune_fn is not None and not callable(prune_fn):
            raise TypeError(f"prune_fn must be callable (model, amount, previous=...), got {prune_fn!r}")
        self.prune_fn = prune_fn or magnitude_prune
        self.masks = None
        self.current = 0.0

    def sparsity_at(self, step: int) -> float:
        raise NotImplementedError

    def update(self, model, step: int) -> None:
        """Prune ``model`` to ``sparsity_at(step)`` if that is higher than now, else re-apply."""
        target = self.sparsity_at(step)
        if target > self.current:
            self.masks = self.prune_fn(model, target, previous=self.masks)
            self.current = target
        elif self.masks is not None:
            self.masks.apply()

    def on_train_start(self, state) -> None:
        self.update(state.model, 0)

    def on_step_end(self, state) -> None:
        self.update(state.model, state.step)


class OneShot(Schedule):
    """Prune to ``amount`` in [0, 1] when training starts, keep the masks afterwards."""

    def __init__(self, amount: float, prune_fn: Callable | None = None):
        super().__init__(prune_fn)
        self.amount = _validate.fraction("amount", amount)

    def sparsity_at(self, step: int) -> float:
        return self.amount


class Iterative(Schedule):
    """Reach ``final`` sparsity in ``n_steps`` rounds, one every ``every`` optimizer
    steps from step ``start`` on (the first round at ``start``).

    By default the rounds are equal increments of the total, ``final / n_steps``
    each, so the last round removes a large share of what is left (from 0.73 to
    0.97 in 4 rounds: 89% of the survivors). With ``geometric=True`` every round
    removes the same fraction ``1 - (1 - final)^(1 / n_steps)`` of the surviving
    weights: after k rounds the sparsity is ``1 - (1 - final)^(k / n_steps)``.

    >>> [round(Iterative(0.97, 4, every=10).sparsity_at(t), 4) for t in (0, 10, 20, 30)]
    [0.2425, 0.485, 0.7275, 0.97]
    >>> [round(Iterative(0.97, 4, every=10, geometric=True).sparsity_at(t), 4) for t in (0, 10, 20, 30)]
    [0.5838, 0.8268, 0.9279, 0.97]
    """

    def __init__(self, final: float, n_steps: int, every: int, *, start: int = 0,
                 prune_fn: Callable | None = None, geometric: bool = False):
        super().__init__(prune_fn)
        self.final = _validate.fraction("final", final)
        self.n_steps = _validate.positive_int("n_steps", n_steps)
        self.every = _validate.positive_int("every", every)
        self.start = _validate.positive_int("start", start, allow_zero=True)
        if not isinstance(geometric, bool):
            raise TypeError(f"geometric must be True or False, got {geometric!r}")
        self.geometric = geometric

    def sparsity_at(self, step: int) -> float:
        if step < self.start:
            return 0.0
        done = min(self.n_steps, (step - self.start) // self.every + 1)
        if self.geometric:
            return 1.0 - (1.0 - self.final) ** (done / self.n_steps)
        return self.final * done / self.n_steps


class AGP(Schedule):
    """Zhu & Gupta's gradual cubic schedule from ``initial`` to ``final`` sparsity
    (0 <= initial <= final <= 1) between optimizer steps ``start`` and ``end``,
    updated every ``frequency`` steps."""

    def __init__(self, initial: float, final: float, *, start: int, end: int, frequency: int = 1,
                 prune_fn: Callable | None = None):
        super().__init__(prune_fn)
        self.initial = _validate.fraction("initial", initial)
        self.final = _validate.fraction("final", final)
        if self.initial > self.final:
            raise ValueError(f"initial must be <= final, got initial={initial!r}, final={final!r}")
        self.start = _validate.positive_int("start", start, allow_zero=True)
        self.end = _validate.positive_int("end", end)
        if self.end <= self.start:
            raise ValueError(f"end must be > start, got start={start!r}, end={end!r}")
        self.frequency = _validate.positive_int("frequency", frequency)

    def sparsity_at(self, step: int) -> float:
        if step < self.start:
            return 0.0
        if step >= self.end:
            return self.final
        quantized = self.start + math.floor((step - self.start) / self.frequency) * self.frequency
        progress = (quantized - self.start) / (self.end - self.start)
        return self.final + (self.initial - self.final) * (1.0 - progress) ** 3
