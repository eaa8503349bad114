"""Lesson 07 (drawbacks): the knee of pruning, a weak teacher, disagreeing criteria, KD's extra FLOPs,
the optimizer steps of a teacher-assistant chain."""
from __future__ import annotations

import math
from functools import lru_cache

from kdlab.grading.registry import ChoiceItem, FunctionItem, NumberItem
from kdlab.grading.shared import digits, in_percent, integer, pruned, trained
from kdlab.train import num_threads

GRID = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99)
"""Sparsities of the one-shot curve whose knee 07.knee_sparsity asks for."""


@lru_cache(maxsize=None)
def _curve() -> dict:
    """One-shot global magnitude pruning at every GRID sparsity, no fine-tuning, of the zoo
    LeNet-300-100 (seed 0) trained without the validation part of ``with_validation(0.2)``, read
    on that validation part (the knee is a choice); and the FLOPs of the 2x512 teacher and the
    32-unit student on one image."""
    from kdlab import evaluate, models

    tuning, x = digits(validation=0.2), digits().x_test[:1]
    with num_threads(1):
        curve = [evaluate.accuracy(pruned("lenet-300-100", s, validation=0.2), tuning.val) for s in GRID]
        dense = evaluate.accuracy(trained("lenet-300-100", validation=0.2), tuning.val)
    return {"dense": dense, "accuracy": curve,
            "teacher_flops": evaluate.flops(trained("mlp-teacher"), x),
            "student_flops": evaluate.flops(models.create("mlp-student"), x)}


def _knee(drop: float = 0.01) -> float:
    """The largest GRID sparsity whose accuracy is within ``drop`` of the dense model."""
    c = _curve()
    return max(s for s, a in zip(GRID, c["accuracy"]) if a >= c["dense"] - drop)


def _first_past_knee() -> float:
    return GRID[GRID.index(_knee()) + 1]


def _collapse() -> float:
    """The first GRID sparsity below 50% accuracy."""
    return next(s for s, a in zip(GRID, _curve()["accuracy"]) if a < 0.5)


def _extra() -> float:
    c = _curve()
    return c["teacher_flops"] / (3 * c["student_flops"])


def chain_steps(n_train: int, batch_size: int, epochs: int, assistants: int) -> int:
    """Optimizer steps of teacher -> ``assistants`` assistants -> student (kdlab.distill.distill_chain):
    the teacher is trained already; each later model trains ``epochs`` epochs of ``ceil(n_train / batch_size)``
    batches (the last, smaller batch is a step too)."""
    return (assistants + 1) * epochs * math.ceil(n_train / batch_size)


def _chain_inputs(generator):
    return (integer(generator, 50, 2000), (32, 64, 128)[integer(generator, 0, 2)], integer(generator, 1, 30),
            integer(generator, 1, 3))


ITEMS = [
    NumberItem(
        "07.knee_sparsity", points=2, abs_tol=0.01,
        prompt="LeNet-300-100 (zoo, seed 0, trained on split.with_validation(0.2)'s training part) "
               f"magnitude-pruned globally, one-shot, no fine-tuning, at each sparsity of {GRID}: the "
               "largest of them whose validation accuracy is within 1 point (0.01) of the dense model's.",
        target=_knee,
        wrong=[(_first_past_knee, "that sparsity is already more than 1 point below the dense model: "
                                  "the knee is the last one that is not"),
               (_collapse, "that is where the model has collapsed (below 50%); the knee comes earlier, where "
                           "accuracy first leaves the 1-point band for good"),
               in_percent(_knee)],
    ),
    ChoiceItem(
        "07.weak_teacher", points=1,
        prompt="The 32-unit student with 90 labels (split.subset(n_train=90, seed=0)): is it more accurate "
               "distilled from the 1-epoch teacher (T=4, alpha=0.9, soft targets on the other training "
               "images), or trained on its 90 labels alone?",
        options=["KD from the weak teacher", "labels alone"], answer="labels alone",
        hints={"KD from the weak teacher": "train both students from the same initial weights and evaluate "
                                           "them: a teacher right on about 78% of images passes its mistakes "
                                           "on the unlabelled images to the student with weight alpha"},
    ),
    ChoiceItem(
        "07.taylor_layer", points=1,
        prompt="Remove 30% of LeNet-300-100's weights (zoo, seed 0) globally with the Taylor criterion "
               "(prune.gradient_prune, criterion='taylor', batches=4): which hidden layer loses the larger "
               "fraction of its weights?",
        options=["layers.0", "layers.2"], answer="layers.0",
        hints={"layers.2": "that is what global magnitude pruning does; Taylor weighs each weight by its "
                           "gradient: prune a copy and read prune.sparsity(model)['layers']"},
    ),
    NumberItem(
        "07.extra_flops", points=1, rel_tol=0.01,
        prompt="FLOPs of one forward pass of the 2x512 teacher (zoo 'mlp-teacher') divided by the FLOPs of "
               "one training step of the 32-unit student (taken as 3 forward passes: forward + backward), "
               "per example: the extra work KD adds to every student step when the teacher runs each step.",
        target=_extra,
        wrong=[(lambda: 3 * _extra(), "a training step costs about 3 forward passes of the student "
                                      "(forward and a backward twice as costly): divide by 3 x its FLOPs"),
               (lambda: 1 / _extra(), "teacher over student, not the other way round")],
    ),
    FunctionItem(
        "07.chain_steps", points=1,
        prompt="chain_steps(n_train, batch_size, epochs, assistants) -> int: the optimizer steps a "
               "teacher-assistant chain takes in all (teacher -> assistants -> student, the teacher already "
               "trained), each distilled model trained `epochs` epochs over n_train examples in batches of "
               "batch_size, the last smaller batch included.",
        reference=chain_steps, inputs=_chain_inputs,
        describe=lambda a: f"n_train {a[0]}, batch_size {a[1]}, epochs {a[2]}, {a[3]} assistant(s)",
        rtol=0.0, atol=0.0,
        wrong=[
            (lambda n, b, e, k: (k + 1) * e * (n // b), "the last, smaller batch is an optimizer step too: "
                                                       "ceil(n_train / batch_size) steps per epoch"),
            (lambda n, b, e, k: e * math.ceil(n / b), "those are the student's steps only (the same as distilling "
                                                      "it directly); every assistant trains as long"),
            (lambda n, b, e, k: (k + 2) * e * math.ceil(n / b), "the teacher is trained already: the chain trains "
                                                                "the assistants and the student"),
        ],
    ),
]
