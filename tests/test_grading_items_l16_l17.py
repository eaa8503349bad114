"""The references of the graded items 16.bn_statistic_loss and 17.reverse_kl agree with
kdlab.distill.bn_statistics_loss and kdlab.distill.token_kl, and with the formulas
written out here."""
from __future__ import annotations

import torch
from torch import nn

from kdlab.distill import bn_statistics_loss, token_kl
from kdlab.grading import registry


def test_bn_statistic_loss_reference_is_the_library_term_of_one_batchnorm_layer():
    item = registry.all_items()["16.bn_statistic_loss"]
    for features, mean, var in item.cases(3):
        channels = features.shape[1]
        norm = (nn.BatchNorm1d if features.ndim == 2 else nn.BatchNorm2d)(channels).eval()
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        _, library = bn_statistics_loss(norm, features)
        assert torch.allclose(item.reference(features, mean, var), library, rtol=1e-5, atol=1e-6)


def test_bn_statistic_loss_reference_by_hand():
    item = registry.all_items()["16.bn_statistic_loss"]
    # one channel, values 0, 2 (batch 2, no positions): mean 1, biased variance 1
    f = torch.tensor([[0.0], [2.0]])
    assert abs(item.reference(f, torch.tensor([0.0]), torch.tensor([0.0])).item() - 2.0) < 1e-6
    assert abs(item.reference(f, torch.tensor([1.0]), torch.tensor([1.0])).item()) < 1e-6
    # two channels: |(1, 1) - (0, 0)| + |(1, 1) - (0, 0)| = 2 sqrt 2
    f2 = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    assert abs(item.reference(f2, torch.zeros(2), torch.zeros(2)).item() - 2 * 2 ** 0.5) < 1e-5


def test_reverse_kl_reference_against_the_written_formula():
    item = registry.all_items()["17.reverse_kl"]
    for s, t in item.cases(5):
        p_s, p_t = torch.softmax(s.double(), -1), torch.softmax(t.double(), -1)
        expected = (p_s * (p_s.log() - p_t.log())).sum()
        assert abs(item.reference(s, t).item() - expected.item()) < 1e-5
        assert abs(item.reference(s, t).item() - token_kl(s[None], t[None], direction="reverse").item()) < 1e-6


def test_each_mistake_gets_its_hint():
    for item_id in ("16.bn_statistic_loss", "17.reverse_kl"):
        item = registry.all_items()[item_id]
        assert registry.check(item_id, item.reference)
        for wrong, hint in item.wrong:
            verdict = registry.check(item_id, wrong)
            assert not verdict
            assert hint[:40] in repr(verdict)
