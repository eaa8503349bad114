"""The course, apart from the library: its notebooks and the tools around them.

- :mod:`kdlab.course.lab`      ``kdlab lab``: a personal working copy of the course,
  opened in JupyterLab (the ``kdlab`` command itself is :mod:`kdlab.cli`);
- :mod:`kdlab.course.drill`    the interview drill over the lessons' own answers;
- :mod:`kdlab.course.widgets`  the lessons' sliders and explorers (ipywidgets);
- :func:`folder` and :func:`notebooks`: the installed notebooks.
  ``kdlab.course.lessons`` and ``kdlab.course.exercises`` are the repository's
  ``lessons/`` and ``exercises/`` folders, mapped into the package at build time,
  so ``pip install kdlab`` brings the course without a clone.

The exercises' self-checks and the grader are :mod:`kdlab.grading`.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

FOLDERS = ("lessons", "exercises")


def folder(name: str) -> Path:
    """The installed folder of ``name`` (``"lessons"`` or ``"exercises"``)."""
    from kdlab import _validate

    _validate.choice("name", name, FOLDERS)
    try:
        return Path(str(resources.files(f"kdlab.course.{name}")))
    except ModuleNotFoundError:
        # an editable install of a clone: the folders sit beside the package
        return Path(__file__).resolve().parents[2] / name


def notebooks(name: str) -> list:
    """The notebooks of ``name``, sorted; drafts such as ``*.updated.ipynb`` excluded."""
    return sorted(p for p in folder(name).glob("*.ipynb") if p.stem.count(".") == 0)
