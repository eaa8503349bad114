import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

import kdlab
import kdlab._deprecation
import kdlab.evaluate
from kdlab import distill
from kdlab.distill import (Distiller, TeacherCache, attention_transfer_loss, compare_with_alone,
                           cosine_temperature, dkd_loss, dkd_terms, hint_loss, kd_loss, linear_temperature,
                           make_regressor, multi_teacher_targets, soft_targets, transfer_targets)
from kdlab.distill.losses import KDWeights
from kdlab.models import MLP, SmallCNN

FAST = settings(max_examples=25, deadline=None)


def logits_strategy(max_batch=6, max_classes=8, scale=20.0):
    return st.tuples(st.integers(1, max_batch), st.integers(2, max_classes), st.integers(0, 2**31 - 1),
                     st.floats(0.1, scale)).map(
        lambda a: torch.randn(a[0], a[1], generator=torch.Generator().manual_seed(a[2]), dtype=torch.float64) * a[3])


temperatures = st.floats(0.05, 50.0)


# ----------------------------------------------------------------- soft targets

@FAST
@given(logits_strategy(), temperatures)
def test_soft_targets_sum_to_one_and_shift_invariant(z, T):
    q = soft_targets(z, temperature=T)
    assert torch.allclose(q.sum(-1), torch.ones(len(z), dtype=z.dtype))
    assert (q >= 0).all()
    assert torch.allclose(soft_targets(z + 7.5, temperature=T), q, atol=1e-12)


@FAST
@given(logits_strategy())
def test_soft_targets_at_T1_is_softmax_and_differs_from_softmax_of_probs(z):
    assert torch.allclose(soft_targets(z, temperature=1.0), torch.softmax(z, -1))
    probs = torch.softmax(z, -1)
    # softening probabilities squeezes them into [0, 1]: nearly uniform, not the soft targets
    wrong = torch.softmax(probs / 4.0, -1)
    right = soft_targets(z, temperature=4.0)
    spread = z.max(-1).values - z.min(-1).values
    rows = spread > 1.0
    if rows.any():
        assert not torch.allclose(wrong[rows], right[rows], atol=1e-3)
    # renormalised p^(1/T) is the same thing as softmax(z / T)
    powered = probs ** (1 / 4.0)
    assert torch.allclose(powered / powered.sum(-1, keepdim=True), right, atol=1e-10)


def test_soft_targets_limits():
    z = torch.tensor([[3.0, 1.0, -2.0, 0.5]], dtype=torch.float64)
    assert torch.allclose(soft_targets(z, temperature=1e-3), torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64))
    assert torch.allclose(soft_targets(z, temperature=1e6), torch.full((1, 4), 0.25, dtype=torch.float64), atol=1e-5)
    entropies = [-(q * q.log()).sum().item() for q in (soft_targets(z, temperature=T) for T in (0.5, 1, 2, 4, 8))]
    assert entropies == sorted(entropies)


def test_top_level_reexports():
    assert kdlab.soft_targets is soft_targets and kdlab.kd_loss is kd_loss


# ----------------------------------------------------------------- kd_loss

def _reference_kd(s, t, y, T, alpha):
    q_t = torch.softmax(t / T, 1)
    p_s = torch.softmax(s / T, 1)
    kl = (q_t * (q_t.log() - p_s.log())).sum() / len(s)
    ce = -torch.log(torch.softmax(s, 1)[torch.arange(len(s)), y]).mean()
    return alpha * T ** 2 * kl + (1 - alpha) * ce


@FAST
@given(logits_strategy(scale=5.0), logits_strategy(scale=5.0), st.floats(0.5, 10.0), st.floats(0.0, 1.0),
       st.integers(0, 1000))
def test_kd_loss_matches_formula(s, t, T, alpha, seed):
    n, c = min(len(s), len(t)), min(s.shape[1], t.shape[1])
    s, t = s[:n, :c], t[:n, :c]
    y = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))
    got = kd_loss(s, t, y, temperature=T, alpha=alpha)
    assert torch.allclose(got, _reference_kd(s, t, y, T, alpha), rtol=1e-8, atol=1e-10)
    soft_only = kd_loss(s, t, temperature=T)
    assert torch.allclose(soft_only, _reference_kd(s, t, y, T, 1.0), rtol=1e-8, atol=1e-10)


@FAST
@given(logits_strategy(), temperatures)
def test_kd_soft_part_zero_when_student_equals_teacher(z, T):
    assert kd_loss(z, z.clone(), temperature=T).abs().item() < 1e-9
    assert kd_loss(z + 3.0, z, temperature=T).abs().item() < 1e-9  # only the distribution matters


def test_kd_loss_soft_gradient_scales_as_inverse_T_squared():
    torch.manual_seed(0)
    s0, t = torch.randn(16, 10, dtype=torch.float64), torch.randn(16, 10, dtype=torch.float64)
    norms_with, norms_without = {}, {}
    for T in (4.0, 8.0, 16.0, 32.0):
        s = s0.clone().requires_grad_()
        kd_loss(s, t, temperature=T).backward()
        norms_with[T] = s.grad.norm().item()
        norms_without[T] = norms_with[T] / T ** 2
    # without T^2 the gradient falls as 1/T^2 (ratio of consecutive temperatures ~ 4) ...
    for lo, hi in ((4.0, 8.0), (8.0, 16.0), (16.0, 32.0)):
        assert norms_without[lo] / norms_without[hi] == pytest.approx(4.0, rel=0.1)
    # ... with it the gradient stays level
    assert max(norms_with.values()) / min(norms_with.values()) < 1.15


def test_kd_loss_is_finite_for_huge_logits():
    torch.manual_seed(0)
    s = torch.randn(8, 10) * 1e4
    t = torch.randn(8, 10) * 1e4
    s.requires_grad_()
    y = torch.randint(0, 10, (8,))
    for T in (0.5, 1.0, 4.0, 20.0):
        loss = kd_loss(s, t, y, temperature=T)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
        assert torch.isfinite(dkd_loss(s, t, y, temperature=T))
    assert kd_loss(t, t, temperature=1.0).item() == pytest.approx(0.0, abs=1e-3)


def test_kd_loss_uses_batchmean_not_mean():
    s, t = torch.zeros(4, 10), torch.eye(10)[:4] * 5
    per_example = kd_loss(s[:1], t[:1], temperature=1.0)
    assert kd_loss(s, t, temperature=1.0).item() == pytest.approx(per_example.item(), rel=1e-6)


# ----------------------------------------------------------------- DKD

@FAST
@given(logits_strategy(scale=6.0), st.floats(0.5, 8.0), st.integers(0, 1000))
def test_dkd_decomposition_reproduces_kd(s, T, seed):
    gen = torch.Generator().manual_seed(seed)
    t = torch.randn(s.shape, generator=gen, dtype=s.dtype) * 4
    y = torch.randint(0, s.shape[1], (len(s),), generator=gen)
    parts = dkd_terms(s, t, y, temperature=T)
    assert (parts.tckd >= -1e-12).all() and (parts.nckd >= -1e-12).all()
    rebuilt = T ** 2 * (parts.tckd + (1 - parts.teacher_target_prob) * parts.nckd).mean()
    assert torch.allclose(rebuilt, kd_loss(s, t, temperature=T), rtol=1e-8, atol=1e-10)
    expected = T ** 2 * (1.0 * parts.tckd + 8.0 * parts.nckd).mean()
    assert torch.allclose(dkd_loss(s, t, y, temperature=T), expected)


# ----------------------------------------------------------------- several teachers

def test_multi_teacher_modes_and_weights():
    torch.manual_seed(0)
    a, b = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    T = 2.0
    logits_mode = multi_teacher_targets([a, b], temperature=T, weights=[3, 1])
    assert torch.allclose(logits_mode, torch.softmax((0.75 * a + 0.25 * b) / T, 1))
    probs_mode = multi_teacher_targets([a, b], temperature=T, weights=[3, 1], mode="probs")
    assert torch.allclose(probs_mode, 0.75 * soft_targets(a, temperature=T) + 0.25 * soft_targets(b, temperature=T))
    assert torch.allclose(multi_teacher_targets([a], temperature=T), soft_targets(a, temperature=T))
    assert torch.allclose(multi_teacher_targets([a, b], temperature=T, weights=[1, 0], mode="probs"),
                          soft_targets(a, temperature=T))
    assert torch.allclose(multi_teacher_targets(torch.stack([a, b]), temperature=T), multi_teacher_targets([a, b], temperature=T))


# ----------------------------------------------------------------- features

def test_hint_loss_and_regressor():
    s, t = torch.ones(3, 4), torch.zeros(3, 4)
    assert hint_loss(s, t).item() == pytest.approx(0.5 * 4)
    wide = torch.randn(3, 6)
    reg = make_regressor(s, wide)
    assert isinstance(reg, nn.Linear) and hint_loss(s, wide, reg).ndim == 0
    conv = make_regressor(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 4, 4))
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1)
    assert isinstance(make_regressor(s, t), nn.Identity)
    with pytest.raises(ValueError, match="regressor"):
        hint_loss(s, wide)
    with pytest.raises(ValueError, match="cannot map"):
        make_regressor(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 2, 2))


def test_attention_transfer_loss():
    torch.manual_seed(0)
    a = torch.randn(2, 4, 3, 3)
    assert attention_transfer_loss(a, 3 * torch.cat([a, a], 1)).item() == pytest.approx(0.0, abs=1e-6)
    b = torch.randn(2, 8, 3, 3)
    q_s = F.normalize(a.pow(2).sum(1).flatten(1), dim=1)
    q_t = F.normalize(b.pow(2).sum(1).flatten(1), dim=1)
    expected = 0.5 * (q_s - q_t).norm(dim=1).mean()
    assert attention_transfer_loss(a, b).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="spatial"):
        attention_transfer_loss(a, torch.randn(2, 4, 2, 2))


# ----------------------------------------------------------------- schedules

def test_temperature_schedules():
    lin = linear_temperature(8.0, 2.0, epochs=4)
    assert [lin(e) for e in range(5)] == pytest.approx([8, 6, 4, 2, 2])
    cos = cosine_temperature(8.0, 2.0, epochs=3)
    assert [cos(e) for e in range(3)] == pytest.approx([8, 5, 2])
    with pytest.raises(ValueError, match="start"):
        linear_temperature(0.0, 2.0, 3)
    with pytest.raises(ValueError, match="epoch"):
        lin(-1)


# ----------------------------------------------------------------- bad input

GOOD_S, GOOD_T, GOOD_Y = torch.zeros(4, 3), torch.ones(4, 3), torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize("T", [0.0, -1.0, math.inf, math.nan])
def test_bad_temperature(T):
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(GOOD_S, GOOD_T, GOOD_Y, temperature=T)
    with pytest.raises(ValueError, match="temperature"):
        soft_targets(GOOD_S, temperature=T)
    with pytest.raises(ValueError, match="temperature"):
        multi_teacher_targets([GOOD_T], temperature=T)
    with pytest.raises(ValueError, match="temperature"):
        Distiller(MLP(4, (3,), 3), MLP(4, (3,), 3), temperature=T)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        kd_loss(GOOD_S, GOOD_T, GOOD_Y, alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        Distiller(MLP(4, (3,), 3), MLP(4, (3,), 3), alpha=alpha)


def test_mismatched_logits():
    with pytest.raises(ValueError, match="same shape"):
        kd_loss(GOOD_S, torch.ones(4, 5), GOOD_Y)
    with pytest.raises(ValueError, match="same shape"):
        dkd_loss(GOOD_S, torch.ones(3, 3), GOOD_Y)
    with pytest.raises(ValueError, match="teacher_logits\\[1\\]"):
        multi_teacher_targets([GOOD_T, torch.ones(4, 5)], temperature=2.0)


@pytest.mark.parametrize("y, match", [(torch.tensor([0, 1, 2]), "shape"), (torch.tensor([[0, 1, 2, 0]]), "shape"),
                                      (torch.tensor([0, 1, 3, 0]), "class indices"),
                                      (torch.tensor([0, -1, 2, 0]), "class indices")])
def test_bad_targets(y, match):
    with pytest.raises(ValueError, match=match):
        kd_loss(GOOD_S, GOOD_T, y)
    with pytest.raises(ValueError, match=match):
        dkd_loss(GOOD_S, GOOD_T, y)


def test_float_targets_refused():
    with pytest.raises(TypeError, match="targets"):
        kd_loss(GOOD_S, GOOD_T, GOOD_Y.float())


def test_empty_teachers():
    with pytest.raises(ValueError, match="teacher"):
        multi_teacher_targets([], temperature=2.0)
    with pytest.raises(ValueError, match="teachers"):
        Distiller(MLP(4, (3,), 3), [])


@pytest.mark.parametrize("weights, match", [([1.0, -1.0], "weights\\[1\\]"), ([1.0], "one entry per teacher"),
                                            ([0.0, 0.0], "all be zero"), ([1.0, math.nan], "weights\\[1\\]")])
def test_bad_teacher_weights(weights, match):
    with pytest.raises(ValueError, match=match):
        multi_teacher_targets([GOOD_T, GOOD_T], temperature=2.0, weights=weights)
    with pytest.raises(ValueError, match="teacher_weights") as err:
        Distiller(MLP(4, (3,), 3), [MLP(4, (3,), 3), MLP(4, (3,), 3)], teacher_weights=weights)
    assert err.match(match)


def test_distiller_bad_options():
    s, t = MLP(4, (3,), 3), MLP(4, (3,), 3)
    with pytest.raises(ValueError, match="loss"):
        Distiller(s, t, loss="mse")
    with pytest.raises(ValueError, match="multi_teacher_mode"):
        Distiller(s, t, multi_teacher_mode="votes")
    with pytest.raises(ValueError, match="needs loss='kd'"):
        Distiller(s, t, multi_teacher_mode="probs", loss="dkd")
    with pytest.raises(ValueError, match="layers.9"):
        Distiller(s, t, hints=[("layers.0", "layers.9")])
    with pytest.raises(ValueError, match="cache_teacher"):
        Distiller(s, t, hints=[("layers.0", "layers.0")], cache_teacher=True)
    with pytest.raises(ValueError, match="one teacher"):
        Distiller(s, [t, t], hints=[("layers.0", "layers.0")])


# ----------------------------------------------------------------- the Distiller

def _toy(n=96, features=6, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


class ModeRecorder(nn.Module):
    """A teacher that records whether it ran in training mode or with gradients on."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.inner(x)


def test_distiller_objective_equals_kd_loss_and_teacher_frozen():
    torch.manual_seed(0)
    x, y = _toy()
    student, teacher = MLP(6, (8,), 3), ModeRecorder(MLP(6, (16,), 3))
    teacher.train()
    before = [p.clone() for p in teacher.parameters()]
    d = Distiller(student, teacher, temperature=3.0, alpha=0.7)
    d.fit((x, y), epochs=2, batch_size=32, progress=False)
    assert teacher.seen and all(mode == (False, False) for mode in teacher.seen)
    assert teacher.training  # its mode is restored afterwards
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    teacher.eval()
    with torch.no_grad():
        expected = kd_loss(student(x[:32]), teacher(x[:32]), y[:32], temperature=3.0, alpha=0.7)
        got = d.objective(student, (x[:32], y[:32]))
    assert torch.allclose(got, expected)


@pytest.mark.parametrize("alpha", [0.0, 0.7, 1.0])
def test_distiller_gradient_equals_kd_loss_gradient(alpha):
    """The Distiller's loss for labelled batches must agree with kd_loss in value and gradient."""
    torch.manual_seed(0)
    x, y = _toy()
    student, teacher = MLP(6, (8,), 3), MLP(6, (16,), 3).eval()
    d = Distiller(student, teacher, temperature=3.0, alpha=alpha)
    d.fit((x, y), epochs=1, batch_size=32, progress=False)
    student.zero_grad()
    got = d.objective(student, (x[:32], y[:32]))
    got.backward()
    grads = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    with torch.no_grad():
        teacher_logits = teacher(x[:32])
    expected = kd_loss(student(x[:32]), teacher_logits, y[:32], temperature=3.0, alpha=alpha)
    expected.backward()
    assert torch.allclose(got, expected)
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(grads, student.parameters()))


def test_cached_teacher_matches_uncached_and_runs_teacher_once():
    x, y = _toy()
    results = []
    for cache in (False, True):
        torch.manual_seed(0)
        student, teacher = MLP(6, (8,), 3), ModeRecorder(MLP(6, (16,), 3))
        torch.manual_seed(1)
        d = Distiller(student, teacher, temperature=linear_temperature(6.0, 2.0, 3), cache_teacher=cache)
        h = d.fit((x, y), epochs=3, batch_size=32, progress=False)
        results.append((h["loss"], [p.detach().clone() for p in student.parameters()], len(teacher.seen)))
        assert d.temperature == pytest.approx(2.0)
    (loss_a, params_a, calls_a), (loss_b, params_b, calls_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params_a, params_b))
    assert calls_a == 9 and calls_b == 1  # 3 batches x 3 epochs against one pass


@pytest.mark.parametrize("alpha", [0.0, 0.7, 1.0])
@pytest.mark.parametrize("classes", [3, 10, 300])  # 300: above KDWeights.MAX_SPREAD_CLASSES, broadcasting
@pytest.mark.parametrize("n", [32, 7])             # 7: a last batch smaller than the batch size
def test_cached_kd_equals_kd_loss_in_value_and_gradient(alpha, classes, n):
    """Cached KD is written as weights over three log-softmax rows; it must be kd_loss."""
    gen = torch.Generator().manual_seed(classes + n)
    teacher_logits = 5 * torch.randn(50, classes, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, classes, (50,), generator=gen)
    T = 3.0
    table = KDWeights.build(F.log_softmax(teacher_logits / T, 1), targets, T, alpha, batch_size=32)
    idx = torch.randperm(50, generator=gen)[:n]
    z = (4 * torch.randn(n, classes, generator=gen, dtype=torch.float64)).requires_grad_()
    got = table.loss(z, table.weights[idx])
    (g_got,) = torch.autograd.grad(got, z)
    expected = kd_loss(z, teacher_logits[idx], targets[idx], temperature=T, alpha=alpha)
    (g_exp,) = torch.autograd.grad(expected, z)
    assert got.item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-9)
    assert torch.allclose(g_got, g_exp, atol=1e-10)


def test_cached_kd_is_finite_for_huge_logits():
    targets = torch.tensor([0, 2])
    teacher = torch.tensor([[1e4, 0.0, -1e4], [-1e4, 0.0, 1e4]])
    table = KDWeights.build(F.log_softmax(teacher / 4.0, 1), targets, 4.0, 0.9, batch_size=2)
    z = torch.tensor([[-1e4, 1e4, 0.0], [1e4, 0.0, -1e4]], requires_grad=True)
    loss = table.loss(z, table.weights)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    assert loss.item() == pytest.approx(kd_loss(z, teacher, targets, temperature=4.0, alpha=0.9).item(), rel=1e-5)


def test_cached_distiller_rebuilds_targets_only_when_the_temperature_changes(monkeypatch):
    built = []
    real = Distiller._targets

    def spy(self, teacher_logits, y):
        built.append(self.temperature)
        return real(self, teacher_logits, y)

    monkeypatch.setattr(Distiller, "_targets", spy)
    x, y = _toy()
    Distiller(MLP(6, (8,), 3), MLP(6, (16,), 3), temperature=4.0, cache_teacher=True).fit(
        (x, y), epochs=3, batch_size=32, progress=False)
    assert built == [4.0]
    built.clear()
    Distiller(MLP(6, (8,), 3), MLP(6, (16,), 3), temperature=linear_temperature(6.0, 2.0, 3),
              cache_teacher=True).fit((x, y), epochs=3, batch_size=32, progress=False)
    assert built == [6.0, 4.0, 2.0]


def test_dkd_warmup_ramps_the_dkd_term_linearly():
    torch.manual_seed(0)
    x, y = _toy(n=16)
    student, teacher = MLP(6, (8,), 3), MLP(6, (16,), 3).eval()
    d = Distiller(student, teacher, loss="dkd", dkd_warmup=4, temperature=2.0)

    class State:
        device = torch.device("cpu")

    with torch.no_grad():
        s, t = student(x), teacher(x)
        ce, dkd = F.cross_entropy(s, y), dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=2.0)
        for epoch, weight in [(0, 0.25), (1, 0.5), (3, 1.0), (7, 1.0)]:
            State.epoch = epoch
            d.on_epoch_start(State)
            assert torch.allclose(d.objective(student, (x, y)), ce + weight * dkd)
    with pytest.raises(ValueError, match="dkd_warmup ramps up DKD's term, so it needs loss='dkd'"):
        Distiller(student, teacher, dkd_warmup=5)
    with pytest.raises(ValueError, match="dkd_warmup must be an integer >= 0, got -1"):
        Distiller(student, teacher, loss="dkd", dkd_warmup=-1)


def test_cache_refuses_a_dataloader():
    from kdlab.data import make_loader

    x, y = _toy()
    d = Distiller(MLP(6, (8,), 3), MLP(6, (16,), 3), cache_teacher=True)
    with pytest.raises(ValueError, match="cache_teacher=True needs in-memory data"):
        d.fit(make_loader(x, y), epochs=1, progress=False)


def test_unlabelled_examples_get_the_soft_term_only():
    torch.manual_seed(0)
    x, y = _toy(n=8)
    student, teacher = MLP(6, (8,), 3), MLP(6, (16,), 3).eval()
    d = Distiller(student, teacher, temperature=2.0, alpha=0.6)
    y_part = y.clone()
    y_part[4:] = distill.UNLABELLED
    with torch.no_grad():
        s, t = student(x), teacher(x)
        soft = kd_loss(s, t, temperature=2.0)
        hard = F.cross_entropy(s[:4], y[:4])
        assert torch.allclose(d.objective(student, (x, y_part)), 0.6 * soft + 0.4 * hard)
        assert torch.allclose(d.objective(student, (x,)), soft)


def test_multi_teacher_distiller_uses_weighted_targets():
    torch.manual_seed(0)
    x, y = _toy(n=16)
    student, a, b = MLP(6, (8,), 3), MLP(6, (16,), 3).eval(), MLP(6, (16,), 3).eval()
    for mode in ("logits", "probs"):
        d = Distiller(student, [a, b], teacher_weights=[2, 1], multi_teacher_mode=mode, temperature=3.0)
        with torch.no_grad():
            q = multi_teacher_targets([a(x), b(x)], temperature=3.0, weights=[2, 1], mode=mode)
            p = F.log_softmax(student(x) / 3.0, 1)
            expected = 9 * (q * (q.log() - p)).sum() / len(x)
            assert torch.allclose(d.objective(student, (x,)), expected, atol=1e-6)


def test_hints_use_hooks_train_the_regressor_and_leave_forward_alone():
    torch.manual_seed(0)
    x, y = _toy()
    student, teacher = MLP(6, (4,), 3), MLP(6, (16,), 3).eval()
    forward_before = type(student).forward
    d = Distiller(student, teacher, hints=[("layers.1", "layers.1")], hint_weight=0.1)
    d.fit((x, y), epochs=2, batch_size=32, progress=False)
    reg = d.regressors["0"]
    assert isinstance(reg, nn.Linear) and (reg.in_features, reg.out_features) == (4, 16)
    assert reg.weight.grad is not None and reg.weight.grad.abs().sum() > 0
    assert not student.layers[1]._forward_hooks and not teacher.layers[1]._forward_hooks
    assert type(student).forward is forward_before and "forward" not in vars(student)


def test_default_hint_weight_divides_each_hint_by_its_feature_size():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 8, 8)
    y = torch.randint(0, 3, (8,))
    student, teacher = SmallCNN(1, 3, (4, 8)), SmallCNN(1, 3, (8, 16)).eval()
    hints = [("features.0", "features.0"), ("features.2", "features.2")]
    by_default = Distiller(student, teacher, hints=hints)
    raw = Distiller(student, teacher, hints=hints, hint_weight=1.0)
    without = Distiller(student, teacher, hints=hints, hint_weight=0.0)
    by_default.fit((x, y), epochs=1, batch_size=8, progress=False)  # builds the regressors
    raw.regressors = by_default.regressors
    student.eval()

    def objective(d):
        d._add_hooks()
        try:
            return d.objective(student, (x, y)), dict(d._features)
        finally:
            d.remove_hooks()

    with torch.no_grad():
        kd, _ = objective(without)
        got_default, feats = objective(by_default)
        got_raw, _ = objective(raw)
        terms = [hint_loss(feats[("student", s)], feats[("teacher", t)], by_default.regressors[str(i)])
                 for i, (s, t) in enumerate(hints)]
    sizes = [8 * 8 * 8, 16 * 4 * 4]  # teacher channels x spatial size of each hinted block
    assert torch.allclose(got_default - kd, sum(t / n for t, n in zip(terms, sizes)), rtol=1e-4)
    assert torch.allclose(got_raw - kd, sum(terms), rtol=1e-4)
    assert got_raw - kd > 50 * (got_default - kd)


def test_attention_hints_with_dkd_add_each_term_to_the_loss():
    torch.manual_seed(0)
    x = torch.rand(32, 1, 8, 8)
    y = torch.randint(0, 3, (32,))
    student, teacher = SmallCNN(1, 3, (4, 8)), SmallCNN(1, 3, (8, 16)).eval()
    hints = [("features.0", "features.0"), ("features.2", "features.2")]
    d = Distiller(student, teacher, hints=hints, hint_kind="attention", loss="dkd", temperature=2.0)
    d.fit((x, y), epochs=2, batch_size=16, progress=False)
    assert not any(m._forward_hooks for m in list(student.modules()) + list(teacher.modules()))
    student.eval()
    d._add_hooks()
    try:
        with torch.no_grad():
            got = d.objective(student, (x, y))
            features = dict(d._features)
    finally:
        d.remove_hooks()
    with torch.no_grad():
        s, t = student(x), teacher(x)
    expected = (F.cross_entropy(s, y) + dkd_loss(s, t, y, temperature=2.0)
                + sum(attention_transfer_loss(features[("student", a)], features[("teacher", b)]) for a, b in hints))
    assert torch.allclose(got, expected, rtol=1e-5)


def test_callable_loss_and_extra_callbacks():
    x, y = _toy(n=32)
    seen, epochs = [], []

    def my_loss(s, t, targets, T):
        seen.append(T)
        return F.mse_loss(s, t)

    class Recorder(kdlab.train.Callback):
        def on_epoch_start(self, state):
            epochs.append(state.epoch)

    d = Distiller(MLP(6, (8,), 3), MLP(6, (16,), 3), loss=my_loss, temperature=cosine_temperature(4, 1, 2))
    d.fit((x, y), epochs=2, batch_size=16, callbacks=[Recorder()], progress=False)
    assert seen == [4.0, 4.0, 1.0, 1.0] and epochs == [0, 1]


def test_transfer_targets_soft_and_hard():
    torch.manual_seed(0)
    x, _ = _toy(n=10)
    teacher = MLP(6, (16,), 3).eval()
    soft = transfer_targets(teacher, x, temperature=2.0)
    assert torch.allclose(soft, soft_targets(teacher(x).detach(), temperature=2.0))
    assert torch.equal(transfer_targets(teacher, x, hard=True), teacher(x).argmax(1))


# ----------------------------------------------------------------- the teacher cache

def test_teacher_cache_runs_each_teacher_once_and_looks_targets_up_by_index():
    torch.manual_seed(0)
    x, y = _toy(n=10)
    a, b = ModeRecorder(MLP(6, (16,), 3)), ModeRecorder(MLP(6, (16,), 3))
    cache = TeacherCache([a, b], x, y)
    assert cache.logits.shape == (2, 10, 3) and len(a.seen) == len(b.seen) == 1
    builds = []

    def build(logits, labels):
        builds.append(1)
        return logits.sum(0), None, labels

    cache.refresh(4.0, build)
    cache.refresh(4.0, build)
    assert len(builds) == 1, "the same temperature reuses the targets it has"
    cache.refresh(2.0, build)
    assert len(builds) == 2
    index = torch.tensor([7, 2])
    total, nothing, labels = cache[index]
    with torch.no_grad():
        assert torch.allclose(total, a.inner(x[index]) + b.inner(x[index]), atol=1e-6)
    assert nothing is None and torch.equal(labels, y[index])


@pytest.mark.parametrize("loss", ["kd", "dkd"])
def test_cached_teacher_matches_uncached_with_unlabelled_examples(loss):
    x, y = _toy()
    y = y.clone()
    if loss == "kd":
        y[::3] = distill.UNLABELLED
    results = []
    for cache in (False, True):
        torch.manual_seed(0)
        student, teacher = MLP(6, (8,), 3), MLP(6, (16,), 3).eval()
        h = Distiller(student, teacher, loss=loss, temperature=3.0, alpha=0.6, cache_teacher=cache).fit(
            (x, y), epochs=2, batch_size=32, progress=False)
        results.append((h["loss"], [p.detach().clone() for p in student.parameters()]))
    (loss_a, params_a), (loss_b, params_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(params_a, params_b))


# ----------------------------------------------------------------- KD against the student alone

def test_compare_with_alone_gives_both_arms_the_same_start_and_steps():
    x, y = _toy(n=96)
    labelled = (x[:20], y[:20])
    hidden = y.clone()
    hidden[20:] = distill.UNLABELLED
    teacher = MLP(6, (16,), 3).eval()
    make = lambda: MLP(6, (8,), 3)
    result = compare_with_alone(make, teacher, labelled=labelled, transfer=(x, hidden), test=(x, y),
                                epochs=3, seeds=[0, 1], batch_size=16, lr=1e-2)
    # 96 examples are 6 batches of 16, 20 examples 2: the student alone trains 3 * 6 / 2 epochs
    assert result.alone_epochs == [9, 9] and result.alone_steps == result.kd_steps == [18, 18]
    for i, seed in enumerate([0, 1]):
        kdlab.train.seed_everything(seed)
        alone = make()
        kdlab.train.fit(alone, labelled, epochs=9, seed=seed, batch_size=16, lr=1e-2, progress=False)
        kdlab.train.seed_everything(seed)
        student = make()
        Distiller(student, teacher, cache_teacher=True).fit((x, hidden), epochs=3, seed=seed, batch_size=16,
                                                           lr=1e-2, progress=False)
        assert result.alone[i] == kdlab.evaluate.accuracy(alone, (x, y))
        assert result.kd[i] == kdlab.evaluate.accuracy(student, (x, y))
    assert result.differences == [k - a for a, k in zip(result.alone, result.kd)]
    assert "KD - alone" in str(result)


def test_compare_with_alone_takes_a_labelled_subset_per_seed():
    x, y = _toy(n=96)
    teacher, make = MLP(6, (16,), 3).eval(), lambda: MLP(6, (8,), 3)
    subsets = {0: torch.arange(20), 1: torch.arange(40, 72)}
    labelled = lambda seed: (x[subsets[seed]], y[subsets[seed]])
    per_seed = compare_with_alone(make, teacher, labelled=labelled, transfer=(x, y), test=(x, y), epochs=2,
                                  seeds=[0, 1], batch_size=16)
    assert per_seed.alone_epochs == [6, 6] and per_seed.alone_steps == [12, 12]
    one = compare_with_alone(make, teacher, labelled=labelled(1), transfer=(x, y), test=(x, y), epochs=2,
                             seeds=[1], batch_size=16)
    assert (one.alone[0], one.kd[0]) == (per_seed.alone[1], per_seed.kd[1])
    with pytest.raises(TypeError, match=r"labelled\(0\) must be an \(x, y\) pair"):
        compare_with_alone(make, teacher, labelled=lambda seed: x, transfer=(x, y), test=(x, y), epochs=1)


@pytest.mark.parametrize("kwargs, match", [
    ({"make_student": MLP(6, (8,), 3)}, "make_student must be a function"),
    ({"labelled": torch.zeros(4, 6)}, "labelled must be an \\(x, y\\) pair"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"seeds": 3}, "seeds must be a sequence"),
    ({"seeds": []}, "seeds must name at least one seed"),
    ({"seed": 1}, "seed is set by compare_with_alone"),
    ({"temperature": 0.0}, "temperature must be a finite number > 0"),
])
def test_compare_with_alone_refuses_bad_input_before_training(kwargs, match):
    x, y = _toy(n=16)
    args = {"make_student": lambda: MLP(6, (8,), 3), "teacher": MLP(6, (16,), 3), "labelled": (x, y),
            "transfer": (x, y), "test": (x, y), "epochs": 1, **kwargs}
    with pytest.raises((TypeError, ValueError), match=match):
        compare_with_alone(**args)


# ----------------------------------------------------------------- old spellings

def test_temperature_by_position_still_works_with_a_warning_naming_the_keyword():
    z = torch.tensor([[2.0, 0.0, -1.0]])
    with pytest.warns(kdlab._deprecation.CATEGORY, match=r"soft_targets\(\.\.\., temperature=\.\.\.\)"):
        old = soft_targets(z, 2.0)
    assert torch.equal(old, soft_targets(z, temperature=2.0))
    with pytest.warns(kdlab._deprecation.CATEGORY, match="temperature=..., weights=..."):
        old = multi_teacher_targets([z, z], 2.0, [1, 3])
    assert torch.equal(old, multi_teacher_targets([z, z], temperature=2.0, weights=[1, 3]))
    with pytest.raises(TypeError, match="temperature both by position and by keyword"):
        soft_targets(z, 2.0, temperature=3.0)


def test_soft_targets_without_temperature_keeps_the_old_default_with_a_warning():
    z = torch.tensor([[2.0, 0.0, -1.0]])
    with pytest.warns(kdlab._deprecation.CATEGORY, match="temperature=1.0"):
        assert torch.equal(soft_targets(z), torch.softmax(z, -1))
    teacher = MLP(3, (4,), 3).eval()
    with pytest.warns(kdlab._deprecation.CATEGORY, match="transfer_targets"):
        transfer_targets(teacher, z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        transfer_targets(teacher, z, hard=True)  # one teacher's argmax is the same at every T


def test_a_refused_cached_fit_leaves_the_distiller_as_it_was():
    x, y = _toy()
    student, teacher = MLP(6, (8,), 4), MLP(6, (16,), 3).eval()
    d = Distiller(student, teacher, cache_teacher=True)
    with pytest.raises(ValueError, match="student: 4 classes, teachers: 3 classes"):
        d.fit((x, y), epochs=1, progress=False)
    assert d._cache is None and d._kd_weights is None
