"""Privacy: the agent, run on real clips, writes no image anywhere and sends none.

Under a Python audit hook every file the process opens for writing is recorded;
a subscriber on the test's topic root records every MQTT payload the agent sends
(events, states, heartbeats, the zone map). Then: no file outside the agent's
state folder, nothing in it or in any payload but small JSON documents valid by
the contract, no image signature (raw, base64 or hex), no long opaque blobs, and
OpenCV's image writers were never called.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import sys
import threading
import uuid
from functools import partial
from pathlib import Path

import cv2
import pytest
from test_edge_agent import Watcher, clear_retained, edge_settings

from nattillsyn.edge.agent import EdgeAgent
from nattillsyn.edge.sources import PlaylistSource
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Command, TopicKind, Topics, encode
from nattillsyn.protocol.validate import Record, decode_message

pytestmark = pytest.mark.clips

EDGE_SRC = Path(__file__).resolve().parents[1] / "edge"
CLIPS = ["gmdcsa24_s3_fall_19.mp4", "gmdcsa24_s2_adl_23.mp4"]
MAX_PAYLOAD = {"command/response": 8192}  # the zone map: three maps of 24×32 digits
MAX_DEFAULT = 2048
SIGNATURES = [
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",  # TIFF
    b"MM\x00*",
    b"RIFF",  # WebP/AVI
    b"\x00\x00\x00\x0cjP",  # JPEG 2000
    b"\x1aE\xdf\xa3",  # Matroska/WebM
    b"ftyp",  # MP4/HEIF
    b"P5\n",  # PGM
    b"P6\n",  # PPM
]
TEXT_SIGNATURES = ["/9j/", "iVBORw0KGgo", "R0lGOD", "ffd8ff", "89504e47", "UklGR"]


class _Audit:
    def __init__(self) -> None:
        self.active = False
        self.writes: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = ([*list(args), None, None, None])[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing and isinstance(path, str | bytes | os.PathLike):
                with self.lock:
                    self.writes.append(os.fsdecode(path))
        elif event in {"os.rename", "os.replace", "os.link", "os.symlink", "shutil.copyfile",
                       "sqlite3.connect", "os.mkdir"}:  # fmt: skip
            with self.lock:
                self.events.append((event, repr(args)[:200]))


AUDIT = _Audit()
sys.addaudithook(AUDIT)  # hooks cannot be removed; it is idle unless `active`


def _no_image_bytes(data: bytes, where: str) -> None:
    for sig in SIGNATURES:
        assert sig not in data, f"image signature {sig!r} in {where}"
    text = data.decode("utf-8", "replace")
    for sig in TEXT_SIGNATURES:
        assert sig.lower() not in text.lower(), f"encoded image signature {sig} in {where}"
    for token in re.findall(r"[A-Za-z0-9+/=_-]{200,}", text):
        raise AssertionError(f"long opaque token ({len(token)} chars) in {where}")
    for token in re.findall(r"[A-Za-z0-9+/]{40,}={0,2}", text):
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=False)
        except ValueError:
            continue
        assert not any(raw.startswith(s) for s in SIGNATURES), f"base64 image in {where}"


def _outside(paths: list[str], folder: Path) -> list[str]:
    root = folder.resolve()
    return [
        p for p in paths if not Path(p).resolve().is_relative_to(root) and "__pycache__" not in p
    ]


@pytest.fixture
def image_writers_tripwire(monkeypatch):
    calls: list[str] = []

    def trip(name):
        def f(*a, **k):
            calls.append(name)
            raise RuntimeError(f"cv2.{name} called: no image may be written or encoded")

        return f

    for name in ("imwrite", "imencode", "VideoWriter", "imwritemulti"):
        if hasattr(cv2, name):
            monkeypatch.setattr(cv2, name, trip(name))
    return calls


def test_edge_code_never_writes_or_encodes_images() -> None:
    banned = re.compile(r"imwrite|imencode|VideoWriter|\.tofile\(|np\.save|PIL|Image\.fromarray")
    for path in EDGE_SRC.glob("*.py"):
        text = path.read_text()
        assert not banned.search(text), f"{path.name} mentions an image writer"


async def test_no_image_leaves_the_agent(
    mqtt_url, topic_root, tmp_path, clips_dir, image_writers_tripwire
) -> None:
    state_dir = tmp_path / "state"
    s = edge_settings(
        mqtt_url,
        topic_root,
        state_dir,
        monitor_without_config=True,
        fall_confirm_s=2.0,
        heartbeat_s=0.2,
    )
    source = partial(
        PlaylistSource,
        [clips_dir / c for c in CLIPS],
        fps=5.0,
        width=160,
        replay_speed=0,
        hold_last_s=4.0,
    )
    topics = Topics(topic_root)
    try:
        async with Watcher(mqtt_url, topic_root) as w:
            AUDIT.active = True
            probe = tmp_path / "probe.txt"
            probe.write_text("the hook sees writes")
            assert str(probe) in AUDIT.writes
            AUDIT.writes.remove(str(probe))
            agent = EdgeAgent(s, source=source)
            try:
                await agent.start()
                await w.wait(
                    lambda: any(e["type"] == "possible_fall" for e in w.of(TopicKind.event)),
                    timeout=60,
                    what="the fall in the clip",
                )
                # The zone map answer is the largest thing a device ever sends.
                admin = MqttClient(mqtt_url, f"admin-{uuid.uuid4().hex[:8]}")
                await admin.start()
                cmd = Command(correlation_id=uuid.uuid4(), command="zone_map")
                await admin.publish(
                    topics.device("site-1", "rum-1", "cam-1", TopicKind.command), encode(cmd)
                )
                await w.wait(lambda: w.of(TopicKind.command_response), what="zone map")
                await admin.stop()
                await w.wait(
                    lambda: agent.worker.thread is None or not agent.worker.thread.is_alive(), 60
                )
                beats = len(w.of(TopicKind.heartbeat))
                await w.wait(lambda: len(w.of(TopicKind.heartbeat)) > beats, what="a heartbeat")
            finally:
                await agent.stop()
                AUDIT.active = False
            sent = [m for m in w.got if m.payload]
    finally:
        await clear_retained(mqtt_url, topic_root)

    assert not image_writers_tripwire
    assert any(e == "sqlite3.connect" for e, _ in AUDIT.events)  # the queue, seen by the hook
    # 1. Files: only the agent's state folder, and in it only the SQLite queue.
    outside = _outside(AUDIT.writes, state_dir)
    assert not outside, f"files written outside the state folder: {outside}"
    files = sorted(p.name for p in state_dir.iterdir())
    assert files and all(f.startswith("edge-site-1-rum-1-cam-1.sqlite") for f in files), files
    for f in state_dir.iterdir():
        _no_image_bytes(f.read_bytes(), f.name)
    db = sqlite3.connect(state_dir / files[0])
    rows = (
        db.execute("SELECT payload FROM queue").fetchall()
        + db.execute("SELECT value FROM kv").fetchall()
    )
    for (payload,) in rows:
        raw = payload if isinstance(payload, bytes) else payload.encode()
        assert len(raw) <= MAX_DEFAULT
        json.loads(raw)
    db.close()

    # 2. MQTT: every payload is a small JSON document valid by the contract.
    kinds = set()
    for m in sent:
        rec = decode_message(topics, m.topic, m.payload, 65536)
        assert isinstance(rec, Record), f"invalid payload on {m.topic}: {rec}"
        kind = rec.topic.kind.value
        kinds.add(kind)
        limit = MAX_PAYLOAD.get(kind, MAX_DEFAULT)
        assert len(m.payload) <= limit, f"{kind} payload of {len(m.payload)} bytes"
        _no_image_bytes(m.payload, m.topic)
    assert {"event", "state", "heartbeat", "availability", "command/response"} <= kinds
    assert agent.events_published >= 3
