"""Lesson 10 (where pruning applies): what filter pruning does to FLOPs, what
unstructured pruning does to latency, and when pruning regularises."""
from __future__ import annotations

from kdlab.grading.registry import ChoiceItem
from kdlab.grading.shared import digits, flops_ratio_item, trained


def _cnns():
    """cnn-teacher with 70% of its channels removed, the dense cnn-teacher, one test image."""
    from kdlab.prune import structured_prune

    cnn, example = trained("cnn-teacher", flat=False), digits(flat=False).x_test[:1]
    return structured_prune(cnn, 0.7, example), cnn, example


ITEMS = [
    flops_ratio_item(
        "10.flops_ratio", abs_tol=0.005,
        prompt="FLOPs of kdlab.models.pretrained('cnn-teacher') after prune.structured_prune(cnn, 0.7, x) "
               "divided by the dense model's FLOPs (a fraction).",
        models=_cnns,
        wrong=[(1.0, "that is what unstructured pruning leaves; measure the structured copy"),
               (0.3, "FLOPs do not fall in proportion to the channels kept: a conv that loses input AND "
                     "output channels keeps about 0.3 x 0.3 of its work; measure it")],
        hint="evaluate.flops(small, x) / evaluate.flops(cnn, x) with x = split.x_test[:1]",
    ),
    ChoiceItem(
        "10.unstructured_speed", points=1,
        prompt="On dense CPU kernels, how does the latency of a 90%-unstructured-sparse CNN compare "
               "with the dense CNN's?",
        options=["about the same", "about 10x lower", "about 2x lower"], answer="about the same",
        hints={"about 10x lower": "time both with evaluate.latency: the zeros are still multiplied",
               "about 2x lower": "time both with evaluate.latency, in interleaved rounds"},
    ),
    ChoiceItem(
        "10.regulariser_regime", points=1,
        prompt="In lesson 10's experiment (a 64-1024-10 MLP on 150 digits), where did pruning to 80% "
               "during training raise the test accuracy over the seeds?",
        options=["clean labels", "30% wrong labels", "both", "neither"], answer="30% wrong labels",
        hints={"clean labels": "with clean labels the 80%-sparse model was slightly worse on average",
               "both": "compare the clean-label means: no gain there",
               "neither": "compare the noisy-label means at sparsity 0 and 0.8, seed by seed"},
    ),
]
