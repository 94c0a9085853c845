"""The alerting service's way to the database: a pool whose calls wait out outages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock

logger = log.get(__name__)
T = TypeVar("T")


class Database:
    def __init__(self, pool: AsyncConnectionPool, clock: Clock = SYSTEM) -> None:
        self.pool = pool
        self.clock = clock

    async def run(self, fn: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection, waiting out database outages."""
        delay = 0.2
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await fn(conn)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                logger.error("database unreachable; retrying", error=str(exc), retry_in_s=delay)
                await self.clock.sleep(delay)
                delay = min(delay * 2, 10.0)
