"""The references of the graded items 07.chain_steps and 11.attention_map agree with what
kdlab.distill.distill_chain trains and with attention maps written out by hand, and each usual
mistake gets its own hint."""
from __future__ import annotations

import math

import torch
from torch import nn

from kdlab.distill import attention_transfer_loss, distill_chain
from kdlab.grading import registry
from kdlab.train import seed_everything


def _mistakes_get_their_hints(item, seed=0):
    for variant, hint in item.wrong:
        assert item._hint(item.cases(seed), [variant(*args) for args in item.cases(seed)]) == hint
    assert item._hint(item.cases(seed), [item.reference(*args) for args in item.cases(seed)]) is None


def test_chain_steps_reference_counts_the_steps_distill_chain_takes():
    item = registry.all_items()["07.chain_steps"]
    seed_everything(0)
    x, y = torch.randn(70, 5), torch.randint(0, 3, (70,))
    teacher = nn.Linear(5, 3)
    for assistants, batch_size, epochs in ((1, 32, 2), (2, 64, 1), (0, 16, 3)):
        models = [nn.Linear(5, 3) for _ in range(assistants + 1)]
        chain = distill_chain(teacher, models, (x, y), epochs=epochs, batch_size=batch_size,
                              distiller={"temperature": 2.0, "cache_teacher": True}, progress=False)
        assert sum(g.history.steps for g in chain) == item.reference(70, batch_size, epochs, assistants)
        assert item.reference(70, batch_size, epochs, assistants) == (assistants + 1) * epochs * math.ceil(70 / batch_size)


def test_chain_steps_mistakes_get_their_hints():
    _mistakes_get_their_hints(registry.all_items()["07.chain_steps"])


def test_attention_map_reference_matches_a_map_written_out():
    item = registry.all_items()["11.attention_map"]
    for features, p in item.cases(1):
        n, c, h, w = features.shape
        expected = torch.zeros(n, h * w)
        for i in range(n):
            q = sum(features[i, k].abs() ** p for k in range(c)).reshape(-1)
            expected[i] = q / math.sqrt(float((q * q).sum()))
        assert torch.allclose(item.reference(features, p), expected, atol=1e-6)
        for i in range(n):
            assert abs(float(item.reference(features, p)[i].norm()) - 1.0) < 1e-5


def test_attention_map_is_what_attention_transfer_compares():
    item = registry.all_items()["11.attention_map"]
    torch.manual_seed(0)
    s, t = torch.randn(4, 3, 5, 5), torch.randn(4, 7, 5, 5)
    d = item.reference(s, 2.0) - item.reference(t, 2.0)
    assert torch.allclose(attention_transfer_loss(s, t, beta=3.0), 1.5 * d.norm(dim=1).mean(), atol=1e-6)


def test_attention_map_mistakes_get_their_hints():
    _mistakes_get_their_hints(registry.all_items()["11.attention_map"])
