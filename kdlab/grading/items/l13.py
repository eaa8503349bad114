"""Lesson 13 (KD and pruning together): paired differences, and whether the dense teacher helps."""
from __future__ import annotations

import torch

from kdlab.grading.registry import ChoiceItem, FunctionItem
from kdlab.grading.shared import integer


def _paired_mean(a, b):
    """Mean of the per-seed differences a[i] - b[i]."""
    return float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).mean())


def _inputs(generator):
    n = integer(generator, 2, 8)
    b = (0.8 + 0.2 * torch.rand(n, generator=generator)).tolist()
    a = [x + 0.02 * float(torch.randn(1, generator=generator)) for x in b]
    return a, b


ITEMS = [
    FunctionItem(
        "13.paired_mean", points=1,
        prompt="paired_mean(a, b) -> float: the mean over seeds of a[i] - b[i] (two lists of accuracies, "
               "same length, seed i in both).",
        reference=_paired_mean, inputs=_inputs,
        wrong=[(lambda a, b: _paired_mean(b, a), "the difference is a - b (KD minus plain), not b - a"),
               (lambda a, b: float(abs(torch.as_tensor(a) - torch.as_tensor(b)).double().mean()),
                "keep the sign of each difference: a loss in one seed cancels a gain in another")],
    ),
    ChoiceItem(
        "13.teacher_helps", points=2,
        prompt="LeNet-300-100 pruned to 95% and recovered for 4 epochs: does distilling from the dense "
               "model (T=4, alpha=0.9) beat plain fine-tuning on the mean of the paired differences "
               "over seeds 0 and 1?",
        options=["yes", "no"], answer="no",
        hints={"yes": "run both recoveries with the same seed and compare them seed by seed"},
    ),
]
