"""`nattillsyn demo` as a new user runs it: embedded servers, a fall alert on the tablet api,
and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nattillsyn.api.oidc_testprovider import unavailable
from nattillsyn.app.embedded import find_pg_bin

pytestmark = pytest.mark.clips


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, also those that started a session of their own."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _api(opener, url: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={} if body is None else {"Content-Type": "application/json"},
    )
    with opener.open(req, timeout=10) as r:
        return json.loads(r.read())


def test_demo_shows_a_fall_alert_and_stops_cleanly(clips_dir, tmp_path) -> None:
    if find_pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries for the demo's private database")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NATTILLSYN_DATABASE_URL", "NATTILLSYN_MQTT_URL", "NATTILLSYN_CONFIG")
    }
    env["NATTILLSYN_CLIPS_DIR"] = str(clips_dir)
    log = tmp_path / "demo.log"
    # --sso (when Node's test provider is installed): local logins keep working beside it,
    # and Ctrl-C stops the provider too (it is one of the processes below).
    sso = unavailable() is None
    cmd = [sys.executable, "-m", "nattillsyn.app.cli", "demo", "--port", "0", "--rooms", "2"]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            cmd + (["--sso"] if sso else []),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            start_new_session=True,
        )
    t0 = time.monotonic()
    below: set[int] = set()
    try:
        url = None
        while url is None:  # readline blocks; the demo prints the URL once it runs
            assert proc.stdout is not None and time.monotonic() - t0 < 120
            line = proc.stdout.readline()
            assert line or proc.poll() is None, f"demo exited: {log.read_text()[-2000:]}"
            if "Tablet page:" in line:
                url = line.split("Tablet page:")[1].strip()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        _api(opener, f"{url}api/v1/login", {"username": "natt", "password": "natt-demo"})
        assert _api(opener, f"{url}api/v1/login/options")["sso"] is sso
        fall = None
        while fall is None:
            assert time.monotonic() - t0 < 180, "no fall alert within 3 minutes of start"
            board = _api(opener, f"{url}api/v1/board")
            fall = next((a for a in board["alerts"] if a["kind"] == "possible_fall"), None)
            if fall is None:
                time.sleep(0.5)
        assert fall["status"] == "firing" and not fall.get("practice")
        below = _descendants(proc.pid)
        assert below, "the demo runs its private PostgreSQL as a child"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert code in (0, 130), log.read_text()[-3000:]
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in below if _alive(p)], "processes left behind after Ctrl-C"
