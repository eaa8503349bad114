"""Structured pruning: remove whole output channels/neurons and return a smaller model.

Channels are grouped by :func:`kdlab.prune.channel_groups` (tied channels of a
residual addition form one group). Every group loses ``round(amount * C)`` of its
``C`` channels, those with the lowest score:

- ``"l1"``: s_j = sum over the group's producers of ||W_p[j]||_1 (Li et al. 2017);
- ``"l2"``: the same with the L2 norm;
- ``"taylor"``: s_j = sum over batches of (sum over the group's parameters of
  channel j of g*w)^2 (Molchanov et al. 2019, group form); needs ``data``.

Tie rule: channels are ranked by a stable descending sort, so among equal scores
the lower index is kept. For a group with one producer, the kept channels are the
ones ``torch.nn.utils.prune.ln_structured(dim=0)`` keeps (whose ``topk`` leaves
ties unspecified).

Removing channel j slices the producers' weight rows and biases, the readers'
weight columns (dim 1) and the BatchNorm entries between them, in a deep copy:
the original model is untouched and the result is an ordinary ``nn.Module`` with
smaller layers (fewer FLOPs, really faster, smaller file).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from kdlab import _validate
from kdlab.prune.graph import channel_groups

CRITERIA = ("l1", "l2", "taylor")


def _group_params(model: nn.Module, group) -> list:
    """Parameters of a group's producers and norms; channel j is entry j of dim 0."""
    modules = dict(model.named_modules())
    return [p for name in group.producers + group.norms
            for p in (modules[name].weight, modules[name].bias) if p is not None]


def channel_scores(model: nn.Module, groups: list, *, criterion: str = "l1", data=None,
                   loss_fn=None, batches: int = 1, batch_size: int = 128) -> list:
    """One score tensor of length ``group.channels`` per group (higher = more important)."""
    _validate.choice("criterion", criterion, CRITERIA)
    modules = dict(model.named_modules())
    if criterion in ("l1", "l2"):
        p = 1 if criterion == "l1" else 2
        return [sum(modules[n].weight.detach().flatten(1).norm(p=p, dim=1) for n in g.producers)
                for g in groups]
    if data is None:
        raise ValueError("data is required for criterion='taylor': it needs batches (x, y) for gradients")
    from kdlab.prune.unstructured import batch_gradients

    params = [_group_params(model, g) for g in groups]
    flat = [p for ps in params for p in ps]
    scores = [torch.zeros(g.channels) for g in groups]
    for batch_grads in batch_gradients(model, data, flat, loss_fn=loss_fn, batches=batches,
                                       batch_size=batch_size):
        grads = iter(batch_grads)
        for k, ps in enumerate(params):
            contribution = sum((next(grads) * p.detach()).reshape(len(p), -1).sum(1) for p in ps)
            scores[k] += contribution.cpu() ** 2
    return scores


def _kept(channels: int, amount: float, round_to: int) -> int:
    """Channels kept of ``channels``: what ``amount`` leaves, rounded to the nearest
    multiple of ``round_to`` (at least ``round_to``, at most ``channels``)."""
    keep = channels - round(amount * channels)
    return min(channels, max(round_to, round_to * round(keep / round_to)))


def select_channels(model: nn.Module, amount: float, example_input, *, criterion: str = "l1",
                    data=None, loss_fn=None, batches: int = 1, round_to: int = 1) -> list:
    """``[(group, kept channel indices ascending), ...]`` for every prunable group.

    Raises ``ValueError`` if ``amount`` would remove every channel of a group."""
    amount = _validate.fraction("amount", amount)
    round_to = _validate.positive_int("round_to", round_to)
    _validate.choice("criterion", criterion, CRITERIA)
    if criterion == "taylor" and data is None:
        raise ValueError("data is required for criterion='taylor': it needs batches (x, y) for gradients")
    groups = channel_groups(model, example_input)
    if not groups:
        raise ValueError(f"model has no prunable channels: {type(model).__name__} (no Conv/Linear layer "
                         "whose outputs feed only sliceable layers)")
    for g in groups:
        if round(amount * g.channels) >= g.channels:
            raise ValueError(f"amount={amount!r} would remove every channel of {g.producers[0]!r} "
                             f"({g.channels} channels); use amount < {(g.channels - 0.5) / g.channels:.4f}")
    scores = channel_scores(model, groups, criterion=criterion, data=data, loss_fn=loss_fn,
                            batches=batches)
    chosen = []
    for g, s in zip(groups, scores):
        keep = _kept(g.channels, amount, round_to)
        order = torch.sort(s, descending=True, stable=True).indices
        chosen.append((g, order[:keep].sort().values))
    return chosen


def _slice_param(module: nn.Module, name: str, dim: int, index: torch.Tensor) -> None:
    old = getattr(module, name)
    if old is None:
        return
    new = old.detach().index_select(dim, index.to(old.device)).clone()
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        setattr(module, name, new)


def structured_prune(model: nn.Module, amount: float, example_input, *, criterion: str = "l1",
                     data=None, loss_fn=None, batches: int = 1, round_to: int = 1) -> nn.Module:
    """A new, physically smaller copy of ``model`` with ``round(amount * C)`` channels
    of every prunable group removed (``amount`` in [0, 1), ``criterion`` ``"l1"``,
    ``"l2"`` or ``"taylor"``; ``data``/``loss_fn``/``batches`` feed ``"taylor"``).

    ``example_input`` is a batch the model accepts (only its shapes matter).
    ``round_to``: keep a multiple of this many channels in every group (vectorised
    CPU kernels and GPU tensor cores prefer multiples of 8 or 16): the multiple
    nearest to what ``amount`` leaves, at least ``round_to`` and at most all of them.

    >>> import torch
    >>> from kdlab import evaluate, models, prune
    >>> cnn = models.create("cnn-teacher", input_shape=(1, 8, 8))
    >>> small = prune.structured_prune(cnn, 0.5, torch.zeros(1, 1, 8, 8))
    >>> small.classifier.in_features, evaluate.count_parameters(small) < evaluate.count_parameters(cnn) / 3
    (32, True)
    """
    chosen = select_channels(model, amount, example_input, criterion=criterion, data=data,
                             loss_fn=loss_fn, batches=batches, round_to=round_to)
    pruned = copy.deepcopy(model)
    modules = dict(pruned.named_modules())
    with torch.no_grad():
        for group, keep in chosen:
            for name in group.producers:
                m = modules[name]
                _slice_param(m, "weight", 0, keep)
                _slice_param(m, "bias", 0, keep)
                if isinstance(m, nn.Linear):
                    m.out_features = len(keep)
                else:
                    m.out_channels = len(keep)
            for name in group.readers:
                m = modules[name]
                _slice_param(m, "weight", 1, keep)
                if isinstance(m, nn.Linear):
                    m.in_features = len(keep)
                else:
                    m.in_channels = len(keep)
            for name in group.norms:
                m = modules[name]
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    _slice_param(m, attr, 0, keep)
                m.num_features = len(keep)
    return pruned
