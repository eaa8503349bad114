"""The reference of the graded item 20.imp_sparsity is the sparsity kdlab.prune.lottery_ticket reaches."""
from __future__ import annotations

import torch

from kdlab import prune
from kdlab.grading import registry
from kdlab.models import MLP


def test_imp_sparsity_reference_is_the_measured_sparsity_of_the_rounds():
    item = registry.all_items()["20.imp_sparsity"]
    g = torch.Generator().manual_seed(0)
    data = torch.randn(64, 10, generator=g), torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(0)
    ticket = prune.lottery_ticket(lambda: MLP(in_features=10, hidden=(40, 20), num_classes=3), data, epochs=1,
                                  rounds=4, amount_per_round=0.3, progress=False)
    n = sum(m.numel() for m in ticket.masks.values())
    for r, masks in enumerate(ticket.round_masks, start=1):
        measured = sum(int((~m).sum()) for m in masks.values()) / n
        assert abs(item.reference(0.3, r) - measured) <= 0.5 / n


def test_imp_sparsity_hints_tell_the_usual_mistakes_apart():
    item = registry.all_items()["20.imp_sparsity"]
    cases = item.cases(0)
    assert all(0.05 <= p <= 0.8 and 1 <= r <= 10 for p, r in cases)
    answers = [p * r for p, r in cases]
    assert "of what is left" in item._hint(cases, answers)
    assert "fraction kept" in item._hint(cases, [(1 - p) ** r for p, r in cases])
    assert item._hint(cases, [1 - (1 - p) ** r for p, r in cases]) is None
