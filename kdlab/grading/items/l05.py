"""Lesson 05 (KD vs pruning): what a pruned model costs to store and to run, and the error
of a low-rank factorisation."""
from __future__ import annotations

from functools import lru_cache

import torch

from kdlab.grading.registry import ChoiceItem, FunctionItem, NumberItem
from kdlab.grading.shared import digits, flops_ratio_item, in_bytes, integer, pruned, trained


@lru_cache(maxsize=None)
def _kb() -> dict:
    """kB of LeNet-300-100 magnitude-pruned to 90% (no fine-tuning): the sparse file and
    the dense checkpoint."""
    from kdlab import evaluate, prune

    model = pruned("lenet-300-100", 0.9)
    return {"sparse": prune.sparse_size_bytes(model) / 1000, "dense": evaluate.model_size_bytes(model) / 1000}


def lowrank_error_reference(singular_values, rank):
    """Eckart-Young: ``||W - W_r||_F = sqrt(sum_{i > r} s_i^2)`` for the best rank-``r``
    approximation ``W_r`` (the truncated SVD that :func:`kdlab.lowrank.factorize_layer` builds)."""
    return float(singular_values[rank:].double().pow(2).sum().sqrt())


def _lowrank_case(generator):
    """Singular values sorted descending (as ``torch.linalg.svdvals`` returns them), and a
    rank that drops at least two of them."""
    k = integer(generator, 4, 12)
    s = torch.rand(k, generator=generator).mul(5).add(0.1).sort(descending=True).values
    return s, integer(generator, 1, k - 2)


ITEMS = [
    NumberItem(
        "05.sparse_kb", points=1, rel_tol=0.02,
        prompt="Size in kB (1 kB = 1000 bytes) of kdlab.prune.save_sparse's file for LeNet-300-100 "
               "magnitude-pruned to 90% sparsity.",
        target=lambda: _kb()["sparse"],
        wrong=[(lambda: _kb()["dense"],
                "that is the dense file: torch.save stores the zeros; measure prune.sparse_size_bytes"),
               (lambda: _kb()["dense"] / 10,
                "a tenth of the dense file forgets the bitmask (1 bit per weight) and the biases; measure it"),
               in_bytes(lambda: _kb()["sparse"])],
    ),
    flops_ratio_item(
        "05.flops_ratio", abs_tol=0.01,
        prompt="FLOPs of the 90%-pruned LeNet-300-100 divided by the FLOPs of the dense one "
               "(kdlab.evaluate.flops on one test image).",
        models=lambda: (pruned("lenet-300-100", 0.9), trained("lenet-300-100"), digits().x_test[:1]),
        wrong=[(0.1, "a dense matmul multiplies the zeros too: measure with kdlab.evaluate.flops, "
                     "do not assume sparse kernels")],
    ),
    ChoiceItem(
        "05.extreme_budget", points=1,
        prompt="At the non-zero budget of the 32-unit student (LeNet-300-100 pruned to 96%, one-shot, "
               "no fine-tuning), which model is more accurate?",
        options=["pruned LeNet-300-100", "dense 32-unit student"], answer="dense 32-unit student",
        hints={"pruned LeNet-300-100": "evaluate both: prune a copy of the LeNet to 0.96 and compare "
                                       "with models.pretrained('mlp-student')"},
    ),
    FunctionItem(
        "05.lowrank_error", points=1,
        prompt="lowrank_error(singular_values, rank) -> float: the Frobenius error ||W - W_r||_F of the best "
               "rank-`rank` approximation of a matrix W whose singular values (descending) are given.",
        reference=lowrank_error_reference, inputs=_lowrank_case,
        describe=lambda a: f"{len(a[0])} singular values, rank={a[1]}",
        wrong=[
            (lambda s, r: float(s[r:].double().pow(2).sum()),
             "that is the squared error: take the square root of the sum of the dropped s_i^2"),
            (lambda s, r: float(s[:r].double().pow(2).sum().sqrt()),
             "you used the kept singular values; the error is made of the dropped ones, s_i for i > rank"),
            (lambda s, r: float(s[r:].double().sum()),
             "square each dropped singular value before summing (the Frobenius norm), then take the root"),
            (lambda s, r: float(s[r]),
             "that is the error in the spectral norm (the largest dropped value); the Frobenius error "
             "adds all the dropped values, squared"),
            (lambda s, r: float(s[r + 1:].double().pow(2).sum().sqrt()),
             "off by one: keeping `rank` values drops s[rank:] with 0-based indexing"),
        ],
    ),
]
