"""Low-rank factorisation: the best rank-r approximation (Eckart-Young), energy, conv layout, bad input."""
import pytest
import torch
from torch import nn

from kdlab import evaluate, lowrank, models


def _product(seq):
    """The weight matrix the two factors compute together."""
    a = seq[0].weight.detach().reshape(seq[0].weight.shape[0], -1)
    b = seq[1].weight.detach().reshape(seq[1].weight.shape[0], -1)
    return b @ a


def test_a_linear_layer_at_full_rank_computes_the_same_function():
    torch.manual_seed(0)
    layer = nn.Linear(12, 7)
    seq = lowrank.factorize_layer(layer, rank=7)
    x = torch.randn(5, 12)
    assert seq[0].out_features == 7 and seq[0].bias is None
    torch.testing.assert_close(seq(x), layer(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("r", [1, 3, 5])
def test_the_error_is_the_dropped_singular_values(r):
    torch.manual_seed(1)
    layer = nn.Linear(10, 8)
    s = torch.linalg.svdvals(layer.weight.detach().double())
    seq = lowrank.factorize_layer(layer, rank=r)
    error = torch.linalg.matrix_norm(layer.weight.detach().double() - _product(seq).double())
    assert float(error) == pytest.approx(float(s[r:].pow(2).sum().sqrt()), rel=1e-4)
    assert torch.linalg.matrix_rank(_product(seq)) == r


def test_energy_picks_the_smallest_rank_that_keeps_it():
    s = torch.tensor([4.0, 2.0, 1.0, 1.0])  # squares 16, 4, 1, 1 of 22
    assert lowrank.rank_for_energy(s, 16 / 22) == 1
    assert lowrank.rank_for_energy(s, 0.75) == 2
    assert lowrank.rank_for_energy(s, 21 / 22) == 3
    assert lowrank.rank_for_energy(s, 1.0) == 4


def test_a_conv_becomes_a_thin_conv_and_a_1x1_conv():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 10, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 9, 9)
    full = lowrank.factorize_layer(conv, rank=27)
    torch.testing.assert_close(full(x), conv(x), rtol=1e-4, atol=1e-5)
    thin = lowrank.factorize_layer(conv, rank=4)
    assert thin[0].out_channels == 4 and thin[0].stride == (2, 2) and thin[1].kernel_size == (1, 1)
    assert thin(x).shape == conv(x).shape
    s = torch.linalg.svdvals(conv.weight.detach().reshape(10, -1).double())
    error = torch.linalg.matrix_norm(conv.weight.detach().reshape(10, -1).double() - _product(thin).double())
    assert float(error) == pytest.approx(float(s[4:].pow(2).sum().sqrt()), rel=1e-4)


def test_factorize_replaces_only_the_layers_it_shrinks_and_leaves_the_model(lenet):
    before = evaluate.count_parameters(lenet)
    small = lowrank.factorize(lenet, rank=16)
    assert evaluate.count_parameters(lenet) == before  # the original is untouched
    assert isinstance(small.layers[0], nn.Sequential) and isinstance(small.layers[2], nn.Sequential)
    assert isinstance(small.layers[4], nn.Linear)  # 100 -> 10: rank 10 would not save anything
    assert evaluate.count_parameters(small) < before / 3
    assert small(torch.randn(3, 64)).shape == (3, 10)
    kept = lowrank.factorize(lenet, energy=1.0)
    torch.testing.assert_close(kept(torch.ones(2, 64)), lenet(torch.ones(2, 64)))  # nothing shrinks: same model
    forced = lowrank.factorize(lenet, energy=1.0, only_if_smaller=False)
    torch.testing.assert_close(forced(torch.ones(2, 64)), lenet(torch.ones(2, 64)), rtol=1e-4, atol=1e-4)


def test_grouped_convs_are_skipped_unless_named():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 8, 3))
    small = lowrank.factorize(model, rank=1)
    assert isinstance(small[0], nn.Conv2d) and isinstance(small[1], nn.Sequential)
    with pytest.raises(ValueError, match="layer '0' is a convolution with groups=4"):
        lowrank.factorize(model, rank=1, layers=["0"])


def test_bad_input_names_the_argument():
    layer = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="exactly one of rank .* and energy"):
        lowrank.factorize_layer(layer)
    with pytest.raises(ValueError, match="exactly one of rank .* and energy"):
        lowrank.factorize_layer(layer, rank=2, energy=0.9)
    with pytest.raises(ValueError, match="rank must be an integer >= 1, got 0"):
        lowrank.factorize_layer(layer, rank=0)
    with pytest.raises(ValueError, match="energy must be"):
        lowrank.factorize_layer(layer, energy=1.5)
    with pytest.raises(ValueError, match=r"energy must be in \(0, 1\], got 0"):
        lowrank.factorize(models.create("mlp-student"), energy=0)
    with pytest.raises(TypeError, match="layer must be an nn.Linear or an nn.Conv1d/2d/3d, got ReLU"):
        lowrank.factorize_layer(nn.ReLU(), rank=1)
    with pytest.raises(ValueError, match="only Linear and Conv layers"):
        lowrank.factorize(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), rank=1, layers=["1"])
