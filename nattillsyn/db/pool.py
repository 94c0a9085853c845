"""Connection pool bound to the configured schema."""

from __future__ import annotations

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool


def make_pool(
    conninfo: str, schema: str, *, min_size: int = 1, max_size: int = 8
) -> AsyncConnectionPool:
    """An (unopened) pool whose connections use `schema` first on the search path."""

    async def configure(conn: AsyncConnection) -> None:
        # Autocommit so the SET holds without an open transaction.
        await conn.set_autocommit(True)
        await conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))

    return AsyncConnectionPool(
        conninfo, min_size=min_size, max_size=max_size, configure=configure, open=False
    )
