"""Hinton et al.'s omitted-class experiment: a class the student never sees.

Every image of class ``removed`` is left out of the transfer set. A student trained on the
hard labels of what is left can never predict that class; a student trained on the
teacher's soft targets alone (``alpha = 1``) learns it from the small probabilities the
teacher gives it on other images (Hinton, Vinyals & Dean 2015, §3: on MNIST without any
3, 98.6% of the test 3s right once the bias of class 3 was raised).

The student's logit for the removed class is calibrated too low (no example pushed it
up), so the protocol raises that class's output bias by the amount that makes it win on
a share of the unlabelled training images fixed in advance (its prior, or the teacher's
share of that class): :func:`bias_shift_for_share`. No test label is read to set it.

>>> import torch
>>> logits = torch.tensor([[2.0, 0.0], [1.0, 0.5], [3.0, -1.0], [0.0, 1.0]])
>>> round(bias_shift_for_share(logits, 1, 0.5), 3)   # class 1 must win on 2 of 4 rows
0.5
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from kdlab import _validate


def without_class(xy, removed: int) -> tuple:
    """``(x, y)`` with every row of class ``removed`` left out."""
    x, y = xy
    removed = _validate.positive_int("removed", removed, allow_zero=True)
    if not bool((y == removed).any()):
        raise ValueError(f"removed must be a class present in the labels, got {removed}; "
                         f"present: {sorted(set(y.tolist()))}")
    keep = y != removed
    return x[keep], y[keep]


def bias_shift_for_share(logits: torch.Tensor, cls: int, share: float) -> float:
    """Smallest increase ``b`` of class ``cls``'s logit so that ``cls`` wins on ``share`` of the rows.

    Class ``cls`` wins row i once ``b`` exceeds ``m_i = max_{j != cls} z_ij - z_i,cls``, so
    ``b`` is the ``k``-th smallest margin, ``k = round(share * n)`` (at least 1), found with
    ``torch.kthvalue``, plus 1e-4 so that the ``k``-th row is won, not tied.

    Args:
        logits: ``(n, C)`` logits, ``C >= 2``, of unlabelled rows (training images, never test).
        cls: the class whose logit is raised, in ``[0, C)``.
        share: the fraction of rows on which ``cls`` should win, in (0, 1].
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] < 2 or len(logits) == 0:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a non-empty (n, C) tensor with C >= 2, got {shape}")
    cls = _validate.positive_int("cls", cls, allow_zero=True)
    if cls >= logits.shape[1]:
        raise ValueError(f"cls must be a class index in [0, {logits.shape[1]}), got {cls}")
    share = _validate.fraction("share", share)
    if share == 0:
        raise ValueError("share must be in (0, 1]: the class should win on some rows, got 0")
    others = logits.detach().float().clone()
    others[:, cls] = -float("inf")
    margin = others.max(1).values - logits.detach().float()[:, cls]
    k = max(1, min(len(margin), round(share * len(margin))))
    return torch.kthvalue(margin, k).values.item() + 1e-4


class OmittedClassRun(NamedTuple):
    """One student of the omitted-class experiment, measured on ``test`` before and after
    the bias shift: the share of the removed class's images predicted as that class, and
    the accuracy on the images of the other classes."""

    recognised: float
    recognised_shifted: float
    others: float
    others_shifted: float
    shift: float


def _output_bias(model: nn.Module) -> torch.Tensor:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last or last[-1].bias is None:
        raise ValueError("student must end in an nn.Linear layer with a bias (the bias of the removed class "
                         "is shifted)")
    return last[-1].bias


def omitted_class_run(student: nn.Module, teacher: nn.Module | None, split, *, removed: int, share: float,
                      epochs: int, temperature: float | None = None, test=None,
                      **fit_kwargs) -> OmittedClassRun:
    """Train ``student`` on ``split``'s training part without class ``removed``, shift its bias, measure.

    1. the transfer set: the training images of every class but ``removed``;
    2. ``teacher is None``: plain cross-entropy on their hard labels (the control); else
       soft targets alone, ``T^2 KL(q_teacher(T) || q_student(T))`` (:class:`~kdlab.distill.Distiller`
       with ``alpha = 1`` and the teacher's logits cached);
    3. on ``test`` (default ``split.test``): the share of the images of class ``removed``
       predicted as ``removed``, and the accuracy on the other images;
    4. the output bias of ``removed`` raised by :func:`bias_shift_for_share` on the logits of
       all training images, unlabelled, with the given ``share`` (fixed in advance: the class
       prior, or the teacher's share of the class); then 3 again. The student is changed in place.

    Args:
        student: a freshly initialised model ending in an ``nn.Linear`` with a bias.
        teacher: the model whose soft targets the student learns from, or ``None``.
        split: a :class:`kdlab.data.Split`.
        removed: the class left out of the transfer set.
        share: the fraction of the training images on which ``removed`` should win after the shift, in (0, 1].
        epochs: training epochs, >= 1.
        temperature: the soft targets' temperature (needed with a teacher).
        test: ``(x, y)`` where the student is measured; by default the test part.
        fit_kwargs: passed to :func:`kdlab.train.fit` (``lr``, ``batch_size``, ``seed``, ...).
    """
    from kdlab import evaluate, train
    from kdlab.distill.distiller import Distiller

    if not isinstance(student, nn.Module):
        raise TypeError(f"student must be an nn.Module, got {type(student).__name__}")
    if teacher is not None and temperature is None:
        raise ValueError("temperature is needed with a teacher (soft targets softmax(z / T)), got None")
    if teacher is None and temperature is not None:
        raise ValueError(f"temperature applies to a teacher's soft targets; with teacher=None it must be None, "
                         f"got {temperature}")
    bias = _output_bias(student)
    share = _validate.fraction("share", share)
    transfer = without_class(split.train, removed)
    if teacher is None:
        train.fit(student, transfer, epochs=epochs, **fit_kwargs)
    else:
        Distiller(student, teacher, temperature=temperature, alpha=1.0, cache_teacher=True).fit(
            transfer, epochs=epochs, **fit_kwargs)
    x_test, y_test = split.test if test is None else test
    is_removed = y_test == removed

    def measure():
        predicted = evaluate.predict(student, x_test).argmax(1)
        return ((predicted[is_removed] == removed).float().mean().item(),
                (predicted[~is_removed] == y_test[~is_removed]).float().mean().item())

    recognised, others = measure()
    shift = bias_shift_for_share(evaluate.predict(student, split.x_train), removed, share)
    with torch.no_grad():
        bias[removed] += shift
    recognised_shifted, others_shifted = measure()
    return OmittedClassRun(recognised, recognised_shifted, others, others_shifted, shift)
