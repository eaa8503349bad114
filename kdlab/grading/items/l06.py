"""Lesson 06 (advantages): storage of a pruned + int8 model, and where KD's gain holds."""
from __future__ import annotations

from functools import lru_cache

import torch

from kdlab.grading.registry import NumberItem
from kdlab.grading.shared import digits, in_bytes, in_percent, pruned, trained
from kdlab.train import num_threads


@lru_cache(maxsize=None)
def _sizes() -> dict:
    """kB of LeNet-300-100 magnitude-pruned to 80%: sparse int8, sparse float32, dense int8."""
    from kdlab import prune, quantize

    model = pruned("lenet-300-100", 0.8)
    q = quantize.quantize_int8(model)
    return {"sparse_int8": quantize.quantized_size_bytes(q, sparse=True) / 1000,
            "sparse_float": prune.sparse_size_bytes(model) / 1000,
            "dense_int8": quantize.quantized_size_bytes(q) / 1000}


@lru_cache(maxsize=None)
def _comparison():
    """The 32-unit student, seed 0, on 10% of the labels alone and distilled from the
    2x512 teacher on all images, at equal optimizer steps (300 epochs on the 90 labelled
    images against 40 epochs on all 898)."""
    from kdlab import data
    from kdlab.distill import compare_with_alone
    from kdlab.models import create

    with torch.random.fork_rng(devices=[]), num_threads(1):
        split = digits()
        x, y = split.train
        labelled = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[: round(0.1 * len(y))]
        return compare_with_alone(lambda: create("mlp-student"), trained("mlp-teacher"),
                                  labelled=(x[labelled], y[labelled]), transfer=(x, data.hide_labels(y, labelled)),
                                  test=split, epochs=40, seeds=[0], temperature=4.0, alpha=0.9, lr=3e-3,
                                  progress=False), (x[labelled], y[labelled])


def _few_label_gain() -> float:
    return _comparison()[0].differences[0]


@lru_cache(maxsize=None)
def _gain_at_equal_epochs() -> float:
    """The usual mistake: the student alone trained for the distilled student's 40 epochs."""
    from kdlab.evaluate import accuracy
    from kdlab.models import create
    from kdlab.train import fit, seed_everything

    result, labelled = _comparison()
    with torch.random.fork_rng(devices=[]), num_threads(1):
        seed_everything(0, threads=1)
        alone = create("mlp-student")
        fit(alone, labelled, epochs=40, lr=3e-3, seed=0, progress=False)
        return result.kd[0] - accuracy(alone, digits().test)


ITEMS = [
    NumberItem(
        "06.sparse_int8_kb", points=1, rel_tol=0.03,
        prompt="kB (1000 bytes) of LeNet-300-100 magnitude-pruned to 80%, quantized with "
               "quantize.quantize_int8 and stored sparse (quantize.quantized_size_bytes(q, sparse=True)).",
        target=lambda: _sizes()["sparse_int8"],
        wrong=[(lambda: _sizes()["sparse_float"], "that is the float32 sparse file; quantize first"),
               (lambda: _sizes()["dense_int8"], "that is the dense int8 file; pass sparse=True"),
               in_bytes(lambda: _sizes()["sparse_int8"])],
    ),
    NumberItem(
        "06.kd_gain_few_labels", points=2, abs_tol=0.03,
        prompt="Accuracy gain (a fraction, KD minus alone) of the 32-unit student with 10% of the labels, "
               "seed 0, both arms 600 optimizer steps (alone: 300 epochs on the 90 labelled images; KD: "
               "40 epochs on all 898), as set up in the exercise.",
        target=_few_label_gain,
        wrong=[in_percent(_few_label_gain, "give a fraction (e.g. 0.10), not percentage points"),
               (lambda: -_few_label_gain(), "the gain is KD minus alone, not alone minus KD"),
               (_gain_at_equal_epochs,
                "the student alone took 40 epochs of 2 batches, 80 steps against the distilled student's 600: "
                "train it for 300 epochs so that both arms take the same number of optimizer steps")],
    ),
]
