"""Unstructured (weight-by-weight) pruning: score every prunable weight, remove
the lowest-scoring ones, keep the rest.

Criteria (higher score = more important), the objects of :mod:`kdlab.prune.importance`:

- magnitude  |w|                      (Han et al. 2015)
- random     u ~ U(0, 1)              (the baseline every criterion must beat; :func:`shuffled_prune`
             keeps another criterion's per-layer sparsity)
- taylor     sum over batches (g*w)^2 (Molchanov et al. 2019, per weight)
- snip       |g*w| / sum_k |g_k*w_k|  (Lee et al. 2019, on the summed gradient)
- grasp      w * (H g)                (Wang et al. 2020; the paper's -S, see :class:`GraSP`)
- synflow    w * dR/dw, R = 1^T f(1) on |parameters|, no data (Tanaka et al. 2020),
             pruned in rounds with ``iterations`` (:func:`gradient_prune`)
- your own:  any :class:`~kdlab.prune.Importance` with ``weight_scores``
  (:func:`unstructured_prune`)

``amount`` is always the fraction of the prunable weights removed **in total**
(not of what remains, unlike ``torch.nn.utils.prune``): ``round(amount * n)``
weights of the ``n`` in scope get a False mask. ``scope="global"`` ranks all
prunable weights together (one threshold, found with ``torch.kthvalue``);
``scope="layer"`` removes ``round(amount * n_l)`` from every layer.

Tie rule: weights whose score equals the k-th smallest are pruned in flat order
(earlier index first) until exactly k are pruned. ``torch.nn.utils.prune``'s
``topk`` leaves ties unspecified; with distinct scores both choose the same set.
"""
from __future__ import annotations

import torch
from torch import nn

from kdlab import _validate
from kdlab.prune.importance import (GraSP, Importance, Magnitude, Random, Snip, SynFlow, Taylor,  # noqa: F401
                                    batch_gradients)
from kdlab.prune.masks import PruningMasks, prunable_weights

SCOPES = ("global", "layer")
GRADIENT_CRITERIA = ("taylor", "snip", "grasp", "synflow")
AT_INIT = ("grasp", "synflow")  # criteria meant for pruning at initialisation


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool tensor, True at the ``k`` smallest entries of a flat ``scores`` (ties by index)."""
    pruned = torch.zeros_like(scores, dtype=torch.bool)
    if k == 0:
        return pruned
    threshold = torch.kthvalue(scores, k).values
    pruned = scores < threshold
    ties = (scores == threshold).nonzero().flatten()[: k - int(pruned.sum())]
    pruned[ties] = True
    return pruned


def _check_previous(model: nn.Module, previous) -> None:
    """``previous`` must be None or the masks of ``model`` itself."""
    if previous is None:
        return
    if not isinstance(previous, PruningMasks):
        raise TypeError(f"previous must be the PruningMasks of an earlier pruning of this model or None, "
                        f"got {type(previous).__name__}")
    if previous.model is not model:
        raise ValueError(
            f"previous holds the masks of another model (a {type(previous.model).__name__} at "
            f"{id(previous.model):#x}), not of this {type(model).__name__} at {id(model):#x}; for a copy "
            "of that model pass previous=masks.rebind(copy)")


def masks_from_scores(model: nn.Module, scores: dict, amount: float, *, scope: str = "global",
                      previous: PruningMasks | None = None) -> PruningMasks:
    """Prune the ``round(amount * n)`` lowest ``scores`` (``{parameter name: tensor}``)
    globally or per layer, zero them in ``model`` and return the masks.

    Entries already pruned in ``previous`` are ranked lowest, so a growing
    ``amount`` (a schedule) never revives a pruned weight."""
    amount = _validate.fraction("amount", amount)
    _validate.choice("scope", scope, SCOPES)
    _check_previous(model, previous)
    flat = {}
    for name, s in scores.items():
        s = s.detach().flatten()
        s = s if s.dtype == torch.float64 else s.float()  # SynFlow's float64 scores may not fit a float32
        if previous is not None and name in previous:
            s = s.masked_fill(~previous[name].flatten(), float("-inf"))
        flat[name] = s
    if scope == "global":
        sizes = [s.numel() for s in flat.values()]
        common = torch.float64 if any(f.dtype == torch.float64 for f in flat.values()) else torch.float32
        pruned = _lowest(torch.cat([f.to(common) for f in flat.values()]), round(amount * sum(sizes))).split(sizes)
        pruned = dict(zip(flat, pruned))
    else:
        pruned = {n: _lowest(s, round(amount * s.numel())) for n, s in flat.items()}
    masks = {n: ~p.view(scores[n].shape) for n, p in pruned.items()}
    return PruningMasks(model, masks).apply()


def unstructured_prune(model: nn.Module, amount: float, importance: Importance, *, scope: str = "global",
                       layers=None, previous: PruningMasks | None = None) -> PruningMasks:
    """Remove the fraction ``amount`` in [0, 1] of the prunable weights with the lowest
    ``importance.weight_scores`` (any :class:`~kdlab.prune.Importance`: ``Magnitude()``,
    ``Random(seed)``, ``Taylor(data)``, ``Snip(data)`` or your own), over all layers
    (``scope="global"``) or in each layer (``"layer"``); ``layers`` restricts pruning to
    some layers (names or modules).

    >>> from kdlab import data, models, prune
    >>> model = models.create("mlp-student")
    >>> masks = prune.unstructured_prune(model, 0.5, prune.Taylor(data.load_digits(), batches=2))
    >>> round(masks.sparsity, 2)
    0.5
    """
    _validate.fraction("amount", amount)
    _validate.choice("scope", scope, SCOPES)
    if not isinstance(importance, Importance):
        raise TypeError(f"importance must be a kdlab.prune.Importance such as prune.Magnitude(), "
                        f"got {type(importance).__name__}")
    weights = prunable_weights(model, layers)
    return masks_from_scores(model, importance.weight_scores(model, weights), amount, scope=scope,
                             previous=previous)


def magnitude_prune(model: nn.Module, amount: float, *, scope: str = "global", layers=None,
                    previous: PruningMasks | None = None) -> PruningMasks:
    """Remove the fraction ``amount`` in [0, 1] of the prunable weights with the
    smallest |w|, over all layers at once (``scope="global"``) or in each layer
    (``"layer"``); ``layers`` restricts pruning to some layers (names or modules).

    >>> from kdlab import models, prune
    >>> model = models.create("lenet-300-100")
    >>> masks = prune.magnitude_prune(model, 0.9)
    >>> round(prune.sparsity(model)["global"], 3)
    0.9
    """
    _validate.fraction("amount", amount)
    _validate.choice("scope", scope, SCOPES)
    weights = prunable_weights(model, layers)
    return masks_from_scores(model, Magnitude().weight_scores(model, weights), amount,
                             scope=scope, previous=previous)


def random_prune(model: nn.Module, amount: float, *, seed: int = 0, scope: str = "global",
                 layers=None, previous: PruningMasks | None = None) -> PruningMasks:
    """Remove a random fraction ``amount`` of the prunable weights (scores drawn
    from U(0, 1) with a generator seeded by ``seed``): the baseline.

    >>> from kdlab import models, prune
    >>> masks = prune.random_prune(models.create("mlp-student"), 0.5, seed=0)
    """
    _validate.fraction("amount", amount)
    seed = _validate.positive_int("seed", seed, allow_zero=True)
    _validate.choice("scope", scope, SCOPES)
    weights = prunable_weights(model, layers)
    return masks_from_scores(model, Random(seed).weight_scores(model, weights), amount, scope=scope,
                             previous=previous)


def shuffled_prune(model: nn.Module, like, *, seed: int = 0) -> PruningMasks:
    """Random pruning with the per-layer sparsity of ``like`` (the masks of any criterion,
    ``{parameter name: bool mask}`` of a model with the same layers): in each layer of
    ``like`` exactly as many weights are removed, chosen at random (U(0, 1) scores from a
    generator seeded with ``seed``). Frankle et al. (2021)'s ablation: if a criterion's
    masks shuffled this way train as well, what the criterion decides is how sparse each
    layer is, not which weights go.

    >>> from kdlab import models, prune
    >>> like = prune.magnitude_prune(models.create("mlp-student"), 0.8, scope="global")
    >>> masks = prune.shuffled_prune(models.create("mlp-student"), like, seed=0)
    >>> [int((~m).sum()) for m in masks.values()] == [int((~m).sum()) for m in like.values()]
    True
    """
    from collections.abc import Mapping

    if not isinstance(like, Mapping):
        raise TypeError(f"like must be the masks of a pruning ({{parameter name: bool mask}}, e.g. a "
                        f"PruningMasks), got {type(like).__name__}")
    seed = _validate.positive_int("seed", seed, allow_zero=True)
    weights = prunable_weights(model)
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for name, mask in like.items():
        if name not in weights or tuple(weights[name].shape) != tuple(mask.shape):
            shapes = {n: tuple(w.shape) for n, w in weights.items()}
            raise ValueError(f"like has a mask {name!r} of shape {tuple(mask.shape)}, which matches no prunable "
                             f"weight of the model; its prunable weights are {shapes}")
        pruned = _lowest(torch.rand(mask.numel(), generator=gen), int((~mask.bool()).sum()))
        masks[name] = ~pruned.view(mask.shape).to(weights[name].device)
    return PruningMasks(model, masks).apply()


def threshold_prune(model: nn.Module, threshold: float, *, layers=None) -> PruningMasks:
    """Remove every prunable weight with |w| < ``threshold`` (>= 0).

    >>> from kdlab import models, prune
    >>> masks = prune.threshold_prune(models.create("mlp-student"), 0.05)
    """
    threshold = _validate.positive_float("threshold", threshold, allow_zero=True)
    weights = prunable_weights(model, layers)
    return PruningMasks(model, {n: w.detach().abs() >= threshold for n, w in weights.items()}).apply()


def std_threshold_prune(model: nn.Module, quality: float, *, layers=None) -> PruningMasks:
    """Han et al.'s rule: in each layer remove |w| < quality * std(W), ``quality`` >= 0.

    For roughly Gaussian weights quality 1 removes about 68% of a layer.

    >>> from kdlab import models, prune
    >>> masks = prune.std_threshold_prune(models.create("lenet-300-100"), 1.0)
    """
    quality = _validate.positive_float("quality", quality, allow_zero=True)
    weights = prunable_weights(model, layers)
    return PruningMasks(model, {n: w.detach().abs() >= quality * w.detach().std()
                                for n, w in weights.items()}).apply()


def _gradient_importance(criterion: str, data, *, loss_fn, batches: int, batch_size: int,
                         input_shape) -> Importance:
    if criterion == "synflow":
        return SynFlow(input_shape=input_shape, data=data)
    if data is None:
        raise ValueError(f"data is required for criterion={criterion!r}: it needs batches (x, y) to compute "
                         "gradients (only 'synflow' works without data)")
    cls = {"taylor": Taylor, "snip": Snip, "grasp": GraSP}[criterion]
    return cls(data, loss_fn=loss_fn, batches=batches, batch_size=batch_size)


def gradient_scores(model: nn.Module, data, *, criterion: str = "taylor", loss_fn=None,
                    batches: int = 1, batch_size: int = 128, layers=None, input_shape=None) -> dict:
    """Per-weight importance from gradients, on ``batches`` batches of ``data``
    (higher = keep):

    - ``"taylor"``: sum over batches of (g_b * w)^2, g_b the batch gradient
      (:class:`~kdlab.prune.Taylor`).
    - ``"snip"``: |g * w| / sum_k |g_k * w_k| with g summed over the batches
      (the normalisation spans all the layers scored; :class:`~kdlab.prune.Snip`).
    - ``"grasp"``: w * (H g), H the Hessian of the loss, g its gradient summed over the
      batches (:class:`~kdlab.prune.GraSP`; the paper's score with its sign flipped).
    - ``"synflow"``: w * dR/dw, R = 1^T f(1) of the network with every parameter replaced
      by its absolute value, in float64; ``data`` may be None (it only gives the input
      shape, else ``input_shape`` or the first Linear layer does; :class:`~kdlab.prune.SynFlow`).

    The model runs in eval mode (no dropout, BatchNorm statistics untouched) and its
    ``.grad`` fields are left alone (gradients come from ``torch.autograd.grad``).
    """
    _validate.choice("criterion", criterion, GRADIENT_CRITERIA)
    importance = _gradient_importance(criterion, data, loss_fn=loss_fn, batches=batches, batch_size=batch_size,
                                      input_shape=input_shape)
    return importance.weight_scores(model, prunable_weights(model, layers))


def gradient_prune(model: nn.Module, amount: float, data, *, loss_fn=None, criterion: str = "taylor",
                   batches: int = 1, batch_size: int = 128, scope: str = "global", layers=None,
                   previous: PruningMasks | None = None, iterations: int | None = None,
                   input_shape=None) -> PruningMasks:
    """Remove the fraction ``amount`` of prunable weights with the lowest
    :func:`gradient_scores` (``criterion`` ``"taylor"``, ``"snip"``, ``"grasp"`` or ``"synflow"``).

    ``data``: a Split (its training part), ``(x, y)`` tensors or a DataLoader (None is
    allowed for ``"synflow"``, which needs no data); ``loss_fn(logits, y)`` defaults to
    cross-entropy.

    ``iterations`` (n): prune in n rounds, re-scoring the surviving weights before each, to the
    sparsity s_k = 1 - (1 - amount)^(k / n) after round k (each round removes the same
    fraction of the survivors; the last reaches ``amount`` exactly). The default is 100 for
    ``"synflow"`` (Tanaka et al. 2020) and 1 (score once) for the others. ``"grasp"`` and
    ``"synflow"`` prune at initialisation, so they take ``amount`` in [0, 1).

    >>> from kdlab import data, models, prune
    >>> split = data.load_digits()
    >>> masks = prune.gradient_prune(models.create("mlp-student"), 0.8, split, criterion="snip")
    >>> masks = prune.gradient_prune(models.create("mlp-student"), 0.98, None, criterion="synflow")
    >>> round(masks.sparsity, 2)
    0.98
    """
    _validate.fraction("amount", amount)
    _validate.choice("criterion", criterion, GRADIENT_CRITERIA)
    _validate.choice("scope", scope, SCOPES)
    if criterion in AT_INIT and amount >= 1:
        raise ValueError(f"amount must be in [0, 1) for criterion={criterion!r}, got {amount!r}: "
                         "removing every weight leaves nothing to train")
    iterations = (100 if criterion == "synflow" else 1) if iterations is None else iterations
    iterations = _validate.positive_int("iterations", iterations)
    _check_previous(model, previous)
    importance = _gradient_importance(criterion, data, loss_fn=loss_fn, batches=batches, batch_size=batch_size,
                                      input_shape=input_shape)
    weights = prunable_weights(model, layers)
    masks = previous
    for k in range(1, iterations + 1):
        target = amount if k == iterations else 1.0 - (1.0 - amount) ** (k / iterations)
        masks = masks_from_scores(model, importance.weight_scores(model, weights), target, scope=scope,
                                  previous=masks)
    return masks
