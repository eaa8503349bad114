"""Structured pruning beyond conv channels: attention heads, recurrent hidden units,
embedding rows. Each pruner returns a new, physically smaller model (a deep copy; the
original is untouched).

Heads and units are groups of the same dependency graph as channels
(:func:`kdlab.prune.channel_groups`), so they work in any model that holds the
module, not only kdlab's: ``nn.GRU``/``nn.LSTM``/``nn.RNN`` (all layers and directions,
all gates of a unit together) and attention heads of ``nn.MultiheadAttention``,
torchvision's ViT and Swin blocks and :class:`kdlab.models.MultiHeadSelfAttention`.
For kdlab's model classes the example input is made up; for other models pass
``example_input``. A unit is scored by the weights that *read* it (its outgoing
weights) with the criteria of :mod:`kdlab.prune.importance`:

- hidden unit j of a recurrent layer: column j of every recurrent matrix W_hh (all
  gates) and of the layers that read h_j (the next layer's W_ih, the classifier).
  ``"l1"``: s_j = sum of the L1 norms of those columns, e.g. ||W_hh[:, j]||_1 +
  ||W_cls[:, j]||_1 for :class:`kdlab.models.GRUClassifier`. Removing j slices rows
  j, H+j, 2H+j (gates r, z, n; four gates for an LSTM) of W_ih, W_hh and both biases,
  and column j of W_hh and of the readers.
- attention head h: columns h*d:(h+1)*d of the output projection read it
  (d = head_dim). ``"l1"``: s_h = ||W_out[:, head h]||_1. Removing h slices those rows
  of q, k, v and those columns of the output projection; 1/sqrt(d) is unchanged.
  ``nn.MultiheadAttention`` and Swin need ``embed_dim = num_heads * head_dim``: their
  heads go only together with the embedding channels
  (``select_channels(model, amount, x, kinds=("channels", "heads"))``).
- embedding row r of :class:`kdlab.models.EmbeddingRecommender`:
  ``"l2"``: s_r = ||E[r]||_2; ``"frequency"``: how often id r occurs in ``data``.
  Removed ids are remapped to one shared fallback row, the mean of the removed
  rows (a hashing-style "rare id" bucket), through an int32 lookup table.

``"taylor"`` (Molchanov et al. 2019, group form; for heads it is Michel et al.
2019's head importance with a square instead of an absolute value):
s = sum over batches of (sum over the unit's scored weights of g * w)^2, where
sum g * w = dL/dxi for a gate xi that multiplies the unit's output.

A unit whose scored weights are all zero contributes nothing: removing it leaves
the model's outputs unchanged (the tests check this).

>>> import torch
>>> from kdlab import models, prune
>>> gru = models.GRUClassifier(input_size=8, hidden_size=32)
>>> prune.prune_gru_units(gru, 0.5).gru.hidden_size
16
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from kdlab import _validate
from kdlab.models import EmbeddingRecommender, GRUClassifier, MultiHeadSelfAttention, TinyTransformer
from kdlab.prune.graph import Graph, example_args, groups_of
from kdlab.prune.importance import Importance, Magnitude, Taylor, as_importance
from kdlab.prune.structured import Selection, remove_channels

UNIT_CRITERIA = ("l1", "taylor")
ROW_CRITERIA = ("l2", "frequency", "taylor")
SCOPES = ("global", "layer")
TABLES = ("users", "items")


def _check_model(model, cls):
    if not isinstance(model, cls):
        raise TypeError(f"model must be a kdlab.models.{cls.__name__}, got {type(model).__name__}")


def _check_unit_model(model, cls, example_input) -> None:
    if example_input is None and not isinstance(model, cls) and \
            not (cls is TinyTransformer and isinstance(model, MultiHeadSelfAttention)):
        what = "nn.GRU/nn.LSTM/nn.RNN" if cls is GRUClassifier else "attention"
        raise TypeError(f"model must be a kdlab.models.{cls.__name__}, or pass example_input for a model that "
                        f"holds {what} modules; got {type(model).__name__}")


def _criterion(criterion, data, loss_fn, batches) -> Importance:
    if not isinstance(criterion, Importance):
        _validate.choice("criterion", criterion, UNIT_CRITERIA)
    return as_importance(criterion, data=data, loss_fn=loss_fn, batches=batches)


def _example(model: nn.Module, example_input, what: str):
    """``example_input`` as a tuple, or one made up for kdlab's own classes."""
    if example_input is not None:
        return example_args(example_input)
    if isinstance(model, GRUClassifier):
        if model.embedding is not None:
            return (torch.zeros(1, 2, dtype=torch.long),)
        return (torch.zeros(1, 2, model.gru.input_size, device=model.gru.weight_ih_l0.device),)
    if isinstance(model, TinyTransformer):
        return (torch.zeros(1, model.seq_len, dtype=torch.long, device=model.tokens.weight.device),)
    if isinstance(model, MultiHeadSelfAttention):
        return (torch.zeros(1, 2, model.q.in_features, device=model.q.weight.device),)
    raise TypeError(f"model must be a kdlab.models.{what}, or pass example_input for a model that holds "
                    f"{'nn.GRU/nn.LSTM/nn.RNN' if what == 'GRUClassifier' else 'attention'} modules; "
                    f"got {type(model).__name__}")


def _groups(model, args, kind: str) -> tuple:
    g = Graph(model, args)
    return g, [grp for grp in groups_of(g) if grp.kind == kind]


def _apply(model, g, groups, keeps) -> nn.Module:
    keep = {grp.space: k for grp, k in zip(groups, keeps)}
    return remove_channels(model, Selection(list(zip(groups, keeps)), g, keep))


def _keep(scores: torch.Tensor, n_remove: int) -> torch.Tensor:
    """Indices (ascending) of the ``len(scores) - n_remove`` highest scores; among equal
    scores the lower index is kept (stable sort)."""
    order = torch.sort(scores.flatten(), descending=True, stable=True).indices
    return order[: scores.numel() - n_remove].sort().values


# ---------------------------------------------------------------- recurrent hidden units

def _unit_group(model, example_input):
    args = _example(model, example_input, "GRUClassifier")
    g, groups = _groups(model, args, "units")
    if len(groups) != 1:
        raise ValueError(f"model must hold exactly one nn.GRU/nn.LSTM/nn.RNN whose units can be pruned, found "
                         f"{len(groups)}; for several use prune.select_channels(model, amount, x, kinds=('units',))")
    if groups[0].frozen:
        raise ValueError(f"the hidden units of {groups[0].owner!r} cannot be pruned: "
                         f"{'; '.join(map(str, groups[0].reasons[:2]))}")
    return g, groups[0]


def gru_unit_scores(model: nn.Module, *, criterion="l1", data=None, loss_fn=None, batches: int = 1,
                    example_input=None) -> torch.Tensor:
    """Importance of each hidden unit of the recurrent layer of ``model`` (a
    :class:`GRUClassifier`, or any model holding one ``nn.GRU``/``nn.LSTM``/``nn.RNN``
    with ``example_input``), shape ``(hidden_size,)`` (see the module docstring);
    ``data`` feeds ``"taylor"``."""
    _check_unit_model(model, GRUClassifier, example_input)
    importance = _criterion(criterion, data, loss_fn, batches)
    _, group = _unit_group(model, example_input)
    return importance.channel_scores(model, [group])[0]


def prune_gru_units(model: nn.Module, amount: float, *, scores: torch.Tensor | None = None,
                    criterion="l1", data=None, loss_fn=None, batches: int = 1,
                    example_input=None) -> nn.Module:
    """A copy of ``model`` with ``round(amount * H)`` of the ``H`` hidden units of its
    recurrent layer removed (every layer and direction), those with the lowest
    ``scores`` (default :func:`gru_unit_scores` with ``criterion``). ``amount`` in
    [0, 1); at least one unit stays.

    >>> from kdlab import models, prune
    >>> small = prune.prune_gru_units(models.GRUClassifier(hidden_size=64), 0.75)
    >>> small.gru.hidden_size, small.classifier.in_features
    (16, 16)
    """
    _check_unit_model(model, GRUClassifier, example_input)
    amount = _validate.fraction("amount", amount)
    importance = _criterion(criterion, data, loss_fn, batches) if scores is None else None
    g, group = _unit_group(model, example_input)
    hidden = group.channels
    n_remove = round(amount * hidden)
    if n_remove >= hidden:
        raise ValueError(f"amount={amount!r} would remove all {hidden} hidden units; "
                         f"use amount < {(hidden - 0.5) / hidden:.4f}")
    if scores is None:
        scores = importance.channel_scores(model, [group])[0]
    scores = torch.as_tensor(scores)
    if scores.shape != (hidden,):
        raise ValueError(f"scores must have shape ({hidden},), got {tuple(scores.shape)}")
    return _apply(model, g, [group], [_keep(scores.cpu(), n_remove)])


# ---------------------------------------------------------------- attention heads

def _head_groups(model, example_input):
    _check_unit_model(model, TinyTransformer, example_input)
    g, groups = _groups(model, _example(model, example_input, "TinyTransformer"), "heads")
    if not groups:
        raise ValueError(f"{type(model).__name__} holds no attention heads kdlab can prune")
    linked = {link.module for link in g.head_links}
    for grp in groups:
        if grp.owner in linked:
            raise ValueError(f"the heads of {grp.owner!r} ({type(model.get_submodule(grp.owner)).__name__}) cannot "
                             "be pruned on their own: its embed_dim must stay num_heads * head_dim; prune them with "
                             "the embedding channels: prune.select_channels(model, amount, x, "
                             "kinds=('channels', 'heads'))")
    frozen = [grp for grp in groups if grp.frozen]
    if frozen:
        raise ValueError(f"the heads of {frozen[0].owner!r} cannot be pruned on their own: "
                         f"{'; '.join(map(str, frozen[0].reasons[:2]))}; prune them with the embedding "
                         "channels: prune.select_channels(model, amount, x, kinds=('channels', 'heads'))")
    return g, groups


def head_scores(model: nn.Module, *, criterion="l1", data=None, loss_fn=None, batches: int = 1,
                example_input=None) -> torch.Tensor:
    """Importance of each attention head, shape ``(layers, heads)`` for a
    :class:`TinyTransformer` (``(1, heads)`` for one :class:`MultiHeadSelfAttention`;
    any model holding attention modules with ``example_input``); every layer must have
    the same number of heads. ``data`` feeds ``"taylor"``."""
    _check_unit_model(model, TinyTransformer, example_input)
    importance = _criterion(criterion, data, loss_fn, batches)
    _, groups = _head_groups(model, example_input)
    if len({grp.channels for grp in groups}) != 1:
        raise ValueError("head_scores needs the same number of heads in every layer; "
                         f"got {[grp.channels for grp in groups]}")
    return torch.stack([s.cpu() for s in importance.channel_scores(model, groups)])


def prune_heads(model: nn.Module, amount: float, *, scores: torch.Tensor | None = None,
                scope: str = "global", criterion="l1", data=None, loss_fn=None,
                batches: int = 1, example_input=None) -> nn.Module:
    """A copy of a :class:`TinyTransformer` (or one :class:`MultiHeadSelfAttention`, or
    any model with ``example_input``) with ``round(amount * n)`` of its ``n`` heads
    removed, the lowest ``scores`` (default :func:`head_scores` with ``criterion``),
    ranked over all layers (``scope="global"``) or within each layer (``"layer"``,
    ``round(amount * heads)`` per layer). Every layer keeps at least its best head, so
    ``amount`` may be up to 1 with ``"global"``.

    >>> from kdlab import models, prune
    >>> net = models.TinyTransformer(vocab=6, seq_len=12, num_classes=6, heads=4, layers=2)
    >>> [b.attn.heads for b in prune.prune_heads(net, 0.5).blocks]  # doctest: +SKIP
    [2, 2]
    """
    _check_unit_model(model, TinyTransformer, example_input)
    amount = _validate.fraction("amount", amount)
    _validate.choice("scope", scope, SCOPES)
    importance = _criterion(criterion, data, loss_fn, batches) if scores is None else None
    g, groups = _head_groups(model, example_input)
    layers, heads = len(groups), groups[0].channels
    if scores is None:
        if len({grp.channels for grp in groups}) != 1:
            raise ValueError("prune_heads needs the same number of heads in every layer; "
                             f"got {[grp.channels for grp in groups]}")
        scores = torch.stack([s.cpu() for s in importance.channel_scores(model, groups)])
    scores = torch.as_tensor(scores, dtype=torch.float64)
    if scores.shape != (layers, heads) or any(grp.channels != heads for grp in groups):
        raise ValueError(f"scores must have shape ({layers}, {heads}) (layers, heads), "
                         f"got {tuple(scores.shape)}")
    if scope == "layer":
        n_remove = round(amount * heads)
        if n_remove >= heads:
            raise ValueError(f"amount={amount!r} would remove all {heads} heads of a layer; "
                             f"use amount < {(heads - 0.5) / heads:.4f}")
        keeps = [_keep(s, n_remove) for s in scores]
    else:
        n_remove = min(round(amount * layers * heads), layers * (heads - 1))
        ranked = scores.clone()
        ranked[torch.arange(layers), scores.argmax(1)] = float("inf")  # each layer's best head stays
        kept = torch.zeros(layers * heads, dtype=torch.bool)
        kept[_keep(ranked, n_remove)] = True
        keeps = [row.nonzero().flatten() for row in kept.view(layers, heads)]
    return _apply(model, g, groups, keeps)


# ---------------------------------------------------------------- embedding rows

class PrunedEmbedding(nn.Module):
    """An embedding that stores only some rows: ``forward(ids) = weight[remap[ids]]``.

    ``remap`` (int32, one entry per original id) sends kept ids to their row and
    removed ids to the last row, the shared fallback."""

    def __init__(self, weight: torch.Tensor, remap: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.register_buffer("remap", remap.to(torch.int32))
        self.num_embeddings, self.embedding_dim = len(remap), weight.shape[1]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(self.remap[ids], self.weight)


def _table(model: EmbeddingRecommender, table: str) -> torch.Tensor:
    emb = getattr(model, table)
    if not isinstance(emb, nn.Embedding):
        raise ValueError(f"model.{table} is already pruned ({type(emb).__name__}); prune the original model")
    return emb.weight


def _row_group(model, table: str):
    """The rows of an embedding table as a group of ``rows`` channels (dim 0 of its weight)."""
    from kdlab.prune.graph import ChannelGroup

    return ChannelGroup(producers=[table], channels=_table(model, table).shape[0])


def embedding_row_scores(model: EmbeddingRecommender, table: str = "items", *, criterion: str = "l2",
                         data=None, loss_fn=None, batches: int = 1) -> torch.Tensor:
    """Importance of each row of ``model.users`` or ``model.items``, shape ``(rows,)``.
    ``"frequency"`` counts the ids in ``data`` (a Split's training part, ``(x, y)``
    or a DataLoader, all of it); ``"taylor"`` uses ``batches`` of it."""
    _check_model(model, EmbeddingRecommender)
    _validate.choice("table", table, TABLES)
    _validate.choice("criterion", criterion, ROW_CRITERIA)
    weight = _table(model, table)
    column = TABLES.index(table)
    if criterion == "l2":
        return Magnitude(p=2).channel_scores(model, [_row_group(model, table)])[0]
    if criterion == "taylor":
        if data is None:
            raise ValueError("data is required for criterion='taylor': it needs batches (x, y) for gradients")
        return Taylor(data, loss_fn=loss_fn, batches=batches).channel_scores(model, [_row_group(model, table)])[0]
    from kdlab.train import as_loader

    if data is None:
        raise ValueError("data is required for criterion='frequency': it counts the ids in data")
    counts = torch.zeros(weight.shape[0])
    for batch in as_loader(data, batch_size=4096, shuffle=False):
        counts += torch.bincount(batch[0][:, column].cpu(), minlength=weight.shape[0]).float()
    return counts


def prune_embedding_rows(model: EmbeddingRecommender, amount: float, table: str = "items", *,
                         scores: torch.Tensor | None = None, criterion: str = "l2", data=None,
                         loss_fn=None, batches: int = 1) -> EmbeddingRecommender:
    """A copy of ``model`` whose ``table`` (``"users"`` or ``"items"``) keeps only the
    rows with the highest ``scores`` (default :func:`embedding_row_scores`); the
    ``round(amount * rows)`` others share one fallback row, their mean. ``amount`` in
    [0, 1]: at 1 every id maps to the fallback.

    >>> from kdlab import models, prune
    >>> rec = models.EmbeddingRecommender(n_users=30, n_items=20, dim=4)
    >>> tuple(prune.prune_embedding_rows(rec, 0.5).items.weight.shape)  # 10 rows + fallback
    (11, 4)
    """
    _check_model(model, EmbeddingRecommender)
    amount = _validate.fraction("amount", amount)
    _validate.choice("table", table, TABLES)
    weight = _table(model, table).detach()
    rows = weight.shape[0]
    if scores is None:
        scores = embedding_row_scores(model, table, criterion=criterion, data=data, loss_fn=loss_fn,
                                      batches=batches)
    scores = torch.as_tensor(scores)
    if scores.shape != (rows,):
        raise ValueError(f"scores must have shape ({rows},), got {tuple(scores.shape)}")
    keep = _keep(scores, round(amount * rows)).to(weight.device)
    removed = torch.ones(rows, dtype=torch.bool, device=weight.device)
    removed[keep] = False
    fallback = weight[removed].mean(0, keepdim=True) if removed.any() else torch.zeros_like(weight[:1])
    remap = torch.full((rows,), len(keep), dtype=torch.int32, device=weight.device)
    remap[keep] = torch.arange(len(keep), dtype=torch.int32, device=weight.device)
    pruned = copy.deepcopy(model)
    setattr(pruned, table, PrunedEmbedding(torch.cat([weight[keep], fallback]).clone(), remap))
    return pruned
