"""Lesson 02 (soft targets): softmax(z / T), the KD loss, the T^2 factor, label-smoothed targets."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.distill import kd_loss, smoothed_targets, soft_targets
from kdlab.grading.registry import ChoiceItem, FunctionItem
from kdlab.grading.shared import integer, uniform


def _logits(generator):
    """A batch of logits with a random scale (confident or flat) and a temperature."""
    n = integer(generator, 1, 16)
    c = integer(generator, 2, 12)
    scale = uniform(generator, 0.5, 8.0)
    temperature = uniform(generator, 0.3, 12.0)
    return torch.randn(n, c, generator=generator) * scale, temperature


def _kd_inputs(generator):
    student, temperature = _logits(generator)
    teacher = torch.randn(student.shape, generator=generator) * 4
    targets = torch.randint(0, student.shape[1], (student.shape[0],), generator=generator)
    alpha = float(torch.rand(1, generator=generator))
    return student, teacher, targets, temperature, alpha


def _describe_logits(args):
    return f"logits of shape {tuple(args[0].shape)} at T = {args[1]:.2f}"


def _describe_kd(args):
    return f"a batch of {args[0].shape[0]} x {args[0].shape[1]} logits at T = {args[3]:.2f}, alpha = {args[4]:.2f}"


def _reference_kd(s, t, y, temperature, alpha):
    return kd_loss(s, t, y, temperature=temperature, alpha=alpha)


def _kd_variant(s, t, y, T, alpha, *, t2=True, reduction="batchmean", teacher=None, student=None):
    q_t = soft_targets(t, temperature=T) if teacher is None else teacher
    log_s = F.log_softmax(s / T, dim=1) if student is None else student
    kl = F.kl_div(log_s, q_t, reduction=reduction)
    return alpha * (T ** 2 if t2 else 1.0) * kl + (1 - alpha) * F.cross_entropy(s, y)


def _smoothing_inputs(generator):
    n = integer(generator, 1, 16)
    c = integer(generator, 2, 12)
    return torch.randint(0, c, (n,), generator=generator), c, uniform(generator, 0.02, 0.5)


def _onehot(y, c):
    return F.one_hot(y, c).float()


ITEMS = [
    FunctionItem(
        "02.soft_targets", points=2,
        prompt="soft_targets(logits, temperature) -> softmax(logits / T) along the last dimension.",
        reference=lambda z, T: soft_targets(z, temperature=T), inputs=_logits, describe=_describe_logits,
        rtol=1e-4, atol=1e-6,
        wrong=[
            (lambda z, T: torch.softmax(torch.softmax(z, -1) / T, -1),
             "you applied the temperature to probabilities (softmax(p / T)); T divides the logits"),
            (lambda z, T: torch.softmax(z * T, -1),
             "you multiplied the logits by T; divide them: a higher T must give a flatter distribution"),
            (lambda z, T: torch.softmax(z, -1),
             "the temperature is missing: at T != 1 the result must change"),
            (lambda z, T: torch.softmax(z, -1) ** (1 / T),
             "p^(1/T) must be renormalised to sum to 1 (it then equals softmax(z / T))"),
            (lambda z, T: torch.softmax(z / T, 0),
             "you normalised over the batch dimension; normalise over the classes (the last dimension)"),
        ],
    ),
    FunctionItem(
        "02.kd_loss", points=3,
        prompt="kd_loss(student_logits, teacher_logits, targets, temperature, alpha) -> "
               "alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y), "
               "KL averaged over the batch.",
        reference=_reference_kd, inputs=_kd_inputs, describe=_describe_kd, rtol=1e-4, atol=1e-5,
        wrong=[
            (lambda s, t, y, T, a: _kd_variant(s, t, y, T, a, t2=False),
             "the T^2 factor is missing: without it the soft term's gradient shrinks like 1/T^2"),
            (lambda s, t, y, T, a: _kd_variant(s, t, y, T, a, reduction="mean"),
             "reduction='mean' divides by batch x classes; KL per example is a sum over classes, "
             "then average over the batch ('batchmean')"),
            (lambda s, t, y, T, a: _kd_variant(s, t, y, T, a, teacher=soft_targets(torch.softmax(t, 1), temperature=T)),
             "you softened the teacher's probabilities (softmax(p / T)); T divides the teacher's logits"),
            (lambda s, t, y, T, a: _kd_variant(s, t, y, T, a, student=F.log_softmax(torch.softmax(s / T, 1), 1)),
             "softmax applied twice on the student side: F.kl_div wants the student's log-probabilities, "
             "log_softmax(s / T), once"),
            (lambda s, t, y, T, a: _kd_variant(s, t, y, T, a, student=torch.softmax(s / T, 1)),
             "F.kl_div's first argument must be log-probabilities; you passed probabilities"),
            (lambda s, t, y, T, a: _kd_variant(s, t, y, T, 1 - a),
             "alpha weighs the soft term and (1 - alpha) the cross-entropy; you swapped them"),
            (lambda s, t, y, T, a: a * T ** 2 * F.kl_div(F.log_softmax(t / T, 1), soft_targets(s, temperature=T),
                                                          reduction="batchmean")
             + (1 - a) * F.cross_entropy(s, y),
             "the KL runs the wrong way: it is KL(teacher || student), the teacher's distribution is the target"),
            (lambda s, t, y, T, a: _kd_variant(s, t, y, T, a, student=F.log_softmax(s, 1)),
             "soften the student with the same T as the teacher: log_softmax(s / T)"),
        ],
    ),
    FunctionItem(
        "02.smoothed_targets", points=2,
        prompt="smoothed_targets(targets, num_classes, epsilon) -> (N, C) float targets "
               "(1 - epsilon) * onehot(y) + epsilon / C: epsilon / C on every class, the true one too "
               "(PyTorch's F.cross_entropy(..., label_smoothing=epsilon)).",
        reference=lambda y, c, eps: smoothed_targets(y, c, epsilon=eps), inputs=_smoothing_inputs,
        describe=lambda a: f"{len(a[0])} labels, C = {a[1]}, epsilon = {a[2]:.3f}", rtol=1e-5, atol=1e-6,
        wrong=[
            (lambda y, c, eps: (1 - eps) * _onehot(y, c) + eps / (c - 1) * (1 - _onehot(y, c)),
             "that is the other convention, epsilon / (C - 1) on the wrong classes only and 1 - epsilon on the "
             "true one; graded here is PyTorch's (label_smoothing=epsilon in F.cross_entropy, the loss the "
             "lesson's teachers trained with): epsilon / C on every class, so the true class gets "
             "1 - epsilon + epsilon / C"),
            (lambda y, c, eps: _onehot(y, c) + eps / c,
             "the true class must give up epsilon: (1 - epsilon) * onehot(y) + epsilon / C; your rows sum to 1 + epsilon"),
            (lambda y, c, eps: (1 - eps) * _onehot(y, c) + eps / c * (1 - _onehot(y, c)),
             "epsilon / C goes to the true class too; your rows sum to 1 - epsilon / C"),
            (lambda y, c, eps: (1 - eps) * _onehot(y, c) + eps,
             "spread epsilon over the C classes: add epsilon / C, not epsilon"),
            (lambda y, c, eps: eps * _onehot(y, c) + (1 - eps) / c,
             "epsilon and 1 - epsilon are swapped: the label keeps 1 - epsilon, the uniform part gets epsilon"),
        ],
    ),
    ChoiceItem(
        "02.gradient_factor", points=1,
        prompt="Which factor on KL(q_t(T) || q_s(T)) keeps the gradient norm of the soft term level "
               "as T grows? Measure it.",
        options=["1", "T", "T**2", "1/T**2"], answer="T**2",
        hints={"1": "measure: without a factor the gradient norm falls as T grows; by how much from T=4 to T=16?",
               "T": "measure the fall from T=4 to T=16 without a factor: 4x in T, how many x in gradient?",
               "1/T**2": "that makes the fall steeper still; the factor must undo the fall"},
    ),
]
