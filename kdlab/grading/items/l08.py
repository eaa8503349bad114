"""Lesson 08 (combining KD and pruning): the gradual schedule and the cost of each order."""
from __future__ import annotations

from functools import lru_cache

from kdlab.grading.registry import NumberItem
from kdlab.grading.shared import agp_item, digits


@lru_cache(maxsize=None)
def _iterative_steps() -> int:
    from kdlab import train

    return 3 * 2 * train.steps_per_epoch(len(digits().y_train), 64)


ITEMS = [
    agp_item(
        "08.agp_sparsity", points=2,
        prompt="agp_sparsity(step, initial, final, start, end, frequency) -> float: Zhu & Gupta's "
               "gradual schedule, updated every `frequency` steps; 0 before `start`, `final` from `end` on."),
    NumberItem(
        "08.iterative_steps", points=1, abs_tol=0.5,
        prompt="Optimizer steps taken by iterative_prune_distill with rounds=3, epochs_per_round=2 on the "
               "digits training split at batch size 64 (history.steps).",
        target=_iterative_steps,
        wrong=[(6, "that counts epochs; history.steps counts optimizer steps (batches)"),
               (lambda: _iterative_steps() / 3, "that is one round; count all three")],
    ),
]
