"""MQTT ACLs on a real private Mosquitto: a device's credentials reach only its own topics.

The api provisions two devices, the devices claim their credentials, the api writes
Mosquitto's password and ACL files and reloads the broker; then device A tries to
publish into room B's topics and to read B's config.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from admin_helpers import poll, running_api, signed_in
from mqtt_wire import connack_reason
from psycopg import sql

from nattillsyn.api import mosquitto
from nattillsyn.app.embedded import PrivateMosquitto
from nattillsyn.mqtt import MqttClient, MqttError
from nattillsyn.protocol import (
    Availability,
    DeviceConfig,
    Event,
    EventType,
    RoomState,
    TopicKind,
    Topics,
    decode,
    encode,
)

CONF = "allow_anonymous false\npassword_file {dir}/passwd\nacl_file {dir}/acl\n"


def connack(port: int, username: str, password: str) -> int | str:
    """The CONNACK reason code the broker gives these credentials (0: accepted)."""
    return connack_reason(port, user=username, password=password)


@pytest.fixture
async def secured_broker(settings):
    """A private Mosquitto with password and ACL files, and a service account for the api."""
    broker = PrivateMosquitto(extra_conf=CONF)
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        await conn.execute(
            sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.database_schema))
        )
        api_pw = await mosquitto.set_service_account(conn, "svc-api")
        test_pw = await mosquitto.set_service_account(conn, "svc-test")
        await conn.commit()
        accounts = await mosquitto.load_accounts(conn)
    mosquitto.write_files(broker.dir, accounts, Topics(settings.topic_root))
    await asyncio.to_thread(broker.start)
    pid_file = broker.dir / "mosquitto.pid"
    pid_file.write_text(str(broker.proc.pid))
    s = settings.model_copy(
        update={
            "mqtt_url": f"mqtt://svc-api:{api_pw}@127.0.0.1:{broker.port}",
            "api": settings.api.model_copy(
                update={"mosquitto_dir": str(broker.dir), "mosquitto_pid_file": str(pid_file)}
            ),
        }
    )
    try:
        yield broker, s, f"mqtt://svc-test:{test_pw}@127.0.0.1:{broker.port}"
    finally:
        await asyncio.to_thread(broker.stop)


async def test_device_cannot_publish_into_another_rooms_topics(secured_broker) -> None:
    broker, settings, observer_url = secured_broker
    topics = Topics(settings.topic_root)
    site = settings.site
    async with running_api(settings, rooms=("rum-101", "rum-102")) as (api, _s):
        creds = {}
        async with signed_in(api, "chef") as c:
            for dev, room in (("cam-a", "rum-101"), ("cam-b", "rum-102")):
                p = await c.ok(
                    "POST", f"/api/v1/units/{site}/devices", {"id": dev, "room": room}, status=201
                )
                creds[dev] = await c.ok(
                    "POST", "/api/v1/devices/claim", {"code": p["claim_code"]}, status=200
                )
            # A claim code works once.
            await c.ok("POST", "/api/v1/devices/claim", {"code": p["claim_code"]}, status=404)
        a, b = creds["cam-a"], creds["cam-b"]
        assert a["mqtt_username"] == f"dev-{site}-cam-a" and a["room"] == "rum-101"
        acl = (broker.dir / "acl").read_text()
        assert f"topic write {topics.device(site, 'rum-101', 'cam-a', TopicKind.event)}" in acl
        assert "svc-test" in (broker.dir / "passwd").read_text()
        # The broker reloads its files on SIGHUP: wait until it takes device A's password.
        await poll(lambda: _accepted(broker.port, a), timeout=10)
        assert await asyncio.to_thread(connack, broker.port, a["mqtt_username"], "wrong") != 0
        assert await asyncio.to_thread(connack, broker.port, "nobody", "x") != 0

        observer = MqttClient(observer_url, f"obs-{uuid.uuid4().hex[:6]}")
        await observer.start()
        await observer.subscribe(f"{topics.root}/#")
        dev_a = MqttClient(
            f"mqtt://{a['mqtt_username']}:{a['mqtt_password']}@127.0.0.1:{broker.port}",
            f"dev-a-{uuid.uuid4().hex[:6]}",
        )
        await dev_a.start()
        try:
            ids = dict(site=site, session=1, seq=1)
            own_event = Event(**ids, room="rum-101", device="cam-a", event_id=uuid.uuid4(),
                              type=EventType.motion, phase="new", start=Event.model_fields["ts"].default_factory())  # fmt: skip
            attempts = {
                topics.device(site, "rum-102", "cam-b", TopicKind.event): Event(
                    **ids,
                    room="rum-102",
                    device="cam-b",
                    event_id=uuid.uuid4(),
                    type=EventType.possible_fall,
                    phase="new",
                    start=own_event.start,
                ),
                topics.device(site, "rum-102", "cam-b", TopicKind.state): RoomState(
                    **ids,
                    room="rum-102",
                    device="cam-b",
                    state="on_floor",
                    since=own_event.start,
                    confidence=1,
                ),
                topics.device(site, "rum-102", "cam-b", TopicKind.availability): Availability(
                    **ids, room="rum-102", device="cam-b", state="offline"
                ),
                topics.device(site, "rum-102", "cam-b", TopicKind.config_set): DeviceConfig(
                    version=99, monitoring=False
                ),
                # Not even its own room's other kinds of topic, nor its own config/set.
                topics.room(site, "rum-102", TopicKind.alert_set): None,
                topics.device(site, "rum-101", "cam-a", TopicKind.config_set): DeviceConfig(
                    version=99, monitoring=True
                ),
                topics.device(site, "rum-101", "cam-x", TopicKind.event): None,
            }
            refused = 0
            for topic, msg in attempts.items():
                try:
                    await dev_a.publish(topic, encode(msg) if msg else b"{}", qos=1)
                except MqttError:
                    refused += 1  # MQTT 5: PUBACK 0x87 not authorised
            # Then one allowed message: Mosquitto keeps one client's order, so when the
            # observer has it, anything that got through before would be there too.
            await dev_a.publish(
                topics.device(site, "rum-101", "cam-a", TopicKind.event), encode(own_event)
            )
            seen = []
            while True:
                m = await observer.next_message(timeout=5)
                if m.retain:
                    continue  # retained configs the api pushed
                seen.append(m.topic)
                if m.topic == topics.device(site, "rum-101", "cam-a", TopicKind.event):
                    break
            leaked = [t for t in seen if t in attempts]
            assert leaked == [], leaked
            assert refused == len(attempts)

            # Reading: A may read its own config, never B's. Mosquitto accepts the
            # subscription and withholds the messages; B's retained config was pushed
            # before A's, and retained messages go out in subscription order.
            b_cfg = topics.device(site, "rum-102", "cam-b", TopicKind.config_set)
            a_cfg = topics.device(site, "rum-101", "cam-a", TopicKind.config_set)
            with contextlib.suppress(MqttError):
                await dev_a.subscribe(b_cfg)
            await dev_a.subscribe(a_cfg)
            first = await dev_a.next_message(timeout=5)
            assert first.topic == a_cfg
            assert decode(DeviceConfig, first.payload).version >= 1
            assert dev_a.backlog == 0
        finally:
            await dev_a.stop()
            await observer.stop()

        # Replacing B revokes B's credentials at the broker.
        async with signed_in(api, "chef") as c:
            await c.ok(
                "POST", f"/api/v1/units/{site}/devices/cam-b/replace", {"new_id": "cam-b2"},
                status=201,
            )  # fmt: skip
        await poll(lambda: _refused(broker.port, b), timeout=10)


async def _accepted(port: int, c: dict) -> bool:
    return await asyncio.to_thread(connack, port, c["mqtt_username"], c["mqtt_password"]) == 0


async def _refused(port: int, c: dict) -> bool:
    return not await _accepted(port, c)


def test_password_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """Our PBKDF2 hashes are what mosquitto_passwd writes (and verify its output)."""
    exe = shutil.which("mosquitto_passwd")
    if exe is None:
        pytest.skip("mosquitto_passwd not installed")
    f = tmp_path / "pw"
    subprocess.run([exe, "-c", "-b", str(f), "dev", "s3cret"], check=True)
    stored = f.read_text().strip().split(":", 1)[1]
    assert mosquitto.verify_password(stored, "s3cret")
    assert not mosquitto.verify_password(stored, "s3cret!")
    mine = mosquitto.hash_password("s3cret")
    assert mine.startswith("$7$101$") and mosquitto.verify_password(mine, "s3cret")


def test_acl_refuses_names_that_would_rewrite_it() -> None:
    acc = mosquitto.Account("dev-x\ntopic readwrite #", "device", "$7$1$a$b", "s", "r", "d")
    with pytest.raises(ValueError):
        mosquitto.render_acl([acc], Topics("nattillsyn"))
