"""Movement pruning (kdlab.prune.MovementScores): S = -sum_t W_t * dL/dW_t, written out by hand."""
import pytest
import torch
from torch import nn

from kdlab import prune, train


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    x = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.8, -1.0]])
    y = torch.tensor([1, 0])
    return model, x, y


def _by_hand(model, x, y, steps, lr):
    """Plain SGD on the full batch with the gradient of the mean cross-entropy written out:
    dL/dz = (softmax(z) - onehot(y)) / n, back through the ReLU; S -= W * grad at every step."""
    w1, w2 = (m.weight.detach().clone().double() for m in (model[0], model[2]))
    x = x.double()
    s1, s2 = torch.zeros_like(w1), torch.zeros_like(w2)
    for _ in range(steps):
        a = x @ w1.T
        h = a.clamp(min=0)
        z = h @ w2.T
        dz = (torch.softmax(z, 1) - nn.functional.one_hot(y, 2).double()) / len(y)
        g2 = dz.T @ h
        dh = (dz @ w2) * (a > 0)
        g1 = dh.T @ x
        s1 -= w1 * g1
        s2 -= w2 * g2
        w1, w2 = w1 - lr * g1, w2 - lr * g2
    return {"0.weight": s1, "2.weight": s2}


def _train(model, x, y, callbacks, steps=3, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return train.fit(model, (x, y), epochs=steps, optimizer=opt, batch_size=len(y), callbacks=callbacks,
                     progress=False)


def test_scores_follow_the_formula_step_by_step():
    model, x, y = _setup()
    expected = _by_hand(model, x, y, steps=3, lr=0.1)
    movement = prune.MovementScores()
    _train(model, x, y, [movement])
    assert movement.steps == 3
    for name, s in expected.items():
        assert torch.allclose(movement.scores[name].double(), s, atol=1e-6)
        assert not torch.equal(s, torch.zeros_like(s))
    scores = movement.weight_scores(model, prune.prunable_weights(model))
    assert set(scores) == {"0.weight", "2.weight"}


def test_a_weight_moving_outward_gains_score():
    """One weight, loss L = -c * w: gradient -c, so S = sum_t c * w_t; w grows away from zero."""
    w = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        w.weight.fill_(0.5)
    movement = prune.MovementScores()
    opt = torch.optim.SGD(w.parameters(), lr=0.1)
    x, y = torch.ones(1, 1), torch.zeros(1, 1)
    train.fit(w, (x, y), epochs=2, optimizer=opt, loss_fn=lambda out, t: -2.0 * out.sum(), callbacks=[movement],
              progress=False)
    # w: 0.5 -> 0.7 -> 0.9; S = 2 * 0.5 + 2 * 0.7
    assert movement.scores["weight"].item() == pytest.approx(2.4, abs=1e-6)
    assert w.weight.item() == pytest.approx(0.9, abs=1e-6)


def test_pruning_keeps_the_highest_scores_and_schedules_work():
    model, x, y = _setup()
    movement = prune.MovementScores()
    _train(model, x, y, [movement])
    s = torch.cat([movement.scores[n].flatten() for n in ("0.weight", "2.weight")])
    masks = prune.unstructured_prune(model, 0.5, movement)
    kept = torch.cat([masks[n].flatten() for n in ("0.weight", "2.weight")])
    assert int(kept.sum()) == 10 and s[kept].min() >= s[~kept].max()

    model, x, y = _setup()
    movement = prune.MovementScores(layers=["0"])
    agp = prune.AGP(0.0, 0.75, start=0, end=4, frequency=1, prune_fn=movement.prune_fn)
    _train(model, x, y, [movement, agp], steps=6)
    assert int((model[0].weight == 0).sum()) == 9 and int((model[2].weight == 0).sum()) == 0


def test_bad_input():
    model, x, y = _setup()
    movement = prune.MovementScores()
    with pytest.raises(ValueError, match="no scores"):
        movement.weight_scores(model, prune.prunable_weights(model))
    _train(model, x, y, [movement])
    with pytest.raises(ValueError, match="amount"):
        movement.prune_fn(model, 1.5)
    with pytest.raises(ValueError, match="scope"):
        movement.prune_fn(model, 0.5, scope="row")
    with pytest.raises(ValueError, match="layers"):
        prune.MovementScores(layers=["nope"]).on_train_start(type("S", (), {"model": model, "optimizer": None})())
