"""Lesson 05 (KD vs pruning): what a pruned model costs to store and to run."""
from __future__ import annotations

from functools import lru_cache

from kdlab.grading.registry import ChoiceItem, NumberItem
from kdlab.grading.shared import digits, flops_ratio_item, in_bytes, pruned, trained


@lru_cache(maxsize=None)
def _kb() -> dict:
    """kB of LeNet-300-100 magnitude-pruned to 90% (no fine-tuning): the sparse file and
    the dense checkpoint."""
    from kdlab import evaluate, prune

    model = pruned("lenet-300-100", 0.9)
    return {"sparse": prune.sparse_size_bytes(model) / 1000, "dense": evaluate.model_size_bytes(model) / 1000}


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
]
