"""Interactive controls for the lessons (ipywidgets).

Each explorer redraws a plot and prints a one-line readout when its slider
moves. Expensive work is done before the widget is built, so moving a slider
is instant. In a notebook validated by nbval, tag the cell that displays an
explorer ``nbval-ignore-output`` (widget output differs between front ends)
and keep a static plot of the same thing next to it.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def with_text(widget, text: str):
    """``widget`` with ``text`` as its plain-text form: what a saved notebook shows in
    place of the widget before its cell runs, instead of the widget's Python repr."""
    original = widget._repr_mimebundle_

    def bundle(**kwargs):
        data = original(**kwargs)
        if isinstance(data, dict) and "text/plain" in data:
            data["text/plain"] = text
        return data

    widget._repr_mimebundle_ = bundle
    return widget


def explore(draw: Callable, *, text: str = "An interactive plot: run this cell to use its slider.",
            **controls):
    """``ipywidgets.interactive(draw, **controls)`` redrawn only when a slider is
    released; returns the widget (display it, or let it be the cell's value).
    ``text`` is what a saved notebook shows before the cell runs (:func:`with_text`)."""
    import ipywidgets

    for name, control in controls.items():
        if isinstance(control, ipywidgets.ValueWidget) and hasattr(control, "continuous_update"):
            control.continuous_update = False
    return with_text(ipywidgets.interactive(draw, **controls), text)


def entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats; ``0 * log 0`` counts as 0."""
    return -(probs * probs.clamp_min(1e-30).log()).sum(dim)


def temperature_explorer(logits: torch.Tensor, *, labels=None, t_min: float = 0.1, t_max: float = 100.0,
                         value: float = 1.0):
    """A log-scale temperature slider over one vector of logits: the soft targets
    ``softmax(z / T)`` as bars, with entropy and the top class printed.

    >>> w = temperature_explorer(torch.tensor([5.0, 2.0, -1.0]))  # doctest: +SKIP
    """
    import ipywidgets
    import matplotlib.pyplot as plt

    from kdlab.distill import soft_targets

    logits = torch.as_tensor(logits, dtype=torch.float32).flatten()
    if logits.numel() < 2:
        raise ValueError(f"logits must hold at least 2 classes, got shape {tuple(logits.shape)}")
    labels = [str(i) for i in range(len(logits))] if labels is None else [str(l) for l in labels]
    if len(labels) != len(logits):
        raise ValueError(f"labels must have one entry per logit ({len(logits)}), got {len(labels)}")
    uniform = math.log(len(logits))

    def draw(T):
        q = soft_targets(logits, temperature=T)
        fig, ax = plt.subplots(figsize=(6, 2.8))
        ax.bar(labels, q.numpy(), color="tab:blue")
        ax.set_ylim(0, 1)
        ax.set_xlabel("class")
        ax.set_ylabel("probability")
        ax.set_title(f"softmax(z / T), T = {T:.2f}")
        plt.show()
        top = int(q.argmax())
        print(f"T = {T:.2f}  entropy = {entropy(q).item():.4f} nats (uniform: {uniform:.4f})  "
              f"top class {labels[top]} with p = {q[top].item():.4f}")

    slider = ipywidgets.FloatLogSlider(value=value, base=10, min=math.log10(t_min), max=math.log10(t_max),
                                       step=0.05, description="T", readout_format=".2f")
    return explore(draw, T=slider, text="A temperature slider: run this cell to move T.")


def curve_explorer(xs, curves: dict, *, xlabel: str, ylabel: str, description: str | None = None):
    """A slider over precomputed ``curves`` (``{label: values at xs}``): the curves are
    drawn with a marker at the chosen x, and their values there are printed."""
    import ipywidgets
    import matplotlib.pyplot as plt

    xs = [float(x) for x in xs]
    for label, ys in curves.items():
        if len(ys) != len(xs):
            raise ValueError(f"curve {label!r} has {len(ys)} values for {len(xs)} xs")

    def draw(i):
        fig, ax = plt.subplots(figsize=(6, 3))
        for label, ys in curves.items():
            ax.plot(xs, ys, marker="o", label=label)
        ax.axvline(xs[i], color="gray", linestyle="--")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} against {xlabel}")
        ax.legend()
        ax.grid(alpha=0.3)
        plt.show()
        print(f"{xlabel} = {xs[i]:.4g}: " + ", ".join(f"{label} {float(ys[i]):.4f}" for label, ys in curves.items()))

    slider = ipywidgets.SelectionSlider(options=[(f"{x:.4g}", i) for i, x in enumerate(xs)], value=0,
                                        description=description or xlabel)
    return explore(draw, i=slider, text=f"A slider over {xlabel}: run this cell to move it.")
