"""Lesson 03 (the principle of pruning): a magnitude mask, a global threshold, and
what happens to pruned weights when the masks are not re-applied."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from kdlab.grading.registry import FunctionItem, NumberItem
from kdlab.grading.shared import digits, in_percent, integer, pruned
from kdlab.prune import magnitude_prune
from kdlab.train import num_threads


def _tensor(generator, shape):
    """Weights with many exact ties in |w| on half the draws (values on a coarse grid)."""
    w = torch.randn(shape, generator=generator)
    if integer(generator, 0, 1):
        w = torch.randint(-4, 5, shape, generator=generator).float() / 4
    return w


def _amount(generator) -> float:
    pick = integer(generator, 0, 5)
    if pick == 0:
        return 0.0
    if pick == 1:
        return 1.0
    return round(float(torch.rand(1, generator=generator)) * 0.9 + 0.05, 3)


def _mask_inputs(generator):
    shape = (integer(generator, 2, 9), integer(generator, 2, 9))
    return _tensor(generator, shape), _amount(generator)


def _layers_inputs(generator):
    weights = [_tensor(generator, (integer(generator, 2, 8), integer(generator, 2, 8)))
               for _ in range(integer(generator, 2, 4))]
    if integer(generator, 0, 1):  # layers of very different scales: global != per layer
        weights[0] = weights[0] * 10
    return weights, _amount(generator)


def _as_model(weights) -> nn.Module:
    """A container of bias-free Linear layers holding ``weights`` (for kdlab's pruners)."""
    layers = nn.ModuleList()
    with torch.random.fork_rng(devices=[]):  # the learner's random state stays as it was
        for w in weights:
            layers.append(nn.Linear(w.shape[1], w.shape[0], bias=False))
    with torch.no_grad():
        for layer, w in zip(layers, weights):
            layer.weight.copy_(w)
    return layers


def reference_mask(weight, amount):
    model = _as_model([weight])
    return magnitude_prune(model, amount, scope="layer")["0.weight"].clone()


def reference_global_masks(weights, amount):
    model = _as_model(weights)
    masks = magnitude_prune(model, amount, scope="global")
    return [masks[f"{i}.weight"].clone() for i in range(len(weights))]


def _kept_fraction(weight, amount):
    return reference_mask(weight, 1.0 - amount)


def _threshold_mask(weight, amount, strict: bool):
    """The k-th smallest |w| as a threshold, every tie on one side of it."""
    k = round(amount * weight.numel())
    if k == 0:
        return torch.ones_like(weight, dtype=torch.bool)
    t = torch.kthvalue(weight.abs().flatten(), k).values
    return weight.abs() >= t if strict else weight.abs() > t


def _inverted(weight, amount):
    return ~reference_mask(weight, amount)


def _per_layer(weights, amount):
    return [reference_mask(w, amount) for w in weights]


def _global_kept_fraction(weights, amount):
    return reference_global_masks(weights, 1.0 - amount)


def _global_le(weights, amount):
    flat = torch.cat([w.abs().flatten() for w in weights])
    k = round(amount * flat.numel())
    if k == 0:
        return [torch.ones_like(w, dtype=torch.bool) for w in weights]
    t = torch.kthvalue(flat, k).values
    return [w.abs() > t for w in weights]


def _describe_mask(args) -> str:
    weight, amount = args
    ties = weight.abs().flatten().unique().numel() < weight.numel()
    return f"a {tuple(weight.shape)} weight{' with ties in |w|' if ties else ''} and amount={amount}"


def _describe_layers(args) -> str:
    weights, amount = args
    return f"{len(weights)} layers of shapes {[tuple(w.shape) for w in weights]} and amount={amount}"


@lru_cache(maxsize=None)
def _revived_sparsity() -> float:
    """Sparsity of LeNet-300-100 pruned to 90% and fine-tuned 3 epochs with Adam
    (lr 1e-3, seed 0) without re-applying the masks; one thread, as the notebooks."""
    from kdlab import prune, train

    with num_threads(1), torch.random.fork_rng(devices=[]):
        model = pruned("lenet-300-100", 0.9)
        train.fit(model, digits().train, epochs=3, lr=1e-3, seed=0, progress=False)
        return prune.sparsity(model)["global"]


ITEMS = [
    FunctionItem(
        "03.magnitude_mask", points=2,
        prompt="magnitude_mask(weight, amount) -> bool tensor of weight's shape, True = kept: "
               "remove exactly round(amount * numel) weights with the smallest |w|; among equal "
               "|w| remove the lower flat index first.",
        reference=reference_mask, inputs=_mask_inputs, describe=_describe_mask,
        wrong=[
            (_kept_fraction, "amount is the fraction of weights REMOVED, not the fraction kept"),
            (_inverted, "your mask is inverted: True must mark the weights that are kept"),
            (lambda w, a: _threshold_mask(w, a, strict=False),
             "with ties at the threshold, |w| <= t removes too many weights: remove exactly "
             "round(amount * numel), ties in flat order (a stable sort of |w|)"),
            (lambda w, a: _threshold_mask(w, a, strict=True),
             "with ties at the threshold, |w| < t removes too few weights: remove exactly "
             "round(amount * numel), ties in flat order (a stable sort of |w|)"),
        ],
    ),
    FunctionItem(
        "03.global_masks", points=2,
        prompt="global_masks(weights, amount) -> list of bool masks: one threshold over all "
               "layers together; remove exactly round(amount * total) weights with the smallest "
               "|w| (ties: earlier layer, then lower flat index, first).",
        reference=reference_global_masks, inputs=_layers_inputs, describe=_describe_layers,
        wrong=[
            (_per_layer, "that prunes each layer by amount; a global threshold ranks all layers "
                         "together, so layers with small weights lose more"),
            (_global_kept_fraction, "amount is the fraction of weights REMOVED, not the fraction kept"),
            (_global_le, "with ties at the global threshold, |w| <= t removes too many: remove "
                         "exactly round(amount * total), ties in order"),
        ],
    ),
    NumberItem(
        "03.revived_sparsity", points=1, abs_tol=0.03,
        prompt="Sparsity (fraction of exact zeros, 0..1) of LeNet-300-100 pruned to 90% by "
               "global magnitude and fine-tuned 3 epochs with Adam (lr 1e-3, seed 0) WITHOUT "
               "re-applying the masks.",
        target=_revived_sparsity,
        wrong=[(0.9, "you kept the masks (or measured before fine-tuning); train without them"),
               in_percent(_revived_sparsity)],
        hint="prune a fresh copy, fine-tune it without masks.callback(), then read "
             "prune.sparsity(model)['global']",
    ),
]
