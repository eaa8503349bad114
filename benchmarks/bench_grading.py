"""Time ``kdlab grade`` on a batch: 30 copies of a solution notebook, 2 jobs.

    python benchmarks/bench_grading.py [--quick] [--copies N] [--jobs N]

Every copy runs in its own kernel and all its items are checked, so this is the
cost of a real class. Goal: 30 notebooks in under 3 minutes on a 2-core machine.
Writes ``benchmarks/results/grading.md``.
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

from kdlab.grading import grader

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "solutions" / "00_start_here.ipynb"
GOAL_S = 180.0


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the kernels)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 copies, no results file")
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    copies = 4 if args.quick else args.copies
    work = ROOT / "benchmarks" / "_work" / "grading"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    paths = []
    for i in range(copies):
        folder = work / f"student{i:02d}"  # one folder per learner, as submissions arrive
        folder.mkdir()
        shutil.copy(SOURCE, folder / SOURCE.name)
        paths.append(folder / SOURCE.name)
    load_before = os.getloadavg()[0]
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    results = grader.grade(paths, timeout=120, jobs=args.jobs, progress=True)
    seconds = time.perf_counter() - start
    cpu = (_cpu_seconds() - cpu_before) / copies
    full = sum(r.status == "graded" and r.total == r.max_points for r in results)
    per = [r.seconds for r in results]
    met = ("yes" if seconds < GOAL_S else "no") if copies == 30 else "n/a (not 30)"
    lines = [
        "# Grading benchmark",
        "",
        f"`kdlab grade` on {copies} copies of `solutions/{SOURCE.name}` "
        f"({len(results[0].verdicts)} items each), `--jobs {args.jobs}`.",
        "",
        "| notebooks | jobs | total (s) | per notebook, median (s) | CPU s per notebook "
        "| full marks | goal | met |",
        "|---|---|---|---|---|---|---|---|",
        f"| {copies} | {args.jobs} | {seconds:.1f} | {statistics.median(per):.1f} | {cpu:.1f} | "
        f"{full}/{copies} | < {GOAL_S:.0f} s for 30 | {met} |",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, Python {platform.python_version()}; 1-minute load "
        f"average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the run "
        f"(above {os.cpu_count()} means other work shared the CPUs).",
        "",
        "Each notebook starts its own kernel, imports torch and kdlab, runs its cells and "
        "answers the grader's cases; the median per-notebook time includes that startup. "
        "CPU seconds (grader and kernels, user + system) depend little on other load: "
        "with the CPUs to itself, the batch needs about copies x CPU / cores seconds.",
        "",
        "## Goals",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        f"| grade 30 copies of one notebook with --jobs 2 in under {GOAL_S:.0f} s | "
        f"{seconds:.1f} s for {copies} | {met} |",
        f"| every copy of the solution gets full marks | {full}/{copies} | {'yes' if full == copies else 'no'} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        (ROOT / "benchmarks" / "results" / "grading.md").write_text(text)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if full == copies else 1


if __name__ == "__main__":
    sys.exit(main())
