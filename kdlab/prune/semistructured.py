"""N:M semi-structured sparsity: in every run of M consecutive weights along a layer's
input dimension, keep the N that score highest.

2:4 is the pattern NVIDIA's sparse tensor cores (Ampere and later) execute: exactly half
of the weights are zero, in a layout regular enough that the hardware stores the kept
values with 2-bit positions and skips the multiplies by zero, for up to about 2x the
throughput of the dense matrix product. A CPU's dense kernels see only a dense tensor with
zeros in it, so the pattern alone changes neither its speed nor its size.

The runs follow NVIDIA's ASP library: for a Linear weight ``(out, in)`` they go along
``in``; for a convolution weight ``(out, in/groups, kh, kw)`` along the input channels
at each kernel position (the kernel read as ``(out, kh, kw, in/groups)``), so the input
width must be a multiple of M. The masks are ordinary :class:`~kdlab.prune.PruningMasks`:
``masks.callback()`` keeps them through fine-tuning.

>>> from kdlab import models, prune
>>> model = models.create("lenet-300-100")
>>> masks = prune.nm_prune(model, 2, 4)
>>> prune.sparsity(model)["global"], prune.follows_nm(model.layers[0].weight, 2, 4)
(0.5, True)
"""
from __future__ import annotations

import torch
from torch import nn

from kdlab import _validate
from kdlab.prune.importance import Importance, Magnitude
from kdlab.prune.masks import PruningMasks, prunable_weights


def _runs(t: torch.Tensor, m: int) -> torch.Tensor:
    """``t`` (a Linear or conv weight, or its scores) as ``(..., runs, m)``: runs of ``m``
    along the input dimension."""
    if t.ndim > 2:  # (out, in, *kernel) -> (out, *kernel, in)
        t = t.movedim(1, -1)
    return t.reshape(*t.shape[:-1], t.shape[-1] // m, m)


def _width(t: torch.Tensor) -> int:
    """The input dimension the runs go along: dimension 1 of a conv weight, the last of a Linear's."""
    return t.shape[1] if t.ndim > 2 else t.shape[-1]


def _unruns(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_runs` for a mask of ``like``'s layout."""
    if like.ndim > 2:
        moved = like.movedim(1, -1)
        return mask.reshape(moved.shape).movedim(-1, 1)
    return mask.reshape(like.shape)


def _check_nm(n, m) -> tuple:
    n, m = _validate.positive_int("n", n), _validate.positive_int("m", m)
    if n > m:
        raise ValueError(f"n must be at most m (keep n of every m weights), got n={n}, m={m}")
    return n, m


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """A bool mask of ``scores``' shape that keeps the ``n`` highest of every ``m``
    consecutive entries along the input dimension (dimension 1 of a conv weight, the last
    of a Linear weight); ties go to the lower index.

    >>> import torch
    >>> nm_mask(torch.tensor([[0.1, -0.5, 0.3, 0.2, 4.0, 3.0, 2.0, 1.0]]).abs(), 2, 4).int()
    tensor([[0, 1, 1, 0, 1, 1, 0, 0]], dtype=torch.int32)
    """
    n, m = _check_nm(n, m)
    if not isinstance(scores, torch.Tensor) or scores.ndim < 2:
        raise ValueError(f"scores must be a tensor of a Linear or conv weight's shape (2-D or more), got "
                         f"{tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__}")
    width = _width(scores)
    if width % m:
        raise ValueError(f"the input dimension ({width}) must be a multiple of m={m}")
    runs = _runs(scores.detach().float(), m)
    order = torch.sort(runs, dim=-1, descending=True, stable=True).indices[..., :n]
    mask = torch.zeros_like(runs, dtype=torch.bool).scatter_(-1, order, True)
    return _unruns(mask, scores)


def follows_nm(weight: torch.Tensor, n: int, m: int) -> bool:
    """Whether every run of ``m`` weights along the input dimension holds at most ``n``
    non-zeros (the layout :func:`nm_mask` makes)."""
    n, m = _check_nm(n, m)
    if weight.ndim < 2 or _width(weight) % m:
        return False
    return bool(((_runs(weight.detach(), m) != 0).sum(-1) <= n).all())


def nm_prune(model: nn.Module, n: int = 2, m: int = 4, *, criterion: Importance | None = None,
             layers=None) -> PruningMasks:
    """Prune every Linear/conv layer (or ``layers``) of ``model`` in place to the N:M pattern:
    of every ``m`` consecutive weights along the input dimension keep the ``n`` with the
    highest ``criterion`` score (default :class:`~kdlab.prune.Magnitude`, ``|w|``); a
    sparsity of exactly ``1 - n/m`` in each layer. Returns the masks.

    Raises ``ValueError`` naming the layer whose input width is not a multiple of ``m``
    (leave it out with ``layers=``), before any weight is changed.
    """
    n, m = _check_nm(n, m)
    criterion = Magnitude() if criterion is None else criterion
    if not isinstance(criterion, Importance):
        raise TypeError(f"criterion must be a kdlab.prune.Importance (e.g. prune.Magnitude()), "
                        f"got {type(criterion).__name__}")
    weights = prunable_weights(model, layers)
    for name, w in weights.items():
        width = _width(w)
        if width % m:
            raise ValueError(f"layer {name.removesuffix('.weight')!r} has an input width of {width}, not a multiple "
                             f"of m={m}; leave it out with layers=[...] or choose another m")
    scores = criterion.weight_scores(model, weights)
    return PruningMasks(model, {name: nm_mask(scores[name], n, m) for name in weights}).apply()


__all__ = ["nm_mask", "nm_prune", "follows_nm"]
