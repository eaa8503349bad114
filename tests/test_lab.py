import json
import subprocess
import sys

import pytest

from kdlab import course, lab


@pytest.fixture
def fake_course(tmp_path, monkeypatch):
    src = {name: tmp_path / "src" / name for name in course.FOLDERS}
    for path in src.values():
        path.mkdir(parents=True)
    (src["lessons"] / "01_a.ipynb").write_text("lesson v1")
    (src["exercises"] / "01_a.ipynb").write_text("exercise v1")
    monkeypatch.setattr(course, "folder", lambda name: src[name])
    return src


def test_first_use_copies_everything(fake_course, tmp_path):
    dest = tmp_path / "mine"
    result = lab.sync(dest)
    assert sorted(result["copied"]) == ["exercises/01_a.ipynb", "lessons/01_a.ipynb"]
    assert (dest / "lessons" / "01_a.ipynb").read_text() == "lesson v1"
    assert set(json.loads((dest / lab.MANIFEST).read_text())) == {"lessons/01_a.ipynb", "exercises/01_a.ipynb"}


def test_edited_files_are_never_overwritten(fake_course, tmp_path):
    dest = tmp_path / "mine"
    lab.sync(dest)
    mine = dest / "exercises" / "01_a.ipynb"
    mine.write_text("my answers")
    assert lab.sync(dest) == {"copied": [], "updated": [], "kept": []}
    (fake_course["exercises"] / "01_a.ipynb").write_text("exercise v2")
    (fake_course["lessons"] / "01_a.ipynb").write_text("lesson v2")
    (fake_course["lessons"] / "02_b.ipynb").write_text("new lesson")
    result = lab.sync(dest)
    assert result == {"copied": ["lessons/02_b.ipynb"], "updated": ["lessons/01_a.ipynb"],
                      "kept": ["exercises/01_a.ipynb"]}
    assert mine.read_text() == "my answers"
    assert (dest / "exercises" / "01_a.updated.ipynb").read_text() == "exercise v2"
    assert (dest / "lessons" / "01_a.ipynb").read_text() == "lesson v2"


def test_dir_that_is_a_file_is_refused(fake_course, tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    with pytest.raises(NotADirectoryError, match="DIR must be a folder"):
        lab.sync(target)
    assert target.read_text() == "keep me"


def test_installed_course_has_the_start_lesson():
    assert "00_start_here.ipynb" in [p.name for p in course.notebooks("lessons")]


def test_cli_copies_without_starting(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kdlab.cli", "lab", str(tmp_path / "c"), "--no-start"],
                         capture_output=True, text=True, check=True).stdout
    assert "copied" in out and (tmp_path / "c" / "lessons" / "00_start_here.ipynb").exists()
