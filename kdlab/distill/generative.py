"""Distilling generative models: token-level divergences between a teacher's and a
student's next-token distributions, sequence-level KD and on-policy distillation (GKD).

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


# --------------------------------------------------------------------------- sequences

def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of logits ``(N, L, V)`` against token ids ``(N, L)``,
    averaged over every position."""
    _validate.float_tensor("logits", logits, "logits")
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (N, L, V) and targets (N, L), got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def lm_objective(model, batch: tuple) -> torch.Tensor:
    """``objective(model, (x, y))`` for :func:`kdlab.train.fit`: :func:`lm_loss` of
    ``model(x)`` against the next tokens ``y``."""
    return lm_loss(model(batch[0]), batch[1])


@torch.no_grad()
def sample(model, prompts: torch.Tensor, length: int, *, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Continue each prompt ``(N, P)`` by ``length`` tokens drawn from ``softmax(z / T)``
    (``temperature=0``: the most likely token, greedy decoding), with a generator seeded
    by ``seed``. Returns ``(N, P + length)``. Models with a ``step(x, state)`` method
    (:class:`kdlab.models.CharLM`) are run one token at a time; others are re-run on the
    whole prefix. The model's train/eval mode is kept (run it in eval mode)."""
    if not isinstance(prompts, torch.Tensor) or prompts.dtype != torch.long or prompts.ndim != 2 \
            or prompts.shape[1] < 1:
        raise ValueError(f"prompts must be token ids (N, P) with P >= 1, dtype torch.long; got "
                         f"{getattr(prompts, 'shape', prompts)!r}")
    length = _validate.positive_int("length", length, allow_zero=True)
    temperature = _validate.positive_float("temperature", temperature, allow_zero=True)
    generator = torch.Generator(device=prompts.device).manual_seed(seed)
    seq, state = prompts, None
    stepper = getattr(model, "step", None)
    logits, state = stepper(prompts, None) if stepper else (model(prompts), None)
    for _ in range(length):
        last = logits[:, -1]
        if temperature == 0:
            nxt = last.argmax(-1, keepdim=True)
        else:
            nxt = torch.multinomial(F.softmax(last / temperature, -1), 1, generator=generator)
        seq = torch.cat([seq, nxt], 1)
        logits, state = stepper(nxt, state) if stepper else (model(seq), None)
    return seq


def sequence_kd_data(teacher, prompts: torch.Tensor, length: int, *, temperature: float = 0.0,
                     seed: int = 0) -> tuple:
    """Sequence-level KD (Kim & Rush 2016): the teacher's own continuations of
    ``prompts`` become the student's training text. Returns ``(x, y)``, the generated
    sequences and the same shifted by one, for :func:`lm_objective`. The paper decodes
    with beam search; here ``temperature=0`` decodes greedily (the teacher's most likely
    token at each step) and ``temperature > 0`` samples."""
    was = teacher.training
    teacher.eval()
    try:
        seq = sample(teacher, prompts, length, temperature=temperature, seed=seed)
    finally:
        teacher.train(was)
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


class GKDObjective:
    """Generalised knowledge distillation (Agarwal et al. 2024, "On-policy distillation
    of language models"), ``objective(student, (x, y))`` for :func:`kdlab.train.fit`.

    With probability ``on_policy`` (their ``lambda``) a batch is replaced by the
    student's own continuations of its first ``prompt_length`` tokens (sampled at
    ``sample_temperature``, no gradient through the sampling); otherwise the batch's
    text is used. On that text the student's next-token distributions are pulled to
    the teacher's by :func:`generalized_jsd` with ``beta`` (``beta=0``: forward KL,
    ``beta=1``: reverse KL, :func:`token_kl`), over the positions that predict the
    tokens after the prompt. ``on_policy=0, beta=0`` is word-level KD on the data."""

    def __init__(self, teacher, *, beta: float = 0.5, on_policy: float = 0.5, prompt_length: int = 8,
                 sample_temperature: float = 1.0, seed: int = 0):
        self.teacher = teacher
        self.beta = _validate.fraction("beta", beta)
        self.on_policy = _validate.fraction("on_policy", on_policy)
        self.prompt_length = _validate.positive_int("prompt_length", prompt_length)
        self.sample_temperature = _validate.positive_float("sample_temperature", sample_temperature, allow_zero=True)
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed
        self.on_policy_batches = 0

    def text(self, student, x: torch.Tensor) -> torch.Tensor:
        """The batch's text, or with probability ``on_policy`` the student's continuation."""
        if x.shape[1] <= self.prompt_length:
            raise ValueError(f"sequences of {x.shape[1]} tokens leave nothing after a prompt of "
                             f"{self.prompt_length}")
        if torch.rand((), generator=self.generator).item() >= self.on_policy:
            return x
        self.on_policy_batches += 1
        was = student.training
        student.eval()
        try:
            draw = int(torch.randint(0, 2 ** 31 - 1, (), generator=self.generator))
            seq = sample(student, x[:, :self.prompt_length], x.shape[1] - self.prompt_length,
                         temperature=self.sample_temperature, seed=draw)
        finally:
            student.train(was)
        return seq

    def __call__(self, student, batch: tuple) -> torch.Tensor:
        x = self.text(student, batch[0])
        self.teacher.eval()
        with torch.no_grad():
            t = self.teacher(x)
        s = student(x)
        mask = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
        mask[:, self.prompt_length - 1:-1] = True  # the predictions of the tokens after the prompt
        if self.beta == 0.0:
            return token_kl(s, t, direction="forward", mask=mask)
        if self.beta == 1.0:
            return token_kl(s, t, direction="reverse", mask=mask)
        return generalized_jsd(s, t, beta=self.beta, mask=mask)
