"""First-boot job of the compose stack: the services' broker accounts, then the broker files.

Reads "user password" lines (secrets/mqtt_services, made by init-secrets), stores each as a
service account in `mqtt_accounts` (only Mosquitto's PBKDF2 hash, through the api's own
`hash_password`), then runs `nattillsyn mqtt-auth write` so Mosquitto's password file and
ACL hold every service and every claimed device. Idempotent; prints no password.

    python mqtt-accounts.py SERVICES_FILE AUTH_DIR
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import psycopg
from psycopg import sql

from nattillsyn.api.mosquitto import hash_password, verify_password
from nattillsyn.app import cli
from nattillsyn.settings import load


async def upsert(pairs: list[list[str]]) -> list[str]:
    settings = load()
    names = []
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        await conn.execute(
            sql.SQL("SET search_path TO {}, public").format(
                sql.Identifier(settings.database_schema)
            )
        )
        for user, password in pairs:
            cur = await conn.execute(
                "SELECT password_hash FROM mqtt_accounts WHERE username = %s AND revoked_at IS NULL",
                (user,),
            )
            row = await cur.fetchone()
            if row is None or not verify_password(row[0], password):  # new or rotated
                await conn.execute(
                    """INSERT INTO mqtt_accounts (username, kind, password_hash)
                       VALUES (%s, 'service', %s)
                       ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                           kind = 'service', revoked_at = NULL""",
                    (user, hash_password(password)),
                )
            names.append(user)
        await conn.commit()
    return names


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    services_file, auth_dir = argv
    lines = Path(services_file).read_text().splitlines()
    names = asyncio.run(upsert([ln.split() for ln in lines if ln.strip()]))
    print(f"service accounts: {', '.join(names)}")
    return cli.main(["mqtt-auth", "write", "--dir", auth_dir])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
