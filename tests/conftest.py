"""Fixtures shared by the test files."""
import pytest
import torch

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
