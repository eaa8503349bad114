"""``kdlab build-exercises``: the exercise notebooks, generated from the solutions.

``solutions/NN_slug.ipynb`` is the single source. The exercise version of a
notebook is the solution with

- every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block of a code cell replaced
  by ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` at the indentation
  of the ``BEGIN`` line (``YOUR ANSWER HERE`` in a markdown cell), as nbgrader does;
- every ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` block removed;
- outputs and execution counts cleared, ``nbval-*`` tags dropped, and locked
  cells (nbgrader ``locked``) made non-editable and non-deletable.

Markers must stand alone on their line. Building is deterministic, so
``--check`` can compare the committed exercise notebooks with a fresh build.
"""
from __future__ import annotations

import copy
from pathlib import Path

import nbformat

SOLUTION = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
MARKERS = SOLUTION + HIDDEN


def nbgrader_metadata(grade_id: str, *, points: float | None = None, solution: bool = False,
                      locked: bool = False) -> dict:
    """The ``nbgrader`` cell metadata (schema 3): an answer cell has ``solution=True``;
    a test cell has ``points`` (it is graded) and ``locked=True``."""
    meta = {"grade": points is not None, "grade_id": grade_id, "locked": locked,
            "schema_version": 3, "solution": solution}
    if points is not None:
        meta["points"] = points
    return meta


def _strip(source: str, cell_type: str, where: str) -> str:
    """``source`` with solution blocks replaced and hidden tests removed."""
    out, block, indent = [], None, ""
    for number, line in enumerate(source.splitlines(keepends=True), 1):
        text = line.strip()
        if any(m in line for m in MARKERS) and text not in MARKERS:
            raise ValueError(f"{where}, line {number}: a marker must stand alone on its line: {line.rstrip()!r}")
        if text in (SOLUTION[0], HIDDEN[0]):
            if block:
                raise ValueError(f"{where}, line {number}: {text!r} inside an open {block[0]!r} block")
            block, indent = (SOLUTION if text == SOLUTION[0] else HIDDEN), line[: len(line) - len(line.lstrip())]
            if block is SOLUTION:
                out.append(f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()\n"
                           if cell_type == "code" else "YOUR ANSWER HERE\n")
        elif text in (SOLUTION[1], HIDDEN[1]):
            if not block or text != block[1]:
                raise ValueError(f"{where}, line {number}: {text!r} without its BEGIN marker")
            block = None
        elif block is None:
            out.append(line)
    if block:
        raise ValueError(f"{where}: {block[0]!r} is never closed")
    return "".join(out).rstrip("\n")


def exercise(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The exercise version of the solution notebook ``nb`` (``name`` is used in errors)."""
    nb = copy.deepcopy(nb)
    seen: dict = {}
    for index, cell in enumerate(nb.cells):
        where = f"{name}, cell {index}"
        meta = cell.metadata
        grading = meta.get("nbgrader", {})
        grade_id = grading.get("grade_id")
        if grade_id:
            if grade_id in seen:
                raise ValueError(f"{where}: grade_id {grade_id!r} already used by cell {seen[grade_id]}")
            seen[grade_id] = index
        if SOLUTION[0] in cell.source and not grading.get("solution"):
            raise ValueError(f"{where}: has a solution block but no nbgrader metadata with solution=true")
        cell.source = _strip(cell.source, cell.cell_type, where)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        tags = [t for t in meta.get("tags", []) if not t.startswith("nbval-")]
        if tags:
            meta["tags"] = tags
        else:
            meta.pop("tags", None)
        meta.pop("execution", None)
        if grading.get("locked"):
            meta["editable"], meta["deletable"] = False, False
    nb.metadata.pop("widgets", None)
    return nb


def grade_ids(paths) -> dict:
    """``{grade_id: path}`` over the notebooks ``paths``; a ValueError names a
    ``grade_id`` used twice in the course."""
    found: dict = {}
    for path in paths:
        for cell in nbformat.read(path, as_version=4).cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id is None:
                continue
            if grade_id in found:
                raise ValueError(f"grade_id {grade_id!r} is used in {found[grade_id]} and {path}")
            found[grade_id] = path
    return found


def _text(nb) -> str:
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def build(solutions="solutions", exercises="exercises", *, check: bool = False) -> list:
    """Write ``exercises/X.ipynb`` for every ``solutions/X.ipynb``; return the paths
    written (or, with ``check=True``, the paths that are stale or have no solution,
    writing nothing)."""
    solutions, exercises = Path(solutions), Path(exercises)
    if not solutions.is_dir():
        raise ValueError(f"solutions must be a folder of notebooks, got {str(solutions)!r}")
    sources = sorted(solutions.glob("*.ipynb"))
    grade_ids(sources)
    changed = []
    for source in sources:
        target = exercises / source.name
        text = _text(exercise(nbformat.read(source, as_version=4), str(source)))
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        changed.append(target)
        if not check:
            exercises.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".ipynb.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)
    names = {s.name for s in sources}
    orphans = [p for p in sorted(exercises.glob("*.ipynb")) if p.name not in names]
    return changed + (orphans if check else [])
