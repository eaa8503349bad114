"""The course, apart from the library: its notebooks and the tools around them.

- :mod:`kdlab.course.lab`      ``kdlab lab``: a personal working copy of the course,
  opened in JupyterLab (the ``kdlab`` command itself is :mod:`kdlab.cli`);
- :mod:`kdlab.course.drill`    the interview drill over the lessons' own answers;
- :mod:`kdlab.course.widgets`  the lessons' sliders and explorers (ipywidgets);
- :func:`folder` and :func:`notebooks`: the installed notebooks;
- :func:`glossary` and :func:`glossary_table`: the course's English ↔ 简体中文 terms
  (``glossary.json``), which the Chinese interview answers and the drill use.
  ``kdlab.course.lessons`` and ``kdlab.course.exercises`` are the repository's
  ``lessons/`` and ``exercises/`` folders, mapped into the package at build time,
  so ``pip install kdlab`` brings the course without a clone.

The exercises' self-checks and the grader are :mod:`kdlab.grading`.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Term:
    """One glossary entry: the English term, the Chinese term the course writes, the
    accepted alternatives (Chinese usage varies), variants the course avoids, a note, and
    ``match``, a regular expression for the English uses the entry covers (default: the
    term, plural allowed; e.g. ``filters?(?! the)`` leaves out the verb "filter the ...")."""

    en: str
    zh: str
    alternatives: tuple = ()
    avoid: tuple = ()
    note: str = ""
    match: str = ""

    @property
    def spellings(self) -> tuple:
        """Every accepted Chinese spelling, the course's first."""
        return (self.zh,) + self.alternatives

    def pattern(self) -> re.Pattern:
        """Where the English term is used in a text (whole words, case-insensitive)."""
        body = self.match or re.escape(self.en) + "s?"
        return re.compile(rf"(?<![A-Za-z])(?:{body})(?![A-Za-z])", re.IGNORECASE)


def glossary() -> list:
    """The course's glossary, English ↔ 简体中文, as :class:`Term` rows in the file's order."""
    text = resources.files("kdlab.course").joinpath("glossary.json").read_text(encoding="utf-8")
    return [Term(t["en"], t["zh"], tuple(t.get("alternatives", ())), tuple(t.get("avoid", ())),
                 t.get("note", ""), t.get("match", "")) for t in json.loads(text)["terms"]]


def _width(text: str) -> int:
    """Columns ``text`` takes in a monospace font: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def glossary_table(terms: list | None = None) -> str:
    """The glossary as an aligned plain-text table: English, the course's Chinese term,
    the accepted alternatives and the variants it avoids."""
    terms = glossary() if terms is None else terms
    rows = [("English", "中文", "also", "avoid")] + [
        (t.en, t.zh, " / ".join(t.alternatives), " / ".join(t.avoid)) for t in terms]
    widths = [max(_width(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        cells = [cell + " " * (width - _width(cell)) for cell, width in zip(row, widths)] + [row[3]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
