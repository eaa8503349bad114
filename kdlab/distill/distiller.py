"""The :class:`Distiller`: a student trained on soft targets from one or more frozen
teachers through the one :func:`kdlab.train.fit` loop.

The Distiller supplies the ``objective`` (how a batch becomes a loss, see
:mod:`kdlab.distill.losses`) and is itself the callback that prepares the teachers
and feature hooks and sets the temperature at the start of every epoch. With
``cache_teacher=True`` the teachers run once over in-memory data and a batch's
targets are looked up by index in a :class:`~kdlab.distill.targets.TeacherCache`.

>>> from kdlab import data, models
>>> split = data.load_digits()
>>> student = models.create("mlp-tiny")
>>> d = Distiller(student, models.pretrained("mlp-teacher"), temperature=4.0, cache_teacher=True)
>>> history = d.fit(split.train, epochs=2, progress=False)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from kdlab import _validate
from kdlab.data import UNLABELLED, Split, make_loader
from kdlab.distill.losses import (KDWeights, attention_transfer_loss, dkd_loss, hint_loss,
                                  kd_from_log_targets, make_regressor, rkd_loss)
from kdlab.distill.targets import (DEFAULT_TEMPERATURE, MULTI_TEACHER_MODES, TeacherCache, _temperature,
                                   _weights, combine, constant_temperature, stack_teachers, teacher_list)
from kdlab.train import Callback, TrainState, as_loader, fit, make_optimizer

LOSSES = ("kd", "dkd")
HINT_KINDS = ("hint", "attention", "relation")


def _module(model: nn.Module, name: str, which: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not isinstance(name, str) or name not in modules or name == "":
        names = [n for n in modules if n]
        raise ValueError(f"hints name {name!r} is not a submodule of the {which}; "
                         f"its submodules are {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")
    return modules[name]


def indexed_loader(x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 64, shuffle: bool = True,
                   seed: int = 0) -> DataLoader:
    """A loader of ``(x, y, index)`` batches over in-memory tensors, in the same
    order as :func:`kdlab.data.make_loader` with the same seed."""
    return make_loader(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed, with_index=True)


def _same_classes(student: int, teachers: int) -> None:
    if student != teachers:
        raise ValueError(f"the student and its teachers must give logits over the same classes; got "
                         f"student: {student} classes, teachers: {teachers} classes")


class Distiller(Callback):
    """Train a student on soft targets from one or more frozen teachers.

    The loss per batch ``(x, y)`` (``y`` may be absent, or :data:`UNLABELLED` for
    some examples) is

    - ``loss="kd"``: :func:`kd_loss` against the teachers' combined targets
      (:func:`multi_teacher_targets`), hard term over the labelled examples;
    - ``loss="dkd"``: ``CE(z_s, y) + w_e * dkd_loss(z_s, z_t, y, alpha=dkd_alpha, beta=dkd_beta, T)``
      with ``w_e = min(1, (e + 1) / dkd_warmup)`` in epoch ``e`` (0-based; 1 without warm-up)
      (``alpha`` is not used; every example needs a label);
    - a callable ``loss(student_logits, teacher_logits, targets, temperature)``;

    plus ``hint_weight * sum(hint or attention losses)`` over the ``hints`` pairs
    (by default each hint term divided by its feature size, see ``hint_weight``).

    Teachers run in eval mode under ``torch.no_grad``; features for hints are read
    with forward hooks (removed after training), so no model's ``forward`` changes.
    Training goes through :func:`kdlab.train.fit`: the Distiller supplies the
    ``objective`` and is itself the callback that prepares teachers and hooks and
    sets the temperature at the start of every epoch. To combine it with other
    callbacks outside :meth:`fit`, pass both: ``train.fit(student, data,
    objective=d.objective, callbacks=[d, pruning_callback])``.

    Args:
        student: the model trained.
        teachers: one ``nn.Module`` or a non-empty sequence of them.
        loss: ``"kd"``, ``"dkd"`` or a callable (see above).
        temperature: ``T`` > 0, or a schedule ``epoch -> T`` (:func:`linear_temperature`,
            :func:`cosine_temperature`); epochs count from 0.
        alpha: weight of the soft term in ``"kd"``, in [0, 1].
        teacher_weights: ``None`` or one weight >= 0 per teacher.
        multi_teacher_mode: ``"logits"`` or ``"probs"`` (probs needs ``loss="kd"``).
        hints: pairs ``(student module name, teacher module name)``; one teacher only.
        hint_kind: ``"hint"`` (FitNets, with a learned regressor when shapes differ,
            trained with the student), ``"attention"`` (attention transfer, the paper's
            form with ``beta = 1``) or ``"relation"`` (relational KD, :func:`rkd_loss`
            on the flattened features: distances and angles within the batch).
        hint_weight: weight >= 0 of the feature losses, or ``None`` (the default): each
            FitNets term divided by the number ``D`` of teacher feature values per
            example, i.e. half the mean squared error per value, so the term does not
            grow with the feature map (its sum over a CNN map swamps the KD loss);
            attention-transfer and relational terms, already normalised, with weight 1.
        dkd_alpha, dkd_beta: DKD's weights.
        dkd_warmup: epochs over which DKD's term ramps up linearly (Zhao et al. use 20);
            0 for none.
        cache_teacher: compute the teachers' logits once on in-memory ``(x, y)``
            data (no augmentation), then look them up by index.

    >>> from kdlab import data, models
    >>> split = data.load_digits()
    >>> d = Distiller(models.create("mlp-tiny"), models.pretrained("mlp-teacher"), cache_teacher=True)
    >>> d.fit(split.train, epochs=2, progress=False).steps
    30
    """

    def __init__(self, student: nn.Module, teachers, *, loss="kd", temperature=DEFAULT_TEMPERATURE, alpha: float = 0.9,
                 teacher_weights=None, multi_teacher_mode: str = "logits", hints=None,
                 hint_kind: str = "hint", hint_weight: float | None = None, dkd_alpha: float = 1.0,
                 dkd_beta: float = 8.0, dkd_warmup: int = 0, cache_teacher: bool = False):
        if not isinstance(student, nn.Module):
            raise TypeError(f"student must be an nn.Module, got {type(student).__name__}")
        self.student = student
        self.teachers = teacher_list(teachers)
        if not callable(loss):
            _validate.choice("loss", loss, LOSSES)
        self.loss = loss
        if callable(temperature):
            self.schedule = temperature
        else:
            self.schedule = constant_temperature(temperature)
        self.temperature = _temperature(self.schedule(0), "temperature at epoch 0")
        self.alpha = _validate.fraction("alpha", alpha)
        self.teacher_weights = _weights("teacher_weights", teacher_weights, len(self.teachers))
        self.mode = _validate.choice("multi_teacher_mode", multi_teacher_mode, MULTI_TEACHER_MODES)
        if self.mode == "probs" and loss != "kd":
            raise ValueError(f"multi_teacher_mode='probs' gives no combined logits, so it needs loss='kd'; "
                             f"got loss={loss!r}")
        self.dkd_alpha = _validate.positive_float("dkd_alpha", dkd_alpha, allow_zero=True)
        self.dkd_beta = _validate.positive_float("dkd_beta", dkd_beta, allow_zero=True)
        self.dkd_warmup = _validate.positive_int("dkd_warmup", dkd_warmup, allow_zero=True)
        if self.dkd_warmup and loss != "dkd":
            raise ValueError(f"dkd_warmup ramps up DKD's term, so it needs loss='dkd'; got loss={loss!r}")
        self._dkd_weight = 1.0 if not self.dkd_warmup else 1.0 / self.dkd_warmup
        self.hint_kind = _validate.choice("hint_kind", hint_kind, HINT_KINDS)
        self.hint_weight = (None if hint_weight is None
                            else _validate.positive_float("hint_weight", hint_weight, allow_zero=True))
        self.hints = self._check_hints(hints)
        if not isinstance(cache_teacher, bool):
            raise TypeError(f"cache_teacher must be True or False, got {cache_teacher!r}")
        if cache_teacher and self.hints:
            raise ValueError("cache_teacher=True cannot be combined with hints: teacher features are "
                             "needed at every step; pass cache_teacher=False")
        self.cache_teacher = cache_teacher
        self.regressors = nn.ModuleDict()
        self._hooks: list = []
        self._features: dict = {}
        self._cache: TeacherCache | None = None   # during fit with cache_teacher=True
        self._kd_weights: KDWeights | None = None  # cached labelled vanilla KD: the loss as weights
        self._batch_size = 64
        self._partly_labelled = True              # known to be False only for in-memory data

    def _check_hints(self, hints) -> list:
        if hints is None:
            return []
        hints = [tuple(pair) for pair in hints]
        if hints and len(self.teachers) > 1:
            raise ValueError(f"hints need exactly one teacher, got {len(self.teachers)}")
        for pair in hints:
            if len(pair) != 2:
                raise ValueError(f"hints must be (student module name, teacher module name) pairs, got {pair!r}")
            _module(self.student, pair[0], "student")
            _module(self.teachers[0], pair[1], "teacher")
        return hints

    # -- the objective ------------------------------------------------------

    @torch.no_grad()
    def _teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        return stack_teachers([t(x) for t in self.teachers])

    def _targets(self, teacher_logits: torch.Tensor, y: torch.Tensor | None) -> tuple:
        """What the loss needs per example at the current T, from ``(K, N, C)`` teacher
        logits: ``(KD weights,)`` for vanilla KD on cached, fully labelled data (one
        weighted log-softmax, :class:`~kdlab.distill.losses.KDWeights`), else
        ``(combined logits or None, log of the combined soft targets)``."""
        logits, log_q = combine(teacher_logits, self.teacher_weights, self.temperature, self.mode)
        if self._fused():
            self._kd_weights = KDWeights.build(log_q, y, self.temperature, self.alpha, self._batch_size)
            return (self._kd_weights.weights,)
        return (None if self.loss == "kd" else logits, log_q)

    def _fused(self) -> bool:
        return self._cache is not None and self.loss == "kd" and not self._partly_labelled

    def objective(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        """``objective(student, batch) -> loss`` for :func:`kdlab.train.fit`; batches
        are ``(x,)`` or ``(x, y)``, and ``(x, y, index)`` from :meth:`fit` with cached
        teacher logits, whose targets are looked up by index."""
        x = batch[0]
        if self._kd_weights is not None:  # cached, fully labelled vanilla KD: one lookup, one loss
            return self._kd_weights.loss(model(x), self._kd_weights.weights.index_select(0, batch[2]))
        y = batch[1] if len(batch) > 1 else None
        if self._cache is not None:
            targets = self._cache[batch[2]]
        else:
            targets = self._targets(self._teacher_logits(x), y)
        loss = self._loss(model(x), targets, y)
        if self.hints and self.hint_weight != 0:
            loss = loss + self._feature_loss()
        return loss

    def _loss(self, student_logits: torch.Tensor, targets: tuple, y) -> torch.Tensor:
        T = self.temperature
        teacher_logits, log_q = targets
        _same_classes(student_logits.shape[-1], log_q.shape[-1])
        if self.loss == "kd":
            return kd_from_log_targets(student_logits, log_q, y, T, self.alpha, self._partly_labelled)
        if self.loss == "dkd":
            if y is None:
                raise ValueError("loss='dkd' needs labelled batches (x, y); got batches without targets")
            return F.cross_entropy(student_logits, y) + self._dkd_weight * dkd_loss(
                student_logits, teacher_logits, y, alpha=self.dkd_alpha, beta=self.dkd_beta, temperature=T)
        return self.loss(student_logits, teacher_logits, y, T)

    def _feature_loss(self) -> torch.Tensor:
        """``hint_weight * sum`` of the feature losses; with ``hint_weight=None`` each
        FitNets term is divided by its number of teacher feature values per example."""
        total = 0.0
        for i, (s_name, t_name) in enumerate(self.hints):
            s, t = self._features[("student", s_name)], self._features[("teacher", t_name)]
            if self.hint_kind == "hint":
                term = hint_loss(s, t, self.regressors[str(i)])
                total = total + (term / t[0].numel() if self.hint_weight is None else term)
            elif self.hint_kind == "attention":
                total = total + attention_transfer_loss(s, t)
            else:
                total = total + rkd_loss(s, t)
        return total if self.hint_weight is None else self.hint_weight * total

    # -- hooks and callbacks ------------------------------------------------

    def _add_hooks(self) -> None:
        self.remove_hooks()

        def keep(key):
            def hook(module, inputs, output):
                self._features[key] = output
            return hook

        for s_name, t_name in self.hints:
            self._hooks.append(_module(self.student, s_name, "student").register_forward_hook(keep(("student", s_name))))
            self._hooks.append(_module(self.teachers[0], t_name, "teacher").register_forward_hook(keep(("teacher", t_name))))

    def remove_hooks(self) -> None:
        """Remove the feature hooks (done automatically at the end of training)."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._features.clear()

    def on_train_start(self, state: TrainState) -> None:
        self._teacher_modes = [t.training for t in self.teachers]
        for t in self.teachers:
            t.to(state.device).eval()
        self.regressors.to(state.device)
        if self._cache is not None:
            self._cache.to(state.device)
        self._add_hooks()

    def on_epoch_start(self, state: TrainState) -> None:
        self.temperature = _temperature(self.schedule(state.epoch), f"temperature at epoch {state.epoch}")
        if self.dkd_warmup:
            self._dkd_weight = min(1.0, (state.epoch + 1) / self.dkd_warmup)
        if self._cache is not None:
            # each example's targets at this epoch's T, built once (again only when T changes)
            self._cache.refresh(self.temperature, self._targets)

    def on_train_end(self, state: TrainState) -> None:
        self.remove_hooks()
        for t, mode in zip(self.teachers, getattr(self, "_teacher_modes", [])):
            t.train(mode)

    # -- training -----------------------------------------------------------

    def _prepare_regressors(self, x: torch.Tensor) -> None:
        """Build the FitNets regressors from one probe batch, before the optimizer exists."""
        if not self.hints or self.hint_kind != "hint" or len(self.regressors):
            return
        self._add_hooks()
        was_training = self.student.training
        try:
            device = next(self.student.parameters()).device
            with torch.no_grad():
                self.student.eval()
                self.student(x.to(device))
                for t in self.teachers:
                    t.to(device).eval()
                    t(x.to(device))
            for i, (s_name, t_name) in enumerate(self.hints):
                self.regressors[str(i)] = make_regressor(self._features[("student", s_name)],
                                                         self._features[("teacher", t_name)]).to(device)
        finally:
            self.student.train(was_training)
            self.remove_hooks()

    def _check_student(self, x: torch.Tensor, teacher_classes: int) -> None:
        """One example through the student (eval mode, no gradient): it must give as many
        classes as the teachers, or the losses cannot compare them."""
        was_training = self.student.training
        device = next((p.device for p in self.student.parameters()), torch.device("cpu"))
        try:
            self.student.eval()
            with torch.no_grad():
                classes = self.student(x[:1].to(device)).shape[-1]
        finally:
            self.student.train(was_training)
        _same_classes(classes, teacher_classes)

    def fit(self, data, *, epochs: int, callbacks=(), **fit_kwargs):
        """Distil into the student with :func:`kdlab.train.fit` and return its History.

        ``data``: a DataLoader, an ``(x, y)`` tuple or a Split (its training part);
        with ``cache_teacher=True`` it must be in-memory tensors. ``callbacks`` run
        after the Distiller's own; ``fit_kwargs`` go to :func:`kdlab.train.fit`
        (``lr``, ``optimizer``, ``batch_size``, ``seed``, ``eval_data``, ...).
        """
        for key in ("objective", "loss_fn"):
            if key in fit_kwargs:
                raise ValueError(f"{key} is set by the Distiller; do not pass it to Distiller.fit")
        epochs = _validate.positive_int("epochs", epochs)
        if isinstance(data, Split):
            data = data.train
        batch_size, seed = fit_kwargs.get("batch_size", 64), fit_kwargs.get("seed", 0)
        in_memory = (isinstance(data, (tuple, list)) and len(data) == 2
                     and all(isinstance(t, torch.Tensor) for t in data))
        self._partly_labelled = not in_memory or bool((data[1] == UNLABELLED).any())
        if self.cache_teacher:
            if not in_memory:
                raise ValueError(f"cache_teacher=True needs in-memory data, an (x, y) tuple of tensors or a "
                                 f"Split, so each example's teacher logits can be looked up by index; got "
                                 f"{type(data).__name__}. Pass the tensors or use cache_teacher=False")
            x, y = data
            loader = indexed_loader(x, y, batch_size=batch_size, seed=seed)
            cache = TeacherCache(self.teachers, x, y)
            if len(x):
                self._check_student(x, cache.logits.shape[-1])
            self._cache, self._batch_size = cache, batch_size
        else:
            loader = as_loader(data, batch_size=batch_size, seed=seed)
        try:  # whatever happens, the Distiller leaves with its hooks removed and no cache
            self._prepare_regressors(next(iter(loader))[0])
            optimizer = fit_kwargs.pop("optimizer", "adam")
            if len(self.regressors) and not isinstance(optimizer, torch.optim.Optimizer):
                optimizer = make_optimizer(self.student, optimizer, fit_kwargs.pop("lr", 1e-3),
                                           fit_kwargs.pop("weight_decay", 0.0))
            if len(self.regressors):
                optimizer.add_param_group({"params": list(self.regressors.parameters())})
            return fit(self.student, loader, epochs=epochs, objective=self.objective,
                       callbacks=[self, *callbacks], optimizer=optimizer, **fit_kwargs)
        finally:
            self.remove_hooks()
            self._cache = self._kd_weights = None
