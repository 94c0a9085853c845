"""A service as its own process, the way production runs it (`nattillsyn <command>`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any


def service_process(command: str, env: Mapping[str, str], **popen: Any) -> subprocess.Popen:
    """`nattillsyn <command>` (ingest, alerting, api, edge, …) with this interpreter; `popen`
    goes to subprocess.Popen (stdout, stderr, start_new_session, …)."""
    return subprocess.Popen(
        [sys.executable, "-m", "nattillsyn.app.cli", command], env=dict(env), **popen
    )
