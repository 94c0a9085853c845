"""One UPDATE from a dict of changed fields (column names come from validated models)."""

from __future__ import annotations

from psycopg import AsyncConnection, sql


async def update_row(
    conn: AsyncConnection,
    table: str,
    key: dict[str, object],
    values: dict[str, object],
    *,
    touch: bool = False,
) -> None:
    """Set `values` on the row of `table` matching `key`; `touch` also sets `updated_at`."""
    if not values:
        return
    sets = [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values]
    if touch:
        sets.append(sql.SQL("updated_at = now()"))
    where = [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in key]
    query = sql.SQL("UPDATE {} SET {} WHERE {}").format(
        sql.Identifier(table), sql.SQL(", ").join(sets), sql.SQL(" AND ").join(where)
    )
    await conn.execute(query, (*values.values(), *key.values()))
