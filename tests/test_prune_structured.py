"""Structured pruning: channel groups, parity with ln_structured, equivalence, resnet18."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from kdlab import data, evaluate, models, prune


def zero_removed(model, chosen):
    """The original model with the removed channels zeroed (producers and norms)."""
    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for group, keep in chosen:
            removed = torch.ones(group.channels, dtype=torch.bool)
            removed[keep] = False
            for name in group.producers + group.norms:
                for p in (modules[name].weight, modules[name].bias):
                    if p is not None:
                        p[removed] = 0
    return model


@pytest.fixture
def cnn(bn_cnn):
    return bn_cnn


X8 = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("criterion,n", [("l1", 1), ("l2", 2)])
def test_filters_equal_ln_structured(cnn, criterion, n):
    for amount in (0.25, 0.5, 0.75):
        chosen = prune.select_channels(cnn, amount, X8, criterion=criterion)
        for group, keep in chosen:
            layer = copy.deepcopy(dict(cnn.named_modules())[group.producers[0]])
            torch_prune.ln_structured(layer, "weight", amount=amount, n=n, dim=0)
            kept = layer.weight_mask.flatten(1).any(1).nonzero().flatten()
            assert torch.equal(keep, kept), (group.producers, amount)


def test_tie_rule_keeps_lower_indices():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    (group, keep), = prune.select_channels(model, 0.5, torch.zeros(1, 3))
    assert keep.tolist() == [0, 1]


def test_cnn_groups_and_shapes(cnn):
    groups = prune.channel_groups(cnn, X8)
    assert [(g.producers, g.readers, g.norms, g.channels) for g in groups] == [
        (["features.0.0"], ["features.2.0"], ["features.0.1"], 32),
        (["features.2.0"], ["classifier"], ["features.2.1"], 64)]
    small = prune.structured_prune(cnn, 0.5, X8)
    assert small.features[0][0].weight.shape == (16, 1, 3, 3)
    assert small.features[0][1].running_mean.shape == (16,)
    assert small.features[2][0].weight.shape == (32, 16, 3, 3)
    assert small.classifier.weight.shape == (10, 32)
    assert cnn.features[0][0].weight.shape == (32, 1, 3, 3)  # original untouched


@pytest.mark.parametrize("criterion", ["l1", "l2", "taylor"])
def test_cnn_equals_original_with_channels_zeroed(cnn, criterion):
    split = data.load_digits(flat=False)
    kw = {"data": split} if criterion == "taylor" else {}
    chosen = prune.select_channels(cnn, 0.5, X8, criterion=criterion, **kw)
    small = prune.structured_prune(cnn, 0.5, X8, criterion=criterion, **kw).eval()
    reference = zero_removed(cnn, chosen)
    torch.testing.assert_close(small(X8), reference(X8), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cnn(X8), reference(X8), atol=1e-3)  # pruning did change something


def test_mlp_equals_original_with_neurons_zeroed():
    torch.manual_seed(0)
    mlp = models.create("lenet-300-100").eval()
    x = torch.randn(8, 64)
    chosen = prune.select_channels(mlp, 0.7, x)
    small = prune.structured_prune(mlp, 0.7, x)
    assert [m.out_features for m in small.layers if isinstance(m, nn.Linear)] == [90, 30, 10]
    torch.testing.assert_close(small(x), zero_removed(mlp, chosen)(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_resnet18_residual_channels_pruned_together(randomise_bn):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = randomise_bn(torchvision.models.resnet18(weights=None, num_classes=10))
    x = torch.randn(2, 3, 32, 32)
    chosen = prune.select_channels(net, 0.5, x)
    tied = [g for g, _ in chosen if "conv1" in g.producers][0]
    assert set(tied.producers) == {"conv1", "layer1.0.conv2", "layer1.1.conv2"}
    assert "layer2.0.downsample.0" in tied.readers
    small = prune.structured_prune(net, 0.5, x).eval()
    torch.testing.assert_close(small(x), zero_removed(net, chosen)(x), rtol=1e-4, atol=1e-4)
    assert small.fc.in_features == 256 and small.layer4[0].downsample[0].out_channels == 256
    # about a quarter of the parameters: conv weights shrink in both dims
    assert 0.24 < evaluate.count_parameters(small) / evaluate.count_parameters(net) < 0.28
    torch.export.export(small, (x,))  # still an ordinary, exportable model


def test_pruned_model_saves_and_loads(cnn, tmp_path):
    small = prune.structured_prune(cnn, 0.5, X8)
    torch.save(small, tmp_path / "small.pt")
    loaded = torch.load(tmp_path / "small.pt", weights_only=False)
    torch.testing.assert_close(loaded.eval()(X8), small.eval()(X8))


def test_round_to_keeps_multiples_of_the_given_width(cnn):
    # 30% of (32, 64) channels leaves (22, 45); rounded to multiples of 8: (24, 48)
    small = prune.structured_prune(cnn, 0.3, X8, round_to=8)
    assert small.features[0][0].out_channels == 24 and small.features[2][0].out_channels == 48
    assert small.features[2][0].in_channels == 24 and small.classifier.in_features == 48
    chosen = prune.select_channels(cnn, 0.3, X8, round_to=8)
    torch.testing.assert_close(small.eval()(X8), zero_removed(cnn, chosen)(X8), rtol=1e-5, atol=1e-5)
    # never below one multiple, never above the layer: 95% leaves (2, 3) -> (16, 16); 64 channels by 128 -> all
    tiny = prune.structured_prune(cnn, 0.95, X8, round_to=16)
    assert (tiny.features[0][0].out_channels, tiny.features[2][0].out_channels) == (16, 16)
    whole = prune.structured_prune(cnn, 0.5, X8, round_to=128)
    assert (whole.features[0][0].out_channels, whole.features[2][0].out_channels) == (32, 64)
    # round_to=1 is the plain rule
    assert prune.structured_prune(cnn, 0.3, X8, round_to=1).features[0][0].out_channels == 22
    with pytest.raises(ValueError, match="round_to"):
        prune.structured_prune(cnn, 0.5, X8, round_to=0)


def test_structured_bad_input(cnn):
    with pytest.raises(ValueError, match="every channel"):
        prune.structured_prune(cnn, 1.0, X8)
    with pytest.raises(ValueError, match="every channel"):
        prune.structured_prune(cnn, 0.99, X8)  # 32 channels: round(31.68) = 32
    with pytest.raises(ValueError, match="amount"):
        prune.structured_prune(cnn, -0.5, X8)
    with pytest.raises(ValueError, match="criterion"):
        prune.structured_prune(cnn, 0.5, X8, criterion="l0")
    with pytest.raises(ValueError, match="data"):
        prune.structured_prune(cnn, 0.5, X8, criterion="taylor")
    with pytest.raises(ValueError, match="prunable channels"):
        prune.structured_prune(nn.Linear(4, 3), 0.5, torch.zeros(1, 4))
    with pytest.raises(TypeError, match="example_input"):
        prune.structured_prune(cnn, 0.5, [1, 2])


def test_unknown_ops_freeze_their_channels():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = self.a(x)
            return self.c(torch.cumsum(self.b(h), dim=1))  # cumsum mixes channels

    groups = prune.channel_groups(Odd(), torch.zeros(1, 4))
    assert [g.producers for g in groups] == [["a"]]
