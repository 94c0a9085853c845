"""Migrations on a live system: concurrent starts do not race, and no migration after the
initial schema takes a table-rewriting or blocking step without saying why it is safe.

The rules are in docs/deploy.md ("Upgrades"): expand, then contract. A statement below that
is needed anyway carries a `-- live-safe: <why>` comment on one of the three lines above it.
"""

from __future__ import annotations

import asyncio
import re

import psycopg
import pytest
from psycopg import sql

from nattillsyn.db.migrate import available, migrate

INITIAL = 3  # 0001-0003 create the schema of a new installation: nothing live to protect
RISKY = [
    (r"\bDROP\s+(TABLE|COLUMN)\b", "drops data the running version may still read"),
    (r"\bRENAME\b", "renames what the running version still uses"),
    (
        r"\bALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE\b",
        "rewrites the table under an exclusive lock",
    ),
    (r"\bSET\s+NOT\s+NULL\b", "scans the table under an exclusive lock"),
    (r"\bVACUUM\s+FULL\b|\bCLUSTER\b", "rewrites the table under an exclusive lock"),
    (r"\bLOCK\s+TABLE\b", "blocks every writer"),
]


def _code(line: str) -> str:
    return line.split("--", 1)[0]


_FUNCTION_BODY = re.compile(
    r"(CREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\b.*?)(\$\w*\$)(.*?)\2",
    re.IGNORECASE | re.DOTALL,
)


def _without_function_bodies(text: str) -> str:
    """Function bodies run when called, not when migrating: blank them, keep line numbers."""
    return _FUNCTION_BODY.sub(
        lambda m: m.group(1) + m.group(2) + re.sub(r"[^\n]", " ", m.group(3)) + m.group(2), text
    )


def live_unsafe(text: str) -> list[str]:
    lines = _without_function_bodies(text).splitlines()
    found = []
    for n, line in enumerate(lines):
        for pattern, why in RISKY:
            if re.search(pattern, _code(line), re.IGNORECASE):
                context = " ".join(lines[max(0, n - 3) : n + 1])
                if "live-safe:" not in context:
                    found.append(f"line {n + 1}: {line.strip()} ({why})")
    return found


def test_the_lint_catches_what_it_should():
    assert live_unsafe("ALTER TABLE events DROP COLUMN zone;")
    assert live_unsafe("ALTER TABLE alerts ALTER COLUMN title TYPE varchar(100);")
    assert live_unsafe("ALTER TABLE rooms RENAME TO wards;")
    assert not live_unsafe("-- live-safe: table emptied in 0007\nDROP TABLE old_thing;")
    assert not live_unsafe("ALTER TABLE devices ADD COLUMN name text;  -- drop column later")
    body = "CREATE FUNCTION prune() RETURNS void LANGUAGE plpgsql AS $f$\nBEGIN\n  DROP TABLE x;\nEND $f$;"
    assert not live_unsafe(body)  # runs when called, not at migration time
    assert live_unsafe("DO $$ BEGIN DROP TABLE x; END $$;")


@pytest.mark.parametrize(
    "m", [m for m in available() if m.version > INITIAL], ids=lambda m: f"{m.version:04d}_{m.name}"
)
def test_later_migrations_are_safe_on_a_live_system(m):
    problems = live_unsafe(m.sql)
    assert not problems, f"{m.version:04d}_{m.name}: " + "; ".join(problems)


async def test_concurrent_migrate_runs_apply_each_migration_once(database_url: str, test_id: str):
    """Several replicas starting at once (compose, rolling upgrade) do not race."""
    schema = f"t_{test_id}_mig"
    try:
        results = await asyncio.gather(*(migrate(database_url, schema) for _ in range(3)))
        applied = sorted(name for r in results for name in r)
        assert applied == sorted(f"{m.version:04d}_{m.name}" for m in available())
        assert await migrate(database_url, schema) == []
    finally:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
