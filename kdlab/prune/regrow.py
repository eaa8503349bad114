"""Prune and regrow: sparse training whose mask moves (SET, RigL).

Pruning schedules only ever remove weights. Dynamic sparse training keeps the
sparsity fixed and lets the mask change: every ``every`` optimizer steps each
layer drops the ``k`` active weights of smallest magnitude and grows ``k`` of the
weights that were pruned, chosen

- ``grow="gradient"``: by the largest |dL/dw| of the current batch (RigL, Evci et
  al. 2020), the weights that would lower the loss fastest if they existed;
- ``grow="random"``: uniformly at random (SET, Mocanu et al. 2018).

``k = round(f_t * active_l)`` with the drop fraction annealed by a cosine,
``f_t = f_0 / 2 * (1 + cos(pi * t / until))``, and no update from step ``until`` on.
Grown weights start at 0 (RigL) and are trained from there.

>>> import functools
>>> from kdlab import data, models, prune, train
>>> split = data.load_digits()
>>> model = models.create("mlp-student")
>>> rigl = prune.PruneRegrow(prune.magnitude_prune(model, 0.8), every=10, until=100)
>>> _ = train.fit(model, split, epochs=3, callbacks=[rigl])
>>> round(prune.sparsity(model)["global"], 2), rigl.regrown > 0
(0.8, True)
"""
from __future__ import annotations

import math

import torch

from kdlab import _validate
from kdlab.prune.masks import PruningMasks
from kdlab.train import Callback

GROW = ("gradient", "random")


@torch.no_grad()
def drop_and_grow(masks: PruningMasks, fraction: float, *, grow: str = "gradient",
                  generator: torch.Generator | None = None) -> tuple:
    """One mask update at constant sparsity; returns ``(new PruningMasks, weights moved)``.

    In every masked layer ``k = round(fraction * active)`` active weights with the
    smallest |w| are pruned and ``k`` weights pruned *before* this update are
    grown (largest |grad| for ``"gradient"``, needing ``.grad`` set on the
    parameters, e.g. right after ``backward``; random for ``"random"``). Grown
    weights are set to 0; the new masks are applied to the model.

    Args:
        masks: the current :class:`kdlab.prune.PruningMasks`.
        fraction: share of each layer's active weights replaced, in [0, 1].
        grow: ``"gradient"`` or ``"random"``.
        generator: random source for ``"random"``.
    """
    if not isinstance(masks, PruningMasks):
        raise TypeError(f"masks must be a kdlab.prune.PruningMasks, got {type(masks).__name__}")
    fraction = _validate.fraction("fraction", fraction)
    _validate.choice("grow", grow, GROW)
    new, moved = {}, 0
    for name, mask in masks.items():
        param = masks.model.get_parameter(name)
        if grow == "gradient" and param.grad is None:
            raise ValueError(f"grow='gradient' needs gradients, but {name} has no .grad; "
                             "call it after loss.backward() (or use grow='random')")
        flat = mask.flatten()
        k = min(round(fraction * int(flat.sum())), int((~flat).sum()))
        if k == 0:
            new[name] = mask.clone()
            continue
        magnitude = param.detach().abs().flatten().masked_fill(~flat, float("inf"))
        dropped = torch.topk(magnitude, k, largest=False).indices
        if grow == "gradient":
            score = param.grad.detach().abs().flatten().float()
        else:
            score = torch.rand(flat.shape, generator=generator)
        grown = torch.topk(score.masked_fill(flat, float("-inf")), k).indices
        updated = flat.clone()
        updated[dropped] = False
        updated[grown] = True
        param.view(-1)[grown] = 0.0
        new[name] = updated.view(mask.shape)
        moved += k
    return PruningMasks(masks.model, new).apply(), moved


class PruneRegrow(Callback):
    """A :class:`kdlab.train.Callback` for dynamic sparse training at the sparsity of
    ``masks``: after every optimizer step the masks are re-applied, and every
    ``every`` steps before ``until`` :func:`drop_and_grow` moves a share
    ``f_t = drop_fraction / 2 * (1 + cos(pi * t / until))`` of each layer's weights.

    Args:
        masks: the starting masks (e.g. from :func:`kdlab.prune.magnitude_prune`).
        every: steps between mask updates, >= 1.
        until: last step that may update the mask, >= 1 (``total_steps * 3 // 4``
            when None, as in RigL).
        drop_fraction: ``f_0`` in [0, 1] (RigL uses 0.3).
        grow: ``"gradient"`` (RigL) or ``"random"`` (SET).
        seed: seeds the random growth.

    After training ``masks`` holds the final masks and ``regrown`` counts the
    weights moved in total.
    """

    def __init__(self, masks: PruningMasks, *, every: int = 50, until: int | None = None,
                 drop_fraction: float = 0.3, grow: str = "gradient", seed: int = 0):
        if not isinstance(masks, PruningMasks):
            raise TypeError(f"masks must be a kdlab.prune.PruningMasks, got {type(masks).__name__}")
        self.masks = masks
        self.every = _validate.positive_int("every", every)
        self.until = None if until is None else _validate.positive_int("until", until)
        self.drop_fraction = _validate.fraction("drop_fraction", drop_fraction)
        self.grow = _validate.choice("grow", grow, GROW)
        self.generator = torch.Generator().manual_seed(_validate.positive_int("seed", seed, allow_zero=True))
        self.regrown = 0

    def fraction_at(self, step: int, until: int) -> float:
        """``f_t`` of the cosine schedule (0 from ``until`` on)."""
        if step >= until:
            return 0.0
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * step / until))

    def on_train_start(self, state) -> None:
        self.masks.apply()

    def on_step_end(self, state) -> None:
        until = self.until or max(1, state.total_steps * 3 // 4)
        if state.step % self.every == 0 and state.step < until:
            self.masks, moved = drop_and_grow(self.masks, self.fraction_at(state.step, until),
                                              grow=self.grow, generator=self.generator)
            self.regrown += moved
        else:
            self.masks.apply()
