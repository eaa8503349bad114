"""The references of the graded items 05.lowrank_error and 14.nm_mask agree with what
kdlab.lowrank and kdlab.prune build."""
from __future__ import annotations

import torch
from torch import nn

from kdlab import lowrank, prune
from kdlab.grading import registry


def test_lowrank_error_reference_is_the_error_of_the_factorised_layer():
    item = registry.all_items()["05.lowrank_error"]
    torch.manual_seed(0)
    layer = nn.Linear(12, 9)
    s = torch.linalg.svdvals(layer.weight.detach())
    for rank in (1, 4, 8):
        thin = lowrank.factorize_layer(layer, rank=rank)
        measured = torch.linalg.norm(layer.weight.detach().double() - (thin[1].weight @ thin[0].weight).detach().double())
        assert abs(item.reference(s, rank) - float(measured)) < 1e-4


def test_nm_mask_reference_keeps_n_of_every_m_along_the_inputs():
    item = registry.all_items()["14.nm_mask"]
    for w, n, m in item.cases(3):
        mask = item.reference(w, n, m)
        assert mask.shape == w.shape and mask.dtype == torch.bool
        assert prune.follows_nm(w * mask, n, m)
        assert int(mask.sum()) == w.numel() * n // m
