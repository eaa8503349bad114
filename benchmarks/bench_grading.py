"""Time ``kdlab grade`` on a class: 30 copies of a solution notebook, 2 jobs, each kernel
in its sandbox; then the same class without the sandbox, to price the sandbox.

    python benchmarks/bench_grading.py [--quick] [--copies N] [--jobs N] [--compare N]

Every copy runs in its own kernel and all its items are checked, so this is the cost
of a real class. Goal: 30 notebooks in under 3 minutes on a 2-core machine with the
sandbox on. The unsandboxed batch (``--compare`` copies, default as many) runs in the
same process right after, so both see the same machine; the difference per submission
is the sandbox's cost. Writes ``benchmarks/results/grading.md``.
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


def _cpu_seconds() -> float:
    """User + system CPU time of this process (the grader)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _class(work: Path, copies: int) -> list:
    paths = []
    for i in range(copies):
        folder = work / f"student{i:02d}" / "00_start_here"  # submitted/STUDENT/ASSIGNMENT/
        folder.mkdir(parents=True)
        shutil.copy(SOURCE, folder / SOURCE.name)
        paths.append(folder / SOURCE.name)
    return paths


def _batch(work: Path, copies: int, jobs: int, unsafe: bool) -> dict:
    paths = _class(work, copies)
    load = os.getloadavg()[0]
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    results = grader.grade(grader.find_submissions([work]), timeout=120, jobs=jobs, progress=True,
                           secret="benchmark", unsafe_no_sandbox=unsafe)
    seconds = time.perf_counter() - start
    return {"copies": copies, "seconds": seconds, "per": seconds / copies,
            "median": statistics.median(r.seconds for r in results),
            # the grader's CPU and each kernel's (with what it started), read before it ends
            "cpu": (_cpu_seconds() - cpu_before + sum(r.cpu for r in results)) / copies, "load": load,
            "full": sum(r.status == "graded" and r.total == r.max_points for r in results),
            "items": len(results[0].verdicts), "paths": paths}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 copies, no results file")
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--compare", type=int, default=None,
                        help="copies graded without the sandbox (default: --copies; 0: none)")
    args = parser.parse_args(argv)
    copies = 4 if args.quick else args.copies
    compare = copies if args.compare is None else args.compare
    work = ROOT / "benchmarks" / "_work" / "grading"
    shutil.rmtree(work, ignore_errors=True)
    print(grader.isolation(False))
    boxed = _batch(work / "sandboxed", copies, args.jobs, unsafe=False)
    bare = _batch(work / "bare", compare, args.jobs, unsafe=True) if compare else None
    load_after = os.getloadavg()[0]
    met = ("yes" if boxed["seconds"] < GOAL_S else "no") if copies == 30 else "n/a (not 30)"
    full_ok = boxed["full"] == copies and (bare is None or bare["full"] == compare)

    def line(name, b):
        return (f"| {name} | {b['copies']} | {args.jobs} | {b['seconds']:.1f} | {b['per']:.2f} | "
                f"{b['median']:.1f} | {b['cpu']:.1f} | {b['full']}/{b['copies']} | {b['load']:.1f} |")

    lines = [
        "# Grading benchmark",
        "",
        f"`kdlab grade` on copies of `solutions/{SOURCE.name}` ({boxed['items']} items each), "
        f"`--jobs {args.jobs}`, laid out as `submitted/STUDENT/00_start_here/`: first each kernel "
        f"in its sandbox ({sandbox.probe()[1] or 'bwrap'}), then the same class with "
        f"`--unsafe-no-sandbox`, in the same process right after.",
        "",
        "| isolation | notebooks | jobs | total (s) | wall s per notebook | per notebook, median (s) "
        "| CPU s per notebook | full marks | load before |",
        "|---|---|---|---|---|---|---|---|---|",
        line("sandbox", boxed),
    ]
    if bare:
        lines.append(line("none", bare))
    cost = ""
    if bare:
        wall = boxed["per"] - bare["per"]
        cpu = boxed["cpu"] - bare["cpu"]
        cost = (f"{wall:+.2f} s wall ({100 * wall / bare['per']:+.0f}%), {cpu:+.2f} CPU s "
                f"per submission")
        lines += ["", f"The sandbox's cost per submission: {cost}. It is bubblewrap's start (a few "
                      f"namespaces and bind mounts), the copy of the folder into the sandbox's "
                      f"tmpfs and the kernel's fresh `$HOME`; the kernel's own work is the same."]
    lines += [
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, Python {platform.python_version()}; 1-minute load "
        f"average {boxed['load']:.1f} before and {load_after:.1f} after the runs "
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
        f"| grade 30 copies of one notebook with --jobs 2 in under {GOAL_S:.0f} s, sandbox on | "
        f"{boxed['seconds']:.1f} s for {copies} | {met} |",
        f"| every copy of the solution gets full marks | {boxed['full']}/{copies} sandboxed"
        + (f", {bare['full']}/{compare} without" if bare else "") + f" | {'yes' if full_ok else 'no'} |",
    ]
    if bare:
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
