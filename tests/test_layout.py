"""The tree keeps its shape: every package ships in the wheel, and no module outside tests/ is
too long to read whole."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600


def test_every_package_is_listed_for_the_wheel():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for package, folder in tool["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - found == set(), "listed packages that do not exist"


def test_no_module_outside_tests_is_over_600_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in ROOT.rglob("*.py")
        if not {"tests", ".venv", "build", "node_modules"} & set(p.relative_to(ROOT).parts)
        and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
