"""Lottery tickets (kdlab.prune.lottery_ticket): compounded sparsity, exact rewinding, kept masks."""
import pytest
import torch

from kdlab import prune, train
from kdlab.models import MLP


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=g), torch.randint(0, 3, (n,), generator=g)


def _make():
    return MLP(in_features=12, hidden=(16, 8), num_classes=3)


def _ticket(**kw):
    torch.manual_seed(0)
    options = dict(epochs=2, rounds=3, amount_per_round=0.4, batch_size=32, progress=False)
    options.update(kw)
    return prune.lottery_ticket(_make, _data(), **options)


def _state_after(steps):
    """theta_k written out: the same model and data, trained by fit and stopped after `steps` steps."""
    torch.manual_seed(0)
    model = _make()

    def stop(state):
        if state.step == steps:
            state.stop = True

    if steps:
        train.fit(model, _data(), epochs=2, batch_size=32, progress=False, callbacks=[stop])
    return model.state_dict()


def test_compounded_sparsity_formula():
    for p, r in [(0.2, 1), (0.2, 3), (0.5, 4), (0.536, 3)]:
        assert prune.compounded_sparsity(p, r) == pytest.approx(1 - (1 - p) ** r, abs=1e-12)
    assert prune.compounded_sparsity(0.3, 0) == 0.0


def test_every_round_has_the_compounded_sparsity_exactly():
    ticket = _ticket(rounds=4, amount_per_round=0.3)
    n = sum(m.numel() for m in ticket.round_masks[0].values())
    assert len(ticket.round_masks) == 4
    for r, masks in enumerate(ticket.round_masks, start=1):
        pruned = sum(int((~m).sum()) for m in masks.values())
        assert pruned == round((1 - (1 - 0.3) ** r) * n)
    for earlier, later in zip(ticket.round_masks, ticket.round_masks[1:]):
        for name in earlier:
            assert not (later[name] & ~earlier[name]).any(), "a pruned weight never comes back"
    assert ticket.masks.sparsity == pytest.approx(1 - 0.7 ** 4, abs=1 / n)


@pytest.mark.parametrize("rewind_to, k", [("init", 0), (0, 0), (2, 2), (5, 5)])
def test_survivors_equal_theta_k_exactly(rewind_to, k):
    ticket = _ticket(rewind_to=rewind_to)
    theta_k = _state_after(k)
    assert ticket.rewind_step == k
    state = ticket.model.state_dict()
    for name, value in theta_k.items():
        assert torch.equal(ticket.rewind_state[name], value)
        if name in ticket.masks:
            mask = ticket.masks[name]
            assert torch.equal(state[name][mask], value[mask])
            assert (state[name][~mask] == 0).all()
        else:
            assert torch.equal(state[name], value), "biases are rewound too"
    for name, value in ticket.init_state.items():
        assert torch.equal(value, _state_after(0)[name])


def test_dense_network_is_fit_from_theta_0():
    ticket = _ticket()
    torch.manual_seed(0)
    model = _make()
    train.fit(model, _data(), epochs=2, batch_size=32, progress=False)
    for name, value in model.state_dict().items():
        assert torch.equal(ticket.dense.state_dict()[name], value)


def test_masks_hold_through_training_and_random_reinit_keeps_the_mask():
    ticket = _ticket()
    train.fit(ticket.model, _data(), epochs=2, batch_size=32, progress=False, callbacks=[ticket.masks.callback()])
    for name, mask in ticket.masks.items():
        w = ticket.model.get_parameter(name)
        assert (w[~mask] == 0).all() and (w[mask] != 0).all()
    model, masks = ticket.random_reinit(seed=3)
    again, _ = ticket.random_reinit(seed=3)
    for name, mask in masks.items():
        w = model.get_parameter(name)
        assert torch.equal(mask, ticket.masks[name]) and masks.model is model
        assert (w[~mask] == 0).all()
        assert not torch.equal(w[mask], ticket.init_state[name][mask]), "new random values"
        assert torch.equal(w, again.get_parameter(name)), "seeded"
    with pytest.raises(ValueError, match="seed=0 draws theta_0"):
        ticket.random_reinit(seed=0)


@pytest.mark.parametrize("kw, error, words", [
    (dict(rounds=0), ValueError, "rounds"),
    (dict(amount_per_round=1.5), ValueError, "amount_per_round"),
    (dict(amount_per_round=1.0), ValueError, "amount_per_round"),
    (dict(rewind_to="end"), TypeError, "rewind_to"),
    (dict(rewind_to=-1), ValueError, "rewind_to"),
    (dict(rewind_to=10_000), ValueError, "rewind_to"),
    (dict(scope="net"), ValueError, "scope"),
    (dict(callbacks=[]), ValueError, "callbacks"),
])
def test_bad_input_names_the_argument(kw, error, words):
    with pytest.raises(error, match=words):
        _ticket(**kw)


def test_bad_make_model():
    with pytest.raises(TypeError, match="make_model"):
        prune.lottery_ticket(_make(), _data(), epochs=1, rounds=1, amount_per_round=0.5)
    with pytest.raises(TypeError, match="make_model"):
        prune.lottery_ticket(lambda: "net", _data(), epochs=1, rounds=1, amount_per_round=0.5)
