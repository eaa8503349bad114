import json
import subprocess
import sys

import pytest

from kdlab import course
from kdlab.course import lab


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


def _kdlab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "kdlab.cli", *args], capture_output=True, text=True, **kw)


def test_lab_takes_its_options_after_the_folder(tmp_path):
    done = _kdlab("lab", str(tmp_path / "c"), "--no-browser", "--port", "8999", "--no-start")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c" / "lessons" / "00_start_here.ipynb").exists()


def test_arguments_after_double_dash_are_never_the_folder(tmp_path):
    done = _kdlab("lab", "--no-start", "--", "--no-browser", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "kdlab-course" / "lessons").is_dir() and not (tmp_path / "--no-browser").exists()


def test_a_file_as_the_folder_is_one_line(tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    done = _kdlab("lab", str(target), "--no-start")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"kdlab lab: DIR must be a folder, got the file {str(target)!r}"]
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("args, says", [
    (["lab", "--port", "99999", "--no-start"], "must be an integer in [1, 65535], got 99999"),
    (["lab", "--port", "eighty", "--no-start"], "must be an integer in [1, 65535], got 'eighty'"),
    (["lab", "a", "b", "--no-start"], "unrecognized arguments: b"),
    (["grade", "x.ipynb", "--", "--flag"], "takes no arguments after --"),
])
def test_bad_command_lines_say_what_is_wrong(tmp_path, args, says):
    done = _kdlab(*args, cwd=tmp_path)
    assert done.returncode == 2 and says in done.stderr


def test_help_shows_an_example_and_loads_no_torch():
    code = ("import sys\nfrom kdlab.cli import main\ntry:\n    main(['lab', '--help'])\n"
            "except SystemExit:\n    pass\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "kdlab lab ~/course --no-browser" in done.stdout
    assert done.stdout.strip().endswith("False")


def test_start_url_opens_lesson_00():
    assert lab.start_url("0.0.0.0", 8890, "abc") == \
        "http://127.0.0.1:8890/lab/tree/lessons/00_start_here.ipynb?token=abc"


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_stopping_kdlab_lab_stops_jupyterlab_and_its_kernels(tmp_path, signame):
    import json as _json
    import re
    import signal
    import time
    import urllib.request

    import psutil

    port = lab._free_port("127.0.0.1")
    proc = subprocess.Popen([sys.executable, "-m", "kdlab.cli", "lab", str(tmp_path / "c"), "--no-browser",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url, deadline = None, time.time() + 120
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            assert line, "kdlab lab exited before printing the address"
            m = re.search(r"http://\S+/lab/tree/lessons/00_start_here\.ipynb\?token=(\w+)", line)
            url = m and m.group(0)
        assert url and f":{port}/" in url
        token = url.rsplit("=", 1)[1]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        # a kernel, so that the stop must end more than the server
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/kernels?token={token}", data=b"{}",
                                         method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert _json.loads(response.read())["id"]
        tree = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(tree) >= 3  # kdlab lab, JupyterLab, the kernel
        proc.send_signal(getattr(signal, signame))
        assert proc.wait(60) == 0
        time.sleep(0.5)
        alive = [pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
        assert alive == []
    finally:
        if proc.poll() is None:
            proc.kill()
