"""The references of the graded items 04.slimming_penalty and 10.movement_scores agree with
what kdlab.prune trains with and with their formulas written out."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from kdlab import prune
from kdlab.grading import registry


def test_slimming_penalty_reference_is_what_bn_scale_penalty_differentiates():
    item = registry.all_items()["04.slimming_penalty"]
    for model, strength in item.cases(1)[:4]:
        model = model.double()   # so that the step's size is read back exactly
        scales = [m.weight for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
        # the value, written out
        assert abs(item.reference(model, strength) - strength * sum(float(w.detach().abs().sum()) for w in scales)) < 1e-9
        # its gradient: autograd of strength * sum |gamma| ...
        expected = torch.autograd.grad(strength * sum(w.abs().sum() for w in scales), scales)
        # ... is the step BNScalePenalty makes on zero loss gradients (SGD, lr 1)
        before = [w.detach().clone() for w in scales]
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        penalty = prune.BNScalePenalty(strength)
        penalty.on_train_start(SimpleNamespace(model=model, optimizer=opt))
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        penalty.on_train_end(None)
        for w, b, g in zip(scales, before, expected):
            assert torch.allclose(b - w.detach(), g, atol=1e-12)


def test_slimming_penalty_hints():
    item = registry.all_items()["04.slimming_penalty"]
    cases = item.cases(0)
    bns = lambda m: [b for b in m.modules() if isinstance(b, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert item._hint(cases, [item.reference(*c) for c in cases]) is None
    with_beta = [s * sum(float(b.weight.detach().abs().sum() + b.bias.detach().abs().sum()) for b in bns(m)) for m, s in cases]
    assert "beta" in item._hint(cases, with_beta)
    no_strength = [sum(float(b.weight.detach().abs().sum()) for b in bns(m)) for m, s in cases]
    assert "strength" in item._hint(cases, no_strength)
    last_only = [s * float(bns(m)[-1].weight.detach().abs().sum()) for m, s in cases]
    assert "every BatchNorm" in item._hint(cases, last_only)


def test_movement_scores_reference_is_the_formula():
    item = registry.all_items()["10.movement_scores"]
    for weights, grads in item.cases(2):
        expected = torch.zeros_like(weights[0])
        for w, g in zip(weights, grads):
            expected -= w * g
        assert torch.allclose(item.reference(weights, grads), expected, atol=1e-6)
    cases = item.cases(0)
    assert item._hint(cases, [-(w * g).sum(0) for w, g in cases]) is None
    assert "sign" in item._hint(cases, [(w * g).sum(0) for w, g in cases])
    assert "every step" in item._hint(cases, [-(w[-1] * g[-1]) for w, g in cases])
    assert "|G|" in item._hint(cases, [-(w * g.abs()).sum(0) for w, g in cases])
