"""The first hour in a real browser: `kdlab lab`, lesson 00, a lesson, an exercise.

Starts the course the way a learner does (``kdlab lab DIR --no-browser --port P``),
opens lesson 00 from the address it prints, runs lesson 14 (one of the quicker
lessons with a slider) and moves its slider, answers an exercise wrong and then right, switches the interview
drill (lesson 99) to 中文 and reveals an answer, and stops
``kdlab lab`` with Ctrl-C, which must leave no JupyterLab or kernel process behind.
Drives Debian's Chromium with Playwright. Skipped only where no Chromium is
installed and this is not CI (CI installs it and must run this test).
"""
import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

LESSON = Path(__file__).resolve().parents[1] / "lessons" / "14_future_trends.ipynb"
EXERCISE = "exercises/00_start_here.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.browser
if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    pytestmark = [pytestmark, pytest.mark.skip(reason="needs Debian's chromium (apt install chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def course(tmp_path):
    import psutil

    # JupyterLab 4 renders only the visible cells by default; render them all so every
    # output can be checked
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "KDLAB_PROGRESS": "0"}
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kdlab.cli", "lab", str(tmp_path / "course"), "--no-browser", "--port", str(port),
         "--", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.PIPE, stderr=open(tmp_path / "jupyter.log", "wb"), text=True)
    tree = []
    try:
        url, deadline = None, time.time() + 120
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"kdlab lab exited early: {(tmp_path / 'jupyter.log').read_text()[-2000:]}")
            m = re.search(r"(http://127\.0\.0\.1:\d+)/lab/tree/lessons/00_start_here\.ipynb\?token=(\w+)", line)
            if m:
                url = m.group(0)
        assert url, "kdlab lab printed no address for lesson 00"
        yield {"url": url, "base": m.group(1), "token": m.group(2), "dir": tmp_path, "tree": tree,
               "pid": proc.pid}
    finally:
        if proc.poll() is None:
            tree.extend([proc] + psutil.Process(proc.pid).children(recursive=True))
            proc.send_signal(signal.SIGINT)  # Ctrl-C, as a learner stops it
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                code = None
        _, alive = psutil.wait_procs(tree, timeout=15)
        for p in alive:
            p.kill()
        assert not alive, f"processes left behind by Ctrl-C: {alive}"
        assert code == 0


def _visible(page):
    """The open notebook (each is opened in a workspace of its own, so it is the only one)."""
    return page.locator(".jp-NotebookPanel")


def _wait_idle(page):
    from playwright.sync_api import expect

    expect(page.locator(".jp-StatusBar-Widget", has_text="| Idle").first).to_be_visible(timeout=90_000)


def _open(page, course, path):
    workspace = Path(path).stem.replace("_", "-")
    page.goto(f"{course['base']}/lab/workspaces/{workspace}/tree/{path}?token={course['token']}")
    _visible(page).locator(".jp-Cell").first.wait_for(timeout=60_000)
    _wait_idle(page)


def _run_all(page, n_code_cells):
    from playwright.sync_api import expect

    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    notebook = _visible(page)
    expect(notebook.locator(".jp-CodeCell")).to_have_count(n_code_cells, timeout=60_000)
    deadline = time.time() + 240
    while time.time() < deadline:
        prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        if all(re.fullmatch(r"\[\d+\]:?", p.strip()) for p in prompts):
            return
        time.sleep(1)
    pytest.fail(f"cells did not finish: {prompts}")


def _answer(page, cell_index, code):
    """Replace the source of code cell ``cell_index`` (0-based over all cells), run it
    and the check cell after it."""
    cell = _visible(page).locator(".jp-Cell").nth(cell_index)
    cell.scroll_into_view_if_needed()
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(code)  # as pasted: no auto-indent, no closing brackets added
    page.keyboard.press("Shift+Enter")
    _wait_idle(page)
    page.keyboard.press("Shift+Enter")
    _wait_idle(page)


def _drill_in_chinese(page, course):
    """Lesson 99's drill: switch to 中文, show an answer, and find that card's Chinese
    answer on the page (a card without a Chinese side, or whose question is not unique, is
    answered and passed over)."""
    from playwright.sync_api import expect

    from kdlab.course import drill

    lessons = Path(course["dir"]) / "course" / "lessons"
    path = lessons / "99_interview_drill.ipynb"
    with_zh = [c for c in drill.load_cards(lessons) if c.answer_zh]
    titles = collections.Counter(c.question_zh for c in with_zh)  # 04 and 12 share their original title
    cards = {c.question_zh: c for c in with_zh if titles[c.question_zh] == 1}
    _open(page, course, "lessons/99_interview_drill.ipynb")
    _run_all(page, sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells))
    notebook = _visible(page)
    notebook.locator(".widget-toggle-button", has_text="中文").first.click()
    show = notebook.locator("button", has_text="显示答案").first
    got = notebook.locator("button", has_text="记住了").first
    heading = notebook.locator(".jp-OutputArea-output h3").first
    expect(show).to_be_visible(timeout=30_000)
    question = None
    for _ in range(30):
        deadline = time.time() + 5
        while time.time() < deadline:  # the widget re-renders from the kernel: let it settle
            question = heading.inner_text().strip() if heading.count() else None
            if question in cards:
                break
            time.sleep(0.25)
        if question in cards:
            break
        show.click()  # a card without a Chinese side yet: answer it, take the next one
        expect(got).to_be_enabled(timeout=30_000)
        got.click()
        expect(heading).not_to_have_text(question or "", timeout=30_000)
    assert question in cards, "no card of the drill had a Chinese side"
    card = cards[question]
    show.click()
    phrase = re.search(r"[\u4e00-\u9fff][\u4e00-\u9fff，、：；]{5,}", card.answer_zh).group(0)
    expect(notebook.locator(".jp-OutputArea-output", has_text=phrase).first).to_be_visible(timeout=30_000)
    expect(got).to_be_enabled()
    show.scroll_into_view_if_needed()
    page.screenshot(path=str(course["dir"] / "drill_zh.png"), full_page=False)


def test_first_hour_in_the_browser(course):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # lesson 00, from the address kdlab lab printed
            page.goto(course["url"])
            expect(_visible(page).locator(".jp-MarkdownCell h1").first).to_contain_text("00", timeout=60_000)

            # a lesson: every cell runs without error, and its slider answers
            _open(page, course, f"lessons/{LESSON.name}")
            _run_all(page, sum(c.cell_type == "code" for c in nbformat.read(LESSON, as_version=4).cells))
            notebook = _visible(page)
            errors = notebook.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.all_inner_texts()
            slider = notebook.locator(".widget-slider").first
            expect(slider).to_be_visible(timeout=30_000)
            slider.scroll_into_view_if_needed()
            readout = slider.locator(".widget-readout")
            first = readout.inner_text().strip()
            line = notebook.locator(".jp-OutputArea-output", has_text=f" = {first}: ")
            expect(line.first).to_be_visible(timeout=30_000)
            track = slider.locator(".noUi-target").first  # a click on the track moves the handle there
            box = track.bounding_box()
            track.click(position={"x": box["width"] - 2, "y": box["height"] / 2})
            expect(readout).not_to_have_text(first, timeout=30_000)
            last = readout.inner_text().strip()
            moved = notebook.locator(".jp-OutputArea-output", has_text=f" = {last}: ").first
            expect(moved).to_be_visible(timeout=30_000)
            assert float(last) > float(first), (first, last)

            # an exercise: a wrong answer gets a hint, then the right one gets the tick
            _open(page, course, EXERCISE)
            cells = nbformat.read(Path(course["dir"]) / "course" / EXERCISE, as_version=4).cells
            answer = next(i for i, c in enumerate(cells)
                          if c.metadata.get("nbgrader", {}).get("grade_id") == "00-accuracy-answer")
            first_code = next(i for i, c in enumerate(cells) if c.cell_type == "code")
            _visible(page).locator(".jp-Cell").nth(first_code).locator(".cm-content").click()
            page.keyboard.press("Shift+Enter")
            _wait_idle(page)
            notebook = _visible(page)
            _answer(page, answer, "def accuracy(y_true, y_pred):\n"
                                  "    return (y_pred == y_true).float().sum()\n")
            verdict = notebook.locator(".jp-Cell").nth(answer + 1).locator(".jp-OutputArea-output")
            expect(verdict.first).to_contain_text("✗ 00.accuracy", timeout=30_000)
            _answer(page, answer, "def accuracy(y_true, y_pred):\n"
                                  "    if y_pred.ndim == 2:\n"
                                  "        y_pred = y_pred.argmax(1)\n"
                                  "    return (y_pred == y_true).float().mean().item()\n")
            expect(verdict.first).to_contain_text("✓ 00.accuracy", timeout=30_000)
            assert "True" not in verdict.first.inner_text()
            page.screenshot(path=str(course["dir"] / "exercise00.png"), full_page=False)
            assert (course["dir"] / "exercise00.png").stat().st_size > 10_000

            # the interview drill in 中文: switch the language, reveal one answer
            _drill_in_chinese(page, course)
        finally:
            browser.close()
