"""Old spellings that keep working for one release, each with a warning that names
the new spelling.

- :func:`warn` for a renamed function, module or argument order;
- :func:`renamed` for a function that moved: the old name calls the new one;
- :func:`keyword_only` for arguments that used to be accepted by position;
- :func:`moved_attributes` for names that moved to another module;
- :func:`moved_module` for a module that moved: the old module re-exports the new one.

The warnings are :data:`CATEGORY`, ``DeprecationWarning``, attributed to the line that
uses the old spelling: Python shows them in scripts and notebooks (``__main__``) and
test runners show them everywhere, while code that merely imports a library using an
old spelling stays quiet.
"""
from __future__ import annotations

import functools
import importlib
import sys
import warnings

CATEGORY = DeprecationWarning


def warn(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated and ``new`` replaces it."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  CATEGORY, stacklevel=stacklevel)


def renamed(new, old: str, new_name: str):
    """A function ``old`` that warns and calls ``new`` (whose public name is ``new_name``)."""

    @functools.wraps(new)
    def wrapper(*args, **kwargs):
        warn(old, new_name)
        return new(*args, **kwargs)

    wrapper.__doc__ = f"Deprecated: use :func:`{new_name}`."
    return wrapper


def keyword_only(positional: int, names: tuple):
    """Accept ``names`` by position for one more release: a call with more than
    ``positional`` positional arguments warns and passes the extra ones as keywords."""

    def decorate(fn):
        where = f"{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if len(args) > positional:
                extra = args[positional:]
                if len(extra) > len(names):
                    raise TypeError(f"{where}() takes {positional} positional arguments and the keywords "
                                    f"{', '.join(names)}; got {len(args)} positional arguments")
                given = names[:len(extra)]
                clash = [n for n in given if n in kwargs]
                if clash:
                    raise TypeError(f"{where}() got {clash[0]} both by position and by keyword")
                warn(f"passing {', '.join(given)} to {where} by position",
                     f"{fn.__name__}(..., {', '.join(f'{n}=...' for n in given)})")
                kwargs.update(zip(given, extra))
                args = args[:positional]
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def moved_attributes(module: str, moved: dict):
    """A module-level ``__getattr__`` for ``moved = {old name: "new.module.name"}``: the
    old name still resolves (attribute access and ``from module import name``), with
    a warning that names the new one."""

    def __getattr__(name: str):
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, attribute = moved[name].rpartition(".")
        warn(f"{module}.{name}", moved[name])
        return getattr(importlib.import_module(where), attribute)

    return __getattr__


def moved_module(old: str, new: str) -> None:
    """Make the module ``old`` (being imported) an alias of ``new``, with a warning.

    Called as the one statement of the old module's file; the old name then refers
    to the very module object of the new one, so attributes set on either are seen
    by both (tests that monkeypatch through the old path keep working)."""
    module = importlib.import_module(new)
    warn(f"the module {old}", new, stacklevel=4)
    sys.modules[old] = module
