import contextlib
import io
import tomllib
from pathlib import Path

import pytest

import kdlab
from kdlab.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_packaged():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "kdlab").rglob("__init__.py")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages"
    for mapped, folder in config["package-dir"].items():
        assert mapped in listed and (ROOT / folder).is_dir()


def test_the_version_is_the_packages_and_the_commands():
    from packaging.version import Version

    assert str(Version(kdlab.__version__)) == kdlab.__version__
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kdlab.__version__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and out.getvalue() == f"kdlab {kdlab.__version__}\n"


MOVED = {"kdlab.zoo": "kdlab.models.zoo", "kdlab.tasks": "kdlab.data.tasks", "kdlab.lab": "kdlab.course.lab",
         "kdlab.drill": "kdlab.course.drill", "kdlab.widgets": "kdlab.course.widgets",
         "kdlab.regrow": "kdlab.prune.regrow"}


@pytest.mark.parametrize("old, new", MOVED.items())
def test_a_moved_module_still_imports_by_its_old_name_with_a_warning(old, new, monkeypatch):
    import importlib
    import sys

    import kdlab._deprecation

    monkeypatch.delitem(sys.modules, old, raising=False)
    names = {}
    with pytest.warns(kdlab._deprecation.CATEGORY, match=f"the module {old} is deprecated .*use {new}") as seen:
        exec(compile(f"import {old} as module", __file__, "exec"), names)
    assert names["module"] is importlib.import_module(new)
    assert seen[0].filename == __file__, "the warning points at the import statement"


def test_the_package_map_names_every_module():
    import pkgutil

    described = kdlab.__doc__
    for info in pkgutil.iter_modules(kdlab.__path__):
        if not info.name.startswith("_") and f"kdlab.{info.name}" not in MOVED:
            assert f":mod:`kdlab.{info.name}`" in described, f"kdlab's docstring does not list kdlab.{info.name}"
