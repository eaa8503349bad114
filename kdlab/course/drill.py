"""An interview drill over the course's own answers.

Every lesson marks three markdown cells with tags: ``interview-question`` (the
question, then its original title), ``interview-answer`` (the 60-second answer)
and ``interview-followups`` (bullets of the form ``- **Question?** Answer.``).
Their Chinese twins, tagged ``interview-answer-zh`` and ``interview-followups-zh``,
follow the English cells and say the same in 简体中文, with the same numbers and
the terms of :func:`kdlab.course.glossary`; the Chinese question of the main card
is the lesson's original title. :func:`load_cards` reads those cells from the
lesson notebooks, so the drill and the lessons cannot drift apart; :class:`Progress`
keeps the learner's record of mastered cards in a local JSON file, one record for
both languages (a card has the same id in each); :func:`drill` is the widget, with
a language switch (``"en"``, ``"zh"`` or ``"both"``).
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
TAGS_ZH = ("interview-answer-zh", "interview-followups-zh")
LANGUAGES = ("en", "zh", "both")
FOLLOWUP = re.compile(r"^\s*[-*]\s+\*\*(?P<q>.+?)\*\*\s*(?P<a>.+)$")


@dataclass(frozen=True)
class Card:
    """One drill card: a lesson's main question or one of its follow-ups."""

    id: str          # "05" for a main question, "05.2" for its second follow-up
    lesson: str      # notebook file name
    question: str
    answer: str      # markdown
    original: str = ""  # the original (Chinese) title, for main questions
    question_zh: str = ""  # the question in Chinese: the original title for a main question
    answer_zh: str = ""    # the answer in Chinese; empty where the lesson has no Chinese twin yet

    def text(self, language: str = "en") -> tuple:
        """``(question, answer)`` in ``"en"`` or ``"zh"``; a card without a Chinese twin
        falls back to English."""
        from kdlab import _validate

        _validate.choice("language", language, LANGUAGES[:2])
        if language == "zh" and self.answer_zh:
            return self.question_zh, self.answer_zh
        return self.question, self.answer


def _heading_stripped(source: str) -> str:
    return re.sub(r"^##[^\n]*\n", "", source.strip()).strip()


def _followups(cell) -> list:
    """``[{"q": question, "a": answer}, ...]``: each bullet with the indented lines that
    continue it (a long question or answer may wrap), read as one line."""
    bullets, current = [], None
    for line in cell.source.splitlines():
        if re.match(r"^ ?[-*]\s", line):
            current = [line.strip()]
            bullets.append(current)
        elif current is not None and line[:1].isspace() and line.strip():
            current.append(line.strip())
        else:
            current = None
    return [{"q": m["q"], "a": m["a"]} for m in (FOLLOWUP.match(" ".join(b)) for b in bullets) if m]


def _tagged(nb, tag: str) -> list:
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def cards_from_notebook(path, *, strict: bool = False) -> list:
    """The cards of one lesson; raises ``ValueError`` naming the lesson and the missing tag.

    Where the Chinese follow-ups are out of step with the English ones (a bullet added in
    English only), the follow-ups have no Chinese side and show in English; ``strict=True``
    raises instead (the course's tests do)."""
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
    answer = _heading_stripped(found["interview-answer"][0].source)
    followups = _followups(found["interview-followups"][0])
    if not followups:
        raise ValueError(f"{path.name}: the cell tagged 'interview-followups' has no bullet of the form "
                         f"'- **Question?** Answer.'")
    # the Chinese twins are optional while a lesson is being translated, but never half there
    zh = {tag: _tagged(nb, tag) for tag in TAGS_ZH}
    if any(zh.values()):
        for tag, cells in zh.items():
            if len(cells) != 1:
                raise ValueError(f"{path.name} must have exactly one markdown cell tagged {tag!r}, found {len(cells)}")
        answer_zh = _heading_stripped(zh["interview-answer-zh"][0].source)
        followups_zh = _followups(zh["interview-followups-zh"][0])
        if len(followups_zh) != len(followups):
            if strict:
                raise ValueError(f"{path.name}: the cell tagged 'interview-followups-zh' has {len(followups_zh)} "
                                 f"follow-ups, the English cell {len(followups)}; a card must be the same in both")
            followups_zh = [None] * len(followups)  # out of step with the English: no Chinese side
    else:
        answer_zh, followups_zh = "", [None] * len(followups)
    cards = [Card(number, path.name, question, answer, original, original if answer_zh else "", answer_zh)]
    for i, (m, z) in enumerate(zip(followups, followups_zh), start=1):
        cards.append(Card(f"{number}.{i}", path.name, m["q"].strip(), m["a"].strip(),
                          question_zh=z["q"].strip() if z else "", answer_zh=z["a"].strip() if z else ""))
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


BOXES = 5
"""Leitner boxes: a card in box ``b`` comes back after ``2 ** (b - 1)`` sessions
(1, 2, 4, 8, 16). New cards start in box 1; a card answered right moves up a box,
a card missed goes back to box 1 and returns later in the same session. Box 5 is
"mastered"."""

MODES = ("cards", "interview")


class Progress:
    """The learner's record, saved atomically as JSON: the session count and, per card,
    its Leitner box and the session it is next due.

    A record in the older format (card id -> ``"mastered"`` / ``"again"``) is read as
    box 5 / box 1.
    """

    def __init__(self, path="interview_drill_progress.json"):
        self.path = Path(path).expanduser()
        try:
            data = json.loads(self.path.read_text()) if self.path.exists() else {}
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError):
            # a damaged record is set aside, never silently overwritten
            self.path.replace(self.path.with_suffix(".damaged.json"))
            data = {}
        if "cards" not in data and all(v in ("mastered", "again") for v in data.values()):
            data = {"session": 0, "cards": {k: {"box": BOXES if v == "mastered" else 1, "due": 0}
                                            for k, v in data.items()}}
        self.session = int(data.get("session", 0))
        self.cards = dict(data.get("cards", {}))

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"session": self.session, "cards": self.cards}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def start_session(self) -> int:
        """Count a new practice session (cards fall due by sessions); returns its number."""
        self.session += 1
        self._save()
        return self.session

    def box(self, card_id: str) -> int:
        """The card's Leitner box, 1-5; a card never answered is in box 1."""
        return int(self.cards.get(card_id, {}).get("box", 1))

    def is_due(self, card_id: str) -> bool:
        return int(self.cards.get(card_id, {}).get("due", 0)) <= self.session

    def record(self, card_id: str, correct: bool) -> None:
        """Move the card up one box (``correct``) or back to box 1, and save."""
        if not isinstance(correct, bool):
            raise TypeError(f"correct must be True or False, got {correct!r}")
        box = min(self.box(card_id) + 1, BOXES) if correct else 1
        self.cards[card_id] = {"box": box, "due": self.session + (2 ** (box - 1) if correct else 1)}
        self._save()

    def mark(self, card_id: str, status: str) -> None:
        """``"mastered"`` (answered right) or ``"again"`` (missed): :meth:`record` by name."""
        if status not in ("mastered", "again"):
            raise ValueError(f"status must be 'mastered' or 'again', got {status!r}")
        self.record(card_id, status == "mastered")

    def mastered(self) -> set:
        """Cards in the top box."""
        return {k for k, v in self.cards.items() if v.get("box") == BOXES}


def order(cards: list, progress: Progress, seed=None, *, mode: str = "cards") -> list:
    """The cards due this session.

    ``mode="cards"``: every due card, in random order (``seed`` makes it repeatable).
    ``mode="interview"``: as an interviewer asks, lesson by lesson in random order,
    each lesson's main question first and then its follow-ups, for every lesson
    with a card due.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rng = random.Random(seed)
    if mode == "cards":
        todo = [c for c in cards if progress.is_due(c.id)]
        rng.shuffle(todo)
        return todo
    lessons = {}
    for card in cards:
        lessons.setdefault(card.lesson, []).append(card)
    due = [name for name, group in lessons.items() if any(progress.is_due(c.id) for c in group)]
    rng.shuffle(due)
    return [card for name in due for card in sorted(lessons[name], key=lambda c: (c.id.count("."), c.id))]


class Session:
    """One practice session: the due cards in a queue; a missed card goes back into
    the queue ``again_after`` cards later, so it returns before the session ends."""

    def __init__(self, cards: list, progress: Progress, *, mode: str = "cards", seed=None,
                 again_after: int = 3):
        if not isinstance(again_after, int) or again_after < 1:
            raise ValueError(f"again_after must be a positive integer, got {again_after!r}")
        self.progress, self.total = progress, len(cards)
        self.ids = {c.id for c in cards}
        progress.start_session()
        self.queue = order(cards, progress, seed, mode=mode)
        self.again_after, self.answered = again_after, 0

    @property
    def current(self):
        return self.queue[0] if self.queue else None

    @property
    def left(self) -> int:
        """Cards still to answer in this session (a missed card counts again)."""
        return len(self.queue)

    def answer(self, correct: bool) -> None:
        card = self.queue.pop(0)
        self.progress.record(card.id, correct)
        self.answered += 1
        if not correct:
            self.queue.insert(min(self.again_after, len(self.queue)), card)

    def status(self) -> str:
        mastered = len(self.progress.mastered() & self.ids)
        if self.current is None:
            return (f"Session done: {self.answered} answers, nothing left for today. "
                    f"{mastered}/{self.total} cards mastered (box {BOXES}).")
        return (f"{self.left} left in this session · lesson {self.current.lesson} · "
                f"box {self.progress.box(self.current.id)}/{BOXES} · {mastered}/{self.total} mastered")


TITLES = {"en": "# Interview drill: every question and its answer", "zh": "# 面试练习：全部问题与回答",
          "both": "# Interview drill: every question and its answer · 面试练习：全部问题与回答"}


def _languages(card: Card, language: str) -> tuple:
    """The languages ``card`` is shown in: both for ``"both"`` when it has a Chinese side."""
    if language == "both":
        return ("en", "zh") if card.answer_zh else ("en",)
    return (language,)


def _card_markdown(card: Card, language: str) -> list:
    """The lines of one card; ``"both"`` gives the English text, then the Chinese."""
    languages = _languages(card, language)
    out = []
    for lang in languages:
        question, answer = card.text(lang)
        if "." not in card.id:
            subtitle = card.original if lang == "en" and language != "both" else ""
            out += [f"## {question}" + (f"  \n*{subtitle}*" if subtitle else "") if lang == languages[0]
                    else f"### {question}", "", answer, ""]
        else:
            out += [f"**{question}** {answer}", ""]
    return out


def to_markdown(cards: list | None = None, *, language: str = "en") -> str:
    """Every card as one markdown document, lesson by lesson, for print or offline study,
    in ``language``: ``"en"``, ``"zh"`` or ``"both"`` (each card in English, then in Chinese)."""
    from kdlab import _validate

    _validate.choice("language", language, LANGUAGES)
    cards = load_cards() if cards is None else cards
    out = [TITLES[language], ""]
    for card in cards:
        out += _card_markdown(card, language)
    return "\n".join(out).rstrip() + "\n"


def export(path="interview_cards.md", cards: list | None = None, *, language: str = "en") -> Path:
    """Write :func:`to_markdown` in ``language`` to ``path`` (atomically) and return the path."""
    path = Path(path).expanduser()
    text = to_markdown(cards, language=language)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _view(card: Card, language: str, reveal: bool) -> list:
    """What the widget shows of ``card``: the question (both versions for ``"both"``), then
    the answer(s) once revealed; each item is one markdown block."""
    languages = _languages(card, language)
    questions, answers = [], []
    for lang in languages:
        question, answer = card.text(lang)
        questions.append(f"### {question}")
        answers.append(answer)
    if language == "en" and card.original:
        questions[0] += f"\n\n*{card.original}*"
    return questions + (answers if reveal else [])


BUTTONS = {"en": ("Show answer", "Got it ✓", "Again"), "zh": ("显示答案", "记住了 ✓", "再来一次"),
           "both": ("Show answer · 显示答案", "Got it ✓ · 记住了", "Again · 再来一次")}


def drill(cards: list | None = None, *, progress_path="interview_drill_progress.json", seed=None,
          mode: str = "cards", language: str = "en"):
    """The drill widget: a question, "Show answer", then "Got it" or "Again".

    Each call is one session of :class:`Session` over the cards due (``mode`` as in
    :func:`order`); "Again" brings the card back three cards later. ``language`` is the
    one shown first: ``"en"``, ``"zh"`` (简体中文) or ``"both"``; the toggle under the
    buttons switches it at any time, in every mode, and the record is the same in each.
    """
    import ipywidgets as w
    from IPython.display import Markdown, display

    from kdlab import _validate
    from kdlab.course.widgets import with_text

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _validate.choice("language", language, LANGUAGES)
    cards = load_cards() if cards is None else cards
    session = Session(cards, Progress(progress_path), mode=mode, seed=seed)
    header, body = w.HTML(), w.Output()
    show, got, again = w.Button(), w.Button(), w.Button()
    switch = w.ToggleButtons(options=[("English", "en"), ("中文", "zh"), ("both · 双语", "both")],
                             value=language, description="Language")
    revealed = {"now": False}

    def render(reveal: bool = False):
        revealed["now"] = reveal
        lang = switch.value
        show.description, got.description, again.description = BUTTONS[lang]
        body.clear_output()
        header.value = f"<b>{session.status()}</b>"
        card = session.current
        if card is None:
            for b in (show, got, again):
                b.disabled = True
            return
        with body:
            for text in _view(card, lang, reveal):
                display(Markdown(text))
        show.disabled, got.disabled, again.disabled = reveal, not reveal, not reveal

    def answer(correct):
        session.answer(correct)
        render()

    show.on_click(lambda _: render(reveal=True))
    got.on_click(lambda _: answer(True))
    again.on_click(lambda _: answer(False))
    switch.observe(lambda _: render(reveal=revealed["now"]), names="value")
    render()
    return with_text(w.VBox([header, body, w.HBox([show, got, again]), switch]),
                     "The interview drill: run this cell in JupyterLab to practise.")
