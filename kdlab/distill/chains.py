"""Distillation in sequence: teacher-assistant chains and born-again generations.

- :func:`distill_chain`: each model is distilled from the one before it (teacher ->
  assistant -> student; Mirzadeh et al. 2020, "Improved knowledge distillation via
  teacher assistant"), or, with ``ensemble=True``, from all the models before it.
- :func:`born_again`: generation 0 learns from the labels alone; generation ``g`` is a
  fresh model of the same architecture distilled from generation ``g - 1``
  (Furlanello et al. 2018, "Born-again neural networks"), or from the ensemble of
  generations ``0 .. g - 1`` (their BANE, ``ensemble=True``).

Every step trains through :class:`~kdlab.distill.Distiller` (and generation 0 through
:func:`kdlab.train.fit`), each for the same ``epochs`` on the same data, so every model
of a chain takes the same number of optimizer steps.

>>> from kdlab import data, models
>>> split = data.load_digits()
>>> gens = born_again(lambda: models.create("mlp-tiny"), split.train, generations=2, epochs=1,
...                   distiller={"temperature": 4.0, "cache_teacher": True}, progress=False)
>>> [len(g.teachers) for g in gens]
[0, 1]
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from kdlab import _validate
from kdlab.data import Split
from kdlab.distill.targets import teacher_list


@dataclass
class Generation:
    """One trained model of a chain: the ``model``, the ``teachers`` it was distilled
    from (empty when it learned from the labels alone) and its training ``history``."""

    model: nn.Module
    teachers: list = field(default_factory=list)
    history: object = None


def _distiller_options(distiller) -> dict:
    if distiller is None:
        return {}
    if not isinstance(distiller, dict):
        raise TypeError(f"distiller must be a dict of Distiller options (e.g. {{'temperature': 4.0}}), "
                        f"got {type(distiller).__name__}")
    return dict(distiller)


def distill_chain(teacher: nn.Module, students, data, *, epochs: int, ensemble: bool = False,
                  distiller: dict | None = None, **fit_kwargs) -> list:
    """Distil ``students`` in order, each from the model before it (``teacher`` first),
    or with ``ensemble=True`` from every model before it (their logits averaged, the
    Distiller's multi-teacher mode). Returns one :class:`Generation` per student.

    Args:
        teacher: the trained first model.
        students: a non-empty sequence of untrained modules, e.g. ``[assistant, student]``.
        data: what :meth:`Distiller.fit` takes (an ``(x, y)`` tuple, a Split, a loader).
        epochs: epochs of each distillation, >= 1.
        distiller: options of every :class:`Distiller` (``temperature``, ``alpha``,
            ``cache_teacher``, ...).
        fit_kwargs: go to :func:`kdlab.train.fit` (``lr``, ``seed``, ``batch_size``, ...).
    """
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be an nn.Module, got {type(teacher).__name__}")
    students = teacher_list(students, "students")
    epochs = _validate.positive_int("epochs", epochs)
    if not isinstance(ensemble, bool):
        raise TypeError(f"ensemble must be True or False, got {ensemble!r}")
    options = _distiller_options(distiller)
    done, out = [teacher], []
    for student in students:
        out.append(_distil(student, list(done) if ensemble else [done[-1]], data, epochs, options, fit_kwargs))
        done.append(student)
    return out


def born_again(make_model, data, *, generations: int, epochs: int, ensemble: bool = False,
               distiller: dict | None = None, **fit_kwargs) -> list:
    """Born-again networks: ``generations`` models of one architecture, ``make_model()``
    called once per generation (seed the global RNG before, for repeatable weights).
    Generation 0 trains on the labels with :func:`kdlab.train.fit`; each later one is
    distilled from the one before it, or from all before it with ``ensemble=True``.
    Every generation trains ``epochs`` epochs with the same ``fit_kwargs``. Returns the
    :class:`Generation` list, generation 0 first."""
    from kdlab.train import fit

    if not callable(make_model):
        raise TypeError(f"make_model must be a function returning a new model, got {make_model!r}")
    generations = _validate.positive_int("generations", generations)
    epochs = _validate.positive_int("epochs", epochs)
    options = _distiller_options(distiller)
    first = make_model()
    if not isinstance(first, nn.Module):
        raise TypeError(f"make_model() must return an nn.Module, got {type(first).__name__}")
    if not isinstance(ensemble, bool):
        raise TypeError(f"ensemble must be True or False, got {ensemble!r}")
    out = [Generation(first, [], fit(first, data.train if isinstance(data, Split) else data,
                                      epochs=epochs, **fit_kwargs))]
    for _ in range(generations - 1):
        teachers = [g.model for g in out] if ensemble else [out[-1].model]
        out.append(_distil(make_model(), teachers, data, epochs, options, fit_kwargs))
    return out


def _distil(student: nn.Module, teachers: list, data, epochs: int, options: dict, fit_kwargs: dict) -> Generation:
    from kdlab.distill.distiller import Distiller

    history = Distiller(student, teachers, **options).fit(data, epochs=epochs, **fit_kwargs)
    return Generation(student, teachers, history)
