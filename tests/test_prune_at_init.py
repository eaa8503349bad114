"""Pruning at initialisation: GraSP (Wang et al. 2020) and SynFlow (Tanaka et al. 2020), checked
against their formulas written out here, and the iterative SynFlow schedule."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlab import data, models, prune
from kdlab.prune import unstructured


def two_layers(bias: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4, bias=bias), nn.ReLU(), nn.Linear(4, 2, bias=bias))


def test_synflow_scores_are_the_path_sums_of_the_absolute_network():
    """f(1) = |W2| relu(|W1| 1 + |b1|) + |b2| on the linearised net; everything is >= 0, so
    dR/d|W1|_ij = sum_k |W2|_ki and dR/d|W2|_ki = (|W1| 1 + |b1|)_i, each times |w|."""
    net = two_layers()
    with torch.no_grad():
        net[0].weight[0, 0] = -0.7  # a negative weight and bias: their absolute values count
        net[0].bias[1] = -0.3
    before = {n: t.clone() for n, t in net.state_dict().items()}
    w1, b1, w2 = (t.detach().double().abs() for t in (net[0].weight, net[0].bias, net[2].weight))
    weights = prune.prunable_weights(net)
    scores = prune.SynFlow().weight_scores(net, weights)
    torch.testing.assert_close(scores["0.weight"], w1 * w2.sum(0)[:, None])
    torch.testing.assert_close(scores["2.weight"], w2 * (w1.sum(1) + b1)[None, :])
    assert all(s.dtype == torch.float64 and (s >= 0).all() and not s.requires_grad for s in scores.values())
    # R itself: 1^T f(1) with the absolute values, the sum of the scores of one layer (Euler's theorem
    # for a network that is linear in each layer's weights, without the biases' share)
    r = (w2 @ (w1.sum(1) + b1)).sum() + net[2].bias.detach().double().abs().sum()
    bias_share = (w2 @ b1).sum() + net[2].bias.detach().double().abs().sum()
    assert float(scores["0.weight"].sum()) == pytest.approx(float(r - bias_share))
    for name, t in net.state_dict().items():  # values, signs and dtype untouched
        assert torch.equal(t, before[name]) and t.dtype == torch.float32
    assert net.training


def test_synflow_needs_no_data_and_finds_the_input_shape():
    cnn = models.create("cnn-student", input_shape=(1, 8, 8))
    weights = prune.prunable_weights(cnn)
    with pytest.raises(ValueError, match="input_shape"):
        prune.SynFlow().weight_scores(cnn, weights)
    given = prune.SynFlow(input_shape=(1, 8, 8)).weight_scores(cnn, weights)
    from_data = prune.SynFlow(data=data.load_digits(flat=False)).weight_scores(cnn, weights)
    assert all(torch.equal(given[n], from_data[n]) for n in weights)
    masks = prune.gradient_prune(cnn, 0.5, None, criterion="synflow", iterations=3, input_shape=(1, 8, 8))
    assert masks.sparsity == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(TypeError, match="input_shape"):
        prune.SynFlow(input_shape=64)


def test_iterative_synflow_follows_the_exponential_schedule_to_the_exact_sparsity(monkeypatch):
    targets = []
    original = unstructured.masks_from_scores

    def record(model, scores, amount, **kw):
        targets.append(amount)
        return original(model, scores, amount, **kw)

    monkeypatch.setattr(unstructured, "masks_from_scores", record)
    model = models.create("lenet-300-100")
    masks = prune.gradient_prune(model, 0.98, None, criterion="synflow", iterations=7)
    assert targets[:-1] == pytest.approx([1 - 0.02 ** (k / 7) for k in range(1, 7)])
    assert targets[-1] == 0.98
    n = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.98 * n)
    assert prune.sparsity(model)["global"] == pytest.approx(0.98, abs=1e-5)
    targets.clear()
    prune.gradient_prune(models.create("mlp-student"), 0.5, None, criterion="synflow")
    assert len(targets) == 100  # the paper's 100 rounds by default


def test_one_synflow_round_is_single_shot_synflow():
    a, b = models.create("mlp-student"), models.create("mlp-student")
    b.load_state_dict(a.state_dict())
    by_name = prune.gradient_prune(a, 0.8, None, criterion="synflow", iterations=1)
    by_object = prune.unstructured_prune(b, 0.8, prune.SynFlow())
    assert all(torch.equal(by_name[n], by_object[n]) for n in by_name)


def test_iterations_avoid_the_collapse_of_a_layer():
    """Each layer's single-shot SynFlow scores add up to the same flow R, so the 1,000-weight
    output layer's weights score far above the 19,200 of the first: at 99% one round cuts the
    two hidden layers off entirely; 100 rounds keep every layer connected."""
    torch.manual_seed(0)
    one = models.create("lenet-300-100")
    rounds = models.create("lenet-300-100")
    rounds.load_state_dict(one.state_dict())
    single = prune.gradient_prune(one, 0.99, None, criterion="synflow", iterations=1)
    assert int(single["layers.0.weight"].sum()) == 0 and int(single["layers.4.weight"].sum()) > 0
    assert all(int(m.sum()) > 0 for m in prune.gradient_prune(rounds, 0.99, None, criterion="synflow").values())


def tiny_grasp_case():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    return net, x, y


def explicit_hg(net, x, y, batch_size, temperature=1.0):
    """g and H g over the two weight matrices, with an explicit Hessian summed over the batches."""
    shapes = [net[0].weight.shape, net[2].weight.shape]
    sizes = [math.prod(s) for s in shapes]

    def loss(theta, xb, yb):
        w1, w2 = theta[:sizes[0]].view(shapes[0]), theta[sizes[0]:].view(shapes[1])
        logits = torch.tanh(xb @ w1.T + net[0].bias.detach()) @ w2.T + net[2].bias.detach()
        return F.cross_entropy(logits / temperature, yb)

    theta = torch.cat([net[0].weight.detach().flatten(), net[2].weight.detach().flatten()])
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    g = sum(torch.autograd.functional.jacobian(lambda t: loss(t, xb, yb), theta) for xb, yb in batches)
    h = sum(torch.autograd.functional.hessian(lambda t: loss(t, xb, yb), theta) for xb, yb in batches)
    hg = h @ g
    return theta, hg, sizes, shapes


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_grasp_scores_are_w_times_the_hessian_gradient_product(temperature):
    net, x, y = tiny_grasp_case()
    theta, hg, sizes, shapes = explicit_hg(net, x, y, batch_size=5, temperature=temperature)
    grasp = prune.GraSP((x, y), batches=2, batch_size=5, temperature=temperature)
    weights = prune.prunable_weights(net)
    scores = grasp.weight_scores(net, weights)
    expected = (theta * hg).split(sizes)
    for (name, s), e, shape in zip(scores.items(), expected, shapes):
        torch.testing.assert_close(s, e.view(shape), rtol=1e-4, atol=1e-7)
    _, hg_lib = grasp.hessian_gradient(net, list(weights.values()))
    torch.testing.assert_close(torch.cat([h.flatten() for h in hg_lib]), hg, rtol=1e-4, atol=1e-7)
    assert all(w.grad is None for w in weights.values()) and net.training


def test_grasp_hessian_gradient_matches_torch_hvp():
    net, x, y = tiny_grasp_case()
    weights = prune.prunable_weights(net)
    params = list(weights.values())
    g, hg = prune.GraSP((x, y), batch_size=len(x)).hessian_gradient(net, params)

    def loss(w1, w2):
        logits = torch.tanh(x @ w1.T + net[0].bias.detach()) @ w2.T + net[2].bias.detach()
        return F.cross_entropy(logits, y)

    _, expected = torch.autograd.functional.hvp(loss, tuple(p.detach() for p in params), tuple(g))
    for a, b in zip(hg, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_grasp_removes_the_weights_with_the_highest_paper_score():
    """The paper's S = -w * (H g) and removes its highest values: kdlab keeps the largest -S."""
    net, x, y = tiny_grasp_case()
    theta, hg, sizes, _ = explicit_hg(net, x, y, batch_size=len(x))
    paper_score = -theta * hg
    masks = prune.gradient_prune(net, 0.5, (x, y), criterion="grasp", batch_size=len(x))
    kept = torch.cat([m.flatten() for m in masks.values()])
    assert int((~kept).sum()) == round(0.5 * len(theta))
    assert paper_score[~kept].min() >= paper_score[kept].max()


@pytest.mark.parametrize("criterion", ["grasp", "synflow"])
@pytest.mark.parametrize("amount", [1.0, -0.1, 1.5, math.nan])
def test_at_init_amount_must_be_below_one(criterion, amount):
    model = models.create("mlp-tiny")
    with pytest.raises(ValueError, match="amount"):
        prune.gradient_prune(model, amount, data.load_digits(), criterion=criterion)


def test_bad_input():
    model = models.create("mlp-tiny")
    split = data.load_digits()
    with pytest.raises(ValueError, match="criterion must be one of 'taylor', 'snip', 'grasp', 'synflow'"):
        prune.gradient_prune(model, 0.5, split, criterion="synflw")
    with pytest.raises(ValueError, match="iterations must be an integer >= 1, got 0"):
        prune.gradient_prune(model, 0.5, None, criterion="synflow", iterations=0)
    with pytest.raises(TypeError, match="iterations must be an integer"):
        prune.gradient_prune(model, 0.5, None, criterion="synflow", iterations=2.5)
    with pytest.raises(ValueError, match="data is required for criterion='grasp'"):
        prune.gradient_prune(model, 0.5, None, criterion="grasp")
    with pytest.raises(ValueError, match="data is required for GraSP"):
        prune.GraSP(None)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got 0.0"):
        prune.GraSP(split, temperature=0)
    before = model.layers[0].weight.detach().clone()
    with pytest.raises(ValueError):
        prune.gradient_prune(model, 1.0, None, criterion="synflow")
    assert torch.equal(before, model.layers[0].weight)  # nothing done before the error


def test_shuffled_prune_keeps_each_layers_sparsity_and_moves_the_weights():
    source, target = models.create("lenet-300-100"), models.create("lenet-300-100")
    like = prune.gradient_prune(source, 0.95, None, criterion="synflow", iterations=10)
    a = prune.shuffled_prune(target, like, seed=0)
    for name, mask in like.items():
        assert int(a[name].sum()) == int(mask.sum())
        assert not torch.equal(a[name], mask)
        assert torch.equal(target.get_parameter(name) == 0, ~a[name])  # applied
    b = prune.shuffled_prune(models.create("lenet-300-100"), like, seed=0)
    c = prune.shuffled_prune(models.create("lenet-300-100"), like, seed=1)
    assert all(torch.equal(a[n], b[n]) for n in like) and not torch.equal(a["layers.0.weight"], c["layers.0.weight"])
    with pytest.raises(TypeError, match="like must be the masks"):
        prune.shuffled_prune(target, 0.9)
    with pytest.raises(ValueError, match="matches no prunable weight"):
        prune.shuffled_prune(models.create("mlp-student"), like)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        prune.shuffled_prune(target, like, seed=-1)
