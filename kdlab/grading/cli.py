"""``kdlab build-exercises`` and ``kdlab grade``."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

SECRET_ENV = "KDLAB_GRADING_SECRET"


def register(subparsers) -> None:
    build = subparsers.add_parser(
        "build-exercises", help="write exercises/ from solutions/",
        description="Write the exercise notebooks from the solution notebooks: solutions "
                    "become '# YOUR CODE HERE', hidden tests and outputs are removed.")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 and name the stale exercise notebooks")
    build.add_argument("--solutions", default="solutions", help="folder of solution notebooks")
    build.add_argument("--exercises", default="exercises", help="folder of exercise notebooks")
    build.set_defaults(run=run_build)

    grade = subparsers.add_parser(
        "grade", help="grade submitted notebooks",
        description="Run each submitted notebook in its own sandboxed kernel and grade the items "
                    "of its lesson. A rerun skips the submissions already in the gradebook with "
                    "the same notebook and items; Ctrl-C stops cleanly and the next run resumes.")
    grade.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                       help="notebooks, or folders searched for notebooks (e.g. submitted/)")
    grade.add_argument("--lesson", metavar="NN",
                       help="the lesson every submission is graded as (default: the NN_ of the "
                            "assignment folder in ROOT/STUDENT/NN_assignment/, else of the file name)")
    grade.add_argument("--root", metavar="DIR",
                       help="the submissions root: the first folder below it names the student "
                            "(default: the folder given, else the common folder of the notebooks)")
    grade.add_argument("--out", default="grades.csv", help="gradebook CSV (default: grades.csv)")
    grade.add_argument("--feedback", metavar="DIR", help="write one feedback file per submission here")
    grade.add_argument("--excel", action="store_true",
                       help="start the CSV with a UTF-8 byte order mark, for spreadsheets")
    grade.add_argument("--timeout", type=float, default=120,
                       help="seconds each notebook may run, and as many for its answers (default: 120)")
    grade.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default: 1)")
    grade.add_argument("--secret", metavar="TEXT",
                       help=f"keys the grader's test cases (default: ${SECRET_ENV}, else a secret "
                            f"drawn once and kept in .kdlab-grading-secret beside the gradebook)")
    grade.add_argument("--force", action="store_true",
                       help="regrade submissions already in the gradebook")
    grade.add_argument("--memory", type=float, default=8, metavar="GIB",
                       help="address space per process of a kernel, in GiB (default: 8)")
    grade.add_argument("--processes", type=int, default=256, metavar="N",
                       help="processes and threads per kernel's sandbox (default: 256)")
    grade.add_argument("--unsafe-no-sandbox", action="store_true",
                       help="run notebooks without the sandbox, with your own rights: only for "
                            "notebooks you trust")
    grade.set_defaults(run=run_grade)


def run_build(args) -> int:
    from kdlab.grading.build import build

    try:
        changed = build(args.solutions, args.exercises, check=args.check)
    except ValueError as err:
        print(f"kdlab build-exercises: {err}", file=sys.stderr)
        return 2
    if args.check:
        for path in changed:
            print(f"stale: {path} (run kdlab build-exercises)", file=sys.stderr)
        return 1 if changed else 0
    for path in changed:
        print(f"wrote {path}")
    return 0


def _limits(args):
    from kdlab.grading import sandbox

    if isinstance(args.memory, bool) or not args.memory >= 2 or args.memory != args.memory:
        raise ValueError(f"--memory must be a number of GiB >= 2 (a kernel with torch needs "
                         f"that much address space), got {args.memory!r}")
    if not args.processes >= 32:
        raise ValueError(f"--processes must be an integer >= 32 (a kernel runs about 20 "
                         f"threads), got {args.processes!r}")
    return sandbox.Limits(memory=int(args.memory * 2**30), processes=args.processes)


def run_grade(args) -> int:
    try:
        return _grade(args)
    except KeyboardInterrupt:  # Ctrl-C before any kernel started
        print("\nkdlab grade: stopped by SIGINT before grading began; nothing was graded. "
              "Run the same command again to grade.", file=sys.stderr)
        return 128 + signal.SIGINT


def _grade(args) -> int:
    from kdlab.grading import grader

    start = time.perf_counter()
    try:
        limits = _limits(args)
        print(grader.isolation(args.unsafe_no_sandbox, limits), flush=True)
        subs = grader.find_submissions(args.submissions, root=args.root, lesson=args.lesson)
        if args.timeout != args.timeout or args.timeout <= 0:
            raise ValueError(f"--timeout must be a number of seconds > 0, got {args.timeout!r}")
        if args.jobs < 1:
            raise ValueError(f"--jobs must be an integer >= 1, got {args.jobs!r}")
        out = Path(args.out)
        if out.exists() and not out.is_file():
            raise ValueError(f"--out must be a file, got the folder {args.out!r}")
        old_rows = grader.read_gradebook(out)
        secret = args.secret or os.environ.get(grader.SECRET_ENV) or grader.read_secret(
            out.resolve().parent)
        if args.secret is not None and not args.secret.strip():
            raise ValueError("--secret must not be empty")
    except (TypeError, ValueError) as err:
        print(f"kdlab grade: {err}", file=sys.stderr)
        return 2
    # resume: skip what this gradebook already holds for the same notebook and items
    by_path = {r["submission"]: r for r in old_rows}
    todo, kept = [], []
    for sub in subs:
        sub.sha256 = grader._digest(sub.path)
        old = by_path.get(sub.relative)
        same = (old is not None and old.get("sha256") == sub.sha256
                and old.get("status") in grader.STATUSES
                and grader.row_items(old) == {i.id for i in grader.registry.lesson_items(sub.lesson)}
                and not (grader.UNSANDBOXED in old.get("flags", "").split() and not args.unsafe_no_sandbox))
        if same and not args.force:
            kept.append(old)
        else:
            todo.append(sub)
    rows = list(old_rows)
    if kept:
        print(f"{len(kept)} of {len(subs)} submissions already graded in {args.out} "
              f"(same notebook, same items): skipped; --force regrades them", flush=True)

    def on_result(result):
        nonlocal rows
        rows = grader.merge(rows, [grader.row(result)])
        grader.write_gradebook(rows, out, excel=args.excel)
        if args.feedback:
            grader.write_feedback([result], args.feedback)

    try:
        results = grader.grade(todo, timeout=args.timeout, jobs=args.jobs, secret=secret,
                               unsafe_no_sandbox=args.unsafe_no_sandbox, limits=limits,
                               on_result=on_result)
    except grader.Stopped as stop:
        left = len(todo) - len(stop.results)
        print(f"\nkdlab grade: stopped by {signal.Signals(stop.signum).name}: {len(stop.results)} "
              f"submission(s) graded in this run and kept in {args.out}; {left} not graded "
              f"(the ones in progress were dropped, not scored). Run the same command again to "
              f"grade the rest.", file=sys.stderr)
        return 128 + stop.signum
    except (TypeError, ValueError) as err:
        print(f"kdlab grade: {err}", file=sys.stderr)
        return 2
    if not todo:
        grader.write_gradebook(rows, out, excel=args.excel)  # the same rows, in the chosen format
    if args.feedback:
        missing = [r for r in kept
                   if not (Path(args.feedback) / grader.feedback_file(r["submission"])).exists()]
        grader.write_feedback(missing, args.feedback)
    print(grader.summary(results, time.perf_counter() - start))
    feedback = f"; feedback: {args.feedback.rstrip(os.sep) or os.sep}/" if args.feedback else ""
    print(f"gradebook: {args.out}{feedback}")
    return 0
