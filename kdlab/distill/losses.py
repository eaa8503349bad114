"""Distillation losses: vanilla KD, decoupled KD, FitNets hints, attention transfer,
label smoothing (KD from a uniform teacher) and relational KD.

The vocabulary of Hinton, Vinyals & Dean (2015): with soft targets
``q = softmax(z / T)`` of the teacher's logits, the KD loss is
``alpha * T^2 * KL(q_teacher || q_student) + (1 - alpha) * CE(z_student, y)``;
the ``T^2`` keeps the soft gradient's size level as ``T`` changes (it shrinks as
``1/T^2``). Every loss is computed from log-softmaxes, so it stays finite for
``|logits| = 1e4``.

>>> import torch
>>> s, t, y = torch.zeros(2, 3), torch.tensor([[2.0, 0, 0], [0, 2.0, 0]]), torch.tensor([0, 1])
>>> round(kd_loss(s, t, y, temperature=2.0, alpha=0.5).item(), 4)
0.7959
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from kdlab import _validate
from kdlab.data import UNLABELLED
from kdlab.distill.targets import DEFAULT_TEMPERATURE, _temperature


def _pair(student_logits, teacher_logits) -> None:
    _validate.float_tensor("student_logits", student_logits, "logits")
    _validate.float_tensor("teacher_logits", teacher_logits, "logits")
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


# --------------------------------------------------------------------------- vanilla KD

def kd_from_log_targets(student_logits, log_q_teacher, targets, temperature: float, alpha: float,
                        partly_labelled: bool = False) -> torch.Tensor:
    """:func:`kd_loss` from the teacher's log soft targets ``log q``, without argument
    checks. With ``partly_labelled``, :data:`~kdlab.data.UNLABELLED` examples are left
    out of the hard term (a batch without labels gets none)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    soft = temperature ** 2 * F.kl_div(log_p_student, log_q_teacher, reduction="batchmean", log_target=True)
    if targets is None:
        return soft
    if partly_labelled:
        labelled = (targets != UNLABELLED).sum().clamp(min=1)
        hard = F.cross_entropy(student_logits, targets, ignore_index=UNLABELLED, reduction="sum") / labelled
    else:
        hard = F.cross_entropy(student_logits, targets)
    return torch.add(alpha * soft, hard, alpha=1.0 - alpha)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None = None,
            *, temperature: float = DEFAULT_TEMPERATURE, alpha: float = 0.9) -> torch.Tensor:
    """Vanilla knowledge-distillation loss (Hinton et al. 2015).

    ``L = alpha * T^2 * KL(q_t || q_s) + (1 - alpha) * CE(z_s, y)`` with
    ``q = softmax(z / T)`` and ``KL(q_t || q_s) = 1/N sum_n sum_i q_t log(q_t / q_s)``
    (``reduction="batchmean"``: divided by the batch size, not by batch x classes).
    With ``targets=None`` the result is the soft term ``T^2 * KL`` alone (``alpha``
    is then not used).

    Args:
        student_logits, teacher_logits: floating tensors of the same shape ``(N, C)``.
        targets: ``None`` or class indices of shape ``(N,)`` in ``[0, C - 1]``.
        temperature: ``T``, finite and > 0.
        alpha: weight of the soft term, in ``[0, 1]``.
    """
    _pair(student_logits, teacher_logits)
    temperature = _temperature(temperature)
    alpha = _validate.fraction("alpha", alpha)
    if targets is not None:
        _targets(targets, student_logits)
    log_q = F.log_softmax(teacher_logits / temperature, dim=1)
    return kd_from_log_targets(student_logits, log_q, targets, temperature, alpha)


@dataclass(frozen=True)
class KDWeights:
    """Labelled vanilla KD as one weighted log-softmax, for teacher targets that stay
    fixed while the student trains (cached logits at one temperature).

    ``alpha * T^2 * KL(q || softmax(z / T)) + (1 - alpha) * CE(z, y)`` is a weighted
    sum of log-softmaxes over three rows per example, ``z / T``, ``z`` and ``0``:

    1. ``log softmax(z / T)`` weighted by ``alpha * T^2 * q``: the soft term as a
       cross-entropy;
    2. ``log softmax(z)`` weighted by ``(1 - alpha) * onehot(y)``: the hard term;
    3. ``log softmax(0) = -log C`` in every class, weighted so that the row adds
       ``alpha * T^2 * sum(q log q)``, minus the teacher's entropy, which turns the
       cross-entropy of row 1 into the KL divergence.

    :meth:`build` makes the ``(N, 3C)`` weights of all examples once, pre-divided by
    ``-batch_size``; :meth:`loss` of a batch is one product ``z @ spread`` (which lays
    out the three rows), one log-softmax and one dot product with the batch's weights,
    where the composed loss runs a dozen calls forward and as many backward (for a
    small student most of a step is such fixed per-call costs). Equal to
    :func:`kd_loss` in value and gradient.
    """

    weights: torch.Tensor          # (N, 3C), pre-divided by -batch_size
    scale: torch.Tensor            # (3,): 1/T, 1, 0, the row factors of z
    spread: torch.Tensor | None    # (C, 3C) = kron(I, scale), or None above MAX_SPREAD_CLASSES
    batch_size: int

    MAX_SPREAD_CLASSES: ClassVar[int] = 256  # above: the (C, 3C) spread costs more than broadcasting

    @classmethod
    def build(cls, log_q: torch.Tensor, targets: torch.Tensor, temperature: float, alpha: float,
              batch_size: int) -> "KDWeights":
        n, c = log_q.shape
        q = log_q.exp()
        soft = (alpha * temperature ** 2) * q
        hard = F.one_hot(targets, c).to(q.dtype) * (1.0 - alpha)
        # row 3: every class weighted w with C * w * (-log C) = -alpha * T^2 * sum(q log q)
        neg_entropy = (q * log_q).sum(1, keepdim=True)
        const = (alpha * temperature ** 2 / (c * math.log(c))) * neg_entropy if c > 1 else 0 * neg_entropy
        weights = torch.stack((soft, hard, const.expand(n, c)), dim=2).view(n, 3 * c)
        scale = torch.tensor([1.0 / temperature, 1.0, 0.0], dtype=q.dtype, device=q.device)
        spread = (torch.kron(torch.eye(c, dtype=q.dtype, device=q.device), scale.view(1, 3))
                  if c <= cls.MAX_SPREAD_CLASSES else None)
        return cls(weights * (-1.0 / batch_size), scale, spread, batch_size)

    def loss(self, student_logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The loss of a batch, given its rows of :attr:`weights`."""
        n = len(student_logits)
        if self.spread is not None:
            rows = torch.mm(student_logits, self.spread).view(n, -1, 3)
        else:
            rows = student_logits.unsqueeze(2) * self.scale
        loss = torch.vdot(rows.log_softmax(1).view(-1), weights.view(-1))
        return loss if n == self.batch_size else loss * (self.batch_size / n)


# --------------------------------------------------------------------------- decoupled KD

class DKDTerms(NamedTuple):
    """Per-example parts of the KD divergence at one temperature (no ``T^2``)."""

    tckd: torch.Tensor             # KL between the binary (target, rest) distributions
    nckd: torch.Tensor             # KL between the distributions over the non-target classes
    teacher_target_prob: torch.Tensor  # p_t of the teacher at temperature T


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
              temperature: float = DEFAULT_TEMPERATURE) -> DKDTerms:
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
             alpha: float = 1.0, beta: float = 8.0, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
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
    _validate.float_tensor("student_features", student_features, "features")
    _validate.float_tensor("teacher_features", teacher_features, "features")
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
    _validate.float_tensor("features", features, "features")
    if features.ndim < 3:
        raise ValueError(f"features must have shape (N, C, H, W) (or (N, C, L)), got {tuple(features.shape)}")
    p = _validate.positive_float("p", p)
    return F.normalize(features.abs().pow(p).sum(1).flatten(1), dim=1)


AT_FORMS = ("paper", "code")


def attention_transfer_loss(student_features: torch.Tensor, teacher_features: torch.Tensor, *,
                            beta: float = 1.0, p: float = 2.0, form: str = "paper") -> torch.Tensor:
    """Attention transfer (Zagoruyko & Komodakis 2017) for one pair of layers, with
    ``d_n = Q_s,n/||Q_s,n|| - Q_t,n/||Q_t,n||`` the difference of the two normalised
    attention maps (:func:`attention_map`) of example ``n``:

    - ``form="paper"``: ``beta / 2 * 1/N sum_n ||d_n||_2``, the paper's equation (2)
      (a norm, not squared);
    - ``form="code"``: ``beta / 2 * 1/(N * H * W) sum_n ||d_n||_2^2``, what the
      authors' reference code computes (``at_loss``: the mean of the squared
      differences over the batch and the ``H * W`` positions), with ``beta = 1000``
      there. On a map of ``H * W`` positions that is a weight of ``beta / (2 * H * W)``
      on the squared distance, so the code's ``beta`` does not carry over to the
      paper's form, nor between map sizes.

    Channel counts may differ; the batch and spatial sizes must agree.

    >>> a = torch.rand(2, 4, 3, 3)
    >>> attention_transfer_loss(a, 2 * a[:, :2]).item() >= 0
    True
    """
    beta = _validate.positive_float("beta", beta, allow_zero=True)
    _validate.choice("form", form, AT_FORMS)
    q_s, q_t = attention_map(student_features, p), attention_map(teacher_features, p)
    if q_s.shape != q_t.shape:
        raise ValueError(f"student features {tuple(student_features.shape)} and teacher features "
                         f"{tuple(teacher_features.shape)} need the same batch and spatial size")
    if form == "code":
        return beta / 2 * (q_s - q_t).pow(2).mean()
    return beta / 2 * (q_s - q_t).norm(dim=1).mean()


# --------------------------------------------------------------------------- label smoothing

def smoothed_targets(targets: torch.Tensor, num_classes: int, *, epsilon: float,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
    """Label-smoothed targets ``(1 - epsilon) * onehot(y) + epsilon / C`` of shape ``(N, C)``
    (Szegedy et al. 2016; the ``epsilon / C`` goes to every class, the true one too, as in
    ``F.cross_entropy(..., label_smoothing=epsilon)``), in ``dtype`` (the default float type
    when ``None``).

    >>> smoothed_targets(torch.tensor([1]), 4, epsilon=0.2)
    tensor([[0.0500, 0.8500, 0.0500, 0.0500]])
    """
    num_classes = _validate.positive_int("num_classes", num_classes)
    epsilon = _validate.fraction("epsilon", epsilon)
    y = _validate.class_indices("targets", targets, num_classes=num_classes)
    onehot = F.one_hot(y, num_classes).to(dtype or torch.get_default_dtype())
    return (1 - epsilon) * onehot + epsilon / num_classes


def label_smoothing_loss(logits: torch.Tensor, targets: torch.Tensor, *, epsilon: float) -> torch.Tensor:
    """Cross-entropy against :func:`smoothed_targets`: ``-1/N sum_n sum_c t_nc log p_nc``.

    It is distillation from a uniform teacher: with ``u = 1/C`` in every class,
    ``(1 - epsilon) * CE(z, y) + epsilon * CE(u, softmax(z))
    = (1 - epsilon) * CE(z, y) + epsilon * KL(u || softmax(z)) + epsilon * log C``,
    i.e. :func:`kd_loss` with ``T = 1``, ``alpha = epsilon`` and a teacher whose logits are
    all equal, plus the constant ``epsilon * log C``. The teacher that label smoothing
    imitates knows nothing about which wrong classes are close, which is what a real
    teacher's soft targets carry (Müller, Kornblith & Hinton 2019).

    >>> z, y = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])
    >>> round(label_smoothing_loss(z, y, epsilon=0.1).item(), 4)
    0.3729
    """
    _validate.float_tensor("logits", logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (batch, classes), got {tuple(logits.shape)}")
    t = smoothed_targets(_targets(targets, logits), logits.shape[1], epsilon=epsilon, dtype=logits.dtype)
    return -(t * F.log_softmax(logits, dim=1)).sum(1).mean()


# --------------------------------------------------------------------------- relational KD

def _embeddings(student: torch.Tensor, teacher: torch.Tensor, least: int) -> tuple:
    """Both as ``(N, D)`` float tensors (trailing dimensions flattened) of one batch."""
    _validate.float_tensor("student", student, "student embeddings")
    _validate.float_tensor("teacher", teacher, "teacher embeddings")
    if student.ndim < 2 or teacher.ndim < 2:
        raise ValueError(f"student and teacher must be batches of embeddings (N, D), got shapes "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    if len(student) != len(teacher):
        raise ValueError(f"student and teacher must embed the same batch, got {len(student)} and {len(teacher)} "
                         "examples")
    if len(student) < least:
        raise ValueError(f"relations need a batch of at least {least} examples, got {len(student)}")
    return student.flatten(1), teacher.detach().flatten(1)


def _distances(e: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances divided by their mean over the pairs i != j."""
    d = torch.cdist(e, e)
    off = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    return d / d[off].mean().clamp(min=1e-12)


def _angles(e: torch.Tensor) -> torch.Tensor:
    """``cos`` of the angle at ``e_j`` between ``e_i`` and ``e_k``, for every ``(j, i, k)``."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=2)  # diff[j, i] = (e_i - e_j) / ||e_i - e_j||
    return torch.bmm(diff, diff.transpose(1, 2))


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Distance-wise relational KD (Park et al. 2019): the Huber loss (``delta = 1``,
    smooth L1) between the student's and the teacher's pairwise distances, each
    divided by its mean distance over the pairs of the batch; averaged over all
    ``N^2`` pairs. Compares relations, not coordinates, so the two embedding widths
    may differ. The teacher is not differentiated.

    >>> e = torch.randn(5, 3)
    >>> rkd_distance_loss(2 * e, e).item()   # a scaled copy keeps every relation
    0.0
    """
    s, t = _embeddings(student, teacher, 2)
    return F.smooth_l1_loss(_distances(s), _distances(t))


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Angle-wise relational KD (Park et al. 2019): the Huber loss (smooth L1) between
    the cosines of the angles ``e_i e_j e_k`` the student and the teacher form, over
    every triple of the batch (``N^3`` cosines, their mean). The teacher is not differentiated."""
    s, t = _embeddings(student, teacher, 3)
    return F.smooth_l1_loss(_angles(s), _angles(t))


def rkd_loss(student: torch.Tensor, teacher: torch.Tensor, *, distance_weight: float = 25.0,
             angle_weight: float = 50.0) -> torch.Tensor:
    """``distance_weight * rkd_distance_loss + angle_weight * rkd_angle_loss``, with the
    weights Park et al. use (25 and 50)."""
    distance_weight = _validate.positive_float("distance_weight", distance_weight, allow_zero=True)
    angle_weight = _validate.positive_float("angle_weight", angle_weight, allow_zero=True)
    return distance_weight * rkd_distance_loss(student, teacher) + angle_weight * rkd_angle_loss(student, teacher)
