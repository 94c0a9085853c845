"""Keep the broker's password and ACL files in step with the database (after a device is
claimed, retired or replaced, and at start-up) and have Mosquitto reload them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from nattillsyn import log
from nattillsyn.protocol import Topics

from . import mosquitto
from .context import POOL, SETTINGS

logger = log.get(__name__)


async def sync_mosquitto(app: web.Application) -> bool:
    """Rewrite the broker's password and ACL files from the database and reload it."""
    api = app[SETTINGS].api
    if not api.mosquitto_dir:
        return False
    async with app[POOL].connection() as conn:
        accounts = await mosquitto.load_accounts(conn)
    topics = Topics(app[SETTINGS].topic_root)
    await asyncio.to_thread(mosquitto.write_files, Path(api.mosquitto_dir), accounts, topics)
    reloaded = mosquitto.reload_broker(api.mosquitto_pid_file)
    if api.mosquitto_reload_command:
        reloaded = await run_reload(api.mosquitto_reload_command)
    logger.info("mosquitto files written", accounts=len(accounts), reloaded=reloaded)
    return True


async def run_reload(argv: list[str]) -> bool:
    """Run the configured reload command (argv, no shell); True when it succeeded."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    except (OSError, TimeoutError) as exc:
        logger.warning("mosquitto reload command failed", error=str(exc))
        return False
    if proc.returncode != 0:
        logger.warning("mosquitto reload command failed", code=proc.returncode, stderr=err[-500:])
    return proc.returncode == 0
