"""Masks that stay applied without hooks; schedules; sparse checkpoints; sensitivity."""
import copy
import math

import pytest
import torch
from torch import nn

from kdlab import data, evaluate, models, prune, train


@pytest.fixture
def lenet():
    torch.manual_seed(0)
    return models.create("lenet-300-100")


@pytest.fixture(scope="module")
def split():
    return data.load_digits()


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


# --- schedules -------------------------------------------------------------------

def test_agp_follows_the_zhu_gupta_formula():
    si, sf, t0, t1, dt = 0.1, 0.9, 10, 110, 20
    agp = prune.AGP(si, sf, start=t0, end=t1, frequency=dt)
    n = (t1 - t0) / dt
    for t in range(0, 150):
        if t < t0:
            expected = 0.0
        elif t >= t1:
            expected = sf
        else:
            tq = t0 + (t - t0) // dt * dt
            expected = sf + (si - sf) * (1 - (tq - t0) / (n * dt)) ** 3
        assert agp.sparsity_at(t) == pytest.approx(expected, abs=1e-12), t
    assert agp.sparsity_at(t0) == pytest.approx(si)
    assert agp.sparsity_at(t0 + 50) == pytest.approx(sf + (si - sf) * (1 - 40 / 100) ** 3)


def test_iterative_and_one_shot_values():
    it = prune.Iterative(0.9, 3, every=10, start=5)
    assert [it.sparsity_at(t) for t in (0, 5, 14, 15, 25, 100)] == pytest.approx([0, 0.3, 0.3, 0.6, 0.9, 0.9])
    assert prune.OneShot(0.4).sparsity_at(1000) == 0.4


def test_iterative_geometric_removes_the_same_fraction_of_survivors_each_round():
    it = prune.Iterative(0.97, 4, every=10, start=5, geometric=True)
    values = [it.sparsity_at(t) for t in (0, 5, 15, 25, 35, 1000)]
    assert values[0] == 0 and values[-2] == pytest.approx(0.97) and values[-1] == pytest.approx(0.97)
    kept = [1 - s for s in values[1:5]]
    removed = [1 - kept[0]] + [1 - b / a for a, b in zip(kept, kept[1:])]
    assert removed == pytest.approx([1 - 0.03 ** 0.25] * 4)
    assert prune.Iterative(0.97, 4, every=10).sparsity_at(35) == pytest.approx(0.97)  # default unchanged
    with pytest.raises(TypeError, match="geometric"):
        prune.Iterative(0.9, 3, every=10, geometric="yes")


@pytest.mark.parametrize("schedule", [
    lambda: prune.AGP(0.0, 0.8, start=0, end=40, frequency=5),
    lambda: prune.Iterative(0.8, 4, every=10),
    lambda: prune.Iterative(0.8, 4, every=10, geometric=True),
    lambda: prune.AGP(0.0, 0.8, start=0, end=40, frequency=5,
                      prune_fn=lambda m, a, previous: prune.random_prune(m, a, seed=0, scope="layer",
                                                                         previous=previous)),
], ids=["agp-magnitude", "iterative", "iterative-geometric", "agp-random-layer"])
def test_schedules_drive_fit_and_never_revive_weights(lenet, split, schedule):
    schedule = schedule()
    seen = []
    record = lambda state: seen.append({n: m.clone() for n, m in schedule.masks.items()}) \
        if schedule.masks is not None else None
    train.fit(lenet, split, epochs=4, callbacks=[schedule, record])  # 15 steps per epoch
    assert prune.sparsity(lenet)["global"] == pytest.approx(0.8, abs=1e-4)
    for before, after in zip(seen, seen[1:]):
        assert all(not torch.any(after[n] & ~before[n]) for n in before)
    assert torch.count_nonzero(pruned_entries(lenet, schedule.masks)) == 0


def test_gradient_criterion_in_a_schedule(lenet, split):
    import functools

    taylor = functools.partial(prune.gradient_prune, data=split, criterion="taylor")
    train.fit(lenet, split, epochs=1, callbacks=[prune.OneShot(0.7, prune_fn=taylor)])
    assert prune.sparsity(lenet)["global"] == pytest.approx(0.7, abs=1e-4)


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="initial"):
        prune.AGP(0.9, 0.5, start=0, end=10)
    with pytest.raises(ValueError, match="end"):
        prune.AGP(0.0, 0.5, start=10, end=10)
    with pytest.raises(ValueError, match="final"):
        prune.AGP(0.0, math.nan, start=0, end=10)
    with pytest.raises(ValueError, match="n_steps"):
        prune.Iterative(0.5, 0, every=3)
    with pytest.raises(TypeError, match="prune_fn"):
        prune.OneShot(0.5, prune_fn="magnitude")


# --- sparse checkpoints -----------------------------------------------------------

def test_save_sparse_round_trips_exactly(lenet, tmp_path):
    prune.magnitude_prune(lenet, 0.9)
    with torch.no_grad():
        lenet.layers[0].weight[0, 0] = -0.0  # sign of zero kept too
        lenet.layers[2].bias[:5] = 0.0
    prune.save_sparse(lenet, tmp_path / "m.kds")
    fresh = prune.load_sparse(tmp_path / "m.kds", models.create("lenet-300-100"))
    for (name, a), b in zip(lenet.state_dict().items(), fresh.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a.view(torch.int32), b.view(torch.int32)), name


def test_save_sparse_is_small_at_90_percent(lenet):
    dense = evaluate.model_size_bytes(lenet)
    prune.magnitude_prune(lenet, 0.9)
    assert prune.sparse_size_bytes(lenet) * 5 <= dense
    cnn = models.create("cnn-student", input_shape=(1, 8, 8))  # dense tensors: stored dense
    assert prune.sparse_size_bytes(cnn) < evaluate.model_size_bytes(cnn) * 1.2


def test_report_accepts_sparse_size(lenet, split):
    prune.magnitude_prune(lenet, 0.9)
    rep = evaluate.report({"pruned": lenet}, split, measure_latency=False, size_fn=prune.sparse_size_bytes)
    assert rep["pruned"]["size_kb"] == pytest.approx(prune.sparse_size_bytes(lenet) / 1024)


def test_load_sparse_refuses_other_files(lenet, tmp_path):
    torch.save(lenet.state_dict(), tmp_path / "dense.pt")
    with pytest.raises(ValueError, match="save_sparse"):
        prune.load_sparse(tmp_path / "dense.pt", lenet)


def test_load_sparse_never_loads_a_corrupted_file(lenet, tmp_path):
    prune.magnitude_prune(lenet, 0.9)
    path = tmp_path / "m.kds"
    prune.save_sparse(lenet, path)
    good = path.read_bytes()
    reference = {k: v.clone() for k, v in lenet.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    errors = 0
    for _ in range(25):
        bad = bytearray(good)
        i = int(torch.randint(len(bad), (1,), generator=gen))
        bad[i] ^= 1 << int(torch.randint(8, (1,), generator=gen))
        path.write_bytes(bytes(bad))
        try:
            loaded = prune.load_sparse(path, models.create("lenet-300-100"))
        except ValueError as e:
            errors += 1
            assert "m.kds" in str(e)
            continue
        # a flip in bytes no record uses (zip padding, a duplicate header field) changes nothing
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in reference.items())
    assert errors >= 20


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"weights: 0.1 0.2\n" * 20, "not a torch.save archive"),
    (bytes(range(256)) * 2, "not a torch.save archive"),
    ("truncated", "truncated or damaged"),
])
def test_load_sparse_names_the_file_and_the_problem(lenet, tmp_path, content, message):
    path = tmp_path / "bad.kds"
    if content == "truncated":
        prune.save_sparse(lenet, path)
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        prune.load_sparse(path, lenet)
    assert "bad.kds" in str(info.value)
    with pytest.raises(FileNotFoundError, match="nothing.kds"):
        prune.load_sparse(tmp_path / "nothing.kds", lenet)


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


# --- sensitivity --------------------------------------------------------------------

def test_sensitivity_scan(split):
    model = models.create("mlp-student")
    train.fit(model, split, epochs=3, lr=3e-3)
    scan = prune.sensitivity_scan(model, split.test, [0.0, 0.5, 0.99])
    assert list(scan.accuracy) == ["layers.0", "layers.2"]
    for acc in scan.accuracy.values():
        assert acc[0] == pytest.approx(scan.baseline)
        assert acc[2] < scan.baseline
    ax = prune.plot_sensitivity(scan)
    assert len(ax.get_lines()) == 3
    import matplotlib.pyplot as plt
    plt.close("all")
    with pytest.raises(ValueError, match="amounts"):
        prune.sensitivity_scan(model, split.test, [0.5, 1.2])
