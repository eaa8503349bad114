"""Small offline tasks beyond image classification, for lessons 17 and 18.

Each returns a :class:`kdlab.data.Split`. Two are real data that ship with
scikit-learn; the others are generated, and say so: they are toys that show a
mechanism, not benchmarks.

=====================  ======================================  ==============
task                   what it is                              inputs
=====================  ======================================  ==============
``digit_rows``         real digits read row by row              (N, 8, 8) float
``breast_cancer``      real tabular data, 30 features, 2 classes (N, 30) float
``token_majority``     generated: the most frequent token       (N, L) long
``clicks``             generated: user x item click-through     (N, 2) long
=====================  ======================================  ==============
"""
from __future__ import annotations

import torch

from kdlab import _validate
from kdlab.data import Split, load_digits


def digit_rows(*, seed: int = 0) -> Split:
    """The embedded digits as sequences: 8 time steps of 8 pixels (a row each), for
    recurrent models. Same split as :func:`kdlab.data.load_digits` with ``seed``."""
    split = load_digits(flat=False, seed=seed)
    return Split("digit-rows", split.x_train[:, 0], split.y_train, split.x_test[:, 0], split.y_test,
                 split.classes)


def breast_cancer(*, test_size: float = 0.5, seed: int = 0) -> Split:
    """scikit-learn's Wisconsin breast-cancer table (569 patients, 30 features, benign or
    malignant), standardised with the training part's mean and standard deviation."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    bunch = load_breast_cancer()
    x = torch.tensor(bunch.data, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.long)
    tr, te = train_test_split(list(range(len(y))), test_size=_validate.fraction("test_size", test_size),
                              stratify=bunch.target, random_state=seed)
    tr, te = torch.tensor(sorted(tr)), torch.tensor(sorted(te))
    mean, std = x[tr].mean(0), x[tr].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    return Split("breast-cancer", x[tr], y[tr], x[te], y[te], tuple(bunch.target_names))


def token_majority(*, n_train: int = 2000, n_test: int = 1000, seq_len: int = 12, vocab: int = 6,
                   seed: int = 0) -> Split:
    """Generated sequences of ``seq_len`` tokens from ``vocab`` symbols; the label is the
    most frequent token (ties go to the smallest). A task that needs attention over
    the whole sequence, for a small transformer."""
    n_train = _validate.positive_int("n_train", n_train)
    n_test = _validate.positive_int("n_test", n_test)
    seq_len = _validate.positive_int("seq_len", seq_len)
    vocab = _validate.positive_int("vocab", vocab)
    if vocab < 2:
        raise ValueError(f"vocab must be >= 2, got {vocab}")
    gen = torch.Generator().manual_seed(seed)
    # a skewed token distribution per sequence makes the majority well defined
    weights = torch.rand(n_train + n_test, vocab, generator=gen) ** 3
    x = torch.multinomial(weights, seq_len, replacement=True, generator=gen)
    counts = torch.nn.functional.one_hot(x, vocab).sum(1)
    y = counts.argmax(1)  # first maximum: ties go to the smallest token
    return Split("token-majority", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                 tuple(str(t) for t in range(vocab)))


def clicks(*, n_users: int = 300, n_items: int = 200, dim: int = 6, n_train: int = 20000,
           n_test: int = 5000, seed: int = 0) -> Split:
    """Generated click-through data: ``x[:, 0]`` a user id, ``x[:, 1]`` an item id, ``y`` 1
    for a click. Users and items have hidden taste vectors of ``dim`` numbers; the click
    probability is a logistic function of their dot product. Popularity follows a
    Zipf-like law, so many item rows are rare - the case where pruning embedding rows pays."""
    for name, value in (("n_users", n_users), ("n_items", n_items), ("dim", dim),
                        ("n_train", n_train), ("n_test", n_test)):
        _validate.positive_int(name, value)
    gen = torch.Generator().manual_seed(seed)
    users = torch.randn(n_users, dim, generator=gen)
    items = torch.randn(n_items, dim, generator=gen)
    popularity = 1.0 / torch.arange(1, n_items + 1, dtype=torch.float32) ** 1.1
    n = n_train + n_test
    u = torch.randint(0, n_users, (n,), generator=gen)
    i = torch.multinomial(popularity, n, replacement=True, generator=gen)
    p = torch.sigmoid(3.0 * (users[u] * items[i]).sum(1) / dim ** 0.5)
    y = (torch.rand(n, generator=gen) < p).long()
    x = torch.stack([u, i], 1)
    return Split("clicks", x[:n_train], y[:n_train], x[n_train:], y[n_train:], ("no click", "click"))
