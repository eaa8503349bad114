"""Low-rank factorisation: a layer's weight replaced by the product of two thinner ones.

A Linear weight ``W`` (out x in) has the singular value decomposition
``W = U diag(s) V^T``. Keeping the ``r`` largest singular values gives the best rank-``r``
approximation in the Frobenius (and spectral) norm (Eckart-Young), with error
``||W - W_r||_F = sqrt(sum_{i > r} s_i^2)``. ``W_r = B A`` with ``A = diag(sqrt s_r) V_r^T``
(r x in) and ``B = U_r diag(sqrt s_r)`` (out x r): one Linear of ``in -> r`` without bias,
then one of ``r -> out`` with the original bias. Parameters ``r (in + out)`` instead of
``in * out``, so it saves only when ``r < in * out / (in + out)``.

A convolution's kernel ``(out, in, kh, kw)`` is read as the matrix ``(out, in * kh * kw)``:
the first factor is a convolution with the original kernel size, stride, padding and
dilation into ``r`` channels, the second a 1x1 convolution to ``out`` channels (the
"channel decomposition" of Jaderberg et al. 2014 / Zhang et al. 2015).

``rank`` fixes ``r``; ``energy`` picks the smallest ``r`` whose singular values keep that
share of ``sum s_i^2`` (the squared Frobenius norm).

>>> import torch
>>> from kdlab import lowrank, models
>>> model = models.create("lenet-300-100")
>>> small = lowrank.factorize(model, rank=16)
>>> small.layers[0]
Sequential(
  (0): Linear(in_features=64, out_features=16, bias=False)
  (1): Linear(in_features=16, out_features=300, bias=True)
)
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from kdlab import _validate
from kdlab.prune.masks import prunable_weights


def _energy(energy) -> float:
    energy = _validate.fraction("energy", energy)
    if energy == 0:
        raise ValueError("energy must be in (0, 1], got 0")
    return energy


def rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """The smallest ``r`` with ``sum_{i <= r} s_i^2 >= energy * sum_i s_i^2`` (``s`` sorted
    descending, as ``torch.linalg.svdvals`` returns them)."""
    energy = _energy(energy)
    power = singular_values.double() ** 2
    share = power.cumsum(0) / power.sum().clamp(min=1e-300)
    return min(int((share < energy - 1e-12).sum()) + 1, len(singular_values))


def _matrix(layer: nn.Module) -> torch.Tensor:
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


def _factors(layer: nn.Module, rank, energy) -> tuple:
    """``(A, B)`` with ``B @ A`` the best rank-r approximation of the layer's weight matrix."""
    w = _matrix(layer).double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    r = rank_for_energy(s, energy) if rank is None else min(rank, len(s))
    root = s[:r].sqrt()
    return (root[:, None] * vh[:r]).to(layer.weight.dtype), (u[:, :r] * root).to(layer.weight.dtype)


def _check_choice(rank, energy) -> None:
    if (rank is None) == (energy is None):
        raise ValueError(f"give exactly one of rank (an integer >= 1) and energy (a fraction in (0, 1]); "
                         f"got rank={rank!r}, energy={energy!r}")
    if rank is not None:
        _validate.positive_int("rank", rank)
    else:
        _energy(energy)


def factorize_layer(layer: nn.Module, *, rank: int | None = None, energy: float | None = None) -> nn.Sequential:
    """``layer`` (an ``nn.Linear`` or an ``nn.Conv1d/2d/3d`` with ``groups=1``) as two layers
    whose product is its best rank-``r`` approximation; ``r`` is ``rank`` (capped at the
    full rank) or chosen by ``energy``. The original layer is not changed."""
    _check_choice(rank, energy)
    if isinstance(layer, nn.Linear):
        a, b = _factors(layer, rank, energy)
        first = nn.Linear(layer.in_features, a.shape[0], bias=False)
        second = nn.Linear(a.shape[0], layer.out_features, bias=layer.bias is not None)
    elif isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        if layer.groups != 1:
            raise ValueError(f"only convolutions with groups=1 can be factorised this way, got groups={layer.groups}")
        if layer.padding_mode != "zeros":
            raise ValueError(f"only padding_mode='zeros' is supported, got {layer.padding_mode!r}")
        a, b = _factors(layer, rank, energy)
        conv = type(layer)
        first = conv(layer.in_channels, a.shape[0], layer.kernel_size, stride=layer.stride, padding=layer.padding,
                     dilation=layer.dilation, bias=False)
        second = conv(a.shape[0], layer.out_channels, 1, bias=layer.bias is not None)
        a = a.reshape(first.weight.shape)
        b = b.reshape(second.weight.shape)
    else:
        raise TypeError(f"layer must be an nn.Linear or an nn.Conv1d/2d/3d, got {type(layer).__name__}")
    with torch.no_grad():
        first.weight.copy_(a)
        second.weight.copy_(b)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second).to(layer.weight.device).train(layer.training)


def factorize(model: nn.Module, *, rank: int | None = None, energy: float | None = None, layers=None,
              only_if_smaller: bool = True) -> nn.Module:
    """A copy of ``model`` whose Linear/conv layers (or ``layers``: names or modules) are
    replaced by :func:`factorize_layer` at ``rank`` or ``energy``. With ``only_if_smaller``
    a layer is kept as it is where the two factors would hold as many parameters or more
    (``r (in + out) >= in * out`` for a Linear). ``model`` is not changed."""
    _check_choice(rank, energy)
    if not isinstance(only_if_smaller, bool):
        raise TypeError(f"only_if_smaller must be True or False, got {only_if_smaller!r}")
    names = [n.removesuffix(".weight") for n in prunable_weights(model, layers)]
    out = copy.deepcopy(model)
    for name in names:
        layer = out.get_submodule(name)
        if getattr(layer, "groups", 1) != 1:
            if layers is None:
                continue  # a depthwise or grouped conv has no single matrix to factorise
            raise ValueError(f"layer {name!r} is a convolution with groups={layer.groups}; only groups=1 "
                             "can be factorised")
        new = factorize_layer(layer, rank=rank, energy=energy)
        if only_if_smaller and sum(p.numel() for p in new.parameters()) >= sum(p.numel() for p in layer.parameters()):
            continue
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, child, new)
    return out


__all__ = ["factorize", "factorize_layer", "rank_for_energy"]
