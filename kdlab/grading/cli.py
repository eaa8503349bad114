"""``kdlab build-exercises`` and ``kdlab grade``."""
from __future__ import annotations

import os
import sys
import time


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
        description="Run each submitted notebook in its own kernel and grade the items it defines.")
    grade.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="notebooks to grade")
    grade.add_argument("--out", default="grades.csv", help="gradebook CSV (default: grades.csv)")
    grade.add_argument("--feedback", metavar="DIR", help="write one feedback file per submission here")
    grade.add_argument("--timeout", type=float, default=120,
                       help="seconds each notebook may run (default: 120)")
    grade.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default: 1)")
    grade.add_argument("--lesson", help="grade as this lesson (NN) instead of detecting it")
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


def run_grade(args) -> int:
    from kdlab.grading import grader

    start = time.perf_counter()
    try:
        results = grader.grade(args.submissions, timeout=args.timeout, jobs=args.jobs,
                               lesson=args.lesson)
    except (TypeError, ValueError) as err:
        print(f"kdlab grade: {err}", file=sys.stderr)
        return 2
    grader.write_gradebook(results, args.out)
    if args.feedback:
        grader.write_feedback(results, args.feedback)
    print(grader.summary(results, time.perf_counter() - start))
    feedback = f"; feedback: {os.path.join(args.feedback, '')}" if args.feedback else ""
    print(f"gradebook: {args.out}{feedback}")
    return 0
