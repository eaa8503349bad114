"""An interview drill over the course's own answers.

Every lesson marks three markdown cells with tags: ``interview-question`` (the
question, then its original title), ``interview-answer`` (the 60-second answer)
and ``interview-followups`` (bullets of the form ``- **Question?** Answer.``).
:func:`load_cards` reads those cells from the lesson notebooks, so the drill and
the lessons cannot drift apart; :class:`Progress` keeps the learner's record of
mastered cards in a local JSON file; :func:`drill` is the widget.
"""
from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

TAGS = ("interview-question", "interview-answer", "interview-followups")
FOLLOWUP = re.compile(r"^\s*[-*]\s+\*\*(?P<q>.+?)\*\*\s*(?P<a>.+)$")


@dataclass(frozen=True)
class Card:
    """One drill card: a lesson's main question or one of its follow-ups."""

    id: str          # "05" for a main question, "05.2" for its second follow-up
    lesson: str      # notebook file name
    question: str
    answer: str      # markdown
    original: str = ""  # the original (Chinese) title, for main questions


def _tagged(nb, tag: str) -> list:
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def cards_from_notebook(path) -> list:
    """The cards of one lesson; raises ``ValueError`` naming the lesson and the missing tag."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    found = {tag: _tagged(nb, tag) for tag in TAGS}
    for tag, cells in found.items():
        if len(cells) != 1:
            raise ValueError(f"{path.name} must have exactly one markdown cell tagged {tag!r}, found {len(cells)}")
    lines = [l.strip() for l in found["interview-question"][0].source.strip().splitlines() if l.strip()]
    number = path.name[:2]
    question = re.sub(r"^#+\s*(\d+\s*[·.:-]\s*)?", "", lines[0]).strip()
    original = lines[1].lstrip("#* ").rstrip("*") if len(lines) > 1 else ""
    answer = re.sub(r"^##[^\n]*\n", "", found["interview-answer"][0].source.strip()).strip()
    cards = [Card(number, path.name, question, answer, original)]
    followups = [FOLLOWUP.match(l) for l in found["interview-followups"][0].source.splitlines()]
    for i, m in enumerate((m for m in followups if m), start=1):
        cards.append(Card(f"{number}.{i}", path.name, m["q"].strip(), m["a"].strip()))
    if len(cards) == 1:
        raise ValueError(f"{path.name}: the cell tagged 'interview-followups' has no bullet of the form "
                         f"'- **Question?** Answer.'")
    return cards


def load_cards(lessons_dir=None) -> list:
    """Cards of every numbered lesson 01-20 in ``lessons_dir`` (default: the installed course)."""
    if lessons_dir is None:
        from kdlab import course

        lessons_dir = course.folder("lessons")
    cards = []
    for path in sorted(Path(lessons_dir).glob("[0-9][0-9]_*.ipynb")):
        if "01" <= path.name[:2] <= "20" and path.stem.count(".") == 0:
            cards.extend(cards_from_notebook(path))
    return cards


class Progress:
    """The learner's record: card id -> ``"mastered"`` or ``"again"``, saved atomically as JSON."""

    def __init__(self, path="interview_drill_progress.json"):
        self.path = Path(path).expanduser()
        try:
            self.marks = json.loads(self.path.read_text()) if self.path.exists() else {}
        except (OSError, json.JSONDecodeError):
            # a damaged record is set aside, never silently overwritten
            self.path.replace(self.path.with_suffix(".damaged.json"))
            self.marks = {}

    def mark(self, card_id: str, status: str) -> None:
        if status not in ("mastered", "again"):
            raise ValueError(f"status must be 'mastered' or 'again', got {status!r}")
        self.marks[card_id] = status
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.marks, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def mastered(self) -> set:
        return {k for k, v in self.marks.items() if v == "mastered"}


def order(cards: list, progress: Progress, seed=None) -> list:
    """Cards not yet mastered, in random order (``seed`` makes it repeatable)."""
    todo = [c for c in cards if c.id not in progress.mastered()]
    random.Random(seed).shuffle(todo)
    return todo


def drill(cards: list | None = None, *, progress_path="interview_drill_progress.json", seed=None):
    """The drill widget: a question, "Show answer", then "Mastered" or "Again"."""
    import ipywidgets as w
    from IPython.display import Markdown, display

    cards = load_cards() if cards is None else cards
    progress = Progress(progress_path)
    queue = order(cards, progress, seed)
    state = {"i": 0}
    header, body = w.HTML(), w.Output()
    show, mastered, again = w.Button(description="Show answer"), w.Button(description="Mastered ✓"), \
        w.Button(description="Again")

    def render(reveal: bool = False):
        body.clear_output()
        done = len(progress.mastered() & {c.id for c in cards})
        if state["i"] >= len(queue):
            header.value = f"<b>All {len(cards)} cards mastered or seen. {done} mastered.</b>"
            for b in (show, mastered, again):
                b.disabled = True
            return
        card = queue[state["i"]]
        header.value = (f"<b>Card {state['i'] + 1} of {len(queue)}</b> · lesson {card.lesson} · "
                        f"{done}/{len(cards)} mastered")
        with body:
            display(Markdown(f"### {card.question}" + (f"\n\n*{card.original}*" if card.original else "")))
            if reveal:
                display(Markdown(card.answer))
        show.disabled, mastered.disabled, again.disabled = reveal, not reveal, not reveal

    def answer(status):
        progress.mark(queue[state["i"]].id, status)
        state["i"] += 1
        render()

    show.on_click(lambda _: render(reveal=True))
    mastered.on_click(lambda _: answer("mastered"))
    again.on_click(lambda _: answer("again"))
    render()
    return w.VBox([header, body, w.HBox([show, mastered, again])])
