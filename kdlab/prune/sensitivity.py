"""Sensitivity scan: how much accuracy each layer loses when it alone is pruned.

For every prunable layer and every amount, a copy of the model has only that
layer magnitude-pruned (``round(amount * n_l)`` smallest |w|) and is evaluated
without fine-tuning. Layers whose curve stays flat can be pruned harder.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from kdlab import _deprecation, _validate
from kdlab.prune.masks import prunable_weights
from kdlab.prune.unstructured import magnitude_prune


@dataclass
class SensitivityScan:
    """``accuracy[layer][i]`` is the accuracy with ``layer`` pruned by ``amounts[i]``."""

    amounts: list
    accuracy: dict
    baseline: float


@_deprecation.keyword_only(3, ("layers",))
def sensitivity_scan(model, data, amounts, *, layers=None) -> SensitivityScan:
    """Prune each layer alone on a copy of ``model`` by each of ``amounts`` (fractions
    in [0, 1]) and record the accuracy on ``data`` (``(x, y)`` or a DataLoader).
    ``layers``: module names or modules, default every Linear/Conv.

    The scan is for choosing budgets, so give it a validation part held out of the
    model's training (``split.val`` of :meth:`kdlab.data.Split.with_validation`),
    never the test part that will report the pruned model's accuracy.

    >>> from kdlab import data, models, prune
    >>> split = data.load_digits().with_validation(0.2)
    >>> model = models.pretrained("mlp-student", data=split)
    >>> scan = prune.sensitivity_scan(model, split.val, [0.5, 0.9])
    >>> sorted(scan.accuracy)
    ['layers.0', 'layers.2']
    """
    from kdlab.evaluate import accuracy as evaluate

    amounts = [_validate.fraction(f"amounts[{i}]", a)
               for i, a in enumerate(_validate.sequence("amounts", amounts, "[0.5, 0.7, 0.9]"))]
    if not amounts:
        raise ValueError("amounts must contain at least one fraction in [0, 1], got []")
    names = [n.rpartition(".")[0] for n in prunable_weights(model, layers)]
    accuracy = {}
    for name in names:
        accuracy[name] = []
        for amount in amounts:
            trial = copy.deepcopy(model)
            magnitude_prune(trial, amount, scope="layer", layers=[name])
            accuracy[name].append(evaluate(trial, data))
    return SensitivityScan(amounts, accuracy, evaluate(model, data))


def plot_sensitivity(scan: SensitivityScan, ax=None):
    """One accuracy-vs-amount line per layer, the unpruned accuracy dashed; returns the axes."""
    import matplotlib.pyplot as plt

    if not isinstance(scan, SensitivityScan):
        raise TypeError(f"scan must be a SensitivityScan, got {type(scan).__name__}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for name, acc in scan.accuracy.items():
        ax.plot([100 * a for a in scan.amounts], acc, marker="o", label=name)
    ax.axhline(scan.baseline, color="gray", linestyle="--", label="unpruned")
    ax.set_xlabel("weights removed from the layer (%)")
    ax.set_ylabel("accuracy")
    ax.set_title("Sensitivity of each layer to pruning")
    ax.legend(fontsize="small")
    return ax
