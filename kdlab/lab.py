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


def register(subparsers) -> None:
    p = subparsers.add_parser("lab", help="copy the course into a working folder and open JupyterLab there")
    p.add_argument("dir", nargs="?", default="kdlab-course", help="working folder (default: ./kdlab-course)")
    p.add_argument("--no-start", action="store_true", help="copy only; do not start JupyterLab")
    p.add_argument("jupyter_args", nargs="*", help="extra arguments for jupyter lab (after --)")
    p.set_defaults(run=run)


def run(args) -> int:
    dest = Path(args.dir).expanduser()
    result = sync(dest)
    print(f"course folder: {dest.resolve()}")
    print(f"  {len(result['copied'])} copied, {len(result['updated'])} updated, "
          f"{len(result['kept'])} kept as you edited them")
    for rel in result["kept"]:
        print(f"  kept {rel}; the new version is beside it as {Path(rel).stem}.updated.ipynb")
    if args.no_start:
        return 0
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={dest.resolve()}",
           "lessons/00_start_here.ipynb", *args.jupyter_args]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in cmd:
        cmd.append("--allow-root")  # containers often run as root
    return subprocess.call(cmd, cwd=dest)
