"""Deployment: export a model with ``torch.export``, load it back, and compress
to a measured latency budget.

An exported program (``.pt2``) is a self-contained graph of ATen operations plus
the weights: it loads without the model's Python class, which is what a
serving or mobile runtime needs. :func:`export_model` writes one whose batch
dimension is free, :func:`load_exported` reads it back as a callable module.

:func:`prune_to_latency` answers "how much must I prune to fit ``budget_ms``?"
by measuring, not by counting FLOPs: it removes more and more channels with
:func:`kdlab.prune.structured_prune` and times each candidate with
:func:`kdlab.evaluate.latency` until one fits.

>>> import torch, tempfile, os
>>> from kdlab import deploy, models
>>> model = models.create("mlp-student").eval()
>>> path = deploy.export_model(model, torch.zeros(1, 64), os.path.join(tempfile.mkdtemp(), "m.pt2"))
>>> loaded = deploy.load_exported(path)
>>> torch.allclose(loaded(torch.ones(3, 64)), model(torch.ones(3, 64)))
True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kdlab import _validate
from kdlab.evaluate import latency, latency_samples

DEFAULT_AMOUNTS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)
STATISTICS = ("median", "min")


def export_model(model: nn.Module, example_input, path) -> Path:
    """Export ``model`` (in eval mode) with ``torch.export.export`` and save it to
    ``path`` with ``torch.export.save``; returns the path.

    ``example_input`` is a tensor (or tuple of tensors) the model accepts. Dim 0
    of every input is exported as a free batch dimension (any size >= 1), so the
    file serves batches of any size; the other dims are fixed to the example's.
    The model's train/eval mode is restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    args = _validate.example_input("example_input", example_input)
    # torch.export specialises a dim of size 1 to the constant 1; an example batch
    # of 2 lets the batch dim stay symbolic.
    args = tuple(a.expand(2, *a.shape[1:]).contiguous() if a.shape[0] == 1 else a for a in args)
    batch = torch.export.Dim("batch", min=1)
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        program = torch.export.export(model, args, dynamic_shapes=tuple({0: batch} for _ in args))
    finally:
        model.train(was_training)
    # Node metadata records the source file paths of the traced code; without them the
    # file is the same bytes wherever kdlab is installed.
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)
    torch.export.save(program, path)
    return path


class ExportedModule(nn.Module):
    """An exported program's module that tolerates ``train()``/``eval()``.

    The graph was traced in eval mode and has no modes; the module
    ``torch.export`` returns raises on ``eval()``, which kdlab's ``predict``,
    ``evaluate`` and ``latency`` call. This wrapper only records the flag."""

    def __init__(self, graph_module: nn.Module):
        super().__init__()
        self.graph_module = graph_module

    def train(self, mode: bool = True) -> "ExportedModule":
        self.training = bool(mode)
        return self

    def forward(self, *args):
        return self.graph_module(*args)


def load_exported(path) -> ExportedModule:
    """The program of a ``.pt2`` file written by :func:`export_model` (or any
    ``torch.export.save``) as an :class:`ExportedModule`; call it like the
    original model, evaluate and time it with kdlab's functions."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file written by export_model")
    return ExportedModule(torch.export.load(path).module())


@dataclass
class LatencySearch:
    """Result of :func:`prune_to_latency`.

    ``amount``/``model``/``latency_ms`` describe the least-pruned candidate that
    met the budget (or, when none did, the most-pruned one tried, with
    ``met=False``); ``trials`` lists ``(amount, measured ms)`` in search order."""

    amount: float
    model: nn.Module
    latency_ms: float
    budget_ms: float
    met: bool
    trials: list = field(default_factory=list)


def prune_to_latency(model: nn.Module, example_input, budget_ms: float, *, amounts=DEFAULT_AMOUNTS,
                     criterion: str = "l1", warmup: int = 10, repeats: int = 30,
                     threads: int = 1, statistic: str = "median") -> LatencySearch:
    """Structured-prune ``model`` just enough that its **measured** latency on
    ``example_input`` (median or minimum of the samples) is at most ``budget_ms``.

    Tries the ``amounts`` (fractions of channels removed from every prunable group,
    each in [0, 1)) in increasing order; each candidate is
    ``structured_prune(model, amount, example_input, criterion=criterion)`` timed
    with :func:`kdlab.evaluate.latency_samples` (``warmup``, ``repeats``, ``threads``)
    and summarised by ``statistic``: ``"median"`` (:func:`kdlab.evaluate.latency`)
    or ``"min"``. Other processes only ever add time, so on a busy machine the
    minimum is the least disturbed figure (a small model's median can rise several
    times under load); derive ``budget_ms`` from the same statistic of the
    reference model. The first candidate whose figure is ``<= budget_ms`` wins: the
    least pruned model that fits. The original model is untouched; fine-tune the
    winner afterwards.

    The search reads no labels: ``example_input`` only sets the shape being timed.
    Any accuracy check that decides between candidates belongs on a validation
    part (``split.val`` of :meth:`kdlab.data.Split.with_validation`), not on the
    test part that reports the winner.

    >>> import torch
    >>> from kdlab import deploy, models
    >>> search = deploy.prune_to_latency(models.create("mlp-teacher"), torch.zeros(64, 64), 1e3)
    >>> search.met, search.amount
    (True, 0.0)
    """
    from kdlab.prune import structured_prune

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    budget_ms = _validate.positive_float("budget_ms", budget_ms)
    _validate.choice("statistic", statistic, STATISTICS)
    amounts = sorted(_validate.fraction(f"amounts[{i}]", a) for i, a in enumerate(amounts))
    if not amounts:
        raise ValueError("amounts must hold at least one fraction in [0, 1)")
    if amounts[-1] >= 1:
        raise ValueError(f"amounts must be < 1 (amount 1 removes every channel), got {amounts[-1]!r}")
    trials, candidate, ms = [], None, None
    for amount in amounts:
        candidate = structured_prune(model, amount, example_input, criterion=criterion)
        if statistic == "median":
            ms = latency(candidate, example_input, warmup=warmup, repeats=repeats, threads=threads)
        else:
            ms = min(latency_samples(candidate, example_input, warmup=warmup, repeats=repeats, threads=threads))
        trials.append((amount, ms))
        if ms <= budget_ms:
            return LatencySearch(amount, candidate, ms, budget_ms, True, trials)
    return LatencySearch(amounts[-1], candidate, ms, budget_ms, False, trials)
