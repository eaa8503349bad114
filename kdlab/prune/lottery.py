"""Lottery tickets: iterative magnitude pruning with rewinding.

Frankle & Carbin (2019), "The Lottery Ticket Hypothesis": train a dense network
from its initial weights theta_0, remove the fraction ``p`` of the surviving weights
with the smallest |w|, reset the survivors to theta_0 and train again; repeat. After
``r`` rounds the sparsity is

    s_r = 1 - (1 - p)^r

and the surviving weights, reset to theta_0 (the "winning ticket"), train alone to
about the dense accuracy, while the same mask with a random re-initialisation
does worse. Frankle, Dziugaite, Roy & Carbin (2020), "Linear Mode Connectivity and
the Lottery Ticket Hypothesis": for deeper networks, or larger learning rates,
resetting to theta_0 fails; rewinding to theta_k, the weights after ``k`` steps of
the first dense training (0.1-7% of it), works.

>>> from kdlab import data, models, prune, train
>>> split = data.load_digits()
>>> make = lambda: models.create("mlp-student")
>>> ticket = prune.lottery_ticket(make, split.train, epochs=1, rounds=2, amount_per_round=0.5)
>>> round(ticket.masks.sparsity, 2)
0.75
>>> _ = train.fit(ticket.model, split.train, epochs=1, callbacks=[ticket.masks.callback()])
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from kdlab import _validate
from kdlab.prune.masks import PruningMasks
from kdlab.prune.unstructured import SCOPES, magnitude_prune
from kdlab.train import Callback, fit


def compounded_sparsity(amount_per_round: float, rounds: int) -> float:
    """Sparsity after ``rounds`` rounds that each remove the fraction ``amount_per_round``
    of the weights that survived the round before: ``1 - (1 - p)^r``.

    >>> compounded_sparsity(0.2, 3)
    0.488
    """
    p = _validate.fraction("amount_per_round", amount_per_round)
    r = _validate.positive_int("rounds", rounds, allow_zero=True)
    return round(1.0 - (1.0 - p) ** r, 12)


class _Snapshot(Callback):
    """Keeps a copy of the model's state after optimizer step ``step`` (0: before training)."""

    def __init__(self, step: int):
        self.step, self.state = step, None

    def on_train_start(self, state) -> None:
        if self.step == 0:
            self.state = copy.deepcopy(state.model.state_dict())

    def on_step_end(self, state) -> None:
        if state.step == self.step:
            self.state = copy.deepcopy(state.model.state_dict())


@dataclass
class LotteryTicket:
    """What :func:`lottery_ticket` found.

    Attributes:
        model: the ticket, untrained: the rewound weights under the final masks.
        masks: the final :class:`PruningMasks`, bound to ``model``.
        round_masks: ``{parameter name: bool mask}`` after each round (round 1 first).
        init_state: theta_0, the state_dict the dense network started from.
        rewind_state: the state_dict the survivors were reset to (theta_0 or theta_k).
        rewind_step: 0 for theta_0, else k.
        dense: the dense network after its training (trained from theta_0).
        steps_per_training: optimizer steps of each training run.
    """

    model: nn.Module
    masks: PruningMasks
    round_masks: list
    init_state: dict
    rewind_state: dict
    rewind_step: int
    dense: nn.Module
    steps_per_training: int
    make_model: Callable = field(repr=False)

    def random_reinit(self, seed: int = 0) -> tuple:
        """The same mask on freshly initialised weights (``make_model()`` under
        ``torch.manual_seed(seed)``, the global random state left as it was): the
        control that tells a winning ticket from a good mask. Returns ``(model, masks)``;
        a seed that draws theta_0 again raises ``ValueError``.
        """
        seed = _validate.positive_int("seed", seed, allow_zero=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _make(self.make_model)
        if all(torch.equal(model.get_parameter(n), self.init_state[n]) for n in self.masks):
            raise ValueError(f"seed={seed} draws theta_0 again (the seed that initialised the ticket, or a "
                             "make_model that seeds itself); pick another seed")
        return model, self.masks.rebind(model)


def _make(make_model: Callable) -> nn.Module:
    model = make_model()
    if not isinstance(model, nn.Module):
        raise TypeError(f"make_model must return a torch.nn.Module, got {type(model).__name__}")
    return model


def lottery_ticket(make_model: Callable, data, *, epochs: int, rounds: int, amount_per_round: float,
                   rewind_to="init", scope: str = "global", layers=None, **fit_kwargs) -> LotteryTicket:
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

    1. ``model = make_model()``; keep its weights theta_0. Train it densely with
       :func:`kdlab.train.fit` for ``epochs`` (keeping theta_k, the weights after
       optimizer step k, when ``rewind_to=k``).
    2. Round r = 1..``rounds``: remove the smallest-|w| weights (``scope`` "global" or
       "layer", over ``layers``) so that the sparsity is 1 - (1 - p)^r (p =
       ``amount_per_round`` of the survivors), reset every weight to the rewind point
       (theta_0 or theta_k) under the masks; before the next round, train the masked
       network for ``epochs`` again (masks kept after every step).

    The returned ticket is rewound and untrained: train it with its masks
    (``fit(ticket.model, ..., callbacks=[ticket.masks.callback()])``) at the budget
    of the comparison. ``fit_kwargs`` (lr, optimizer, seed, batch_size, ...) go to every
    :func:`~kdlab.train.fit` call.

    Args:
        make_model: a function of no arguments returning a freshly initialised model.
        rewind_to: ``"init"`` (theta_0) or an optimizer step ``k`` >= 0 of the first training
            (at most its number of steps; 0 is theta_0).
    """
    if isinstance(make_model, nn.Module) or not callable(make_model):
        raise TypeError(f"make_model must be a function returning a new model (e.g. lambda: models.create("
                        f"'lenet-300-100')), got {type(make_model).__name__}")
    epochs = _validate.positive_int("epochs", epochs)
    rounds = _validate.positive_int("rounds", rounds)
    p = _validate.fraction("amount_per_round", amount_per_round)
    if p == 1.0:
        raise ValueError("amount_per_round must be < 1 (1 removes every weight in the first round), got 1.0")
    _validate.choice("scope", scope, SCOPES)
    if rewind_to == "init":
        k = 0
    elif isinstance(rewind_to, bool) or not isinstance(rewind_to, int):
        raise TypeError(f"rewind_to must be 'init' or an optimizer step (an integer >= 0), got {rewind_to!r}")
    else:
        k = _validate.positive_int("rewind_to", rewind_to, allow_zero=True)
    for banned in ("callbacks", "epochs", "data"):
        if banned in fit_kwargs:
            raise ValueError(f"{banned} is set by lottery_ticket itself; pass the other options of fit only")

    model = _make(make_model)
    init_state = copy.deepcopy(model.state_dict())
    snapshot = _Snapshot(k)
    history = fit(model, data, epochs=epochs, callbacks=[snapshot], **fit_kwargs)
    if snapshot.state is None:
        raise ValueError(f"rewind_to must be at most the {history.steps} optimizer steps of one training, got {k}")
    dense = copy.deepcopy(model)
    rewind_state = snapshot.state

    masks, round_masks = None, []
    for r in range(1, rounds + 1):
        masks = magnitude_prune(model, compounded_sparsity(p, r), scope=scope, layers=layers, previous=masks)
        round_masks.append({n: m.clone() for n, m in masks.items()})
        model.load_state_dict(rewind_state)
        masks.apply()
        if r < rounds:
            fit(model, data, epochs=epochs, callbacks=[masks.callback()], **fit_kwargs)
    return LotteryTicket(model=model, masks=masks, round_masks=round_masks, init_state=init_state,
                         rewind_state=rewind_state, rewind_step=k, dense=dense,
                         steps_per_training=history.steps, make_model=make_model)
