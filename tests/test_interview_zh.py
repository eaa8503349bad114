"""The Chinese twins of the interview cells and the glossary they follow.

Every lesson 01-20 carries, right after its English ``interview-answer`` and
``interview-followups`` cells, markdown twins tagged ``interview-answer-zh`` and
``interview-followups-zh`` that say the same in 简体中文. The English cells stay the
reference; these tests hold the twins to them: the same follow-ups in the same order (a
card is the same card in both languages), the same figures, and the glossary's terms.
"""
import collections
import json
import re
import tomllib
from pathlib import Path

import nbformat
import pytest

from kdlab import course
from kdlab.course import drill

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p for p in (ROOT / "lessons").glob("[0-9][0-9]_*.ipynb") if "01" <= p.name[:2] <= "20")
KINDS = ("answer", "followups")

NUMBER = re.compile(r"\d+(?:\.\d+)?")


def numbers(text: str) -> collections.Counter:
    """The figures a text states, as a multiset of digit strings: 0.9518, 12.5 (of 12.5x),
    98 (of 98%), 2 and 4 (of 2:4), 2015. The one normalisation: a thousands separator
    between digits is dropped (3,500 and 3500 are one figure). Signs and units are not
    compared, and a number written as a word ("ten") is not a figure: both languages
    write digits where the English does and words where it does."""
    return collections.Counter(NUMBER.findall(re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)))


def test_numbers_are_read_as_the_docstring_says():
    assert numbers("3,500 digits, 93.1% → 95.0%, 2:4, 12.5x, (Hinton et al. 2015)") == numbers(
        "3500 张数字，93.1% → 95.0%，2:4，12.5x（Hinton et al. 2015）")
    assert numbers("ten points") != numbers("10 个百分点")
    assert numbers("1, 2 and 3") == collections.Counter({"1": 1, "2": 1, "3": 1})


def _cells(path):
    nb = nbformat.read(path, as_version=4)
    tagged = collections.defaultdict(list)
    for i, cell in enumerate(nb.cells):
        for tag in cell.metadata.get("tags", []):
            tagged[tag].append((i, cell))
    return tagged


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name[:2])
def test_every_lesson_has_the_chinese_twin_of_each_interview_cell(path):
    tagged = _cells(path)
    for kind in KINDS:
        english, twin = tagged[f"interview-{kind}"], tagged[f"interview-{kind}-zh"]
        assert len(twin) == 1, f"{path.name}: {len(twin)} markdown cells tagged 'interview-{kind}-zh', want 1"
        assert twin[0][1].cell_type == "markdown"
        assert twin[0][0] == english[0][0] + 1, f"{path.name}: the {kind} twin must follow its English cell"
        assert twin[0][1].source.lstrip().startswith("## "), f"{path.name}: the {kind} twin starts with a heading"
        assert re.search(r"[\u4e00-\u9fff]", twin[0][1].source), f"{path.name}: the {kind} twin is not Chinese"
    cards = drill.cards_from_notebook(path, strict=True)
    for card in cards:
        assert card.question_zh and card.answer_zh, f"{path.name}: card {card.id} has no Chinese side"
    assert cards[0].question_zh == cards[0].original


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name[:2])
def test_the_twin_states_the_same_figures(path, kind):
    tagged = _cells(path)
    twin = tagged[f"interview-{kind}-zh"]
    assert twin, f"{path.name} has no cell tagged 'interview-{kind}-zh'"
    english, chinese = numbers(tagged[f"interview-{kind}"][0][1].source), numbers(twin[0][1].source)
    assert english == chinese, (f"{path.name} {kind}: only in English {dict(english - chinese)}, "
                                f"only in Chinese {dict(chinese - english)}")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name[:2])
def test_the_twin_uses_the_glossary_terms(path):
    tagged, missing = _cells(path), []
    for kind in KINDS:
        twin = tagged[f"interview-{kind}-zh"]
        assert twin, f"{path.name} has no cell tagged 'interview-{kind}-zh'"
        english, chinese = tagged[f"interview-{kind}"][0][1].source, twin[0][1].source
        for term in course.glossary():
            if term.pattern().search(english) and not any(s in chinese for s in term.spellings):
                missing.append(f"{kind}: {term.en!r} -> {' / '.join(term.spellings)}")
            missing += [f"{kind}: {bad!r} is a variant the glossary avoids ({term.en!r} is {term.zh!r})"
                        for bad in term.avoid if bad in chinese]
    assert not missing, f"{path.name}:\n" + "\n".join(missing)


def test_the_glossary_is_consistent_and_shipped():
    terms = course.glossary()
    assert 40 <= len(terms) <= 80
    assert len({t.en.lower() for t in terms}) == len(terms), "an English term is listed twice"
    for t in terms:
        assert t.zh and t.en, t
        assert not set(t.avoid) & set(t.spellings), f"{t.en}: a variant is both accepted and avoided"
        assert t.pattern().search(t.en), f"{t.en}: its match does not find the term itself"
        # an avoided variant must not hide inside an accepted spelling of any term
        assert not any(bad in s for bad in t.avoid for u in terms for s in u.spellings), t.en
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "glossary.json" in config["kdlab.course"], "glossary.json must be package data of kdlab.course"
    json.loads((ROOT / "kdlab" / "course" / "glossary.json").read_text(encoding="utf-8"))


def test_the_glossary_table_fits_the_window_and_aligns():
    lines = course.glossary_table().splitlines()
    assert len(lines) == len(course.glossary()) + 1
    assert max(len(line) for line in lines) <= 150
    # the Chinese column starts at the same screen column on every line
    starts = {course._width(line[:line.index(t.zh, len(t.en))]) for line, t in zip(lines[1:], course.glossary())}
    assert len(starts) == 1


def test_the_glossary_filter_term_leaves_out_the_verb():
    term = next(t for t in course.glossary() if t.en == "filter")
    assert term.pattern().search("remove 70% of the filters") and not term.pattern().search("filter the targets")
