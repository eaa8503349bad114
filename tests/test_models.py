import pytest
import torch

from kdlab import evaluate, models


@pytest.mark.parametrize("name, params", [
    ("mlp-teacher", 301_066), ("lenet-300-100", 50_610), ("mlp-student", 2_410),
    ("mlp-tiny", 1_210), ("cnn-teacher", 19_562), ("cnn-student", 1_442),
])
def test_preset_parameter_counts_match_the_docstring(name, params):
    shape = (1, 8, 8) if name.startswith("cnn") else (64,)
    model = models.create(name, input_shape=shape)
    assert evaluate.count_parameters(model) == params
    assert f"{params:,}" in models.__doc__
    assert model(torch.zeros(3, *shape)).shape == (3, 10)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_cnn_takes_several_image_sizes(shape):
    model = models.create("cnn-student", input_shape=shape)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_mlp_flattens_images_and_has_lenet_preset():
    model = models.create("lenet-300-100", input_shape=(1, 28, 28))
    assert model.hidden == (300, 100) and model.in_features == 784
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_cnn_has_batchnorm_between_convs():
    model = models.SmallCNN(channels=(4, 8))
    kinds = [type(m).__name__ for m in model.features.modules()]
    assert kinds.count("Conv2d") == 2 and kinds.count("BatchNorm2d") == 2


def test_wrong_input_shape_is_named():
    with pytest.raises(ValueError, match=r"input x has shape \(2, 63\); this MLP expects a batch of 64"):
        models.create("mlp-student")(torch.zeros(2, 63))
    with pytest.raises(ValueError, match=r"input x has shape \(2, 64\); this CNN expects images"):
        models.create("cnn-student", input_shape=(1, 8, 8))(torch.zeros(2, 64))


@pytest.mark.parametrize("call, match", [
    (lambda: models.create("resnet"), "name must be one of"),
    (lambda: models.create("cnn-student", input_shape=(64,)), "input_shape for 'cnn-student' must be"),
    (lambda: models.MLP(hidden=(0,)), r"hidden\[0\] must be an integer >= 1, got 0"),
    (lambda: models.MLP(dropout=1.0), "dropout must be in \\[0, 1\\), got 1.0"),
    (lambda: models.SmallCNN(channels=()), "channels must name at least one block"),
])
def test_bad_model_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
