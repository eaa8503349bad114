"""Does distillation help? KD against the same student trained on its labels alone.

A fair comparison gives both arms the same initial weights (the same seed) and the
same number of optimizer steps: a student on 90 labelled images takes 2 steps per
epoch, a distilled student on all 898 training images 15, so the student alone
trains for :func:`kdlab.train.equal_step_epochs` epochs. :func:`compare_with_alone`
runs both arms over several seeds and returns the paired differences.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kdlab import _validate
from kdlab.distill.distiller import Distiller
from kdlab.distill.targets import DEFAULT_TEMPERATURE

_FIT_KEYS_REFUSED = ("objective", "loss_fn", "epochs", "seed")


@dataclass
class Comparison:
    """Per seed: the test accuracies of the student alone and distilled, the epochs of the
    student alone, and the optimizer steps each arm took (the same up to one epoch of
    the labelled data)."""

    seeds: list
    alone: list
    kd: list
    alone_epochs: list
    alone_steps: list
    kd_steps: list

    @property
    def differences(self) -> list:
        """``kd - alone`` per seed: positive where distillation helped."""
        return [k - a for a, k in zip(self.alone, self.kd)]

    def __str__(self) -> str:
        from kdlab.evaluate import format_mean_std

        row = lambda values, sign="": " ".join(f"{v:{sign}.4f}" for v in values)
        return (f"student alone   {row(self.alone)}   {format_mean_std(self.alone)}\n"
                f"student with KD {row(self.kd)}   {format_mean_std(self.kd)}\n"
                f"KD - alone      {row(self.differences, '+')}   {format_mean_std(self.differences)}")

    __repr__ = __str__


def _pair(name: str, data) -> tuple:
    from kdlab.data import Split

    if isinstance(data, Split):
        return data.train
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return tuple(data)
    raise TypeError(f"{name} must be an (x, y) pair of tensors or a Split (its training part), or a function "
                    f"of the seed that returns one; got {type(data).__name__}")


def _per_seed(name: str, data):
    """``seed -> (x, y)``: ``data`` itself when it is a function of the seed, else the
    same pair for every seed (checked now, before any training)."""
    if callable(data) and not isinstance(data, nn.Module):
        return lambda seed: _pair(f"{name}({seed})", data(seed))
    pair = _pair(name, data)
    return lambda seed: pair


def compare_with_alone(make_student, teacher, *, labelled, transfer, test, epochs: int, seeds=(0,),
                       temperature: float = DEFAULT_TEMPERATURE, alpha: float = 0.9,
                       cache_teacher: bool = True, **fit_kwargs) -> Comparison:
    """KD against the same student on the labels alone, at equal optimizer steps.

    For every seed, after ``kdlab.train.seed_everything(seed)`` (so both arms start from
    the same weights):

    - alone: ``make_student()`` trained with cross-entropy on ``labelled`` for
      ``equal_step_epochs(epochs, transfer, labelled)`` epochs, i.e.
      ``round(epochs * ceil(N_transfer / b) / ceil(N_labelled / b))`` for batch size ``b``;
    - distilled: ``make_student()`` trained by :class:`~kdlab.distill.Distiller` on
      ``transfer`` for ``epochs`` epochs, with the loss
      ``alpha * T^2 * KL(q_teacher || q_student) + (1 - alpha) * CE`` (the hard term over
      the labelled examples; :data:`~kdlab.data.UNLABELLED` targets get the soft term only);

    both measured by :func:`kdlab.evaluate.accuracy` on ``test``.

    Args:
        make_student: a function of no arguments that returns a fresh student.
        teacher: one trained ``nn.Module`` or a sequence of them.
        labelled: ``(x, y)`` or a Split: what the student alone learns from; or a
            function of the seed that returns it (a different labelled subset per seed).
        transfer: ``(x, y)`` or a Split: what the distilled student learns from, usually
            the same images and labels plus more images whose targets are UNLABELLED
            (:meth:`kdlab.data.Split.few_labels`); or a function of the seed.
        test: ``(x, y)`` or a Split (its test part).
        epochs: epochs of the distilled student, >= 1.
        seeds: the seeds, one run of each arm per seed.
        temperature, alpha, cache_teacher: as in :class:`~kdlab.distill.Distiller`.
        fit_kwargs: passed to both :func:`kdlab.train.fit` runs (``lr``, ``batch_size``, ...).

    >>> from kdlab import data, models
    >>> split = data.load_digits()
    >>> result = compare_with_alone(
    ...     lambda: models.create("mlp-student"), models.pretrained("mlp-teacher"),
    ...     labelled=split.subset(n_train=90), transfer=(split.x_train, split.few_labels(90)),
    ...     test=split, epochs=2, lr=1e-2)
    >>> result.alone_epochs, result.alone_steps, result.kd_steps
    ([15], [30], [30])
    """
    from kdlab.evaluate import accuracy
    from kdlab.train import equal_step_epochs, fit, seed_everything

    if isinstance(make_student, nn.Module) or not callable(make_student):
        raise TypeError(f"make_student must be a function that returns a fresh student (each arm trains its "
                        f"own), got {type(make_student).__name__}")
    labelled, transfer = _per_seed("labelled", labelled), _per_seed("transfer", transfer)
    epochs = _validate.positive_int("epochs", epochs)
    seeds = _validate.sequence("seeds", seeds, "[0, 1, 2] or range(3)")
    for i, seed in enumerate(seeds):
        _validate.positive_int(f"seeds[{i}]", seed, allow_zero=True)
    if not seeds:
        raise ValueError("seeds must name at least one seed, got an empty sequence")
    for key in _FIT_KEYS_REFUSED:
        if key in fit_kwargs:
            raise ValueError(f"{key} is set by compare_with_alone; do not pass it (extra arguments go to "
                             f"kdlab.train.fit: lr, optimizer, weight_decay, batch_size, ...)")
    Distiller(make_student(), teacher, temperature=temperature, alpha=alpha, cache_teacher=cache_teacher)
    threads = torch.get_num_threads()
    result = Comparison(list(seeds), [], [], [], [], [])
    for seed in seeds:
        labelled_data, transfer_data = labelled(seed), transfer(seed)
        epochs_alone = equal_step_epochs(epochs, transfer_data, labelled_data,
                                         batch_size=fit_kwargs.get("batch_size", 64))
        seed_everything(seed, threads=threads)
        student = make_student()
        result.alone_steps.append(fit(student, labelled_data, epochs=epochs_alone, seed=seed, **fit_kwargs).steps)
        result.alone.append(accuracy(student, test))
        seed_everything(seed, threads=threads)
        student = make_student()
        distiller = Distiller(student, teacher, temperature=temperature, alpha=alpha, cache_teacher=cache_teacher)
        result.kd_steps.append(distiller.fit(transfer_data, epochs=epochs, seed=seed, **fit_kwargs).steps)
        result.kd.append(accuracy(student, test))
        result.alone_epochs.append(epochs_alone)
    return result
