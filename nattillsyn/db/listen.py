"""LISTEN on a PostgreSQL channel for as long as a service runs, again after a lost connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
from psycopg import sql

from nattillsyn import log
from nattillsyn.clock import Clock

logger = log.get(__name__)


async def listen(
    database_url: str,
    channel: str,
    on_note: Callable[[str], None],
    *,
    clock: Clock,
    on_listening: Callable[[], None] = lambda: None,
) -> None:
    """Call `on_note(payload)` for each notification; `on_listening` each time LISTEN is (re)set,
    so a caller can look again at what it may have missed meanwhile. Runs until cancelled."""
    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                delay = 0.5
                on_listening()
                async for note in conn.notifies():
                    on_note(note.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("listener lost; retrying", channel=channel, error=str(exc))
            await clock.sleep(delay)
            delay = min(delay * 2, 10)
