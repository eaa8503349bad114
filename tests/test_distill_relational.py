"""Relational KD (Park et al. 2019) against the paper's definitions written as explicit loops."""
import itertools

import pytest
import torch

from kdlab import distill


def _huber(a, b):
    d = (a - b).abs()
    return torch.where(d < 1, 0.5 * d ** 2, d - 0.5)


def _distance_reference(s, t):
    n = len(s)
    pairs = [(i, j) for i, j in itertools.product(range(n), repeat=2) if i != j]
    mu_s = sum((s[i] - s[j]).norm() for i, j in pairs) / len(pairs)
    mu_t = sum((t[i] - t[j]).norm() for i, j in pairs) / len(pairs)
    total = sum(_huber((s[i] - s[j]).norm() / mu_s, (t[i] - t[j]).norm() / mu_t) for i, j in pairs)
    return total / n ** 2  # the diagonal pairs are 0 on both sides and count in the mean


def _angle_reference(s, t):
    n = len(s)

    def cos(e, i, j, k):
        return torch.dot((e[i] - e[j]) / (e[i] - e[j]).norm(), (e[k] - e[j]) / (e[k] - e[j]).norm())

    triples = [(i, j, k) for i, j, k in itertools.product(range(n), repeat=3) if i != j and k != j]
    return sum(_huber(cos(s, i, j, k), cos(t, i, j, k)) for i, j, k in triples) / n ** 3


@pytest.mark.parametrize("loss, reference", [(distill.rkd_distance_loss, _distance_reference),
                                             (distill.rkd_angle_loss, _angle_reference)])
def test_value_and_gradient_match_the_definition(loss, reference):
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 7, generator=gen, dtype=torch.float64)  # another width: only relations are compared
    got = loss(s, t)
    want = reference(s, t)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-9)
    g_got, = torch.autograd.grad(got, s)
    g_want, = torch.autograd.grad(reference(s, t), s)
    torch.testing.assert_close(g_got, g_want)
    assert torch.isfinite(g_got).all()


def test_relations_ignore_scale_rotation_and_shift():
    gen = torch.Generator().manual_seed(1)
    t = torch.randn(6, 4, generator=gen)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen))
    s = 3.0 * t @ q + 1.5
    assert float(distill.rkd_loss(s, t)) == pytest.approx(0.0, abs=1e-5)
    assert float(distill.rkd_loss(torch.randn(6, 4, generator=gen), t)) > 0.1


def test_the_teacher_gets_no_gradient_and_the_weights_add_up():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    total = distill.rkd_loss(s, t, distance_weight=2.0, angle_weight=3.0)
    total.backward()
    assert t.grad is None and s.grad is not None
    expected = 2.0 * distill.rkd_distance_loss(s, t) + 3.0 * distill.rkd_angle_loss(s, t)
    assert float(total.detach()) == pytest.approx(float(expected.detach()))


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="same batch, got 4 and 5"):
        distill.rkd_distance_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 3 examples, got 2"):
        distill.rkd_angle_loss(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"batches of embeddings \(N, D\)"):
        distill.rkd_distance_loss(torch.randn(4), torch.randn(4))
    with pytest.raises(TypeError, match="student must be a floating-point tensor"):
        distill.rkd_loss(torch.ones(4, 3, dtype=torch.long), torch.randn(4, 3))
    with pytest.raises(ValueError, match="angle_weight must be"):
        distill.rkd_loss(torch.randn(4, 3), torch.randn(4, 3), angle_weight=-1.0)
