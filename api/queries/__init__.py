"""The SQL behind the api's handlers, one module per area (routes → handlers → queries).

Tablet side: `board`, `tablets`, `sso`, `accounts`, `units`, `evaluation`; administration:
`structure` (units, rooms, criteria, staff), `residents` (inclusion: decision, offer,
consents, schedule, pauses, alerting profile), `devices` (provisioning, claim codes, health);
`audit` for both (the access log, loggkontroll and the export datasets).

Functions take an open connection and return rows or plain values; they decide nothing
about HTTP, and the handlers hold no SQL.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection


async def fetch_one(conn: AsyncConnection, query: str, params: tuple = ()) -> tuple | None:
    cur = await conn.execute(query, params)
    return await cur.fetchone()


async def fetch_all(conn: AsyncConnection, query: str, params: tuple = ()) -> list[tuple]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def fetch_value(conn: AsyncConnection, query: str, params: tuple = ()) -> Any:
    """The first column of the first row; None when there is no row."""
    row = await fetch_one(conn, query, params)
    return row[0] if row else None
