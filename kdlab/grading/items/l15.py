"""Lesson 15 (a deployment case study): the least pruning that fits a size budget,
what a fixed-shape export accepts, and where the exported program's overhead shows."""
from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from kdlab.grading.registry import ChoiceItem, NumberItem

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
]
