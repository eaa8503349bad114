import pytest
import torch

from kdlab import evaluate, models, prune, train
from kdlab.prune import regrow


def _pruned(amount=0.8):
    torch.manual_seed(0)
    model = models.create("mlp-student")
    return model, prune.magnitude_prune(model, amount, scope="layer")


def _grads(model):
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    torch.nn.functional.cross_entropy(model(x), y).backward()


def test_drop_and_grow_keeps_sparsity_and_moves_k():
    model, masks = _pruned()
    _grads(model)
    new, moved = regrow.drop_and_grow(masks, 0.25)
    for name in masks:
        assert int(new[name].sum()) == int(masks[name].sum())
        changed = int((new[name] & ~masks[name]).sum())
        assert changed == round(0.25 * int(masks[name].sum()))
    assert moved == sum(round(0.25 * int(m.sum())) for m in masks.values())
    assert new.sparsity == pytest.approx(masks.sparsity)
    # grown weights start at exactly zero, so the model has more zeros than the mask
    assert prune.sparsity(model)["global"] > new.sparsity


def test_gradient_growth_picks_largest_gradients_and_drops_smallest_weights():
    model, masks = _pruned()
    _grads(model)
    name = "layers.0.weight"
    w, g, m = model.get_parameter(name).detach().clone(), model.get_parameter(name).grad.clone(), masks[name]
    new, _ = regrow.drop_and_grow(masks, 0.1)
    grown = new[name] & ~m
    dropped = m & ~new[name]
    assert g.abs()[grown].min() >= g.abs()[~m & ~grown].max()
    assert w.abs()[dropped].max() <= w.abs()[m & ~dropped].min()
    assert torch.all(model.get_parameter(name).detach()[grown] == 0)


def test_random_growth_needs_no_gradient_and_grows_where_the_seed_says():
    model, masks = _pruned()
    before = {name: model.get_parameter(name).detach().clone() for name in masks}
    grown = {}
    for seed in (1, 2):
        _, fresh = _pruned()
        new, moved = regrow.drop_and_grow(fresh, 0.3, grow="random", generator=torch.Generator().manual_seed(seed))
        assert moved == sum(round(0.3 * int(m.sum())) for m in masks.values())
        for name, m in masks.items():
            dropped, grown[seed, name] = m & ~new[name], new[name] & ~m
            k = round(0.3 * int(m.sum()))
            assert int(dropped.sum()) == int(grown[seed, name].sum()) == k
            # the smallest active weights go, whatever the seed; the grown ones start at 0
            assert before[name].abs()[dropped].max() <= before[name].abs()[m & ~dropped].min()
            assert torch.all(new.model.get_parameter(name).detach()[grown[seed, name]] == 0)
    assert any(not torch.equal(grown[1, n], grown[2, n]) for n in masks), "another seed grows other weights"


def test_drop_and_grow_rejects_bad_input():
    model, masks = _pruned()
    with pytest.raises(ValueError, match="grad"):
        regrow.drop_and_grow(masks, 0.3)
    with pytest.raises(ValueError, match="fraction"):
        regrow.drop_and_grow(masks, 1.5, grow="random")
    with pytest.raises(ValueError, match="grow"):
        regrow.drop_and_grow(masks, 0.3, grow="magnitude")
    with pytest.raises(TypeError, match="masks"):
        regrow.drop_and_grow({}, 0.3)


def test_callback_trains_at_fixed_sparsity_and_moves_weights(split):
    model, masks = _pruned(0.7)
    start = {n: m.clone() for n, m in masks.items()}
    rigl = regrow.PruneRegrow(masks, every=5, drop_fraction=0.3)
    train.fit(model, split.train, epochs=3, lr=1e-2, callbacks=[rigl], progress=False)
    assert rigl.masks.sparsity == pytest.approx(0.7, abs=1e-3)
    assert prune.sparsity(model)["global"] == pytest.approx(0.7, abs=1e-3)
    assert rigl.regrown > 0
    assert any(not torch.equal(start[n], rigl.masks[n]) for n in start)
    assert evaluate.accuracy(model, split.test) > 0.5


def test_fraction_schedule_is_cosine():
    _, masks = _pruned()
    rigl = regrow.PruneRegrow(masks, drop_fraction=0.4, until=100)
    assert rigl.fraction_at(0, 100) == pytest.approx(0.4)
    assert rigl.fraction_at(50, 100) == pytest.approx(0.2)
    assert rigl.fraction_at(100, 100) == 0.0
    with pytest.raises(ValueError, match="every"):
        regrow.PruneRegrow(masks, every=0)
