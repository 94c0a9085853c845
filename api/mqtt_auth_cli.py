"""`nattillsyn mqtt-auth`: Mosquitto password and ACL files from the database."""

from __future__ import annotations

import argparse
from pathlib import Path

import psycopg
from psycopg import sql

from nattillsyn.protocol import Topics
from nattillsyn.settings import Settings

from . import mosquitto


async def run(settings: Settings, args: argparse.Namespace) -> int:
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        await conn.execute(
            sql.SQL("SET search_path TO {}, public").format(
                sql.Identifier(settings.database_schema)
            )
        )
        if args.action == "service":
            if not args.name:
                print("nattillsyn: mqtt-auth service needs a NAME")
                return 2
            password = await mosquitto.set_service_account(conn, args.name)
            await conn.commit()
            print(password)  # shown once; only the hash is kept
        accounts = await mosquitto.load_accounts(conn)
    folder = args.dir or settings.api.mosquitto_dir
    if folder:
        passwd, acl = mosquitto.write_files(Path(folder), accounts, Topics(settings.topic_root))
        reloaded = mosquitto.reload_broker(args.reload_pid_file or settings.api.mosquitto_pid_file)
        print(f"wrote {passwd} and {acl} ({len(accounts)} accounts); reloaded: {reloaded}")
    elif args.action == "write":
        print("nattillsyn: give --dir or set NATTILLSYN_API__MOSQUITTO_DIR")
        return 2
    return 0
