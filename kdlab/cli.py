"""The ``kdlab`` command: ``kdlab build-exercises``, ``kdlab grade``, ``kdlab lab``."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kdlab", description="The kdlab course tools.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _commands():
        register(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    # "--" ends kdlab's options: what follows goes unchanged to the command (kdlab lab
    # hands it to jupyter lab), so it can never be mistaken for a folder name.
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "passthrough", False) or any(not u.startswith("-") for u in unknown):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"kdlab {args.command} takes no arguments after --, got {' '.join(extra)}")
    args.extra = unknown + extra
    return int(args.run(args) or 0)


def _version() -> str:
    import kdlab

    return f"kdlab {kdlab.__version__}"


def _commands():
    """Each command module exposes ``register(subparsers)`` that sets ``run``."""
    import importlib

    found = []
    for name in ("kdlab.grading.cli", "kdlab.course.lab"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        found.append(module.register)
    return found


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
