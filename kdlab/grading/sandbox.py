"""Where ``kdlab grade`` runs a submission's kernel: a bubblewrap sandbox.

Each kernel runs under ``bwrap`` (Debian/Ubuntu package ``bubblewrap``) in its own
user, PID, network, IPC, UTS and cgroup namespaces. What it sees:

- the Python environment and the system's ``/usr``, read-only;
- ``kdlab`` read-only, with ``kdlab/grading/items`` (the references and answers)
  replaced by a package whose import fails: nothing of the grader is importable;
- ``/home/learner/submission``: its own copy of the notebook's folder (without the
  other notebooks and any other submission), on a size-capped tmpfs, as the working
  directory; ``$HOME`` and a private ``/tmp`` on size-capped tmpfs as well;
- ``$KDLAB_CACHE``: a private model cache holding the grader's cached models as
  read-only files (a notebook can add models, not change the grader's);
- the two folders through which it talks to the grader: one read-only (the
  connection file and the test cases) and one writable (the kernel's sockets and
  its answers). Kernel and grader talk over Unix sockets in that folder, so the
  kernel needs no network: it has none but its own loopback.

It does not see other submissions, the gradebook, the feedback folder,
``solutions/``, the instructor's home or any other process. Limits
(:class:`Limits`) are set before the kernel starts: address space per process,
processes (and threads) in the sandbox, size of each written file, size of each
tmpfs. When the kernel's process ends, or the grader dies (even by SIGKILL),
every process of the sandbox is killed with it (``--die-with-parent`` and the
PID namespace).

When the grader runs as root, bubblewrap sets up the sandbox as root and the
kernel then runs as the unprivileged user ``nobody`` (uid 65534) in a user
namespace of its own: the process limit is not enforced for root, and counted
per sandbox.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import site
import stat
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import kdlab

TOOL = "bwrap"
PACKAGE = "bubblewrap"
HOME = "/home/learner"
WORK = f"{HOME}/submission"
SOURCE = "/kdlab/source"      # the grader's read-only copy of the folder
CACHE = f"{HOME}/.cache/kdlab/models"
DATA = f"{HOME}/.cache/kdlab/data"
NOBODY = 65534
ENV_FLAG = "KDLAB_GRADING_SANDBOX"   # set in every graded kernel: check() defers to the grader
SECRET_ENV = "KDLAB_GRADING_SECRET"

TRIPWIRE = '''"""Not available while kdlab grade runs a notebook."""
raise ImportError("kdlab.grading.items (the graded items, their references and answers) "
                  "cannot be imported by a notebook being graded by kdlab grade")
'''

# Runs first in the sandbox (python -I -S): limits, the working copy, then the kernel.
_START = r"""
import json, os, resource, shutil, sys
c = json.loads(sys.argv[1])
if c.get("drop"):  # root set the sandbox up; the kernel runs as nobody, in a user namespace of its own
    os.setgroups([])
    os.setgid(c["drop"])
    os.setuid(c["drop"])
    import ctypes
    ctypes.CDLL(None, use_errno=True).unshare(0x10000000)  # CLONE_NEWUSER: processes counted per sandbox
if c.get("sandboxed"):  # no setuid bit or file capability grants anything from here on
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
if c.get("pdeathsig"):
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != c["parent"]:
        os._exit(1)
for name, value in c["limits"]:
    resource.setrlimit(getattr(resource, name), (value, value))
if c["source"] != c["work"]:
    shutil.copytree(c["source"], c["work"], symlinks=True, dirs_exist_ok=True)
    for src in c.get("copies", []):
        os.makedirs(os.path.dirname(src[1]), exist_ok=True)
        shutil.copyfile(src[0], src[1])
os.chdir(c["work"])
os.execv(c["argv"][0], c["argv"])
"""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one graded kernel.

    ``memory``: bytes of address space per process (``RLIMIT_AS``); ``processes``:
    processes and threads in the sandbox (``RLIMIT_NPROC``, counted per sandbox);
    ``file_size``: bytes per written file (``RLIMIT_FSIZE``); ``disk``: bytes of
    each private tmpfs (the working folder with ``$HOME``, and ``/tmp``).
    """

    memory: int = 8 * 2**30
    processes: int = 256
    file_size: int = 2**30
    disk: int = 2**30

    def rlimits(self, sandboxed: bool) -> list:
        limits = [("RLIMIT_AS", self.memory), ("RLIMIT_FSIZE", self.file_size),
                  ("RLIMIT_CORE", 0)]
        if sandboxed:  # outside a sandbox RLIMIT_NPROC would count all of this user's processes
            limits.append(("RLIMIT_NPROC", self.processes))
        return limits


def find_tool() -> str | None:
    return shutil.which(TOOL)


def _version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or TOOL
    except (OSError, subprocess.SubprocessError):
        return TOOL


def _as_root() -> bool:
    return os.geteuid() == 0


@lru_cache(maxsize=None)
def features() -> frozenset:
    """The options this bwrap knows (older ones lack --disable-userns, --size, --perms)."""
    tool = find_tool()
    if tool is None:
        return frozenset()
    try:
        out = subprocess.run([tool, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(re.findall(r"(--[a-z][a-z0-9-]*)", out.stdout + out.stderr))


def _perms(mode: str) -> list:
    return ["--perms", mode] if "--perms" in features() else []


@lru_cache(maxsize=None)
def probe() -> tuple:
    """``(tool, version, None)`` when a sandbox can be made here, else
    ``(tool or None, "", why not)``."""
    tool = find_tool()
    if tool is None:
        return None, "", (f"the sandbox tool {TOOL} is not installed (Debian/Ubuntu: "
                          f"apt-get install {PACKAGE}; Fedora: dnf install {PACKAGE})")
    argv = [tool, *_namespaces(), *_system(_Mounts()).args, "--", "/bin/sh", "-c", "exit 0"]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return tool, "", f"{tool} does not start: {err}"
    if run.returncode != 0:
        why = run.stderr.strip().splitlines()[-1:] or [f"exit status {run.returncode}"]
        return tool, "", (f"{tool} cannot make a sandbox here ({why[0]}); user namespaces may "
                          f"be disabled (sysctl kernel.unprivileged_userns_clone, "
                          f"user.max_user_namespaces or an AppArmor restriction)")
    return tool, _version(tool), None


def _namespaces() -> list:
    common = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
              "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "grading"]
    if _as_root():  # the start script drops to nobody: it keeps only what that takes
        return common + ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    nested = ["--disable-userns"] if "--disable-userns" in features() else []
    return common + ["--unshare-user", *nested, "--cap-drop", "ALL"]


class _Mounts:
    """bwrap arguments that build the sandbox's file system. Every folder made on the
    way to a mount point is created with the given mode (bwrap's default is 0700,
    which ``nobody`` could not enter)."""

    def __init__(self):
        self.args: list = []
        self.made: set = set()
        self.mounted: list = []

    def _parents(self, dest: str, mode: str = "0755") -> None:
        for parent in reversed(Path(dest).parents):
            text = str(parent)
            if text == "/" or text in self.made:
                continue
            if any(_inside(parent, Path(m)) for m in self.mounted):
                return  # inside a bound folder: it is there already
            self.args += [*_perms(mode), "--dir", text]
            self.made.add(text)

    def folder(self, dest: str, mode: str = "0755") -> None:
        self._parents(dest + "/x", mode)

    def bind(self, source, dest=None, *, writable: bool = False) -> None:
        dest = str(dest or source)
        self._parents(dest)
        self.args += ["--bind" if writable else "--ro-bind", str(source), dest]
        self.mounted.append(dest)

    def tmpfs(self, dest: str, size: int) -> None:
        self._parents(dest)
        size = ["--size", str(size)] if "--size" in features() else []
        self.args += [*_perms("1777"), *size, "--tmpfs", dest]
        self.made.add(dest)

    def symlink(self, target: str, dest: str) -> None:
        self.args += ["--symlink", target, dest]


def _system(mounts: _Mounts) -> _Mounts:
    """The operating system, read-only: /usr, its /bin, /lib... links and a few of /etc."""
    mounts.bind("/usr")
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            mounts.symlink(os.readlink(path), str(path))
        elif path.is_dir():
            mounts.bind(path)
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf",
                 "passwd", "group", "hosts", "fonts", "alternatives", "mime.types"):
        path = Path("/etc") / name
        if path.exists():
            mounts.bind(path)
    mounts.args += ["--proc", "/proc", "--dev", "/dev"]
    return mounts


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _python_paths() -> list:
    """The folders of the Python environment (outermost first, no duplicates)."""
    found: list = []
    for raw in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix):
        path = Path(raw).resolve()
        if path.is_dir() and not any(_inside(path, p) for p in found) and not _inside(path, Path("/usr")):
            found = [p for p in found if not _inside(p, path)] + [path]
    return found


def _readable_by_sandbox(path: Path) -> bool:
    """Whether the sandbox's user can read ``path`` (a file the grader owns)."""
    if not _as_root():
        return True
    return bool(path.stat().st_mode & stat.S_IROTH)


def model_files(cache: Path) -> list:
    """The grader's cached models that a kernel may read: regular ``*.pt`` files."""
    try:
        entries = sorted(cache.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.suffix == ".pt" and p.is_file() and not p.is_symlink()]


def matplotlib_cache() -> Path:
    configured = os.environ.get("MPLCONFIGDIR")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "matplotlib"


class Shared:
    """What every sandbox of one run shares, prepared once in the run's folder:
    the package that replaces ``kdlab.grading.items``, readable copies of cached
    models the sandbox's user could not read, and the read-only mounts."""

    def __init__(self, folder: Path, cache: Path, limits: Limits, run_id: str):
        self.folder, self.limits, self.run_id = folder, limits, run_id
        self.tool = probe()[0]
        tripwire = folder / "tripwire"
        tripwire.mkdir(mode=0o755)
        (tripwire / "__init__.py").write_text(TRIPWIRE, encoding="utf-8")
        os.chmod(tripwire, 0o755)
        os.chmod(tripwire / "__init__.py", 0o644)
        package = Path(kdlab.__file__).resolve().parent
        self.package = package
        mounts = _system(_Mounts())
        # the private, empty folders first: a later bind lands on top of them, so a Python
        # environment or kdlab that lives under /tmp stays visible
        mounts.tmpfs("/tmp", limits.disk)
        mounts.tmpfs(HOME, limits.disk)
        mounts.tmpfs("/dev/shm", limits.disk)
        mounts.args += ["--remount-ro", "/dev"]
        pythons = _python_paths()
        for path in pythons:
            mounts.bind(path)
        if not any(_inside(package, p) for p in pythons + [Path("/usr")]):
            mounts.bind(package)
        mounts.bind(tripwire, package / "grading" / "items")
        user_site = Path(site.getusersitepackages()) if site.ENABLE_USER_SITE else None
        if user_site and user_site.is_dir() and _inside(user_site, Path.home()):
            self.user_site = (user_site, f"{HOME}/{user_site.relative_to(Path.home())}")
        else:
            self.user_site = None
        self.mounts = mounts
        # the model cache: the grader's files read-only, room for the notebook's own
        self.models = []
        for path in model_files(cache):
            if not _readable_by_sandbox(path):
                copies = folder / "models"
                copies.mkdir(mode=0o755, exist_ok=True)
                copy = copies / path.name
                shutil.copyfile(path, copy)
                os.chmod(copy, 0o644)
                path = copy
            self.models.append(path)
        data = Path(os.environ.get("KDLAB_DATA", Path.home() / ".cache" / "kdlab" / "data"))
        self.data = data if data.is_dir() else None
        fonts = matplotlib_cache()
        self.fonts = [p for p in sorted(fonts.glob("fontlist-*.json"))
                      if p.is_file() and not p.is_symlink() and _readable_by_sandbox(p)] if fonts.is_dir() else []

    def env(self) -> dict:
        keep = {k: v for k, v in os.environ.items()
                if k in {"LANG", "LC_ALL", "LC_CTYPE", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                         "OPENBLAS_NUM_THREADS"}}
        python_bin = str(Path(sys.executable).parent)
        return {**keep, "PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": HOME,
                "USER": "learner", "LOGNAME": "learner", "TMPDIR": "/tmp",
                "KDLAB_CACHE": CACHE, "KDLAB_DATA": DATA, ENV_FLAG: "1",
                "KDLAB_GRADING_RUN": self.run_id, "KDLAB_PROGRESS": "0", "MPLBACKEND": "Agg",
                "PYTHONDONTWRITEBYTECODE": "1"}


def kernel_argv(connection_file: str, extra: list) -> list:
    return [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file, *extra]


def sandboxed_command(shared: Shared, *, source: Path, ctl: Path, run: Path,
                      connection_file: str, extra: list) -> list:
    """The command that starts one kernel in its sandbox."""
    mounts = copy.deepcopy(shared.mounts)
    for folder in (f"{HOME}/.cache", f"{HOME}/.cache/kdlab", CACHE):
        mounts.folder(folder, "1777")
    for path in shared.models:
        mounts.bind(path, f"{CACHE}/{path.name}")
    if shared.data:
        mounts.bind(shared.data, DATA)
    if shared.user_site:
        mounts.bind(*shared.user_site)
    copies = []
    for path in shared.fonts:
        mounts.bind(path, f"/kdlab/matplotlib/{path.name}")
        copies.append((f"/kdlab/matplotlib/{path.name}", f"{HOME}/.cache/matplotlib/{path.name}"))
    mounts.bind(source, SOURCE)
    mounts.bind(ctl)
    mounts.bind(run, writable=True)
    config = {"limits": shared.limits.rlimits(sandboxed=True), "source": SOURCE, "work": WORK,
              "copies": copies, "argv": kernel_argv(connection_file, extra),
              "drop": NOBODY if _as_root() else None, "sandboxed": True}
    return [shared.tool, *_namespaces(), *mounts.args, "--remount-ro", "/", "--chdir", "/",
            "--unsetenv", "JPY_PARENT_PID",  # its parent is the sandbox, not the grader
            "--", sys.executable, "-I", "-S", "-c", _START, json.dumps(config)]


def unsandboxed_command(limits: Limits, *, work: Path, connection_file: str, extra: list) -> list:
    """The command of ``--unsafe-no-sandbox``: the kernel as this user, killed when the
    grader dies (its own children may outlive it)."""
    config = {"limits": limits.rlimits(sandboxed=False), "source": str(work), "work": str(work),
              "argv": kernel_argv(connection_file, extra), "pdeathsig": sys.platform == "linux",
              "parent": os.getpid()}
    return [sys.executable, "-I", "-S", "-c", _START, json.dumps(config)]


def describe(sandboxed: bool, limits: Limits) -> str:
    """One line for the start of a run: which isolation the kernels get."""
    gib = limits.memory / 2**30
    if sandboxed:
        tool, version, _ = probe()
        user = " as user nobody" if _as_root() else ""
        disk = (f"{limits.disk / 2**30:g} GiB of files" if "--size" in features()
                else f"{limits.file_size / 2**30:g} GiB per file, tmpfs without a size limit "
                     f"(bwrap lacks --size)")
        return (f"isolation: {version or TOOL} sandbox per kernel{user} (no network, no other "
                f"submission or process, read-only Python and kdlab without its graded items, "
                f"private /tmp and model cache; {gib:g} GiB per process, {limits.processes} "
                f"processes, {disk})")
    return ("isolation: NONE (--unsafe-no-sandbox): each notebook runs as this user and can read "
            "and change whatever you can, including other submissions and the gradebook, use the "
            f"network and leave processes behind ({gib:g} GiB per process)")

