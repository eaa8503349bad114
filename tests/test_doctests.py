"""The examples in kdlab's docstrings run and print what they show."""
import doctest
import importlib
import pkgutil

import pytest

import kdlab

MODULES = sorted(m.name for m in pkgutil.walk_packages(kdlab.__path__, "kdlab.")
                 if not m.name.startswith("kdlab.course."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
