"""Lesson 08 (combining KD and pruning): the gradual schedule and the cost of each order."""
from __future__ import annotations

from functools import lru_cache

import torch

from kdlab.grading.registry import FunctionItem, NumberItem
from kdlab.prune import AGP


def _agp(step, initial, final, start, end, frequency):
    return AGP(initial, final, start=start, end=end, frequency=frequency).sparsity_at(step)


def _agp_inputs(generator):
    start = int(torch.randint(0, 50, (1,), generator=generator))
    end = start + int(torch.randint(1, 200, (1,), generator=generator))
    frequency = int(torch.randint(1, 20, (1,), generator=generator))
    initial, final = sorted(torch.rand(2, generator=generator).tolist())
    step = int(torch.randint(0, end + 30, (1,), generator=generator))
    return step, initial, final, start, end, frequency


def _unquantized(step, initial, final, start, end, frequency):
    if step < start:
        return 0.0
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / (end - start)) ** 3


def _linear(step, initial, final, start, end, frequency):
    if step < start:
        return 0.0
    if step >= end:
        return final
    t = start + (step - start) // frequency * frequency
    return initial + (final - initial) * (t - start) / (end - start)


def _initial_before_start(step, initial, final, start, end, frequency):
    return initial if step < start else _agp(step, initial, final, start, end, frequency)


@lru_cache(maxsize=None)
def _iterative_steps() -> int:
    from kdlab import data, train

    return 3 * 2 * len(train.as_loader(data.load_digits(), batch_size=64))


ITEMS = [
    FunctionItem(
        "08.agp_sparsity", points=2,
        prompt="agp_sparsity(step, initial, final, start, end, frequency) -> float: Zhu & Gupta's "
               "gradual schedule, updated every `frequency` steps; 0 before `start`, `final` from `end` on.",
        reference=_agp, inputs=_agp_inputs,
        describe=lambda a: f"step={a[0]}, initial={a[1]:.3f}, final={a[2]:.3f}, start={a[3]}, end={a[4]}, "
                           f"frequency={a[5]}",
        wrong=[(_unquantized, "the schedule changes only every `frequency` steps: round (step - start) "
                              "down to a multiple of frequency first"),
               (_linear, "the schedule is cubic, (1 - progress)^3, not linear"),
               (_initial_before_start, "before `start` nothing is pruned yet: return 0.0")],
    ),
    NumberItem(
        "08.iterative_steps", points=1, abs_tol=0.5,
        prompt="Optimizer steps taken by iterative_prune_distill with rounds=3, epochs_per_round=2 on the "
               "digits training split at batch size 64 (history.steps).",
        target=_iterative_steps,
        wrong=[(6, "that counts epochs; history.steps counts optimizer steps (batches)"),
               (lambda: _iterative_steps() / 3, "that is one round; count all three")],
    ),
]
