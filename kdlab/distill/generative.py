"""Distilling generative models: token-level divergences between a teacher's and a
student's next-token distributions.

For a sequence model the loss is a sum over positions of a divergence between two
categorical distributions over the vocabulary, ``p_T`` (teacher) and ``p_S`` (student):

- **forward KL** ``KL(p_T || p_S) = sum_v p_T log(p_T / p_S)``: the student pays wherever
  the teacher puts mass it misses, so it spreads out to cover every mode (mode-covering);
  this is word-level KD (Hinton et al. 2015; Kim & Rush 2016).
- **reverse KL** ``KL(p_S || p_T)``: the student pays for mass where the teacher has
  little, so it may drop modes and sit on one (mode-seeking).
- **generalised JSD** (Agarwal et al. 2024, GKD): with ``M = beta * p_T + (1 - beta) * p_S``,
  ``JSD_beta = beta * KL(p_T || M) + (1 - beta) * KL(p_S || M)``; ``JSD_beta / beta``
  tends to the forward KL as ``beta -> 0`` and ``JSD_beta / (1 - beta)`` to the reverse
  KL as ``beta -> 1``.

Logits are ``(..., V)`` (e.g. ``(batch, length, vocabulary)``); ``mask`` (same shape
without ``V``) marks the positions that count, and the loss is the mean over them.
Only the student is differentiated.

>>> import torch
>>> s, t = torch.zeros(1, 2, 3), torch.tensor([[[2.0, 0, 0], [0, 0, 0]]])
>>> round(token_kl(s, t).item(), 4), round(token_kl(s, t, direction="reverse").item(), 4)
(0.2165, 0.2371)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdlab import _validate
from kdlab.distill.targets import _temperature

DIRECTIONS = ("forward", "reverse")


def _prepare(student_logits, teacher_logits, mask, temperature):
    _validate.float_tensor("student_logits", student_logits, "logits")
    _validate.float_tensor("teacher_logits", teacher_logits, "logits")
    if student_logits.shape != teacher_logits.shape or student_logits.ndim < 2:
        raise ValueError(f"student_logits and teacher_logits must have the same shape (..., vocabulary), got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    temperature = _temperature(temperature)
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.shape != student_logits.shape[:-1]:
            raise ValueError(f"mask must be a tensor of shape {tuple(student_logits.shape[:-1])} (the logits "
                             f"without the vocabulary), got {getattr(mask, 'shape', mask)!r}")
        if not mask.any():
            raise ValueError("mask marks no position: there is nothing to average")
    log_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    return log_s, log_t


def _mean(per_position: torch.Tensor, mask) -> torch.Tensor:
    if mask is None:
        return per_position.mean()
    m = mask.to(per_position.dtype)
    return (per_position * m).sum() / m.sum()


def token_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, direction: str = "forward",
             mask: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    """The forward ``KL(p_T || p_S)`` or reverse ``KL(p_S || p_T)`` divergence per position,
    with ``p = softmax(z / T)``, averaged over the positions ``mask`` marks (all by default)."""
    _validate.choice("direction", direction, DIRECTIONS)
    log_s, log_t = _prepare(student_logits, teacher_logits, mask, temperature)
    if direction == "forward":
        per = (log_t.exp() * (log_t - log_s)).sum(-1)
    else:
        per = (log_s.exp() * (log_s - log_t)).sum(-1)
    return _mean(per, mask)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, beta: float = 0.5,
                    mask: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    """GKD's generalised Jensen-Shannon divergence ``beta * KL(p_T || M) + (1 - beta) * KL(p_S || M)``,
    ``M = beta * p_T + (1 - beta) * p_S``, per position, averaged over the positions ``mask``
    marks. ``beta`` in ``[0, 1]``; 0 and 1 give 0 (use :func:`token_kl` for the limits)."""
    beta = _validate.fraction("beta", beta)
    log_s, log_t = _prepare(student_logits, teacher_logits, mask, temperature)
    if beta in (0.0, 1.0):
        return _mean((log_s * 0).sum(-1), mask)
    log_m = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log(1 - beta)]), dim=0)
    per = (beta * (log_t.exp() * (log_t - log_m)).sum(-1)
           + (1 - beta) * (log_s.exp() * (log_s - log_m)).sum(-1))
    return _mean(per, mask)
