"""Knowledge distillation: soft targets, KD losses, several teachers, temperature
schedules, and a :class:`Distiller` that trains a student through the one
:func:`kdlab.train.fit` loop.

The vocabulary of Hinton, Vinyals & Dean (2015):

- soft targets ``q_i = exp(z_i / T) / sum_j exp(z_j / T)`` on the teacher's **logits** z;
- the KD loss ``alpha * T^2 * KL(q_teacher || q_student) + (1 - alpha) * CE(z_student, y)``;
  the ``T^2`` keeps the soft gradient's size level as ``T`` changes (it shrinks as ``1/T^2``).

Later ideas live next to it: FitNets hints, attention transfer, decoupled KD
(DKD), averaging several teachers, and annealed temperatures.

>>> import torch
>>> from kdlab.distill import soft_targets, kd_loss
>>> z = torch.tensor([[4.0, 1.0, 0.0]])
>>> soft_targets(z, temperature=4.0).round(decimals=3)
tensor([[0.5430, 0.2570, 0.2000]])
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from kdlab import _validate
from kdlab.data import UNLABELLED, Split, make_loader  # UNLABELLED re-exported: kdlab.distill.UNLABELLED
from kdlab.train import Callback, TrainState, as_loader, fit, make_optimizer

LOSSES = ("kd", "dkd")
MULTI_TEACHER_MODES = ("logits", "probs")
HINT_KINDS = ("hint", "attention")


# --------------------------------------------------------------------------- checks

def _temperature(value, name: str = "temperature") -> float:
    return _validate.positive_float(name, value)


def _logits(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of logits, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def _pair(student_logits, teacher_logits) -> None:
    _logits("student_logits", student_logits)
    _logits("teacher_logits", teacher_logits)
    if student_logits.ndim != 2:
        raise ValueError(f"student_logits must have shape (batch, classes), got {tuple(student_logits.shape)}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits and teacher_logits must have the same shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")


def _targets(targets, logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a tensor of class indices, got {type(targets).__name__}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"targets must hold integer class indices, got dtype {targets.dtype}")
    n, classes = logits.shape
    if targets.shape != (n,):
        raise ValueError(f"targets must have shape ({n},) to match the logits, got {tuple(targets.shape)}")
    if n and (targets.min() < 0 or targets.max() >= classes):
        raise ValueError(f"targets must be class indices in [0, {classes - 1}], got values in "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    return targets


def _weights(name: str, weights, count: int) -> torch.Tensor:
    """Non-negative weights, one per teacher, normalised to sum to 1."""
    if weights is None:
        return torch.full((count,), 1.0 / count)
    if isinstance(weights, torch.Tensor):
        weights = weights.tolist()
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers, one per teacher, got {type(weights).__name__}")
    if len(weights) != count:
        raise ValueError(f"{name} must have one entry per teacher ({count}), got {len(weights)}")
    values = [_validate.positive_float(f"{name}[{i}]", w, allow_zero=True) for i, w in enumerate(weights)]
    if sum(values) == 0:
        raise ValueError(f"{name} must not all be zero, got {list(weights)!r}")
    total = sum(values)
    return torch.tensor([v / total for v in values])


# --------------------------------------------------------------------------- soft targets and KD

def soft_targets(logits: torch.Tensor, temperature: float = 1.0, dim: int = -1) -> torch.Tensor:
    """Soft targets ``softmax(logits / T)`` along ``dim``.

    ``q_i = exp(z_i / T) / sum_j exp(z_j / T)``. ``T = 1`` is the plain softmax,
    ``T -> 0`` approaches one-hot on the largest logit, ``T -> inf`` the uniform
    distribution. ``T`` divides **logits**: ``softmax(p / T)`` applied to
    probabilities ``p`` is a different distribution (nearly uniform for any T >= 1).

    Args:
        logits: a floating-point tensor of logits.
        temperature: ``T``, a finite number > 0.
        dim: the class dimension.

    >>> soft_targets(torch.tensor([2.0, 0.0]), temperature=2.0)
    tensor([0.7311, 0.2689])
    """
    logits = _logits("logits", logits)
    temperature = _temperature(temperature)
    return torch.softmax(logits / temperature, dim=dim)


def _soft_term(student_logits: torch.Tensor, log_q_teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(q_teacher || q_student)`` with both sides as log-probabilities, so
    nothing overflows at |logit| = 1e4."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_q_teacher, reduction="batchmean", log_target=True)
    return temperature ** 2 * kl


def _kd_from_log_targets(student_logits, log_q_teacher, targets, temperature, alpha,
                         partly_labelled: bool = False) -> torch.Tensor:
    soft = _soft_term(student_logits, log_q_teacher, temperature)
    if targets is None:
        return soft
    if partly_labelled:
        # UNLABELLED examples are left out of the hard term; a batch without labels gets none.
        labelled = (targets != UNLABELLED).sum().clamp(min=1)
        hard = F.cross_entropy(student_logits, targets, ignore_index=UNLABELLED, reduction="sum") / labelled
    else:
        hard = F.cross_entropy(student_logits, targets)
    return torch.add(alpha * soft, hard, alpha=1.0 - alpha)


class _CachedKD:
    """Labelled KD against cached teacher outputs: a lookup and a few calls per step.

    ``alpha * T^2 * KL(q || softmax(z / T)) + (1 - alpha) * CE(z, y)`` is a weighted
    sum of log-softmaxes over three rows per example, ``z / T``, ``z`` and ``0``:

    1. ``log softmax(z / T)`` weighted by ``alpha * T^2 * q``: the soft term as a
       cross-entropy;
    2. ``log softmax(z)`` weighted by ``(1 - alpha) * onehot(y)``: the hard term;
    3. ``log softmax(0) = -log C`` in every class, weighted so that the row adds
       ``alpha * T^2 * sum(q log q)``, minus the teacher's entropy, which turns the
       cross-entropy of row 1 into the KL divergence.

    The weights belong to the examples and stay fixed for an epoch, so they are
    built once per epoch and the loader fetches each batch's rows in place of its
    labels. A step makes the rows with one product ``z @ spread``, takes one
    log-softmax and one dot product with the batch's weights.
    For a small student, whose step is mostly fixed per-call costs, this matters:
    the composed loss runs a dozen calls forward and as many backward. The weights
    are pre-divided by ``-batch_size``; a smaller last batch is rescaled. Equal to
    :func:`kd_loss` in value and gradient (tests check both).
    """

    MAX_SPREAD_CLASSES = 256  # above this the (C, 3C) spread matrix costs more than broadcasting

    def __init__(self, log_q: torch.Tensor, targets: torch.Tensor, temperature: float, alpha: float,
                 batch_size: int):
        n, c = log_q.shape
        q = log_q.exp()
        soft = (alpha * temperature ** 2) * q
        hard = F.one_hot(targets, c).to(q.dtype) * (1.0 - alpha)
        # row 3: every class weighted w with C * w * (-log C) = -alpha * T^2 * sum(q log q)
        neg_entropy = (q * log_q).sum(1, keepdim=True)
        const = (alpha * temperature ** 2 / (c * math.log(c))) * neg_entropy if c > 1 else 0 * neg_entropy
        weights = torch.stack((soft, hard, const.expand(n, c)), dim=2).view(n, 3 * c)
        self.weights = weights * (-1.0 / batch_size)
        self.scale = torch.tensor([1.0 / temperature, 1.0, 0.0], dtype=q.dtype, device=q.device)
        self.spread = (torch.kron(torch.eye(c, dtype=q.dtype, device=q.device), self.scale.view(1, 3))
                       if c <= self.MAX_SPREAD_CLASSES else None)
        self.batch_size = batch_size

    def loss(self, student_logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The loss of a batch, given its rows of :attr:`weights`."""
        n = len(student_logits)
        if self.spread is not None:
            rows = torch.mm(student_logits, self.spread).view(n, -1, 3)
        else:
            rows = student_logits.unsqueeze(2) * self.scale
        loss = torch.vdot(rows.log_softmax(1).view(-1), weights.view(-1))
        return loss if n == self.batch_size else loss * (self.batch_size / n)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None = None,
            *, temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Vanilla knowledge-distillation loss (Hinton et al. 2015).

    ``L = alpha * T^2 * KL(q_t || q_s) + (1 - alpha) * CE(z_s, y)`` with
    ``q = softmax(z / T)`` and ``KL(q_t || q_s) = 1/N sum_n sum_i q_t log(q_t / q_s)``
    (``reduction="batchmean"``: divided by the batch size, not by batch x classes).
    With ``targets=None`` the result is the soft term ``T^2 * KL`` alone (``alpha``
    is then not used). Computed from log-softmax, so it stays finite for |logits| = 1e4.

    Args:
        student_logits, teacher_logits: floating tensors of the same shape ``(N, C)``.
        targets: ``None`` or class indices of shape ``(N,)`` in ``[0, C - 1]``.
        temperature: ``T``, finite and > 0.
        alpha: weight of the soft term, in ``[0, 1]``.

    >>> s, t, y = torch.zeros(2, 3), torch.tensor([[2.0, 0, 0], [0, 2.0, 0]]), torch.tensor([0, 1])
    >>> round(kd_loss(s, t, y, temperature=2.0, alpha=0.5).item(), 4)
    0.7959
    """
    _pair(student_logits, teacher_logits)
    temperature = _temperature(temperature)
    alpha = _validate.fraction("alpha", alpha)
    if targets is not None:
        _targets(targets, student_logits)
    log_q = F.log_softmax(teacher_logits / temperature, dim=1)
    return _kd_from_log_targets(student_logits, log_q, targets, temperature, alpha)


class DKDTerms(NamedTuple):
    """Per-example parts of the KD divergence at one temperature (no ``T^2``)."""

    tckd: torch.Tensor             # KL between the binary (target, rest) distributions
    nckd: torch.Tensor             # KL between the distributions over the non-target classes
    teacher_target_prob: torch.Tensor  # p_t of the teacher at temperature T


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
              temperature: float = 4.0) -> DKDTerms:
    """Split ``KL(q_t || q_s)`` per example into target-class and non-target parts
    (Zhao et al. 2022): ``KL = TCKD + (1 - p_t) * NCKD``, where ``p_t`` is the
    teacher's probability of the true class at temperature ``T``.

    TCKD compares ``b = (p_target, 1 - p_target)``; NCKD compares the softmax over
    the non-target logits only. Arguments as in :func:`dkd_loss`.
    """
    _pair(student_logits, teacher_logits)
    temperature = _temperature(temperature)
    _targets(targets, student_logits)
    n, classes = student_logits.shape
    if classes < 2:
        raise ValueError(f"decoupled KD needs at least 2 classes, got logits of shape {(n, classes)}")
    others = ~F.one_hot(targets, classes).bool()

    def parts(z):
        z = z / temperature
        log_p = F.log_softmax(z, dim=1)
        log_pt = log_p.gather(1, targets[:, None]).squeeze(1)
        rest = z[others].view(n, classes - 1)
        log_rest_mass = torch.logsumexp(rest, 1) - torch.logsumexp(z, 1)  # log(1 - p_t), stable
        return log_pt, log_rest_mass, F.log_softmax(rest, dim=1)

    s_pt, s_rest, s_hat = parts(student_logits)
    t_pt, t_rest, t_hat = parts(teacher_logits)
    tckd = t_pt.exp() * (t_pt - s_pt) + t_rest.exp() * (t_rest - s_rest)
    nckd = (t_hat.exp() * (t_hat - s_hat)).sum(1)
    return DKDTerms(tckd, nckd, t_pt.exp())


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
             alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0) -> torch.Tensor:
    """Decoupled KD (Zhao et al. 2022): ``T^2 * mean_n(alpha * TCKD + beta * NCKD)``.

    Plain KD weighs NCKD by ``(1 - p_t)``, which is small exactly where the teacher is
    confident; DKD gives it a free weight ``beta``. The paper adds this to the
    cross-entropy with ``alpha = 1``, ``beta = 8``, ``T = 4``.

    Args:
        student_logits, teacher_logits: ``(N, C)`` tensors of the same shape, ``C >= 2``.
        targets: class indices of shape ``(N,)`` (DKD needs the true class).
        alpha, beta: weights >= 0 of TCKD and NCKD.
        temperature: ``T``, finite and > 0.

    >>> s, t, y = torch.zeros(2, 3), torch.tensor([[2.0, 0, 0], [0, 2.0, 0]]), torch.tensor([0, 1])
    >>> round(dkd_loss(s, t, y, temperature=1.0).item(), 4)
    0.433
    """
    alpha = _validate.positive_float("alpha", alpha, allow_zero=True)
    beta = _validate.positive_float("beta", beta, allow_zero=True)
    temperature = _temperature(temperature)
    terms = dkd_terms(student_logits, teacher_logits, targets, temperature=temperature)
    return temperature ** 2 * (alpha * terms.tckd + beta * terms.nckd).mean()


# --------------------------------------------------------------------------- features

def make_regressor(student_features: torch.Tensor, teacher_features: torch.Tensor) -> nn.Module:
    """The FitNets regressor ``r`` mapping student features to the teacher's shape:
    ``nn.Identity`` when the shapes already agree, ``nn.Linear`` for ``(N, C)``
    features, a 1x1 ``nn.Conv2d`` for ``(N, C, H, W)`` maps of the same ``H x W``."""
    s, t = student_features.shape, teacher_features.shape
    if s == t:
        return nn.Identity()
    if len(s) == 2 and len(t) == 2 and s[0] == t[0]:
        return nn.Linear(s[1], t[1])
    if len(s) == 4 and len(t) == 4 and s[0] == t[0] and s[2:] == t[2:]:
        return nn.Conv2d(s[1], t[1], kernel_size=1)
    raise ValueError(f"cannot map student features of shape {tuple(s)} to teacher features of shape "
                     f"{tuple(t)}: need (N, C) features or (N, C, H, W) maps with the same N (and H, W)")


def hint_loss(student_features: torch.Tensor, teacher_features: torch.Tensor,
              regressor: nn.Module | None = None) -> torch.Tensor:
    """FitNets hint loss (Romero et al. 2015): ``1/N sum_n 1/2 ||u_n - r(v_n)||^2``
    for the teacher's hint ``u`` and the student's guided features ``v``.

    Args:
        student_features: ``v``, e.g. ``(N, C_s)`` or ``(N, C_s, H, W)``.
        teacher_features: ``u``, the same batch size.
        regressor: ``r``; needed when the shapes differ (see :func:`make_regressor`,
            and train its parameters with the student's).

    >>> round(hint_loss(torch.ones(2, 3), torch.zeros(2, 3)).item(), 4)
    1.5
    """
    _logits("student_features", student_features)
    _logits("teacher_features", teacher_features)
    if regressor is not None:
        student_features = regressor(student_features)
    if student_features.shape != teacher_features.shape:
        raise ValueError(f"student features {tuple(student_features.shape)} and teacher features "
                         f"{tuple(teacher_features.shape)} differ in shape: pass a regressor, "
                         f"e.g. kdlab.distill.make_regressor(student_features, teacher_features)")
    diff = (student_features - teacher_features).flatten(1)
    return 0.5 * diff.pow(2).sum(1).mean()


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention of a ``(N, C, H, W)`` map: ``Q = sum_c |A_c|^p``, flattened
    to ``(N, H*W)`` and l2-normalised per example (Zagoruyko & Komodakis 2017)."""
    _logits("features", features)
    if features.ndim < 3:
        raise ValueError(f"features must have shape (N, C, H, W) (or (N, C, L)), got {tuple(features.shape)}")
    p = _validate.positive_float("p", p)
    return F.normalize(features.abs().pow(p).sum(1).flatten(1), dim=1)


def attention_transfer_loss(student_features: torch.Tensor, teacher_features: torch.Tensor, *,
                            beta: float = 1.0, p: float = 2.0) -> torch.Tensor:
    """Attention transfer: ``beta / 2 * 1/N sum_n ||Q_s/||Q_s|| - Q_t/||Q_t|| ||_2``
    with ``Q`` from :func:`attention_map`. Channel counts may differ; the spatial
    sizes must agree.

    >>> a = torch.rand(2, 4, 3, 3)
    >>> attention_transfer_loss(a, 2 * a[:, :2]).item() >= 0
    True
    """
    beta = _validate.positive_float("beta", beta, allow_zero=True)
    q_s, q_t = attention_map(student_features, p), attention_map(teacher_features, p)
    if q_s.shape != q_t.shape:
        raise ValueError(f"student features {tuple(student_features.shape)} and teacher features "
                         f"{tuple(teacher_features.shape)} need the same batch and spatial size")
    return beta / 2 * (q_s - q_t).norm(dim=1).mean()


# --------------------------------------------------------------------------- several teachers

def _stack(teacher_logits) -> torch.Tensor:
    if isinstance(teacher_logits, torch.Tensor):
        stacked = teacher_logits if teacher_logits.ndim == 3 else None
        if stacked is None:
            raise ValueError(f"teacher_logits as one tensor must have shape (teachers, N, C), "
                             f"got {tuple(teacher_logits.shape)}")
    else:
        teacher_logits = list(teacher_logits)
        if not teacher_logits:
            raise ValueError("teacher_logits must hold at least one teacher's logits, got an empty sequence")
        for i, z in enumerate(teacher_logits):
            _logits(f"teacher_logits[{i}]", z)
            if z.shape != teacher_logits[0].shape:
                raise ValueError(f"teacher_logits[{i}] has shape {tuple(z.shape)}, "
                                 f"teacher_logits[0] has {tuple(teacher_logits[0].shape)}: all must agree")
        stacked = torch.stack(teacher_logits)
    if len(stacked) == 0:
        raise ValueError("teacher_logits must hold at least one teacher's logits, got none")
    return _logits("teacher_logits", stacked)


def _combine(stacked: torch.Tensor, weights: torch.Tensor, temperature: float, mode: str):
    """``(combined logits or None, log of the combined soft targets)`` along the last dim."""
    w = weights.to(stacked).view(-1, *([1] * (stacked.ndim - 1)))
    if mode == "logits":
        logits = (w * stacked).sum(0)
        return logits, F.log_softmax(logits / temperature, dim=-1)
    # log sum_k w_k q_k, kept in log space; zero-weight teachers drop out as log 0 = -inf
    log_q = torch.logsumexp(w.log() + F.log_softmax(stacked / temperature, dim=-1), dim=0)
    return None, log_q


def multi_teacher_targets(teacher_logits, temperature: float, weights=None, mode: str = "logits") -> torch.Tensor:
    """Soft targets from several teachers, with weights ``w_k >= 0`` normalised to sum 1.

    - ``mode="logits"``: ``softmax(sum_k w_k z_k / T)`` (average the logits, then soften);
    - ``mode="probs"``:  ``sum_k w_k softmax(z_k / T)`` (soften, then average).

    Args:
        teacher_logits: a sequence of ``(N, C)`` tensors, one per teacher (or one
            ``(K, N, C)`` tensor); at least one.
        temperature: ``T``, finite and > 0.
        weights: ``None`` (equal) or one non-negative number per teacher, not all zero.
        mode: ``"logits"`` or ``"probs"``.

    >>> a, b = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    >>> multi_teacher_targets([a, b], 1.0, mode="logits"), multi_teacher_targets([a, b], 1.0, mode="probs")
    (tensor([[0.8808, 0.1192]]), tensor([[0.7410, 0.2590]]))
    """
    stacked = _stack(teacher_logits)
    temperature = _temperature(temperature)
    _validate.choice("mode", mode, MULTI_TEACHER_MODES)
    w = _weights("weights", weights, len(stacked))
    return _combine(stacked, w, temperature, mode)[1].exp()


@torch.no_grad()
def transfer_targets(teachers, x: torch.Tensor, *, hard: bool = False, temperature: float = 1.0,
                     weights=None, mode: str = "logits", batch_size: int = 512) -> torch.Tensor:
    """Label a transfer set with teachers (in eval mode, without gradients).

    Returns soft targets ``(N, C)`` (:func:`multi_teacher_targets` at ``T``), or with
    ``hard=True`` their argmax ``(N,)``, i.e. pseudo-labels. Both plug into
    :func:`kdlab.train.fit` as targets: ``F.cross_entropy`` accepts class
    probabilities, so ``fit(student, (x, transfer_targets(teacher, x)))`` trains on
    soft targets at ``T`` (the KD soft term up to the teacher's constant entropy,
    without the ``T^2`` factor).
    """
    from kdlab.train import predict

    teachers = _teacher_list(teachers)
    logits = [predict(t, x, batch_size=batch_size) for t in teachers]
    probs = multi_teacher_targets(logits, temperature, weights, mode)
    return probs.argmax(1) if hard else probs


# --------------------------------------------------------------------------- temperature schedules

def constant_temperature(temperature: float) -> Callable[[int], float]:
    """``T(epoch) = temperature``."""
    temperature = _temperature(temperature)
    return lambda epoch: temperature


def _ramp(start, end, epochs, shape):
    start, end = _temperature(start, "start"), _temperature(end, "end")
    epochs = _validate.positive_int("epochs", epochs)

    def schedule(epoch: int) -> float:
        epoch = _validate.positive_int("epoch", epoch, allow_zero=True)
        progress = min(epoch / max(epochs - 1, 1), 1.0)
        return start + (end - start) * shape(progress)

    return schedule


def linear_temperature(start: float, end: float, epochs: int) -> Callable[[int], float]:
    """``T(e) = start + (end - start) * min(e / (epochs - 1), 1)`` for epochs ``e = 0, 1, ...``."""
    return _ramp(start, end, epochs, lambda u: u)


def cosine_temperature(start: float, end: float, epochs: int) -> Callable[[int], float]:
    """``T(e) = end + (start - end) * (1 + cos(pi * u)) / 2`` with ``u = min(e / (epochs - 1), 1)``."""
    return _ramp(start, end, epochs, lambda u: (1 - math.cos(math.pi * u)) / 2)


# --------------------------------------------------------------------------- the Distiller

def _teacher_list(teachers) -> list:
    if isinstance(teachers, nn.Module):
        return [teachers]
    if isinstance(teachers, (str, bytes)) or not isinstance(teachers, Sequence):
        raise TypeError(f"teachers must be an nn.Module or a sequence of them, got {type(teachers).__name__}")
    teachers = list(teachers)
    if not teachers:
        raise ValueError("teachers must hold at least one teacher, got an empty sequence")
    for i, t in enumerate(teachers):
        if not isinstance(t, nn.Module):
            raise TypeError(f"teachers[{i}] must be an nn.Module, got {type(t).__name__}")
    return teachers


def _module(model: nn.Module, name: str, which: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not isinstance(name, str) or name not in modules or name == "":
        names = [n for n in modules if n]
        raise ValueError(f"hints name {name!r} is not a submodule of the {which}; "
                         f"its submodules are {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")
    return modules[name]


def indexed_loader(x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 64, shuffle: bool = True,
                   seed: int = 0) -> DataLoader:
    """A loader of ``(x, y, index)`` batches over in-memory tensors, in the same
    order as :func:`kdlab.data.make_loader` with the same seed."""
    return make_loader(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed, with_index=True)


def _stack_teachers(logits: list) -> torch.Tensor:
    widths = [t.shape[-1] for t in logits]
    if len(set(widths)) > 1:
        raise ValueError("the teachers must give logits over the same classes; got "
                         + ", ".join(f"teachers[{i}]: {w} classes" for i, w in enumerate(widths)))
    return torch.stack(logits)


def _same_classes(student: int, teachers: int) -> None:
    if student != teachers:
        raise ValueError(f"the student and its teachers must give logits over the same classes; got "
                         f"student: {student} classes, teachers: {teachers} classes")


class Distiller(Callback):
    """Train a student on soft targets from one or more frozen teachers.

    The loss per batch ``(x, y)`` (``y`` may be absent, or :data:`UNLABELLED` for
    some examples) is

    - ``loss="kd"``: :func:`kd_loss` against the teachers' combined targets
      (:func:`multi_teacher_targets`), hard term over the labelled examples;
    - ``loss="dkd"``: ``CE(z_s, y) + w_e * dkd_loss(z_s, z_t, y, alpha=dkd_alpha, beta=dkd_beta, T)``
      with ``w_e = min(1, (e + 1) / dkd_warmup)`` in epoch ``e`` (0-based; 1 without warm-up)
      (``alpha`` is not used; every example needs a label);
    - a callable ``loss(student_logits, teacher_logits, targets, temperature)``;

    plus ``hint_weight * sum(hint or attention losses)`` over the ``hints`` pairs
    (by default each hint term divided by its feature size, see ``hint_weight``).

    Teachers run in eval mode under ``torch.no_grad``; features for hints are read
    with forward hooks (removed after training), so no model's ``forward`` changes.
    Training goes through :func:`kdlab.train.fit`: the Distiller supplies the
    ``objective`` and is itself the callback that prepares teachers and hooks and
    sets the temperature at the start of every epoch. To combine it with other
    callbacks outside :meth:`fit`, pass both: ``train.fit(student, data,
    objective=d.objective, callbacks=[d, pruning_callback])``.

    Args:
        student: the model trained.
        teachers: one ``nn.Module`` or a non-empty sequence of them.
        loss: ``"kd"``, ``"dkd"`` or a callable (see above).
        temperature: ``T`` > 0, or a schedule ``epoch -> T`` (:func:`linear_temperature`,
            :func:`cosine_temperature`); epochs count from 0.
        alpha: weight of the soft term in ``"kd"``, in [0, 1].
        teacher_weights: ``None`` or one weight >= 0 per teacher.
        multi_teacher_mode: ``"logits"`` or ``"probs"`` (probs needs ``loss="kd"``).
        hints: pairs ``(student module name, teacher module name)``; one teacher only.
        hint_kind: ``"hint"`` (FitNets, with a learned regressor when shapes differ,
            trained with the student) or ``"attention"`` (attention transfer).
        hint_weight: weight >= 0 of the feature losses, or ``None`` (the default): each
            FitNets term divided by the number ``D`` of teacher feature values per
            example, i.e. half the mean squared error per value, so the term does not
            grow with the feature map (its sum over a CNN map swamps the KD loss);
            attention-transfer terms, already normalised, with weight 1.
        dkd_alpha, dkd_beta: DKD's weights.
        dkd_warmup: epochs over which DKD's term ramps up linearly (Zhao et al. use 20);
            0 for none.
        cache_teacher: compute the teachers' logits once on in-memory ``(x, y)``
            data (no augmentation), then look them up by index.

    >>> from kdlab import data, models, zoo
    >>> split = data.load_digits()
    >>> student = models.create("mlp-tiny")
    >>> d = Distiller(student, zoo.pretrained("mlp-teacher"), temperature=4.0, cache_teacher=True)
    >>> history = d.fit(split.train, epochs=2, progress=False)
    """

    def __init__(self, student: nn.Module, teachers, *, loss="kd", temperature=4.0, alpha: float = 0.9,
                 teacher_weights=None, multi_teacher_mode: str = "logits", hints=None,
                 hint_kind: str = "hint", hint_weight: float | None = None, dkd_alpha: float = 1.0,
                 dkd_beta: float = 8.0, dkd_warmup: int = 0, cache_teacher: bool = False):
        if not isinstance(student, nn.Module):
            raise TypeError(f"student must be an nn.Module, got {type(student).__name__}")
        self.student = student
        self.teachers = _teacher_list(teachers)
        if not callable(loss):
            _validate.choice("loss", loss, LOSSES)
        self.loss = loss
        if callable(temperature):
            self.schedule = temperature
        else:
            self.schedule = constant_temperature(temperature)
        self.temperature = _temperature(self.schedule(0), "temperature at epoch 0")
        self.alpha = _validate.fraction("alpha", alpha)
        self.teacher_weights = _weights("teacher_weights", teacher_weights, len(self.teachers))
        self.mode = _validate.choice("multi_teacher_mode", multi_teacher_mode, MULTI_TEACHER_MODES)
        if self.mode == "probs" and loss != "kd":
            raise ValueError(f"multi_teacher_mode='probs' gives no combined logits, so it needs loss='kd'; "
                             f"got loss={loss!r}")
        self.dkd_alpha = _validate.positive_float("dkd_alpha", dkd_alpha, allow_zero=True)
        self.dkd_beta = _validate.positive_float("dkd_beta", dkd_beta, allow_zero=True)
        self.dkd_warmup = _validate.positive_int("dkd_warmup", dkd_warmup, allow_zero=True)
        if self.dkd_warmup and loss != "dkd":
            raise ValueError(f"dkd_warmup ramps up DKD's term, so it needs loss='dkd'; got loss={loss!r}")
        self._dkd_weight = 1.0 if not self.dkd_warmup else 1.0 / self.dkd_warmup
        self.hint_kind = _validate.choice("hint_kind", hint_kind, HINT_KINDS)
        self.hint_weight = (None if hint_weight is None
                            else _validate.positive_float("hint_weight", hint_weight, allow_zero=True))
        self.hints = self._check_hints(hints)
        if not isinstance(cache_teacher, bool):
            raise TypeError(f"cache_teacher must be True or False, got {cache_teacher!r}")
        if cache_teacher and self.hints:
            raise ValueError("cache_teacher=True cannot be combined with hints: teacher features are "
                             "needed at every step; pass cache_teacher=False")
        self.cache_teacher = cache_teacher
        self.regressors = nn.ModuleDict()
        self._hooks: list = []
        self._features: dict = {}
        self._cache: torch.Tensor | None = None   # (teachers, N, C) logits when caching
        self._cache_targets: torch.Tensor | None = None  # (N,) labels of the cached examples
        self._batches = None                      # the cached loader's dataset (TensorBatches)
        self._epoch_temperature = None            # T of the current _epoch_targets
        self._epoch_targets = None                # cache combined at the current T, or a _CachedKD
        self._batch_size = 64
        self._partly_labelled = True              # known to be False only for in-memory data

    def _check_hints(self, hints) -> list:
        if hints is None:
            return []
        hints = [tuple(pair) for pair in hints]
        if hints and len(self.teachers) > 1:
            raise ValueError(f"hints need exactly one teacher, got {len(self.teachers)}")
        for pair in hints:
            if len(pair) != 2:
                raise ValueError(f"hints must be (student module name, teacher module name) pairs, got {pair!r}")
            _module(self.student, pair[0], "student")
            _module(self.teachers[0], pair[1], "teacher")
        return hints

    # -- the objective ------------------------------------------------------

    @torch.no_grad()
    def _teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        return _stack_teachers([t(x) for t in self.teachers])

    def objective(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        """``objective(student, batch) -> loss`` for :func:`kdlab.train.fit`; batches
        are ``(x,)``, ``(x, y)``, or, from :meth:`fit` with cached teacher logits,
        ``(x, KD weights)`` (labelled vanilla KD) or ``(x, y, index)`` (otherwise)."""
        if type(self._epoch_targets) is _CachedKD:  # batches (x, KD weights) from Distiller.fit
            return self._epoch_targets.loss(model(batch[0]), batch[1])
        cached = self._epoch_targets is not None and len(batch) == 3
        T = self.temperature
        x = batch[0]
        y = batch[1] if len(batch) > 1 else None
        if cached:
            teacher_logits, log_q = (None if t is None else t.index_select(0, batch[2]) for t in self._epoch_targets)
        else:
            teacher_logits, log_q = _combine(self._teacher_logits(x), self.teacher_weights, T, self.mode)
        student_logits = model(x)
        _same_classes(student_logits.shape[-1], log_q.shape[-1])
        if self.loss == "kd":
            loss = _kd_from_log_targets(student_logits, log_q, y, T, self.alpha, self._partly_labelled)
        elif self.loss == "dkd":
            if y is None:
                raise ValueError("loss='dkd' needs labelled batches (x, y); got batches without targets")
            loss = F.cross_entropy(student_logits, y) + self._dkd_weight * dkd_loss(
                student_logits, teacher_logits, y, alpha=self.dkd_alpha, beta=self.dkd_beta, temperature=T)
        else:
            loss = self.loss(student_logits, teacher_logits, y, T)
        if self.hints and self.hint_weight != 0:
            loss = loss + self._feature_loss()
        return loss

    def _feature_loss(self) -> torch.Tensor:
        """``hint_weight * sum`` of the feature losses; with ``hint_weight=None`` each
        FitNets term is divided by its number of teacher feature values per example."""
        total = 0.0
        for i, (s_name, t_name) in enumerate(self.hints):
            s, t = self._features[("student", s_name)], self._features[("teacher", t_name)]
            if self.hint_kind == "hint":
                term = hint_loss(s, t, self.regressors[str(i)])
                total = total + (term / t[0].numel() if self.hint_weight is None else term)
            else:
                total = total + attention_transfer_loss(s, t)
        return total if self.hint_weight is None else self.hint_weight * total

    # -- hooks and callbacks ------------------------------------------------

    def _add_hooks(self) -> None:
        self.remove_hooks()

        def keep(key):
            def hook(module, inputs, output):
                self._features[key] = output
            return hook

        for s_name, t_name in self.hints:
            self._hooks.append(_module(self.student, s_name, "student").register_forward_hook(keep(("student", s_name))))
            self._hooks.append(_module(self.teachers[0], t_name, "teacher").register_forward_hook(keep(("teacher", t_name))))

    def remove_hooks(self) -> None:
        """Remove the feature hooks (done automatically at the end of training)."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._features.clear()

    def _rows_per_epoch(self) -> bool:
        """Cached vanilla KD on fully labelled data runs as :class:`_CachedKD`."""
        return self.cache_teacher and self.loss == "kd" and not self._partly_labelled

    def on_train_start(self, state: TrainState) -> None:
        self._teacher_modes = [t.training for t in self.teachers]
        for t in self.teachers:
            t.to(state.device).eval()
        self.regressors.to(state.device)
        if self._cache is not None:
            self._cache = self._cache.to(state.device)
            self._cache_targets = self._cache_targets.to(state.device)
        self._add_hooks()

    def on_epoch_start(self, state: TrainState) -> None:
        self.temperature = _temperature(self.schedule(state.epoch), f"temperature at epoch {state.epoch}")
        if self.dkd_warmup:
            self._dkd_weight = min(1.0, (state.epoch + 1) / self.dkd_warmup)
        if self._cache is not None and self._epoch_temperature != self.temperature:
            # Soft targets at this epoch's T, once (again only when T changes): a step
            # only looks its batch up.
            self._epoch_temperature = self.temperature
            logits, log_q = _combine(self._cache, self.teacher_weights, self.temperature, self.mode)
            if self._rows_per_epoch():
                self._epoch_targets = _CachedKD(log_q, self._cache_targets, self.temperature, self.alpha,
                                                self._batch_size)
                self._batches.tensors[1] = self._epoch_targets.weights
            else:
                self._epoch_targets = (None if self.loss == "kd" else logits, log_q)

    def on_train_end(self, state: TrainState) -> None:
        self.remove_hooks()
        for t, mode in zip(self.teachers, getattr(self, "_teacher_modes", [])):
            t.train(mode)

    # -- training -----------------------------------------------------------

    def _prepare_regressors(self, x: torch.Tensor) -> None:
        """Build the FitNets regressors from one probe batch, before the optimizer exists."""
        if not self.hints or self.hint_kind != "hint" or len(self.regressors):
            return
        self._add_hooks()
        was_training = self.student.training
        try:
            device = next(self.student.parameters()).device
            with torch.no_grad():
                self.student.eval()
                self.student(x.to(device))
                for t in self.teachers:
                    t.to(device).eval()
                    t(x.to(device))
            for i, (s_name, t_name) in enumerate(self.hints):
                self.regressors[str(i)] = make_regressor(self._features[("student", s_name)],
                                                         self._features[("teacher", t_name)]).to(device)
        finally:
            self.student.train(was_training)
            self.remove_hooks()

    def _check_student(self, x: torch.Tensor, teacher_classes: int) -> None:
        """One example through the student (eval mode, no gradient): it must give as many
        classes as the teachers, or the losses cannot compare them."""
        was_training = self.student.training
        device = next((p.device for p in self.student.parameters()), torch.device("cpu"))
        try:
            self.student.eval()
            with torch.no_grad():
                classes = self.student(x[:1].to(device)).shape[-1]
        finally:
            self.student.train(was_training)
        _same_classes(classes, teacher_classes)

    def fit(self, data, *, epochs: int, callbacks=(), **fit_kwargs):
        """Distil into the student with :func:`kdlab.train.fit` and return its History.

        ``data``: a DataLoader, an ``(x, y)`` tuple or a Split (its training part);
        with ``cache_teacher=True`` it must be in-memory tensors. ``callbacks`` run
        after the Distiller's own; ``fit_kwargs`` go to :func:`kdlab.train.fit`
        (``lr``, ``optimizer``, ``batch_size``, ``seed``, ``eval_data``, ...).
        """
        for key in ("objective", "loss_fn"):
            if key in fit_kwargs:
                raise ValueError(f"{key} is set by the Distiller; do not pass it to Distiller.fit")
        epochs = _validate.positive_int("epochs", epochs)
        if isinstance(data, Split):
            data = data.train
        batch_size, seed = fit_kwargs.get("batch_size", 64), fit_kwargs.get("seed", 0)
        in_memory = (isinstance(data, (tuple, list)) and len(data) == 2
                     and all(isinstance(t, torch.Tensor) for t in data))
        self._partly_labelled = not in_memory or bool((data[1] == UNLABELLED).any())
        if self.cache_teacher:
            if not in_memory:
                raise ValueError(f"cache_teacher=True needs in-memory data, an (x, y) tuple of tensors or a "
                                 f"Split, so each example's teacher logits can be looked up by index; got "
                                 f"{type(data).__name__}. Pass the tensors or use cache_teacher=False")
            x, y = data
            if self._rows_per_epoch():
                # (x, KD weights) batches: the weights replace y in the loader every epoch
                loader = make_loader(x, y, batch_size=batch_size, seed=seed)
            else:
                loader = indexed_loader(x, y, batch_size=batch_size, seed=seed)
            self._batches = loader.dataset
            self._cache = self._run_teachers(x)
            if len(x):
                self._check_student(x, self._cache.shape[-1])
            self._epoch_temperature = None
            self._cache_targets, self._batch_size = y, batch_size
        else:
            loader = as_loader(data, batch_size=batch_size, seed=seed)
            self._cache = None
        self._prepare_regressors(next(iter(loader))[0])
        optimizer = fit_kwargs.pop("optimizer", "adam")
        if len(self.regressors) and not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = make_optimizer(self.student, optimizer, fit_kwargs.pop("lr", 1e-3),
                                       fit_kwargs.pop("weight_decay", 0.0))
        if len(self.regressors):
            optimizer.add_param_group({"params": list(self.regressors.parameters())})
        try:
            return fit(self.student, loader, epochs=epochs, objective=self.objective,
                       callbacks=[self, *callbacks], optimizer=optimizer, **fit_kwargs)
        finally:
            self.remove_hooks()
            self._epoch_targets = self._epoch_temperature = None

    @torch.no_grad()
    def _run_teachers(self, x: torch.Tensor) -> torch.Tensor:
        from kdlab.train import predict

        return _stack_teachers([predict(t, x) for t in self.teachers])
