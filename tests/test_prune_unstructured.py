"""Unstructured pruning: parity with torch.nn.utils.prune, amounts, criteria, bad input."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from kdlab import models, prune


def linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.9, 0.98, 1.0])
def test_layer_scope_equals_l1_unstructured(lenet, amount):
    reference = models.create("lenet-300-100")
    reference.load_state_dict(lenet.state_dict())
    masks = prune.magnitude_prune(lenet, amount, scope="layer")
    for (name, mask), module in zip(masks.items(), linears(reference)):
        torch_prune.l1_unstructured(module, "weight", amount=amount)
        assert torch.equal(mask, module.weight_mask.bool()), name


@pytest.mark.parametrize("amount", [0.2, 0.7, 0.95])
def test_global_scope_equals_global_unstructured(lenet, amount):
    reference = models.create("lenet-300-100")
    reference.load_state_dict(lenet.state_dict())
    masks = prune.magnitude_prune(lenet, amount, scope="global")
    torch_prune.global_unstructured([(m, "weight") for m in linears(reference)],
                                    pruning_method=torch_prune.L1Unstructured, amount=amount)
    for mask, module in zip(masks.values(), linears(reference)):
        assert torch.equal(mask, module.weight_mask.bool())
    # layers are pruned unevenly: one threshold for all of them
    per_layer = prune.sparsity(lenet)["layers"]
    assert max(per_layer.values()) - min(per_layer.values()) > 0.01


def test_weights_are_zeroed_in_place_and_biases_kept(lenet):
    bias = lenet.layers[0].bias.detach().clone()
    masks = prune.magnitude_prune(lenet, 0.6)
    for name, mask in masks.items():
        assert torch.all(lenet.get_parameter(name)[~mask] == 0)
    assert torch.equal(lenet.layers[0].bias, bias)
    assert set(masks) == {"layers.0.weight", "layers.2.weight", "layers.4.weight"}


def test_amount_is_the_fraction_removed_in_total(lenet):
    first = prune.magnitude_prune(lenet, 0.5)
    second = prune.magnitude_prune(lenet, 0.8, previous=first)
    n = sum(m.numel() for m in second.values())
    assert prune.sparsity(lenet)["global"] == pytest.approx(round(0.8 * n) / n)
    for name in first:  # pruned weights stay pruned
        assert not torch.any(second[name] & ~first[name])


def test_tie_rule_prunes_earlier_indices_first():
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    masks = prune.magnitude_prune(layer, 0.5)
    assert masks["weight"].flatten().tolist() == [False] * 4 + [True] * 4


def test_layers_restricts_pruning(lenet):
    masks = prune.magnitude_prune(lenet, 0.5, layers=["layers.2"])
    assert list(masks) == ["layers.2.weight"]
    assert prune.sparsity(lenet)["layers"]["layers.0.weight"] == 0.0
    masks = prune.magnitude_prune(lenet, 0.5, layers=[lenet.layers[4]])
    assert list(masks) == ["layers.4.weight"]


def test_threshold_prune(lenet):
    expected = lenet.layers[0].weight.detach().abs() >= 0.05
    masks = prune.threshold_prune(lenet, 0.05)
    assert torch.equal(masks["layers.0.weight"], expected)


def test_std_threshold_prune_uses_each_layers_std(lenet):
    w = lenet.layers[2].weight.detach().clone()
    masks = prune.std_threshold_prune(lenet, 0.7)
    assert torch.equal(masks["layers.2.weight"], w.abs() >= 0.7 * w.std())


def test_random_prune_is_seeded_and_exact(lenet):
    a = prune.random_prune(models.create("lenet-300-100"), 0.5, seed=1)
    b = prune.random_prune(models.create("lenet-300-100"), 0.5, seed=1)
    c = prune.random_prune(models.create("lenet-300-100"), 0.5, seed=2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)
    n = sum(m.numel() for m in a.values())
    assert a.sparsity == pytest.approx(round(0.5 * n) / n)


def test_taylor_scores_are_squared_gradient_times_weight(lenet, split):
    x, y = split.x_train[:128], split.y_train[:128]
    scores = prune.gradient_scores(lenet, (x, y), criterion="taylor", batches=1)
    grads = torch.autograd.grad(F.cross_entropy(lenet(x), y), [m.weight for m in linears(lenet)])
    for (name, s), g, m in zip(scores.items(), grads, linears(lenet)):
        torch.testing.assert_close(s, (g * m.weight.detach()) ** 2)
    assert all(m.weight.grad is None for m in linears(lenet))  # .grad left alone


def test_snip_scores_are_normalised(lenet, split):
    scores = prune.gradient_scores(lenet, split, criterion="snip", batches=2)
    assert sum(s.sum() for s in scores.values()).item() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("criterion", ["taylor", "snip"])
def test_gradient_prune_removes_the_lowest_scores(lenet, split, criterion):
    reference = models.create("lenet-300-100")
    reference.load_state_dict(lenet.state_dict())
    scores = prune.gradient_scores(reference, split, criterion=criterion)
    masks = prune.gradient_prune(lenet, 0.7, split, criterion=criterion)
    flat = torch.cat([s.flatten() for s in scores.values()])
    kept = torch.cat([m.flatten() for m in masks.values()])
    assert kept.float().mean().item() == pytest.approx(0.3, abs=1e-4)
    assert flat[kept].min() >= flat[~kept].max()


@pytest.mark.parametrize("amount", [-0.1, 1.5, math.nan, math.inf])
def test_bad_amount(lenet, amount, split):
    for call in (lambda: prune.magnitude_prune(lenet, amount),
                 lambda: prune.random_prune(lenet, amount, seed=0),
                 lambda: prune.gradient_prune(lenet, amount, split)):
        with pytest.raises(ValueError, match="amount"):
            call()


def test_bad_arguments(lenet, split):
    with pytest.raises(TypeError, match="amount"):
        prune.magnitude_prune(lenet, "0.5")
    with pytest.raises(ValueError, match="scope"):
        prune.magnitude_prune(lenet, 0.5, scope="model")
    with pytest.raises(ValueError, match="criterion"):
        prune.gradient_prune(lenet, 0.5, split, criterion="hessian")
    with pytest.raises(ValueError, match="data"):
        prune.gradient_prune(lenet, 0.5, None)
    with pytest.raises(ValueError, match="prunable"):
        prune.magnitude_prune(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), 0.5)
    with pytest.raises(ValueError, match="layers"):
        prune.magnitude_prune(lenet, 0.5, layers=["layers.9"])
    with pytest.raises(ValueError, match="layers"):
        prune.magnitude_prune(lenet, 0.5, layers=["layers.1"])  # a ReLU
    with pytest.raises(ValueError, match="threshold"):
        prune.threshold_prune(lenet, -1.0)
    with pytest.raises(ValueError, match="quality"):
        prune.std_threshold_prune(lenet, math.nan)
    before = lenet.layers[0].weight.detach().clone()
    with pytest.raises(ValueError):
        prune.magnitude_prune(lenet, 2.0)
    assert torch.equal(before, lenet.layers[0].weight)  # nothing done before the error


def test_gradient_scores_carry_no_autograd_graph():
    model = models.create("mlp-tiny")
    x, y = torch.randn(8, 64), torch.randint(0, 10, (8,))
    for criterion in ("taylor", "snip"):
        assert not any(s.requires_grad for s in prune.gradient_scores(model, (x, y), criterion=criterion).values())
