"""Run import-linter (contracts in .importlinter) over the package as it is installed.

pyproject's package-dir maps top folders (edge/, api/, …) into `nattillsyn`, but grimp reads one
folder per package; so the modules are laid out as a wheel has them, in a temporary folder that
comes first on sys.path. Usage: python tests/lint/importlint.py [--inject MODULE=SOURCE ...]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns("__pycache__", "static", "templates", "migrations", "*.yaml")


def lay_out(into: Path) -> None:
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(dirs.items()):
        shutil.copytree(ROOT / folder, into.joinpath(*package.split(".")), ignore=IGNORE)


def main(argv: list[str]) -> int:
    """`--inject nattillsyn.edge.bad='import x'` adds a module first (to see a contract break)."""
    with tempfile.TemporaryDirectory() as tmp:
        lay_out(Path(tmp))
        for spec in argv[argv.index("--inject") + 1 :] if "--inject" in argv else []:
            module, source = spec.split("=", 1)
            Path(tmp, *module.split(".")).with_suffix(".py").write_text(source + "\n")
        sys.path[:0] = [tmp, str(Path(__file__).parent)]
        os.chdir(tmp)  # import-linter puts the working folder first on sys.path
        return lint_imports(config_filename=str(ROOT / ".importlinter"), no_cache=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
