"""Lesson 19 (evaluating compression): FLOPs by hand, sparse file size, the noise of
a test accuracy, and the metric that makes unstructured pruning look cheap."""
from __future__ import annotations

import copy
import math
from functools import lru_cache

import torch

from kdlab.evaluate import flops, model_size_bytes
from kdlab.grading.registry import ChoiceItem, FunctionItem, NumberItem
from kdlab.models import MLP
from kdlab.train import num_threads


def _int(generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _mlp_case(generator):
    hidden = tuple(_int(generator, 2, 64) for _ in range(_int(generator, 1, 3)))
    model = MLP(_int(generator, 2, 64), hidden, _int(generator, 2, 10))
    return model, _int(generator, 1, 16)


def _reference_flops(model, batch):
    return flops(model, torch.zeros(batch, model.layers[0].in_features))


def _linears(model):
    return [m for m in model.layers if isinstance(m, torch.nn.Linear)]


def _macs_only(model, batch):
    return batch * sum(m.in_features * m.out_features for m in _linears(model))


def _one_example(model, batch):
    return 2 * sum(m.in_features * m.out_features for m in _linears(model))


def _with_bias(model, batch):
    return batch * sum(2 * m.in_features * m.out_features + m.out_features for m in _linears(model))


@lru_cache(maxsize=None)
def _sizes() -> tuple:
    """(sparse file / dense checkpoint) of lenet-300-100 pruned 90% by global magnitude,
    and the dense checkpoint of the pruned model over that of the original."""
    from kdlab.data import load_digits
    from kdlab.prune import magnitude_prune, sparse_size_bytes
    from kdlab.zoo import pretrained

    with num_threads(1):
        model = pretrained("lenet-300-100", data=load_digits())
    pruned = copy.deepcopy(model)
    magnitude_prune(pruned, 0.9)
    return sparse_size_bytes(pruned) / model_size_bytes(model), model_size_bytes(pruned) / model_size_bytes(model)


@lru_cache(maxsize=None)
def _teacher_accuracy() -> tuple:
    from kdlab.data import load_digits
    from kdlab.train import evaluate
    from kdlab.zoo import pretrained

    with num_threads(1):
        split = load_digits()
        return evaluate(pretrained("mlp-teacher", data=split), split.test), len(split.y_test)


def _se(scale: float = 1.0) -> float:
    p, n = _teacher_accuracy()
    return scale * math.sqrt(p * (1 - p) / n)


ITEMS = [
    FunctionItem(
        "19.mlp_flops", points=2,
        prompt="mlp_flops(model, batch) -> int: FLOPs of one forward pass of a kdlab MLP on a "
               "batch of `batch` examples, counted as torch.utils.flop_counter does.",
        reference=_reference_flops, inputs=_mlp_case,
        describe=lambda args: f"an MLP with layers {[(m.in_features, m.out_features) for m in _linears(args[0])]} "
                              f"and batch {args[1]}",
        wrong=[
            (_macs_only, "you counted multiply-adds; a multiply-add is 2 FLOPs"),
            (_one_example, "multiply by the batch size: every example costs the same"),
            (_with_bias, "flop_counter counts matrix products only; the bias addition is not counted"),
        ],
    ),
    NumberItem(
        "19.sparse_size_ratio", points=1, abs_tol=0.01,
        prompt="Bytes of kdlab.prune.save_sparse's file for lenet-300-100 pruned 90% (global "
               "magnitude) divided by the bytes of the original dense checkpoint.",
        target=lambda: _sizes()[0],
        wrong=[
            (0.1, "the file also stores a bitmask (1 bit per weight) and the biases: measure it"),
            (lambda: _sizes()[1], "that is the dense checkpoint of the pruned model: zeros cost as "
                                  "much as any number there; use kdlab.prune.sparse_size_bytes"),
        ],
        hint="measure both with kdlab.prune.sparse_size_bytes and kdlab.evaluate.model_size_bytes",
    ),
    NumberItem(
        "19.accuracy_standard_error", points=1, rel_tol=0.02,
        prompt="Standard error sqrt(p(1-p)/n) of the test accuracy p of "
               "kdlab.zoo.pretrained('mlp-teacher') on the digits test split (a fraction).",
        target=_se,
        wrong=[
            (lambda: _se(scale=100), "give it as a fraction, not in percentage points"),
            (lambda: math.sqrt(_teacher_accuracy()[0] * (1 - _teacher_accuracy()[0])),
             "divide the variance p(1-p) by the number of test examples before the square root"),
        ],
        hint="p from kdlab.train.evaluate on split.test, n = len(split.y_test)",
    ),
    ChoiceItem(
        "19.misleading_metric", points=1,
        prompt="Which column makes a 90% unstructured-pruned model look about 10x cheaper to run, "
               "although its measured latency is that of the dense model?",
        options=["nonzero", "mflops", "latency_ms", "size_kb"], answer="nonzero",
        hints={
            "mflops": "look at the report: flop_counter gives the pruned model the dense count",
            "latency_ms": "latency is the measurement that shows it is not faster",
            "size_kb": "a file size says how much you store, not how fast it runs; and with a dense "
                       "checkpoint it is not even smaller",
        },
    ),
]
