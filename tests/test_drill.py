import json
from pathlib import Path

import nbformat
import pytest

from kdlab.course import drill

LESSONS = Path(__file__).resolve().parents[1] / "lessons"


def _lesson(tmp_path, name="05_x.ipynb", followups="- **Why?** Because.\n- **How?** Like so.", drop=None):
    nb = nbformat.v4.new_notebook()
    cells = {
        "interview-question": "# 05 · How do KD and pruning differ?\n知识蒸馏和模型剪枝的区别是什么？",
        "interview-answer": "## The 60-second answer\nThey differ.",
        "interview-followups": "## Follow-up questions\n" + followups,
    }
    for tag, text in cells.items():
        if tag != drop:
            cell = nbformat.v4.new_markdown_cell(text)
            cell.metadata["tags"] = [tag]
            nb.cells.append(cell)
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_cards_come_from_tagged_cells(tmp_path):
    cards = drill.cards_from_notebook(_lesson(tmp_path))
    assert [c.id for c in cards] == ["05", "05.1", "05.2"]
    assert cards[0].question == "How do KD and pruning differ?"
    assert cards[0].original == "知识蒸馏和模型剪枝的区别是什么？"
    assert cards[0].answer == "They differ."
    assert (cards[2].question, cards[2].answer) == ("How?", "Like so.")


@pytest.mark.parametrize("kwargs, match", [
    ({"drop": "interview-answer"}, "exactly one markdown cell tagged 'interview-answer', found 0"),
    ({"followups": "just prose"}, "no bullet of the form"),
])
def test_malformed_lessons_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        drill.cards_from_notebook(_lesson(tmp_path, **kwargs))


def test_every_lesson_has_an_answer_the_drill_finds():
    cards = drill.load_cards(LESSONS)
    main = {c.id: c for c in cards if "." not in c.id}
    assert sorted(main) == [f"{n:02d}" for n in range(1, 21)]
    for number, card in main.items():
        assert len(card.answer) > 200, f"lesson {number}: the 60-second answer is missing or too short"
        assert card.original, f"lesson {number}: the original title is missing"
        assert any(c.id.startswith(number + ".") for c in cards), f"lesson {number} has no follow-up"


def test_leitner_boxes_space_the_cards_out(tmp_path):
    record = tmp_path / "progress.json"
    progress = drill.Progress(record)
    progress.start_session()  # session 1
    assert progress.box("05") == 1 and progress.is_due("05")  # new cards start in box 1
    progress.record("05", True)
    assert progress.box("05") == 2 and not progress.is_due("05")
    again = drill.Progress(record)
    assert again.box("05") == 2 and again.session == 1
    again.start_session()  # session 2: box 2 waits two sessions, due at session 3
    assert not again.is_due("05")
    again.start_session()
    assert again.is_due("05")
    again.record("05", False)
    assert again.box("05") == 1
    for _ in range(6):
        again.record("05.1", True)
    assert again.box("05.1") == drill.BOXES and again.mastered() == {"05.1"}
    with pytest.raises(ValueError, match="status must be 'mastered' or 'again'"):
        again.mark("05", "done")
    with pytest.raises(TypeError, match="correct must be True or False"):
        again.record("05", 1)


def test_the_older_record_format_still_reads(tmp_path):
    record = tmp_path / "progress.json"
    record.write_text(json.dumps({"05": "again", "05.1": "mastered"}))
    progress = drill.Progress(record)
    assert (progress.box("05"), progress.box("05.1")) == (1, drill.BOXES)
    assert progress.mastered() == {"05.1"}


def test_a_missed_card_returns_in_the_same_session(tmp_path):
    cards = drill.cards_from_notebook(_lesson(tmp_path))
    session = drill.Session(cards, drill.Progress(tmp_path / "p.json"), seed=0, again_after=1)
    assert session.left == 3
    first = session.current
    session.answer(False)
    assert session.left == 3 and session.queue[1] is first
    while session.current is not None:
        session.answer(True)
    assert session.answered == 4
    assert "nothing left for today" in session.status()
    # the next session asks only what is due: box 2 cards wait two sessions
    assert drill.Session(cards, drill.Progress(tmp_path / "p.json")).left == 0


def test_interview_mode_asks_the_main_question_then_its_followups(tmp_path):
    cards = drill.cards_from_notebook(_lesson(tmp_path)) + drill.cards_from_notebook(
        _lesson(tmp_path, name="07_y.ipynb"))
    cards = [drill.Card(c.id if c.lesson.startswith("05") else c.id.replace("05", "07"), c.lesson,
                        c.question, c.answer, c.original) for c in cards]
    queue = drill.order(cards, drill.Progress(tmp_path / "p.json"), seed=3, mode="interview")
    ids = [c.id for c in queue]
    assert sorted(ids[:3]) == ids[:3] and sorted(ids[3:]) == ids[3:]
    assert {ids[0], ids[3]} == {"05", "07"}
    with pytest.raises(ValueError, match="mode must be one of"):
        drill.order(cards, drill.Progress(tmp_path / "p.json"), mode="exam")


def test_export_writes_every_card_as_markdown(tmp_path):
    cards = drill.load_cards(LESSONS)
    path = drill.export(tmp_path / "cards.md", cards)
    text = path.read_text(encoding="utf-8")
    for card in cards:
        assert card.question in text
    assert text.count("\n## ") == 20


def test_damaged_record_is_set_aside(tmp_path):
    record = tmp_path / "progress.json"
    record.write_text("{not json")
    assert drill.Progress(record).cards == {}
    assert (tmp_path / "progress.damaged.json").read_text() == "{not json"


def test_widget_records_answers_and_counts_down(tmp_path):
    cards = drill.cards_from_notebook(_lesson(tmp_path))
    record = tmp_path / "p.json"
    box = drill.drill(cards, progress_path=record, seed=1)
    header = box.children[0]
    show, got, again = box.children[2].children
    assert got.disabled and "3 left in this session" in header.value
    show.click()
    got.click()
    assert "2 left in this session" in header.value
    show.click()
    again.click()
    assert "2 left in this session" in header.value  # the missed card comes back
    boxes = sorted(c["box"] for c in json.loads(record.read_text())["cards"].values())
    assert boxes == [1, 2]
    assert box._repr_mimebundle_()["text/plain"].startswith("The interview drill: run this cell")


def _with_twins(path, answer="## 60 秒回答\n它们不同。", followups="## 追问\n- **为什么？** 因为。\n- **怎么做？** 这样做。"):
    nb = nbformat.read(path, as_version=4)
    for tag, text in (("interview-answer", answer), ("interview-followups", followups)):
        if text is None:
            continue
        at = next(i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", []))
        cell = nbformat.v4.new_markdown_cell(text)
        cell.metadata["tags"] = [tag + "-zh"]
        nb.cells.insert(at + 1, cell)
    nbformat.write(nb, path)
    return path


def test_chinese_twins_give_each_card_its_chinese_side(tmp_path):
    cards = drill.cards_from_notebook(_with_twins(_lesson(tmp_path)))
    assert [c.id for c in cards] == ["05", "05.1", "05.2"]  # one id per card, whatever the language
    assert cards[0].text("zh") == ("知识蒸馏和模型剪枝的区别是什么？", "它们不同。")
    assert cards[2].text("zh") == ("怎么做？", "这样做。")
    assert cards[2].text("en") == ("How?", "Like so.")
    with pytest.raises(ValueError, match="language must be one of 'en', 'zh'; got 'fr'"):
        cards[0].text("fr")


def test_a_lesson_without_twins_falls_back_to_english(tmp_path):
    card = drill.cards_from_notebook(_lesson(tmp_path))[1]
    assert card.answer_zh == "" and card.text("zh") == ("Why?", "Because.")


@pytest.mark.parametrize("twins, match", [
    ({"followups": "## 追问\n- **为什么？** 因为。"}, "has 1 follow-ups, the English cell 2"),
    ({"followups": None}, "exactly one markdown cell tagged 'interview-followups-zh', found 0"),
])
def test_twins_that_do_not_match_are_named(tmp_path, twins, match):
    with pytest.raises(ValueError, match=match):
        drill.cards_from_notebook(_with_twins(_lesson(tmp_path), **twins), strict=True)


def test_followups_out_of_step_show_in_english_outside_strict_mode(tmp_path):
    cards = drill.cards_from_notebook(_with_twins(_lesson(tmp_path), followups="## 追问\n- **为什么？** 因为。"))
    assert cards[0].answer_zh == "它们不同。"
    assert [c.text("zh") for c in cards[1:]] == [("Why?", "Because."), ("How?", "Like so.")]


def test_a_followup_answer_may_run_over_indented_lines(tmp_path):
    cards = drill.cards_from_notebook(_lesson(tmp_path, followups="- **Why?** Because\n  it is.\n\nProse.\n- **How?** So.\n"
                                                                "- **Why does a long question\n  wrap?** It is long."))
    assert [(c.question, c.answer) for c in cards[1:]] == [("Why?", "Because it is."), ("How?", "So."),
                                                            ("Why does a long question wrap?", "It is long.")]


@pytest.mark.parametrize("language, present, absent", [
    ("en", ["How do KD and pruning differ?", "*知识蒸馏和模型剪枝的区别是什么？*", "**How?** Like so."], ["它们不同。"]),
    ("zh", ["# 面试练习", "## 知识蒸馏和模型剪枝的区别是什么？", "它们不同。", "**怎么做？** 这样做。"], ["They differ."]),
    ("both", ["They differ.", "它们不同。", "**How?** Like so.", "**怎么做？** 这样做。"], []),
])
def test_markdown_in_each_language(tmp_path, language, present, absent):
    cards = drill.cards_from_notebook(_with_twins(_lesson(tmp_path)))
    text = drill.export(tmp_path / "cards.md", cards, language=language).read_text(encoding="utf-8")
    assert text.count("\n## ") == 1
    for s in present:
        assert s in text, s
    for s in absent:
        assert s not in text, s


def test_the_language_is_checked_everywhere(tmp_path):
    cards = drill.cards_from_notebook(_lesson(tmp_path))
    for call in (lambda: drill.to_markdown(cards, language="cn"),
                 lambda: drill.drill(cards, progress_path=tmp_path / "p.json", language="cn")):
        with pytest.raises(ValueError, match="language must be one of 'en', 'zh', 'both'; got 'cn'"):
            call()


@pytest.mark.parametrize("mode", drill.MODES)
def test_the_widget_switches_language_in_every_mode_and_keeps_one_record(tmp_path, monkeypatch, mode):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj.data))
    cards = drill.cards_from_notebook(_with_twins(_lesson(tmp_path)))
    record = tmp_path / "p.json"
    box = drill.drill(cards, progress_path=record, seed=1, mode=mode, language="zh")
    show, got, again = box.children[2].children
    switch = box.children[3]
    assert switch.value == "zh" and show.description == "显示答案"
    shown.clear()
    show.click()
    assert any("\u4e00" <= ch <= "\u9fff" for text in shown for ch in text)
    assert not any("They differ." in t or "Because." in t or "Like so." in t for t in shown)
    shown.clear()
    switch.value = "en"  # the answer stays revealed, now in English
    assert show.description == "Show answer" and got.disabled is False
    assert any(t in ("They differ.", "Because.", "Like so.") for t in shown)
    shown.clear()
    switch.value = "both"
    assert len(shown) == 4  # the question and the answer, each in both languages
    got.click()
    ids = set(json.loads(record.read_text())["cards"])
    assert ids <= {"05", "05.1", "05.2"} and len(ids) == 1  # the record knows cards by id only
