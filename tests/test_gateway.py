"""The care-home gateway on real brokers and a real PostgreSQL (no network namespaces:
the centre "goes away" by stopping its alerting; see test_gateway_partition.py for a cut link).

The centre is the test's schema on the shared PostgreSQL and the shared Mosquitto; the site
has its own private Mosquitto and its own schema (the gateway's local database).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from mqtt_collect import Collector
from psycopg import sql
from tls_broker import tls_mosquitto

from nattillsyn.alerting import gateway_sync, rules, site_watch
from nattillsyn.alerting.service import AlertingService
from nattillsyn.app.demo import seed
from nattillsyn.app.embedded import PrivateMosquitto
from nattillsyn.clock import ManualClock
from nattillsyn.db.migrate import migrate
from nattillsyn.gateway.held import HeldAlerts
from nattillsyn.gateway.modes import ModeMachine
from nattillsyn.gateway.replica import apply_snapshot
from nattillsyn.gateway.service import GatewayService
from nattillsyn.gateway.spool import Incoming, Spool, SpoolFull, message_class
from nattillsyn.ids import new_id
from nattillsyn.ingest.service import IngestService
from nattillsyn.mqtt import MqttClient, TlsFiles
from nattillsyn.protocol import (
    Alert,
    AlertAction,
    Event,
    GatewayMode,
    GatewayStatus,
    GatewaySync,
    Heartbeat,
    RoomState,
    TopicKind,
    Topics,
    decode,
    encode,
)
from nattillsyn.protocol.gateway import SyncAlert, SyncAudit, SyncHistory
from nattillsyn.settings import Settings
from nattillsyn.testing.poll import poll as poll_until

T0 = datetime(2026, 1, 10, 22, 0, tzinfo=UTC)


async def poll(fn, timeout: float = 20.0):
    """Call `fn` (sync or async) until it returns something truthy; fails after `timeout`."""
    return await poll_until(fn, timeout)


# -- pure ----------------------------------------------------------------------------------


def test_message_class_policy() -> None:
    assert message_class(TopicKind.heartbeat, b"{}") == 0
    assert message_class(TopicKind.event, b'{"type":"motion"}') == 1
    assert message_class(TopicKind.event, b'{"type":"possible_fall"}') == 3
    assert message_class(TopicKind.state, b"{}") == 2
    assert message_class(None, b"{}") == 3


def test_spool_bound_drops_least_important_first(tmp_path) -> None:
    sp = Spool(tmp_path / "s.sqlite", max_bytes=1000, warn_ratio=0.4)

    def item(cls: int, n: int = 90) -> Incoming:
        return Incoming("t/x", b"x" * (n - 3), False, cls)

    sp.put_many([item(3), item(2), item(0), item(1), item(0)])  # 450 bytes
    assert sp.count == 5 and sp.bytes == 450 and sp.warning
    sp.put_many([item(3) for _ in range(6)])  # 540 more: 990
    assert sp.count == 11 and sp.dropped == {0: 0, 1: 0, 2: 0, 3: 0}
    sp.put_many([item(3)])  # needs 80 bytes: both heartbeats go (oldest first)
    assert sp.dropped[0] == 1 and sp.count == 11
    sp.put_many([item(3, 200)])  # heartbeat, then motion, then the state
    assert sp.dropped == {0: 2, 1: 1, 2: 1, 3: 0}
    with pytest.raises(SpoolFull):
        sp.put_many([item(3, 300)])  # only falls left: refused, nothing lost
    assert sp.dropped[3] == 0
    kept = sp.peek(0, 100)
    assert [i.payload for i in kept] == [i.payload for i in sp.peek(0, 100)]
    assert sp.bytes == sum(len(i.topic) + len(i.payload) for i in kept)
    sp.remove([kept[0].id, kept[1].id])
    n, b = sp.count, sp.bytes
    sp.close()
    again = Spool(tmp_path / "s.sqlite", max_bytes=1000)  # survives a restart
    assert (again.count, again.bytes) == (n, b)
    assert again.peek(0, 1)[0].id == kept[2].id  # in order
    again.close()


def test_mode_machine() -> None:
    m = ModeMachine(takeover_after_s=20, handback_after_s=10, started=T0)
    s = timedelta(seconds=1)
    assert m.decide(T0 + 19 * s) is None  # the centre gets time to speak at start
    m.beacon(T0 + 5 * s)
    assert m.decide(T0 + 24 * s) is None
    assert m.decide(T0 + 25 * s) is GatewayMode.fallback and m.reason == "centre silent"
    m.beacon(T0 + 60 * s)
    assert m.decide(T0 + 65 * s) is None  # not yet stable
    m.beacon(T0 + 66 * s)
    assert m.decide(T0 + 70 * s) is GatewayMode.handback
    assert m.decide(T0 + 71 * s, handed_over=False) is None
    m.link_lost()
    assert m.decide(T0 + 72 * s) is GatewayMode.fallback  # lost during handback
    m.beacon(T0 + 73 * s)
    assert m.decide(T0 + 80 * s) is None
    m.beacon(T0 + 84 * s)
    assert m.decide(T0 + 84 * s) is GatewayMode.handback
    assert m.decide(T0 + 85 * s, handed_over=True) is GatewayMode.normal
    m.beacon(T0 + 86 * s)
    assert m.decide(T0 + 87 * s, unconfirmed=True) is GatewayMode.fallback
    assert m.reason == "alert not confirmed by the centre"


async def test_mode_machine_reads_its_clock() -> None:
    clock = ManualClock(T0)
    m = ModeMachine(takeover_after_s=20, handback_after_s=10, clock=clock)
    assert m.started == T0 and m.contact() and m.decide() is None
    m.beacon()
    await clock.advance(20)  # the centre silent for takeover_after_s
    assert not m.contact() and m.decide() is GatewayMode.fallback
    assert m.switch(GatewayMode.normal, None, "test") is GatewayMode.normal
    assert m.mode_since == T0 + timedelta(seconds=20) and m.reason == "test"


def _alert(priority: str = "high", **kw) -> Alert:
    return Alert(alert_id=new_id(), site="site-1", room="rum-101", kind="possible_fall",
                 priority=priority, status="firing", title="t", started=T0,
                 **({"notify": "new"} | kw))  # fmt: skip


async def test_held_alerts_fall_due_on_the_clock() -> None:
    clock = ManualClock(T0)
    held = HeldAlerts(confirm_s=5, clock=clock)
    urgent, low, published = _alert(), _alert("low"), _alert()
    for a in (urgent, low, published):
        held.held(a)
    held.published(encode(published))  # the centre published it: no longer held
    held.held(_alert(notify="repeat"))  # only new alerts are held
    await clock.advance(4.9)
    assert not held.overdue()
    await clock.advance(0.1)
    assert held.overdue()  # the urgent one, unpublished for confirm_s
    assert held.take() == {urgent.alert_id, low.alert_id} and not held.overdue()
    held.held(published)  # seen from the centre before: not held again
    assert held.take() == set()


def _status(seq: int, **kw) -> GatewayStatus:
    return GatewayStatus(**{"site": "s1", "gateway": "gw", "session": 1, "seq": seq,
                            "state": "online", **kw})  # fmt: skip


def test_site_watch() -> None:
    w = site_watch.SiteWatch(offline_after_s=30)
    s = timedelta(seconds=1)
    assert not w.suppressed("s1", T0) and w.conditions(T0) == []  # no gateway: nothing
    assert w.apply(_status(1), T0) is True
    assert not w.offline("s1", T0 + 29 * s) and w.offline("s1", T0 + 30 * s)
    (c,) = w.conditions(T0 + 31 * s)
    assert c.kind == site_watch.SITE_OFFLINE and c.since == T0
    assert w.suppressed("s1", T0 + 31 * s)
    assert w.apply(_status(0), T0 + 32 * s) is False  # older: ignored
    w.apply(_status(2, mode=GatewayMode.fallback), T0 + 32 * s)
    assert not w.offline("s1", T0 + 33 * s) and w.suppressed("s1", T0 + 33 * s)
    w.apply(_status(3, spool_warn_since=T0), T0 + 34 * s)
    (c,) = w.conditions(T0 + 34 * s)
    assert c.kind == site_watch.GATEWAY_STORAGE and not w.suppressed("s1", T0 + 34 * s)
    w.apply(_status(0, state="offline"), T0 + 35 * s)  # its last will: offline at once
    assert {c.kind for c in w.conditions(T0 + 35 * s)} == {
        site_watch.SITE_OFFLINE,
        site_watch.GATEWAY_STORAGE,
    }


def test_alert_ids_follow_the_episode() -> None:
    a = rules.alert_id("s1", "r1", "possible_fall", "event:x")
    assert a == rules.alert_id("s1", "r1", "possible_fall", "event:x")
    assert a != rules.alert_id("s1", "r2", "possible_fall", "event:x")
    assert a != rules.alert_id("s1", "r1", "on_floor", "event:x")


# -- on the database -----------------------------------------------------------------------


@pytest.fixture
async def site_schema(database_url: str, test_id: str):
    """The gateway's local database: another fresh schema."""
    schema = f"g_{test_id}"
    await migrate(database_url, schema)
    yield schema
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def _connect(url: str, schema: str) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
    return conn


async def test_snapshot_replicates_what_alerting_needs(settings, site_schema) -> None:
    await seed(settings, ["rum-101", "rum-102"])
    centre = await _connect(settings.database_url, settings.database_schema)
    site = await _connect(settings.database_url, site_schema)
    try:
        await centre.execute(
            """INSERT INTO monitoring_pauses (resident_id, starts_at, ends_at, reason)
               SELECT id, now() - interval '1 minute', now() + interval '1 hour', 'hemma'
               FROM residents WHERE room_id = 'rum-102'"""
        )
        snap = await gateway_sync.build_snapshot(centre, "site-1")
        assert snap is not None and len(snap.residents) == 2 and len(snap.pauses) == 1
        assert {u.username for u in snap.staff} == {"natt", "chef"}
        assert await apply_snapshot(site, snap) is True
        assert await apply_snapshot(site, snap) is False  # same digest: nothing to do
        q = "SELECT monitoring_active('site-1', %s, now())"
        for room in ("rum-101", "rum-102"):
            want = await (await centre.execute(q, (room,))).fetchone()
            got = await (await site.execute(q, (room,))).fetchone()
            assert got == want
        # Consent withdrawn at the centre → the next snapshot stops monitoring on site too.
        await centre.execute(
            "UPDATE residents SET monitoring_active = false WHERE room_id = 'rum-101'"
        )
        await centre.execute("DELETE FROM monitoring_pauses")
        snap2 = await gateway_sync.build_snapshot(centre, "site-1")
        assert snap2.digest != snap.digest and await apply_snapshot(site, snap2)
        got = await (await site.execute(q, ("rum-101",))).fetchone()
        assert got == (False,)
        got = await (await site.execute(q, ("rum-102",))).fetchone()
        assert got == (True,)
        cur = await site.execute("SELECT count(*) FROM staff_pins")
        pins = await (await centre.execute("SELECT count(*) FROM staff_pins")).fetchone()
        assert (await cur.fetchone()) == pins and pins[0] > 0
    finally:
        await centre.close()
        await site.close()


async def test_import_is_idempotent_and_merges(settings) -> None:
    await seed(settings, ["rum-101"])
    conn = await _connect(settings.database_url, settings.database_schema)
    try:
        ev = new_id()
        aid = rules.alert_id("site-1", "rum-101", "possible_fall", f"event:{ev}")
        base = Alert(
            alert_id=aid, site="site-1", room="rum-101", kind="possible_fall", priority="high",
            status="firing", title="Möjligt fall – Rum 101", started=T0, source_event=ev,
        )  # fmt: skip
        # The centre raised it before the link broke; the gateway acknowledged it on site.
        await conn.execute(
            """INSERT INTO alerts (id, site, room, kind, priority, status, title, started_at,
                   source_event) VALUES (%s, 'site-1', 'rum-101', 'possible_fall', 'high',
                   'firing', 't', %s, %s)""",
            (aid, T0, ev),
        )
        acked = base.model_copy(
            update={"status": "acknowledged", "acknowledged_at": T0, "acknowledged_by": "natt"}
        )
        msg = GatewaySync(
            site="site-1",
            gateway="gw",
            correlation_id=uuid.uuid4(),
            alerts=[SyncAlert(alert=acked, episode=f"event:{ev}")],
            history=[SyncHistory(alert_id=aid, seq=7, ts=T0, status="acknowledged", by_user="natt")],
            audit=[
                SyncAudit(seq=3, at=T0, username="natt", role="night_staff", action="read",
                          purpose="tillsyn", what="board")
            ],
        )  # fmt: skip
        first = await gateway_sync.import_sync(conn, msg)
        assert first.stored == {"alerts_merged": 1, "alert_history": 1, "audit_log": 1}
        again = await gateway_sync.import_sync(conn, msg)
        assert again.stored == {"alerts_merged": 1, "alert_history": 0, "audit_log": 0}
        row = await (
            await conn.execute("SELECT status, acknowledged_by FROM alerts WHERE id = %s", (aid,))
        ).fetchone()
        assert row == ("acknowledged", "natt")
        # A later upload with the alert resolved on site: the furthest status wins.
        done = acked.model_copy(
            update={"status": "resolved", "resolved_at": T0, "resolved_by": "natt",
                    "outcome": "needed_help"}
        )  # fmt: skip
        await gateway_sync.import_sync(
            conn, msg.model_copy(update={"alerts": [SyncAlert(alert=done)], "history": []})
        )
        await gateway_sync.import_sync(conn, msg)  # the older state again changes nothing
        row = await (
            await conn.execute("SELECT status, outcome FROM alerts WHERE id = %s", (aid,))
        ).fetchone()
        assert row == ("resolved", "needed_help")
    finally:
        await conn.close()


# -- the gateway against a centre ------------------------------------------------------------


class Room:
    """A synthetic room device: contract messages with session and seq."""

    def __init__(self, client: MqttClient, topics: Topics, site: str, room: str) -> None:
        self.c, self.t, self.site, self.room, self.device = (
            client,
            topics,
            site,
            room,
            f"cam-{room}",
        )
        self.session, self.seq = int(time.time() * 1000), 0
        self.ids: list[uuid.UUID] = []

    def _ids(self) -> dict:
        self.seq += 1
        return {"site": self.site, "room": self.room, "device": self.device,
                "session": self.session, "seq": self.seq}  # fmt: skip

    async def send(self, kind: TopicKind, msg, retain: bool = False) -> None:
        self.ids.append(msg.id)
        topic = self.t.device(self.site, self.room, self.device, kind)
        await self.c.publish(topic, encode(msg), qos=1, retain=retain)

    async def heartbeat(self) -> None:
        await self.send(
            TopicKind.heartbeat, Heartbeat(**self._ids(), uptime_s=1, fps=5, agent_version="t")
        )

    async def state(self, state: str) -> None:
        now = datetime.now(UTC)
        await self.send(
            TopicKind.state,
            RoomState(**self._ids(), state=state, since=now, confidence=0.9),
            retain=True,
        )

    async def fall(self) -> Event:
        now = datetime.now(UTC)
        ev = Event(**self._ids(), event_id=new_id(), type="possible_fall", phase="new",
                   start=now, score=0.9)  # fmt: skip
        await self.send(TopicKind.event, ev)
        return ev


class Listener(Collector):
    """Collects Alert publications on a broker."""

    got: list[Alert]

    def __init__(self, url: str, topics: Topics, name: str) -> None:
        super().__init__(
            url, topics.subscription(TopicKind.alert), name, lambda m: decode(Alert, m.payload)
        )

    @property
    def alerts(self) -> list[Alert]:
        return self.got

    def of(self, alert_id) -> list[Alert]:
        return [a for a in self.got if a.alert_id == alert_id]


@pytest.fixture
def site_broker():
    b = PrivateMosquitto()
    b.start()
    yield b
    b.stop()


def _fast(settings: Settings, **gw) -> Settings:
    """Short timings so a takeover and a handback fit in a test."""
    return settings.model_copy(
        update={
            "gateway": settings.gateway.model_copy(
                update={
                    "takeover_after_s": 6.0,
                    "handback_after_s": 1.0,
                    "heartbeat_s": 1.0,
                    "site_offline_after_s": 4.0,
                    "snapshot_interval_s": 5.0,
                    **gw,
                }
            ),
            "alerting": settings.alerting.model_copy(update={"tick_s": 0.2}),
        }
    )


@pytest.mark.timeout(180)
async def test_gateway_takes_over_and_hands_back(settings, site_schema, site_broker, tmp_path):
    centre = _fast(settings)
    await seed(centre, ["rum-101", "rum-102"])
    gw_settings = _fast(
        settings,
        upstream_url=settings.mqtt_url,
        state_dir=tmp_path,
    ).model_copy(
        update={
            "mqtt_url": site_broker.url,
            "database_schema": site_schema,
            "api": settings.api.model_copy(update={"port": 0, "cookie_secure": False}),
        }
    )
    topics = Topics(settings.topic_root)
    ingest, alerting = IngestService(centre), AlertingService(centre)
    gw = GatewayService(gw_settings)
    staff_centre = Listener(settings.mqtt_url, topics, "centre-staff")
    staff_site = Listener(site_broker.url, topics, "site-staff")
    dev = MqttClient(site_broker.url, f"dev-{uuid.uuid4().hex[:6]}")
    started = []
    try:
        for svc in (ingest, alerting, gw):
            await svc.start()
            started.append(svc)
        for lst in (staff_centre, staff_site):
            await lst.start()
        await dev.start()
        r1 = Room(dev, topics, "site-1", "rum-101")
        r2 = Room(dev, topics, "site-1", "rum-102")
        for r in (r1, r2):
            await r.heartbeat()
            await r.state("in_bed")
        # The replica arrives and the centre hears the gateway.
        await poll(lambda: gw.snapshot_digest is not None)
        await poll(lambda: alerting.sites is not None and "site-1" in alerting.sites.sites)

        # 1. Normal: the centre alerts; the gateway holds its own copy back (same id).
        ev1 = await r1.fall()
        aid1 = rules.alert_id("site-1", "rum-101", "possible_fall", f"event:{ev1.event_id}")
        await poll(lambda: staff_centre.of(aid1))
        await poll(lambda: staff_site.of(aid1))  # brought down by the bridge
        assert gw.mode is GatewayMode.normal and aid1 in gw.held.confirmed
        assert len([a for a in staff_site.of(aid1) if a.notify == "new"]) == 1

        # 2. The centre's alerting stops: the gateway takes over after takeover_after_s.
        await alerting.stop()
        started.remove(alerting)
        await poll(lambda: gw.mode is GatewayMode.fallback, timeout=20)
        mark = len(staff_site.alerts)
        ev2 = await r2.fall()
        aid2 = rules.alert_id("site-1", "rum-102", "possible_fall", f"event:{ev2.event_id}")
        got = await poll(lambda: [a for a in staff_site.alerts[mark:] if a.alert_id == aid2])
        # Announced on site (how fast is bench.partition's fall_to_site_tablet_ms).
        assert got[0].sound and got[0].notify == "new"
        # Staff acknowledge on site (the gateway's tablet page publishes this).
        act = AlertAction(alert_id=aid2, action="acknowledge", by="natt")
        await dev.publish(topics.room("site-1", "rum-102", TopicKind.alert_set), encode(act))
        await poll(
            lambda: [a for a in staff_site.of(aid2) if a.status == "acknowledged"], timeout=10
        )

        # 3. The centre comes back: upload, drain, hand back.
        alerting = AlertingService(centre)
        await alerting.start()
        started.append(alerting)
        await poll(lambda: gw.mode is GatewayMode.normal, timeout=40)
        pool = alerting.pool
        async with pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT status, acknowledged_by, origin FROM alerts WHERE id = %s", (aid2,)
                )
            ).fetchone()
            assert row == ("acknowledged", "natt", "site-1/gateway")
            hist = await (
                await conn.execute(
                    "SELECT status FROM alert_history WHERE alert_id = %s ORDER BY ts", (aid2,)
                )
            ).fetchall()
            assert [h[0] for h in hist] == ["firing", "acknowledged"]
        # Every device message reached the centre's database exactly once.
        want = {str(i) for r in (r1, r2) for i in r.ids}

        async def stored():
            async with pool.connection() as conn:
                cur = await conn.execute(
                    """SELECT id::text FROM events UNION ALL SELECT id::text FROM room_states
                       UNION ALL SELECT id::text FROM heartbeats"""
                )
                return [r[0] for r in await cur.fetchall()]

        ids = await poll(lambda: _all_there(stored, want), timeout=20)
        assert len(ids) == len(set(ids)) == len(want)
        # The centre never announced the fall raised on site as new (no double alert).
        assert not [a for a in staff_centre.of(aid2) if a.notify == "new"]
        # And the centre holds the acknowledged alert open, continuing its schedule.
        assert str(aid2) in alerting.open
        # The mode changes, in order (a link_up from a reconnect under load may fall between).
        modes = [e["event"] for e in gw.events if e["event"] in ("fallback", "handback", "normal")]
        assert modes[-3:] == ["fallback", "handback", "normal"]
    finally:
        for lst in (staff_centre, staff_site):
            await lst.stop()
        await dev.stop()
        for svc in reversed(started):
            await svc.stop()


async def _all_there(stored, want: set[str]):
    ids = await stored()
    return ids if want <= set(ids) else None


async def test_centre_raises_site_offline_to_the_on_call_role(settings) -> None:
    centre = _fast(settings, site_offline_after_s=3.0).model_copy(
        update={"alerting": settings.alerting.model_copy(update={"tick_s": 0.2,
                                                                  "offline_after_s": 6.0})}
    )  # fmt: skip
    await seed(centre, ["rum-101"])
    topics = Topics(settings.topic_root)
    alerting = AlertingService(centre)
    staff = Listener(settings.mqtt_url, topics, "centre-staff")
    gwc = MqttClient(settings.mqtt_url, f"gw-{uuid.uuid4().hex[:6]}")
    beacons: list[bytes] = []
    try:
        await alerting.start()
        await staff.start()
        await gwc.start()
        await gwc.subscribe(topics.site("site-1", TopicKind.centre))
        dev = Room(gwc, topics, "site-1", "rum-101")
        await dev.heartbeat()
        status = topics.site("site-1", TopicKind.gateway)
        await gwc.publish(status, encode(_status(1).model_copy(update={"site": "site-1"})))
        await poll(lambda: "site-1" in alerting.sites.sites)
        beacons.append((await gwc.next_message(10)).payload)  # the centre speaks to it
        # The gateway falls silent: "site offline" for the on-call role, not N room alerts.
        off = await poll(lambda: [a for a in staff.alerts if a.kind == "site_offline"], 10)
        a = off[0]
        assert a.room == "_site" and a.priority == "high" and a.sound and a.notify == "new"
        assert {"unit", "group:oncall", "notifier:webhook"} <= set(a.targets)
        assert "Enhet offline" in a.title
        # Past the room's offline_after_s (the alerting's timer, driven): its gateway has it.
        await alerting.tick(datetime.now(UTC) + timedelta(seconds=7))
        assert not [x for x in staff.alerts if x.kind == "device_offline"]
        # Back (with the room's heartbeats drained from its spool): resolved by the system.
        await dev.heartbeat()
        await gwc.publish(status, encode(_status(2).model_copy(update={"site": "site-1"})))
        done = await poll(
            lambda: [x for x in staff.of(a.alert_id) if x.status == "resolved"], timeout=10
        )
        assert done[0].resolved_by == "system"
        assert not [x for x in staff.alerts if x.kind == "device_offline"]
    finally:
        await staff.stop()
        await gwc.stop()
        await alerting.stop()


async def test_gateway_takes_over_when_its_clock_says_the_centre_is_silent(
    settings, site_broker, tmp_path
) -> None:
    clock = ManualClock()
    gw_settings = _fast(
        settings,
        upstream_url="mqtt://127.0.0.1:9",  # the centre is unreachable
        state_dir=tmp_path,
        local_alerting=False,
    ).model_copy(update={"mqtt_url": site_broker.url})
    gw = GatewayService(gw_settings, clock=clock)
    try:
        await gw.start()
        await clock.until_sleeping(3)  # modes, heartbeat, upload
        await clock.advance(5.8)  # takeover_after_s is 6 s
        assert gw.mode is GatewayMode.normal
        await clock.advance(0.4)
        await poll(lambda: gw.mode is GatewayMode.fallback, timeout=5)
        assert gw.machine.reason == "centre silent" and gw.spool.get("mode") == "fallback"
        assert gw.events[-1]["event"] == "fallback"
        took_over = datetime.fromisoformat(gw.events[-1]["at"])  # on the gateway's clock
        assert clock.now() - timedelta(seconds=0.4) < took_over <= clock.now()
    finally:
        await gw.stop()


async def test_spool_near_its_bound_raises_a_system_alert(
    settings, site_schema, site_broker, tmp_path
) -> None:
    gw_settings = _fast(
        settings,
        upstream_url="mqtt://127.0.0.1:9",  # the centre is unreachable
        state_dir=tmp_path,
        spool_max_mb=0.01,
        spool_warn_ratio=0.5,
        takeover_after_s=1.0,
        tablet_page=False,
    ).model_copy(update={"mqtt_url": site_broker.url, "database_schema": site_schema})
    topics = Topics(settings.topic_root)
    gw = GatewayService(gw_settings)
    site = Listener(site_broker.url, topics, "site-staff")
    dev = MqttClient(site_broker.url, f"dev-{uuid.uuid4().hex[:6]}")
    try:
        await gw.start()
        await site.start()
        await dev.start()
        room = Room(dev, topics, "site-1", "rum-101")
        ev = await room.fall()
        for _ in range(60):
            await room.heartbeat()
        warn = await poll(lambda: [a for a in site.alerts if a.kind == "gateway_storage"])
        assert warn[0].sound and warn[0].room == "_site" and gw.mode is GatewayMode.fallback
        assert gw.spool.dropped[0] > 0  # heartbeats went first…
        assert gw.spool.dropped[3] == 0  # …the fall never
        kept = [i.payload for i in gw.spool.peek(0, 1000)]
        assert any(str(ev.id).encode() in p for p in kept)
        assert gw.spool.bytes <= gw.spool.max_bytes
    finally:
        await site.stop()
        await dev.stop()
        await gw.stop()


@pytest.fixture
def tls_centre(tmp_path):
    """A central broker over TLS that wants the gateway's certificate (CN = its user)."""
    root = f"t{uuid.uuid4().hex[:10]}/nattillsyn"
    pki = tmp_path / "pki"
    with tls_mosquitto(pki, {"gw-site-1": f"{root}/site-1/#", "watcher": f"{root}/#"}) as url:
        yield url, pki, root


async def test_bridge_over_tls_with_the_gateways_certificate(
    tmp_path, site_broker, tls_centre
) -> None:
    url, pki, root = tls_centre
    topics = Topics(root)
    s = Settings(mqtt_url=site_broker.url, topic_root=root, site="site-1")
    s = s.model_copy(update={"gateway": s.gateway.model_copy(update={
        "upstream_url": url, "upstream_ca_file": pki / "ca.crt",
        "upstream_cert_file": pki / "gw-site-1.crt", "upstream_key_file": pki / "gw-site-1.key",
        "local_alerting": False, "heartbeat_s": 0.5, "state_dir": tmp_path / "state"})})  # fmt: skip
    watcher = MqttClient(url, "watcher", tls=TlsFiles(
        str(pki / "ca.crt"), str(pki / "watcher.crt"), str(pki / "watcher.key")))  # fmt: skip
    gw = GatewayService(s)
    dev = MqttClient(site_broker.url, f"dev-{uuid.uuid4().hex[:6]}")
    try:
        await watcher.start()
        await watcher.subscribe(f"{root}/#")
        await gw.start()
        await dev.start()
        room = Room(dev, topics, "site-1", "rum-101")
        await room.heartbeat()
        got: dict[str, bytes] = {}

        async def both():
            while not {"heartbeat", "gateway"} <= set(got):
                m = await watcher.next_message(10)
                got.setdefault(topics.parse(m.topic).kind.value, m.payload)

        await asyncio.wait_for(both(), 20)
        assert decode(Heartbeat, got["heartbeat"]).id == room.ids[0]  # the same message
        assert decode(GatewayStatus, got["gateway"]).mode is GatewayMode.normal
    finally:
        await dev.stop()
        await gw.stop()
        await watcher.stop()


async def test_replica_follows_the_centre(settings, site_schema, site_broker, tmp_path) -> None:
    """A pause made at the centre reaches the gateway's database in the next snapshot
    (published at once on the care-model change), so the gateway never alerts for it."""
    centre = _fast(settings)
    await seed(centre, ["rum-101"])
    gw_settings = _fast(
        settings, upstream_url=settings.mqtt_url, state_dir=tmp_path, tablet_page=False
    ).model_copy(update={"mqtt_url": site_broker.url, "database_schema": site_schema})
    alerting = AlertingService(centre)
    gw = GatewayService(gw_settings)
    q = "SELECT monitoring_active('site-1', 'rum-101', now())"
    try:
        await alerting.start()
        await gw.start()
        await poll(lambda: gw.snapshot_digest is not None)
        first = gw.snapshot_digest
        async with gw.pool.connection() as conn:
            assert await (await conn.execute(q)).fetchone() == (True,)
        async with alerting.pool.connection() as conn:
            await conn.execute(
                """INSERT INTO monitoring_pauses (resident_id, starts_at, ends_at, reason)
                   SELECT id, now() - interval '1 minute', now() + interval '8 hours', 'hemma'
                   FROM residents WHERE room_id = 'rum-101'"""
            )
        await poll(lambda: gw.snapshot_digest != first, timeout=15)

        async def paused():
            async with gw.pool.connection() as conn:
                return await (await conn.execute(q)).fetchone() == (False,)

        await poll(paused)
    finally:
        await gw.stop()
        await alerting.stop()
