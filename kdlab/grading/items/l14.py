"""Lesson 14 (trends): the gradual (AGP) schedule, what pruning and int8
quantization save together on disk, and the N:M (2:4) sparsity mask."""
from __future__ import annotations

from functools import lru_cache

import torch

from kdlab.grading.registry import FunctionItem, NumberItem
from kdlab.grading.shared import agp_item, integer, pruned, trained


@lru_cache(maxsize=None)
def _joint_ratio() -> float:
    from kdlab.evaluate import model_size_bytes
    from kdlab.quantize import quantize_int8, quantized_size_bytes

    q = quantize_int8(pruned("lenet-300-100", 0.9))
    return model_size_bytes(trained("lenet-300-100")) / quantized_size_bytes(q, sparse=True)


def _nm_reference(w, n, m):
    from kdlab.prune import nm_mask

    return nm_mask(w.abs(), n, m)


def _nm_case(generator):
    """A Linear weight ``(out, in)`` with both sizes multiples of ``m``, and ``n < m``."""
    m = (2, 4, 8)[integer(generator, 0, 2)]
    n = integer(generator, 1, m - 1)
    out, width = m * integer(generator, 1, 3), m * integer(generator, 2, 4)
    return torch.randn(out, width, generator=generator), n, m


def _nm_along_outputs(w, n, m):
    return _nm_reference(w.T.contiguous(), n, m).T


def _nm_signed(w, n, m):
    from kdlab.prune import nm_mask

    return nm_mask(w, n, m)


def _nm_whole_row(w, n, m):
    keep = n * w.shape[1] // m
    top = w.abs().topk(keep, dim=1).indices
    return torch.zeros_like(w, dtype=torch.bool).scatter_(1, top, True)


ITEMS = [
    agp_item(
        "14.agp_sparsity", points=2,
        prompt="agp_sparsity(step, initial, final, start, end, frequency) -> float: Zhu & Gupta's "
               "target sparsity after `step` optimizer steps."),
    NumberItem(
        "14.joint_size_ratio", points=1, rel_tol=0.01,
        prompt="Dense checkpoint bytes of models.pretrained('lenet-300-100') divided by the bytes of "
               "the same model pruned 90% (global magnitude, no fine-tuning), quantized with "
               "kdlab.quantize.quantize_int8 and measured with quantized_size_bytes(q, sparse=True).",
        target=_joint_ratio,
        wrong=[
            (40.0, "that is 10x from pruning times 4x from int8, computed, not measured: the bitmask "
                   "and the biases cost bytes too"),
        ],
        hint="measure both files: evaluate.model_size_bytes(model) / quantize.quantized_size_bytes(q, sparse=True)",
    ),
    FunctionItem(
        "14.nm_mask", points=2,
        prompt="nm_mask(w, n, m) -> bool tensor of w's shape: for a Linear weight w (out x in), keep the n "
               "weights of largest |w| in every run of m consecutive weights along the input dimension "
               "(each row split into in/m runs).",
        reference=_nm_reference, inputs=_nm_case,
        describe=lambda a: f"w of shape {tuple(a[0].shape)}, n={a[1]}, m={a[2]}",
        wrong=[
            (_nm_along_outputs, "your runs go down the columns (along the outputs); N:M runs go along "
                                "the input dimension, the last one of a Linear weight: w.reshape(out, in // m, m)"),
            (_nm_whole_row, "you kept the largest n*in/m weights of each whole row; N:M keeps n in every "
                            "run of m, so each run of m holds exactly n survivors"),
            (_nm_signed,
             "score by magnitude |w|: a large negative weight matters as much as a large positive one"),
            (lambda w, n, m: _nm_reference(w, m - n, m),
             "n is the number of weights kept in each run of m, not the number removed"),
        ],
    ),
]
