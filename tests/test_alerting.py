"""Alerting: pure lifecycle, and the service against the real broker and database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from nattillsyn.alerting import lifecycle
from nattillsyn.alerting.service import AlertingService
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import (
    Alert,
    AlertAction,
    AlertStatus,
    Availability,
    Event,
    TopicKind,
    Topics,
    decode,
    encode,
)


def _alert(**kw) -> Alert:
    base = dict(
        alert_id=uuid.uuid4(), site="s", room="r", kind="possible_fall", priority="high",
        status="firing", title="t", started=datetime.now(UTC),
    )  # fmt: skip
    return Alert(**(base | kw))


def test_lifecycle_transitions() -> None:
    now = datetime.now(UTC)
    a = _alert()
    acked = lifecycle.acknowledge(a, "anna", now)
    assert acked.changed and acked.alert.status is AlertStatus.acknowledged
    assert acked.alert.acknowledged_by == "anna"
    assert not lifecycle.acknowledge(acked.alert, "bo", now).changed  # second tap: no change
    done = lifecycle.resolve(acked.alert, now)
    assert done.alert.status is AlertStatus.resolved and done.alert.acknowledged_at == now
    with pytest.raises(lifecycle.InvalidTransition):
        lifecycle.acknowledge(done.alert, "anna", now)
    # Resolved without acknowledgement stays distinguishable.
    unacked = lifecycle.resolve(a, now).alert
    assert unacked.status is AlertStatus.resolved and unacked.acknowledged_at is None
    again = lifecycle.republished(a)
    assert again.id != a.id and again.alert_id == a.alert_id


async def _next_alert(client: MqttClient, want_status: str, timeout: float = 10.0) -> Alert:
    while True:
        msg = await client.next_message(timeout)
        alert = decode(Alert, msg.payload)
        if alert.status == want_status:
            return alert


async def test_fall_event_raises_alert_once_and_ack_resolves(settings, pool) -> None:
    topics = Topics(settings.topic_root)
    svc = AlertingService(settings)
    await svc.start()
    staff = MqttClient(settings.mqtt_url, f"staff-{uuid.uuid4().hex[:8]}")
    await staff.start()
    await staff.subscribe(topics.subscription(TopicKind.alert))
    try:
        now = datetime.now(UTC)
        ev = Event(
            site="site-1", room="r1", device="d1", session=1, seq=5, event_id=uuid.uuid4(),
            type="possible_fall", phase="new", start=now, score=0.8,
        )  # fmt: skip
        t_event = topics.device("site-1", "r1", "d1", TopicKind.event)
        await staff.publish(t_event, encode(ev))
        await staff.publish(t_event, encode(ev))  # redelivery: no second alert
        alert = await _next_alert(staff, "firing")
        assert alert.kind == "possible_fall" and alert.priority == "high"
        assert alert.source_event == ev.event_id and "r1" in alert.title

        action = AlertAction(alert_id=alert.alert_id, action="acknowledge", by="anna")
        await staff.publish(topics.room("site-1", "r1", TopicKind.alert_set), encode(action))
        acked = await _next_alert(staff, "acknowledged")
        assert acked.acknowledged_by == "anna"

        resolve = AlertAction(
            alert_id=alert.alert_id, action="resolve", by="anna", outcome="needed_help"
        )
        await staff.publish(topics.room("site-1", "r1", TopicKind.alert_set), encode(resolve))
        await _next_alert(staff, "resolved")
        async with pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT status, outcome, resolved_by FROM alerts")
            ).fetchall()
            assert rows == [("resolved", "needed_help", "anna")]
            hist = await (
                await conn.execute("SELECT status FROM alert_history ORDER BY ts")
            ).fetchall()
            assert [h[0] for h in hist] == ["firing", "acknowledged", "resolved"]

        # Device offline (last will) → system alert; back online → resolved by the system.
        t_av = topics.device("site-1", "r2", "d2", TopicKind.availability)
        off = Availability(site="site-1", room="r2", device="d2", session=1, seq=0, state="offline")
        await staff.publish(t_av, encode(off))
        sys_alert = await _next_alert(staff, "firing")
        assert sys_alert.kind == "device_offline" and "fysisk tillsyn" in sys_alert.title
        on = Availability(site="site-1", room="r2", device="d2", session=2, seq=0, state="online")
        await staff.publish(t_av, encode(on))
        resolved = await _next_alert(staff, "resolved")
        assert resolved.alert_id == sys_alert.alert_id and resolved.acknowledged_at is None
    finally:
        await staff.stop()
        await svc.stop()
