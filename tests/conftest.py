"""Fixtures shared by the test files."""
import pytest
import torch
from torch import nn

from kdlab import data, models, train


@pytest.fixture(scope="session")
def split():
    """The digits split of seed 0, shared by every test: read it, never change it."""
    return data.load_digits()


@pytest.fixture
def lenet():
    """A fresh, untrained LeNet-300-100 with the weights of seed 0."""
    torch.manual_seed(0)
    return models.create("lenet-300-100")


@pytest.fixture(scope="session")
def teacher(split):
    """A 64-64-10 MLP trained 5 epochs on the digits, in eval mode; shared, so copy it before changing it."""
    torch.manual_seed(1)
    model = models.MLP(64, (64,), 10)
    train.fit(model, split, epochs=5, lr=3e-3, progress=False)
    return model.eval()


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and scales, so that zeroed channels are not trivially zero
    and equivalence checks mean something; returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
    return model.eval()


@pytest.fixture
def randomise_bn():
    """``randomise_bn(model, seed=0)``: the model with random BatchNorm statistics and scales, in eval mode."""
    return _randomise_bn


@pytest.fixture
def bn_cnn(randomise_bn):
    """The course's cnn-teacher for 8x8 digits, seed 0, with random BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    return randomise_bn(models.create("cnn-teacher", input_shape=(1, 8, 8)))
