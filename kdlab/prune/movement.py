"""Movement pruning: keep the weights that fine-tuning moves away from zero.

Sanh, Wolf & Rush (2020), "Movement Pruning: Adaptive Sparsity by Fine-Tuning". While a
pretrained model is fine-tuned, every optimizer step t adds to each weight's score

    S = - sum_t  W^(t) * dL/dW^(t)

(the gradient taken at the weights of that step, before the update). A weight moving away
from zero (W and -dL/dW of the same sign) gains score; one shrinking towards zero loses it,
however large it is now. Magnitude pruning keeps what is large at the end; movement pruning
keeps what the new task pushes outward. The paper prunes to the top-k scores on a cubic
(AGP) schedule ("movement pruning", the hard variant used here) and reports that it beats
magnitude pruning in transfer at high sparsity (BERT fine-tuned on SQuAD, MNLI, QQP at
3-10% of the weights kept), while magnitude pruning is better at low sparsity.

:class:`MovementScores` is both a :class:`kdlab.train.Callback` (it accumulates S during
:func:`kdlab.train.fit`) and an :class:`Importance` (its ``weight_scores`` are S), and
:meth:`MovementScores.prune_fn` plugs it into a schedule:

>>> from kdlab import data, models, prune, train
>>> split = data.load_digits()
>>> model = models.pretrained("mlp-student")
>>> movement = prune.MovementScores()
>>> agp = prune.AGP(0.0, 0.8, start=0, end=100, frequency=10, prune_fn=movement.prune_fn)
>>> _ = train.fit(model, split, epochs=10, callbacks=[movement, agp], progress=False)
>>> round(prune.sparsity(model)["global"], 2)
0.8
"""
from __future__ import annotations

import torch
from torch import nn

from kdlab import _validate
from kdlab.prune.importance import Importance
from kdlab.prune.masks import PruningMasks, prunable_weights
from kdlab.prune.unstructured import SCOPES, masks_from_scores
from kdlab.train import Callback


class MovementScores(Callback, Importance):
    """Movement scores S = -sum_t W * dL/dW over the optimizer steps of training
    (Sanh et al. 2020), for the prunable weights of ``layers`` (all Linear and conv
    weights by default).

    As a callback of :func:`kdlab.train.fit` it adds ``-W * W.grad`` to S just before
    every optimizer step (an optimizer step pre-hook: the gradient and the weights it
    was taken at); scores keep accumulating over several ``fit`` calls on the same
    model; ``reset()`` sets them to zero. Pruned weights are exact zeros, so their
    scores stop moving. Use ``weight_scores`` (an :class:`Importance`) with
    :func:`~kdlab.prune.unstructured_prune`, or :meth:`prune_fn` with a schedule.
    """

    def __init__(self, layers=None):
        self.layers = layers
        self.scores: dict = {}
        self.steps = 0
        self._weights: dict = {}
        self._model = None
        self._handle = None

    def reset(self) -> None:
        """Forget the accumulated scores."""
        self.scores, self.steps = {}, 0

    def _bind(self, model: nn.Module) -> None:
        if self._model is not model:
            self._model, self._weights = model, prunable_weights(model, self.layers)
            self.reset()

    @torch.no_grad()
    def _accumulate(self, optimizer, args, kwargs) -> None:
        for name, w in self._weights.items():
            if w.grad is None:
                continue
            step = -(w.detach() * w.grad.detach())
            self.scores[name] = self.scores[name] + step if name in self.scores else step.clone()
        self.steps += 1

    def on_train_start(self, state) -> None:
        self._bind(state.model)
        self._handle = state.optimizer.register_step_pre_hook(self._accumulate)

    def on_train_end(self, state) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def weight_scores(self, model: nn.Module, weights: dict) -> dict:
        if model is not self._model or not self.scores:
            raise ValueError("MovementScores has no scores for this model yet: pass it to train.fit(model, ..., "
                             "callbacks=[movement, ...]) before pruning")
        missing = [n for n in weights if n not in self._weights]
        if missing:
            raise ValueError(f"weights names {missing[0]!r}, which these movement scores do not track; "
                             f"they track {list(self._weights)}")
        return {n: self.scores.get(n, torch.zeros_like(self._weights[n])).detach() for n in weights}

    def prune_fn(self, model: nn.Module, amount: float, *, previous: PruningMasks | None = None,
                 scope: str = "global") -> PruningMasks:
        """Keep the weights of highest S, removing the fraction ``amount`` in [0, 1] of the tracked
        weights (``previous`` stays pruned): the ``prune_fn`` of :class:`~kdlab.prune.AGP` and the
        other schedules."""
        _validate.fraction("amount", amount)
        _validate.choice("scope", scope, SCOPES)
        weights = self._weights if model is self._model else prunable_weights(model, self.layers)
        return masks_from_scores(model, self.weight_scores(model, weights), amount, scope=scope, previous=previous)

    def __repr__(self) -> str:
        return f"MovementScores(steps={self.steps}, tensors={len(self.scores)})"
