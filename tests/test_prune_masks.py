"""PruningMasks: masks that stay applied without hooks, through optimizers, copies and fit."""
import copy

import pytest
import torch
from torch import nn

from kdlab import data, models, prune, train


def steps(model, optimizer, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(32, 64, generator=gen)
        y = torch.randint(0, 10, (32,), generator=gen)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def pruned_entries(model, masks):
    return torch.cat([model.get_parameter(n).detach()[~m] for n, m in masks.items()])


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
], ids=["sgd-momentum", "adam-weight-decay"])
def test_masks_stay_exactly_zero_for_100_steps(lenet, make_optimizer):
    masks = prune.magnitude_prune(lenet, 0.9)
    optimizer = make_optimizer(lenet.parameters())
    masks.attach(optimizer)
    steps(lenet, optimizer, 100)
    assert torch.count_nonzero(pruned_entries(lenet, masks)) == 0
    assert not torch.signbit(pruned_entries(lenet, masks)).any()  # +0.0, not -0.0
    assert prune.sparsity(lenet)["global"] == pytest.approx(0.9, abs=1e-4)
    # and without the hook the same training revives them: the test can fail
    torch.manual_seed(0)
    bare = models.create("lenet-300-100")
    bare_masks = prune.magnitude_prune(bare, 0.9)
    bare_opt = make_optimizer(bare.parameters())
    steps(bare, bare_opt, 100)
    assert torch.count_nonzero(pruned_entries(bare, bare_masks)) > 0


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_kept_weights_train_as_with_a_plain_multiply(lenet, optimizer):
    """Settling the pruned entries of Adam's state changes nothing a kept weight sees."""
    make = {"adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2, amsgrad=True),
            "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)}[optimizer]
    masks = prune.magnitude_prune(lenet, 0.9)
    reference = copy.deepcopy(lenet)
    opt, ref_opt = make(lenet.parameters()), make(reference.parameters())
    masks.attach(opt)
    keep = {n: m.to(torch.float32) for n, m in masks.items()}

    def multiply(*_):
        with torch.no_grad():
            for name, k in keep.items():
                reference.get_parameter(name).mul_(k).add_(0.0)

    ref_opt.register_step_post_hook(multiply)
    steps(lenet, opt, 30)
    steps(reference, ref_opt, 30)
    for (name, a), b in zip(lenet.named_parameters(), reference.parameters()):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32)), name  # bit for bit
    if optimizer == "adam":
        for name, mask in masks.items():
            state = opt.state[lenet.get_parameter(name)]
            assert (state["exp_avg_sq"][~mask] > 0).all() and (state["max_exp_avg_sq"][~mask] > 0).all()
            assert torch.equal(state["exp_avg_sq"][mask], ref_opt.state[reference.get_parameter(name)]["exp_avg_sq"][mask])


def test_apply_keeps_kept_bits_and_follows_the_dtype(lenet):
    masks = prune.magnitude_prune(lenet, 0.5)
    w = lenet.layers[0].weight
    kept = masks["layers.0.weight"].nonzero()[0].tolist()
    with torch.no_grad():
        w[tuple(kept)] = 0.0
        w.neg_()  # the kept 0.0 and the pruned entries become -0.0
    masks.apply()
    assert torch.signbit(w[tuple(kept)])  # a kept -0.0 stays -0.0
    assert not torch.signbit(w.detach()[~masks["layers.0.weight"]]).any()
    lenet.double()  # the masks follow a change of the parameters' dtype
    masks.apply()
    assert lenet.layers[0].weight.dtype == torch.float64
    assert torch.count_nonzero(pruned_entries(lenet, masks)) == 0


def test_detached_handle_stops_reapplying(lenet):
    masks = prune.magnitude_prune(lenet, 0.5)
    optimizer = torch.optim.SGD(lenet.parameters(), lr=0.1, momentum=0.9)
    handle = masks.attach(optimizer)
    handle.remove()
    steps(lenet, optimizer, 3)
    assert torch.count_nonzero(pruned_entries(lenet, masks)) > 0


def test_callback_keeps_masks_in_fit(lenet, split):
    masks = prune.magnitude_prune(lenet, 0.8)
    train.fit(lenet, split, epochs=2, optimizer="adamw", weight_decay=0.1, callbacks=[masks.callback()])
    assert torch.count_nonzero(pruned_entries(lenet, masks)) == 0


def test_pruned_model_is_an_ordinary_model(lenet, tmp_path):
    keys = list(lenet.state_dict())
    prune.magnitude_prune(lenet, 0.7)
    assert list(lenet.state_dict()) == keys
    assert not lenet._forward_pre_hooks and not lenet.layers[0]._forward_pre_hooks
    twin = copy.deepcopy(lenet)
    assert torch.equal(twin.layers[0].weight, lenet.layers[0].weight)
    torch.save(lenet.state_dict(), tmp_path / "m.pt")
    fresh = models.create("lenet-300-100")
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x = torch.randn(3, 64)
    exported = torch.export.export(lenet.eval(), (x,))
    torch.testing.assert_close(exported.module()(x), fresh.eval()(x))


def test_mapping_and_validation(lenet):
    masks = prune.magnitude_prune(lenet, 0.5)
    assert len(masks) == 3 and masks["layers.0.weight"].dtype == torch.bool
    with pytest.raises(ValueError, match="layers.0.weight"):
        prune.PruningMasks(lenet, {"layers.0.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="nope"):
        prune.PruningMasks(lenet, {"nope": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(TypeError, match="optimizer"):
        masks.attach("sgd")


def test_sparsity_reports_global_and_layers(lenet):
    prune.magnitude_prune(lenet, 0.9, scope="layer")
    s = prune.sparsity(lenet)
    assert s["global"] == pytest.approx(0.9, abs=1e-3)
    assert set(s["layers"]) == {"layers.0.weight", "layers.2.weight", "layers.4.weight"}
    assert all(v == pytest.approx(0.9, abs=1e-3) for v in s["layers"].values())


# --- masks and copies ---------------------------------------------------------------

def test_masks_rebind_to_a_copy_and_refuse_another_optimizer(lenet):
    masks = prune.magnitude_prune(lenet, 0.9)
    twin = copy.deepcopy(lenet)
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.5, momentum=0.9)
    with pytest.raises(ValueError, match=r"rebind\(copy\)"):
        masks.attach(optimizer)
    twin_masks = masks.rebind(twin)
    twin_masks.attach(optimizer)
    steps(twin, optimizer, 5)
    assert torch.count_nonzero(pruned_entries(twin, twin_masks)) == 0
    model2, masks2 = copy.deepcopy((lenet, masks))
    assert masks2.model is model2 and masks2.sparsity == masks.sparsity
    with pytest.raises(ValueError, match="rebind"):
        train.fit(twin, data.load_digits(), epochs=1, callbacks=[masks.callback()], progress=False)
