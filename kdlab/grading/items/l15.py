"""Lesson 15 (a deployment case study): the least pruning that fits a size budget,
what a fixed-shape export accepts, where the exported program's overhead shows, and
the scale and zero point of affine uint8 quantization."""
from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from kdlab.grading.registry import ChoiceItem, FunctionItem, NumberItem
from kdlab.grading.shared import uniform

AMOUNTS = (0.5, 0.75, 0.875, 0.9375)
BUDGET_KB = 64


@lru_cache(maxsize=None)
def _sizes() -> dict:
    """Exported-file KB of the mlp-teacher shape pruned by each amount (sizes depend only
    on the shapes, so an untrained model gives the same files)."""
    from kdlab.deploy import export_model
    from kdlab.models import create
    from kdlab.prune import structured_prune

    model, x = create("mlp-teacher"), torch.zeros(1, 64)
    with tempfile.TemporaryDirectory() as tmp:
        return {a: export_model(structured_prune(model, a, x), x, Path(tmp) / f"{a}.pt2").stat().st_size / 1024
                for a in AMOUNTS}


def _smallest() -> float:
    return next(a for a, kb in _sizes().items() if kb <= BUDGET_KB)


def _qparams_reference(min_val, max_val):
    from kdlab.quantize import affine_qparams

    return affine_qparams(min_val, max_val, qmin=0, qmax=255)


def _qparams_case(generator):
    """An observed range: across 0, all positive (a ReLU output) or all negative; redrawn
    while round(-min/s) sits within 1e-3 of a tie, where float32 and float64 may round apart."""
    while True:
        kind = int(torch.randint(0, 3, (1,), generator=generator))
        a, b = sorted((uniform(generator, 0.05, 6.0), uniform(generator, 0.05, 6.0)))
        lo, hi = ((-a, b), (a, b), (-b, -a))[kind]
        s = (max(hi, 0.0) - min(lo, 0.0)) / 255
        if abs((-min(lo, 0.0) / s) % 1 - 0.5) > 1e-3:
            return round(lo, 4), round(hi, 4)


def _qparams_not_widened(min_val, max_val):
    s = (max_val - min_val) / 255
    return s, int(min(max(round(-min_val / s), 0), 255))


def _qparams_unrounded(min_val, max_val):
    lo, hi = min(min_val, 0.0), max(max_val, 0.0)
    s = (hi - lo) / 255
    return s, -lo / s


def _qparams_truncated(min_val, max_val):
    lo, hi = min(min_val, 0.0), max(max_val, 0.0)
    s = (hi - lo) / 255
    return s, int(-lo / s)


def _qparams_swapped(min_val, max_val):
    lo, hi = min(min_val, 0.0), max(max_val, 0.0)
    s = (hi - lo) / (0 - 255)
    return s, 255 - round(lo / s)


def _qparams_256_levels(min_val, max_val):
    lo, hi = min(min_val, 0.0), max(max_val, 0.0)
    s = (hi - lo) / 256
    return s, round(-lo / s)


def _qparams_sign(min_val, max_val):
    lo, hi = min(min_val, 0.0), max(max_val, 0.0)
    s = (hi - lo) / 255
    return s, round(lo / s)


ITEMS = [
    NumberItem(
        "15.smallest_amount", points=1, abs_tol=1e-6,
        prompt=f"The smallest amount in {AMOUNTS} for which kdlab.prune.structured_prune(mlp-teacher, "
               f"amount, x) exported with kdlab.deploy.export_model gives a file of at most {BUDGET_KB} KB.",
        target=_smallest,
        wrong=[
            (AMOUNTS[-1], "that one fits too, but it removes more than needed: pick the least "
                          "compression that meets the budget"),
            (0.75, "measure the exported file (path.stat().st_size / 1024), not the parameters"),
        ],
        hint="export each candidate and compare path.stat().st_size / 1024 with the budget",
    ),
    ChoiceItem(
        "15.fixed_batch_export", points=1,
        prompt="A model exported with torch.export.export(model, (torch.zeros(1, 64),)) and no "
               "dynamic_shapes: does its loaded module accept a batch of 32?",
        options=["yes", "no"], answer="no",
        hints={"yes": "try it: call the module on torch.zeros(32, 64) and read the error"},
    ),
    ChoiceItem(
        "15.faster_at_batch_1", points=1,
        prompt="At batch 1, which runs the compressed model faster in Python: the eager nn.Module or "
               "the program loaded with kdlab.deploy.load_exported?",
        options=["eager", "exported"], answer="eager",
        hints={"exported": "time both with kdlab.evaluate.latency on x[:1]: the loaded program pays "
                           "a fixed cost on every call"},
    ),
    FunctionItem(
        "15.affine_qparams", points=2,
        prompt="affine_qparams(min_val, max_val) -> (scale, zero_point): the float scale and the integer zero "
               "point of affine uint8 quantization (codes 0..255) for values observed in [min_val, max_val], "
               "as kdlab.quantize.affine_qparams(min_val, max_val, qmin=0, qmax=255) and torch's MinMaxObserver "
               "compute them.",
        reference=_qparams_reference, inputs=_qparams_case, n_cases=30,
        describe=lambda a: f"min_val={a[0]}, max_val={a[1]}",
        wrong=[
            (_qparams_not_widened, "widen the range to hold 0 first, lo = min(min_val, 0), hi = max(max_val, 0): "
                                   "0 (a ReLU output, padding, a pruned weight) must be represented exactly"),
            (_qparams_unrounded, "the zero point is an integer code: z = qmin - round(lo / s)"),
            (_qparams_truncated, "round to the nearest integer (round), do not truncate (int() cuts toward 0)"),
            (_qparams_swapped, "qmin and qmax are swapped: s = (hi - lo) / (qmax - qmin) with qmin = 0, qmax = 255, "
                               "so the scale is positive"),
            (_qparams_256_levels, "256 codes make 255 steps: divide the range by qmax - qmin = 255, not 256"),
            (_qparams_sign, "the zero point is the code of 0.0: z = qmin - round(lo / s), so it is >= 0 "
                            "when lo <= 0"),
        ],
    ),
]
