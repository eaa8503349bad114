"""The course notebooks hold clean text: no control characters in any cell or output.

A stray control character is invisible in an editor and corrupts what a learner
reads: ``"\\alpha"`` written through a Python string becomes BEL + "lpha", which
renders as "lpha" in the lesson and on its drill card.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for folder in ("lessons", "solutions", "exercises") for p in (ROOT / folder).glob("*.ipynb"))
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # everything below space except tab and newline


def _texts(cell):
    yield "source", "".join(cell["source"])
    for k, out in enumerate(cell.get("outputs", [])):
        if "text" in out:
            yield f"output {k}", "".join(out["text"])
        for mime, value in out.get("data", {}).items():
            if mime.startswith("text/"):
                yield f"output {k} {mime}", "".join(value)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_control_characters(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for i, cell in enumerate(nb["cells"]):
        for where, text in _texts(cell):
            for m in CONTROL.finditer(text):
                found.append(f"cell {i} {where}: {text[max(0, m.start() - 20):m.end() + 10]!r}")
    assert not found, "control characters:\n" + "\n".join(found)


def test_the_check_sees_a_bell():
    assert CONTROL.search("$(1-\alpha)$") and not CONTROL.search("a\tb\nc")


WIDEST = 150  # characters of monospace output that fit a 1400-px JupyterLab window without wrapping


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.parent.name != "exercises"],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_printed_lines_fit_the_window(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    wide = [f"cell {i}: {len(line)} characters: {line[:60]}..."
            for i, cell in enumerate(nb["cells"]) for where, text in _texts(cell) if where != "source"
            for line in text.splitlines() if len(line) > WIDEST]
    assert not wide, "printed lines wider than the window:\n" + "\n".join(wide)
