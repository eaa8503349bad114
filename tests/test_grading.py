"""Tests for kdlab.grading: the registry and check, build-exercises, and the grader."""
from __future__ import annotations

import contextlib
import csv
import io
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
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
MARKER = "kdlab-fixture-orphan"  # in the command line of every process a fixture starts
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

def _result(path, points, status="graded", reason="", flags=()):
    item = registry.get("00.accuracy")
    verdict = registry.Verdict(item.id, points > 0, points, item.points, "m" if points else "wrong")
    return grader.Result(path, status=status, reason=reason, verdicts={item.id: verdict},
                         flags=list(flags), student=Path(path).parts[0], submission=path,
                         lesson="00", sha256="ab")


def test_gradebook_has_a_row_per_submission_and_is_replaced_atomically(tmp_path):
    out = tmp_path / "grades.csv"
    out.write_text("old")
    grader.write_gradebook([_result("b/00.ipynb", 0, "timeout", "timeout"), _result("a/00.ipynb", 1)], out)
    rows = list(csv.DictReader(out.open()))
    assert [r["submission"] for r in rows] == ["a/00.ipynb", "b/00.ipynb"]  # sorted
    assert rows[0]["00.accuracy"] == "1" and rows[1]["status"] == "timeout"
    assert rows[0]["student"] == "a" and rows[1]["00.accuracy reason"] == "wrong"
    assert list(rows[0])[:5] == ["student", "submission", "lesson", "00.accuracy", "00.accuracy reason"]
    assert list(rows[0])[-6:] == ["flags", "total", "max", "status", "reason", "sha256"]
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]
    assert grader.read_gradebook(out) == [{**r} for r in rows]


def test_gradebook_opens_cleanly_in_a_spreadsheet(tmp_path):
    out = tmp_path / "grades.csv"
    evil = _result("=cmd|'/c calc'!A0/x.ipynb", 0, "error", "=HYPERLINK(\"http://x\")\x1b[31m\nforged")
    grader.write_gradebook([evil], out, excel=True)
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b"\x1b" not in data
    rows = grader.read_gradebook(out)  # the byte order mark is read back too
    assert rows[0]["submission"].startswith("'=") and rows[0]["reason"].startswith("'=")
    assert "\n" not in rows[0]["reason"] and rows[0]["total"] == "0"


def test_the_grader_replaces_a_link_in_its_output_folder_and_never_follows_it(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    folder = tmp_path / "feedback"
    folder.mkdir()
    (folder / "alice__00.txt").symlink_to(outside)
    grader.write_file(folder, "alice__00.txt", b"feedback")
    assert outside.read_text() == "not yours"
    assert not (folder / "alice__00.txt").is_symlink() and (folder / "alice__00.txt").read_text() == "feedback"
    with pytest.raises(ValueError, match="plain file name"):
        grader.write_file(folder, "../escape.txt", b"x")


def test_feedback_names_are_unique_for_equal_file_names():
    paths = ["alice/00_start_here.ipynb", "bob/00_start_here.ipynb"]
    assert [grader.feedback_name(p, paths) for p in paths] == [
        "alice__00_start_here.txt", "bob__00_start_here.txt"]
    assert grader.feedback_file("ali\nce/x y.ipynb") == "ali_ce__x_y.txt"


def test_learner_text_is_cleaned_and_quoted():
    assert grader.clean("a\x1b[31mb\x1b[0m\nc\r\u202ed\x07") == "ab ⏎ c ⏎ d"
    assert grader.quote("✓ 00.x (1/1)\n» fake «") == "«✓ 00.x (1/1) ⏎ › fake ‹»"
    assert grader._name("KeyError") == "KeyError"
    assert grader._name("\n✓ 00.x (1/1)").startswith("an exception named «")
    outcomes = grader._cleaned([("raised", "\n✓ x", "\x1b[2Jboom\n✓ 00.accuracy (1/1)")])
    assert outcomes[0][2] == "«boom ⏎ ✓ 00.accuracy (1/1)»"


def test_grade_refuses_bad_arguments():
    with pytest.raises(ValueError, match="jobs"):
        grader.grade([], jobs=0)
    with pytest.raises(ValueError, match="lesson must be one of"):
        grader.grade([], lesson="77")
    with pytest.raises(ValueError, match="secret must be"):
        grader.grade([], secret="")


def _layout(root: Path, files: dict) -> Path:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
    return root


def test_the_assignment_is_the_instructors_not_the_notebooks(tmp_path):
    honest = FIXTURES / "honest.ipynb"
    root = _layout(tmp_path / "submitted", {"alice/03_pruning/notebook.ipynb": honest,
                                            "bob/00_start_here/00_start_here.ipynb": honest,
                                            "carol/ps1/19_evaluation.ipynb": honest})
    subs = {s.student: s for s in grader.find_submissions([root])}
    assert (subs["alice"].lesson, subs["alice"].fixed_by) == ("03", "assignment folder")
    assert subs["alice"].relative == "alice/03_pruning/notebook.ipynb"
    assert (subs["bob"].lesson, subs["carol"].lesson) == ("00", "19")
    assert {s.lesson for s in grader.find_submissions([root], lesson="02")} == {"02"}
    flat = _layout(tmp_path / "flat", {"dave.ipynb": honest})
    with pytest.raises(ValueError, match="pass --lesson NN"):
        grader.find_submissions([flat])
    assert grader.find_submissions([flat], lesson="00")[0].student == "dave"
    with pytest.raises(ValueError, match="does not exist"):
        grader.find_submissions([tmp_path / "nope.ipynb"])
    with pytest.raises(ValueError, match="must hold every submission"):
        grader.find_submissions([flat / "dave.ipynb"], root=root, lesson="00")


def test_cases_are_keyed_by_the_instructors_secret(tmp_path):
    assert grader.seed("s", "00.accuracy") == grader.seed("s", "00.accuracy")
    assert grader.seed("s", "00.accuracy") != grader.seed("t", "00.accuracy")
    first = grader.read_secret(tmp_path)
    assert grader.read_secret(tmp_path) == first and len(first) >= 32
    assert (tmp_path / grader.SECRET_FILE).stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("source, hit", [
    ("from kdlab.grading import check\nfrom kdlab.train import seed_everything", None),
    ("y = load_digits().target  # kdlab.grading.items in a comment", None),
    ("from kdlab.grading.items.l03 import reference_mask", "kdlab.grading"),
    ("from kdlab.grading import (check,\n  get)", "more than check"),
    ("import kdlab.grading as g\nx = g.registry.get('03.x').target()", "kdlab.grading"),
    ("p = Path(kdlab.__file__).parents[1] / 'solutions' / '03.ipynb'", "solutions"),
    ("items = lesson_items('03')", "looks graded items up"),
])
def test_reaching_into_the_grader_is_found_in_the_code(source, hit):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    found = grader.reaches_into_grader(nb)
    assert (found is None) if hit is None else (hit in found and found.startswith("code cell 1"))


def _kdlab(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "kdlab.cli", *args], capture_output=True, text=True,
                          env=env, **kw)


def test_without_the_sandbox_tool_grading_is_refused_unless_asked(tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # no bwrap on it
    out = _kdlab("grade", str(FIXTURES / "00_corrupt.ipynb"), "--out", str(tmp_path / "g.csv"), env=env)
    assert out.returncode == 2 and not (tmp_path / "g.csv").exists()
    assert "bwrap is not installed" in out.stderr and "--unsafe-no-sandbox" in out.stderr
    out = _kdlab("grade", str(FIXTURES / "00_corrupt.ipynb"), "--out", str(tmp_path / "g.csv"),
                 "--unsafe-no-sandbox", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("isolation: NONE (--unsafe-no-sandbox)")
    assert next(csv.DictReader((tmp_path / "g.csv").open()))["flags"] == "unsandboxed"


@pytest.mark.parametrize("args, says", [
    (["--jobs", "0"], "--jobs must be an integer >= 1, got 0"),
    (["--timeout", "-1"], "--timeout must be a number of seconds > 0, got -1"),
    (["--memory", "0.5"], "--memory must be a number of GiB >= 2"),
    (["--processes", "4"], "--processes must be an integer >= 32"),
    (["--lesson", "77"], "lesson must be one of 00, "),
    (["--root", "/nonexistent"], "root must be a folder, got '/nonexistent'"),
])
def test_bad_grading_arguments_are_named(args, says, tmp_path, capsys):
    assert kdlab_main(["grade", str(FIXTURES / "00_corrupt.ipynb"), "--out",
                       str(tmp_path / "g.csv"), *args]) == 2
    assert says in capsys.readouterr().err


def test_cli_grades_a_corrupt_file_without_a_kernel(tmp_path, capsys):
    out, feedback = tmp_path / "g.csv", tmp_path / "fb"
    bait = tmp_path / "bait.txt"
    bait.write_text("untouched")
    feedback.mkdir()
    (feedback / "00_corrupt.txt").symlink_to(bait)  # a link planted in the output folder
    argv = ["grade", str(FIXTURES / "00_corrupt.ipynb"), "--out", str(out), "--feedback",
            str(feedback) + "/", "--secret", "s"]
    assert kdlab_main(argv) == 0
    row = next(csv.DictReader(out.open()))
    assert row["status"] == "error" and row["total"] == "0" and row["max"] == "6"
    assert row["student"] == "00_corrupt" and row["submission"] == "00_corrupt.ipynb"
    assert bait.read_text() == "untouched" and not (feedback / "00_corrupt.txt").is_symlink()
    assert "not a notebook" in (feedback / "00_corrupt.txt").read_text()
    text = capsys.readouterr().out
    assert text.startswith("isolation: ") and "1 submissions" in text and "//" not in text
    assert kdlab_main(argv) == 0  # nothing changed: skipped
    assert "1 of 1 submissions already graded" in capsys.readouterr().out
    (tmp_path / "other.csv").write_text("name,score\nx,1\n")
    assert kdlab_main(argv[:2] + ["--out", str(tmp_path / "other.csv")]) == 2
    assert "not a gradebook of kdlab grade" in capsys.readouterr().err


# ---------------------------------------------------------------- the grader on real notebooks

def _digests(*folders: Path) -> dict:
    """SHA-256 of every file under ``folders``, by path."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(folder.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts}


def _left_over() -> list:
    """Processes of finished grading runs still alive: kernels and what they started
    (each carries its run's id, the name of the run's temporary folder, which is gone
    when the run has ended)."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        runs = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"KDLAB_GRADING_RUN=")]
        finished = any(not (Path(tempfile.gettempdir()) / run).exists() for run in runs)
        if finished or MARKER.encode() in cmdline:
            left.append((pid, cmdline.replace(b"\0", b" ")[:100]))
    return left


def _our_temp() -> set:
    return {p for p in Path(tempfile.gettempdir()).glob(grader.TEMP_PREFIX + "*")}


def _assignment(name: str) -> str:
    return "03_pruning_principle" if name.startswith("03_") else "00_start_here"


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """The hostile class: every fixture in submitted/STUDENT/ASSIGNMENT/, two honest
    classmates graded with them, the network fixture's server listening."""
    expected = json.loads((FIXTURES / "expected.json").read_text())
    tmp = tmp_path_factory.mktemp("class")
    root = tmp / "submitted"
    looping = [Path(name).stem for name in expected if expected[name]["status"] == "timeout"]
    for name in expected:
        _layout(root, {f"{Path(name).stem}/{_assignment(name)}/{name}": FIXTURES / name})
    for student in ("alice", "zoe"):
        _layout(root, {f"{student}/00_start_here/00_start_here.ipynb": FIXTURES / "honest.ipynb"})
    received = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
                received.append(conn.recv(4096))
            except socket.timeout:
                continue
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    (root / "network/00_start_here/port.txt").write_text(str(server.getsockname()[1]))
    zoe = root / "zoe/00_start_here/00_start_here.ipynb"
    (root / "classmate_reader/00_start_here/target.txt").write_text(str(zoe))
    from kdlab.models.zoo import cache_dir

    before, cache_before, temp_before = _digests(FIXTURES, root), _digests(cache_dir()), _our_temp()
    subs = grader.find_submissions([root])
    hostile = [s for s in subs if s.student not in looping and s.student != "zoe"]
    later = [s for s in subs if s.student == "zoe"]  # graded after the hostile ones
    results = grader.grade(hostile + later, timeout=120, jobs=2, progress=False, secret="course")
    looped = grader.grade([s for s in subs if s.student in looping], timeout=5, jobs=2,
                          progress=False, secret="course")
    left = _left_over()
    waited = time.perf_counter()
    # the course's own notebooks are graded while the hostile class's leftovers, if any,
    # get at least 10 s to show themselves (what outlived its kernel would now rewrite
    # the gradebook)
    repo = grader.grade(SOLUTIONS + EXERCISES, timeout=120, jobs=2, progress=False) if SOLUTIONS else []
    time.sleep(max(0.0, 10 - (time.perf_counter() - waited)))
    left_later = _left_over()
    server.close()
    feedback = tmp / "feedback"
    grader.write_feedback(results + looped, feedback)
    return {"expected": expected, "results": {r.student: r for r in results + looped},
            "repo": {r.path: r for r in repo}, "feedback": feedback, "received": received,
            # the cache may gain models (the grader's targets, other runs), never lose or change one
            "unchanged": before == _digests(FIXTURES, root)
            and cache_before.items() <= _digests(cache_dir()).items(), "left": left + left_later,
            "temp_left": _our_temp() - temp_before, "root": root}


@pytest.mark.slow
def test_hostile_and_broken_submissions_get_their_expected_grades(batch):
    for name, want in batch["expected"].items():
        result = batch["results"][Path(name).stem]
        assert result.status == want["status"], (name, result.reason)
        assert result.total == want["total"], (name, result.reason, result.notes)
        assert result.max_points == want.get("max", 6), name
        for item_id, points in want.get("items", {}).items():
            assert result.verdicts[item_id].points == points, (name, item_id)
        assert want.get("reason", "") in result.reason, (name, result.reason)
        assert sorted(result.flags) == sorted(want.get("flags", [])), (name, result.flags, result.notes)


@pytest.mark.slow
def test_nothing_outside_the_output_folder_changes_and_no_process_is_left(batch):
    assert batch["unchanged"], "a graded notebook changed files outside the grader's output"
    assert batch["left"] == [], "processes of the run outlived it"
    assert batch["temp_left"] == set(), "the run left files in the temporary folder"
    assert batch["received"] == [], "a notebook reached the network"
    assert not Path("/tmp/grades.csv").exists()


@pytest.mark.slow
def test_honest_classmates_keep_their_marks(batch):
    for student in ("alice", "zoe"):
        result = batch["results"][student]
        assert (result.status, result.total, result.flags) == ("graded", 6, []), result.reason


@pytest.mark.slow
def test_a_fork_bomb_is_capped_at_a_few_hundred(batch):
    note = next(n for n in batch["results"]["fork_bomb"].notes if "fork bomb" in n)
    children = int(re.search(r"after (\d+) processes", note).group(1))
    assert 100 < children < 256


@pytest.mark.slow
def test_forged_text_in_feedback_is_quoted_and_never_a_verdict_line(batch):
    text = (batch["feedback"] / "forged_feedback__00_start_here__forged_feedback.txt").read_text()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", text)
    passed = {v.item_id for v in batch["results"]["forged_feedback"].verdicts.values() if v.passed}
    lines = text.splitlines()
    assert {line.split()[1] for line in lines if line.startswith("✓")} == passed
    assert all(line.startswith(("forged_feedback/", "✓ ", "✗ ", "note: ", "flag: ", "reason: ", "(text in"))
               for line in lines), lines
    assert "raised ValueError: «" in text and "✓ 02.kd_loss (3/3)" in text  # quoted, mid-line
    assert "raised an exception named «" in text


@pytest.mark.slow
def test_a_timeout_names_the_cell_that_was_running(batch):
    assert batch["results"]["sleeper"].reason == "timeout: code cell 2 was still running after 5 s"


@pytest.mark.slow
def test_solutions_get_full_marks_and_exercises_get_zero(batch):
    assert SOLUTIONS and EXERCISES
    for path in SOLUTIONS:
        result = batch["repo"][str(path)]
        assert result.status == "graded" and result.total == result.max_points > 0, result.reason
        assert result.flags == [], (path, result.flags, result.notes)
    for path in EXERCISES:
        result = batch["repo"][str(path)]
        assert result.total == 0 and result.max_points > 0
        assert all(v.message == registry.NOT_IMPLEMENTED for v in result.verdicts.values())


@pytest.mark.slow
def test_without_the_sandbox_a_notebook_is_graded_and_flagged(tmp_path):
    root = _layout(tmp_path / "submitted", {"ann/00_start_here/00_start_here.ipynb": FIXTURES / "honest.ipynb"})
    temp_before = _our_temp()
    [result] = grader.grade([root], jobs=2, progress=False, unsafe_no_sandbox=True)
    assert (result.status, result.total, result.flags) == ("graded", 6, ["unsandboxed"]), result.reason
    assert _our_temp() - temp_before == set()


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
    secret = tmp_path / "secret.out"
    torch.save([("ok", 1.0)] * len(cases), secret)
    answers.unlink()
    answers.symlink_to(secret)  # the grader reads no link the kernel made
    assert "a link" in grader._judge(item, cases, answers, []).message


# ---------------------------------------------------------------- stop and resume

def _class(root: Path) -> Path:
    """Two submissions graded at once: ann's is done in seconds, bea's 5 s later."""
    slow = nbformat.read(FIXTURES / "honest.ipynb", as_version=4)
    slow.cells.insert(0, nbformat.v4.new_code_cell("import time\ntime.sleep(5)", id="slow"))  # same bytes each time
    (root / "bea/00_start_here").mkdir(parents=True)
    nbformat.write(slow, root / "bea/00_start_here/00_start_here.ipynb")
    return _layout(root, {"ann/00_start_here/00_start_here.ipynb": FIXTURES / "missing_function.ipynb"})


def _grade_cli(root: Path, out: Path, **kw):
    return subprocess.Popen([sys.executable, "-m", "kdlab.cli", "grade", str(root), "--out", str(out),
                             "--jobs", "2", "--secret", "course"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whole")
    run = _grade_cli(_class(tmp / "submitted"), tmp / "grades.csv")
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    return (tmp / "grades.csv").read_bytes()


def _rows(out: Path) -> int:
    try:
        return len(grader.read_gradebook(out))
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_run_keeps_its_rows_and_resumes_to_the_same_gradebook(signum, uninterrupted, tmp_path):
    root, out = _class(tmp_path / "submitted"), tmp_path / "grades.csv"
    temp_before = _our_temp()
    run = _grade_cli(root, out)
    deadline = time.time() + 300
    while _rows(out) == 0 and run.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    run.send_signal(signum)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signum, err
    assert "Run the same command again" in err
    rows = grader.read_gradebook(out)
    assert len(rows) == 1  # the one in progress was dropped, not written as 0
    reference = {r["submission"]: r for r in csv.DictReader(io.StringIO(uninterrupted.decode()))}
    for r in rows:
        assert r == reference[r["submission"]]
    assert _left_over() == [] and _our_temp() - temp_before == set()
    again = _grade_cli(root, out)
    text, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "1 of 2 submissions already graded" in text
    assert out.read_bytes() == uninterrupted


@pytest.mark.slow
def test_sigkill_leaves_no_process_and_the_next_run_sweeps_its_folder(tmp_path):
    root = _class(tmp_path / "submitted")
    temp_before = _our_temp()
    run = _grade_cli(root, tmp_path / "grades.csv")
    deadline = time.time() + 300
    while not list(Path(tempfile.gettempdir()).glob(grader.TEMP_PREFIX + "*/s*/ctl/kernel.json")) \
            and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    run.kill()
    run.communicate(timeout=60)
    time.sleep(2)
    assert _left_over() == []
    stale = _our_temp() - temp_before
    assert stale  # the grader could not clean up after SIGKILL...
    grader.sweep_stale()  # ...the next run's start does
    assert not (_our_temp() & stale)


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
