"""Lesson 16 (challenges): which pruned model is faster, what removing neurons does to
FLOPs, what distillation costs in teacher passes, and DeepInversion's BatchNorm term."""
from __future__ import annotations

import torch

from kdlab.grading.registry import ChoiceItem, FunctionItem, NumberItem
from kdlab.grading.shared import digits, flops_ratio_item, integer, uniform

KD_EPOCHS = 10


def _mlps():
    """The dense mlp-teacher, its copy with 70% of the hidden neurons removed (L1), one input."""
    from kdlab.models import create
    from kdlab.prune import structured_prune

    model, x = create("mlp-teacher"), torch.zeros(1, 64)
    return model, structured_prune(model, 0.7, x), x


def _bn_term(features, running_mean, running_var):
    """The reference: the term kdlab.distill.bn_statistics_loss adds for each BatchNorm layer."""
    from kdlab.distill.datafree import bn_statistic_term

    return bn_statistic_term(features, running_mean, running_var)


def _bn_case(generator):
    """Features (N, C) or (N, C, H, W) and a layer's running statistics."""
    n, c = integer(generator, 2, 9), integer(generator, 1, 6)
    shape = (n, c) if integer(generator, 0, 1) else (n, c, integer(generator, 2, 5), integer(generator, 2, 5))
    x = torch.randn(shape, generator=generator) * uniform(generator, 0.5, 3.0) + uniform(generator, -1.0, 1.0)
    return x, torch.randn(c, generator=generator), torch.rand(c, generator=generator) + 0.5


def _bn_unbiased(f, m, v):
    dims = [0] + list(range(2, f.ndim))
    return torch.linalg.vector_norm(f.mean(dims) - m) + torch.linalg.vector_norm(f.var(dims, unbiased=True) - v)


def _bn_squared(f, m, v):
    dims = [0] + list(range(2, f.ndim))
    return (f.mean(dims) - m).pow(2).sum() + (f.var(dims, unbiased=False) - v).pow(2).sum()


def _bn_over_channels(f, m, v):
    flat = f.transpose(0, 1).reshape(f.shape[1], -1)            # channels first
    return (torch.linalg.vector_norm(flat.mean(0) - m.mean()) + torch.linalg.vector_norm(flat.var(0, unbiased=False) - v.mean()))


def _bn_batch_only(f, m, v):
    mean, var = f.mean(0), f.var(0, unbiased=False)
    while mean.ndim > 1:
        mean, var = mean.mean(-1), var.mean(-1)
    return torch.linalg.vector_norm(mean - m) + torch.linalg.vector_norm(var - v)


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
    FunctionItem(
        "16.bn_statistic_loss", points=2, n_cases=12,
        prompt="bn_statistic_loss(features, running_mean, running_var) -> scalar tensor: DeepInversion's "
               "BatchNorm term for one layer, ||mu - running_mean||_2 + ||var - running_var||_2, where mu and "
               "var are the per-channel mean and variance of the layer's input features (N, C) or (N, C, H, W).",
        reference=_bn_term, inputs=_bn_case,
        describe=lambda a: f"features of shape {tuple(a[0].shape)}", rtol=1e-4, atol=1e-5,
        wrong=[
            (_bn_unbiased, "BatchNorm's batch statistics use the biased variance (divide by the count, "
                           "unbiased=False), and so does the matching term"),
            (_bn_squared, "the term is the l2 norm of each difference, not its square: take "
                          "torch.linalg.vector_norm, not the sum of squares"),
            (_bn_over_channels, "one mean and one variance per channel, over the batch and the positions "
                                "(every axis but dim 1), not over the channels"),
            (_bn_batch_only, "average over the batch and the positions together: the variance over the "
                             "batch alone, averaged over positions, is not the channel's variance"),
        ],
    ),
]
