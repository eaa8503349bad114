"""Lesson 14 (trends): the gradual (AGP) schedule, and what pruning and int8
quantization save together on disk."""
from __future__ import annotations

import copy
import math
from functools import lru_cache

import torch

from kdlab.grading.registry import FunctionItem, NumberItem
from kdlab.prune import AGP
from kdlab.train import num_threads


def _int(generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _agp_case(generator):
    initial = float(torch.rand(1, generator=generator)) * 0.3
    final = initial + float(torch.rand(1, generator=generator)) * (0.99 - initial)
    start = _int(generator, 0, 50)
    end = start + _int(generator, 10, 200)
    frequency = _int(generator, 1, 20)
    step = _int(generator, 0, end + 30)
    return step, initial, final, start, end, frequency


def _reference(step, initial, final, start, end, frequency):
    return AGP(initial, final, start=start, end=end, frequency=frequency).sparsity_at(step)


def _no_frequency(step, initial, final, start, end, frequency):
    return AGP(initial, final, start=start, end=end, frequency=1).sparsity_at(step)


def _linear(step, initial, final, start, end, frequency):
    if step < start:
        return 0.0
    if step >= end:
        return final
    t = start + math.floor((step - start) / frequency) * frequency
    return initial + (final - initial) * (t - start) / (end - start)


@lru_cache(maxsize=None)
def _joint_ratio() -> float:
    from kdlab.data import load_digits
    from kdlab.evaluate import model_size_bytes
    from kdlab.pipeline import quantize_int8, quantized_size_bytes
    from kdlab.prune import magnitude_prune
    from kdlab.zoo import pretrained

    with num_threads(1):
        model = pretrained("lenet-300-100", data=load_digits())
    pruned = copy.deepcopy(model)
    magnitude_prune(pruned, 0.9)
    return model_size_bytes(model) / quantized_size_bytes(quantize_int8(pruned), sparse=True)


ITEMS = [
    FunctionItem(
        "14.agp_sparsity", points=2,
        prompt="agp_sparsity(step, initial, final, start, end, frequency) -> float: Zhu & Gupta's "
               "target sparsity after `step` optimizer steps.",
        reference=_reference, inputs=_agp_case,
        describe=lambda a: "step={}, initial={:.3f}, final={:.3f}, start={}, end={}, frequency={}".format(*a),
        wrong=[
            (_no_frequency, "the sparsity only changes every `frequency` steps: round the step down "
                            "to start + k * frequency first"),
            (_linear, "the schedule is cubic: (1 - progress) ** 3, fast at first and slow at the end"),
        ],
    ),
    NumberItem(
        "14.joint_size_ratio", points=1, rel_tol=0.01,
        prompt="Dense checkpoint bytes of zoo.pretrained('lenet-300-100') divided by the bytes of "
               "the same model pruned 90% (global magnitude, no fine-tuning), quantized with "
               "kdlab.pipeline.quantize_int8 and measured with quantized_size_bytes(q, sparse=True).",
        target=_joint_ratio,
        wrong=[
            (40.0, "that is 10x from pruning times 4x from int8, computed, not measured: the bitmask "
                   "and the biases cost bytes too"),
        ],
        hint="measure both files: evaluate.model_size_bytes(model) / pipeline.quantized_size_bytes(q, sparse=True)",
    ),
]
