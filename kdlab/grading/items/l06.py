"""Lesson 06 (advantages): storage of a pruned + int8 model, and where KD's gain holds."""
from __future__ import annotations

import copy
from functools import lru_cache

import torch

from kdlab.grading.registry import NumberItem
from kdlab.train import num_threads


@lru_cache(maxsize=None)
def _sizes() -> dict:
    """kB of LeNet-300-100 magnitude-pruned to 80%: sparse int8, sparse float32, dense int8."""
    from kdlab import data, pipeline, prune, zoo

    with num_threads(1):
        model = copy.deepcopy(zoo.pretrained("lenet-300-100", data=data.load_digits()))
        prune.magnitude_prune(model, 0.8)
        q = pipeline.quantize_int8(model)
        return {"sparse_int8": pipeline.quantized_size_bytes(q, sparse=True) / 1000,
                "sparse_float": prune.sparse_size_bytes(model) / 1000,
                "dense_int8": pipeline.quantized_size_bytes(q) / 1000}


ITEMS = [
    NumberItem(
        "06.sparse_int8_kb", points=1, rel_tol=0.03,
        prompt="kB (1000 bytes) of LeNet-300-100 magnitude-pruned to 80%, quantized with "
               "pipeline.quantize_int8 and stored sparse (pipeline.quantized_size_bytes(q, sparse=True)).",
        target=lambda: _sizes()["sparse_int8"],
        wrong=[(lambda: _sizes()["sparse_float"], "that is the float32 sparse file; quantize first"),
               (lambda: _sizes()["dense_int8"], "that is the dense int8 file; pass sparse=True"),
               (lambda: _sizes()["sparse_int8"] * 1000, "give kilobytes, not bytes")],
    ),
    NumberItem(
        "06.kd_gain_few_labels", points=2, abs_tol=0.03,
        prompt="Accuracy gain (a fraction, KD minus alone) of the 32-unit student with 10% of the labels, "
               "seed 0, both arms 600 optimizer steps (alone: 300 epochs on the 90 labelled images; KD: "
               "40 epochs on all 898), as set up in the exercise.",
        target=lambda: _few_label_gain(),
        wrong=[(lambda: 100 * _few_label_gain(), "give a fraction (e.g. 0.10), not percentage points"),
               (lambda: -_few_label_gain(), "the gain is KD minus alone, not alone minus KD"),
               (lambda: _few_label_gain(alone_epochs=40),
                "the student alone took 40 epochs of 2 batches, 80 steps against the distilled student's 600: "
                "train it for 300 epochs so that both arms take the same number of optimizer steps")],
    ),
]


@lru_cache(maxsize=None)
def _few_label_gain(alone_epochs: int = 300) -> float:
    """KD minus alone, seed 0; 300 epochs on the 90 labelled images are the 600 steps of 40 epochs on all."""
    from kdlab import data, zoo
    from kdlab.distill import Distiller
    from kdlab.models import create
    from kdlab.train import evaluate, fit, seed_everything

    with torch.random.fork_rng(devices=[]), num_threads(1):
        seed_everything(0, threads=1)
        split = data.load_digits()
        teacher = zoo.pretrained("mlp-teacher", data=split)
        x, y = split.train
        labelled = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[: round(0.1 * len(y))]
        alone = create("mlp-student")
        fit(alone, (x[labelled], y[labelled]), epochs=alone_epochs, lr=3e-3, seed=0, progress=False)
        seed_everything(0, threads=1)
        student = create("mlp-student")
        targets = data.hide_labels(y, labelled)
        Distiller(student, teacher, temperature=4.0, alpha=0.9, cache_teacher=True).fit(
            (x, targets), epochs=40, lr=3e-3, seed=0, progress=False)
        return evaluate(student, split) - evaluate(alone, split)
