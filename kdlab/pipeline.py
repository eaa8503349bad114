"""Distillation and pruning combined, and the protocol every pruning lesson runs.

- :func:`prune_finetune_evaluate`: prune a copy of a trained model, fine-tune it under
  the masks (with plain cross-entropy, or distilling from a teacher), and measure its
  accuracy right after pruning and after fine-tuning.

Three orders, each built from :class:`kdlab.distill.Distiller`, the masks and
schedules of :mod:`kdlab.prune` and the one :func:`kdlab.train.fit` loop:

- :func:`distill_then_prune`: train the student with KD, prune it to ``amount``
  at once, fine-tune it (with the teacher, by default) under the masks.
- :func:`prune_while_distilling`: one KD run during which a pruning schedule
  (e.g. :class:`kdlab.prune.AGP`) tightens the masks step by step.
- :func:`iterative_prune_distill`: ``rounds`` times: prune ``amount_per_round``
  more of the weights, then recover by distilling from the unpruned teacher;
  after round r the sparsity is ``r * amount_per_round``.

Each takes the model trained first and the data second, like :func:`kdlab.train.fit`
and :class:`kdlab.distill.Distiller`, and the teacher by keyword; ``teacher=None``
gives the same pipeline with plain cross-entropy, the baseline a comparison needs.
Each trains the model in place and returns ``(model, history)``: a
:class:`kdlab.train.History` whose records are the epochs of every stage, each
with ``stage`` and ``sparsity`` (the global share of zero prunable weights at the
end of the epoch), ``history.steps`` the optimizer steps of all stages together
and ``history.seconds`` the wall time of the whole pipeline (pruning and
teacher caching included).

Int8 quantization on top of either is :mod:`kdlab.quantize`.

>>> from kdlab import data, models, pipeline
>>> split = data.load_digits()
>>> student, history = pipeline.distill_then_prune(
...     models.create("mlp-student"), split, teacher=models.pretrained("mlp-teacher"),
...     amount=0.8, distill_epochs=2, finetune_epochs=1)
>>> round(history.final["sparsity"], 2), history.steps
(0.8, 45)
"""
from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from kdlab import _deprecation, _validate
from kdlab.data import Split
from kdlab.distill import DEFAULT_TEMPERATURE, Distiller
from kdlab.prune import PruningMasks, Schedule, magnitude_prune, sparsity
from kdlab.train import Callback, History, as_loader, fit

_FIT_KEYS_REFUSED = ("objective", "loss_fn", "callbacks", "epochs")


# --------------------------------------------------------------------------- checks

def _check_models(teacher, model, data, model_name: str):
    """Type checks, and one forward pass on one example: the teacher and the model
    must accept the data and agree on the number of classes."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{model_name} must be an nn.Module, got {type(model).__name__}")
    if teacher is not None and not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be an nn.Module or None (plain cross-entropy), "
                        f"got {type(teacher).__name__}")
    loader = as_loader(data, batch_size=1, shuffle=False)
    if len(loader) == 0:
        raise ValueError("data is empty: the loader yields no batch")
    if teacher is None:
        return
    x = next(iter(loader))[0]
    with torch.no_grad():
        outs = []
        for m in (teacher, model):
            was_training = m.training
            m.eval()
            try:
                outs.append(m(x.to(next(m.parameters()).device)))
            finally:
                m.train(was_training)
    if outs[0].shape[-1] != outs[1].shape[-1]:
        raise ValueError(f"teacher and {model_name} must predict the same number of classes, got "
                         f"{outs[0].shape[-1]} (teacher) and {outs[1].shape[-1]} ({model_name})")


def _check_fit_kwargs(fit_kwargs: dict) -> None:
    for key in _FIT_KEYS_REFUSED:
        if key in fit_kwargs:
            raise ValueError(f"{key} is set by the pipeline; do not pass it (extra arguments go to "
                             f"kdlab.train.fit: lr, optimizer, weight_decay, batch_size, seed, eval_data, ...)")


def _check_prune_fn(prune_fn) -> Callable:
    if not callable(prune_fn):
        raise TypeError(f"prune_fn must be callable (model, amount, previous=masks) -> PruningMasks, "
                        f"got {prune_fn!r}")
    return prune_fn


def _in_memory(data) -> bool:
    if isinstance(data, Split):
        return True
    return (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data))


# --------------------------------------------------------------------------- stages

class _RecordSparsity(Callback):
    """Adds the model's global sparsity and the stage name to each epoch record."""

    def __init__(self, stage: str):
        self.stage = stage

    def on_epoch_end(self, state) -> None:
        state.history.records[-1].update(stage=self.stage, sparsity=sparsity(state.model)["global"])


class _Run:
    """Runs the stages of one pipeline and merges their histories."""

    def __init__(self, teacher, model, data, kd: dict, fit_kwargs: dict):
        self.teacher, self.model, self.data = teacher, model, data
        self.kd, self.fit_kwargs = kd, fit_kwargs
        self.history = History()
        self.start = time.perf_counter()

    def train(self, stage: str, epochs: int, callbacks=(), with_teacher: bool = True) -> None:
        callbacks = [*callbacks, _RecordSparsity(stage)]
        if self.teacher is not None and with_teacher:
            distiller = Distiller(self.model, self.teacher, **self.kd)
            h = distiller.fit(self.data, epochs=epochs, callbacks=callbacks, **self.fit_kwargs)
        else:
            h = fit(self.model, self.data, epochs=epochs, callbacks=callbacks, **self.fit_kwargs)
        done = len(self.history.records)
        for r in h.records:
            self.history.records.append({**r, "epoch": done + r["epoch"]})
        self.history.steps += h.steps

    def finish(self):
        self.history.seconds = time.perf_counter() - self.start
        return self.model, self.history


def _kd_settings(temperature, alpha, cache_teacher, data) -> dict:
    if cache_teacher is None:
        cache_teacher = _in_memory(data)
    return {"temperature": temperature, "alpha": alpha, "cache_teacher": cache_teacher}


def _frozen_copy(teacher, model):
    """The teacher must stay unpruned: pruning ``model`` in place would prune it too."""
    return copy.deepcopy(teacher) if teacher is model else teacher


def _model_first(fn):
    """Accept the old order ``fn(teacher, model, data, ...)`` for one release, with a
    warning: three positional arguments whose second is a model (the new order takes
    two, the model and the data, and the teacher by keyword)."""
    new = f"{fn.__name__}(model, data, teacher=teacher, ...)"

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if len(args) == 3 and isinstance(args[1], nn.Module) and "teacher" not in kwargs:
            _deprecation.warn(f"kdlab.pipeline.{fn.__name__}(teacher, model, data, ...)", new)
            teacher, *args = args
            kwargs["teacher"] = teacher
        return fn(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------- prune, fine-tune, evaluate

@dataclass
class PruneFinetune:
    """What :func:`prune_finetune_evaluate` measured: the pruned and fine-tuned ``model``,
    its ``masks`` (``None`` when ``prune_fn`` made a smaller model instead), its test
    accuracy right after pruning (``accuracy_pruned``) and after fine-tuning
    (``accuracy``), and the fine-tuning ``history``."""

    model: nn.Module
    masks: PruningMasks | None
    accuracy_pruned: float
    accuracy: float
    history: History


def prune_finetune_evaluate(model: nn.Module, data, *, amount: float, epochs: int, teacher=None,
                            prune_fn: Callable = magnitude_prune, test=None, keep_masks: bool = True,
                            in_place: bool = False, temperature: float = DEFAULT_TEMPERATURE,
                            alpha: float = 0.9, cache_teacher: bool | None = None,
                            **fit_kwargs) -> PruneFinetune:
    """Prune a copy of a trained model, fine-tune it, and measure it before and after.

    1. ``prune_fn(model, amount)`` removes the fraction ``amount`` of the prunable
       weights (global magnitude by default) and returns the masks, or returns a new,
       smaller model (structured pruning, e.g. ``lambda m, a: prune.structured_prune(m, a, x)``);
    2. accuracy on ``test`` right after pruning;
    3. ``epochs`` of fine-tuning on ``data`` under the masks (re-applied after every
       step, so pruned weights stay 0; ``keep_masks=False`` shows what happens
       without), with plain cross-entropy or, given a ``teacher``, by distillation
       ``alpha * T^2 * KL(q_t || q_s) + (1 - alpha) * CE`` (the dense model itself is
       the usual teacher);
    4. accuracy on ``test`` after fine-tuning.

    Args:
        model: the trained model; it is copied first unless ``in_place``.
        data: the training data, a Split (its training part), ``(x, y)`` or a DataLoader.
        amount: fraction of the prunable weights removed, in [0, 1].
        epochs: fine-tuning epochs, >= 0.
        teacher: ``None``, or the model to distil from while fine-tuning.
        prune_fn: ``prune_fn(model, amount)`` -> ``PruningMasks`` or a new ``nn.Module``.
        test: where accuracy is measured; by default the test part of ``data`` (a Split).
        temperature, alpha, cache_teacher: as in :class:`kdlab.distill.Distiller`
            (``cache_teacher=None`` caches whenever ``data`` is in memory).
        fit_kwargs: passed to :func:`kdlab.train.fit` (``lr``, ``batch_size``, ``seed``, ...).

    >>> from kdlab import data, models
    >>> split = data.load_digits()
    >>> run = prune_finetune_evaluate(models.pretrained("lenet-300-100"), split, amount=0.9, epochs=2,
    ...                               lr=1e-3)
    >>> round(run.masks.sparsity, 2), run.accuracy > run.accuracy_pruned
    (0.9, True)
    """
    from kdlab.evaluate import accuracy

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    amount = _validate.fraction("amount", amount)
    epochs = _validate.positive_int("epochs", epochs, allow_zero=True)
    if not callable(prune_fn):
        raise TypeError(f"prune_fn must be callable (model, amount) -> PruningMasks or a pruned model, "
                        f"got {prune_fn!r}")
    if test is None:
        if not isinstance(data, Split):
            raise TypeError(f"test is needed when data is not a Split (whose test part is the default); "
                            f"got data of type {type(data).__name__}")
        test = data.test
    _check_fit_kwargs(fit_kwargs)
    _check_models(teacher, model, data, "model")
    trained = model if in_place else copy.deepcopy(model)
    pruned = prune_fn(trained, amount)
    if isinstance(pruned, PruningMasks):
        masks = pruned
    elif isinstance(pruned, nn.Module):
        trained, masks = pruned, None
    else:
        raise TypeError(f"prune_fn must return PruningMasks or a pruned nn.Module, got {type(pruned).__name__}")
    accuracy_pruned = accuracy(trained, test)
    run = _Run(_frozen_copy(teacher, trained), trained, data,
               _kd_settings(temperature, alpha, cache_teacher, data), fit_kwargs)
    if epochs:
        run.train("finetune", epochs, [masks.callback()] if masks is not None and keep_masks else [])
    _, history = run.finish()
    return PruneFinetune(trained, masks, accuracy_pruned, accuracy(trained, test), history)


# --------------------------------------------------------------------------- the three orders

@_model_first
def distill_then_prune(student: nn.Module, data, *, teacher: nn.Module | None, amount: float,
                       distill_epochs: int = 30, finetune_epochs: int = 10,
                       finetune_with_teacher: bool = True, prune_fn: Callable = magnitude_prune,
                       temperature: float = DEFAULT_TEMPERATURE, alpha: float = 0.9,
                       cache_teacher: bool | None = None, **fit_kwargs):
    """Distil, then prune once, then fine-tune under the masks.

    1. ``distill_epochs`` of KD: ``alpha * T^2 * KL(q_t || q_s) + (1 - alpha) * CE``;
    2. ``prune_fn(student, amount)`` removes the fraction ``amount`` of the prunable
       weights (magnitude, global, by default);
    3. ``finetune_epochs`` (>= 0) of KD (or of plain cross-entropy with
       ``finetune_with_teacher=False``) with the masks re-applied after every step.

    Args:
        student: the model trained and pruned in place.
        data: a Split (its training part), ``(x, y)`` tensors or a DataLoader.
        teacher: a trained model, or ``None`` for plain cross-entropy throughout.
        amount: fraction of the prunable weights removed, in [0, 1].
        prune_fn: ``prune_fn(model, amount, previous=None) -> PruningMasks``.
        temperature, alpha, cache_teacher: as in :class:`kdlab.distill.Distiller`
            (``cache_teacher=None`` caches whenever ``data`` is in memory).
        fit_kwargs: passed to :func:`kdlab.train.fit` (``lr``, ``batch_size``, ``seed``, ...).

    Returns ``(student, history)`` (see the module docstring).

    >>> from kdlab import data, models
    >>> s, h = distill_then_prune(models.create("mlp-student"), data.load_digits(),
    ...                           teacher=models.pretrained("mlp-teacher"), amount=0.5,
    ...                           distill_epochs=1, finetune_epochs=1)
    """
    amount = _validate.fraction("amount", amount)
    distill_epochs = _validate.positive_int("distill_epochs", distill_epochs)
    finetune_epochs = _validate.positive_int("finetune_epochs", finetune_epochs, allow_zero=True)
    prune_fn = _check_prune_fn(prune_fn)
    _check_fit_kwargs(fit_kwargs)
    _check_models(teacher, student, data, "student")
    run = _Run(_frozen_copy(teacher, student), student, data,
               _kd_settings(temperature, alpha, cache_teacher, data), fit_kwargs)
    run.train("distill", distill_epochs)
    masks = prune_fn(student, amount, previous=None)
    if finetune_epochs:
        run.train("finetune", finetune_epochs, [masks.callback()], with_teacher=finetune_with_teacher)
    else:
        run.history.records.append({"epoch": len(run.history.records) + 1, "stage": "prune",
                                    "sparsity": sparsity(student)["global"]})
    return run.finish()


@_model_first
def prune_while_distilling(student: nn.Module, data, *, teacher: nn.Module | None, schedule: Schedule,
                           epochs: int = 40, temperature: float = DEFAULT_TEMPERATURE, alpha: float = 0.9,
                           cache_teacher: bool | None = None, **fit_kwargs):
    """One KD run during which ``schedule`` prunes: after every optimizer step t the
    masks tighten to ``schedule.sparsity_at(t)`` (e.g. :class:`kdlab.prune.AGP`,
    ``s_t = s_f + (s_i - s_f)(1 - (t - t0) / (t1 - t0))^3``) while the student
    learns from the teacher under the current masks.

    Args:
        student: the model trained and pruned in place.
        data: a Split, ``(x, y)`` tensors or a DataLoader.
        teacher: a trained model, or ``None`` for plain cross-entropy.
        schedule: a fresh :class:`kdlab.prune.Schedule` (not used before) that reaches
            its final sparsity within ``epochs * steps_per_epoch`` steps.
        epochs: >= 1. Other arguments as in :func:`distill_then_prune`.

    Returns ``(student, history)``.

    >>> from kdlab import data, models, prune
    >>> agp = prune.AGP(0.0, 0.8, start=0, end=20, frequency=5)
    >>> s, h = prune_while_distilling(models.create("mlp-student"), data.load_digits(),
    ...                               teacher=models.pretrained("mlp-teacher"), schedule=agp, epochs=2)
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a kdlab.prune.Schedule (OneShot, Iterative, AGP), "
                        f"got {type(schedule).__name__}")
    if schedule.masks is not None:
        raise ValueError("schedule has already pruned a model; pass a fresh schedule object")
    epochs = _validate.positive_int("epochs", epochs)
    _check_fit_kwargs(fit_kwargs)
    _check_models(teacher, student, data, "student")
    loader = as_loader(data, batch_size=fit_kwargs.get("batch_size", 64))
    total = epochs * len(loader)
    reached, final = schedule.sparsity_at(total), schedule.sparsity_at(2 ** 62)
    if reached < final:
        raise ValueError(f"schedule reaches sparsity {final:.4f} only after more than the {total} "
                         f"optimizer steps of {epochs} epochs (it is at {reached:.4f} then); "
                         f"end the schedule earlier or train for more epochs")
    run = _Run(teacher, student, data, _kd_settings(temperature, alpha, cache_teacher, data), fit_kwargs)
    run.train("prune+distill", epochs, [schedule])
    return run.finish()


@_model_first
def iterative_prune_distill(model: nn.Module, data, *, teacher: nn.Module | None, rounds: int,
                            amount_per_round: float, epochs_per_round: int = 10,
                            prune_fn: Callable = magnitude_prune, temperature: float = DEFAULT_TEMPERATURE,
                            alpha: float = 0.9, cache_teacher: bool | None = None, **fit_kwargs):
    """Alternate pruning and recovery by distillation from the unpruned teacher.

    Round r = 1..rounds: prune ``model`` to total sparsity ``r * amount_per_round``
    (weights pruned before stay pruned), then ``epochs_per_round`` of KD from
    ``teacher`` under the masks. With ``rounds=1`` this is "prune once, recover
    with the teacher" (:func:`prune_finetune_evaluate` also measures it); with
    ``teacher=None`` it is plain iterative pruning with fine-tuning (Han et al. 2015).

    Args:
        model: the model pruned and trained in place.
        data: a Split (its training part), ``(x, y)`` tensors or a DataLoader.
        teacher: the unpruned model (commonly the very model before pruning: pass
            ``model`` itself and an unpruned copy is kept as teacher), or ``None``.
        rounds: >= 1.
        amount_per_round: fraction of all prunable weights removed per round, > 0,
            with ``rounds * amount_per_round <= 1``.
        epochs_per_round: >= 1. Other arguments as in :func:`distill_then_prune`.

    Returns ``(model, history)``.

    >>> from kdlab import data, models
    >>> m = models.pretrained("lenet-300-100")
    >>> m, h = iterative_prune_distill(m, data.load_digits(), teacher=m, rounds=2, amount_per_round=0.45,
    ...                                epochs_per_round=1)
    >>> round(h.final["sparsity"], 2)
    0.9
    """
    rounds = _validate.positive_int("rounds", rounds)
    amount_per_round = _validate.fraction("amount_per_round", amount_per_round)
    if amount_per_round == 0:
        raise ValueError("amount_per_round must be > 0, got 0.0: nothing would be pruned")
    if rounds * amount_per_round > 1 + 1e-9:
        raise ValueError(f"rounds * amount_per_round must be <= 1 (amount is the fraction removed in "
                         f"total), got {rounds} * {amount_per_round} = {rounds * amount_per_round:.4f}; "
                         f"use amount_per_round <= {1 / rounds:.4f}")
    epochs_per_round = _validate.positive_int("epochs_per_round", epochs_per_round)
    prune_fn = _check_prune_fn(prune_fn)
    _check_fit_kwargs(fit_kwargs)
    _check_models(teacher, model, data, "model")
    run = _Run(_frozen_copy(teacher, model), model, data,
               _kd_settings(temperature, alpha, cache_teacher, data), fit_kwargs)
    masks = None
    for r in range(1, rounds + 1):
        masks = prune_fn(model, min(1.0, r * amount_per_round), previous=masks)
        run.train(f"round {r}", epochs_per_round, [masks.callback()])
    return run.finish()


__getattr__ = _deprecation.moved_attributes(__name__, {
    "quantize_int8": "kdlab.quantize.quantize_int8",
    "quantized_size_bytes": "kdlab.quantize.quantized_size_bytes",
    "sparse_int8_state": "kdlab.quantize.sparse_int8_state"})
