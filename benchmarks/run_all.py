"""Run every benchmark of the repository and write ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py            # everything (about 30-40 minutes on 2 cores)
    python benchmarks/run_all.py --quick    # smoke run of each step, nothing written

Steps, each measured on this machine in this run:

1. ``bench_distill.py``, ``bench_prune.py``, ``bench_grading.py``, ``bench_cli.py`` - each writes its
   own ``results/*.md`` with a "Goals" table;
2. the README's test command (``python -m pytest -n 2 --dist loadscope``), timed as
   a whole, with per-notebook execution times taken from its JUnit report (the sum
   of a notebook's cell times; kernel start-up excluded).

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
BENCHES = ("bench_distill", "bench_prune", "bench_grading", "bench_cli", "bench_realres")
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-run each benchmark, write nothing")
    parser.add_argument("--skip-suite", action="store_true", help="do not run the test suite")
    args = parser.parse_args(argv)
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
        goals.append(("course", f"README test command under {SUITE_GOAL_S / 60:.0f} minutes on 2 cores",
                      f"{seconds:.0f} s (exit {code})", "yes" if seconds < SUITE_GOAL_S and code == 0 else "no"))
        if junit.exists():
            times = notebook_times(junit)
        if times:
            slowest = max(times, key=times.get)
            goals.append(("course", f"no notebook over {NOTEBOOK_GOAL_S:.0f} s",
                          f"slowest {slowest}: {times[slowest]:.1f} s",
                          "yes" if times[slowest] <= NOTEBOOK_GOAL_S else "no"))
    if args.quick:
        return 0 if all(code == 0 for _, code, _ in steps) else 1

    lines = ["# kdlab benchmark results", "",
             f"Measured on {machine()}, started {started}, by `python benchmarks/run_all.py`. "
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
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("wrote benchmarks/RESULTS.md")
    return 0 if all(code == 0 for _, code, _ in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
