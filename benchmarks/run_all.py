"""Run every benchmark of the repository and write ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py            # everything (about 30-40 minutes on 2 cores)
    python benchmarks/run_all.py --quick    # smoke run of each step, nothing written

Steps, each measured on this machine in this run:

1. ``bench_distill.py``, ``bench_prune.py``, ``bench_grading.py``, ``bench_cli.py``, ``bench_realres.py``,
   ``bench_quantize.py`` - each writes its
   own ``results/*.md`` with a "Goals" table;
2. the README's test command (``python -m pytest -n 2 --dist loadscope``), timed as
   a whole, with per-notebook execution times taken from its JUnit report (the sum
   of a notebook's cell times; kernel start-up excluded);
3. every lesson with ``DATASET = "mnist-5k"``: a copy of the notebook with its parameter
   cell changed, executed with nbclient and never saved over the lesson; a lesson whose
   parameter cell does not name mnist-5k is listed as "digits only". Table (lesson,
   result, seconds) in ``results/lessons_mnist5k.md`` and in ``RESULTS.md``.

    python benchmarks/run_all.py --lessons-only 01 07   # step 3 alone, on lessons 01 and 07
    python benchmarks/run_all.py --collect --junit suite.xml   # RESULTS.md from the results/*.md
                                                                # already written, nothing run

``RESULTS.md`` collects every goal row (goal, measured, met), the machine, the
per-notebook times with a plot, and links to the plots of each benchmark.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCHES = ("bench_distill", "bench_prune", "bench_grading", "bench_cli", "bench_realres", "bench_quantize")
SUITE_GOAL_S = 600.0
NOTEBOOK_GOAL_S = 60.0


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.system()} {platform.release()}")


def run(cmd: list, log: Path) -> tuple:
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return code, time.perf_counter() - start


def goal_rows(markdown: str) -> list:
    """Rows of the table under a "Goals" heading: ``(goal, measured, met)``."""
    rows, inside = [], False
    for line in markdown.splitlines():
        if line.startswith("#"):
            inside = "goal" in line.lower()
            continue
        if inside and line.startswith("|") and not set(line) <= set("|-: "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0].lower() != "goal" and len(cells) >= 3:
                rows.append((cells[0], cells[1], cells[-1]))
    return rows


def notebook_times(junit: Path) -> dict:
    times = defaultdict(float)
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("classname", "") + "::" + case.get("name", "")
        match = re.search(r"((?:lessons|solutions)[/.][^:]+?)(?:\.ipynb|::)", name)
        if match and "Cell" in case.get("name", ""):
            key = match.group(1).replace(".", "/", 1) if "/" not in match.group(1) else match.group(1)
            times[key.removesuffix(".ipynb")] += float(case.get("time", 0))
    return dict(sorted(times.items()))


def plot_notebook_times(times: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(times)
    fig, ax = plt.subplots(figsize=(8, max(3, 0.22 * len(names))))
    ax.barh(names, [times[n] for n in names], color=["tab:blue" if n.startswith("lessons") else "tab:orange"
                                                     for n in names])
    ax.axvline(NOTEBOOK_GOAL_S, color="red", linestyle="--", label=f"budget {NOTEBOOK_GOAL_S:.0f} s")
    ax.set_xlabel("seconds (sum of cell times under nbval, 2 workers)")
    ax.invert_yaxis()
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parameter_cell(nb):
    """The cell tagged ``parameters`` of a notebook, or None."""
    return next((c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)


def run_lesson(path: Path, dataset: str = "mnist-5k", timeout: int = 1800) -> tuple:
    """Execute a copy of the lesson at ``path`` with ``DATASET = dataset``: ``(result, seconds)``.

    ``result`` is ``"pass"`` or ``"fail: <error>"``; when the ``DATASET`` line of the
    parameter cell (its value or its comment) does not name ``dataset``, nothing runs,
    ``seconds`` is None and ``result`` says which data the lesson runs on instead. The copy is executed in the lesson's folder and
    discarded; the lesson file is never written.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    cell = parameter_cell(nb)
    pattern = re.compile(r'^DATASET\s*=\s*["\'][^"\']*["\']', re.M)
    line = next((l for l in (cell.source.splitlines() if cell else []) if pattern.match(l)), "")
    if not line:
        return "no DATASET parameter", None
    if dataset not in line:   # the DATASET line (value or comment) names the datasets the lesson supports
        sections = any(f'"{dataset}"' in c.source for c in nb.cells if c.cell_type == "code")
        return (f"digits; its {dataset} section runs in every test run" if sections else "digits only"), None
    cell.source = pattern.sub(f'DATASET = "{dataset}"', cell.source, count=1)
    env = {"KDLAB_PROGRESS": os.environ.get("KDLAB_PROGRESS")}
    os.environ["KDLAB_PROGRESS"] = "0"
    mpl = os.environ.pop("MPLBACKEND", None)
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        result = "pass"
    except Exception as error:  # a failing cell, a timeout or a dead kernel: reported, not raised
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
        last = (text.splitlines() or [type(error).__name__])[-1]
        result = f"fail: {type(error).__name__}: {last[:120]}"
    finally:
        if env["KDLAB_PROGRESS"] is None:
            os.environ.pop("KDLAB_PROGRESS", None)
        else:
            os.environ["KDLAB_PROGRESS"] = env["KDLAB_PROGRESS"]
        if mpl is not None:
            os.environ["MPLBACKEND"] = mpl
    return result, time.perf_counter() - start


def lessons_on_mnist5k(numbers=None) -> list:
    """Step 3: ``(lesson, result, seconds)`` for every lesson (or those whose number is in ``numbers``)."""
    rows = []
    for path in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb")):
        if numbers and path.name[:2] not in numbers:
            continue
        result, seconds = run_lesson(path)
        rows.append((path.stem, result, seconds))
        print(f"{path.stem} with mnist-5k: {result}" + (f" in {seconds:.0f} s" if seconds is not None else ""),
              flush=True)
    return rows


def lessons_goal(results: list) -> tuple:
    """The goal row of step 3 from each lesson's result."""
    ran = [r for r in results if r == "pass" or r.startswith("fail")]
    failed = [r for r in ran if r.startswith("fail")]
    sections = sum(1 for r in results if "section runs" in r)
    return ("course", "every lesson that names mnist-5k runs end to end with it",
            f"{len(ran) - len(failed)} of {len(ran)} pass; {sections} more run a mnist-5k section within the "
            f"digits lesson; {len(results) - len(ran) - sections} digits (or other data) only",
            "yes" if not failed else "no")


def lessons_table(rows) -> list:
    lines = ["## Lessons with `DATASET = \"mnist-5k\"`", "",
             "Each lesson whose parameter cell names mnist-5k, executed as a copy with that dataset (nbclient, "
             "one kernel at a time, wall seconds on this machine). The others run on the 8x8 digits; those with a "
             "real-resolution section run it on mnist-5k inside the digits lesson, so the test suite runs it.", "",
             "| lesson | result | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {result.replace('|', '/')} | {'-' if s is None else f'{s:.0f}'} |" for name, result, s in rows]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-run each benchmark, write nothing")
    parser.add_argument("--skip-suite", action="store_true", help="do not run the test suite")
    parser.add_argument("--skip-lessons", action="store_true", help="do not run the lessons with mnist-5k")
    parser.add_argument("--lessons-only", nargs="*", metavar="NN", default=None,
                        help="run only step 3 (all lessons, or those numbered NN) and write results/lessons_mnist5k.md")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: rebuild RESULTS.md from results/*.md (and --junit, a JUnit report of the "
                             "README test command, for its time and the notebook times)")
    parser.add_argument("--junit", type=Path, help="with --collect: the JUnit XML of a run of the README test command")
    args = parser.parse_args(argv)
    if args.collect:
        return collect(args.junit)
    if args.lessons_only is not None:
        rows = lessons_on_mnist5k(set(args.lessons_only))
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "lessons_mnist5k.md").write_text("\n".join(lessons_table(rows)) + "\n")
        print("wrote benchmarks/results/lessons_mnist5k.md")
        return 0 if all(not r.startswith("fail") for _, r, _ in rows) else 1
    logs = ROOT / "benchmarks" / "_work"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    steps, goals = [], []
    for bench in BENCHES:
        cmd = [sys.executable, f"benchmarks/{bench}.py"] + (["--quick"] if args.quick else [])
        code, seconds = run(cmd, logs / f"{bench}.log")
        steps.append((bench, code, seconds))
        print(f"{bench}: exit {code} in {seconds:.0f} s", flush=True)
        result = RESULTS / f"{bench.removeprefix('bench_')}.md"
        if not args.quick and result.exists():
            goals += [(bench.removeprefix("bench_"), *row) for row in goal_rows(result.read_text())]

    times = {}
    if not args.skip_suite:
        junit = logs / "suite.xml"
        cmd = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadscope", "-q", f"--junitxml={junit}"]
        if args.quick:
            cmd += ["tests/test_data.py"]
        code, seconds = run(cmd, logs / "suite.log")
        steps.append(("README test command", code, seconds))
        print(f"test suite: exit {code} in {seconds:.0f} s", flush=True)
        if junit.exists():
            times = notebook_times(junit)
        goals += suite_goals(seconds, code, times)
    lesson_rows = []
    if not args.skip_lessons and not args.quick:
        start = time.perf_counter()
        lesson_rows = lessons_on_mnist5k()
        failed = [name for name, result, _ in lesson_rows if result.startswith("fail")]
        steps.append(("lessons with mnist-5k", len(failed), time.perf_counter() - start))
        (RESULTS / "lessons_mnist5k.md").write_text("\n".join(lessons_table(lesson_rows)) + "\n")
        goals.append(lessons_goal([result for _, result, _ in lesson_rows]))
    if args.quick:
        return 0 if all(code == 0 for _, code, _ in steps) else 1

    write_results(f"started {started}, by `python benchmarks/run_all.py`", goals, steps, times,
                  lessons_table(lesson_rows) if lesson_rows else [])
    return 0 if all(code == 0 for _, code, _ in steps) else 1


def suite_goals(seconds: float, code, times: dict) -> list:
    """The course's goal rows for a run of the README test command."""
    goals = [("course", f"README test command under {SUITE_GOAL_S / 60:.0f} minutes on 2 cores",
              f"{seconds:.0f} s (exit {code})", "yes" if seconds < SUITE_GOAL_S and code == 0 else "no")]
    if times:
        slowest = max(times, key=times.get)
        goals.append(("course", f"no notebook over {NOTEBOOK_GOAL_S:.0f} s",
                      f"slowest {slowest}: {times[slowest]:.1f} s",
                      "yes" if times[slowest] <= NOTEBOOK_GOAL_S else "no"))
    return goals


def collect(junit: Path | None) -> int:
    """RESULTS.md from the results/*.md each benchmark wrote last and, if given, a JUnit
    report of the README test command; nothing is run."""
    goals, steps, times = [], [], {}
    for bench in BENCHES:
        result = RESULTS / f"{bench.removeprefix('bench_')}.md"
        if result.exists():
            goals += [(bench.removeprefix("bench_"), *row) for row in goal_rows(result.read_text())]
    if junit is not None:
        root = ET.parse(junit).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        times = notebook_times(junit)
        goals += suite_goals(float(suite.get("time", 0)), failed, times)
        steps.append(("README test command (failures + errors as exit)", failed, float(suite.get("time", 0))))
    lessons = RESULTS / "lessons_mnist5k.md"
    if lessons.exists():
        goals.append(lessons_goal([line.split("|")[2].strip() for line in lessons.read_text().splitlines()
                                   if line.startswith("| ") and not line.startswith("| lesson")]))
    write_results("collected from the reports each benchmark wrote last (`python benchmarks/run_all.py --collect`)",
                  goals, steps, times, lessons.read_text().splitlines() if lessons.exists() else [])
    return 0


def write_results(how: str, goals: list, steps: list, times: dict, lesson_lines: list) -> None:
    lines = ["# kdlab benchmark results", "",
             f"Measured on {machine()}, {how}. "
             "Absolute times belong to this machine; ratios were measured side by side in the same run.", "",
             "## Goals", "", "| area | goal | measured | met |", "|---|---|---|---|"]
    lines += [f"| {area} | {goal} | {measured} | {met} |" for area, goal, measured, met in goals]
    lines += ["", "## Steps", "", "| step | exit | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {code} | {seconds:.0f} |" for name, code, seconds in steps]
    lines += ["", "Details and plots of each benchmark:", ""]
    for bench in BENCHES:
        name = bench.removeprefix("bench_")
        lines.append(f"- [{name}](results/{name}.md)")
    for png in sorted(RESULTS.glob("*.png")):
        if not png.stem.endswith("_quick") and png.name != "notebook_times.png":
            lines.append(f"\n![{png.stem}](results/{png.name})")
    if times:
        plot_notebook_times(times, RESULTS / "notebook_times.png")
        lines += ["", "## Notebook execution times", "",
                  "Sum of cell times of each notebook in the test run above (nbval, 2 workers in parallel).", "",
                  "| notebook | seconds |", "|---|---|"]
        lines += [f"| {name} | {seconds:.1f} |" for name, seconds in times.items()]
        lines += ["", "![notebook times](results/notebook_times.png)"]
    if lesson_lines:
        lines += [""] + lesson_lines
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    sys.exit(main())
