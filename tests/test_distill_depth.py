"""Attention transfer's two forms, label smoothing, deep mutual learning, teacher-assistant
and born-again chains, DeepInversion and the token-level divergences of generative KD,
each against its paper's definition written out here (value, and gradient where the
method has one)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab import distill, train


def _v(t):
    return t.detach().item() if isinstance(t, torch.Tensor) else t


def _grad_close(loss_fn, reference_fn, x):
    g_got, = torch.autograd.grad(loss_fn(x), x)
    g_want, = torch.autograd.grad(reference_fn(x), x)
    torch.testing.assert_close(g_got, g_want)


# ------------------------------------------------------------------ attention transfer

def _attention(a):
    """Q = sum_c |A_c|^2 per example, flattened, divided by its l2 norm, written per example."""
    rows = []
    for n in range(len(a)):
        q = sum(a[n, c].abs() ** 2 for c in range(a.shape[1])).flatten()
        rows.append(q / (q ** 2).sum().sqrt())
    return rows


def _at_paper(s, t, beta):
    qs, qt = _attention(s), _attention(t)
    return beta / 2 * sum(((a - b) ** 2).sum().sqrt() for a, b in zip(qs, qt)) / len(qs)


def _at_code(s, t, beta):
    qs, qt = _attention(s), _attention(t)
    positions = s.shape[2] * s.shape[3]
    return beta / 2 * sum(((a - b) ** 2).sum() for a, b in zip(qs, qt)) / (len(qs) * positions)


@pytest.mark.parametrize("form, reference, beta", [("paper", _at_paper, 1.0), ("code", _at_code, 1000.0)])
def test_attention_transfer_forms_match_their_definitions(form, reference, beta):
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(3, 4, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 6, 5, 5, generator=gen, dtype=torch.float64)  # other channel count
    got = distill.attention_transfer_loss(s, t, beta=beta, form=form)
    assert _v(got) == pytest.approx(_v(reference(s, t, beta)), rel=1e-10)
    _grad_close(lambda x: distill.attention_transfer_loss(x, t, beta=beta, form=form),
                lambda x: reference(x, t, beta), s)


def test_the_code_form_is_the_paper_form_squared_over_the_positions():
    s, t = torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4)
    d = distill.attention_transfer_loss(s, t, beta=2.0)  # beta / 2 = 1: the distance itself
    assert _v(distill.attention_transfer_loss(s, t, beta=2.0, form="code")) == pytest.approx(_v(d) ** 2 / 16)
    with pytest.raises(ValueError, match="form must be one of 'paper', 'code'; got 'mean'"):
        distill.attention_transfer_loss(s, t, form="mean")


# ------------------------------------------------------------------ label smoothing

def test_label_smoothing_is_kd_from_a_uniform_teacher_plus_a_constant():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (6,), generator=gen)
    eps = 0.2

    def written_out(logits):
        log_p = F.log_softmax(logits, 1)
        return -sum((1 - eps) * log_p[n, y[n]] + eps / 5 * log_p[n].sum() for n in range(6)) / 6

    def via_kd(logits):
        return distill.kd_loss(logits, torch.zeros_like(logits), y, temperature=1.0, alpha=eps) + eps * math.log(5)

    got = distill.label_smoothing_loss(z, y, epsilon=eps)
    assert _v(got) == pytest.approx(_v(written_out(z)), rel=1e-10)
    assert _v(got) == pytest.approx(_v(via_kd(z)), rel=1e-10)
    assert _v(got) == pytest.approx(_v(F.cross_entropy(z, y, label_smoothing=eps)), rel=1e-10)
    _grad_close(lambda x: distill.label_smoothing_loss(x, y, epsilon=eps), written_out, z)
    _grad_close(lambda x: distill.label_smoothing_loss(x, y, epsilon=eps), via_kd, z)


def test_smoothed_targets_sum_to_one_and_refuse_bad_epsilon():
    t = distill.smoothed_targets(torch.tensor([0, 2]), 3, epsilon=0.3)
    torch.testing.assert_close(t.sum(1), torch.ones(2))
    assert t[0, 0].item() == pytest.approx(0.8) and t[0, 1].item() == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\], got 1.5"):
        distill.smoothed_targets(torch.tensor([0]), 3, epsilon=1.5)
    with pytest.raises(ValueError, match="targets must hold class indices < 3"):
        distill.smoothed_targets(torch.tensor([3]), 3, epsilon=0.1)


# ------------------------------------------------------------------ deep mutual learning

def test_each_student_gets_the_gradient_of_its_own_dml_loss():
    torch.manual_seed(0)
    students = [nn.Linear(4, 3).double() for _ in range(3)]
    cohort = distill.Cohort(*students)
    x, y = torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 3, (7,))
    T, w = 2.0, 0.5
    loss = distill.mutual_learning_objective(temperature=T, weight=w)(cohort, (x, y))
    loss.backward()
    got = [s.weight.grad.clone() for s in students]
    for k, s in enumerate(students):  # L_k written out, peers as fixed targets
        s.zero_grad()
        z_k = s(x)
        log_p_k = F.log_softmax(z_k / T, 1)
        kl = 0.0
        for j, peer in enumerate(students):
            if j != k:
                p_j = F.softmax(peer(x).detach() / T, 1)
                kl = kl + (p_j * (p_j.log() - log_p_k)).sum() / len(x)
        own = F.cross_entropy(z_k, y) + w * T ** 2 / 2 * kl
        g, = torch.autograd.grad(own, s.weight)
        torch.testing.assert_close(got[k], g)


def test_mutual_learning_trains_through_fit_one_step_per_student_per_batch():
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    before = [a.weight.clone(), b.weight.clone()]
    cohort, history = distill.mutual_learning([a, b], (x, y), epochs=2, batch_size=16, progress=False)
    assert history.steps == 8 and cohort.students[0] is a
    assert not torch.equal(a.weight, before[0]) and not torch.equal(b.weight, before[1])
    with pytest.raises(ValueError, match="at least 2 students"):
        distill.Cohort(a)
    with pytest.raises(ValueError, match="distinct modules"):
        distill.Cohort(a, a)
    with pytest.raises(ValueError, match="weight must be a finite number >= 0, got -1"):
        distill.mutual_learning([a, b], (x, y), epochs=1, weight=-1)


# ------------------------------------------------------------------ chains

def _toy():
    torch.manual_seed(0)
    x = torch.randn(96, 6)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x, y


def test_a_chain_distils_each_model_from_the_one_before_or_from_all():
    x, y = _toy()
    teacher = nn.Linear(6, 3)
    train.fit(teacher, (x, y), epochs=5, progress=False)
    a, s = nn.Linear(6, 3), nn.Linear(6, 3)
    chain = distill.distill_chain(teacher, [a, s], (x, y), epochs=2, progress=False,
                                  distiller={"temperature": 2.0, "cache_teacher": True})
    assert [g.model for g in chain] == [a, s]
    assert chain[0].teachers == [teacher] and chain[1].teachers == [a]
    assert all(g.history.steps == 2 * 2 for g in chain)  # 96 examples, batches of 64: 2 per epoch
    both = distill.distill_chain(teacher, [nn.Linear(6, 3), nn.Linear(6, 3)], (x, y), epochs=1,
                                 ensemble=True, progress=False)
    assert both[1].teachers == [teacher, both[0].model]
    with pytest.raises(TypeError, match="distiller must be a dict of Distiller options"):
        distill.distill_chain(teacher, [a], (x, y), epochs=1, distiller=4.0)


def test_born_again_generations_learn_from_labels_then_from_the_previous_generation():
    x, y = _toy()
    gens = distill.born_again(lambda: nn.Linear(6, 3), (x, y), generations=3, epochs=3, progress=False)
    assert gens[0].teachers == [] and gens[1].teachers == [gens[0].model]
    assert gens[2].teachers == [gens[1].model]
    assert len({id(g.model) for g in gens}) == 3 and all(g.history.steps == 6 for g in gens)
    bane = distill.born_again(lambda: nn.Linear(6, 3), (x, y), generations=3, epochs=1, ensemble=True,
                              progress=False)
    assert bane[2].teachers == [bane[0].model, bane[1].model]
    with pytest.raises(ValueError, match="generations must be an integer >= 1, got 0"):
        distill.born_again(lambda: nn.Linear(6, 3), (x, y), generations=0, epochs=1)


# ------------------------------------------------------------------ DeepInversion

def _bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(3 * 4 * 4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():  # statistics that are not the defaults
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return net.eval()


def test_bn_statistics_loss_matches_its_definition():
    net = _bn_net()
    x = torch.randn(5, 1, 4, 4, dtype=torch.float64, requires_grad=True)

    def written_out(inp):
        f1 = net[0](inp)  # the input of the first BatchNorm: (N, C, H, W)
        total = 0.0
        for f, bn in ((f1, net[1]), (net[4](net[3](net[2](net[1](f1)))), net[5])):
            flat = f.transpose(0, 1).reshape(f.shape[1], -1)  # channels x (N * positions)
            mean = flat.mean(1)
            var = ((flat - mean[:, None]) ** 2).mean(1)  # biased, as BatchNorm normalises
            total = total + ((mean - bn.running_mean) ** 2).sum().sqrt() + ((var - bn.running_var) ** 2).sum().sqrt()
        return total

    logits, r = distill.bn_statistics_loss(net, x)
    torch.testing.assert_close(logits, net(x))
    assert _v(r) == pytest.approx(_v(written_out(x)), rel=1e-10)
    _grad_close(lambda inp: distill.bn_statistics_loss(net, inp)[1], written_out, x)


def test_total_variation_matches_its_definition():
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)

    def written_out(img):
        v = sum((img[n, c, i + 1, j] - img[n, c, i, j]) ** 2 for n in range(2) for c in range(1)
                for i in range(2) for j in range(3))
        h = sum((img[n, c, i, j + 1] - img[n, c, i, j]) ** 2 for n in range(2) for c in range(1)
                for i in range(3) for j in range(2))
        return (v.sqrt() + h.sqrt()) / 2

    assert _v(distill.total_variation(x)) == pytest.approx(_v(written_out(x)), rel=1e-10)
    _grad_close(distill.total_variation, written_out, x)


def test_deep_inversion_matches_the_statistics_and_the_classes_and_leaves_the_teacher_alone():
    net = _bn_net().float()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    y = torch.tensor([0, 1] * 8)
    start = torch.randn((16, 1, 4, 4), generator=torch.Generator().manual_seed(3))
    x = distill.deep_inversion(net, y, input_shape=(1, 4, 4), steps=150, lr=0.05, tv_weight=0.01, seed=3)
    assert x.shape == (16, 1, 4, 4) and not x.requires_grad
    with torch.no_grad():
        (z0, r0), (z1, r1) = distill.bn_statistics_loss(net, start), distill.bn_statistics_loss(net, x)
        assert _v(r1) < 0.5 * _v(r0)  # the statistics move towards the running ones
        assert _v(F.cross_entropy(z1, y)) < _v(F.cross_entropy(z0, y))
        only_classes = distill.deep_inversion(net, y, input_shape=(1, 4, 4), steps=150, bn_weight=0, seed=3)
        assert (net(only_classes).argmax(1) == y).all()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert not net.training and all(p.requires_grad for p in net.parameters())
    clamped = distill.deep_inversion(net, y, input_shape=(1, 4, 4), steps=3, bounds=(0.0, 1.0))
    assert clamped.min() >= 0 and clamped.max() <= 1
    with pytest.raises(ValueError, match="teacher has no BatchNorm layer"):
        distill.deep_inversion(nn.Linear(3, 2), y, input_shape=(3,), steps=1)
    with pytest.raises(ValueError, match="tv_weight needs image inputs"):
        distill.deep_inversion(net, y, input_shape=(16,), tv_weight=0.1, steps=1)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        distill.deep_inversion(net, y, input_shape=(1, 4, 4), steps=0)


# ------------------------------------------------------------------ generative KD

def _kl(p, q):
    return sum(p[v] * (p[v].log() - q[v].log()) for v in range(len(p)))


def _positions(s, t, mask):
    ps, pt = F.softmax(s, -1), F.softmax(t, -1)
    return [(ps[b, i], pt[b, i]) for b in range(s.shape[0]) for i in range(s.shape[1]) if mask[b, i]]


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_token_kl_matches_its_definition_over_the_masked_positions(direction):
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, False, False]])

    def written_out(x):
        pairs = _positions(x, t, mask)
        terms = [_kl(pt, ps) if direction == "forward" else _kl(ps, pt) for ps, pt in pairs]
        return sum(terms) / len(terms)

    got = distill.token_kl(s, t, direction=direction, mask=mask)
    assert _v(got) == pytest.approx(_v(written_out(s)), rel=1e-10)
    _grad_close(lambda x: distill.token_kl(x, t, direction=direction, mask=mask), written_out, s)


def test_generalized_jsd_matches_its_definition_and_tends_to_both_kls():
    gen = torch.Generator().manual_seed(5)
    s = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
    mask = torch.ones(2, 3, dtype=torch.bool)
    beta = 0.3

    def written_out(x):
        terms = []
        for ps, pt in _positions(x, t, mask):
            m = beta * pt + (1 - beta) * ps
            terms.append(beta * _kl(pt, m) + (1 - beta) * _kl(ps, m))
        return sum(terms) / len(terms)

    got = distill.generalized_jsd(s, t, beta=beta)
    assert _v(got) == pytest.approx(_v(written_out(s)), rel=1e-10)
    _grad_close(lambda x: distill.generalized_jsd(x, t, beta=beta), written_out, s)
    small = 1e-6
    assert _v(distill.generalized_jsd(s, t, beta=small)) / small == pytest.approx(
        _v(distill.token_kl(s, t)), rel=1e-4)
    assert _v(distill.generalized_jsd(s, t, beta=1 - small)) / small == pytest.approx(
        _v(distill.token_kl(s, t, direction="reverse")), rel=1e-4)
    assert _v(distill.generalized_jsd(s, t, beta=0.0)) == 0.0


def test_teacher_gets_no_gradient_and_bad_input_is_named():
    s, t = torch.randn(2, 4, requires_grad=True), torch.randn(2, 4, requires_grad=True)
    distill.token_kl(s, t).backward()
    assert t.grad is None and s.grad is not None
    with pytest.raises(ValueError, match="direction must be one of 'forward', 'reverse'; got 'both'"):
        distill.token_kl(s, t, direction="both")
    with pytest.raises(ValueError, match="mask must be a tensor of shape"):
        distill.token_kl(s, t, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask marks no position"):
        distill.token_kl(s, t, mask=torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\], got 2.0"):
        distill.generalized_jsd(s, t, beta=2.0)


def test_the_distiller_takes_relational_hints():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    teacher = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 3)).eval()
    x, y = _toy()
    d = distill.Distiller(student, teacher, alpha=0.0, hints=[("1", "1")], hint_kind="relation")
    d._add_hooks()
    with torch.no_grad():
        teacher(x[:8])
    loss = d.objective(student, (x[:8], y[:8]))
    want = F.cross_entropy(student(x[:8]), y[:8]) + distill.rkd_loss(student[1](student[0](x[:8])),
                                                                      teacher[1](teacher[0](x[:8])))
    d.remove_hooks()
    assert _v(loss) == pytest.approx(_v(want), rel=1e-5)


# ------------------------------------------------------------------ sequences: a tiny char LM

def _lm(seed, hidden=16):
    from kdlab.models import CharLM

    torch.manual_seed(seed)
    return CharLM(7, embedding=8, hidden=hidden).eval()


def test_the_char_lm_is_causal_and_its_stepping_equals_the_whole_pass():
    lm = _lm(0)
    x = torch.randint(0, 7, (2, 6), generator=torch.Generator().manual_seed(0))
    changed = x.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % 7
    with torch.no_grad():
        torch.testing.assert_close(lm(x)[:, :4], lm(changed)[:, :4])  # no position sees the future
        first, state = lm.step(x[:, :3])
        rest, _ = lm.step(x[:, 3:], state)
        torch.testing.assert_close(torch.cat([first, rest], 1), lm(x))


def test_greedy_sampling_and_sequence_kd_data_follow_the_argmax_written_out():
    lm = _lm(1)
    prompts = torch.tensor([[1, 2], [3, 0]])
    seq = distill.sample(lm, prompts, 4, temperature=0)
    want = prompts.clone()
    with torch.no_grad():
        for _ in range(4):  # re-run the whole prefix: no state involved
            want = torch.cat([want, lm(want)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(seq, want)
    x, y = distill.sequence_kd_data(lm, prompts, 4)
    assert torch.equal(x, want[:, :-1]) and torch.equal(y, want[:, 1:])
    a = distill.sample(lm, prompts, 5, temperature=1.0, seed=3)
    assert torch.equal(a, distill.sample(lm, prompts, 5, temperature=1.0, seed=3))
    assert torch.equal(a[:, :2], prompts)
    with pytest.raises(ValueError, match="prompts must be token ids"):
        distill.sample(lm, torch.zeros(2, 3), 4)


def test_gkd_off_policy_with_beta_0_is_word_level_kd_and_on_policy_uses_the_students_text():
    student, teacher = _lm(2), _lm(3, hidden=24)
    x = torch.randint(0, 7, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[:, 3:9] = True  # prompt of 4: positions 3..8 predict tokens 4..9
    off = distill.GKDObjective(teacher, beta=0.0, on_policy=0.0, prompt_length=4)
    with torch.no_grad():
        want = distill.token_kl(student(x), teacher(x), mask=mask)
    assert _v(off(student, (x, x))) == pytest.approx(_v(want), rel=1e-6)
    mixed = distill.GKDObjective(teacher, beta=0.5, on_policy=0.0, prompt_length=4)
    with torch.no_grad():
        assert _v(mixed(student, (x, x))) == pytest.approx(
            _v(distill.generalized_jsd(student(x), teacher(x), beta=0.5, mask=mask)), rel=1e-6)
    on = distill.GKDObjective(teacher, beta=1.0, on_policy=1.0, prompt_length=4, seed=5)
    text = on.text(student, x)
    assert on.on_policy_batches == 1 and torch.equal(text[:, :4], x[:, :4]) and not torch.equal(text, x)
    replay = distill.GKDObjective(teacher, beta=1.0, on_policy=1.0, prompt_length=4, seed=5)
    loss = replay(student, (x, x))
    with torch.no_grad():
        assert _v(loss) == pytest.approx(_v(distill.token_kl(student(text), teacher(text), direction="reverse",
                                                             mask=mask)), rel=1e-6)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())
    with pytest.raises(ValueError, match=r"on_policy must be in \[0, 1\], got 1.5"):
        distill.GKDObjective(teacher, on_policy=1.5)


def test_the_shipped_text_loads_and_splits():
    from kdlab.data.text import load_text

    corpus = load_text()
    assert corpus.vocab_size < 64 and len(corpus.text) > 20_000
    parts = [corpus.part(p) for p in ("train", "val", "test")]
    assert "".join(parts) == corpus.text
    x, y = corpus.windows("val", 50)
    assert torch.equal(x[:, 1:], y[:, :-1]) and corpus.decode(x[0]) == corpus.part("val")[:50]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        corpus.encode("Ü")
    with pytest.raises(ValueError, match="part must be one of 'train', 'val', 'test'; got 'dev'"):
        corpus.part("dev")
