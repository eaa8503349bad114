"""``kdlab lab [DIR]``: a personal working copy of the course, opened in JupyterLab.

On first use the lessons and exercises are copied into ``DIR`` (default
``./kdlab-course``). Later runs add notebooks that are new in the installed
course and update the ones the learner never touched; a notebook the learner
edited is never overwritten: when the course has a newer version of it, that
version is written beside it as ``NAME.updated.ipynb``. A manifest ``.kdlab-course.json`` remembers what was
copied, so "edited" means "differs from what kdlab put there".
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

MANIFEST = ".kdlab-course.json"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sync(dest: Path) -> dict:
    """Copy the course into ``dest``; return ``{"copied": [...], "updated": [...],
    "kept": [...]}`` (paths relative to ``dest``)."""
    from kdlab import course

    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"DIR must be a folder, got the file {str(dest)!r}")
    manifest_path = dest / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    result = {"copied": [], "updated": [], "kept": []}
    for name in course.FOLDERS:
        for source in course.notebooks(name):
            rel = f"{name}/{source.name}"
            target = dest / rel
            new = _digest(source)
            if not target.exists():
                action = "copied"
            elif _digest(target) == new:
                manifest[rel] = new
                continue
            elif manifest.get(rel) == _digest(target):
                action = "updated"  # untouched by the learner: safe to replace
            elif manifest.get(rel) == new:
                continue  # the learner's edit of the current course version
            else:
                side = target.with_name(target.stem + ".updated.ipynb")
                if not side.exists() or _digest(side) != new:
                    shutil.copyfile(source, side)
                result["kept"].append(rel)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
            manifest[rel] = new
            result[action].append(rel)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = manifest_path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, manifest_path)
    return result


EXAMPLES = """examples:
  kdlab lab                          copy the course to ./kdlab-course and open lesson 00
  kdlab lab ~/course --no-browser    print the address of lesson 00 instead of opening a browser
  kdlab lab --port 8900 --ip 0.0.0.0 serve on a chosen port and interface
  kdlab lab ~/course -- --ServerApp.shutdown_no_activity_timeout=7200
                                     anything after -- goes to jupyter lab unchanged
"""


def register(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "lab", help="copy the course into a working folder and open JupyterLab there",
        description="Copy the course into a working folder (new notebooks added, untouched ones\n"
                    "updated, your edits never overwritten) and start JupyterLab there on lesson 00.\n"
                    "Ctrl-C stops JupyterLab and its kernels.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", default="kdlab-course", help="working folder (default: ./kdlab-course)")
    p.add_argument("--no-start", action="store_true", help="copy only; do not start JupyterLab")
    p.add_argument("--no-browser", action="store_true",
                   help="do not open a browser; print the address that opens lesson 00")
    p.add_argument("--port", type=_port, help="port to serve on (default: a free one)")
    p.add_argument("--ip", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    p.set_defaults(run=run, passthrough=True)


def _port(text: str) -> int:
    import argparse

    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, 65535], got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, 65535], got {port}")
    return port


def _free_port(ip: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((ip if ip not in ("0.0.0.0", "") else "127.0.0.1", 0))
        return s.getsockname()[1]


def start_url(ip: str, port: int, token: str) -> str:
    """The address that opens lesson 00 of a course served on ``ip:port``."""
    host = "127.0.0.1" if ip in ("0.0.0.0", "", "::") else ip
    return f"http://{host}:{port}/lab/tree/lessons/00_start_here.ipynb?token={token}"


def _descendants(pid: int) -> list:
    """Every process below ``pid`` (Linux /proc; empty elsewhere). Kernels start in
    sessions of their own, so a process group alone does not reach them."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop(proc, grace: float = 10.0) -> None:
    """Stop JupyterLab as its own SIGTERM handler would (kernels shut down), then
    kill whatever of its process tree is left after ``grace`` seconds."""
    import signal
    import time

    tree = _descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 3
    for pid in tree:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _wait_until_listening(proc, ip: str, port: int, timeout: float = 120.0) -> bool:
    import socket
    import time

    host = "127.0.0.1" if ip in ("0.0.0.0", "", "::") else ip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def run(args) -> int:
    import secrets
    import signal

    dest = Path(args.dir).expanduser()
    try:
        result = sync(dest)
    except (NotADirectoryError, FileExistsError, PermissionError) as err:
        print(f"kdlab lab: {err}", file=sys.stderr)
        return 2
    print(f"course folder: {dest.resolve()}")
    print(f"  {len(result['copied'])} copied, {len(result['updated'])} updated, "
          f"{len(result['kept'])} kept as you edited them")
    for rel in result["kept"]:
        print(f"  kept {rel}; the new version is beside it as {Path(rel).stem}.updated.ipynb")
    if args.no_start:
        return 0
    port = args.port or _free_port(args.ip)
    token = secrets.token_hex(24)
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={dest.resolve()}",
           f"--ServerApp.ip={args.ip}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", "lessons/00_start_here.ipynb"]
    if args.no_browser:
        cmd.append("--no-browser")
    cmd += list(getattr(args, "extra", []))
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in cmd:
        cmd.append("--allow-root")  # containers often run as root
    # JupyterLab runs in a session of its own: Ctrl-C reaches this process only, which
    # then stops JupyterLab and every kernel it started (see _stop).
    proc = subprocess.Popen(cmd, cwd=dest, start_new_session=True)
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if _wait_until_listening(proc, args.ip, port):
            print(f"\nJupyterLab is running. Lesson 00 is at:\n  {start_url(args.ip, port, token)}\n"
                  f"Stop it with Ctrl-C.", flush=True)
        code = proc.wait()
    except KeyboardInterrupt:
        print("\nstopping JupyterLab and its kernels ...", flush=True)
        code = None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop(proc)
    if code is None:
        print("JupyterLab stopped.")
        return 0
    return code
