"""The two storage backends the suite runs on: plain PostgreSQL and TimescaleDB."""

from __future__ import annotations

import os

import pytest

BACKENDS = ("plain", "timescaledb")
REQUIRE_TIMESCALE = os.environ.get("NATTILLSYN_REQUIRE_TIMESCALE") == "1"


def timescale_missing(reason: str) -> None:
    """Skip, or fail when the run requires TimescaleDB (NATTILLSYN_REQUIRE_TIMESCALE=1, CI)."""
    if REQUIRE_TIMESCALE:
        pytest.fail(f"NATTILLSYN_REQUIRE_TIMESCALE=1 but {reason}", pytrace=False)
    pytest.skip(reason)
