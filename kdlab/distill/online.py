"""Online distillation: deep mutual learning (Zhang, Xiang, Hospedales & Lu 2018).

No pre-trained teacher: ``K >= 2`` students train together, and each learns from the
labels and from the others' current predictions. Student ``k`` minimises

``L_k = CE(z_k, y) + weight * T^2 / (K - 1) * sum_{j != k} KL(p_j || p_k)``

with ``p = softmax(z / T)`` (the paper: ``T = 1``, ``weight = 1``). The peers'
predictions ``p_j`` are targets, not differentiated in ``L_k``.

:class:`Cohort` holds the students as one module, so the cohort trains through the one
:func:`kdlab.train.fit` loop: the objective is ``sum_k L_k``, and because each ``L_k``
differentiates only student ``k``, one optimizer step on the sum gives every student
the gradient of its own loss. The students are updated at the same time, from the
predictions of the same step; the paper updates them in turn, each from the others'
freshly updated predictions. One step of the cohort is one optimizer step of each
student.

>>> import torch
>>> from torch import nn
>>> cohort = Cohort(nn.Linear(4, 3), nn.Linear(4, 3))
>>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
>>> mutual_learning_objective()(cohort, (x, y)).item() > 0
True
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlab import _validate
from kdlab.distill.targets import _temperature


class Cohort(nn.Module):
    """Students trained together. ``forward`` returns the mean of their logits (the
    cohort as an ensemble); :meth:`all_logits` returns each one's, stacked ``(K, N, C)``.
    Evaluate a single student through ``cohort.students[k]``."""

    def __init__(self, *students: nn.Module):
        super().__init__()
        if len(students) < 2:
            raise ValueError(f"a cohort needs at least 2 students, got {len(students)}")
        for i, s in enumerate(students):
            if not isinstance(s, nn.Module):
                raise TypeError(f"students[{i}] must be an nn.Module, got {type(s).__name__}")
        if len({id(s) for s in students}) != len(students):
            raise ValueError("the students of a cohort must be distinct modules, got the same one twice")
        self.students = nn.ModuleList(students)

    def all_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([s(x) for s in self.students])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.all_logits(x).mean(0)


def mutual_learning_loss(logits: torch.Tensor, targets: torch.Tensor, *, temperature: float = 1.0,
                         weight: float = 1.0) -> torch.Tensor:
    """``sum_k L_k`` for stacked logits ``(K, N, C)`` of ``K >= 2`` students (see the
    module docstring); ``KL`` is averaged over the batch (``batchmean``)."""
    _validate.float_tensor("logits", logits, "logits")
    if logits.ndim != 3 or logits.shape[0] < 2:
        raise ValueError(f"logits must be stacked (students, batch, classes) with at least 2 students, "
                         f"got shape {tuple(logits.shape)}")
    temperature = _temperature(temperature)
    weight = _validate.positive_float("weight", weight, allow_zero=True)
    y = _validate.class_indices("targets", targets, num_classes=logits.shape[2])
    if len(y) != logits.shape[1]:
        raise ValueError(f"targets must hold one class per example, {logits.shape[1]}, got {len(y)}")
    k = logits.shape[0]
    log_p = F.log_softmax(logits / temperature, dim=2)
    fixed = log_p.detach()
    total = logits.new_zeros(())
    for i in range(k):
        ce = F.cross_entropy(logits[i], y)
        kl = sum(F.kl_div(log_p[i], fixed[j], reduction="batchmean", log_target=True)
                 for j in range(k) if j != i)
        total = total + ce + weight * temperature ** 2 / (k - 1) * kl
    return total


def mutual_learning_objective(*, temperature: float = 1.0, weight: float = 1.0):
    """``objective(cohort, (x, y)) -> sum_k L_k`` for :func:`kdlab.train.fit`."""
    temperature = _temperature(temperature)
    weight = _validate.positive_float("weight", weight, allow_zero=True)

    def objective(cohort: nn.Module, batch: tuple) -> torch.Tensor:
        if not isinstance(cohort, Cohort):
            raise TypeError(f"mutual learning trains a kdlab.distill.Cohort, got {type(cohort).__name__}")
        if len(batch) < 2:
            raise ValueError("mutual learning needs labelled batches (x, y)")
        return mutual_learning_loss(cohort.all_logits(batch[0]), batch[1], temperature=temperature,
                                    weight=weight)

    return objective


def mutual_learning(students, data, *, epochs: int, temperature: float = 1.0, weight: float = 1.0,
                    **fit_kwargs):
    """Train ``students`` (a sequence of ``>= 2`` modules with the same classes) by deep
    mutual learning with :func:`kdlab.train.fit`; returns ``(cohort, history)``. The
    students are trained in place; ``fit_kwargs`` go to ``fit`` (``lr``, ``seed``, ...)."""
    from kdlab.train import fit

    cohort = students if isinstance(students, Cohort) else Cohort(*students)
    for key in ("objective", "loss_fn"):
        if key in fit_kwargs:
            raise ValueError(f"{key} is set by mutual learning; do not pass it")
    objective = mutual_learning_objective(temperature=temperature, weight=weight)
    return cohort, fit(cohort, data, epochs=epochs, objective=objective, **fit_kwargs)
