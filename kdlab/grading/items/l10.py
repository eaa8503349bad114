"""Lesson 10 (where pruning applies): what filter pruning does to FLOPs, what
unstructured pruning does to latency, when pruning regularises, and movement scores."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from kdlab.grading.registry import ChoiceItem, FunctionItem
from kdlab.grading.shared import digits, flops_ratio_item, integer, trained


def _cnns():
    """cnn-teacher with 70% of its channels removed, the dense cnn-teacher, one test image."""
    from kdlab.prune import structured_prune

    cnn, example = trained("cnn-teacher", flat=False), digits(flat=False).x_test[:1]
    return structured_prune(cnn, 0.7, example), cnn, example


def _steps(generator):
    """A layer's weights W_t and gradients G_t at T fine-tuning steps, stacked: (T, out, in) each."""
    shape = (integer(generator, 2, 6), integer(generator, 1, 4), integer(generator, 1, 5))
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def movement_reference(weights, grads):
    """The scores kdlab.prune.MovementScores accumulates when the optimizer steps with these
    weights and gradients (an optimizer with lr 0, so each step's weights are set by hand)."""
    from kdlab.prune import MovementScores

    layer = torch.nn.Linear(weights.shape[2], weights.shape[1], bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.0)
    movement = MovementScores()
    movement.on_train_start(SimpleNamespace(model=layer, optimizer=optimizer))
    for w, g in zip(weights, grads):
        with torch.no_grad():
            layer.weight.copy_(w)
        layer.weight.grad = g.clone()
        optimizer.step()
    movement.on_train_end(None)
    return movement.scores["weight"]


ITEMS = [
    flops_ratio_item(
        "10.flops_ratio", abs_tol=0.005,
        prompt="FLOPs of kdlab.models.pretrained('cnn-teacher') after prune.structured_prune(cnn, 0.7, x) "
               "divided by the dense model's FLOPs (a fraction).",
        models=_cnns,
        wrong=[(1.0, "that is what unstructured pruning leaves; measure the structured copy"),
               (0.3, "FLOPs do not fall in proportion to the channels kept: a conv that loses input AND "
                     "output channels keeps about 0.3 x 0.3 of its work; measure it")],
        hint="evaluate.flops(small, x) / evaluate.flops(cnn, x) with x = split.x_test[:1]",
    ),
    ChoiceItem(
        "10.unstructured_speed", points=1,
        prompt="On dense CPU kernels, how does the latency of a 90%-unstructured-sparse CNN compare "
               "with the dense CNN's?",
        options=["about the same", "about 10x lower", "about 2x lower"], answer="about the same",
        hints={"about 10x lower": "time both with evaluate.latency: the zeros are still multiplied",
               "about 2x lower": "time both with evaluate.latency, in interleaved rounds"},
    ),
    ChoiceItem(
        "10.regulariser_regime", points=1,
        prompt="In lesson 10's experiment (a 64-1024-10 MLP on 150 digits), where did pruning to 80% "
               "during training raise the test accuracy over the seeds?",
        options=["clean labels", "30% wrong labels", "both", "neither"], answer="30% wrong labels",
        hints={"clean labels": "with clean labels the 80%-sparse model was slightly worse on average",
               "both": "compare the clean-label means: no gain there",
               "neither": "compare the noisy-label means at sparsity 0 and 0.8, seed by seed"},
    ),
    FunctionItem(
        "10.movement_scores", points=2,
        prompt="movement_scores(weights, grads) -> tensor (out, in): Sanh et al.'s movement scores "
               "S = -sum_t W_t * G_t of one layer, from its weights W_t and loss gradients G_t at each "
               "fine-tuning step t, stacked along dim 0.",
        reference=movement_reference, inputs=_steps,
        describe=lambda a: f"{a[0].shape[0]} steps of a {tuple(a[0].shape[1:])} weight",
        wrong=[
            (lambda w, g: (w * g).sum(0), "mind the sign: gradient descent moves W along -G, so a weight "
                                          "moving away from zero has W * G < 0 and must gain score: S = -sum W * G"),
            (lambda w, g: -(w * g.abs()).sum(0), "use the gradient itself, not |G|: its sign says whether "
                                                 "the step moves the weight towards zero or away from it"),
            (lambda w, g: (w * g).abs().sum(0), "no absolute value: a weight shrinking towards zero "
                                                "(W * G > 0) must lose score"),
            (lambda w, g: -(w[-1] * g[-1]), "accumulate over every step t, not only the last one"),
            (lambda w, g: -(w[-1] * g.sum(0)), "multiply each gradient by the weights of ITS step, W_t, "
                                               "not by the final weights"),
            (lambda w, g: w[-1].abs(), "that is the magnitude score |W|; movement scores use the gradients"),
        ],
    ),
]
