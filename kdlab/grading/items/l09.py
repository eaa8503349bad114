"""Lesson 09 (where KD applies): pseudo-labels, deployment ratios, what KD avoids."""
from __future__ import annotations

from functools import lru_cache

import torch

from kdlab.distill import UNLABELLED
from kdlab.grading.registry import ChoiceItem, FunctionItem
from kdlab.grading.shared import flops_ratio_item, integer


def _pseudo_inputs(generator):
    n = integer(generator, 2, 39)
    c = integer(generator, 2, 10)
    targets = torch.randint(0, c, (n,), generator=generator)
    hidden = torch.rand(n, generator=generator) < torch.rand(1, generator=generator)
    targets[hidden] = UNLABELLED
    return targets, torch.randn(n, c, generator=generator) * 3


def _pseudo_labels(targets, teacher_logits):
    return torch.where(targets == UNLABELLED, teacher_logits.argmax(1), targets)


def _mlps():
    from kdlab.models import create

    return create("lenet-300-100"), create("mlp-student"), torch.zeros(1, 64)


@lru_cache(maxsize=None)
def _parameter_ratio() -> float:
    from kdlab.evaluate import count_parameters

    with torch.random.fork_rng(devices=[]):
        big, small, _ = _mlps()
        return count_parameters(big) / count_parameters(small)


ITEMS = [
    FunctionItem(
        "09.pseudo_labels", points=2,
        prompt="pseudo_labels(targets, teacher_logits) -> targets where known, the teacher's argmax where "
               "targets == UNLABELLED (-1).",
        reference=_pseudo_labels, inputs=_pseudo_inputs,
        describe=lambda a: f"{len(a[0])} targets, {int((a[0] == UNLABELLED).sum())} unlabelled",
        wrong=[
            (lambda t, z: z.argmax(1), "keep the true labels where they are known; use the teacher only elsewhere"),
            (lambda t, z: t, "replace the UNLABELLED entries (-1) with the teacher's prediction"),
            (lambda t, z: torch.where(t == UNLABELLED, z.argmin(1), t), "the teacher's prediction is the argmax"),
        ],
    ),
    flops_ratio_item(
        "09.flops_ratio", rel_tol=0.005,
        prompt="FLOPs per digit of lenet-300-100 divided by those of mlp-student (kdlab.evaluate.flops).",
        models=_mlps, inverted="divide the larger model's FLOPs by the smaller one's",
        wrong=[(_parameter_ratio, "that is the parameter ratio; measure FLOPs with kdlab.evaluate.flops")],
        hint="measure both with kdlab.evaluate.flops(model, torch.zeros(1, 64)) and divide",
    ),
    ChoiceItem(
        "09.what_kd_avoids", points=1,
        prompt="In the few-label scenario and the model update, what did distillation avoid?",
        options=["training", "labelling", "both", "neither"], answer="labelling",
        hints={"training": "was the student trained in the update? Count its epochs.",
               "both": "the student was trained in every run, the update included",
               "neither": "how many labels did the runs use, and how many images did the student learn from?"},
    ),
]
