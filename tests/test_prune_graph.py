"""Channel groups of real-model patterns: every pruned model equals the original with the
removed channels zeroed; diagnostics name the operation that froze a group; options."""
import warnings

import pytest
import torch
from torch import nn

from kdlab import models, prune


def assert_exact(model, x, amount=0.5, **options):
    selection = prune.select_channels(model, amount, x, **options)
    small = prune.remove_channels(model, selection).eval()
    zeroed = prune.zero_channels(model, selection).eval()
    with torch.no_grad():
        expected, got = zeroed(x), small(x)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(model(x), expected, atol=1e-4)  # something was removed
    return selection, small


def conv_bn(cin, cout, **kw):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False, **kw), nn.BatchNorm2d(cout), nn.ReLU())


class Depthwise(nn.Module):
    """MobileNet: expand, depthwise, project, with a residual and squeeze-and-excitation."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.expand = conv_bn(8, 16)
        self.dw = conv_bn(16, 16, groups=16)
        self.se_down, self.se_up = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.project = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        h = self.dw(self.expand(x))
        h = h * torch.sigmoid(self.se_up(torch.relu(self.se_down(h.mean((2, 3), keepdim=True)))))
        return self.fc((x + self.project(h)).mean((2, 3)))


class Grouped(nn.Module):
    """ResNeXt: a grouped convolution between 1x1 convolutions; flatten into a Linear."""

    def __init__(self):
        super().__init__()
        self.a = conv_bn(3, 12)
        self.g = conv_bn(12, 12, groups=3)
        self.b = conv_bn(12, 6)
        self.fc = nn.Linear(6 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.b(self.g(self.a(x))), 1))


class Dense(nn.Module):
    """DenseNet/Inception: concatenations feeding a BatchNorm and a convolution."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = conv_bn(3, 6), conv_bn(6, 4), conv_bn(6, 5)
        self.norm = nn.BatchNorm2d(15)
        self.d = nn.Conv2d(15, 7, 1)
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        a = self.a(x)
        h = torch.cat([a, self.b(a), self.c(a)], 1)
        return self.fc(torch.amax(self.d(torch.relu(self.norm(h))), dim=(2, 3)))


class NoStats(nn.Module):
    """ConvNeXt-like block without the LayerNorm: permute to NHWC, Linear, layer scale."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 8)
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x)
        h = self.down(torch.nn.functional.gelu(self.up(self.dw(x).permute(0, 2, 3, 1)))).permute(0, 3, 1, 2)
        return self.head((x + self.scale * h).flatten(2).mean(-1))


class Attention(nn.Module):
    """A token embedding, nn.MultiheadAttention with a residual, mean pooling."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        h = self.embed(x)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.fc(h.mean(1))


class Recurrent(nn.Module):
    """A two-layer bidirectional LSTM read by a classifier on its last state."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 12, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(24, 3)

    def forward(self, x):
        out, (h, _) = self.lstm(x)
        return self.fc(out[:, -1]) + self.fc(torch.cat([h[-2], h[-1]], 1))


IMAGES = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("make", [Depthwise, Grouped, Dense, NoStats], ids=lambda c: c.__name__)
def test_conv_patterns_equal_the_zeroed_original(make, randomise_bn):
    torch.manual_seed(0)
    model = randomise_bn(make())
    selection, small = assert_exact(model, IMAGES)
    assert selection.removed_macs > 0.5
    assert [str(r) for g in prune.explain(model, IMAGES).frozen for r in g.reasons] == ["model output"]


def test_depthwise_and_grouped_convs_keep_their_structure(randomise_bn):
    torch.manual_seed(0)
    small = prune.structured_prune(randomise_bn(Depthwise()), 0.5, IMAGES)
    assert small.dw[0].groups == small.dw[0].in_channels == small.dw[0].out_channels == 8
    assert small.expand[0].out_channels == 8 and small.se_up.out_channels == 8 and small.se_down.out_channels == 2
    grouped = prune.structured_prune(randomise_bn(Grouped()), 0.5, IMAGES)
    assert grouped.g[0].groups == 3 and grouped.g[0].in_channels == 6  # the same 2 of 4 go in every group
    assert grouped.fc.in_features == 3 * 64  # each kept channel brings its 8x8 inputs


def test_attention_heads_follow_the_embedding():
    torch.manual_seed(0)
    model = Attention().eval()
    x = torch.randn(2, 5, 6)
    selection, small = assert_exact(model, x)
    assert small.attn.num_heads == 2 and small.attn.embed_dim == 8 and small.attn.head_dim == 4
    assert {g.kind for g, _ in selection} == {"channels", "heads"}


def test_recurrent_units_of_any_model():
    torch.manual_seed(0)
    model = Recurrent().eval()
    x = torch.randn(3, 4, 5)
    selection, small = assert_exact(model, x)
    assert small.lstm.hidden_size == 6 and small.fc.in_features == 12
    units = [g for g, _ in selection if g.kind == "units"]
    assert len(units) == 1 and units[0].owner == "lstm"


def test_layernorm_groups_are_pruned_and_marked():
    torch.manual_seed(0)
    model = models.TinyTransformer(vocab=6, seq_len=7, num_classes=3, d_model=16, heads=4).eval()
    x = torch.randint(0, 6, (2, 7))
    report = prune.explain(model, x)
    residual = [g for g in report.groups if "tokens" in g.producers][0]
    assert residual.stats_over_channels and not residual.frozen
    assert "LayerNorm statistics change" in str(report)
    small = prune.structured_prune(model, 0.5, x)
    assert small.norm.normalized_shape == (8,) and small.blocks[0].attn.heads == 2
    assert small(x).shape == (2, 3)


# ---------------------------------------------------------------- diagnostics

class Blocked(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 16, 3), nn.Conv2d(16, 16, 3), nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.c(self.b(torch.cumsum(self.a(x), dim=1)))  # cumsum mixes a's channels


def test_explain_names_the_blocking_operation_and_its_line():
    report = prune.explain(Blocked(), IMAGES)
    frozen = [g for g in report.groups if g.producers == ["a"]][0]
    assert frozen.frozen and frozen.blocking[0].op == "aten.cumsum"
    assert "test_prune_graph.py:" in frozen.blocking[0].where and "cumsum" in frozen.blocking[0].where
    text = str(report)
    assert "aten.cumsum" in text and "model output" in text
    assert [g.producers for g in report.prunable] == [["b"]]


def test_shortfall_warns_and_course_models_do_not():
    with pytest.warns(UserWarning, match=r"would remove about .*aten\.cumsum"):
        prune.structured_prune(Blocked(), 0.5, IMAGES)
    cnn = models.create("cnn-teacher", input_shape=(1, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prune.structured_prune(cnn, 0.5, torch.zeros(1, 1, 8, 8))
        prune.structured_prune(models.create("mlp-teacher"), 0.7, torch.zeros(1, 64))


def test_no_prunable_channels_names_the_operations():
    class AllBlocked(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.b(torch.softmax(self.a(x), dim=1))

    with pytest.raises(ValueError, match=r"no prunable channels: AllBlocked; blocked by aten\.softmax"):
        prune.structured_prune(AllBlocked(), 0.5, torch.zeros(1, 4))


def test_data_dependent_control_flow_gets_a_clear_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = self.a(x)
            if h.sum() > 0:
                h = -h
            return self.b(h)

    with pytest.raises(RuntimeError, match=r"data-dependent control flow.*torch\.cond"):
        prune.channel_groups(Branchy(), torch.zeros(1, 4))


def test_modules_unused_by_the_forward_are_listed():
    class WithAux(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)
            self.aux = nn.Sequential(nn.Linear(6, 2))

        def forward(self, x):
            return self.b(self.a(x))

    report = prune.explain(WithAux(), torch.zeros(1, 4))
    assert report.unused == ["aux"] and "aux" in str(report)


# ---------------------------------------------------------------- options

CNN_X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))


@pytest.fixture
def cnn(bn_cnn):
    return bn_cnn


def widths(selection):
    return [len(keep) for _, keep in selection]


def test_layer_amounts_ignored_layers_and_global_ranking(cnn):
    assert widths(prune.select_channels(cnn, 0.5, CNN_X, layer_amounts={"features.0": 0.25})) == [24, 32]
    assert widths(prune.select_channels(cnn, 0.5, CNN_X, ignored_layers=[cnn.features[2]])) == [16]
    assert widths(prune.select_channels(cnn, 0.5, CNN_X, ignored_layers=["features.2.0"])) == [16]
    kept = widths(prune.select_channels(cnn, 0.5, CNN_X, scope="global"))
    assert sum(kept) == 48 and min(kept) >= 1 and kept != [16, 32]
    rounded = widths(prune.select_channels(cnn, 0.5, CNN_X, scope="global", round_to=8))
    assert all(k % 8 == 0 for k in rounded)
    assert_exact(cnn, CNN_X, scope="global")


def test_kinds_prune_only_what_is_asked():
    model = Recurrent().eval()
    x = torch.randn(2, 4, 5)
    selection = prune.select_channels(model, 0.5, x, kinds=("units",))
    assert [g.kind for g, _ in selection] == ["units"]


def test_option_errors_name_the_argument(cnn):
    cases = [
        (dict(layer_amounts={"nope": 0.5}), ValueError, "layer_amounts contains 'nope'"),
        (dict(layer_amounts={"features.0": 1.5}), ValueError, r"layer_amounts\['features.0'\] must be in \[0, 1\]"),
        (dict(layer_amounts={"features.0": 0.5}, scope="global"), ValueError, "layer_amounts needs scope='layer'"),
        (dict(ignored_layers=[nn.Linear(2, 2)]), ValueError, "ignored_layers contains"),
        (dict(scope="everywhere"), ValueError, "scope must be one of"),
        (dict(kinds=("filters",)), ValueError, "kinds must be one of"),
        (dict(criterion=3), ValueError, "criterion must be one of"),
        (dict(round_to=0), ValueError, "round_to must be an integer >= 1"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            prune.select_channels(cnn, 0.5, CNN_X, **kwargs)
    other = models.create("cnn-student", input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="selection was made for another model"):
        prune.remove_channels(other, prune.select_channels(cnn, 0.5, CNN_X))
    with pytest.raises(TypeError, match="selection must come from prune.select_channels"):
        prune.remove_channels(cnn, [])
