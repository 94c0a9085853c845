"""Waiting for the database to show something (a service writes it asynchronously)."""

from __future__ import annotations

import asyncio
import time


async def poll_db(pool, query: str, args=(), timeout: float = 10.0, every: float = 0.05):
    """The first row of `query` once its first column is truthy; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        async with pool.connection() as conn:
            row = await (await conn.execute(query, args)).fetchone()
        if row and row[0]:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {query!r}")
        await asyncio.sleep(every)
