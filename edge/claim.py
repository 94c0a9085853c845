"""`nattillsyn claim CODE --api URL`: a room device claims itself (stdlib only: runs on a Pi
with just the `edge` extra). Writes the edge settings as TOML, readable only by its owner."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit


def claim(api: str, code: str, timeout: float = 15.0) -> dict:
    req = urllib.request.Request(
        api.rstrip("/") + "/api/v1/devices/claim",
        data=json.dumps({"code": code}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def settings_toml(c: dict) -> str:
    """The edge settings of a claimed device (credentials in the broker URL)."""
    u = urlsplit(c["mqtt_url"])
    netloc = f"{quote(c['mqtt_username'], safe='')}:{quote(c['mqtt_password'], safe='')}@{u.netloc}"
    url = urlunsplit((u.scheme, netloc, u.path, u.query, ""))
    return (
        "# Written by `nattillsyn claim`; the password is not kept anywhere else.\n"
        f'mqtt_url = "{url}"\n'
        f'topic_root = "{c["topic_root"]}"\n'
        f'site = "{c["site"]}"\n\n'
        "[edge]\n"
        f'room = "{c["room"]}"\n'
        f'device = "{c["device"]}"\n'
    )


def run(api: str, code: str, write: str) -> int:
    try:
        c = claim(api, code)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        print(f"nattillsyn: claim refused ({exc.code}): {detail}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"nattillsyn: cannot reach {api}: {exc}", file=sys.stderr)
        return 1
    path = Path(write)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(settings_toml(c))
    print(f"claimed {c['site']}/{c['room']}/{c['device']}; settings written to {path}")
    return 0
