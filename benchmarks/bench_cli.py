"""How fast the ``kdlab`` command answers ``--help``, and what it imports to do so.

    python benchmarks/bench_cli.py            # writes benchmarks/results/cli.md
    python benchmarks/bench_cli.py --quick    # 2 runs each, writes results/cli_quick.md

Each command line runs in a fresh Python process (as a learner types it); the
median wall time of the runs is reported. The goal is under 0.5 s: the command
imports torch and the graded items only when a command needs them.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 0.5
COMMANDS = (["--help"], ["lab", "--help"], ["grade", "--help"], ["build-exercises", "--help"])


def seconds(args: list, runs: int, cmd=None) -> list:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd or [sys.executable, "-m", "kdlab.cli", *args], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def torch_imported(args: list) -> bool:
    code = ("import sys\nfrom kdlab.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)" % (args,))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stderr.strip().endswith("True")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    runs = 2 if args.quick else 9
    rows = []
    for cmd in COMMANDS:
        t = seconds(cmd, runs)
        rows.append((" ".join(["kdlab", *cmd]), statistics.median(t), min(t), max(t), torch_imported(cmd)))
        print(f"{rows[-1][0]}: median {rows[-1][1]:.3f} s", flush=True)
    floor = statistics.median(seconds([], runs, [sys.executable, "-c", "pass"]))
    lines = ["# CLI start-up", "", f"Median of {runs} runs, each a fresh process (`python -m kdlab.cli ...`). "
             f"For scale, a bare `python -c pass` took {floor:.3f} s (median) in the same run.", "",
             "## Goals", "", "| goal | measured | met |", "|---|---|---|"]
    lines += [f"| `{name}` answers in under {GOAL_S} s | {med:.3f} s (min {lo:.3f}, max {hi:.3f}); "
              f"torch imported: {torch} | {'yes' if med < GOAL_S else 'no'} |" for name, med, lo, hi, torch in rows]
    out = ROOT / "benchmarks" / "results" / ("cli_quick.md" if args.quick else "cli.md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0 if all(med < GOAL_S for _, med, *_ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
