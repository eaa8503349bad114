"""Plots shared by the lessons. Each returns the matplotlib Axes it drew on."""
from __future__ import annotations


def _axes(ax):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    return ax


def _title(ax, title: str) -> None:
    """A default title; one the caller set before drawing is kept."""
    if not ax.get_title():
        ax.set_title(title)


def tradeoff_plot(points: dict, *, xlabel: str, ylabel: str, ax=None):
    """Scatter ``{label: (x, y)}`` with each point labelled."""
    ax = _axes(ax)
    for label, (x, y) in points.items():
        ax.scatter([x], [y])
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _title(ax, f"{ylabel} against {xlabel}")
    ax.grid(alpha=0.3)
    return ax


def history_plot(histories: dict, key: str = "loss", ax=None):
    """One line per ``{label: History}`` of the per-epoch ``key``."""
    ax = _axes(ax)
    for label, history in histories.items():
        ax.plot(history["epoch"], history[key], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    _title(ax, f"{key} per epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def mean_std_plot(xs, runs: dict, *, xlabel: str, ylabel: str, ax=None):
    """``{label: 2-D array of shape (seeds, len(xs))}``: the mean line with a +-1 std band."""
    import torch

    ax = _axes(ax)
    for label, values in runs.items():
        values = torch.as_tensor(values, dtype=torch.float64)
        mean, std = values.mean(0), values.std(0) if len(values) > 1 else torch.zeros(values.shape[1])
        ax.plot(xs, mean, marker="o", label=label)
        ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _title(ax, f"{ylabel} against {xlabel}, mean ± std over seeds")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def weight_histogram(model, ax=None, *, bins: int = 80, label: str | None = None, nonzero_only: bool = False):
    """Histogram of all prunable weights (Linear and Conv) of ``model``."""
    import torch
    from torch import nn

    ax = _axes(ax)
    weights = torch.cat([m.weight.detach().flatten().cpu() for m in model.modules()
                         if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))])
    if nonzero_only:
        weights = weights[weights != 0]
    ax.hist(weights.numpy(), bins=bins, alpha=0.6, label=label)
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    _title(ax, "Weights of the Linear and Conv layers" + (" (non-zero only)" if nonzero_only else ""))
    if label:
        ax.legend()
    return ax
