"""The alerting service end to end on the real broker and database: per-resident rules,
pauses, system alerts, grouping, repeat, escalation to a webhook, re-sound, silences,
practice and digital rounds.

Timers (delays, repeats, escalation, offline detection, round checks) run on a ManualClock
the test moves; nothing here sleeps for a timer or measures the wall clock."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from db_poll import poll_db

from nattillsyn.alerting.service import AlertingService
from nattillsyn.app.demo import seed
from nattillsyn.clock import SYSTEM, Clock, ManualClock
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import (
    Alert,
    AlertAction,
    Event,
    Heartbeat,
    RoomState,
    TopicKind,
    Topics,
    decode,
    encode,
)
from nattillsyn.settings.alerting import AlertingSettings, EscalationStep
from nattillsyn.testing.poll import poll

SITE = "site-1"


class Staff:
    """A client that publishes like a device and collects alerts like a tablet."""

    def __init__(self, settings, clock: Clock = SYSTEM) -> None:
        self.clock = clock  # message times are the service's times
        self.topics = Topics(settings.topic_root)
        self.mqtt = MqttClient(settings.mqtt_url, f"staff-{uuid.uuid4().hex[:8]}")
        self.seen: list[Alert] = []
        self.seq = 0

    async def __aenter__(self) -> Staff:
        await self.mqtt.start()
        await self.mqtt.subscribe(self.topics.subscription(TopicKind.alert))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.mqtt.stop()

    async def wait(self, pred, timeout: float = 10.0) -> Alert:
        for a in self.seen:
            if pred(a):
                return a
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for an alert")
            try:
                msg = await self.mqtt.next_message(left)
            except TimeoutError:
                raise AssertionError("timed out waiting for an alert") from None
            a = decode(Alert, msg.payload)
            self.seen.append(a)
            if pred(a):
                return a

    async def none(self, pred, within: float) -> None:
        """Nothing matching arrives within `within` seconds (used only for must-not cases)."""
        with pytest.raises(AssertionError):
            await self.wait(pred, within)

    def _ids(self, room: str) -> dict:
        self.seq += 1
        return dict(
            site=SITE, room=room, device=f"cam-{room}", session=1, seq=self.seq,
            ts=self.clock.now(),
        )  # fmt: skip

    async def send(self, room: str, kind: TopicKind, msg) -> None:
        await self.mqtt.publish(self.topics.device(SITE, room, f"cam-{room}", kind), encode(msg))

    async def fall(self, room: str) -> Event:
        ev = Event(
            **self._ids(room), event_id=uuid.uuid4(), type="possible_fall", phase="new",
            start=self.clock.now(),
        )  # fmt: skip
        await self.send(room, TopicKind.event, ev)
        return ev

    async def state(self, room: str, name: str, since: datetime | None = None) -> None:
        msg = RoomState(
            **self._ids(room), state=name, since=since or self.clock.now(), confidence=0.9
        )
        await self.send(room, TopicKind.state, msg)

    async def heartbeat(self, room: str, queue: int = 0) -> None:
        msg = Heartbeat(**self._ids(room), uptime_s=1, fps=5, agent_version="t", queue=queue)
        await self.send(room, TopicKind.heartbeat, msg)

    async def act(self, alert: Alert, action: str, outcome: str | None = None) -> None:
        a = AlertAction(alert_id=alert.alert_id, action=action, by="anna", outcome=outcome)
        await self.mqtt.publish(self.topics.room(SITE, alert.room, TopicKind.alert_set), encode(a))


def tuned(settings, **alerting):
    base = {"tick_s": 0.1, "care_refresh_s": 0.5, "round_check_s": 0.3}
    cfg = AlertingSettings.model_validate(
        settings.alerting.model_dump() | base | {k: v for k, v in alerting.items()}
    )
    return settings.model_copy(update={"alerting": cfg})


@pytest.fixture
async def seeded(settings):
    await seed(settings, ["rum-101", "rum-102"])
    return settings


@contextlib.asynccontextmanager
async def running(settings, clock: Clock = SYSTEM, **alerting):
    svc = AlertingService(tuned(settings, **alerting), clock)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


def manual() -> ManualClock:
    """A clock that starts at the real time (the database's now() stays close) and stands."""
    return ManualClock(datetime.now(UTC))


LOOPS = 4  # tick, care reload, rounds, liveness: each waits on the clock when idle


async def advance(clock: ManualClock, seconds: float, step: float = 0.125) -> None:
    """Move the service's clock on in steps, each after the service's loops are idle."""
    moved = 0.0
    while moved < seconds - 1e-9:
        await clock.until_sleeping(LOOPS)
        await clock.advance(min(step, seconds - moved))
        moved += step
    await clock.until_sleeping(LOOPS)


async def advance_until(
    clock: ManualClock, staff: Staff, pred, limit: float = 10.0, step: float = 0.125
) -> Alert:
    """Move the clock on in steps until an alert matching `pred` arrives (at most `limit` s
    of the clock); the clock then shows when it came."""
    moved = 0.0
    while True:
        await clock.until_sleeping(LOOPS)
        with contextlib.suppress(AssertionError):
            return await staff.wait(pred, 0.05)  # its publication may still be on the way
        if moved >= limit:
            raise AssertionError(f"no such alert within {limit} s of the service's clock")
        await clock.advance(step)
        moved += step


async def test_fall_ack_resolve_with_history_and_dedup(seeded, pool) -> None:
    async with running(seeded, offline_after_s=3600), Staff(seeded) as staff:
        await staff.heartbeat("rum-101")
        ev = await staff.fall("rum-101")
        await staff.send("rum-101", TopicKind.event, ev)  # redelivery: one alert
        alert = await staff.wait(lambda a: a.kind == "possible_fall")
        assert alert.priority == "high" and alert.sound and alert.notify == "new"
        assert alert.source_event == ev.event_id and "Rum 101" in alert.title
        assert alert.targets == ["unit"] and alert.rev
        await staff.fall("rum-101")  # a second fall while open: de-duplicated
        await poll_db(pool, "SELECT occurrences > 1 FROM alerts")
        await staff.act(alert, "acknowledge")
        acked = await staff.wait(lambda a: a.status == "acknowledged")
        assert acked.acknowledged_by == "anna" and not acked.sound and acked.rev > alert.rev
        await staff.act(alert, "resolve", "needed_help")
        done = await staff.wait(lambda a: a.status == "resolved")
        assert done.outcome == "needed_help" and done.resolved_by == "anna"
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT count(*), max(outcome), max(resolved_by) FROM alerts")
        ).fetchone()
        assert rows == (1, "needed_help", "anna")
        hist = await (
            await conn.execute("SELECT status FROM alert_history ORDER BY seq")
        ).fetchall()
        assert [h[0] for h in hist] == ["firing", "acknowledged", "resolved"]
        rid = await (await conn.execute("SELECT resident_id FROM alerts")).fetchone()
        assert rid[0] is not None


def _state(svc: AlertingService, room: str):
    """The room state the service has folded in (None before any)."""
    facts = svc.room_watch.facts.get((SITE, room))
    return facts.state if facts else None


async def test_paused_resident_raises_nothing_until_the_pause_ends(seeded, pool) -> None:
    async with running(seeded, offline_after_s=3600) as svc:
        async with pool.connection() as conn:
            await conn.execute(
                """INSERT INTO monitoring_pauses (resident_id, starts_at, ends_at, reason)
                   SELECT id, now() - interval '1 hour', now() + interval '1 hour', 'test'
                   FROM residents WHERE room_id = 'rum-102'"""
            )
        async with Staff(seeded) as staff:
            await staff.fall("rum-102")
            await staff.fall("rum-101")  # control: monitored
            await staff.wait(lambda a: a.room == "rum-101")
            await staff.none(lambda a: a.room == "rum-102", 1.0)
            # The pause ends (NOTIFY): the next fall alerts.
            async with pool.connection() as conn:
                await conn.execute("DELETE FROM monitoring_pauses")
            await poll(lambda: svc.rooms[(SITE, "rum-102")].monitored)
            await staff.fall("rum-102")
            await staff.wait(lambda a: a.room == "rum-102")
    async with pool.connection() as conn:
        n = await (await conn.execute("SELECT count(*) FROM alerts")).fetchone()
        assert n[0] == 2


async def test_state_rules_per_resident_overrides_and_grouping(seeded, pool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            """UPDATE residents SET rule_overrides = '{"out_of_bed": {"delay_s": 1},
                                                      "on_floor": {"delay_s": 0}}'
               WHERE room_id = 'rum-101'"""
        )
    clock = manual()
    async with running(seeded, clock, offline_after_s=3600) as svc, Staff(seeded, clock) as staff:
        await staff.heartbeat("rum-101")
        await staff.state("rum-101", "out_of_bed")
        await poll(lambda: _state(svc, "rum-101") == "out_of_bed")
        a = await advance_until(clock, staff, lambda a: a.kind == "out_of_bed")
        assert clock.monotonic() >= 1.0  # waited its (overridden) delay on the service's clock
        assert a.priority == "medium"
        # Back in bed before anyone acknowledged: resolved by the system.
        await staff.state("rum-101", "in_bed")
        r = await staff.wait(lambda x: x.kind == "out_of_bed" and x.status == "resolved")
        assert r.resolved_by == "system" and r.acknowledged_at is None
        # A fall, then on the floor: one call for one situation (grouped).
        await staff.fall("rum-101")
        fall = await staff.wait(lambda x: x.kind == "possible_fall")
        await staff.state("rum-101", "on_floor")
        await poll_db(pool, "SELECT occurrences = 2 FROM alerts WHERE id = %s", (fall.alert_id,))
        await staff.none(lambda x: x.kind == "on_floor", 0.5)
        # rum-102 (standard preset, 10 min delay) raises nothing for a short out-of-bed.
        await staff.heartbeat("rum-102")
        await staff.state("rum-102", "out_of_bed")
        await poll(lambda: _state(svc, "rum-102") == "out_of_bed")
        await advance(clock, 5.0)
        await staff.none(lambda x: x.room == "rum-102", 0.5)


async def test_device_offline_and_backlog_system_alerts(seeded, pool) -> None:
    clock = manual()
    async with (
        running(seeded, clock, offline_after_s=1.5, backlog_delay_s=0.5) as svc,
        Staff(seeded, clock) as staff,
    ):
        await staff.heartbeat("rum-101")
        await staff.heartbeat("rum-102")
        facts = svc.room_watch.facts
        rooms = [(SITE, "rum-101"), (SITE, "rum-102")]
        await poll(lambda: all(k in facts and facts[k].heartbeat_ts for k in rooms))
        off = await advance_until(
            clock, staff, lambda a: a.kind == "device_offline" and a.room == "rum-101"
        )
        assert 1.5 <= clock.monotonic() < 3.0  # silent for offline_after_s, then at once
        assert "fysisk tillsyn behövs" in off.title and off.priority == "medium"
        await staff.heartbeat("rum-101")
        back = await staff.wait(lambda a: a.alert_id == off.alert_id and a.status == "resolved")
        assert back.resolved_by == "system"
        # Edge queue backlog (the device keeps sending heartbeats with a long queue).
        for _ in range(2):
            await staff.heartbeat("rum-101", queue=500)
            await poll(lambda: facts[(SITE, "rum-101")].queue == 500)
            await advance(clock, 0.3)
        await advance_until(clock, staff, lambda a: a.kind == "edge_backlog", limit=1.0)


@contextlib.asynccontextmanager
async def webhook(secret: bytes):
    """A webhook receiver that checks the signature; yields (the bodies received, its URL)."""
    received: list = []

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        sig = hmac.new(secret, raw, hashlib.sha256).hexdigest()
        assert request.headers["X-Nattillsyn-Signature"] == f"sha256={sig}"
        received.append(json.loads(raw))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/sms", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield received, f"http://127.0.0.1:{port}/sms"
    finally:
        await runner.cleanup()


def _steps(*steps: tuple[float, str]) -> list[EscalationStep]:
    """Escalation steps: (seconds after raising, the target reached then)."""
    return [EscalationStep(after_s=after, targets=[target]) for after, target in steps]


async def test_repeat_escalation_to_webhook_and_resound(seeded, pool) -> None:
    steps = _steps((0, "unit"), (1.0, "group:backup"), (2.0, "notifier:webhook"))
    clock = manual()
    async with webhook(b"k3y") as (received, url):
        async with (
            running(
                seeded, clock, offline_after_s=3600, repeat_s=0.5, resound_s=1.0,
                escalation=steps, webhook_url=url, webhook_secret="k3y",
            ) as svc,
            Staff(seeded, clock) as staff,
        ):  # fmt: skip
            await staff.heartbeat("rum-101")
            await staff.fall("rum-101")
            first = await staff.wait(lambda a: a.notify == "new")
            rep = await advance_until(clock, staff, lambda a: a.notify == "repeat")
            assert rep.sound and rep.alert_id == first.alert_id and clock.monotonic() >= 0.5
            esc = await advance_until(
                clock, staff, lambda a: a.notify == "escalate" and a.escalation_step == 3
            )
            assert esc.targets == ["unit", "group:backup", "notifier:webhook"]
            assert clock.monotonic() >= 2.0
            await poll(lambda: received)
            assert received[0]["alert"]["alert_id"] == str(first.alert_id)
            assert (
                received[0]["target"] == "notifier:webhook"
                and "Möjligt fall" in received[0]["text"]
            )
            # Acknowledged: no more repeats or escalation, but a re-sound while unresolved.
            await staff.act(first, "acknowledge")
            await staff.wait(lambda a: a.status == "acknowledged")
            res = await advance_until(clock, staff, lambda a: a.notify == "resound")
            assert res.sound and res.status == "acknowledged"
            # A staff visit in the room stops the re-sounding (presence clears the call).
            async with pool.connection() as conn:
                await conn.execute(
                    """INSERT INTO visits (id, site, room, started_at, by_user, reason)
                       VALUES (gen_random_uuid(), %s, 'rum-101', now(), 'anna', 'alert')""",
                    (SITE,),
                )
            await advance(clock, 0.5)  # the periodic reload (care_refresh_s) sees it
            assert (SITE, "rum-101") in svc.visits
            staff.seen.clear()
            await advance(clock, 3.0)  # three re-sound intervals
            await staff.none(lambda a: a.notify == "resound", 0.3)
        async with pool.connection() as conn:
            notes = [
                r[0]
                for r in await (
                    await conn.execute("SELECT note FROM alert_history WHERE note IS NOT NULL")
                ).fetchall()
            ]
        assert "escalation step 3" in notes and "notified notifier:webhook" in notes


async def _silence(pool, room: str, kinds: list[str]) -> None:
    """A manager silences the room for an hour (begun a moment ago: the service's clock
    started before it)."""
    async with pool.connection() as conn:
        await conn.execute(
            """INSERT INTO alert_silences (site, room, kinds, starts_at, ends_at, reason,
                                          created_by)
               VALUES (%s, %s, %s, now() - interval '1 minute', now() + interval '1 hour',
                       'test', 'chef')""",
            (SITE, room, kinds),
        )


async def test_silence_and_practice_are_kept_apart(seeded, pool) -> None:
    clock = manual()
    steps = _steps((0, "unit"), (0.2, "notifier:webhook"))
    async with webhook(b"s") as (received, url):
        async with running(
            seeded, clock, offline_after_s=3600, escalation=steps, webhook_url=url,
            webhook_secret="s",
        ) as svc:  # fmt: skip
            await _silence(pool, "rum-102", ["possible_fall"])
            await poll(lambda: svc.silences)
            async with Staff(seeded, clock) as staff:
                await staff.heartbeat("rum-102")
                await staff.fall("rum-102")
                muted = await staff.wait(lambda a: a.room == "rum-102")
                assert muted.silenced and not muted.sound
                # Practice: raised on request, marked, sounding, never paged out.
                pid = uuid.uuid4()
                action = AlertAction(
                    alert_id=pid, action="raise_practice", by="chef", kind="out_of_bed",
                    priority="high",
                )  # fmt: skip
                await staff.mqtt.publish(
                    staff.topics.room(SITE, "rum-101", TopicKind.alert_set), encode(action)
                )
                p = await staff.wait(lambda a: a.alert_id == pid)
                assert p.practice and p.sound and p.title.startswith("ÖVNING")
                await advance(clock, 0.6)  # past the webhook step (0.2 s)
        assert received == []
        async with pool.connection() as conn:
            row = await (
                await conn.execute("SELECT practice, targets FROM alerts WHERE id = %s", (pid,))
            ).fetchone()
        assert row[0] is True and "notifier:webhook" not in row[1]


async def test_digital_round_at_the_agreed_time(seeded, pool) -> None:
    tz = ZoneInfo("Europe/Stockholm")
    slot = (datetime.now(tz) - timedelta(minutes=1)).replace(second=0, microsecond=0)
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM tillsyn_times")
        await conn.execute(
            """INSERT INTO tillsyn_times (resident_id, at_time, mode)
               SELECT id, %s, CASE room_id WHEN 'rum-101' THEN 'digital' ELSE 'physical' END
               FROM residents""",
            (slot.time(),),
        )
        now = datetime.now(UTC)
        await conn.execute(
            """INSERT INTO devices (site_id, id, room_id, availability, last_heartbeat, last_seen)
               VALUES (%s, 'cam-rum-101', 'rum-101', 'online', %s, %s)""",
            (SITE, now, now),
        )
        await conn.execute(
            """INSERT INTO room_states (ts, id, site, room, device, session, seq, state, since,
                                        confidence, payload)
               VALUES (%s, gen_random_uuid(), %s, 'rum-101', 'cam-rum-101', 1, 1, 'in_bed', %s,
                       0.9, '{}')""",
            (now - timedelta(seconds=20), SITE, now - timedelta(minutes=40)),
        )
    clock = manual()
    async with running(seeded, clock, offline_after_s=3600):
        await poll_db(pool, "SELECT count(*) = 2 FROM rounds")
        async with pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT room, decision, reason, summary, scheduled_at FROM rounds ORDER BY room"
                )
            ).fetchall()
        assert rows[0][:3] == ("rum-101", "digital_ok", "in_bed_calm")
        assert rows[0][3].startswith("I sängen, lugn sedan")
        assert rows[0][4] == slot
        assert rows[1][:3] == ("rum-102", "physical_needed", "planned_physical")
        await advance(clock, 0.6)  # two more checks (round_check_s 0.3): produced once only
        async with pool.connection() as conn:
            n = await (await conn.execute("SELECT count(*) FROM rounds")).fetchone()
        assert n[0] == 2


async def test_silence_made_while_an_alert_repeats_stops_the_repeats(seeded, pool) -> None:
    clock = manual()
    async with (
        running(seeded, clock, offline_after_s=3600, repeat_s=0.4),
        Staff(seeded, clock) as staff,
    ):
        await staff.fall("rum-101")
        first = await staff.wait(lambda a: a.notify == "new")
        await advance_until(clock, staff, lambda a: a.notify == "repeat")
        await _silence(pool, "rum-101", [])
        muted = await advance_until(
            clock, staff, lambda a: a.silenced and a.alert_id == first.alert_id
        )
        assert not muted.sound and muted.status == "firing"
        staff.seen.clear()
        await advance(clock, 1.2)  # three repeat intervals
        await staff.none(lambda a: a.notify == "repeat", 0.3)


async def test_a_pause_the_cache_has_not_seen_yet_still_wins(seeded, pool) -> None:
    """The monitoring check in the storing statement refuses an alert the cache let through;
    the condition alerts once the pause is over."""
    async with running(seeded, offline_after_s=3600) as svc:
        async with pool.connection() as conn, conn.transaction():
            # Without the change notification, as if it raced the cache's refresh.
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                """INSERT INTO monitoring_pauses (resident_id, starts_at, ends_at, reason)
                   SELECT id, now() - interval '1 minute', now() + interval '1 hour', 'race'
                   FROM residents WHERE room_id = 'rum-101'"""
            )
        assert svc.rooms[(SITE, "rum-101")].monitored  # the cache has not seen it
        async with Staff(seeded) as staff:
            await staff.fall("rum-101")
            # Refused, and the cache reloaded.
            await poll(lambda: not svc.rooms[(SITE, "rum-101")].monitored)
            async with pool.connection() as conn:
                n = await (await conn.execute("SELECT count(*) FROM alerts")).fetchone()
                assert n[0] == 0
                await conn.execute("DELETE FROM monitoring_pauses")
            a = await staff.wait(lambda a: a.kind == "possible_fall")
            assert a.room == "rum-101"
