"""The import-boundary check (import-linter, `.importlinter`) passes, and fails on a violation.

`./dev test` runs the check itself; this test also proves each kind of contract can break."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LINT = Path(__file__).parent / "lint" / "importlint.py"


def lint(*inject: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(LINT)] + (["--inject", *inject] if inject else [])
    env = {**os.environ, "COLUMNS": "200"}  # no wrapped lines in the report
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


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
            "nattillsyn.settings.bad",
            "from nattillsyn.alerting import rules",
            "is not allowed to import nattillsyn.alerting",
        ),
        # a new module of the core must be placed in a layer
        ("nattillsyn.bad", "import os", "not listed as layers"),
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


def test_a_room_device_runs_the_cli_and_edge_without_the_server_extras():
    # `nattillsyn[edge]` on a Pi has no psycopg, aiohttp, argon2, amqtt, jinja2 or pyarrow.
    code = (
        "import sys\n"
        "for m in ('psycopg', 'psycopg_pool', 'aiohttp', 'argon2', 'amqtt', 'jinja2', 'pyarrow'):\n"
        "    sys.modules[m] = None\n"
        "from nattillsyn.app.cli import build_parser\n"
        "build_parser().parse_args(['edge'])\n"
        "import nattillsyn.edge.agent, nattillsyn.edge.claim, nattillsyn.edge.evaluate\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
