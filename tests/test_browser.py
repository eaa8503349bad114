"""JupyterLab in a real browser: lesson 02 runs, its temperature slider renders and responds.

Starts JupyterLab on a loopback port with a token, drives Debian's Chromium with
Playwright, and shuts everything down again. Skipped only where no Chromium is
installed and this is not CI (CI installs it and must run this test).
"""
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

LESSON = Path(__file__).resolve().parents[1] / "lessons" / "02_soft_targets.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.browser
if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
    pytestmark = [pytestmark, pytest.mark.skip(reason="needs Debian's chromium (apt install chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout} s")


@pytest.fixture
def lab(tmp_path):
    import psutil

    work = tmp_path / "course"
    work.mkdir()
    shutil.copy(LESSON, work / LESSON.name)
    port, token = _free_port(), secrets.token_hex(16)
    # JupyterLab 4 renders only the visible cells by default; render them all so every
    # output can be checked
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "KDLAB_PROGRESS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={work}", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "jupyter.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    spawned = []
    try:
        _wait_ready(f"{base}/api/status?token={token}", proc)
        yield {"base": base, "token": token, "dir": tmp_path, "proc": proc, "spawned": spawned}
    finally:
        spawned.extend(psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else [])
        try:
            request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(request, timeout=10)
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _, alive = psutil.wait_procs(spawned, timeout=15)
        for p in alive:
            p.kill()
        assert not alive, f"processes left behind: {alive}"


def test_lesson_02_runs_and_its_slider_changes_the_distribution(lab):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{lab['base']}/lab/tree/{LESSON.name}?token={lab['token']}")
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
            # the kernel must be idle before "Run All Cells"
            expect(page.locator(".jp-StatusBar-Widget", has_text="| Idle").first).to_be_visible(timeout=90_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            expected = sum(c.cell_type == "code" for c in nbformat.read(LESSON, as_version=4).cells)
            expect(page.locator(".jp-Notebook .jp-CodeCell")).to_have_count(expected, timeout=60_000)
            deadline = time.time() + 180
            while time.time() < deadline:
                prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
                if all(re.fullmatch(r"\[\d+\]:?", p.strip()) for p in prompts):
                    break
                time.sleep(1)
            else:
                pytest.fail(f"cells did not finish: {prompts}")
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.all_inner_texts()

            slider = page.locator(".jupyter-widgets.widget-slider").first
            expect(slider).to_be_visible(timeout=30_000)
            slider.scroll_into_view_if_needed()
            readout_line = page.locator(".jp-OutputArea-output", has_text="entropy =")
            expect(readout_line.first).to_be_visible(timeout=30_000)
            before = readout_line.first.inner_text()
            readout = slider.locator(".widget-readout")
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("10")
            page.keyboard.press("Enter")
            expect(page.locator(".jp-OutputArea-output", has_text="T = 10.00").first).to_be_visible(timeout=30_000)
            after = page.locator(".jp-OutputArea-output", has_text="T = 10.00").first.inner_text()
            assert before != after
            entropy = lambda text: float(text.split("entropy = ")[1].split()[0])
            assert entropy(after) > entropy(before), (before, after)
            page.screenshot(path=str(lab["dir"] / "lesson02.png"), full_page=False)
            assert (lab["dir"] / "lesson02.png").stat().st_size > 10_000
        finally:
            browser.close()
