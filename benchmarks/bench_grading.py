"""Time ``kdlab grade`` on a class: 30 copies of a solution notebook, 2 jobs, each kernel
in its sandbox; then price the sandbox against no sandbox in the same run.

    python benchmarks/bench_grading.py [--quick] [--copies N] [--jobs N] [--compare N] [--notebook PATH]

Every copy runs in its own kernel and all its items are checked, so this is the cost
of a real class. Goal: 30 notebooks in under 3 minutes on a 2-core machine with the
sandbox on. Then ``--compare`` notebooks (default 20) are graded with the sandbox and
as many without, in alternating batches of 5, so that both modes see the same machine
even when other work comes and goes; the difference per submission, in wall time and
in CPU time (the grader's and each kernel's with what it started), is the sandbox's
cost. Writes ``benchmarks/results/grading.md``.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from kdlab.grading import grader, sandbox

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "solutions" / "00_start_here.ipynb"
GOAL_S = 180.0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _cpu_seconds() -> float:
    """User + system CPU time of this process (the grader)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _class(work: Path, copies: int, source: Path) -> list:
    paths = []
    for i in range(copies):
        folder = work / f"student{i:02d}" / "00_start_here"  # submitted/STUDENT/ASSIGNMENT/
        folder.mkdir(parents=True)
        shutil.copy(source, folder / "00_start_here.ipynb")
        paths.append(folder / "00_start_here.ipynb")
    return paths


def _batch(work: Path, copies: int, jobs: int, unsafe: bool, source: Path) -> dict:
    _class(work, copies, source)
    load = os.getloadavg()[0]
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    results = grader.grade(grader.find_submissions([work]), timeout=120, jobs=jobs, progress=True,
                           secret="benchmark", unsafe_no_sandbox=unsafe)
    seconds = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    return {"copies": copies, "seconds": seconds, "median": statistics.median(r.seconds for r in results),
            # the grader's CPU and each kernel's (with what it started), read before it ends
            "cpu": _cpu_seconds() - cpu_before + sum(r.cpu for r in results), "load": load,
            "full": sum(r.status == "graded" and r.total == r.max_points for r in results),
            "items": len(results[0].verdicts), "medians": [r.seconds for r in results]}


def _sum(batches: list) -> dict:
    copies = sum(b["copies"] for b in batches)
    seconds = sum(b["seconds"] for b in batches)
    medians = [m for b in batches for m in b["medians"]]
    return {"copies": copies, "seconds": seconds, "median": statistics.median(medians),
            "cpu": sum(b["cpu"] for b in batches), "load": statistics.mean(b["load"] for b in batches),
            "full": sum(b["full"] for b in batches), "batches": len(batches)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 copies, 4 compared, no results file")
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--compare", type=int, default=20,
                        help="notebooks graded in each mode to price the sandbox (0: none)")
    parser.add_argument("--notebook", type=Path, default=SOURCE,
                        help="the lesson-00 answers every student hands in "
                             "(default: solutions/00_start_here.ipynb)")
    args = parser.parse_args(argv)
    source = args.notebook.resolve()
    if not source.is_file():
        parser.error(f"--notebook must be a notebook file, got {str(args.notebook)!r}")
    copies = 4 if args.quick else args.copies
    compare = 4 if args.quick else args.compare
    work = ROOT / "benchmarks" / "_work" / "grading"
    shutil.rmtree(work, ignore_errors=True)
    print(grader.isolation(False))
    boxed = _batch(work / "class", copies, args.jobs, unsafe=False, source=source)
    rounds = {"sandbox": [], "none": []}
    size = 5 if compare >= 5 else compare
    for index in range(-(-compare // size) if compare else 0):
        order = ["sandbox", "none"] if index % 2 == 0 else ["none", "sandbox"]
        for mode in order:
            rounds[mode].append(_batch(work / f"{mode}{index}", size, args.jobs, unsafe=mode == "none",
                                       source=source))
    load_after = os.getloadavg()[0]
    met = ("yes" if boxed["seconds"] < GOAL_S else "no") if copies == 30 else f"n/a ({copies}, not 30)"
    full_ok = boxed["full"] == copies and all(b["full"] == b["copies"] for r in rounds.values() for b in r)

    def line(name, b):
        return (f"| {name} | {b['copies']} | {args.jobs} | {b['seconds']:.1f} | "
                f"{b['seconds'] / b['copies']:.2f} | {b['median']:.1f} | {b['cpu'] / b['copies']:.2f} | "
                f"{b['full']}/{b['copies']} | {b['load']:.1f} |")

    lines = [
        "# Grading benchmark",
        "",
        f"`kdlab grade` on copies of `{_shown(source)}` ({boxed['items']} items each), "
        f"`--jobs {args.jobs}`, laid out as `submitted/STUDENT/00_start_here/`, each kernel in "
        f"its sandbox ({sandbox.probe()[1] or 'bwrap'}).",
        "",
        "| isolation | notebooks | jobs | total (s) | wall s per notebook | per notebook, median (s) "
        "| CPU s per notebook | full marks | load before |",
        "|---|---|---|---|---|---|---|---|---|",
        line("sandbox, one batch (the goal)", boxed),
    ]
    cost = ""
    if compare:
        box, bare = _sum(rounds["sandbox"]), _sum(rounds["none"])
        wall = box["seconds"] / box["copies"] - bare["seconds"] / bare["copies"]
        cpu = box["cpu"] / box["copies"] - bare["cpu"] / bare["copies"]
        share = 100 * wall / (bare["seconds"] / bare["copies"])
        cost = f"{wall:+.2f} s wall ({share:+.0f}%), {cpu:+.2f} CPU s per submission"
        batches = f"{box['batches']} batch{'es' if box['batches'] != 1 else ''} of {size}"
        lines += [line(f"sandbox, {batches}", box),
                  line(f"none (--unsafe-no-sandbox), {batches}", bare),
                  "",
                  f"The sandbox's cost per submission, from the alternating batches: {cost}. "
                  f"bubblewrap's start (namespaces, a few dozen bind mounts), the copy of the "
                  f"folder into the sandbox's tmpfs and the kernel's fresh `$HOME` are small "
                  f"next to a kernel's start and its imports; on a shared machine the difference "
                  f"is within the noise of other work."]
    lines += [
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, Python {platform.python_version()}; 1-minute load "
        f"average {boxed['load']:.1f} before and {load_after:.1f} after the runs "
        f"(above {os.cpu_count()} means other work shared the CPUs).",
        "",
        "Each notebook starts its own kernel, imports torch and kdlab, runs its cells and "
        "answers the grader's cases; the median per-notebook time includes that startup. "
        "CPU seconds (the grader's, and each kernel's with what it started, read from /proc "
        "before the kernel ends) depend little on other load: with the CPUs to itself, a "
        "batch needs about copies x CPU / cores seconds.",
        "",
        "## Goals",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        f"| grade 30 copies of one notebook with --jobs 2 in under {GOAL_S:.0f} s, sandbox on | "
        f"{boxed['seconds']:.1f} s for {copies} | {met} |",
        f"| every copy gets full marks, sandbox on and off | "
        f"{boxed['full'] + sum(b['full'] for r in rounds.values() for b in r)}/"
        f"{copies + sum(b['copies'] for r in rounds.values() for b in r)} | {'yes' if full_ok else 'no'} |",
    ]
    if compare:
        lines.append(f"| report the sandbox's cost per submission against no sandbox, same run | "
                     f"{cost} | reported |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        (ROOT / "benchmarks" / "results" / "grading.md").write_text(text)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if full_ok else 1


if __name__ == "__main__":
    sys.exit(main())
