"""Tests for kdlab.prune.units: GRU/LSTM units, attention heads, embedding rows."""
import copy
import importlib
import sys

import pytest
import torch

from kdlab import evaluate, models, prune


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _gru():
    return models.GRUClassifier(input_size=5, hidden_size=12, num_classes=3).eval()


def _transformer(heads=4, layers=2):
    return models.TinyTransformer(vocab=6, seq_len=7, num_classes=6, d_model=16, heads=heads,
                                  layers=layers).eval()


def _recommender():
    return models.EmbeddingRecommender(n_users=9, n_items=11, dim=4, hidden=8).eval()


# ---------------------------------------------------------------- GRU

def test_gru_zero_contribution_units_removed_without_changing_outputs():
    model = _gru()
    dead = torch.tensor([1, 4, 5, 10])
    with torch.no_grad():
        model.gru.weight_hh_l0[:, dead] = 0
        model.classifier.weight[:, dead] = 0
    scores = prune.gru_unit_scores(model)
    assert torch.all(scores[dead] == 0) and torch.all(scores[scores != 0] > 0)
    small = prune.prune_gru_units(model, 4 / 12)
    x = torch.randn(6, 9, 5)
    assert small.gru.hidden_size == 8 and small.classifier.in_features == 8
    torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)
    assert evaluate.count_parameters(small) < evaluate.count_parameters(model)


def test_gru_prune_keeps_highest_scores_and_original_untouched():
    model = _gru()
    before = copy.deepcopy(model.state_dict())
    scores = torch.arange(12.0).flip(0)  # unit 0 best
    small = prune.prune_gru_units(model, 0.5, scores=scores)
    keep = torch.arange(6)
    rows = torch.cat([keep, keep + 12, keep + 24])
    torch.testing.assert_close(small.gru.weight_hh_l0, model.gru.weight_hh_l0[rows][:, keep])
    torch.testing.assert_close(small.gru.weight_ih_l0, model.gru.weight_ih_l0[rows])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_gru_taylor_scores_and_trainable_result():
    model = models.GRUClassifier(input_size=5, hidden_size=12, num_classes=3)
    x, y = torch.randn(20, 6, 5), torch.randint(0, 3, (20,))
    scores = prune.gru_unit_scores(model, criterion="taylor", data=(x, y))
    assert scores.shape == (12,) and torch.all(scores >= 0) and scores.sum() > 0
    small = prune.prune_gru_units(model, 0.25, criterion="taylor", data=(x, y))
    small(x).sum().backward()
    assert small.gru.weight_hh_l0.grad.shape == (27, 9)


def test_gru_bad_arguments():
    model = _gru()
    with pytest.raises(ValueError, match="amount"):
        prune.prune_gru_units(model, 1.0)
    with pytest.raises(ValueError, match="amount"):
        prune.prune_gru_units(model, -0.1)
    with pytest.raises(ValueError, match="scores"):
        prune.prune_gru_units(model, 0.5, scores=torch.ones(5))
    with pytest.raises(ValueError, match="criterion"):
        prune.gru_unit_scores(model, criterion="l3")
    with pytest.raises(ValueError, match="data is required"):
        prune.gru_unit_scores(model, criterion="taylor")
    with pytest.raises(TypeError, match="GRUClassifier"):
        prune.prune_gru_units(models.MLP(), 0.5)


# ---------------------------------------------------------------- heads

def test_heads_zero_contribution_removed_without_changing_outputs():
    model = _transformer()
    with torch.no_grad():
        model.blocks[0].attn.out.weight[:, 4:8] = 0     # head 1 of layer 0
        model.blocks[1].attn.out.weight[:, 0:4] = 0     # head 0 of layer 1
        model.blocks[1].attn.out.weight[:, 12:16] = 0   # head 3 of layer 1
    scores = prune.head_scores(model)
    assert scores.shape == (2, 4)
    assert scores[0, 1] == 0 and scores[1, 0] == 0 and scores[1, 3] == 0
    small = prune.prune_heads(model, 3 / 8)
    assert [b.attn.heads for b in small.blocks] == [3, 2]
    assert small.blocks[1].attn.q.weight.shape == (8, 16) and small.blocks[1].attn.out.in_features == 8
    x = torch.randint(0, 6, (5, 7))
    torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)
    assert evaluate.count_parameters(small) < evaluate.count_parameters(model)


def test_heads_global_keeps_one_head_per_layer_and_layer_scope():
    model = _transformer()
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
    small = prune.prune_heads(model, 1.0, scores=scores)
    assert [b.attn.heads for b in small.blocks] == [1, 1]
    torch.testing.assert_close(small.blocks[0].attn.out.weight, model.blocks[0].attn.out.weight[:, 12:16])
    glob = prune.prune_heads(model, 0.5, scores=scores)
    assert [b.attn.heads for b in glob.blocks] == [1, 3]  # layer 0's low scores go first
    per_layer = prune.prune_heads(model, 0.5, scores=scores, scope="layer")
    assert [b.attn.heads for b in per_layer.blocks] == [2, 2]
    with pytest.raises(ValueError, match="all 4 heads"):
        prune.prune_heads(model, 1.0, scores=scores, scope="layer")
    with pytest.raises(ValueError, match="shape"):
        prune.prune_heads(model, 0.5, scores=torch.ones(4))


def test_heads_taylor_and_single_attention():
    model = _transformer()
    x, y = torch.randint(0, 6, (16, 7)), torch.randint(0, 6, (16,))
    scores = prune.head_scores(model, criterion="taylor", data=(x, y), batches=2)
    assert scores.shape == (2, 4) and torch.all(scores >= 0)
    attn = models.MultiHeadSelfAttention(16, 4).eval()
    small = prune.prune_heads(attn, 0.5)
    assert small.heads == 2 and small(torch.randn(2, 5, 16)).shape == (2, 5, 16)
    with pytest.raises(TypeError, match="TinyTransformer"):
        prune.head_scores(models.MLP())


# ---------------------------------------------------------------- embedding rows

def test_embedding_zero_rows_removed_without_changing_outputs():
    model = _recommender()
    dead = torch.tensor([0, 3, 4, 9])
    with torch.no_grad():
        model.items.weight[dead] = 0
    small = prune.prune_embedding_rows(model, 4 / 11)
    assert small.items.weight.shape == (8, 4)  # 7 kept + fallback
    x = torch.stack([torch.randint(0, 9, (40,)), torch.arange(40) % 11], 1)
    torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)
    assert small.items.remap.dtype == torch.int32


def test_embedding_fallback_is_mean_of_removed_rows_and_frequency_scores():
    model = _recommender()
    x = torch.stack([torch.zeros(30, dtype=torch.long), torch.tensor([2] * 20 + [5] * 10)], 1)
    y = torch.zeros(30, dtype=torch.long)
    counts = prune.embedding_row_scores(model, "items", criterion="frequency", data=(x, y))
    assert counts[2] == 20 and counts[5] == 10 and counts.sum() == 30
    small = prune.prune_embedding_rows(model, 9 / 11, criterion="frequency", data=(x, y))
    w = model.items.weight.detach()
    torch.testing.assert_close(small.items.weight[:2], w[[2, 5]])
    others = [i for i in range(11) if i not in (2, 5)]
    torch.testing.assert_close(small.items.weight[2], w[others].mean(0))
    torch.testing.assert_close(small.items(torch.tensor([7])), w[others].mean(0, keepdim=True))
    users = prune.prune_embedding_rows(model, 0.5, "users")
    assert users.users.weight.shape == (6, 4) and isinstance(users.items, torch.nn.Embedding)
    taylor = prune.embedding_row_scores(model, "users", criterion="taylor", data=(x, y))
    assert taylor.shape == (9,) and taylor[1:].sum() == 0  # only user 0 occurs


def test_embedding_bad_arguments():
    model = _recommender()
    with pytest.raises(ValueError, match="table"):
        prune.prune_embedding_rows(model, 0.5, "movies")
    with pytest.raises(ValueError, match="data is required"):
        prune.embedding_row_scores(model, criterion="frequency")
    with pytest.raises(ValueError, match="already pruned"):
        prune.prune_embedding_rows(prune.prune_embedding_rows(model, 0.5), 0.5)
    with pytest.raises(ValueError, match="amount"):
        prune.prune_embedding_rows(model, 1.5)


# ---------------------------------------------------------------- any model, old name

def test_units_and_heads_of_modules_in_any_model():
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.GRU(4, 10, batch_first=True)
            self.out = torch.nn.Linear(10, 3)

        def forward(self, x):
            return self.out(self.rnn(x)[0].mean(1))

    model, x = Tagger().eval(), torch.randn(2, 5, 4)
    small = prune.prune_gru_units(model, 0.5, example_input=x)
    assert small.rnn.hidden_size == 5 and small(x).shape == (2, 3)
    layer = torch.nn.TransformerEncoderLayer(8, 4, 16, batch_first=True, dropout=0.0).eval()
    seq = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="embed_dim must stay num_heads"):
        prune.prune_heads(layer, 0.5, example_input=seq)
    with pytest.raises(TypeError, match="GRUClassifier, or pass example_input"):
        prune.prune_gru_units(Tagger(), 0.5)


def test_beyond_cnn_still_imports_with_a_deprecation_warning(monkeypatch):
    import kdlab._deprecation

    monkeypatch.delitem(sys.modules, "kdlab.prune.beyond_cnn", raising=False)
    with pytest.warns(kdlab._deprecation.CATEGORY,
                      match="the module kdlab.prune.beyond_cnn is deprecated .*use kdlab.prune.units"):
        old = importlib.import_module("kdlab.prune.beyond_cnn")
    assert old is importlib.import_module("kdlab.prune.units")
    assert old.prune_gru_units is prune.prune_gru_units
