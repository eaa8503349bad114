"""Execute notebooks in place, storing fresh outputs (what nbval then compares).

    python scripts/execute_notebooks.py lessons/02_*.ipynb solutions/02_*.ipynb

Runs each notebook in its own folder with the environment the test suite uses
(no progress bars, figures inline) and prints its execution time.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

os.environ["KDLAB_PROGRESS"] = "0"
os.environ.pop("MPLBACKEND", None)


def execute(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    for name in argv:
        seconds = execute(Path(name))
        print(f"{seconds:6.1f} s  {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
