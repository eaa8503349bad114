"""Lesson 01 (the KD principle): the soft term, paired differences over seeds, where KD helps."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdlab.distill import kd_loss, multi_teacher_targets, soft_targets
from kdlab.evaluate import mean_std
from kdlab.grading.registry import ChoiceItem, FunctionItem
from kdlab.grading.shared import integer, uniform


def _soft_inputs(generator):
    n = integer(generator, 1, 16)
    c = integer(generator, 2, 12)
    temperature = uniform(generator, 0.5, 12.0)
    return torch.randn(n, c, generator=generator) * 3, torch.randn(n, c, generator=generator) * 5, temperature


def _kl(s, t, T, reduction="batchmean"):
    return F.kl_div(F.log_softmax(s / T, 1), soft_targets(t, temperature=T), reduction=reduction)


def _accuracies(generator):
    n = integer(generator, 2, 8)
    alone = (0.85 + 0.1 * torch.rand(n, generator=generator)).tolist()
    kd = [a + float(d) for a, d in zip(alone, 0.03 * torch.randn(n, generator=generator))]
    return alone, kd


def _paired(alone, kd):
    return list(mean_std([k - a for a, k in zip(alone, kd)]))


def _unpaired(alone, kd):
    (ma, sa), (mk, sk) = mean_std(alone), mean_std(kd)
    return [mk - ma, math.sqrt(sa ** 2 + sk ** 2)]


def _population_std(alone, kd):
    d = torch.tensor([k - a for a, k in zip(alone, kd)], dtype=torch.float64)
    return [d.mean().item(), d.std(correction=0).item()]


def _generation_inputs(generator):
    g = integer(generator, 2, 5)
    n = integer(generator, 1, 12)
    c = integer(generator, 2, 10)
    return torch.randn(g, n, c, generator=generator) * 4, uniform(generator, 0.5, 8.0)


def _bane(z, T):
    return multi_teacher_targets(list(z), temperature=T, mode="logits")


ITEMS = [
    FunctionItem(
        "01.soft_term", points=2,
        prompt="soft_term(student_logits, teacher_logits, temperature) -> T^2 * KL(q_t || q_s), "
               "q = softmax(z / T), summed over classes and averaged over the batch.",
        reference=lambda s, t, T: kd_loss(s, t, None, temperature=T), inputs=_soft_inputs,
        describe=lambda a: f"logits of shape {tuple(a[0].shape)} at T = {a[2]:.2f}", rtol=1e-4, atol=1e-5,
        wrong=[
            (lambda s, t, T: _kl(s, t, T), "the T^2 factor is missing"),
            (lambda s, t, T: T ** 2 * _kl(s, t, T, "mean"),
             "you averaged over batch x classes ('mean'); sum over classes, average over the batch"),
            (lambda s, t, T: T ** 2 * F.kl_div(F.log_softmax(t / T, 1), soft_targets(s, temperature=T),
                                               reduction="batchmean"),
             "the KL runs the wrong way: the teacher's distribution is the target, KL(q_t || q_s)"),
            (lambda s, t, T: T * _kl(s, t, T), "the factor is T squared, not T"),
            (lambda s, t, T: T ** 2 * F.kl_div(F.log_softmax(s, 1), soft_targets(t, temperature=T),
                                               reduction="batchmean"),
             "soften the student with the same T as the teacher"),
        ],
    ),
    FunctionItem(
        "01.paired_difference", points=2,
        prompt="paired_difference(alone, kd) -> [mean, std] of the per-seed differences kd[i] - alone[i], "
               "std with Bessel's correction (n - 1).",
        reference=_paired, inputs=_accuracies, rtol=1e-6, atol=1e-9,
        describe=lambda a: f"{len(a[0])} seeds",
        wrong=[
            (_unpaired, "you compared the two means and combined their spreads; pair the runs of the same seed "
                        "first, then take the mean and std of the differences"),
            (_population_std, "use the sample standard deviation (divide by n - 1), as torch.std does by default"),
            (lambda a, k: [-v if i == 0 else v for i, v in enumerate(_paired(a, k))],
             "the difference is kd - alone: positive when KD helps"),
        ],
    ),
    FunctionItem(
        "01.bane_targets", points=2,
        prompt="bane_targets(generation_logits, temperature) -> the soft targets that the next BANE generation "
               "learns from: generation_logits is (G, N, C), the logits of generations 0 .. G-1 on a batch; "
               "average them over the generations, then softmax(mean / T) over the classes "
               "(born_again(..., ensemble=True) with the Distiller's default multi_teacher_mode='logits').",
        reference=_bane, inputs=_generation_inputs, rtol=1e-4, atol=1e-6,
        describe=lambda a: f"{a[0].shape[0]} generations, logits {tuple(a[0].shape[1:])}, T = {a[1]:.2f}",
        wrong=[
            (lambda z, T: soft_targets(z[-1], temperature=T),
             "that is plain BAN, the last generation alone; BANE learns from all generations before it"),
            (lambda z, T: soft_targets(z[0], temperature=T),
             "that is generation 0 alone; average all G generations"),
            (lambda z, T: soft_targets(z, temperature=T).mean(0),
             "you averaged the softened probabilities (mode='probs'); here the logits are averaged first, then "
             "softened, as the Distiller does by default"),
            (lambda z, T: torch.softmax(z.mean(0), -1),
             "the temperature is missing: divide the mean logits by T before the softmax"),
            (lambda z, T: soft_targets(z.sum(0), temperature=T),
             "you summed the logits: with G generations that is G times sharper; take the mean"),
            (lambda z, T: torch.softmax(z.mean(0) / T, 0),
             "normalise over the classes (the last dimension), not over the batch"),
        ],
    ),
    ChoiceItem(
        "01.kd_helps_when", points=1,
        prompt="Run the experiment: in which regime does KD beat the same student trained alone on "
               "every seed?",
        options=["all labels", "few labels + unlabelled data", "both", "neither"],
        answer="few labels + unlabelled data",
        hints={"all labels": "look at the paired differences with all labels: do they all have the same sign?",
               "both": "with all labels, are all the paired differences positive?",
               "neither": "look at the few-label regime again: what do the differences look like there?"},
    ),
]
