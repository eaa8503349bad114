"""Small, readable models for the course, and trained ones (:mod:`kdlab.models.zoo`).

Images:

- :class:`MLP` - fully connected, any hidden sizes (LeNet-300-100 is one preset).
- :class:`SmallCNN` - conv-BN-ReLU blocks with max-pooling, global average pooling
  and a linear classifier; the CNN presets on small images (the 8x8 digits).
- :class:`LeNet5` - two conv5x5-BN-ReLU blocks with max-pooling, a flatten and a
  hidden layer; the CNN presets on images of 16x16 and more (MNIST, CIFAR-10).

They keep their layers in ``nn.Sequential`` containers, so structured pruning can
walk them in order, and none changes its ``forward`` for distillation: features
are read with forward hooks.

Sequences, tokens and recommendation (the tasks of :mod:`kdlab.data.tasks`):

- :class:`GRUClassifier` - a GRU over a sequence (of vectors, or of token ids with
  ``vocab``), classified from its last hidden state;
- :class:`CharLM` - a character-level GRU language model: next-character logits at
  every position (the text of :mod:`kdlab.data.text`);
- :class:`MultiHeadSelfAttention`, :class:`TransformerBlock` and
  :class:`TinyTransformer` - a small pre-norm transformer encoder with mean pooling;
- :class:`EmbeddingRecommender` - user and item embeddings, a click predicted by an
  MLP on ``[u, i, u * i]``.

Trained models: :func:`pretrained` (from :mod:`kdlab.models.zoo`) trains a preset
with a fixed recipe the first time and loads it from a cache afterwards.

Presets (:func:`create`), parameter counts for the 8x8 digits (64 inputs, 10 classes):

=================  ====================================  ==========
name               architecture                          parameters
=================  ====================================  ==========
``mlp-teacher``    64-512-512-10, dropout 0.2               301,066
``lenet-300-100``  64-300-100-10 (LeNet-300-100 style)       50,610
``mlp-student``    64-32-10                                   2,410
``mlp-tiny``       64-16-10                                   1,210
``cnn-teacher``    conv 32-64, BN, GAP, linear                 19,562
``cnn-student``    conv 8-16, BN, GAP, linear                   1,442
=================  ====================================  ==========

On 28x28 images (``mnist-5k``, MNIST) the MLP presets have 784 inputs and the CNN
presets are :class:`LeNet5`: ``cnn-teacher`` conv5x5 32-64, BN, FC 128, dropout 0.3
(455,018 parameters); ``cnn-student`` conv5x5 8-16, BN, FC 32 (28,898 parameters).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from kdlab import _validate


class MLP(nn.Module):
    """Linear-ReLU(-Dropout) layers and a linear output layer.

    Args:
        in_features: number of input features; images are flattened.
        hidden: sizes of the hidden layers, e.g. ``(300, 100)``.
        num_classes: number of outputs (logits).
        dropout: dropout probability after each hidden layer, in [0, 1).
    """

    def __init__(self, in_features: int = 64, hidden=(32,), num_classes: int = 10,
                 dropout: float = 0.0):
        super().__init__()
        _validate.positive_int("in_features", in_features)
        _validate.positive_int("num_classes", num_classes)
        hidden = tuple(_validate.sequence("hidden", hidden, "(300, 100) or (32,)"))
        for i, h in enumerate(hidden):
            _validate.positive_int(f"hidden[{i}]", h)
        if _validate.fraction("dropout", dropout) >= 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_features, self.hidden, self.num_classes = in_features, hidden, num_classes
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.in_features:
            raise ValueError(
                f"input x has shape {tuple(x.shape)}; this MLP expects a batch of "
                f"{self.in_features} features, e.g. ({x.shape[0] if x.ndim else 'N'}, {self.in_features})")
        return self.layers(x.flatten(1))


def conv_block(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """A same-size convolution (no bias: BatchNorm follows), BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class SmallCNN(nn.Module):
    """Conv-BN-ReLU blocks, each followed by 2x2 max-pooling, then global average
    pooling and a linear classifier.

    Args:
        in_channels: 1 for digits/MNIST, 3 for CIFAR-10.
        num_classes: number of outputs.
        channels: output channels of each block, e.g. ``(16, 32)``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels=(16, 32)):
        super().__init__()
        _validate.positive_int("in_channels", in_channels)
        _validate.positive_int("num_classes", num_classes)
        channels = tuple(_validate.sequence("channels", channels, "(16, 32)"))
        if not channels:
            raise ValueError("channels must name at least one block, got ()")
        for i, c in enumerate(channels):
            _validate.positive_int(f"channels[{i}]", c)
        self.in_channels, self.channels, self.num_classes = in_channels, channels, num_classes
        blocks: list[nn.Module] = []
        width = in_channels
        for c in channels:
            blocks += [conv_block(width, c), nn.MaxPool2d(2)]
            width = c
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        min_side = 2 ** len(self.channels)
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[2:]) < min_side:
            raise ValueError(
                f"input x has shape {tuple(x.shape)}; this CNN expects images of shape "
                f"(N, {self.in_channels}, H, W) with H, W >= {min_side}, e.g. "
                f"(N, {self.in_channels}, 8, 8); load the data with flat=False")
        return self.classifier(self.pool(self.features(x)).flatten(1))


class LeNet5(nn.Module):
    """A LeNet-5-style CNN for images of real resolution (e.g. 28x28): two
    conv5x5-BN-ReLU blocks, each followed by 2x2 max-pooling, then a flatten, a
    hidden Linear-ReLU(-Dropout) layer and a linear classifier. Unlike
    :class:`SmallCNN` it keeps where a stroke is (no global average pooling).

    Args:
        in_channels: 1 for MNIST, 3 for CIFAR-10.
        num_classes: number of outputs.
        channels: output channels of the two blocks.
        image_size: ``(H, W)`` of the inputs, each >= 4.
        hidden: width of the hidden Linear layer.
        dropout: dropout after the hidden layer, in [0, 1).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels=(32, 64), image_size=(28, 28),
                 hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        _validate.positive_int("in_channels", in_channels)
        _validate.positive_int("num_classes", num_classes)
        channels = tuple(_validate.sequence("channels", channels, "(32, 64)"))
        if len(channels) != 2:
            raise ValueError(f"channels must name the two blocks' widths, e.g. (32, 64); got {channels!r}")
        for i, c in enumerate(channels):
            _validate.positive_int(f"channels[{i}]", c)
        image_size = _validate.shape("image_size", image_size)
        if len(image_size) != 2 or min(image_size) < 4:
            raise ValueError(f"image_size must be (H, W) with H, W >= 4, got {image_size!r}")
        _validate.positive_int("hidden", hidden)
        if _validate.fraction("dropout", dropout) >= 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_channels, self.channels, self.num_classes = in_channels, channels, num_classes
        self.image_size, self.hidden = image_size, hidden
        self.features = nn.Sequential(
            conv_block(in_channels, channels[0], kernel_size=5), nn.MaxPool2d(2),
            conv_block(channels[0], channels[1], kernel_size=5), nn.MaxPool2d(2))
        h, w = (s // 4 for s in image_size)
        head: list[nn.Module] = [nn.Flatten(), nn.Linear(channels[1] * h * w, hidden), nn.ReLU()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(hidden, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.image_size):
            raise ValueError(f"input x has shape {tuple(x.shape)}; this CNN expects images of shape "
                             f"(N, {self.in_channels}, {self.image_size[0]}, {self.image_size[1]}); "
                             f"load the data with flat=False")
        return self.classifier(self.features(x))


LARGE_IMAGE = 16
"""CNN presets on images at least this large (both sides) are :class:`LeNet5`-style;
smaller images (the 8x8 digits) get :class:`SmallCNN`."""

LARGE_PRESETS = {
    "cnn-teacher": {"channels": (32, 64), "hidden": 128, "dropout": 0.3},
    "cnn-student": {"channels": (8, 16), "hidden": 32, "dropout": 0.0},
}

PRESETS = {
    "mlp-teacher": (MLP, {"hidden": (512, 512), "dropout": 0.2}),
    "lenet-300-100": (MLP, {"hidden": (300, 100)}),
    "mlp-student": (MLP, {"hidden": (32,)}),
    "mlp-tiny": (MLP, {"hidden": (16,)}),
    "cnn-teacher": (SmallCNN, {"channels": (32, 64)}),
    "cnn-student": (SmallCNN, {"channels": (8, 16)}),
}


def create(name: str, input_shape=(64,), num_classes: int = 10, **overrides) -> nn.Module:
    """Build a preset for inputs of ``input_shape`` (one example, without the batch).

    MLP presets take any shape and flatten it; CNN presets need ``(C, H, W)``.

    >>> create("lenet-300-100", input_shape=(1, 28, 28)).hidden
    (300, 100)
    """
    _validate.choice("name", name, PRESETS)
    cls, kwargs = PRESETS[name]
    input_shape = _validate.shape("input_shape", input_shape)
    _validate.positive_int("num_classes", num_classes)
    kwargs = {**kwargs, **overrides, "num_classes": num_classes}
    if cls is MLP:
        if not input_shape or any(int(s) < 1 for s in input_shape):
            raise ValueError(f"input_shape must be a non-empty shape of positive sizes, got {input_shape!r}")
        return MLP(in_features=math.prod(input_shape), **kwargs)
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape for {name!r} must be (channels, height, width), e.g. (1, 8, 8); got {input_shape!r}")
    if min(input_shape[1:]) >= LARGE_IMAGE:
        kwargs = {**LARGE_PRESETS[name], **overrides, "num_classes": num_classes}
        return LeNet5(in_channels=input_shape[0], image_size=input_shape[1:], **kwargs)
    return SmallCNN(in_channels=input_shape[0], **kwargs)


class GRUClassifier(nn.Module):
    """A GRU over a sequence and a linear classifier on its last hidden state.

    Inputs are ``(N, L, input_size)`` floats, or ``(N, L)`` token ids when ``vocab``
    is given (an embedding of width ``input_size`` comes first)."""

    def __init__(self, input_size: int = 8, hidden_size: int = 64, num_classes: int = 10,
                 vocab: int | None = None):
        super().__init__()
        _validate.positive_int("input_size", input_size)
        _validate.positive_int("hidden_size", hidden_size)
        _validate.positive_int("num_classes", num_classes)
        self.embedding = nn.Embedding(_validate.positive_int("vocab", vocab), input_size) if vocab else None
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            x = self.embedding(x)
        if x.ndim != 3 or x.shape[2] != self.gru.input_size:
            raise ValueError(f"input x has shape {tuple(x.shape)}; this GRU expects (N, L, {self.gru.input_size})")
        _, h = self.gru(x)
        return self.classifier(h[-1])


class CharLM(nn.Module):
    """A character-level language model: embedding, a GRU, and a linear layer giving
    the logits of the next character at every position. ``forward(x)`` maps token ids
    ``(N, L)`` to logits ``(N, L, vocab)``; position ``t`` sees only tokens ``<= t``.

    >>> lm = CharLM(10, hidden=16)
    >>> tuple(lm(torch.zeros(2, 5, dtype=torch.long)).shape)
    (2, 5, 10)
    """

    def __init__(self, vocab: int, *, embedding: int = 32, hidden: int = 128, layers: int = 1):
        super().__init__()
        self.vocab = _validate.positive_int("vocab", vocab)
        self.embed = nn.Embedding(self.vocab, _validate.positive_int("embedding", embedding))
        self.gru = nn.GRU(embedding, _validate.positive_int("hidden", hidden),
                          num_layers=_validate.positive_int("layers", layers), batch_first=True)
        self.head = nn.Linear(hidden, self.vocab)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        return self.step(x, state)[0]

    def step(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple:
        """``(logits, state)``: the logits of ``x`` ``(N, L)`` continuing from the GRU
        ``state`` (``None``: the start), and the state after it, for generation."""
        if x.dtype != torch.long or x.ndim != 2:
            raise ValueError(f"x must be token ids of shape (N, L) and dtype torch.long, got "
                             f"{tuple(x.shape)} {x.dtype}")
        out, state = self.gru(self.embed(x), state)
        return self.head(out), state


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with ``heads`` heads of ``head_dim`` each, written out so a head
    is a visible slice: rows ``h*head_dim:(h+1)*head_dim`` of the q, k and v
    projections and the same columns of ``out`` belong to head ``h``."""

    def __init__(self, d_model: int, heads: int, head_dim: int | None = None):
        super().__init__()
        _validate.positive_int("d_model", d_model)
        self.heads = _validate.positive_int("heads", heads)
        if head_dim is None and d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads}) unless head_dim is "
                             f"given; {d_model} // {heads} would quietly use width {heads * (d_model // heads)}")
        self.head_dim = _validate.positive_int("head_dim", head_dim or d_model // heads)
        inner = self.heads * self.head_dim
        self.q, self.k, self.v = (nn.Linear(d_model, inner) for _ in range(3))
        self.out = nn.Linear(inner, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape

        def split(t):
            return t.view(n, length, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        return self.out((attn @ v).transpose(1, 2).reshape(n, length, self.heads * self.head_dim))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attention(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, d_model: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadSelfAttention(d_model, heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.ReLU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """Token and position embeddings, ``layers`` transformer blocks, mean pooling and a
    linear classifier: a sequence classifier small enough for a CPU lesson."""

    def __init__(self, vocab: int, seq_len: int, num_classes: int, d_model: int = 32, heads: int = 4,
                 layers: int = 2):
        super().__init__()
        for name, value in (("vocab", vocab), ("seq_len", seq_len), ("num_classes", num_classes),
                            ("d_model", d_model), ("heads", heads), ("layers", layers)):
            _validate.positive_int(name, value)
        if d_model % heads:
            raise ValueError(f"d_model must be divisible by heads, got d_model={d_model}, heads={heads}")
        self.seq_len = seq_len
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Parameter(torch.zeros(seq_len, d_model))
        self.blocks = nn.Sequential(*(TransformerBlock(d_model, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.seq_len or x.is_floating_point():
            raise ValueError(f"input x has shape {tuple(x.shape)} and dtype {x.dtype}; this transformer "
                             f"expects token ids of shape (N, {self.seq_len})")
        h = self.blocks(self.tokens(x) + self.positions)
        return self.classifier(self.norm(h).mean(1))


class EmbeddingRecommender(nn.Module):
    """User and item embeddings of width ``dim``; an MLP on ``[u, i, u * i]`` gives
    two logits (no click, click). Inputs are ``(N, 2)`` ids: user, item."""

    def __init__(self, n_users: int, n_items: int, dim: int = 16, hidden: int = 32):
        super().__init__()
        for name, value in (("n_users", n_users), ("n_items", n_items), ("dim", dim), ("hidden", hidden)):
            _validate.positive_int(name, value)
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items, dim)
        self.mlp = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != 2 or x.is_floating_point():
            raise ValueError(f"input x has shape {tuple(x.shape)} and dtype {x.dtype}; expected (N, 2) "
                             f"integer ids (user, item)")
        u, i = self.users(x[:, 0]), self.items(x[:, 1])
        return self.mlp(torch.cat([u, i, u * i], 1))


# The zoo trains the presets above, so it is imported after them.
from kdlab.models.zoo import pretrained, pretrained_charlm  # noqa: E402
