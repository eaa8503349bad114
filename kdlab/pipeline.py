"""Distillation and pruning combined, plus int8 quantization on top.

Three orders, each built from :class:`kdlab.distill.Distiller`, the masks and
schedules of :mod:`kdlab.prune` and the one :func:`kdlab.train.fit` loop:

- :func:`distill_then_prune`: train the student with KD, prune it to ``amount``
  at once, fine-tune it (with the teacher, by default) under the masks.
- :func:`prune_while_distilling`: one KD run during which a pruning schedule
  (e.g. :class:`kdlab.prune.AGP`) tightens the masks step by step.
- :func:`iterative_prune_distill`: ``rounds`` times: prune ``amount_per_round``
  more of the weights, then recover by distilling from the unpruned teacher;
  after round r the sparsity is ``r * amount_per_round``.

Each trains the model in place and returns ``(model, history)``: a
:class:`kdlab.train.History` whose records are the epochs of every stage, each
with ``stage`` and ``sparsity`` (the global share of zero prunable weights at the
end of the epoch), ``history.steps`` the optimizer steps of all stages together
and ``history.seconds`` the wall time of the whole pipeline (pruning and
teacher caching included). ``teacher=None`` gives the same pipeline with plain
cross-entropy, the baseline a comparison needs.

:func:`quantize_int8` applies post-training dynamic int8 quantization to the
Linear layers; :func:`quantized_size_bytes` measures the result on disk, dense
or with only the non-zero int8 weights stored (pruning and quantization compose:
a zero weight quantizes to exactly 0).

>>> from kdlab import data, models, pipeline, zoo
>>> split = data.load_digits()
>>> student, history = pipeline.distill_then_prune(
...     zoo.pretrained("mlp-teacher"), models.create("mlp-student"), split,
...     amount=0.8, distill_epochs=2, finetune_epochs=1)
>>> round(history.final["sparsity"], 2), history.steps
(0.8, 45)
"""
from __future__ import annotations

import copy
import io
import time
import warnings
from typing import Callable

import torch
from torch import nn

from kdlab import _validate
from kdlab.data import Split
from kdlab.distill import Distiller
from kdlab.prune import Schedule, magnitude_prune, sparsity
from kdlab.prune.sparse_io import encode_sparse, pack_mask
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


# --------------------------------------------------------------------------- the three orders

def distill_then_prune(teacher: nn.Module | None, student: nn.Module, data, *, amount: float,
                       distill_epochs: int = 30, finetune_epochs: int = 10,
                       finetune_with_teacher: bool = True, prune_fn: Callable = magnitude_prune,
                       temperature: float = 4.0, alpha: float = 0.9, cache_teacher: bool | None = None,
                       **fit_kwargs):
    """Distil, then prune once, then fine-tune under the masks.

    1. ``distill_epochs`` of KD: ``alpha * T^2 * KL(q_t || q_s) + (1 - alpha) * CE``;
    2. ``prune_fn(student, amount)`` removes the fraction ``amount`` of the prunable
       weights (magnitude, global, by default);
    3. ``finetune_epochs`` (>= 0) of KD (or of plain cross-entropy with
       ``finetune_with_teacher=False``) with the masks re-applied after every step.

    Args:
        teacher: a trained model, or ``None`` for plain cross-entropy throughout.
        student: the model trained and pruned in place.
        data: a Split (its training part), ``(x, y)`` tensors or a DataLoader.
        amount: fraction of the prunable weights removed, in [0, 1].
        prune_fn: ``prune_fn(model, amount, previous=None) -> PruningMasks``.
        temperature, alpha, cache_teacher: as in :class:`kdlab.distill.Distiller`
            (``cache_teacher=None`` caches whenever ``data`` is in memory).
        fit_kwargs: passed to :func:`kdlab.train.fit` (``lr``, ``batch_size``, ``seed``, ...).

    Returns ``(student, history)`` (see the module docstring).

    >>> from kdlab import data, models, zoo
    >>> s, h = distill_then_prune(zoo.pretrained("mlp-teacher"), models.create("mlp-student"),
    ...                           data.load_digits(), amount=0.5, distill_epochs=1, finetune_epochs=1)
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


def prune_while_distilling(teacher: nn.Module | None, student: nn.Module, data, *, schedule: Schedule,
                           epochs: int = 40, temperature: float = 4.0, alpha: float = 0.9,
                           cache_teacher: bool | None = None, **fit_kwargs):
    """One KD run during which ``schedule`` prunes: after every optimizer step t the
    masks tighten to ``schedule.sparsity_at(t)`` (e.g. :class:`kdlab.prune.AGP`,
    ``s_t = s_f + (s_i - s_f)(1 - (t - t0) / (t1 - t0))^3``) while the student
    learns from the teacher under the current masks.

    Args:
        teacher: a trained model, or ``None`` for plain cross-entropy.
        student: the model trained and pruned in place.
        data: a Split, ``(x, y)`` tensors or a DataLoader.
        schedule: a fresh :class:`kdlab.prune.Schedule` (not used before) that reaches
            its final sparsity within ``epochs * steps_per_epoch`` steps.
        epochs: >= 1. Other arguments as in :func:`distill_then_prune`.

    Returns ``(student, history)``.

    >>> from kdlab import data, models, prune, zoo
    >>> agp = prune.AGP(0.0, 0.8, start=0, end=20, frequency=5)
    >>> s, h = prune_while_distilling(zoo.pretrained("mlp-teacher"), models.create("mlp-student"),
    ...                               data.load_digits(), schedule=agp, epochs=2)
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


def iterative_prune_distill(teacher: nn.Module | None, model: nn.Module, data, *, rounds: int,
                            amount_per_round: float, epochs_per_round: int = 10,
                            prune_fn: Callable = magnitude_prune, temperature: float = 4.0,
                            alpha: float = 0.9, cache_teacher: bool | None = None, **fit_kwargs):
    """Alternate pruning and recovery by distillation from the unpruned teacher.

    Round r = 1..rounds: prune ``model`` to total sparsity ``r * amount_per_round``
    (weights pruned before stay pruned), then ``epochs_per_round`` of KD from
    ``teacher`` under the masks. With ``rounds=1`` this is "prune once, recover
    with the teacher"; with ``teacher=None`` it is plain iterative pruning with
    fine-tuning (Han et al. 2015).

    Args:
        teacher: the unpruned model (commonly the very model before pruning: pass
            ``model`` itself and an unpruned copy is kept as teacher), or ``None``.
        model: the model pruned and trained in place.
        rounds: >= 1.
        amount_per_round: fraction of all prunable weights removed per round, > 0,
            with ``rounds * amount_per_round <= 1``.
        epochs_per_round: >= 1. Other arguments as in :func:`distill_then_prune`.

    Returns ``(model, history)``.

    >>> from kdlab import data, models, zoo
    >>> m = zoo.pretrained("lenet-300-100")
    >>> m, h = iterative_prune_distill(m, m, data.load_digits(), rounds=2, amount_per_round=0.45,
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


# --------------------------------------------------------------------------- int8 quantization

def quantize_int8(model: nn.Module) -> nn.Module:
    """Post-training dynamic int8 quantization of every ``nn.Linear`` (a quantized copy;
    ``model`` is left as it is).

    Each Linear weight becomes ``q = clamp(round(w / s), -128, 127)`` with one scale
    ``s = max|w| / 127.5`` per tensor (symmetric, zero point 0, so a pruned weight
    stays exactly 0); activations are quantized on the fly at inference. Runs on
    CPU (``torch.ao.quantization.quantize_dynamic``); other layers stay float.

    >>> from kdlab import models
    >>> q = quantize_int8(models.create("mlp-student"))
    >>> type(q.layers[0]).__name__
    'Linear'
    >>> type(q.layers[0]).__module__
    'torch.ao.nn.quantized.dynamic.modules.linear'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError(f"model has no nn.Linear layer to quantize: {type(model).__name__}")
    float_copy = copy.deepcopy(model).cpu().eval()
    # torch 2.x announces that torch.ao.quantization (and quantized tensor dtypes) will move
    # to the separate torchao package; the eager API is still the one shipped with torch, so
    # the notice is silenced here only, where nothing else can raise it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                                category=UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(float_copy, {nn.Linear}, dtype=torch.qint8)


def _quantized_linears(qmodel: nn.Module) -> dict:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {name: m for name, m in qmodel.named_modules() if isinstance(m, DynamicLinear)}


def quantized_size_bytes(qmodel: nn.Module, *, sparse: bool = False) -> int:
    """Bytes on disk of a :func:`quantize_int8` model.

    ``sparse=False``: ``torch.save(qmodel.state_dict())`` (1 byte per weight plus
    float biases and one scale per layer). ``sparse=True``: each int8 weight as a
    bitmask of its non-zeros (n/8 bytes) plus the non-zero int8 values, the scale
    and zero point and the float bias (dense int8 where that is smaller); float tensors of other layers as in
    :func:`kdlab.prune.save_sparse`. At sparsity s an n-weight layer costs about
    ``n/8 + (1 - s) n`` bytes instead of ``n``.

    >>> from kdlab import models
    >>> q = quantize_int8(models.create("lenet-300-100"))
    >>> quantized_size_bytes(q) < 266_200 // 3
    True
    """
    if not isinstance(qmodel, nn.Module):
        raise TypeError(f"qmodel must be an nn.Module, got {type(qmodel).__name__}")
    linears = _quantized_linears(qmodel)
    if not linears:
        raise ValueError("qmodel has no dynamically quantized Linear layer; pass quantize_int8(model)")
    sparse = bool(_validate.choice("sparse", sparse, (True, False)))
    buffer = io.BytesIO()
    if not sparse:
        torch.save(qmodel.state_dict(), buffer)
        return buffer.getbuffer().nbytes
    torch.save(sparse_int8_state(qmodel), buffer)
    return buffer.getbuffer().nbytes


def sparse_int8_state(qmodel: nn.Module) -> dict:
    """What ``quantized_size_bytes(qmodel, sparse=True)`` stores: per quantized Linear
    ``{"shape", "bits", "values" (int8 non-zeros), "scale", "zero_point", "bias"}``
    (or the dense int8 ``"weight"`` where the bitmask would not save bytes),
    and the other float tensors of the state_dict encoded as in
    :func:`kdlab.prune.save_sparse`."""
    linears = _quantized_linears(qmodel)
    state = {}
    for name, m in linears.items():
        w = m.weight()
        q = w.int_repr()
        mask = q != 0
        entry = {"scale": float(w.q_scale()), "zero_point": int(w.q_zero_point()),
                 "bias": None if m.bias() is None else m.bias().detach()}
        if (q.numel() + 7) // 8 + int(mask.sum()) < q.numel():
            entry.update(shape=list(q.shape), bits=pack_mask(mask), values=q[mask])
        else:  # too dense for the bitmask to pay off
            entry.update(weight=q)
        state[name] = entry
    prefixes = tuple(f"{n}." for n in linears)
    for key, t in qmodel.state_dict().items():
        if not key.startswith(prefixes) and isinstance(t, torch.Tensor):
            state[key] = encode_sparse(t)
    return state
