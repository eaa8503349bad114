"""Lesson 20 (recent research): SNIP's connection sensitivity, the DKD decomposition and the
sparsity of iterative (lottery-ticket) pruning."""
from __future__ import annotations

import torch

from kdlab.grading.registry import ChoiceItem, FunctionItem
from kdlab.grading.shared import integer, uniform
from kdlab.prune import compounded_sparsity, gradient_scores


class _One(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.fc = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(weight)

    def forward(self, x):
        return self.fc(x)


def _case(generator):
    n_out, n_in = integer(generator, 2, 7), integer(generator, 2, 7)
    x = torch.randn(16, n_in, generator=generator)
    y = torch.randint(0, n_out, (16,), generator=generator)
    return torch.randn(n_out, n_in, generator=generator), x, y


def _reference(weight, x, y):
    """kdlab's SNIP score of a one-layer model on one batch (x, y)."""
    return gradient_scores(_One(weight), (x, y), criterion="snip", batch_size=len(x))["fc.weight"]


def _grad(weight, x, y):
    w = weight.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(x @ w.T, y).backward()
    return w.grad


def _imp_case(generator):
    return round(uniform(generator, 0.05, 0.8), 3), integer(generator, 1, 10)


ITEMS = [
    FunctionItem(
        "20.snip_saliency", points=2,
        prompt="snip_saliency(weight, x, y) -> tensor: SNIP's |g*w| / sum |g*w| for the layer "
               "logits = x @ weight.T with cross-entropy on the batch (x, y).",
        reference=_reference, inputs=_case,
        wrong=[
            (lambda w, x, y: (_grad(w, x, y) * w).abs(), "normalise: divide by the sum of |g*w| over all weights"),
            (lambda w, x, y: _grad(w, x, y).abs() / _grad(w, x, y).abs().sum(),
             "the score is |g*w|, the gradient times the weight, not the gradient alone"),
        ],
    ),
    ChoiceItem(
        "20.suppressed_term", points=1,
        prompt="In KD = TCKD + (1 - p_t) * NCKD, which term loses its weight when the teacher is "
               "confident (p_t close to 1)?",
        options=["TCKD", "NCKD"], answer="NCKD",
        hints={"TCKD": "compute kdlab.distill.dkd_terms for a confident teacher and look at which "
                       "term the factor (1 - p_t) multiplies"},
    ),
    FunctionItem(
        "20.imp_sparsity", points=1,
        prompt="imp_sparsity(p, r) -> float: the sparsity after r rounds of lottery-ticket pruning, each "
               "removing the fraction p of the weights that survived the round before.",
        reference=compounded_sparsity, inputs=_imp_case,
        describe=lambda a: f"p={a[0]}, r={a[1]}",
        wrong=[
            (lambda p, r: p * r, "each round removes p of what is left, not p of the original weights: "
                                 "the kept fraction is multiplied by (1 - p) every round"),
            (lambda p, r: min(p * r, 1.0), "each round removes p of what is left, not p of the original "
                                           "weights: the kept fraction is multiplied by (1 - p) every round"),
            (lambda p, r: (1 - p) ** r, "(1 - p)^r is the fraction kept; the sparsity is the fraction removed"),
            (lambda p, r: 1 - p ** r, "the weights kept after a round are the fraction 1 - p, so raise "
                                      "(1 - p) to the power r, not p"),
            (lambda p, r: 1 - (1 - p) ** (r - 1), "off by one: after round 1 the sparsity is already p"),
        ],
    ),
]
