"""Sparse checkpoints: save_sparse / load_sparse round trips, size, damaged files, the old argument order."""
import pytest
import torch

from kdlab import evaluate, models, prune


def test_save_sparse_round_trips_exactly(lenet, tmp_path):
    prune.magnitude_prune(lenet, 0.9)
    with torch.no_grad():
        lenet.layers[0].weight[0, 0] = -0.0  # sign of zero kept too
        lenet.layers[2].bias[:5] = 0.0
    prune.save_sparse(lenet, tmp_path / "m.kds")
    fresh = prune.load_sparse(models.create("lenet-300-100"), tmp_path / "m.kds")
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
        prune.load_sparse(lenet, tmp_path / "dense.pt")


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
            loaded = prune.load_sparse(models.create("lenet-300-100"), path)
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
        prune.load_sparse(lenet, path)
    assert "bad.kds" in str(info.value)
    with pytest.raises(FileNotFoundError, match="nothing.kds"):
        prune.load_sparse(lenet, tmp_path / "nothing.kds")


def test_load_sparse_takes_the_old_order_with_a_warning(lenet, tmp_path):
    import kdlab._deprecation

    prune.magnitude_prune(lenet, 0.9)
    prune.save_sparse(lenet, tmp_path / "m.kds")
    with pytest.warns(kdlab._deprecation.CATEGORY, match=r"load_sparse\(path, model\) .*use load_sparse\(model, path\)"):
        old = prune.load_sparse(tmp_path / "m.kds", models.create("lenet-300-100"))
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), lenet.state_dict().values()))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        prune.load_sparse("m.kds", tmp_path / "m.kds")
