"""Fixtures shared by the test files."""
import pytest
import torch

from kdlab import data, models


@pytest.fixture(scope="session")
def split():
    """The digits split of seed 0, shared by every test: read it, never change it."""
    return data.load_digits()


@pytest.fixture
def lenet():
    """A fresh, untrained LeNet-300-100 with the weights of seed 0."""
    torch.manual_seed(0)
    return models.create("lenet-300-100")
