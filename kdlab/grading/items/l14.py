"""Lesson 14 (trends): the gradual (AGP) schedule, and what pruning and int8
quantization save together on disk."""
from __future__ import annotations

from functools import lru_cache

from kdlab.grading.registry import NumberItem
from kdlab.grading.shared import agp_item, pruned, trained


@lru_cache(maxsize=None)
def _joint_ratio() -> float:
    from kdlab.evaluate import model_size_bytes
    from kdlab.quantize import quantize_int8, quantized_size_bytes

    q = quantize_int8(pruned("lenet-300-100", 0.9))
    return model_size_bytes(trained("lenet-300-100")) / quantized_size_bytes(q, sparse=True)


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
]
