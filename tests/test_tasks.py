import pytest
import torch

from kdlab import models
from kdlab.data import tasks


def test_digit_rows_are_the_digit_images():
    from kdlab.data import load_digits

    rows, images = tasks.digit_rows(), load_digits(flat=False)
    assert rows.x_train.shape == (898, 8, 8) and torch.equal(rows.x_train, images.x_train[:, 0])
    logits = models.GRUClassifier(8, 16, 10)(rows.x_test[:5])
    assert logits.shape == (5, 10)


def test_breast_cancer_is_standardised_on_train():
    split = tasks.breast_cancer()
    assert split.x_train.shape[1] == 30 and split.num_classes == 2
    assert split.x_train.mean(0).abs().max() < 1e-4
    assert (split.x_train.std(0) - 1).abs().max() < 1e-3


def test_token_majority_labels_are_the_most_frequent_token():
    split = tasks.token_majority(n_train=50, n_test=10, seq_len=9, vocab=4, seed=3)
    for x, y in zip(split.x_train, split.y_train):
        counts = torch.bincount(x, minlength=4)
        assert counts[y] == counts.max() and (counts[:y] < counts.max()).all()
    assert torch.equal(split.x_train, tasks.token_majority(n_train=50, n_test=10, seq_len=9, vocab=4, seed=3).x_train)
    model = models.TinyTransformer(vocab=4, seq_len=9, num_classes=4, d_model=8, heads=2)
    assert model(split.x_test).shape == (10, 4)


def test_clicks_ids_in_range_and_popularity_skewed():
    split = tasks.clicks(n_users=20, n_items=30, n_train=3000, n_test=100)
    assert split.x_train[:, 0].max() < 20 and split.x_train[:, 1].max() < 30
    counts = torch.bincount(split.x_train[:, 1], minlength=30)
    assert counts[0] > 5 * counts[-10:].float().mean()
    assert models.EmbeddingRecommender(20, 30, 4)(split.x_test).shape == (100, 2)


def test_attention_heads_are_slices():
    torch.manual_seed(0)
    attn = models.MultiHeadSelfAttention(d_model=8, heads=2)
    one = models.MultiHeadSelfAttention(d_model=8, heads=1, head_dim=4)
    with torch.no_grad():
        attn.v.weight[4:] = 0  # head 1 now contributes nothing
        attn.v.bias[4:] = 0
        for name in ("q", "k", "v"):
            getattr(one, name).weight.copy_(getattr(attn, name).weight[:4])
            getattr(one, name).bias.copy_(getattr(attn, name).bias[:4])
        one.out.weight.copy_(attn.out.weight[:, :4])
        one.out.bias.copy_(attn.out.bias)
        x = torch.randn(3, 5, 8)
        assert torch.allclose(attn(x), one(x), atol=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda: tasks.token_majority(vocab=1), "vocab must be >= 2"),
    (lambda: models.TinyTransformer(6, 12, 6, d_model=30, heads=4), "d_model must be divisible by heads"),
    (lambda: models.TinyTransformer(6, 12, 6)(torch.zeros(2, 12)), "expects token ids of shape"),
    (lambda: models.EmbeddingRecommender(5, 5)(torch.zeros(2, 3, dtype=torch.long)), r"expected \(N, 2\)"),
    (lambda: models.GRUClassifier(8, 4)(torch.zeros(2, 8)), r"expects \(N, L, 8\)"),
])
def test_bad_task_and_model_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
