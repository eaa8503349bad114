import json
from pathlib import Path

import nbformat
import pytest

from kdlab import drill

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


def test_progress_is_kept_and_mastered_cards_leave_the_queue(tmp_path):
    cards = drill.cards_from_notebook(_lesson(tmp_path))
    record = tmp_path / "progress.json"
    progress = drill.Progress(record)
    progress.mark("05.1", "mastered")
    progress.mark("05", "again")
    assert json.loads(record.read_text()) == {"05": "again", "05.1": "mastered"}
    assert {c.id for c in drill.order(cards, drill.Progress(record), seed=0)} == {"05", "05.2"}
    with pytest.raises(ValueError, match="status must be 'mastered' or 'again'"):
        progress.mark("05", "done")


def test_damaged_record_is_set_aside(tmp_path):
    record = tmp_path / "progress.json"
    record.write_text("{not json")
    assert drill.Progress(record).marks == {}
    assert (tmp_path / "progress.damaged.json").read_text() == "{not json"


def test_widget_records_a_mastered_card(tmp_path):
    cards = drill.cards_from_notebook(_lesson(tmp_path))
    record = tmp_path / "p.json"
    box = drill.drill(cards, progress_path=record, seed=1)
    show, mastered, again = box.children[2].children
    assert mastered.disabled
    show.click()
    mastered.click()
    assert list(json.loads(record.read_text()).values()) == ["mastered"]
    again.disabled = False
    show.click()
    again.click()
    assert sorted(json.loads(record.read_text()).values()) == ["again", "mastered"]
