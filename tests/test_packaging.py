import tomllib
from pathlib import Path

import kdlab

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_packaged():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "kdlab").rglob("__init__.py")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages"
    for mapped, folder in config["package-dir"].items():
        assert mapped in listed and (ROOT / folder).is_dir()


def test_version_is_set():
    assert kdlab.__version__.count(".") == 2
