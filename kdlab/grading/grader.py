"""``kdlab grade``: run submitted notebooks and grade what they define.

For each submission:

1. The assignment is the instructor's: ``--lesson NN``, else the assignment folder of
   an nbgrader layout (``submitted/STUDENT/NN_name/notebook.ipynb``), else the
   ``NN_`` prefix of the file name the instructor asked for. A notebook whose own
   cells say another lesson is graded for that one and flagged.
2. The notebook runs in its own kernel, in a sandbox (:mod:`kdlab.grading.sandbox`):
   a copy of its folder without the other notebooks and submissions, no network,
   no other process, nothing of the grader, limits on memory, processes and files.
   Every cell runs in order even after an error, within ``timeout`` seconds; the
   outputs are discarded, so a flood of output costs nothing.
3. For each graded item of the lesson the grader draws the test cases *in its own
   process*, seeded by the item id and the instructor's secret (learners cannot
   reproduce them; a rerun with the same secret gives the same grade), and asks the
   kernel to call the learner's function on them. The kernel returns plain data
   only (numbers, strings, tensors), read with ``torch.load(weights_only=True)``.
4. The verdicts are computed in the grader's process with its own import of the
   registry: nothing the notebook did to ``kdlab.grading``, ``check`` or its own
   outputs reaches them. Text that comes from the notebook (exception messages)
   is cleaned of control characters and quoted in «...» wherever it is shown.

The grader writes only the gradebook, the feedback files and the secret file,
never through a symbolic link, and its temporary folder, which a later run
removes if this one was killed.
"""
from __future__ import annotations

import asyncio
import csv
import errno
import fcntl
import hashlib
import hmac
import io
import logging
import os
import re
import secrets as _secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import tokenize
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import torch

from kdlab import _validate
from kdlab.grading import _harness, registry, sandbox

MAX_ANSWER_BYTES = 50 * 2**20
MAX_NOTEBOOK_BYTES = 64 * 2**20
TEMP_PREFIX = "kdlab-grade-"
SECRET_FILE = ".kdlab-grading-secret"
SECRET_ENV = sandbox.SECRET_ENV
STATUSES = ("graded", "timeout", "error")

# flags: what an instructor may want to look at, in the gradebook's flags column
OTHER_LESSON = "other-lesson"        # other-lesson:NN, the lesson the notebook's cells are
INTERNALS = "grader-internals"       # used kdlab's graded items, references or solutions
MEMORY = "memory-limit"
PROCESSES = "process-limit"
FILES = "file-limit"
NETWORK = "network"
UNSANDBOXED = "unsandboxed"

FLAG_TEXT = {
    INTERNALS: "the notebook reaches into the grader (kdlab.grading's items, references, "
               "target() or solutions/); such answers earn nothing",
    MEMORY: "the notebook hit the memory limit",
    PROCESSES: "the notebook hit the limit on processes",
    FILES: "the notebook hit the limit on file sizes",
    NETWORK: "the notebook tried to use the network, which grading does not give it",
    UNSANDBOXED: "graded without the sandbox (--unsafe-no-sandbox)",
}

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


class SandboxUnavailable(ValueError):
    """No sandbox can be made here and ``unsafe_no_sandbox`` was not given."""


class Stopped(Exception):
    """SIGINT or SIGTERM stopped the batch: ``results`` holds the submissions graded
    before it; the ones in progress were dropped, not graded."""

    def __init__(self, signum: int, results: list):
        self.signum, self.results = signum, results
        super().__init__(f"stopped by {signal.Signals(signum).name}")


class _Interrupt(BaseException):
    def __init__(self, signum: int):
        self.signum = signum


# ---------------------------------------------------------------- cleaning learner text

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def clean(text) -> str:
    """``text`` on one line, without ANSI escapes, control or invisible formatting
    characters (a newline becomes " ⏎ ")."""
    text = _ANSI.sub("", str(text))
    out = []
    for ch in text:
        if ch in "\r\n\u2028\u2029\x85":
            out.append(" ⏎ ")
        elif ch == "\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue
        else:
            out.append(ch)
    return "".join(out)


def quote(text, limit: int = 120) -> str:
    """Learner-produced text, cleaned, shortened and marked: «...»."""
    text = clean(text).strip().replace("«", "‹").replace("»", "›")
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"«{text}»"


def _name(text) -> str:
    """An exception's type name as the notebook gave it, reduced to a Python name."""
    name = clean(text).strip()
    if re.fullmatch(r"[A-Za-z_][\w.]{0,59}", name):
        return name
    return f"an exception named {quote(name, 60)}"


# ---------------------------------------------------------------- submissions

@dataclass
class Submission:
    """One notebook to grade: where it is, whose it is and which lesson it answers."""

    path: Path
    relative: str
    student: str
    lesson: str
    fixed_by: str
    sha256: str = ""


def _notebooks(path: Path) -> list:
    if path.is_dir():
        return sorted(p for p in path.rglob("*.ipynb")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    return [path]


def _lesson_ids() -> list:
    return sorted({item.lesson for item in registry.all_items().values()})


def _lesson_of_name(name: str):
    match = re.match(r"^(\d\d)(?:_|$|[^0-9])", name)
    if match and registry.lesson_items(match.group(1)):
        return match.group(1)
    return None


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def find_submissions(paths, *, root=None, lesson: str | None = None) -> list:
    """The notebooks named by ``paths`` (notebooks, or folders searched for ``*.ipynb``),
    each with its student, its path relative to the submissions root and its lesson.

    The root is ``root``, else the one folder given, else the common folder of the
    notebooks. The student is the first folder below the root (or the file stem for
    a notebook directly in it). The lesson is ``lesson``, else the assignment folder
    of ``ROOT/STUDENT/NN_assignment/notebook.ipynb``, else the file name's ``NN_``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if lesson is not None:
        _check_lesson(lesson)
    for p in paths:
        if not p.exists():
            raise ValueError(f"SUBMISSION {str(p)!r} does not exist; give notebooks or folders of notebooks")
    notebooks, seen = [], set()
    for p in paths:
        for nb in _notebooks(p):
            key = nb.resolve()
            if key not in seen:
                seen.add(key)
                notebooks.append(nb)
    if not notebooks:
        raise ValueError(f"SUBMISSION {' '.join(map(str, paths))!r} holds no notebook (*.ipynb)")
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"root must be a folder, got {str(root)!r}")
    elif len(paths) == 1 and paths[0].is_dir():
        root = paths[0]
    else:
        root = Path(os.path.commonpath([str(nb.resolve().parent) for nb in notebooks]))
    root = root.resolve()
    found = []
    for nb in notebooks:
        try:
            relative = nb.resolve().relative_to(root)
        except ValueError:
            raise ValueError(f"root {str(root)!r} must hold every submission; {str(nb)!r} is outside it") from None
        parts = relative.parts
        student = parts[0] if len(parts) > 1 else nb.stem
        if lesson is not None:
            fixed, by = lesson, "--lesson"
        elif len(parts) >= 3 and _lesson_of_name(parts[-2]):
            fixed, by = _lesson_of_name(parts[-2]), "assignment folder"
        elif _lesson_of_name(nb.name):
            fixed, by = _lesson_of_name(nb.name), "file name"
        else:
            raise ValueError(
                f"cannot tell which lesson {str(nb)!r} answers: pass --lesson NN (one of "
                f"{', '.join(_lesson_ids())}), or lay submissions out as ROOT/STUDENT/NN_assignment/"
                f"NOTEBOOK.ipynb or name them NN_*.ipynb")
        found.append(Submission(nb, relative.as_posix(), student, fixed, by))
    return found


def _check_lesson(lesson) -> str:
    if not isinstance(lesson, str) or not registry.lesson_items(lesson):
        raise ValueError(f"lesson must be one of {', '.join(_lesson_ids())}, got {lesson!r}")
    return lesson


# ---------------------------------------------------------------- a result

@dataclass
class Result:
    """One graded submission: ``verdicts`` maps item id to :class:`registry.Verdict`."""

    path: str
    status: str = "graded"          # graded | timeout | error
    reason: str = ""
    verdicts: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    flags: list = field(default_factory=list)
    student: str = ""
    submission: str = ""
    lesson: str = ""
    sha256: str = ""
    cpu: float = 0.0                # CPU seconds of the kernel and what it started

    @property
    def total(self) -> float:
        return sum(v.points for v in self.verdicts.values())

    @property
    def max_points(self) -> float:
        return sum(v.max_points for v in self.verdicts.values())


def _flag(result: Result, flag: str) -> None:
    if flag not in result.flags:
        result.flags.append(flag)


def _other_lessons(nb, lesson: str) -> list:
    """The lessons the notebook's nbgrader ``grade_id``s name, other than ``lesson``."""
    found = []
    for cell in nb.cells:
        grade_id = str(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", ""))
        match = re.match(r"^(\d\d)-", grade_id)
        if match and match.group(1) != lesson and match.group(1) not in found:
            found.append(match.group(1))
    return found


_INTERNAL_NAMES = {"all_items", "lesson_items", "by_grade_id"}


def _code_without_comments(source: str) -> tuple:
    """(code with strings blanked, the string literals) of a cell; comments dropped."""
    code, strings = [], []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                continue
            if token.type == tokenize.STRING:
                strings.append(token.string)
                code.append('""')
            else:
                code.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return re.sub(r"#[^\n]*", "", source), re.findall(r"'[^'\n]*'|\"[^\"\n]*\"", source)
    return " ".join(code), strings


def reaches_into_grader(nb) -> str | None:
    """Where the notebook's code uses kdlab's graded items, references or solutions
    (``None`` when it does not): anything of ``kdlab.grading`` but ``check``, the
    registry's lookups, or a path into ``solutions/``."""
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        code, strings = _code_without_comments(str(cell.get("source", "")))
        code = re.sub(r"\s*\.\s*", ".", code)
        hit = None
        for match in re.finditer(r"\bfrom[ \t]+kdlab\.grading(\.\w+)?[ \t]+import[ \t]+(\([^)]*\)|[\w \t,*]+)", code):
            names = set(re.findall(r"\w+", match.group(2))) - {"as"}
            if match.group(1) or names - {"check"}:
                hit = "imports from kdlab.grading more than check"
        if re.search(r"\bgrading\.(?!check\b)\w+", code):
            hit = hit or "uses kdlab.grading beyond check"
        if re.search(r"\bimport[ \t]+kdlab\.grading\b", code) and re.search(
                r"\.(registry|get|items|all_items|lesson_items|by_grade_id)\b", code):
            hit = hit or "uses kdlab.grading beyond check"
        if set(re.findall(r"\w+", code)) & _INTERNAL_NAMES:
            hit = hit or "looks graded items up"
        for literal in strings:
            text = literal.strip("rbfuRBFU").strip("'\"")
            if re.search(r"grading[./\\]items|(^|[/\\])solutions([/\\]|$)", text):
                hit = hit or "names kdlab's graded items or solutions folder"
        if hit:
            return f"{cell_label(nb, index)} {hit}"
    return None


_ERROR_FLAGS = [
    (INTERNALS, re.compile(r"cannot be imported by a notebook being graded")),
    (MEMORY, re.compile(r"^MemoryError|can't allocate memory|Cannot allocate memory|bad_alloc|"
                        r"DefaultCPUAllocator|out of memory", re.I)),
    (PROCESSES, re.compile(r"^BlockingIOError|Resource temporarily unavailable|can't start new thread")),
    (FILES, re.compile(r"File too large|No space left on device")),
    (NETWORK, re.compile(r"^(ConnectionRefusedError|ConnectionError|gaierror|URLError|socket\.gaierror)|"
                         r"Network is unreachable|Temporary failure in name resolution|"
                         r"Name or service not known|Connection refused")),
]


def _flags_of(ename: str, evalue: str) -> list:
    text = f"{ename}: {evalue}"
    return [flag for flag, pattern in _ERROR_FLAGS if pattern.search(text)]


# ---------------------------------------------------------------- running one notebook

def _checking_cells(nb, items) -> dict:
    """Cell index -> the items whose nbgrader ``grade_id`` that code cell carries (the
    last such cell when there are several)."""
    by_grade_id = {item.grade_id: item for item in items}
    last = {}
    for index, cell in enumerate(nb.cells):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and grade_id in by_grade_id:
            last[grade_id] = index
    out: dict = {}
    for grade_id, index in last.items():
        out.setdefault(index, []).append(by_grade_id[grade_id])
    return out


def cell_label(nb, index: int) -> str:
    """A cell as JupyterLab shows it: "code cell N" counted from 1 over code cells only,
    with its nbgrader ``grade_id`` when it has one."""
    n = sum(1 for c in nb.cells[:index + 1] if c.cell_type == "code")
    grade_id = nb.cells[index].get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return f"code cell {n}" + (f" ({clean(grade_id)})" if grade_id else "")


def _raised(where: str, ename: str, evalue: str) -> str:
    evalue = clean(evalue).strip()
    return f"{where} raised {_name(ename)}" + (f": {quote(evalue)}" if evalue else "")


def _missing_reason(name: str, errors: list) -> str:
    if any(e[1] == "NotImplementedError" for e in errors):
        return registry.NOT_IMPLEMENTED
    # a cell that uses the missing name fails too; that says nothing new
    errors = [e for e in errors if not (e[1] == "NameError" and f"'{name}'" in e[2])]
    if errors:
        return f"{name} is not defined ({_raised(*errors[0])})"
    return f"{name} is not defined: the notebook defines no `{name}`"


def _answers(path: Path):
    """The kernel's answers, read without following a link and without running code."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ValueError("no answers came back") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ValueError("the answers are a link, not a file") from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("the answers are not a file")
        if info.st_size > MAX_ANSWER_BYTES:
            raise ValueError("the answers are too large")
        data = f.read(MAX_ANSWER_BYTES + 1)
    if len(data) > MAX_ANSWER_BYTES:
        raise ValueError("the answers are too large")
    return torch.load(io.BytesIO(data), weights_only=True)


def _well_formed(outcomes, n: int) -> bool:
    return (isinstance(outcomes, list) and len(outcomes) == n and all(
        isinstance(o, tuple) and ((len(o) == 2 and o[0] == "ok")
                                  or (len(o) == 3 and o[0] == "raised")) for o in outcomes))


def _cleaned(outcomes: list) -> list:
    """Outcomes with the notebook's exception names and messages cleaned and quoted."""
    out = []
    for o in outcomes:
        if o[0] == "raised":
            name = str(o[1])
            out.append(("raised", name if name == "NotImplementedError" else _name(name),
                        quote(o[2], 200)))
        elif isinstance(o[1], tuple) and len(o[1]) == 2 and o[1][0] == "unsupported":
            out.append(("ok", ("unsupported", _name(o[1][1]))))
        else:
            out.append(o)
    return out


def _is_missing(answers_path: Path) -> bool:
    """Whether the kernel reported the answer's name as not defined."""
    try:
        outcomes = _answers(answers_path)
    except Exception:
        return False  # judged (and failed) as it is
    return isinstance(outcomes, tuple) and outcomes == ("missing",)


def _judge(item, cases, answers_path: Path, errors: list, flags: list | None = None):
    try:
        outcomes = _answers(answers_path)
    except Exception as err:  # whatever the kernel left there, it earns nothing
        return item._fail(f"could not read the answer ({type(err).__name__}: {clean(str(err))[:100]})")
    if isinstance(outcomes, tuple) and outcomes == ("missing",):
        return item._fail(_missing_reason(item.name, errors))
    if not _well_formed(outcomes, len(cases) if item.kind == "function" else 1):
        return item._fail("the answer came back malformed")
    if flags is not None:
        for o in outcomes:
            if o[0] == "raised":
                flags.extend(_flags_of(str(o[1]), str(o[2])))
    try:
        return item.judge(cases, _cleaned(outcomes))
    except Exception as err:
        return item._fail(f"could not be checked ({type(err).__name__}: {clean(str(err))[:100]})")


def seed(secret: str, item_id: str) -> int:
    """The seed of the grader's cases of ``item_id``: keyed by the instructor's secret."""
    digest = hmac.new(secret.encode(), item_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _client_class():
    from nbclient import NotebookClient

    class QuietClient(NotebookClient):
        """Keeps no outputs: the grader reads objects, not what cells print."""

        def output(self, outs, msg, display_id, cell_index):
            return None

    return QuietClient


def _manager_class():
    from jupyter_client.manager import AsyncKernelManager

    class Manager(AsyncKernelManager):
        """Starts the kernel with the grader's command (in its sandbox)."""

        kdlab_command = None

        def format_kernel_cmd(self, extra_arguments=None):
            return self.kdlab_command(self.connection_file, list(extra_arguments or []))

        def write_connection_file(self, **kwargs):
            super().write_connection_file(**kwargs)
            os.chmod(self.connection_file, 0o644)  # the sandbox's user reads it; its folder is private

    return Manager


def _logger() -> logging.Logger:
    log = logging.getLogger("kdlab.grading.kernel")
    log.propagate = False
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log


def _working_copy(path: Path, dest: Path, others: set, limit: int) -> None:
    """Copy ``path``'s folder to ``dest`` without hidden entries, caches, other notebooks
    and any folder that holds another submission; readable by the sandbox's user."""
    folder = path.parent.resolve()
    own = path.resolve()
    holding = {p for o in others if o != own for p in o.parents}
    total = [0]

    def ignore(current, names):
        skipped = []
        for n in names:
            full = Path(current, n)
            if (n.startswith(".") or n == "__pycache__"
                    or (n.endswith(".ipynb") and full.resolve() != own)
                    or (full.is_dir() and not full.is_symlink() and full.resolve() in holding)):
                skipped.append(n)
            elif full.is_file() and not full.is_symlink():
                total[0] += full.stat().st_size
                if total[0] > limit:
                    raise ValueError(f"its folder holds more than {limit / 2**30:g} GiB of files")
        return skipped

    shutil.copytree(folder, dest, ignore=ignore, symlinks=True)
    for current, dirs, files in os.walk(dest):
        os.chmod(current, 0o755)
        for n in files:
            full = os.path.join(current, n)
            if not os.path.islink(full):
                os.chmod(full, 0o755 if os.stat(full).st_mode & 0o100 else 0o644)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (which must not exist) without following a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass
class _Setup:
    timeout: float
    secret: str
    sandboxed: bool
    limits: sandbox.Limits
    folder: Path
    shared: object = None
    others: set = field(default_factory=set)
    counter: list = field(default_factory=lambda: [0])


async def _run(sub: Submission, nb, result: Result, items: list, setup: _Setup, root: Path) -> None:
    """Execute the notebook, then collect and judge every item (fills ``result``)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    timeout = setup.timeout
    source, ctl, run = root / "src", root / "ctl", root / "run"
    _working_copy(sub.path, source, setup.others, setup.limits.disk)
    ctl.mkdir(mode=0o755)
    run.mkdir()
    os.chmod(run, 0o777 if setup.sandboxed else 0o700)
    os.chmod(root, 0o755)
    loop = asyncio.get_running_loop()
    deadline = [loop.time() + 3600.0]
    errors, n_cells = [], len(nb.cells)
    step = ["start"]  # "start", a cell index, or an item id
    flags: list = []

    def on_executed(cell, cell_index, execute_reply):
        content = execute_reply.get("content", {})
        if content.get("status") == "error" and cell_index < n_cells:  # not the grader's cells
            ename, evalue = str(content.get("ename")), str(content.get("evalue"))
            errors.append((cell_label(nb, cell_index), ename, evalue))
            flags.extend(_flags_of(ename, evalue))

    manager = _manager_class()(kernel_name="python3", transport="ipc", ip=str(run / "k"),
                               connection_file=str(ctl / "kernel.json"))
    if setup.sandboxed:
        manager.kdlab_command = lambda connection, extra: sandbox.sandboxed_command(
            setup.shared, source=source, ctl=ctl, run=run, connection_file=connection, extra=extra)
        env = setup.shared.env()
    else:
        manager.kdlab_command = lambda connection, extra: sandbox.unsandboxed_command(
            setup.limits, work=source, connection_file=connection, extra=extra)
        env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
        env.update(KDLAB_PROGRESS="0", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1",
                   TMPDIR=str(source))
    client = _client_class()(
        nb, km=manager, allow_errors=True, startup_timeout=max(60, timeout), log=_logger(),
        shutdown_kernel="immediate",
        timeout_func=lambda cell: max(1, int(deadline[0] - loop.time())),
        on_cell_executed=on_executed, resources={"metadata": {"path": str(source)}})
    harness = Path(_harness.__file__).read_text(encoding="utf-8")

    async def _collect(item, last: bool):
        """Read ``item``'s answer from the kernel and judge it; unless ``last``, an
        answer not defined yet is left for the read after the last cell."""
        cases = item.cases(seed(setup.secret, item.id))
        name = f"{item.grade_id}.{'last' if last else 'at-check'}"
        spec, answers = ctl / f"{name}.in", run / f"{name}.out"
        buffer = io.BytesIO()
        torch.save((item.id, item.name, item.kind, cases), buffer)
        _write_new(spec, buffer.getvalue())
        cell = nbformat.v4.new_code_cell(_COLLECT.format(
            spec=str(spec), answers=str(answers), harness=harness))
        nb.cells.append(cell)  # nbclient looks cells up by index
        try:
            await client.async_execute_cell(cell, len(nb.cells) - 1, store_history=False)
        finally:
            nb.cells.pop()
        if not last and _is_missing(answers):
            return
        result.verdicts[item.id] = _judge(item, cases, answers, errors, flags)

    try:
        await client.async_start_new_kernel(env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        await client.async_start_new_kernel_client()
        deadline[0] = loop.time() + timeout
        # an answer is read right after the cell that checks it, so a later cell that
        # reuses the name (e.g. ``from kdlab.evaluate import accuracy``) cannot replace
        # it; an answer not defined there yet (cells moved) or whose checking cell is
        # gone is read after the last cell
        at_cell = _checking_cells(nb, items)
        for index, cell in enumerate(nb.cells):
            step[0] = index
            await client.async_execute_cell(cell, index, store_history=True)
            for item in at_cell.get(index, ()):
                step[0] = item.id
                await _collect(item, last=False)
        deadline[0] = loop.time() + timeout
        for item in items:
            if item.id not in result.verdicts:
                step[0] = item.id
                await _collect(item, last=True)
    except CellTimeoutError:
        result.verdicts.clear()  # a timeout earns nothing, not even items read before it
        if isinstance(step[0], int):
            what = f"{cell_label(nb, step[0])} was still running after"
        else:
            what = f"checking {step[0]} took over"
        result.status, result.reason = "timeout", f"timeout: {what} {timeout:g} s"
    except DeadKernelError:
        result.verdicts.clear()
        if isinstance(step[0], int):
            what = f"running {cell_label(nb, step[0])}"
        else:
            what = f"checking {step[0]}" if step[0] != "start" else "starting"
        result.status, result.reason = "error", f"the kernel died while {what}"
    except RuntimeError as err:
        if "kernel_info" not in str(err):
            raise
        result.status = "error"
        result.reason = "the kernel did not start (is --memory or --processes too low?)"
    finally:
        provisioner = getattr(client.km, "provisioner", None) if client.km is not None else None
        result.cpu, pids = _tree(getattr(provisioner, "pid", None))
        # ended, and everything it started too (the sandbox dies with its bwrap)
        await asyncio.shield(_stop_kernel(client, pids))
    result.notes = [_raised(*e) for e in errors]
    for flag in flags:
        _flag(result, flag)


def _tree(pid) -> tuple:
    """``(cpu, pids)``: CPU seconds (user + system, finished children included) of ``pid``
    and every process below it, and their ids; read from /proc (0 and [] without it)."""
    if not pid:
        return 0.0, []
    ticks, total, stack, seen = os.sysconf("SC_CLK_TCK"), 0, [int(pid)], []
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
            seen.append(current)
            for task in os.listdir(f"/proc/{current}/task"):
                stack += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total / ticks, seen


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def _gone(pids: list, seconds: float = 10.0) -> None:
    """Wait until the processes ``pids`` have ended (at most ``seconds``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end and any(_alive(p) for p in pids):
        await asyncio.sleep(0.05)


async def _stop_kernel(client, pids=()) -> None:
    try:
        if client.km is not None:
            await client._async_cleanup_kernel()
    except Exception:  # the kernel is gone either way
        pass
    await _gone(list(pids))


async def _grade_one(sub: Submission, setup: _Setup) -> Result:
    start = time.perf_counter()
    result = Result(str(sub.path), student=sub.student, submission=sub.relative, lesson=sub.lesson)
    if not setup.sandboxed:
        _flag(result, UNSANDBOXED)
    items = registry.lesson_items(sub.lesson)
    try:
        if sub.path.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise ValueError("it is larger than 64 MiB")
        if not sub.sha256:
            sub.sha256 = _digest(sub.path)
        result.sha256 = sub.sha256
        nb = nbformat.read(sub.path, as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("it has no cells")
        for cell in nb.cells:
            if cell.get("cell_type") == "code" and not isinstance(cell.get("source"), str):
                raise ValueError("a cell has no source")
    except Exception as err:
        result.status, result.reason = "error", f"not a notebook ({type(err).__name__})"
        for item in items:
            result.verdicts[item.id] = item._fail(result.reason)
        result.seconds = time.perf_counter() - start
        return result
    for other in _other_lessons(nb, sub.lesson):
        _flag(result, f"{OTHER_LESSON}:{other}")
    where = reaches_into_grader(nb)
    static_notes = [where] if where else []
    if where:
        _flag(result, INTERNALS)
    setup.counter[0] += 1
    root = setup.folder / f"s{setup.counter[0]}"
    root.mkdir(mode=0o700)
    try:
        # the backstop for a kernel that ignores every deadline
        await asyncio.wait_for(_run(sub, nb, result, items, setup, root), 2 * setup.timeout + 120)
    except asyncio.TimeoutError:
        result.status, result.reason = "timeout", f"timeout: still running after {2 * setup.timeout + 120:g} s"
    except asyncio.CancelledError:
        raise
    except Exception as err:
        result.status, result.reason = "error", f"could not run it ({type(err).__name__}: {clean(str(err))[:120]})"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result.notes = static_notes + result.notes
    for item in items:
        if item.id not in result.verdicts:
            result.verdicts[item.id] = item._fail(result.reason or "not graded")
    result.verdicts = {item.id: result.verdicts[item.id] for item in items}  # the lesson's order
    if result.status == "graded":
        by_message: dict = {}
        for v in result.verdicts.values():
            if not v.passed:
                by_message.setdefault(v.message, []).append(v.item_id)
        result.reason = "; ".join([f"{', '.join(ids)}: {m}" for m, ids in by_message.items()]
                                  + [n for n in result.notes if n not in static_notes][:1])
    result.reason = clean(result.reason)
    result.seconds = time.perf_counter() - start
    return result


# ---------------------------------------------------------------- the temporary folder

def _temp_root() -> Path:
    return Path(tempfile.gettempdir())


def sweep_stale(folder=None) -> list:
    """Remove the temporary folders of earlier runs that were killed (their lock is
    free); returns the removed folders."""
    removed = []
    folder = Path(folder) if folder is not None else _temp_root()
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            info = entry.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                continue
            try:
                fd = os.open(entry / ".lock", os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                if time.time() - info.st_mtime < 3600:
                    continue  # just made, not locked yet
                fd = None
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a running grader holds it
                finally:
                    os.close(fd)
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        except OSError:
            continue
    return removed


class _RunFolder:
    """This run's temporary folder, locked while the run lives."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=_temp_root()))
        self.fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self.fd)


# ---------------------------------------------------------------- a batch

def _prepare_targets(items) -> None:
    """Measure the numeric targets before any kernel starts: the models they train go
    to the grader's cache, which the sandboxes then read."""
    for item in items:
        if isinstance(item, registry.NumberItem):
            try:
                item.target()
            except Exception:  # judged (and reported) per submission
                pass


def isolation(unsafe_no_sandbox: bool = False, limits: sandbox.Limits | None = None) -> str:
    """The line that says which isolation a run gets; raises :class:`SandboxUnavailable`
    when the sandbox cannot be made and ``unsafe_no_sandbox`` is false."""
    limits = limits or sandbox.Limits()
    if unsafe_no_sandbox:
        return sandbox.describe(False, limits)
    tool, _, why = sandbox.probe()
    if why:
        raise SandboxUnavailable(
            f"refusing to grade: {why}. Install it, or pass --unsafe-no-sandbox to run every "
            f"notebook with your own rights: it can then read and change your files, other "
            f"submissions and the gradebook, use the network and leave processes running")
    return sandbox.describe(True, limits)


def grade(paths, *, timeout: float = 120, jobs: int = 1, lesson: str | None = None,
          progress: bool | None = None, secret: str | None = None, root=None,
          unsafe_no_sandbox: bool = False, limits: sandbox.Limits | None = None,
          on_result=None) -> list:
    """Grade the notebooks ``paths`` (paths or :class:`Submission` objects, in that
    order) with up to ``jobs`` kernels at once, each in its sandbox; each notebook
    gets ``timeout`` seconds to run and as many for its answers to be checked.

    ``secret`` keys the grader's test cases (a fresh random one when ``None``).
    ``on_result(result)`` is called as each submission is graded. Returns one
    :class:`Result` per submission; never raises for a bad submission. Raises
    :class:`Stopped` on SIGINT/SIGTERM (in the main thread) after ending the
    running kernels, and :class:`SandboxUnavailable` when no sandbox can be made
    and ``unsafe_no_sandbox`` is false.
    """
    timeout = _validate.positive_float("timeout", timeout)
    jobs = _validate.positive_int("jobs", jobs)
    if lesson is not None:
        _check_lesson(lesson)
    limits = limits or sandbox.Limits()
    subs = list(paths)
    if not all(isinstance(s, Submission) for s in subs):
        subs = find_submissions(subs, root=root, lesson=lesson) if subs else []
    if secret is None:
        secret = _secrets.token_hex(16)
    if not isinstance(secret, str) or not secret:
        raise ValueError(f"secret must be a non-empty string, got {secret!r}")
    isolation(unsafe_no_sandbox, limits)
    if not subs:
        return []
    sandboxed = not unsafe_no_sandbox
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {}

    def interrupt(signum, frame):
        raise _Interrupt(signum)

    if main_thread:
        for s in (signal.SIGINT, signal.SIGTERM):
            previous[s] = signal.getsignal(s)
            signal.signal(s, interrupt)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # references (and the model cache key) as in the notebooks
    done: dict = {}
    try:
        sweep_stale()
        _prepare_targets({i.id: i for s in subs for i in registry.lesson_items(s.lesson)}.values())
        with _RunFolder() as folder:
            setup = _Setup(timeout=timeout, secret=secret, sandboxed=sandboxed, limits=limits,
                           folder=folder, others={s.path.resolve() for s in subs})
            if sandboxed:
                shared_dir = folder / "shared"
                shared_dir.mkdir(mode=0o755)
                from kdlab.models.zoo import cache_dir

                setup.shared = sandbox.Shared(shared_dir, cache_dir(), limits, folder.name)
            stopped = _batch(subs, setup, jobs, progress, on_result, done,
                             interrupt if main_thread else None)
    except _Interrupt as stop:
        stopped = stop.signum
    finally:
        torch.set_num_threads(threads)
        for s, handler in previous.items():
            signal.signal(s, handler)
    results = [done[i] for i in range(len(subs)) if i in done]
    if stopped:
        raise Stopped(stopped, results)
    return results


def _batch(subs, setup: _Setup, jobs: int, progress, on_result, done: dict, interrupt):
    """Grade ``subs`` concurrently; returns the signal that stopped the batch, or 0.
    ``interrupt`` is the signal handler to put back after the event loop's."""
    main_thread = interrupt is not None
    from tqdm.auto import tqdm

    stop: list = []
    failure: list = []

    async def main():
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(jobs)
        # progress=None: a bar only on a terminal
        bar = tqdm(total=len(subs), unit="notebook", disable=None if progress is None else not progress)
        tasks: list = []

        def halt(signum):
            if not stop:
                stop.append(signum)
                for task in tasks:
                    task.cancel()

        if main_thread:
            for s in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(s, halt, s)

        async def one(index, sub):
            async with gate:
                result = await _grade_one(sub, setup)
            done[index] = result
            bar.update(1)
            if on_result is not None:
                try:
                    on_result(result)
                except BaseException as err:
                    failure.append(err)
                    halt(0)

        tasks.extend(asyncio.ensure_future(one(i, s)) for i, s in enumerate(subs))
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            bar.close()
            if main_thread:
                for s in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(s)
                    signal.signal(s, interrupt)

    asyncio.run(main())
    if failure:
        raise failure[0]
    return stop[0] if stop else 0


# ---------------------------------------------------------------- the gradebook

REASON = " reason"
FIXED = ["student", "submission", "lesson"]
TAIL = ["flags", "total", "max", "status", "reason", "sha256"]


def _points(value: float) -> str:
    return f"{value:g}"


def _short(message: str, limit: int = 100) -> str:
    message = clean(message)
    return message if len(message) <= limit else message[:limit - 3] + "..."


def row(result: Result) -> dict:
    """The gradebook row of ``result``: strings, keyed by column."""
    out = {"student": result.student or Path(result.path).stem,
           "submission": result.submission or result.path,
           "lesson": result.lesson or next((v.item_id[:2] for v in result.verdicts.values()), "")}
    for item_id, v in result.verdicts.items():
        out[item_id] = _points(v.points)
        out[item_id + REASON] = "" if v.passed else _short(v.message)
    out.update(flags=" ".join(result.flags), total=_points(result.total),
               max=_points(result.max_points), status=result.status, reason=clean(result.reason),
               sha256=result.sha256)
    return out


def row_items(r: dict) -> set:
    """The items graded in gradebook row ``r``."""
    return {k for k, v in r.items() if registry.ID_PATTERN.match(k) and v not in ("", None)}


def _columns(rows) -> list:
    ids = {k for r in rows for k in r if registry.ID_PATTERN.match(k)}
    order = [i for i in registry.all_items() if i in ids]
    order += sorted(ids - set(order))
    columns = list(FIXED)
    for item_id in order:
        columns += [item_id, item_id + REASON]
    return columns + TAIL


def _cell(value) -> str:
    """A spreadsheet never runs a cell as a formula."""
    text = clean("" if value is None else value)
    if text[:1] in ("=", "+", "-", "@") and not re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", text):
        return "'" + text
    return text


def read_gradebook(path) -> list:
    """The rows of an existing gradebook (``[]`` when there is none); a ValueError
    when ``path`` is not a gradebook written by ``kdlab grade``."""
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise ValueError(f"out must be a file, got the folder {str(path)!r}")
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("student", "submission", "status", "sha256") if c not in header]
        if missing:
            raise ValueError(f"out {str(path)!r} exists and is not a gradebook of kdlab grade "
                             f"(no {', '.join(missing)} column); move it away or choose another --out")
        return [{k: (v or "") for k, v in r.items() if k is not None} for r in reader]


def merge(old_rows, new_rows) -> list:
    """``old_rows`` updated with ``new_rows`` (by submission), sorted by submission."""
    by_path = {r["submission"]: r for r in old_rows}
    for r in new_rows:
        by_path[r["submission"]] = r
    return [by_path[k] for k in sorted(by_path)]


def _safe_folder(folder) -> int:
    """An open descriptor of ``folder`` (made if missing), reached without a link at its end."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as err:
        raise ValueError(f"cannot write into {str(folder)!r}: {err.strerror}") from None


def write_file(folder, name: str, data: bytes, mode: int = 0o644) -> Path:
    """Write ``folder/name`` atomically; a link in its place is replaced, never followed."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"name must be a plain file name, got {name!r}")
    fd = _safe_folder(folder)
    try:
        tmp = f".{name}.{_secrets.token_hex(4)}.tmp"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as f:
                f.write(data)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=fd)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)
    return Path(folder) / name


def write_gradebook(rows, out, *, excel: bool = False) -> Path:
    """Write the gradebook CSV atomically: one row per submission (sorted), for each
    item a points and a reason column, then flags, total, max, status, reason and
    the notebook's sha256. ``rows`` are :class:`Result` objects or rows; ``excel``
    starts the file with a UTF-8 byte order mark."""
    rows = [row(r) if isinstance(r, Result) else r for r in rows]
    rows = merge([], rows)
    out = Path(out)
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if excel else "\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_cell(r.get(c, "")) for c in columns])
    data = buffer.getvalue().encode("utf-8-sig" if excel else "utf-8")
    return write_file(out.parent, out.name, data)


def read_secret(folder) -> str:
    """The course's grading secret, kept in ``folder/.kdlab-grading-secret``; drawn and
    written there (mode 0600) the first time."""
    folder = Path(folder)
    path = folder / SECRET_FILE
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ValueError(f"{str(path)!r} must be a plain file")
    if path.exists():
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return text
    text = _secrets.token_hex(32)
    write_file(folder, SECRET_FILE, (text + "\n").encode(), mode=0o600)
    return text


# ---------------------------------------------------------------- feedback

def feedback_name(path: str, paths) -> str:
    """A feedback file name unique among ``paths``: the path below their common
    folder, with ``__`` for each separator."""
    absolute = [os.path.abspath(p) for p in paths]
    base = os.path.commonpath([os.path.dirname(p) for p in absolute]) if absolute else ""
    relative = os.path.relpath(os.path.abspath(path), base)
    return feedback_file(relative)


def feedback_file(relative: str) -> str:
    """The feedback file of the submission at ``relative`` (below the submissions root)."""
    stem = re.sub(r"[\\/]", "__", os.path.splitext(relative)[0])
    stem = re.sub(r"[^\w.\-]+", "_", clean(stem)).lstrip(".") or "submission"
    return stem + ".txt"


def feedback(result, notes=None) -> str:
    """The feedback text of one submission (a :class:`Result` or a gradebook row):
    points and hints per item, flags and notes. Every line is the grader's; text
    from the notebook appears only inside «...»."""
    if isinstance(result, Result):
        notes = result.notes if notes is None else notes
        r = row(result)
    else:
        r = result
    notes = notes or []
    lines = [f"{clean(r['submission'])}: {r['total']}/{r['max']} points ({r['status']})"]
    if r["status"] != "graded":
        lines.append(f"reason: {clean(r['reason'])}")
    for item_id in [k for k in r if registry.ID_PATTERN.match(k) and r[k] != ""]:
        item = registry.all_items().get(item_id)
        top = _points(item.points) if item else "?"
        passed = item is not None and r[item_id] == top
        message = r.get(item_id + REASON) or ("passed" if passed else "")
        if isinstance(result, Result) and item_id in result.verdicts:
            v = result.verdicts[item_id]
            passed, top, message = v.passed, _points(v.max_points), clean(v.message)
        lines.append(f"{'✓' if passed else '✗'} {item_id} ({r[item_id]}/{top}): {message}")
    for flag in r.get("flags", "").split():
        if flag.startswith(OTHER_LESSON + ":"):
            lines.append(f"flag: {flag}: the notebook's cells are lesson {flag.split(':')[1]}'s; "
                         f"it was graded as lesson {r['lesson']}, the assignment")
        else:
            lines.append(f"flag: {flag}: {FLAG_TEXT.get(flag, '')}")
    lines += [f"note: {clean(n)}" for n in notes]
    lines.append("(text in «» is the notebook's own output, quoted)")
    return "\n".join(clean(line) for line in lines) + "\n"


def write_feedback(results, folder, notes: dict | None = None) -> list:
    """Write one feedback file per result (or row) into ``folder``."""
    written = []
    for r in results:
        relative = r.submission or r.path if isinstance(r, Result) else r["submission"]
        if isinstance(r, Result) and not r.submission:
            name = feedback_name(r.path, [x.path for x in results if isinstance(x, Result)])
        else:
            name = feedback_file(relative)
        text = feedback(r, (notes or {}).get(relative))
        written.append(write_file(folder, name, text.encode("utf-8")))
    return written


def summary(results, seconds: float | None = None) -> str:
    """A table of the batch for the terminal."""
    names = [clean(r.submission or r.path) for r in results]
    width = max([10] + [len(n) for n in names])
    lines = [f"{'submission':<{width}}  {'points':>9}  {'status':<8}  reason"]
    for name, r in zip(names, results):
        score = f"{_points(r.total)}/{_points(r.max_points)}"
        reason = clean(r.reason)
        if r.flags:
            reason = f"[{' '.join(r.flags)}] {reason}"
        reason = reason if len(reason) <= 70 else reason[:67] + "..."
        lines.append(f"{name:<{width}}  {score:>9}  {r.status:<8}  {reason}")
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    tail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines.append(f"{len(results)} submissions{took}" + (f": {tail}" if tail else ""))
    return "\n".join(lines)
