"""The references of the graded items 01.bane_targets, 02.smoothed_targets and 09.dml_loss
agree with formulas written out here and with what kdlab trains with, and each usual mistake
gets its own hint."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.distill import Distiller
from kdlab.grading import registry
from kdlab.grading.registry import close


def _item(item_id):
    return registry.all_items()[item_id]


def _each_mistake_gets_its_hint(item, seed=0):
    cases = item.cases(seed)
    for variant, hint in item.wrong:
        answers = [variant(*args) for args in cases]
        assert item._hint(cases, answers) == hint


def test_smoothed_targets_reference_is_pytorch_label_smoothing():
    item = _item("02.smoothed_targets")
    for y, c, eps in item.cases(1):
        t = item.reference(y, c, eps)
        expected = torch.full((len(y), c), eps / c)
        expected[torch.arange(len(y)), y] += 1 - eps
        assert torch.allclose(t, expected, atol=1e-6)
        assert torch.allclose(t.sum(1), torch.ones(len(y)), atol=1e-6)
        z = torch.randn(len(y), c)
        assert torch.allclose(-(t * z.log_softmax(1)).sum(1).mean(), F.cross_entropy(z, y, label_smoothing=eps),
                              atol=1e-5)
    _each_mistake_gets_its_hint(item)


def test_bane_targets_reference_is_what_a_bane_generation_is_distilled_from():
    item = _item("01.bane_targets")
    for z, T in item.cases(2):
        q = item.reference(z, T)
        mean = z.mean(0) / T
        assert torch.allclose(q, mean.exp() / mean.exp().sum(1, keepdim=True), atol=1e-5)
    # the Distiller with several teachers (born_again(..., ensemble=True)) trains against the same targets
    torch.manual_seed(0)
    teachers = [nn.Linear(5, 4) for _ in range(3)]
    x = torch.randn(7, 5)
    z = torch.stack([t(x) for t in teachers]).detach()
    student = nn.Linear(5, 4)
    loss = Distiller(student, teachers, temperature=3.0, alpha=1.0).objective(student, (x, torch.zeros(7, dtype=torch.long)))
    q = item.reference(z, 3.0)
    expected = 9.0 * F.kl_div(F.log_softmax(student(x) / 3.0, 1), q, reduction="batchmean")
    assert torch.allclose(loss, expected, atol=1e-5)
    _each_mistake_gets_its_hint(item)


def _dml_by_hand(z1, z2, y, T):
    """L1 + L2 written out: CE + T^2 * sum_c p_j,c (log p_j,c - log p_k,c) / N, the peer detached."""
    def one(me, peer):
        p = torch.softmax(peer.detach() / T, 1)
        kl = (p * (p.log() - torch.log_softmax(me / T, 1))).sum(1).mean()
        return F.cross_entropy(me, y) + T ** 2 * kl
    return one(z1, z2) + one(z2, z1)


def test_dml_loss_reference_value_and_gradient():
    item = _item("09.dml_loss")
    for z1, z2, y, T in item.cases(3):
        loss, grad = item.reference(z1, z2, y, T)
        a = z1.clone().requires_grad_(True)
        expected = _dml_by_hand(a, z2, y, T)
        expected.backward()
        assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5, abs_tol=1e-6)
        assert torch.allclose(grad, a.grad, atol=1e-5)
        # the gradient in closed form: (softmax(z1) - onehot) / N + T (p1 - p2) / N
        n = len(y)
        closed = (torch.softmax(z1, 1) - F.one_hot(y, z1.shape[1])) / n + T * (
            torch.softmax(z1 / T, 1) - torch.softmax(z2 / T, 1)) / n
        assert torch.allclose(grad, closed, atol=1e-5)
    _each_mistake_gets_its_hint(item)


def test_dml_loss_through_the_peer_differs_only_in_the_gradient():
    item = _item("09.dml_loss")
    through_peer = item.wrong[0][0]
    for args in item.cases(4)[:5]:
        ref, wrong = item.reference(*args), through_peer(*args)
        assert close(ref[0], wrong[0], 1e-5, 1e-6) and not close(ref[1], wrong[1], 1e-4, 1e-5)
