"""Lesson 09 (where KD applies): pseudo-labels, deployment ratios, what KD avoids, deep mutual learning."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from kdlab.distill import UNLABELLED, mutual_learning_loss
from kdlab.grading.registry import ChoiceItem, FunctionItem
from kdlab.grading.shared import flops_ratio_item, integer, uniform


def _pseudo_inputs(generator):
    n = integer(generator, 2, 39)
    c = integer(generator, 2, 10)
    targets = torch.randint(0, c, (n,), generator=generator)
    hidden = torch.rand(n, generator=generator) < torch.rand(1, generator=generator)
    targets[hidden] = UNLABELLED
    return targets, torch.randn(n, c, generator=generator) * 3


def _pseudo_labels(targets, teacher_logits):
    return torch.where(targets == UNLABELLED, teacher_logits.argmax(1), targets)


def _mlps():
    from kdlab.models import create

    return create("lenet-300-100"), create("mlp-student"), torch.zeros(1, 64)


@lru_cache(maxsize=None)
def _parameter_ratio() -> float:
    from kdlab.evaluate import count_parameters

    with torch.random.fork_rng(devices=[]):
        big, small, _ = _mlps()
        return count_parameters(big) / count_parameters(small)


def _dml_inputs(generator):
    n = integer(generator, 1, 12)
    c = integer(generator, 2, 10)
    z1, z2 = (torch.randn(n, c, generator=generator) * 3 for _ in range(2))
    return z1, z2, torch.randint(0, c, (n,), generator=generator), uniform(generator, 0.5, 6.0)


def _with_gradient(total):
    """[L, dL/dz1] of ``total(z1, z2, y, T)`` for the grader (the value and the gradient it gives)."""
    def run(z1, z2, y, T):
        z1, z2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        loss = total(z1, z2, y, T)
        return [loss.detach(), torch.autograd.grad(loss, z1)[0]]
    return run


def _dml_reference(z1, z2, y, T):
    return mutual_learning_loss(torch.stack([z1, z2]), y, temperature=T)


def _dml_variant(z1, z2, y, T, *, detach=True, t2=True, peer=None, reverse=False, per_class=False):
    """L1 + L2 with one of the usual mistakes."""
    total = 0
    for me, other in ((z1, z2), (z2, z1)):
        log_me = F.log_softmax(me / T, 1)
        target = other.detach() if detach else other
        if peer == "logits":
            kl = F.kl_div(log_me, target / T, reduction="batchmean", log_target=True)
        elif reverse:
            kl = F.kl_div(F.log_softmax(target / T, 1), log_me, reduction="batchmean", log_target=True)
        else:
            kl = F.kl_div(log_me, F.log_softmax(target / T, 1), reduction="batchmean", log_target=True)
        kl = kl / me.shape[1] if per_class else kl   # reduction="mean": divided by batch x classes
        total = total + F.cross_entropy(me, y) + (T ** 2 if t2 else 1.0) * kl
    return total


ITEMS = [
    FunctionItem(
        "09.pseudo_labels", points=2,
        prompt="pseudo_labels(targets, teacher_logits) -> targets where known, the teacher's argmax where "
               "targets == UNLABELLED (-1).",
        reference=_pseudo_labels, inputs=_pseudo_inputs,
        describe=lambda a: f"{len(a[0])} targets, {int((a[0] == UNLABELLED).sum())} unlabelled",
        wrong=[
            (lambda t, z: z.argmax(1), "keep the true labels where they are known; use the teacher only elsewhere"),
            (lambda t, z: t, "replace the UNLABELLED entries (-1) with the teacher's prediction"),
            (lambda t, z: torch.where(t == UNLABELLED, z.argmin(1), t), "the teacher's prediction is the argmax"),
        ],
    ),
    flops_ratio_item(
        "09.flops_ratio", rel_tol=0.005,
        prompt="FLOPs per digit of lenet-300-100 divided by those of mlp-student (kdlab.evaluate.flops).",
        models=_mlps, inverted="divide the larger model's FLOPs by the smaller one's",
        wrong=[(_parameter_ratio, "that is the parameter ratio; measure FLOPs with kdlab.evaluate.flops")],
        hint="measure both with kdlab.evaluate.flops(model, torch.zeros(1, 64)) and divide",
    ),
    FunctionItem(
        "09.dml_loss", points=2,
        prompt="dml_loss(z1, z2, y, T) -> [L, dL/dz1] for two students of deep mutual learning: L = L1 + L2, "
               "L_k = CE(z_k, y) + T^2 * KL(p_j || p_k), p = softmax(z / T), KL averaged over the batch, the peer's "
               "p_j a fixed target in L_k (not differentiated there); dL/dz1 by torch.autograd.grad.",
        reference=_with_gradient(_dml_reference), inputs=_dml_inputs, rtol=1e-4, atol=1e-5,
        describe=lambda a: f"two students' logits {tuple(a[0].shape)}, T = {a[3]:.2f}",
        wrong=[
            (_with_gradient(lambda *a: _dml_variant(*a, detach=False)),
             "the loss is right but its gradient is not: you differentiated through the peer. In L_k the peer's "
             "probabilities are a fixed target (detach them), so L2 sends no gradient to z1"),
            (_with_gradient(lambda *a: _dml_variant(*a, t2=False)),
             "the T^2 factor on the KL term is missing"),
            (_with_gradient(lambda *a: _dml_variant(*a, peer="logits")),
             "the target of the KL must be the peer's distribution: softmax(z_j / T) (or log_softmax with "
             "log_target=True), not its logits z_j / T"),
            (_with_gradient(lambda *a: _dml_variant(*a, reverse=True)),
             "the KL runs the wrong way: the peer's distribution is the target, KL(p_j || p_k)"),
            (_with_gradient(lambda *a: _dml_variant(*a, per_class=True)),
             "reduction='mean' divides by batch x classes; sum the KL over the classes, average over the batch"),
            (_with_gradient(lambda z1, z2, y, T: _dml_variant(z1, z2, y, T) - F.cross_entropy(z2, y)
                            - T ** 2 * F.kl_div(F.log_softmax(z2 / T, 1), F.log_softmax(z1.detach() / T, 1),
                                                reduction="batchmean", log_target=True)),
             "that is L1 alone; return the cohort's total L1 + L2"),
        ],
    ),
    ChoiceItem(
        "09.what_kd_avoids", points=1,
        prompt="In the few-label scenario and the model update, what did distillation avoid?",
        options=["training", "labelling", "both", "neither"], answer="labelling",
        hints={"training": "was the student trained in the update? Count its epochs.",
               "both": "the student was trained in every run, the update included",
               "neither": "how many labels did the runs use, and how many images did the student learn from?"},
    ),
]
