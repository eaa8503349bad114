"""``kdlab grade``: run submitted notebooks and grade what they define.

For each submission:

1. The notebook runs in its own kernel (``python3`` of this environment, with
   ``KDLAB_PROGRESS=0``), in a temporary copy of its folder (without the other
   notebooks there), every cell in order even after an error, within ``timeout``
   seconds; its outputs are discarded, so a flood of output costs nothing.
2. For each graded item of its lesson, the grader draws the test cases *in its own
   process* (seeded by the item id, so a re-run gives the same grade) and asks the
   kernel to call the learner's function on them. The kernel returns plain data
   only (numbers, strings, tensors), read with ``torch.load(weights_only=True)``.
3. The verdicts are computed in the grader's process with its own import of the
   registry: nothing the notebook did to ``kdlab.grading``, ``check`` or its own
   outputs reaches them, and the grades go from there straight to the gradebook.

What this does not defend against: code that attacks the grader process itself
as the same operating-system user (signals, ``/proc``, ptrace, deleting files
outside its folder). For untrusted submissions run ``kdlab grade`` as a separate
user or in a container.
"""
from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import torch

from kdlab import _validate
from kdlab.grading import _harness, registry

MAX_ANSWER_BYTES = 50 * 2**20

_COLLECT = """\
def _kdlab_collect(spec_path, answers_path, harness):
    import torch
    space = {{}}
    exec(harness, space)
    item_id, name, kind, cases = torch.load(spec_path, weights_only=False)
    user = globals()
    if name in user:
        answer = space["collect"](user[name], kind, cases)
    else:
        answer = ("missing",)
    torch.save(answer, answers_path)
_kdlab_collect({spec!r}, {answers!r}, {harness!r})
del _kdlab_collect
"""


@dataclass
class Result:
    """One graded submission: ``verdicts`` maps item id to :class:`registry.Verdict`."""

    path: str
    status: str = "graded"          # graded | timeout | error
    reason: str = ""
    verdicts: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(v.points for v in self.verdicts.values())

    @property
    def max_points(self) -> float:
        return sum(v.max_points for v in self.verdicts.values())


def _lessons(nb, path: Path, lesson: str | None) -> list:
    """The lessons graded in ``nb``: ``lesson`` if given, else those named by its
    nbgrader ``grade_id``s, else the ``NN_`` prefix of its file name."""
    if lesson is not None:
        return [lesson]
    found = []
    for cell in nb.cells:
        grade_id = str(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", ""))
        match = re.match(r"^(\d\d)-", grade_id)
        if match and match.group(1) not in found and registry.lesson_items(match.group(1)):
            found.append(match.group(1))
    match = re.match(r"^(\d\d)_", path.name)
    if not found and match and registry.lesson_items(match.group(1)):
        found.append(match.group(1))
    return found


def _working_copy(path: Path, root: Path) -> Path:
    """Copy ``path``'s folder into ``root/work``, without other notebooks, hidden
    entries and caches (other submissions stay out of reach)."""
    def ignore(folder, names):
        return [n for n in names if n.startswith(".") or n == "__pycache__"
                or (n.endswith(".ipynb") and Path(folder, n).resolve() != path.resolve())]

    work = root / "work"
    shutil.copytree(path.parent, work, ignore=ignore, symlinks=True)
    return work


def _seed(item_id: str) -> int:
    return zlib.crc32(item_id.encode())


def _client_class():
    from nbclient import NotebookClient

    class QuietClient(NotebookClient):
        """Keeps no outputs: the grader reads objects, not what cells print."""

        def output(self, outs, msg, display_id, cell_index):
            return None

    return QuietClient


def _logger() -> logging.Logger:
    log = logging.getLogger("kdlab.grading.kernel")
    log.propagate = False
    log.addHandler(logging.NullHandler())
    return log


def cell_label(nb, index: int) -> str:
    """A cell as JupyterLab shows it: "code cell N" counted from 1 over code cells only,
    with its nbgrader ``grade_id`` when it has one."""
    n = sum(1 for c in nb.cells[:index + 1] if c.cell_type == "code")
    grade_id = nb.cells[index].get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return f"code cell {n}" + (f" ({grade_id})" if grade_id else "")


def _raised(where: str, ename: str, evalue: str) -> str:
    evalue = evalue.strip()[:120]
    return f"{where} raised {ename}" + (f": {evalue}" if evalue else "")


def _missing_reason(name: str, errors: list) -> str:
    if any(e[1] == "NotImplementedError" for e in errors):
        return registry.NOT_IMPLEMENTED
    # a cell that uses the missing name fails too; that says nothing new
    errors = [e for e in errors if not (e[1] == "NameError" and f"'{name}'" in e[2])]
    if errors:
        return f"{name} is not defined ({_raised(*errors[0])})"
    return f"{name} is not defined: the notebook defines no `{name}`"


def _answers(path: Path):
    if not path.exists():
        raise ValueError("no answers came back")
    if path.stat().st_size > MAX_ANSWER_BYTES:
        raise ValueError("the answers are too large")
    return torch.load(path, weights_only=True)


def _well_formed(outcomes, n: int) -> bool:
    return (isinstance(outcomes, list) and len(outcomes) == n and all(
        isinstance(o, tuple) and ((len(o) == 2 and o[0] == "ok")
                                  or (len(o) == 3 and o[0] == "raised")) for o in outcomes))


async def _run(path: Path, result: Result, items: list, timeout: float, root: Path) -> None:
    """Execute the notebook, then collect and judge every item (fills ``result``)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    work = _working_copy(path, root)
    io_dir = Path(tempfile.mkdtemp(dir=root, prefix="io-"))
    loop = asyncio.get_running_loop()
    deadline = [loop.time() + 3600.0]
    errors, n_cells = [], len(nb.cells)

    def on_executed(cell, cell_index, execute_reply):
        content = execute_reply.get("content", {})
        if content.get("status") == "error" and cell_index < n_cells:  # not the grader's cells
            errors.append((cell_label(nb, cell_index), str(content.get("ename")), str(content.get("evalue"))))

    client = _client_class()(
        nb, kernel_name="python3", allow_errors=True, startup_timeout=60, log=_logger(),
        shutdown_kernel="immediate",
        timeout_func=lambda cell: max(1, int(deadline[0] - loop.time())),
        on_cell_executed=on_executed, resources={"metadata": {"path": str(work)}})
    env = dict(os.environ, KDLAB_PROGRESS="0", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    harness = Path(_harness.__file__).read_text(encoding="utf-8")
    phase = "running the notebook"
    async with client.async_setup_kernel(env=env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL):
        try:
            deadline[0] = loop.time() + timeout
            for index, cell in enumerate(nb.cells):
                await client.async_execute_cell(cell, index, store_history=True)
            phase = "checking the answers"
            deadline[0] = loop.time() + timeout
            for item in items:
                cases = item.cases(_seed(item.id))
                spec, answers = io_dir / f"{item.grade_id}.in", io_dir / f"{item.grade_id}.out"
                torch.save((item.id, item.name, item.kind, cases), spec)
                cell = nbformat.v4.new_code_cell(_COLLECT.format(
                    spec=str(spec), answers=str(answers), harness=harness))
                nb.cells.append(cell)  # nbclient looks cells up by index
                try:
                    await client.async_execute_cell(cell, len(nb.cells) - 1, store_history=False)
                finally:
                    nb.cells.pop()
                result.verdicts[item.id] = _judge(item, cases, answers, errors)
        except CellTimeoutError:
            result.status, result.reason = "timeout", f"timeout: {phase} took over {timeout:g} s"
        except DeadKernelError:
            result.status, result.reason = "error", f"the kernel died while {phase}"
    result.notes = [_raised(*e) for e in errors]


def _judge(item, cases, answers_path: Path, errors: list):
    try:
        outcomes = _answers(answers_path)
    except Exception as err:  # whatever the kernel left there, it earns nothing
        return item._fail(f"could not read the answer ({type(err).__name__}: {str(err)[:100]})")
    if isinstance(outcomes, tuple) and outcomes == ("missing",):
        return item._fail(_missing_reason(item.name, errors))
    if not _well_formed(outcomes, len(cases) if item.kind == "function" else 1):
        return item._fail("the answer came back malformed")
    try:
        return item.judge(cases, outcomes)
    except Exception as err:
        return item._fail(f"could not be checked ({type(err).__name__}: {str(err)[:100]})")


async def _grade_one(path: Path, *, timeout: float, lesson: str | None) -> Result:
    start = time.perf_counter()
    result = Result(str(path))
    try:
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("it has no cells")
    except Exception as err:
        result.status, result.reason = "error", f"not a notebook ({type(err).__name__})"
        for item in (i for l in _lessons(nbformat.v4.new_notebook(), path, lesson)
                     for i in registry.lesson_items(l)):
            result.verdicts[item.id] = item._fail(result.reason)
        return result
    lessons = _lessons(nb, path, lesson)
    if not lessons:
        result.status = "error"
        result.reason = "cannot tell which exercise set this is: no graded cells and no NN_ prefix"
        return result
    items = [item for lesson_id in lessons for item in registry.lesson_items(lesson_id)]
    root = Path(tempfile.mkdtemp(prefix="kdlab-grade-"))
    try:
        # the backstop for a kernel that ignores every deadline
        await asyncio.wait_for(_run(path, result, items, timeout, root), 2 * timeout + 120)
    except asyncio.TimeoutError:
        result.status, result.reason = "timeout", f"timeout: still running after {2 * timeout + 120:g} s"
    except Exception as err:
        result.status, result.reason = "error", f"could not run it ({type(err).__name__}: {str(err)[:120]})"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for item in items:
        if item.id not in result.verdicts:
            result.verdicts[item.id] = item._fail(result.reason or "not graded")
    if result.status == "graded":
        by_message: dict = {}
        for v in result.verdicts.values():
            if not v.passed:
                by_message.setdefault(v.message, []).append(v.item_id)
        result.reason = "; ".join([f"{', '.join(ids)}: {m}" for m, ids in by_message.items()]
                                  + result.notes[:1])
    result.seconds = time.perf_counter() - start
    return result


def grade(paths, *, timeout: float = 120, jobs: int = 1, lesson: str | None = None,
          progress: bool | None = None) -> list:
    """Grade the notebooks ``paths`` (in that order) with up to ``jobs`` kernels at
    once; each notebook gets ``timeout`` seconds to run and as many for its answers
    to be checked. Returns one :class:`Result` per path; never raises for a bad
    submission."""
    from tqdm.auto import tqdm

    paths = [Path(p) for p in paths]
    timeout = _validate.positive_float("timeout", timeout)
    jobs = _validate.positive_int("jobs", jobs)
    if lesson is not None and not registry.lesson_items(lesson):
        raise ValueError(f"lesson must be one of {sorted({i.lesson for i in registry.all_items().values()})}, "
                         f"got {lesson!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # references (and the model cache key) as in the notebooks

    async def main():
        gate = asyncio.Semaphore(jobs)
        # progress=None: a bar only on a terminal
        bar = tqdm(total=len(paths), unit="notebook", disable=None if progress is None else not progress)

        async def one(path):
            async with gate:
                result = await _grade_one(path, timeout=timeout, lesson=lesson)
            bar.update(1)
            return result

        try:
            return await asyncio.gather(*(one(p) for p in paths))
        finally:
            bar.close()

    try:
        return asyncio.run(main())
    finally:
        torch.set_num_threads(threads)


def _columns(results) -> list:
    ids = {i for r in results for i in r.verdicts}
    order = list(registry.all_items())
    return [i for i in order if i in ids]


def _points(value: float) -> str:
    return f"{value:g}"


def write_gradebook(results, out) -> Path:
    """Write the gradebook CSV atomically: one row per submission, a column per item,
    total, max, status, reason."""
    out = Path(out)
    columns = _columns(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["submission", *columns, "total", "max", "status", "reason"])
    for r in results:
        cells = [_points(r.verdicts[c].points) if c in r.verdicts else "" for c in columns]
        writer.writerow([r.path, *cells, _points(r.total), _points(r.max_points), r.status, r.reason])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, out)
    return out


def feedback_name(path: str, paths) -> str:
    """A feedback file name unique among ``paths``: the path below their common
    folder, with ``__`` for each separator."""
    absolute = [os.path.abspath(p) for p in paths]
    base = os.path.commonpath([os.path.dirname(p) for p in absolute]) if absolute else ""
    relative = os.path.relpath(os.path.abspath(path), base)
    return re.sub(r"[\\/]", "__", os.path.splitext(relative)[0]) + ".txt"


def feedback(result: Result) -> str:
    """The feedback text of one submission: points and hints per item."""
    lines = [f"{result.path}: {_points(result.total)}/{_points(result.max_points)} points "
             f"({result.status})"]
    if result.status != "graded":
        lines.append(f"reason: {result.reason}")
    for v in result.verdicts.values():
        lines.append(f"{'✓' if v.passed else '✗'} {v.item_id} ({_points(v.points)}/"
                     f"{_points(v.max_points)}): {v.message}")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def write_feedback(results, folder) -> list:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [r.path for r in results]
    written = []
    for r in results:
        target = folder / feedback_name(r.path, paths)
        target.write_text(feedback(r), encoding="utf-8")
        written.append(target)
    return written


def summary(results, seconds: float | None = None) -> str:
    """A table of the batch for the terminal."""
    width = max([10] + [len(r.path) for r in results])
    lines = [f"{'submission':<{width}}  {'points':>9}  {'status':<8}  reason"]
    for r in results:
        score = f"{_points(r.total)}/{_points(r.max_points)}"
        reason = r.reason if len(r.reason) <= 70 else r.reason[:67] + "..."
        lines.append(f"{r.path:<{width}}  {score:>9}  {r.status:<8}  {reason}")
    counts = {s: sum(r.status == s for r in results) for s in ("graded", "timeout", "error")}
    tail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines.append(f"{len(results)} submissions{took}: {tail}")
    return "\n".join(lines)
