"""Lesson 19 (evaluating compression): FLOPs by hand, sparse file size, the noise of
a test accuracy, and the metric that makes unstructured pruning look cheap."""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from kdlab.evaluate import flops, model_size_bytes
from kdlab.grading.registry import ChoiceItem, FunctionItem, NumberItem
from kdlab.grading.shared import accuracy, digits, in_percent, integer, pruned, trained
from kdlab.models import MLP


def _mlp_case(generator):
    hidden = tuple(integer(generator, 2, 64) for _ in range(integer(generator, 1, 3)))
    model = MLP(integer(generator, 2, 64), hidden, integer(generator, 2, 10))
    return model, integer(generator, 1, 16)


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
    from kdlab.prune import sparse_size_bytes

    dense, sparse = model_size_bytes(trained("lenet-300-100")), pruned("lenet-300-100", 0.9)
    return sparse_size_bytes(sparse) / dense, model_size_bytes(sparse) / dense


def _se() -> float:
    p, n = accuracy("mlp-teacher"), len(digits().y_test)
    return math.sqrt(p * (1 - p) / n)


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
               "kdlab.models.pretrained('mlp-teacher') on the digits test split (a fraction).",
        target=_se,
        wrong=[
            in_percent(_se),
            (lambda: math.sqrt(accuracy("mlp-teacher") * (1 - accuracy("mlp-teacher"))),
             "divide the variance p(1-p) by the number of test examples before the square root"),
        ],
        hint="p from kdlab.evaluate.accuracy on split.test, n = len(split.y_test)",
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
