"""The examples in kdlab's docstrings run and print what they show."""
import doctest
import importlib
import pkgutil
import warnings

import pytest

import kdlab
import kdlab._deprecation

# the notebook folders mapped into kdlab.course hold no Python
MODULES = sorted(m.name for m in pkgutil.walk_packages(kdlab.__path__, "kdlab.")
                 if not m.name.startswith(("kdlab.course.lessons", "kdlab.course.exercises")))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kdlab._deprecation.CATEGORY)
        module = importlib.import_module(name)
    if module.__name__ != name:
        pytest.skip(f"{name} is the old name of {module.__name__}, whose examples run under that name")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
