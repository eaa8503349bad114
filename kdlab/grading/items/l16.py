"""Lesson 16 (challenges): which pruned model is faster, what removing neurons does to
FLOPs, and what distillation costs in teacher passes."""
from __future__ import annotations

import torch

from kdlab.grading.registry import ChoiceItem, NumberItem
from kdlab.grading.shared import digits, flops_ratio_item

KD_EPOCHS = 10


def _mlps():
    """The dense mlp-teacher, its copy with 70% of the hidden neurons removed (L1), one input."""
    from kdlab.models import create
    from kdlab.prune import structured_prune

    model, x = create("mlp-teacher"), torch.zeros(1, 64)
    return model, structured_prune(model, 0.7, x), x


def _n_train() -> int:
    return len(digits().y_train)


ITEMS = [
    ChoiceItem(
        "16.faster_model", points=1,
        prompt="At batch 256 on one thread, which is faster: the mlp-teacher with 90% of its weights "
               "zeroed by magnitude, or the mlp-teacher with 70% of its hidden neurons removed?",
        options=["unstructured 90%", "structured 70%", "about the same"], answer="structured 70%",
        hints={
            "unstructured 90%": "time both with kdlab.evaluate.latency: the zeroed model keeps its "
                                "shapes and its zeros are multiplied",
            "about the same": "the two have about the same number of non-zeros, but time them: one "
                              "has much smaller matrices",
        },
    ),
    flops_ratio_item(
        "16.flops_ratio", rel_tol=0.01,
        prompt="FLOPs of the dense mlp-teacher divided by FLOPs of its copy with 70% of the hidden "
               "neurons removed (kdlab.prune.structured_prune(model, 0.7, x)), per example.",
        models=_mlps,
        wrong=[
            (1 / 0.3, "the 512x512 layer loses rows and columns: its cost falls with the square "
                      "of the neurons kept; measure with kdlab.evaluate.flops"),
            (1.0, "that is what unstructured pruning gives; structured pruning removes neurons"),
        ],
        hint="divide kdlab.evaluate.flops of the two models on torch.zeros(1, 64)",
    ),
    NumberItem(
        "16.teacher_examples", points=1, abs_tol=0.5,
        prompt=f"Number of examples the teacher processes during {KD_EPOCHS} epochs of "
               "Distiller(student, teacher, cache_teacher=False).fit(split.train, ...) on the digits "
               "(count them with a forward hook on the teacher).",
        target=lambda: KD_EPOCHS * _n_train(),
        wrong=[
            (_n_train, "that is the cached count (cache_teacher=True): one pass per example"),
            (lambda: KD_EPOCHS * -(-_n_train() // 64), "count examples, not batches"),
        ],
        hint="register_forward_hook on the teacher and add len(inputs[0]) at every call",
    ),
]
