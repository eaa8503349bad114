"""The graded item 12.synflow_scores: its reference is kdlab.prune.SynFlow's scores, which equal the
path sums of the absolute-valued network written out here, and every usual mistake gets its hint."""
from __future__ import annotations

import torch

from kdlab.grading import registry


def path_sum_scores(weights):
    """|W_l| * (b_l a_{l-1}^T): a_0 = 1, a_l = |W_l| a_{l-1} (ReLU is the identity on >= 0 values);
    b_L = 1, b_{l-1} = |W_l|^T b_l."""
    absolute = [w.double().abs() for w in weights]
    forward = [torch.ones(weights[0].shape[1], dtype=torch.float64)]
    for w in absolute:
        forward.append(w @ forward[-1])
    backward = [torch.ones(weights[-1].shape[0], dtype=torch.float64)]
    for w in reversed(absolute):
        backward.insert(0, w.T @ backward[0])
    return [w * torch.outer(b, a) for w, a, b in zip(absolute, forward, backward[1:])]


def test_synflow_reference_is_the_path_sum_of_the_absolute_network():
    item = registry.all_items()["12.synflow_scores"]
    for weights, x in item.cases(0):
        for got, expected in zip(item.reference(weights, x), path_sum_scores(weights)):
            torch.testing.assert_close(got, expected)


def test_each_usual_mistake_is_told_apart_from_the_reference():
    item = registry.all_items()["12.synflow_scores"]
    cases = item.cases(1)
    for variant, hint in item.wrong:
        answers = [variant(*args) for args in cases]
        assert item._hint(cases, answers) == hint
    assert item._hint(cases, [item.reference(*args) for args in cases]) is None
