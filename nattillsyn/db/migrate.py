"""Ordered SQL migrations, applied once each and recorded with a checksum.

Files `migrations/NNNN_name.sql` run in order, each in its own transaction,
under an advisory lock so that concurrent starts do not race. An applied file
that was edited afterwards is an error: write a new migration instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from nattillsyn import log

logger = log.get(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def available() -> list[Migration]:
    out = []
    for entry in resources.files("nattillsyn.db").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        version_s, _, rest = entry.name.partition("_")
        out.append(Migration(int(version_s), rest.removesuffix(".sql"), entry.read_text()))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return out


async def timescale_available(conn: psycopg.AsyncConnection) -> bool:
    """TimescaleDB is installed on the server *and* preloaded, so it can be created.

    Installed but not in `shared_preload_libraries` (a shared cluster that was
    not reconfigured), `CREATE EXTENSION` would end the session with FATAL:
    such a server is treated as plain PostgreSQL without trying."""
    # Reading shared_preload_libraries needs pg_read_all_settings; other roles look for a
    # setting only TimescaleDB's preloaded loader defines.
    cur = await conn.execute(
        """SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
                  CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE')
                       THEN 'timescaledb' = ANY (string_to_array(
                           replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
                       ELSE current_setting('timescaledb.max_background_workers', true)
                            IS NOT NULL
                  END"""
    )
    installed, preloaded = await cur.fetchone()
    if installed and not preloaded:
        logger.info("timescaledb installed but not preloaded; using plain PostgreSQL")
    return bool(installed and preloaded)


async def timescale_enabled(conn: psycopg.AsyncConnection) -> bool:
    """Whether the extension is created in this database (migrations branch on it)."""
    cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    return await cur.fetchone() is not None


async def migrate(conninfo: str, schema: str = "public", *, timescale: bool = True) -> list[str]:
    """Apply pending migrations in `schema`; returns the names applied."""
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_advisory_lock(hashtext('nattillsyn.migrate.' || %s))", (schema,)
        )
        try:
            if timescale and not await timescale_enabled(conn) and await timescale_available(conn):
                try:
                    await conn.execute(
                        "CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public"
                    )
                except psycopg.Error as exc:  # e.g. not in shared_preload_libraries
                    logger.warning(
                        "timescaledb present but not loadable; plain PostgreSQL", error=str(exc)
                    )
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
            await conn.execute(
                sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema))
            )
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY, name text NOT NULL,
                       checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
            done = dict(await cur.fetchall())
            for m in available():
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(
                            f"migration {m.version:04d}_{m.name} changed after it was applied"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
                applied_now.append(f"{m.version:04d}_{m.name}")
                logger.info(
                    "migration applied", migration=f"{m.version:04d}_{m.name}", schema=schema
                )
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtext('nattillsyn.migrate.' || %s))", (schema,)
            )
    return applied_now
