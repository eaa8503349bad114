"""Tests for kdlab.grading: the registry and check, build-exercises, and the grader."""
from __future__ import annotations

import contextlib
import csv
import io
import hashlib
import json
import re
from pathlib import Path

import nbformat
import pytest
import torch

from kdlab.cli import main as kdlab_main
from kdlab.grading import build, check, grader, registry
from kdlab.grading.registry import ChoiceItem, FunctionItem, NumberItem, SetItem

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "grading"
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
FUNCTION_ITEMS = [i for i in registry.all_items().values() if isinstance(i, FunctionItem)]


# ---------------------------------------------------------------- registry and check

def test_registry_ids_are_unique_and_belong_to_their_lesson():
    items = registry.all_items()
    assert items and all(item_id == item.id for item_id, item in items.items())
    for item in items.values():
        assert item.points > 0 and item.name.isidentifier()
        assert item.id.startswith(item.lesson + ".")


def test_unknown_item_names_the_closest_ids():
    with pytest.raises(ValueError, match="did you mean 00.accuracy"):
        check("00.acuracy", lambda y, p: 0.0)


# the usual mistakes include KL with reduction="mean", which torch warns about
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("item", FUNCTION_ITEMS, ids=lambda i: i.id)
def test_reference_passes_and_every_usual_mistake_gets_its_hint(item, capsys):
    assert bool(check(item.id, item.reference)) is True
    assert capsys.readouterr().out == f"✓ {item.id}: passed {item.n_cases} random cases\n"
    from kdlab.grading._harness import collect

    hints = [h for _, h in item.wrong]
    for variant, _ in item.wrong:
        cases = item.cases(1)
        verdict = item.judge(cases, collect(variant, "function", cases))
        assert not verdict.passed and verdict.points == 0
        # an earlier mistake's hint may show on a case where two variants agree
        assert verdict.message in hints


def test_each_usual_mistake_of_macro_f1_is_recognised():
    item = registry.get("00.macro_f1")
    from kdlab.grading._harness import collect

    cases = item.cases(3)
    for variant, hint in item.wrong:
        assert item.judge(cases, collect(variant, "function", cases)).message == hint


def test_check_reports_not_implemented_errors_and_wrong_kinds(capsys):
    def not_done(y_true, y_pred):
        raise NotImplementedError()

    def broken(y_true, y_pred):
        raise KeyError("labels")

    assert bool(check("00.accuracy", not_done)) is False
    assert bool(check("00.accuracy", broken)) is False
    assert bool(check("00.accuracy", 0.5)) is False
    assert bool(check("00.tiny_accuracy", not_done)) is False
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"✗ 00.accuracy: {registry.NOT_IMPLEMENTED}"
    assert out[1].startswith("✗ 00.accuracy: your code raised KeyError: 'labels'")
    assert "pass your function itself" in out[2]
    assert "not a function" in out[3]


def test_check_draws_fresh_cases_without_touching_the_learners_random_state():
    item = registry.get("00.count_params")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert check(item.id, item.reference)
    assert torch.equal(torch.rand(3), expected)
    first, again = item.cases(7), item.cases(7)  # the grader's seeded cases repeat
    for (m1, nz1), (m2, nz2) in zip(first, again):
        assert nz1 == nz2 and all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


def test_numeric_and_choice_hints_never_show_the_answer(capsys):
    target = registry.get("00.tiny_accuracy").target()
    assert bool(check("00.tiny_accuracy", target + 0.3)) is True
    assert bool(check("00.tiny_accuracy", target / 100)) is False
    assert bool(check("00.tiny_accuracy", 100 - target)) is False
    assert bool(check("00.tiny_accuracy", float("nan"))) is False
    assert bool(check("00.imbalance_metric", "accuracy")) is False
    out = capsys.readouterr().out
    assert "not a fraction" in out and "error rate" in out and "finite number" in out
    assert f"{target:.1f}" not in out and f"{target:.2f}" not in out
    assert "macro_f1" not in out.splitlines()[-1]


def test_set_and_choice_items():
    item = SetItem("99.pruners", options=["l1", "random", "taylor"], answer={"l1", "taylor"},
                   hints={"random": "random pruning ignores the weights"})
    assert item.judge([], [("ok", ["l1", "taylor"])]).passed
    assert item.judge([], [("ok", ["l1", "random", "taylor"])]).message == "random pruning ignores the weights"
    assert "2 are missing" in item.judge([], [("ok", [])]).message
    assert "not an option" in item.judge([], [("ok", ["magic"])]).message
    choice = ChoiceItem("99.pick", options=["a", "b"], answer="b")
    assert choice.judge([], [("ok", "b")]).passed and not choice.judge([], [("ok", "a")]).passed


@pytest.mark.parametrize("make, match", [
    (lambda: NumberItem("3.x", target=1, abs_tol=0.1), "item_id must look like"),
    (lambda: NumberItem("03.x", target=1), "tolerance"),
    (lambda: ChoiceItem("03.x", options=["a"], answer="b"), "answer must be one of"),
    (lambda: NumberItem("03.x", target=1, abs_tol=0.1, points=0), "points must be"),
])
def test_bad_items_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------- build-exercises

def test_strip_replaces_solutions_at_their_indentation_and_drops_hidden_tests():
    source = ("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
              "### BEGIN HIDDEN TESTS\nassert f(1) == 1\n### END HIDDEN TESTS\nprint(f)")
    assert build._strip(source, "code", "cell") == (
        "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(f)")
    assert build._strip("### BEGIN SOLUTION\nIt is 4.\n### END SOLUTION", "markdown", "c") == "YOUR ANSWER HERE"


@pytest.mark.parametrize("source, match", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without its BEGIN"),
    ("x = 1  ### BEGIN SOLUTION", "alone on its line"),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n", "inside an open"),
])
def test_broken_markers_are_named(source, match):
    with pytest.raises(ValueError, match=match):
        build._strip(source, "code", "nb.ipynb, cell 3")


def test_exercise_clears_outputs_and_nbval_tags_and_locks_tests():
    answer = nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
                                       execution_count=3,
                                       outputs=[nbformat.v4.new_output("stream", text="1\n")])
    answer.metadata.update(tags=["nbval-ignore-output", "parameters"],
                           nbgrader=build.nbgrader_metadata("99-x-answer", solution=True))
    test = nbformat.v4.new_code_cell('check("99.x", x)')
    test.metadata.update(tags=["nbval-skip"], nbgrader=build.nbgrader_metadata("99-x", points=1, locked=True))
    out = build.exercise(nbformat.v4.new_notebook(cells=[answer, test]))
    assert out.cells[0].outputs == [] and out.cells[0].execution_count is None
    assert out.cells[0].metadata["tags"] == ["parameters"] and "tags" not in out.cells[1].metadata
    assert out.cells[1].metadata["editable"] is False and out.cells[1].metadata["deletable"] is False
    answer.metadata["nbgrader"]["solution"] = False
    with pytest.raises(ValueError, match="solution=true"):
        build.exercise(nbformat.v4.new_notebook(cells=[answer]))


def test_committed_exercises_are_up_to_date(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert kdlab_main(["build-exercises", "--check"]) == 0, capsys.readouterr().err


def test_check_names_stale_and_orphan_exercises(tmp_path, capsys):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    for path in SOLUTIONS:
        (solutions / path.name).write_bytes(path.read_bytes())
    argv = ["build-exercises", "--solutions", str(solutions), "--exercises", str(exercises)]
    assert kdlab_main(argv) == 0
    assert kdlab_main(argv + ["--check"]) == 0
    nb = nbformat.read(solutions / SOLUTIONS[0].name, as_version=4)
    nb.cells[0].source += "\nChanged."
    nbformat.write(nb, solutions / SOLUTIONS[0].name)
    (exercises / "99_gone.ipynb").write_text("{}")
    capsys.readouterr()
    assert kdlab_main(argv + ["--check"]) == 1
    err = capsys.readouterr().err
    assert SOLUTIONS[0].name in err and "99_gone.ipynb" in err


def test_grade_ids_are_unique_and_test_cells_match_the_registry():
    ids = build.grade_ids(SOLUTIONS)
    assert ids
    for path in SOLUTIONS:
        lesson = path.name[:2]
        graded = {}
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            assert not meta or meta["schema_version"] == 3
            if meta.get("grade"):
                item = registry.by_grade_id(meta["grade_id"])
                assert item is not None, meta["grade_id"]
                assert meta["points"] == item.points and meta["locked"]
                assert re.search(rf'check\("{re.escape(item.id)}", {item.name}\)', cell.source)
                graded[item.id] = item
        assert set(graded) == {i.id for i in registry.lesson_items(lesson)}
        assert len(graded) >= 2
    with pytest.raises(ValueError, match="is used in"):
        build.grade_ids(SOLUTIONS + SOLUTIONS)


# ---------------------------------------------------------------- gradebook and feedback

def _result(path, points, status="graded", reason=""):
    item = registry.get("00.accuracy")
    verdict = registry.Verdict(item.id, points > 0, points, item.points, "m")
    return grader.Result(path, status=status, reason=reason, verdicts={item.id: verdict})


def test_gradebook_has_a_row_per_submission_and_is_replaced_atomically(tmp_path):
    out = tmp_path / "grades.csv"
    out.write_text("old")
    grader.write_gradebook([_result("a.ipynb", 1), _result("b.ipynb", 0, "timeout", "timeout")], out)
    rows = list(csv.DictReader(out.open()))
    assert [r["submission"] for r in rows] == ["a.ipynb", "b.ipynb"]
    assert rows[0]["00.accuracy"] == "1" and rows[1]["status"] == "timeout"
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]


def test_feedback_names_are_unique_for_equal_file_names():
    paths = ["alice/00_start_here.ipynb", "bob/00_start_here.ipynb"]
    assert [grader.feedback_name(p, paths) for p in paths] == [
        "alice__00_start_here.txt", "bob__00_start_here.txt"]


def test_grade_refuses_bad_arguments():
    with pytest.raises(ValueError, match="jobs"):
        grader.grade([], jobs=0)
    with pytest.raises(ValueError, match="lesson must be one of"):
        grader.grade([], lesson="77")


def test_cli_grades_a_corrupt_file_without_a_kernel(tmp_path, capsys):
    out, feedback = tmp_path / "g.csv", tmp_path / "fb"
    assert kdlab_main(["grade", str(FIXTURES / "00_corrupt.ipynb"), "--out", str(out),
                       "--feedback", str(feedback)]) == 0
    row = next(csv.DictReader(out.open()))
    assert row["status"] == "error" and row["total"] == "0" and row["max"] == "6"
    assert "not a notebook" in (feedback / "00_corrupt.txt").read_text()
    assert "1 submissions" in capsys.readouterr().out


# ---------------------------------------------------------------- the grader on real notebooks

def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def batch():
    expected = json.loads((FIXTURES / "expected.json").read_text())
    looping = [FIXTURES / name for name in expected if "timeout" in expected[name]["status"]]
    fixtures = [FIXTURES / name for name in expected if FIXTURES / name not in looping]
    repeat = FIXTURES / "missing_function.ipynb"
    before = _tree_digest(FIXTURES)
    # a generous limit for the rest, so a loaded machine cannot turn them into timeouts
    paths = fixtures + [repeat] + SOLUTIONS + EXERCISES
    results = grader.grade(paths, timeout=120, jobs=2, progress=False)
    results += grader.grade(looping, timeout=5, progress=False)
    paths += looping
    return {"expected": expected, "results": dict(zip(map(str, paths), results)),
            "list": results, "unchanged": before == _tree_digest(FIXTURES)}


@pytest.mark.slow
def test_hostile_and_broken_submissions_get_their_expected_grades(batch):
    for name, want in batch["expected"].items():
        result = batch["results"][str(FIXTURES / name)]
        assert result.status == want["status"], (name, result.reason)
        assert result.total == want["total"], (name, result.reason)
        assert result.max_points == 6, name
        for item_id, points in want.get("items", {}).items():
            assert result.verdicts[item_id].points == points, (name, item_id)
        assert want.get("reason", "") in result.reason, (name, result.reason)
    assert batch["unchanged"], "a graded notebook changed files in its own folder"


@pytest.mark.slow
def test_solutions_get_full_marks_and_exercises_get_zero(batch):
    assert SOLUTIONS and EXERCISES
    for path in SOLUTIONS:
        result = batch["results"][str(path)]
        assert result.status == "graded" and result.total == result.max_points > 0, result.reason
    for path in EXERCISES:
        result = batch["results"][str(path)]
        assert result.total == 0 and result.max_points > 0
        assert all(v.message == registry.NOT_IMPLEMENTED for v in result.verdicts.values())


@pytest.mark.slow
def test_a_regrade_gives_the_same_result(batch):
    first, again = [r for r in batch["list"] if r.path.endswith("missing_function.ipynb")]
    assert (first.total, first.status, first.reason) == (again.total, again.status, again.reason)
    assert [v.message for v in first.verdicts.values()] == [v.message for v in again.verdicts.values()]


class _Exploit:
    def __reduce__(self):
        return (print, ("this ran in the grader",))


def test_answers_are_read_without_running_code_from_the_notebook(tmp_path, capsys):
    item = registry.get("00.accuracy")
    cases = item.cases(0)
    answers = tmp_path / "answers.out"
    torch.save([("ok", _Exploit())] * len(cases), answers)
    verdict = grader._judge(item, cases, answers, [])
    assert not verdict.passed and "could not read the answer" in verdict.message
    assert "this ran in the grader" not in capsys.readouterr().out
    torch.save(torch.zeros(3), answers)
    assert grader._judge(item, cases, answers, []).message == "the answer came back malformed"
    torch.save(("missing",), answers)
    assert "defines no `accuracy`" in grader._judge(item, cases, answers, []).message
    assert grader._judge(item, cases, tmp_path / "none", []).message.startswith("could not read")


@pytest.mark.parametrize("got, expected, says", [
    (torch.tensor([0.2, 0.6]), torch.tensor([0.25, 0.75]), "should sum to 1; yours sum to 0.8"),
    (torch.ones(2, 3), torch.ones(3, 2), "is transposed"),
    (torch.ones(4), torch.ones(3), "shape (4,); it should have shape (3,)"),
    (torch.tensor([1.0, float("nan")]), torch.ones(2), "contains NaN (1 of 2 entries)"),
    (-torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), "opposite sign"),
    (4 * torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), "constant factor of 4"),
    (torch.tensor([1.5, 2.5]), torch.tensor([1.0, 2.0]), "off by a constant +0.5"),
    (torch.tensor([True, True, False, True]), torch.tensor([True, False, False, True]),
     "keeps 3 of 4 entries (removes 1); it should remove 2"),
    (torch.tensor([True, False]), torch.tensor([False, True]), "not the right ones"),
    ([1.0], torch.ones(1), "returns a list; it should return a torch.float32 tensor"),
    (2.0, 0.5, "constant factor of 4"),
])
def test_diagnose_names_the_mistake_without_the_answer(got, expected, says):
    message = registry.diagnose(got, expected)
    assert says in message
    if isinstance(expected, torch.Tensor) and expected.is_floating_point():
        for value in expected.flatten().tolist():
            if value not in (1.0, 2.0, 0.0):  # values the message could state for another reason
                assert f"{value:.4g}" not in message


def test_diagnose_returns_none_when_nothing_fits():
    assert registry.diagnose(torch.tensor([3.0, -1.0]), torch.tensor([1.0, 2.0])) is None


def test_a_check_cell_shows_only_its_verdict_line():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell("from kdlab.grading import check")
    with io.StringIO() as out, contextlib.redirect_stdout(out):
        result = shell.run_cell('check("00.imbalance_metric", "accuracy")')
        printed = out.getvalue()
    assert printed.strip().startswith("✗ 00.imbalance_metric") and "False" not in printed
    assert not result.result  # falsy: the hidden tests' `assert check(...)` still fails it
