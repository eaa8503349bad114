"""Build a notebook from a percent-format script (the authoring shorthand).

    python scripts/py2nb.py draft.py lessons/NN_slug.ipynb

Cells start with ``# %%`` (code) or ``# %% [markdown]`` (markdown, each line
prefixed with ``# ``). Options after the marker: ``tags=a,b`` sets cell tags,
``nbgrader=ID:POINTS`` marks a graded answer cell, ``nbgrader-tests=ID:POINTS``
a graded test cell. The notebook is the source of truth once written; run
``scripts/execute_notebooks.py`` on it to store outputs.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?(?P<opts>.*)$")


def _cell(kind: str, lines: list[str], opts: str):
    text = "\n".join(lines).strip("\n")
    if kind == "markdown":
        text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.splitlines())
        cell = nbformat.v4.new_markdown_cell(text)
    else:
        cell = nbformat.v4.new_code_cell(text)
    for opt in opts.split():
        key, _, value = opt.partition("=")
        if key == "tags":
            cell.metadata["tags"] = value.split(",")
        elif key in ("nbgrader", "nbgrader-tests"):
            grade_id, _, points = value.partition(":")
            solution = key == "nbgrader"
            cell.metadata["nbgrader"] = {
                "grade": not solution, "grade_id": grade_id, "locked": not solution,
                "points": float(points or 0), "schema_version": 3, "solution": solution,
            }
            if solution:
                cell.metadata["nbgrader"]["grade"] = False
                cell.metadata["nbgrader"].pop("points")
    return cell


def convert(source: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    kind, opts, lines = None, "", []
    for line in source.splitlines():
        m = MARKER.match(line)
        if m:
            if kind is not None:
                nb.cells.append(_cell(kind, lines, opts))
            kind, opts, lines = ("markdown" if m["md"] else "code"), m["opts"], []
        elif kind is not None:
            lines.append(line)
    if kind is not None:
        nb.cells.append(_cell(kind, lines, opts))
    return nb


if __name__ == "__main__":
    src, out = sys.argv[1:3]
    nbformat.write(convert(Path(src).read_text()), out)
