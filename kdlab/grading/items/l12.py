"""Lesson 12 (pruning in practice): the AGP and iterative schedules, reading the budget and
schedule experiments (run on the validation part), and one round of SynFlow scores."""
from __future__ import annotations

import torch
from torch import nn

from kdlab.grading.registry import ChoiceItem, FunctionItem, SetItem
from kdlab.grading.shared import agp_item, fraction, integer
from kdlab.prune import Iterative


def _iterative_inputs(generator):
    return (integer(generator, 0, 80), fraction(generator), integer(generator, 1, 6), integer(generator, 1, 15),
            integer(generator, 0, 20))


def iterative_reference(step, final, n_steps, every, start):
    return Iterative(final, n_steps, every, start=start).sparsity_at(step)


def _iterative_late(step, final, n_steps, every, start):
    if step < start:
        return 0.0
    return final * min(n_steps, (step - start) // every) / n_steps


def _iterative_uncapped(step, final, n_steps, every, start):
    if step < start:
        return 0.0
    return final * ((step - start) // every + 1) / n_steps


def _describe(names):
    return lambda args: ", ".join(f"{n}={v}" for n, v in zip(names, args))



def _mlp(weights) -> nn.Sequential:
    """The bias-free ReLU MLP whose Linear layers hold ``weights`` (each ``(out, in)``)."""
    layers = []
    for i, w in enumerate(weights):
        linear = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            linear.weight.copy_(w)
        layers += [linear] + ([nn.ReLU()] if i < len(weights) - 1 else [])
    return nn.Sequential(*layers)


def synflow_reference(weights, x):
    """kdlab.prune.SynFlow's scores (one round) of the MLP of ``weights``; ``x`` is not used."""
    from kdlab.prune import SynFlow, prunable_weights

    net = _mlp(weights)
    return list(SynFlow().weight_scores(net, prunable_weights(net)).values())


def _synflow_case(generator):
    sizes = [integer(generator, 2, 6) for _ in range(integer(generator, 3, 4))]
    weights = [torch.randn(out, width, generator=generator) for width, out in zip(sizes, sizes[1:])]
    return weights, torch.rand(integer(generator, 2, 5), sizes[0], generator=generator)


def _flow_gradients(weights, x, *, absolute=True):
    """(|W| or W, dR/dW) for R = sum of the MLP's outputs on the inputs ``x``."""
    params = [(w.abs() if absolute else w).double().requires_grad_() for w in weights]
    h = x.double()
    for i, w in enumerate(params):
        h = h @ w.T
        if i < len(params) - 1:
            h = torch.relu(h)
    return params, torch.autograd.grad(h.sum(), params)


def _synflow_signed(weights, x):
    params, grads = _flow_gradients(weights, torch.ones(1, weights[0].shape[1]), absolute=False)
    return [(w * g).detach() for w, g in zip(params, grads)]


def _synflow_on_data(weights, x):
    params, grads = _flow_gradients(weights, x)
    return [(w * g).detach() for w, g in zip(params, grads)]


def _synflow_gradient_only(weights, x):
    return list(_flow_gradients(weights, torch.ones(1, weights[0].shape[1]))[1])


def _synflow_negated(weights, x):
    return [-s for s in synflow_reference(weights, x)]


ITEMS = [
    agp_item(
        "12.agp_sparsity", points=2,
        prompt="agp_sparsity(step, initial, final, start, end, frequency): 0 before start, final from "
               "end on, else s_f + (s_i - s_f) * (1 - (t_q - start) / (end - start))^3 with "
               "t_q = start + floor((step - start) / frequency) * frequency."),
    FunctionItem(
        "12.iterative_sparsity", points=1,
        prompt="iterative_sparsity(step, final, n_steps, every, start): 0 before start, else "
               "final * min(n_steps, floor((step - start) / every) + 1) / n_steps.",
        reference=iterative_reference, inputs=_iterative_inputs,
        describe=_describe(["step", "final", "n_steps", "every", "start"]),
        wrong=[
            (_iterative_late, "the first increment happens AT step `start`, not `every` steps later"),
            (_iterative_uncapped, "after n_steps increments the sparsity stays at final: cap the count"),
        ],
    ),
    ChoiceItem(
        "12.worst_budget", points=1,
        prompt="In lesson 12's budget experiment at 97% sparsity, which budget gives the lowest accuracy?",
        options=["global threshold", "uniform per layer", "from the scan"], answer="uniform per layer",
        hints={"global threshold": "look again: the global threshold loses a lot at 97%, but one budget "
                                   "loses more",
               "from the scan": "the scan-informed budget protects the fragile layer; it does best"},
    ),
    SetItem(
        "12.holding_schedules", points=1,
        prompt="Run one-shot, iterative (equal steps), iterative (geometric) and AGP to 97% sparsity "
               "with the same training steps: which end at least 10 points above one-shot on the "
               "validation part?",
        options=["iterative, equal steps", "iterative, geometric", "gradual cubic (AGP)"],
        answer=["iterative, geometric", "gradual cubic (AGP)"],
        hints={"iterative, equal steps": "equal increments leave the biggest cut for last: from 73% to "
                                         "97% removes 89% of the weights still left; compare with one-shot",
               "iterative, geometric": "compare the geometric rounds' final accuracy with one-shot's",
               "gradual cubic (AGP)": "compare AGP's final accuracy with one-shot's"},
    ),
    FunctionItem(
        "12.synflow_scores", points=2,
        prompt="synflow_scores(weights, x) -> list of tensors: one round of SynFlow scores for the "
               "bias-free ReLU MLP h -> W_L relu(... relu(W_1 h)) given as its weight matrices (each out x in). "
               "Replace every weight by its absolute value, feed ONE input of ones, R = sum of the outputs, "
               "score = |W| * dR/d|W| for each matrix. x is a batch of data that SynFlow does not need.",
        reference=synflow_reference, inputs=_synflow_case,
        describe=lambda a: f"weights of shapes {[tuple(w.shape) for w in a[0]]}",
        wrong=[
            (_synflow_signed, "replace every weight by its absolute value first: with signed weights the "
                              "ReLUs cut paths and the flow R is no longer a sum of positive path products"),
            (_synflow_on_data, "SynFlow is data-free: feed one input of ones, not the batch x"),
            (_synflow_gradient_only, "the score is the weight times the gradient, |W| * dR/d|W|, not the "
                                     "gradient alone"),
            (_synflow_negated, "the scores of SynFlow are >= 0 (larger = keep): you flipped the sign"),
        ],
    ),
]
