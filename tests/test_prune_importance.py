"""Importance criteria: one object per criterion, used by unstructured, structured and unit pruning."""
import pytest
import torch
from torch import nn

from kdlab import data, models, prune, train


@pytest.fixture(scope="module")
def images():
    return data.load_digits(flat=False)


@pytest.fixture
def cnn():
    torch.manual_seed(0)
    return models.create("cnn-student", input_shape=(1, 8, 8)).eval()


X = torch.zeros(2, 1, 8, 8)


def test_magnitude_is_the_filter_norm(cnn):
    groups = prune.channel_groups(cnn, X)
    for p in (1, 2):
        scores = prune.Magnitude(p).channel_scores(cnn, groups)
        for g, s in zip(groups, scores):
            weight = dict(cnn.named_modules())[g.producers[0]].weight.detach()
            torch.testing.assert_close(s, weight.flatten(1).norm(p=p, dim=1))
    weights = prune.prunable_weights(cnn)
    assert all(torch.equal(s, w.abs()) for s, w in zip(prune.Magnitude().weight_scores(cnn, weights).values(),
                                                       weights.values()))
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        prune.Magnitude(3)


def test_taylor_is_one_formula_for_weights_and_channels():
    """A Linear layer with one input: each output channel is one weight (no bias), so the
    channel score (sum of g*w over the channel)^2 is the weight score (g*w)^2."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1, bias=False), nn.Linear(1, 6, bias=False), nn.ReLU(),
                          nn.Linear(6, 10)).eval()
    taylor = prune.Taylor(data.load_digits(), batches=2)
    group = [g for g in prune.channel_groups(model, torch.zeros(1, 64)) if g.producers == ["2"]][0]
    per_channel = taylor.channel_scores(model, [group])[0]
    per_weight = taylor.weight_scores(model, {"2.weight": model[2].weight})["2.weight"].flatten()
    torch.testing.assert_close(per_channel, per_weight)
    with pytest.raises(ValueError, match="data is required"):
        prune.Taylor(None)


def test_random_snip_and_bn_scale(cnn, images):
    groups = prune.channel_groups(cnn, X)
    a, b = prune.Random(1).channel_scores(cnn, groups), prune.Random(1).channel_scores(cnn, groups)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], prune.Random(2).channel_scores(cnn, groups)[0])
    snip = prune.Snip(images, batches=1).channel_scores(cnn, groups)
    assert sum(float(s.sum()) for s in snip) == pytest.approx(1.0)
    bn = prune.BNScale().channel_scores(cnn, groups)
    torch.testing.assert_close(bn[0], cnn.features[0][1].weight.detach().abs())
    with pytest.raises(TypeError, match="scores channels, not single weights"):
        prune.BNScale().weight_scores(cnn, prune.prunable_weights(cnn))


def test_bn_scale_groups_without_batchnorm_keep_their_channels():
    mlp = models.create("mlp-teacher").eval()
    with pytest.warns(UserWarning, match="cannot score 2 group") as caught:
        small = prune.structured_prune(mlp, 0.5, torch.zeros(1, 64), criterion="bn_scale")
    assert len(caught) == 1  # keeping what the criterion cannot score is no shortfall
    assert small.layers[0].out_features == 512


def test_bn_scale_penalty_shrinks_the_scales(images):
    def scales(penalty):
        torch.manual_seed(0)
        model = models.create("cnn-student", input_shape=(1, 8, 8))
        callbacks = [prune.BNScalePenalty(penalty)] if penalty else []
        train.fit(model, images, epochs=1, lr=1e-2, seed=0, callbacks=callbacks, progress=False)
        return sum(float(m.weight.detach().abs().sum()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))

    assert scales(1e-2) < scales(None) - 0.5
    with pytest.raises(ValueError, match="strength must be a finite number > 0"):
        prune.BNScalePenalty(0)


def test_a_user_criterion_serves_every_kind_of_pruning(cnn):
    class Last(prune.Importance):
        """Keeps the highest indices; every weight scored by its flat position."""

        def channel_scores(self, model, groups):
            return [torch.arange(g.channels, dtype=torch.float32) for g in groups]

        def weight_scores(self, model, weights):
            return {n: torch.arange(w.numel(), dtype=torch.float32).view(w.shape) for n, w in weights.items()}

    chosen = prune.select_channels(cnn, 0.5, X, criterion=Last())
    assert [keep.tolist() for _, keep in chosen] == [list(range(4, 8)), list(range(8, 16))]
    mlp = models.create("mlp-student")
    masks = prune.unstructured_prune(mlp, 0.5, Last(), scope="layer")
    assert not masks["layers.0.weight"].flatten()[:1024].any() and masks["layers.0.weight"].flatten()[1024:].all()
    gru = models.GRUClassifier(input_size=4, hidden_size=8, num_classes=3)
    assert prune.gru_unit_scores(gru, criterion=Last()).tolist() == list(range(8))
    with pytest.raises(TypeError, match="importance must be a kdlab.prune.Importance"):
        prune.unstructured_prune(mlp, 0.5, "l1")
