"""The import-boundary check (import-linter, `.importlinter`) passes, and fails on a violation.

`./dev test` runs the check itself; this test also proves each kind of contract can break."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LINT = Path(__file__).parent / "lint" / "importlint.py"


def lint(*inject: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(LINT)] + (["--inject", *inject] if inject else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract():
    run = lint()
    assert run.returncode == 0, run.stdout[-3000:]
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "source", "says"),
    [
        # edge runs on a room device: no server package
        (
            "nattillsyn.edge.bad",
            "from nattillsyn.api import app",
            "nattillsyn.edge is not allowed to import nattillsyn.api",
        ),
        # the shared core imports no deployable
        (
            "nattillsyn.bad",
            "from nattillsyn.alerting import rules",
            "is not allowed to import nattillsyn.alerting",
        ),
        # deployables don't import the composition root
        (
            "nattillsyn.api.bad",
            "from nattillsyn.app import demo",
            "nattillsyn.api is not allowed to import nattillsyn.app",
        ),
        # another package's internals
        ("nattillsyn.api.bad", "from nattillsyn.alerting import lifecycle", "not a public module"),
    ],
)
def test_a_violation_breaks_the_check(module, source, says):
    run = lint(f"{module}={source}")
    assert run.returncode != 0
    assert says in run.stdout, run.stdout[-3000:]


def test_a_cycle_breaks_the_check():
    run = lint(
        "nattillsyn.ingest.cycle_a=from nattillsyn.ingest import cycle_b",
        "nattillsyn.ingest.cycle_b=from nattillsyn.ingest import cycle_a",
    )
    assert run.returncode != 0
    assert "No cycles are allowed in nattillsyn.ingest" in run.stdout, run.stdout[-3000:]
