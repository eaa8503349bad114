"""Structured pruning beyond convolutions: recurrent hidden units, attention heads,
embedding rows. Each pruner returns a new, physically smaller model (a deep copy;
the original is untouched).

A unit is scored by the weights that *read* it (its outgoing weights) or by a
first-order Taylor estimate of the loss change when it is removed:

- GRU hidden unit j of :class:`kdlab.models.GRUClassifier`: column j of the
  recurrent matrix W_hh (all three gates) and of the classifier read h_j.
  ``"l1"``: s_j = ||W_hh[:, j]||_1 + ||W_cls[:, j]||_1. Removing j slices rows
  j, H+j, 2H+j (gates r, z, n) of W_ih, W_hh and both biases, and column j of
  W_hh and of the classifier.
- attention head h of :class:`kdlab.models.MultiHeadSelfAttention`: columns
  h*d:(h+1)*d of the output projection read it (d = head_dim).
  ``"l1"``: s_h = ||W_out[:, head h]||_1. Removing h slices those rows of q, k,
  v and those columns of ``out``; 1/sqrt(d) is unchanged.
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

UNIT_CRITERIA = ("l1", "taylor")
ROW_CRITERIA = ("l2", "frequency", "taylor")
SCOPES = ("global", "layer")
TABLES = ("users", "items")


def _check_model(model, cls):
    if not isinstance(model, cls):
        raise TypeError(f"model must be a kdlab.models.{cls.__name__}, got {type(model).__name__}")


def _taylor(model: nn.Module, data, params: list, reduce, *, loss_fn=None, batches: int = 1,
            batch_size: int = 128) -> torch.Tensor:
    """sum over ``batches`` of reduce([g * w for w in params])^2, in eval mode."""
    from kdlab.prune.unstructured import batch_gradients

    if data is None:
        raise ValueError("data is required for criterion='taylor': it needs batches (x, y) for gradients")
    total = None
    for grads in batch_gradients(model, data, params, loss_fn=loss_fn, batches=batches,
                                 batch_size=batch_size):
        s = reduce([g * w.detach() for g, w in zip(grads, params)]).cpu() ** 2
        total = s if total is None else total + s
    return total


def _keep(scores: torch.Tensor, n_remove: int) -> torch.Tensor:
    """Indices (ascending) of the ``len(scores) - n_remove`` highest scores; among equal
    scores the lower index is kept (stable sort)."""
    order = torch.sort(scores.flatten(), descending=True, stable=True).indices
    return order[: scores.numel() - n_remove].sort().values


# ---------------------------------------------------------------- GRU hidden units

def gru_unit_scores(model: GRUClassifier, *, criterion: str = "l1", data=None, loss_fn=None,
                    batches: int = 1) -> torch.Tensor:
    """Importance of each hidden unit of a :class:`GRUClassifier`, shape ``(hidden_size,)``
    (see the module docstring for the formulas); ``data`` feeds ``"taylor"``."""
    _check_model(model, GRUClassifier)
    _validate.choice("criterion", criterion, UNIT_CRITERIA)
    w_hh, w_cls = model.gru.weight_hh_l0, model.classifier.weight
    if criterion == "l1":
        return (w_hh.detach().abs().sum(0) + w_cls.detach().abs().sum(0)).cpu()
    return _taylor(model, data, [w_hh, w_cls], lambda p: p[0].sum(0) + p[1].sum(0),
                   loss_fn=loss_fn, batches=batches)


def prune_gru_units(model: GRUClassifier, amount: float, *, scores: torch.Tensor | None = None,
                    criterion: str = "l1", data=None, loss_fn=None, batches: int = 1) -> GRUClassifier:
    """A copy of ``model`` with ``round(amount * H)`` of its ``H`` hidden units removed,
    those with the lowest ``scores`` (default :func:`gru_unit_scores` with ``criterion``).
    ``amount`` in [0, 1); at least one unit stays.

    >>> from kdlab import models, prune
    >>> small = prune.prune_gru_units(models.GRUClassifier(hidden_size=64), 0.75)
    >>> small.gru.hidden_size, small.classifier.in_features
    (16, 16)
    """
    _check_model(model, GRUClassifier)
    amount = _validate.fraction("amount", amount)
    hidden = model.gru.hidden_size
    if model.gru.num_layers != 1 or model.gru.bidirectional:
        raise ValueError("prune_gru_units handles a single-layer, one-directional GRU")
    n_remove = round(amount * hidden)
    if n_remove >= hidden:
        raise ValueError(f"amount={amount!r} would remove all {hidden} hidden units; "
                         f"use amount < {(hidden - 0.5) / hidden:.4f}")
    if scores is None:
        scores = gru_unit_scores(model, criterion=criterion, data=data, loss_fn=loss_fn, batches=batches)
    scores = torch.as_tensor(scores)
    if scores.shape != (hidden,):
        raise ValueError(f"scores must have shape ({hidden},), got {tuple(scores.shape)}")
    keep = _keep(scores, n_remove).to(model.gru.weight_hh_l0.device)
    rows = torch.cat([keep, keep + hidden, keep + 2 * hidden])
    pruned = copy.deepcopy(model)
    old = pruned.gru
    new = nn.GRU(old.input_size, len(keep), batch_first=old.batch_first, bias=old.bias)
    new = new.to(device=old.weight_hh_l0.device, dtype=old.weight_hh_l0.dtype)
    with torch.no_grad():
        new.weight_ih_l0.copy_(old.weight_ih_l0[rows])
        new.weight_hh_l0.copy_(old.weight_hh_l0[rows][:, keep])
        if old.bias:
            new.bias_ih_l0.copy_(old.bias_ih_l0[rows])
            new.bias_hh_l0.copy_(old.bias_hh_l0[rows])
        cls = pruned.classifier
        cls.weight = nn.Parameter(cls.weight[:, keep].clone())
        cls.in_features = len(keep)
    pruned.gru = new
    return pruned


# ---------------------------------------------------------------- attention heads

def _attentions(model: nn.Module) -> list:
    if isinstance(model, MultiHeadSelfAttention):
        return [model]
    _check_model(model, TinyTransformer)
    return [block.attn for block in model.blocks]


def head_scores(model: nn.Module, *, criterion: str = "l1", data=None, loss_fn=None,
                batches: int = 1) -> torch.Tensor:
    """Importance of each attention head, shape ``(layers, heads)`` for a
    :class:`TinyTransformer` (``(1, heads)`` for one :class:`MultiHeadSelfAttention`);
    every layer must have the same number of heads. ``data`` feeds ``"taylor"``."""
    attns = _attentions(model)
    _validate.choice("criterion", criterion, UNIT_CRITERIA)
    if len({a.heads for a in attns}) != 1:
        raise ValueError("head_scores needs the same number of heads in every layer; "
                         f"got {[a.heads for a in attns]}")

    def per_head(ws):  # ws: out-projection weights (or products), one per layer
        return torch.stack([w.reshape(w.shape[0], a.heads, a.head_dim).sum((0, 2))
                            for w, a in zip(ws, attns)])

    if criterion == "l1":
        return per_head([a.out.weight.detach().abs() for a in attns]).cpu()
    return _taylor(model, data, [a.out.weight for a in attns], per_head, loss_fn=loss_fn, batches=batches)


def _slice_heads(attn: MultiHeadSelfAttention, keep: torch.Tensor) -> None:
    d = attn.head_dim
    rows = (keep[:, None] * d + torch.arange(d)).flatten().to(attn.out.weight.device)
    with torch.no_grad():
        for lin in (attn.q, attn.k, attn.v):
            lin.weight = nn.Parameter(lin.weight[rows].clone())
            lin.bias = nn.Parameter(lin.bias[rows].clone())
            lin.out_features = len(rows)
        attn.out.weight = nn.Parameter(attn.out.weight[:, rows].clone())
        attn.out.in_features = len(rows)
    attn.heads = len(keep)


def prune_heads(model: nn.Module, amount: float, *, scores: torch.Tensor | None = None,
                scope: str = "global", criterion: str = "l1", data=None, loss_fn=None,
                batches: int = 1) -> nn.Module:
    """A copy of a :class:`TinyTransformer` (or one :class:`MultiHeadSelfAttention`) with
    ``round(amount * n)`` of its ``n`` heads removed, the lowest ``scores`` (default
    :func:`head_scores` with ``criterion``), ranked over all layers (``scope="global"``)
    or within each layer (``"layer"``, ``round(amount * heads)`` per layer). Every layer
    keeps at least its best head, so ``amount`` may be up to 1 with ``"global"``.

    >>> from kdlab import models, prune
    >>> net = models.TinyTransformer(vocab=6, seq_len=12, num_classes=6, heads=4, layers=2)
    >>> [b.attn.heads for b in prune.prune_heads(net, 0.5).blocks]  # doctest: +SKIP
    [2, 2]
    """
    attns = _attentions(model)
    amount = _validate.fraction("amount", amount)
    _validate.choice("scope", scope, SCOPES)
    if scores is None:
        scores = head_scores(model, criterion=criterion, data=data, loss_fn=loss_fn, batches=batches)
    scores = torch.as_tensor(scores, dtype=torch.float64)
    layers, heads = len(attns), attns[0].heads
    if scores.shape != (layers, heads) or any(a.heads != heads for a in attns):
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
    pruned = copy.deepcopy(model)
    for attn, keep in zip(_attentions(pruned), keeps):
        _slice_heads(attn, keep)
    return pruned


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
        return weight.detach().norm(dim=1).cpu()
    if criterion == "taylor":
        return _taylor(model, data, [weight], lambda p: p[0].sum(1), loss_fn=loss_fn, batches=batches)
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
