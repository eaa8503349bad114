"""Lesson 05 (KD vs pruning): what a pruned model costs to store and to run."""
from __future__ import annotations

import copy
from functools import lru_cache


from kdlab.grading.registry import ChoiceItem, NumberItem
from kdlab.train import num_threads


@lru_cache(maxsize=None)
def _measured() -> dict:
    """LeNet-300-100 magnitude-pruned to 90% (no fine-tuning): its sparse file in kB and its
    FLOPs relative to the dense model; the one-shot 96% accuracy against the 32-unit student.
    One thread, as the notebooks run (the model cache is keyed by the thread count)."""
    from kdlab import data, evaluate, prune, train, zoo

    with num_threads(1):
        split = data.load_digits()
        large = zoo.pretrained("lenet-300-100", data=split)
        pruned = copy.deepcopy(large)
        prune.magnitude_prune(pruned, 0.9)
        x = split.x_test[:1]
        extreme = copy.deepcopy(large)
        prune.magnitude_prune(extreme, 0.96)
        return {"sparse_kb": prune.sparse_size_bytes(pruned) / 1000,
                "dense_kb": evaluate.model_size_bytes(pruned) / 1000,
                "flops_ratio": evaluate.flops(pruned, x) / evaluate.flops(large, x),
                "acc_pruned_96": train.evaluate(extreme, split),
                "acc_student": train.evaluate(zoo.pretrained("mlp-student", data=split), split)}


ITEMS = [
    NumberItem(
        "05.sparse_kb", points=1, rel_tol=0.02,
        prompt="Size in kB (1 kB = 1000 bytes) of kdlab.prune.save_sparse's file for LeNet-300-100 "
               "magnitude-pruned to 90% sparsity.",
        target=lambda: _measured()["sparse_kb"],
        wrong=[(lambda: _measured()["dense_kb"],
                "that is the dense file: torch.save stores the zeros; measure prune.sparse_size_bytes"),
               (lambda: _measured()["dense_kb"] / 10,
                "a tenth of the dense file forgets the bitmask (1 bit per weight) and the biases; measure it"),
               (lambda: _measured()["sparse_kb"] * 1000, "give kilobytes, not bytes")],
    ),
    NumberItem(
        "05.flops_ratio", points=1, abs_tol=0.01,
        prompt="FLOPs of the 90%-pruned LeNet-300-100 divided by the FLOPs of the dense one "
               "(kdlab.evaluate.flops on one test image).",
        target=lambda: _measured()["flops_ratio"],
        wrong=[(0.1, "a dense matmul multiplies the zeros too: measure with kdlab.evaluate.flops, "
                     "do not assume sparse kernels")],
    ),
    ChoiceItem(
        "05.extreme_budget", points=1,
        prompt="At the non-zero budget of the 32-unit student (LeNet-300-100 pruned to 96%, one-shot, "
               "no fine-tuning), which model is more accurate?",
        options=["pruned LeNet-300-100", "dense 32-unit student"], answer="dense 32-unit student",
        hints={"pruned LeNet-300-100": "evaluate both: prune a copy of the LeNet to 0.96 and compare "
                                       "with zoo.pretrained('mlp-student')"},
    ),
]
