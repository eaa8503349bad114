"""Lesson 17 (KD beyond images): labelling a transfer set, the sequence task's size ratio,
the reverse KL of generative distillation."""
from __future__ import annotations

from functools import lru_cache

import torch

from kdlab.distill import token_kl, transfer_targets
from kdlab.grading.registry import FunctionItem, NumberItem
from kdlab.grading.shared import integer, uniform
from kdlab.models import MLP, GRUClassifier, TinyTransformer


def _teacher_inputs(generator):
    features = integer(generator, 2, 11)
    classes = integer(generator, 2, 7)
    teacher = MLP(features, (integer(generator, 4, 31),), classes, dropout=0.5)
    teacher.train()   # as a teacher often is after its own training loop
    x = torch.randn(integer(generator, 1, 19), features, generator=generator) * 2
    temperature = uniform(generator, 0.5, 10.0)
    return teacher, x, temperature


def _no_eval(teacher, x, T):
    with torch.no_grad():
        return torch.softmax(teacher(x) / T, 1)


def _dropout_hint(got, args):
    """A valid distribution that still disagrees: most often dropout left on in the teacher."""
    if isinstance(got, torch.Tensor) and got.shape == (len(args[1]), args[0].layers[-1].out_features) \
            and torch.allclose(got.sum(1), torch.ones(len(got)), atol=1e-4):
        return ("your rows are distributions but not the teacher's: put the teacher in eval mode "
                "(teacher.eval()) so dropout is off while labelling")
    return None


def _logit_rows(generator):
    vocab = integer(generator, 2, 12)
    scale = uniform(generator, 0.5, 4.0)
    return (torch.randn(vocab, generator=generator) * scale, torch.randn(vocab, generator=generator) * scale)


def _reverse_kl(student_logits, teacher_logits):
    return token_kl(student_logits[None], teacher_logits[None], direction="reverse")


def _forward_kl(s, t):
    return token_kl(s[None], t[None], direction="forward")


def _no_softmax(s, t):
    return (s * (s - t)).sum()


def _log_of_logits(s, t):
    p = torch.softmax(s, -1)
    return (p * (torch.log(s.abs() + 1e-12) - torch.log(t.abs() + 1e-12))).sum()


@lru_cache(maxsize=None)
def _ratio() -> float:
    with torch.random.fork_rng(devices=[]):
        teacher = TinyTransformer(6, 12, 6, d_model=32, heads=4, layers=2)
        student = GRUClassifier(input_size=8, hidden_size=16, num_classes=6, vocab=6)
    return sum(p.numel() for p in teacher.parameters()) / sum(p.numel() for p in student.parameters())


ITEMS = [
    FunctionItem(
        "17.soft_labels", points=2, n_cases=10,
        prompt="soft_labels(teacher, x, temperature) -> softmax(teacher(x) / T), the teacher in eval mode "
               "and without gradients.",
        reference=lambda t, x, T: transfer_targets(t, x, temperature=T), inputs=_teacher_inputs,
        describe=lambda a: f"an MLP teacher with dropout, {len(a[1])} inputs, T = {a[2]:.2f}", rtol=1e-5, atol=1e-6,
        wrong=[
            (lambda t, x, T: transfer_targets(t, x, temperature=T, hard=True),
             "return the soft targets (N, C), not the argmax"),
            (lambda t, x, T: transfer_targets(t, x, temperature=1.0), "divide the teacher's logits by T"),
        ],
        explain=lambda got, args: _dropout_hint(got, args),
    ),
    NumberItem(
        "17.param_ratio", points=1, rel_tol=0.005,
        prompt="Parameters of the lesson's sequence teacher (TinyTransformer(6, 12, 6, d_model=32, heads=4, "
               "layers=2)) divided by those of its student (GRUClassifier(8, 16, 6, vocab=6)).",
        target=_ratio,
        wrong=[(lambda: 1 / _ratio(), "divide the teacher's count by the student's")],
        hint="count both with kdlab.evaluate.count_parameters and divide",
    ),
    FunctionItem(
        "17.reverse_kl", points=2, n_cases=12,
        prompt="reverse_kl(student_logits, teacher_logits) -> scalar tensor: KL(p_S || p_T) = sum_v p_S(v) "
               "(log p_S(v) - log p_T(v)) for one position, p = softmax of each logit row (V,).",
        reference=_reverse_kl, inputs=_logit_rows,
        describe=lambda a: f"two logit rows over {len(a[0])} tokens", rtol=1e-4, atol=1e-6,
        wrong=[
            (_forward_kl, "that is the forward KL(p_T || p_S): the reverse one weights by the student's "
                          "probabilities p_S, not the teacher's"),
            (_no_softmax, "turn logits into probabilities first: p = softmax(z), log p = log_softmax(z)"),
            (_log_of_logits, "log p is log_softmax(z), not the log of the logits"),
        ],
    ),
]
