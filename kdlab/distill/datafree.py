"""Data-free distillation: inputs synthesised from the teacher alone (DeepInversion,
Yin et al. 2020, "Dreaming to distill").

A teacher with BatchNorm remembers the mean and variance of every channel's input over
its training data (``running_mean``, ``running_var``). DeepInversion starts from noise
and optimises a batch ``x`` of inputs so that, with the teacher fixed in eval mode,

``L(x) = CE(f(x), y) + bn_weight * R_BN(x) + tv_weight * R_TV(x) + l2_weight * ||x||^2 / N``

is small, where ``y`` are the classes asked for and

``R_BN(x) = sum_l ||mu_l(x) - running_mean_l||_2 + ||var_l(x) - running_var_l||_2``

over the BatchNorm layers ``l`` (``mu_l``, ``var_l``: the batch mean and biased variance
of each channel of the layer's input, over the batch and the positions), and
``R_TV`` (:func:`total_variation`) penalises differences between neighbouring pixels.
A student is then distilled on the synthetic batch, with the teacher labelling it.
The paper also adds an "adaptive" term (ADI) that seeks inputs where the student and
the teacher disagree; it is not implemented here.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval()
>>> logits, r = bn_statistics_loss(net, torch.randn(8, 3))
>>> tuple(logits.shape), r.item() > 0
((8, 2), True)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab import _validate

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batchnorm_layers(model: nn.Module) -> list:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _NORMS) and m.running_mean is not None]


def bn_statistic_term(features: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor) -> torch.Tensor:
    """One BatchNorm layer's term of ``R_BN``: ``||mu - running_mean||_2 + ||var - running_var||_2``,
    ``mu`` and ``var`` the per-channel mean and biased variance of the layer's input ``features``
    ``(N, C)`` or ``(N, C, ...)`` over every axis but the channels (dim 1), as BatchNorm computes them."""
    dims = [0] + list(range(2, features.ndim))
    return (torch.linalg.vector_norm(features.mean(dims) - running_mean)
            + torch.linalg.vector_norm(features.var(dims, unbiased=False) - running_var))


def bn_statistics_loss(model: nn.Module, x: torch.Tensor) -> tuple:
    """``(model(x), R_BN(x))``: the logits, and the distance between the batch statistics
    of every BatchNorm layer's input and the layer's running statistics (module
    docstring). Run ``model`` in eval mode, so the running statistics stay as they are."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _validate.float_tensor("x", x, "inputs")
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("model has no BatchNorm layer with running statistics: there is nothing to match")
    terms = []

    def hook(module, inputs, output):
        terms.append(bn_statistic_term(inputs[0], module.running_mean, module.running_var))

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, torch.stack(terms).sum()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """``R_TV``: the l2 norms of the differences between vertical and between horizontal
    neighbours of images ``(N, C, H, W)``, summed, divided by ``N``."""
    _validate.float_tensor("x", x, "images")
    if x.ndim != 4:
        raise ValueError(f"x must be images of shape (N, C, H, W), got {tuple(x.shape)}")
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]
    return (torch.linalg.vector_norm(dh) + torch.linalg.vector_norm(dw)) / len(x)


def deep_inversion(teacher: nn.Module, targets, *, input_shape, steps: int = 200, lr: float = 0.1,
                   bn_weight: float = 1.0, tv_weight: float = 0.0, l2_weight: float = 0.0,
                   bounds: tuple | None = None, seed: int = 0) -> torch.Tensor:
    """Synthesise one input per entry of ``targets`` (class indices) from ``teacher`` by
    ``steps`` Adam steps on ``L(x)`` (module docstring), starting from Gaussian noise
    drawn with ``seed``. ``input_shape`` is one example's shape, e.g. ``(1, 8, 8)``;
    ``bounds=(low, high)`` clamps the inputs after every step (the data's range). The
    teacher is put in eval mode and left unchanged (its mode is restored). Returns the
    inputs ``(len(targets), *input_shape)``, detached."""
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be an nn.Module, got {type(teacher).__name__}")
    y = _validate.class_indices("targets", targets)
    if len(y) == 0:
        raise ValueError("targets must name at least one class to synthesise")
    shape = _validate.shape("input_shape", input_shape)
    steps = _validate.positive_int("steps", steps)
    lr = _validate.positive_float("lr", lr)
    bn_weight = _validate.positive_float("bn_weight", bn_weight, allow_zero=True)
    tv_weight = _validate.positive_float("tv_weight", tv_weight, allow_zero=True)
    l2_weight = _validate.positive_float("l2_weight", l2_weight, allow_zero=True)
    if tv_weight and len(shape) != 3:
        raise ValueError(f"tv_weight needs image inputs (C, H, W), got input_shape {shape}")
    if bounds is not None:
        if len(bounds) != 2 or not bounds[0] < bounds[1]:
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    if bn_weight and not batchnorm_layers(teacher):
        raise ValueError("teacher has no BatchNorm layer, so bn_weight has nothing to match; "
                         "pass bn_weight=0 for class-only inversion")
    device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((len(y), *shape), generator=generator).to(device).requires_grad_(True)
    y = y.to(device)
    was_training = teacher.training
    frozen = [p for p in teacher.parameters() if p.requires_grad]
    teacher.eval()
    for p in frozen:
        p.requires_grad_(False)
    try:
        _invert(teacher, x, y, steps, lr, bn_weight, tv_weight, l2_weight, bounds)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        teacher.train(was_training)
    return x.detach()


def _invert(teacher, x, y, steps, lr, bn_weight, tv_weight, l2_weight, bounds) -> None:
    """Adam on ``L(x)`` in place of ``x``."""
    with torch.enable_grad():  # also under a caller's torch.no_grad()
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            if bn_weight:
                logits, r_bn = bn_statistics_loss(teacher, x)
            else:
                logits, r_bn = teacher(x), x.new_zeros(())
            loss = F.cross_entropy(logits, y) + bn_weight * r_bn
            if tv_weight:
                loss = loss + tv_weight * total_variation(x)
            if l2_weight:
                loss = loss + l2_weight * x.pow(2).sum() / len(x)
            loss.backward()
            opt.step()
            if bounds is not None:
                with torch.no_grad():
                    x.clamp_(bounds[0], bounds[1])
