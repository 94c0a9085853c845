"""Alerting's pure logic, exhaustively: presets and overrides, room facts and rules,
grouping, lifecycle, the repeat/escalation/re-sound schedule, and the round decision."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from nattillsyn.alerting import escalation, lifecycle, presets, rounds, rules
from nattillsyn.alerting.escalation import Policy, Step, Tracking
from nattillsyn.alerting.presets import Hours, RuleKind
from nattillsyn.protocol import (
    Alert,
    AlertPriority,
    AlertStatus,
    Availability,
    Event,
    Heartbeat,
    RoomState,
    RoomStateName,
)

T0 = datetime(2026, 1, 15, 1, 0, tzinfo=UTC)  # 02:00 in Stockholm (winter)
TZ = ZoneInfo("Europe/Stockholm")
TIMING = rules.SystemTiming()


def s(sec: float) -> timedelta:
    return timedelta(seconds=sec)


# -- presets ------------------------------------------------------------------------------


def test_every_preset_defines_every_resident_rule_and_falls_alert_at_once() -> None:
    for p in presets.PRESETS.values():
        assert set(p.rules) == {k.value for k in presets.RESIDENT_RULES}
        fall = p.rules["possible_fall"]
        assert fall.enabled and fall.priority is AlertPriority.high and fall.delay_s == 0
    std = presets.effective_rules("standard")
    assert std[RuleKind.out_of_bed].delay_s == 600
    assert std[RuleKind.in_bathroom].delay_s == 1200
    assert std[RuleKind.left_room].hours == presets.NIGHT


def test_overrides_apply_and_validate() -> None:
    rules_ = presets.effective_rules(
        "standard",
        {
            "out_of_bed": {"delay_s": 300, "priority": "high"},
            "left_room": {"hours": "always"},
            "no_motion": {"enabled": False},
            "in_bathroom": {"hours": {"start": "23:00", "end": "05:00"}},
        },
    )
    assert rules_[RuleKind.out_of_bed].delay_s == 300
    assert rules_[RuleKind.out_of_bed].priority is AlertPriority.high
    assert rules_[RuleKind.left_room].hours is None
    assert not rules_[RuleKind.no_motion].enabled
    assert rules_[RuleKind.in_bathroom].hours == Hours(start=time(23), end=time(5))
    for bad in (
        {"possible_fall": {"enabled": False}},  # a fall alert cannot be turned off
        {"device_offline": {"enabled": False}},  # system alerts are not per resident
        {"out_of_bed": {"delay_s": -1}},
        {"out_of_bed": {"delay_s": 10**6}},
        {"out_of_bed": {"colour": "red"}},
        {"out_of_bed": {"priority": "urgent"}},
    ):
        with pytest.raises(ValidationError):
            presets.RuleOverrides.model_validate(bad)
    with pytest.raises(presets.UnknownPreset):
        presets.preset("nope")
    # An unknown preset name never silences a resident: the default applies.
    assert presets.effective_rules("nope") == presets.effective_rules("standard")
    cat = presets.catalog()
    assert cat["default"] == "standard" and len(cat["presets"]) == len(presets.PRESETS)
    assert "properties" in str(cat["overrides_schema"]) or "additionalProperties" in str(
        cat["overrides_schema"]
    )


@pytest.mark.parametrize(
    ("start", "end", "inside", "outside"),
    [
        (time(22), time(6), [time(22), time(23, 59), time(0), time(5, 59)], [time(6), time(12)]),
        (time(8), time(17), [time(8), time(16, 59)], [time(7, 59), time(17), time(23)]),
        (time(0), time(0), [time(0), time(12), time(23, 59)], []),
    ],
)
def test_hours_window(start, end, inside, outside) -> None:
    h = Hours(start=start, end=end)
    assert all(h.contains(t) for t in inside)
    assert not any(h.contains(t) for t in outside)


def test_next_inside_window() -> None:
    night = Hours(start=time(22), end=time(6))
    at_20 = datetime(2026, 1, 15, 20, 0, tzinfo=TZ)
    assert rules.next_inside(night, at_20, TZ) == datetime(2026, 1, 15, 22, 0, tzinfo=TZ)
    at_23 = datetime(2026, 1, 15, 23, 0, tzinfo=TZ)
    assert rules.next_inside(night, at_23, TZ) == at_23
    at_7 = datetime(2026, 1, 15, 7, 0, tzinfo=TZ)
    assert rules.next_inside(night, at_7, TZ) == datetime(2026, 1, 15, 22, 0, tzinfo=TZ)


# -- facts and rules -------------------------------------------------------------------------

_seq = itertools.count()


def _ids(session: int = 1) -> dict:
    return dict(site="s", room="r", device="d", session=session, seq=next(_seq))


def state(name: str, since: datetime, ts: datetime | None = None, conf: float = 0.9) -> RoomState:
    return RoomState(**_ids(), state=name, since=since, confidence=conf, ts=ts or since)


def event(kind: str, phase: str, start: datetime, eid: uuid.UUID, session: int = 1) -> Event:
    return Event(**_ids(session), event_id=eid, type=kind, phase=phase, start=start, ts=start)


def heartbeat(at: datetime, queue: int = 0) -> Heartbeat:
    return Heartbeat(**_ids(), uptime_s=1, fps=5, agent_version="x", queue=queue, ts=at)


def facts(*msgs, watched: datetime = T0 - s(3600)) -> rules.RoomFacts:
    f = rules.RoomFacts("s", "r", watched_since=watched)
    for m in msgs:
        f.apply(m)
    return f


def ctx(now: datetime, monitored: bool = True, since: datetime | None = None) -> rules.Context:
    return rules.Context(now, monitored, since, TZ, TIMING)


STD = presets.effective_rules("standard")


def dues(f: rules.RoomFacts, now: datetime, r=STD, **kw) -> dict[RuleKind, rules.Due]:
    return {d.kind: d for d in rules.evaluate(f, r, ctx(now, **kw))}


def test_possible_fall_alerts_at_once_and_only_while_monitored() -> None:
    eid = uuid.uuid4()
    f = facts(heartbeat(T0), event("possible_fall", "new", T0, eid))
    d = dues(f, T0 + s(1))[RuleKind.possible_fall]
    assert d.ready(T0 + s(1)) and d.priority is AlertPriority.high
    assert d.episode == f"event:{eid}"
    assert dues(f, T0 + s(1), monitored=False) == {}
    # The event's end removes the condition.
    f.apply(event("possible_fall", "end", T0, eid))
    assert RuleKind.possible_fall not in dues(f, T0 + s(2))


@pytest.mark.parametrize(
    ("name", "kind", "delay"),
    [
        ("out_of_bed", RuleKind.out_of_bed, 600),
        ("in_bathroom", RuleKind.in_bathroom, 1200),
        ("no_motion", RuleKind.no_motion, 900),
        ("on_floor", RuleKind.on_floor, 60),
    ],
)
def test_state_rules_wait_their_delay(name, kind, delay) -> None:
    f = facts(heartbeat(T0 + s(delay)), state(name, T0))
    d = dues(f, T0 + s(delay))[kind]
    assert not d.ready(T0 + s(delay - 1))
    assert d.ready(T0 + s(delay))
    # Back in bed: the condition is gone.
    f.apply(state("in_bed", T0 + s(delay + 5)))
    assert kind not in dues(f, T0 + s(delay + 5))


def test_delay_counts_from_when_monitoring_began() -> None:
    f = facts(heartbeat(T0 + s(600)), state("out_of_bed", T0))
    began = T0 + s(300)
    d = dues(f, T0 + s(600), since=began)[RuleKind.out_of_bed]
    assert d.fire_at == began + s(600)


def test_left_room_only_at_night() -> None:
    evening = datetime(2026, 1, 15, 20, 0, tzinfo=TZ)
    f = facts(heartbeat(evening + s(10)), state("left_room", evening))
    d = dues(f, evening + s(10))[RuleKind.left_room]
    assert d.fire_at == datetime(2026, 1, 15, 22, 0, tzinfo=TZ)  # window opens; gone > 5 min
    night = datetime(2026, 1, 15, 23, 0, tzinfo=TZ)
    f = facts(heartbeat(night), state("left_room", night))
    assert dues(f, night)[RuleKind.left_room].fire_at == night + s(300)
    wander = presets.effective_rules("wandering")
    assert dues(f, night, r=wander)[RuleKind.left_room].ready(night)


def test_disabled_rule_never_alerts() -> None:
    low = presets.effective_rules("low")
    f = facts(heartbeat(T0 + s(7200)), state("out_of_bed", T0))
    assert RuleKind.out_of_bed not in dues(f, T0 + s(7200), r=low)


def test_device_offline_after_silence_or_last_will() -> None:
    f = facts(heartbeat(T0))
    assert RuleKind.device_offline not in dues(f, T0 + s(59))
    d = dues(f, T0 + s(60))[RuleKind.device_offline]
    assert d.fire_at == T0 + s(60) and d.priority is AlertPriority.medium
    # Last will: at once.
    f = facts(heartbeat(T0), Availability(**_ids(), state="offline", ts=T0 + s(5)))
    assert dues(f, T0 + s(5))[RuleKind.device_offline].ready(T0 + s(5))
    # Back online clears it; a stale state says nothing about the resident meanwhile.
    f = facts(heartbeat(T0), state("out_of_bed", T0 - s(3600)))
    assert set(dues(f, T0 + s(120))) == {RuleKind.device_offline}
    f.apply(heartbeat(T0 + s(121)))
    assert RuleKind.device_offline not in dues(f, T0 + s(121))
    # Never heard from since we started listening counts from then.
    f = facts(watched=T0)
    assert dues(f, T0 + s(60))[RuleKind.device_offline].ready(T0 + s(60))


def test_offline_timing_is_configurable() -> None:
    timing = rules.SystemTiming(offline_after_s=5)
    f = facts(heartbeat(T0))
    out = rules.evaluate(f, STD, rules.Context(T0 + s(5), True, None, TZ, timing))
    assert any(d.kind is RuleKind.device_offline for d in out)


def test_camera_and_backlog_system_alerts() -> None:
    eid = uuid.uuid4()
    f = facts(heartbeat(T0 + s(30)), event("camera_covered", "new", T0, eid))
    d = dues(f, T0 + s(30))[RuleKind.camera_covered]
    assert d.fire_at == T0 + s(30)
    f.apply(event("camera_covered", "end", T0, eid))
    assert RuleKind.camera_covered not in dues(f, T0 + s(31))
    f = facts(heartbeat(T0, queue=150), heartbeat(T0 + s(30), queue=400))
    d = dues(f, T0 + s(60))[RuleKind.edge_backlog]
    assert d.fire_at == T0 + s(60)
    f.apply(heartbeat(T0 + s(61), queue=0))
    assert RuleKind.edge_backlog not in dues(f, T0 + s(61))
    # The device reports paused while monitoring should run.
    f = facts(heartbeat(T0 + s(120)), state("paused", T0))
    assert dues(f, T0 + s(120))[RuleKind.device_paused].ready(T0 + s(120))


def test_agent_restart_drops_events_whose_end_will_never_come() -> None:
    f = facts(heartbeat(T0), event("too_dark", "new", T0, uuid.uuid4(), session=1))
    assert RuleKind.too_dark in {c.kind for c in rules.conditions(f, T0, TIMING)}
    f.apply(Heartbeat(**(_ids(session=2)), uptime_s=1, fps=5, agent_version="x", ts=T0 + s(1)))
    assert RuleKind.too_dark not in {c.kind for c in rules.conditions(f, T0 + s(1), TIMING)}


def test_old_messages_do_not_override_newer_state() -> None:
    f = facts(heartbeat(T0), state("in_bed", T0 + s(10)))
    assert not f.apply(state("out_of_bed", T0, ts=T0))
    assert f.state is RoomStateName.in_bed


def test_inhibition_groups_per_room_and_deduplicates() -> None:
    assert rules.inhibitor(RuleKind.on_floor, {RuleKind.possible_fall}) is RuleKind.possible_fall
    assert (
        rules.inhibitor(RuleKind.possible_fall, {RuleKind.possible_fall}) is RuleKind.possible_fall
    )
    assert rules.inhibitor(RuleKind.too_dark, {RuleKind.device_offline}) is RuleKind.device_offline
    assert rules.inhibitor(RuleKind.possible_fall, {RuleKind.out_of_bed}) is None
    assert rules.inhibitor(RuleKind.left_room, set()) is None


def test_cleared_rules() -> None:
    assert rules.cleared(RuleKind.device_offline, True, set())
    assert not rules.cleared(RuleKind.device_offline, False, {RuleKind.device_offline})
    assert rules.cleared(RuleKind.out_of_bed, False, set())
    assert not rules.cleared(RuleKind.out_of_bed, True, set())  # acknowledged: staff own it
    assert not rules.cleared(RuleKind.possible_fall, False, set())  # someone must look


def test_titles_are_swedish_and_name_the_room() -> None:
    assert rules.title(RuleKind.possible_fall, "Rum 101") == "Möjligt fall – Rum 101"
    assert "fysisk tillsyn behövs" in rules.title(RuleKind.device_offline, "Rum 1")
    assert rules.title("unknown_kind", "Rum 1") == "unknown_kind – Rum 1"


# -- lifecycle ------------------------------------------------------------------------------


def _alert(**kw) -> Alert:
    base = dict(
        alert_id=uuid.uuid4(), site="s", room="r", kind="possible_fall", priority="high",
        status="firing", title="t", started=T0,
    )  # fmt: skip
    return Alert(**(base | kw))


def test_lifecycle_transitions() -> None:
    now = T0
    a = _alert()
    acked = lifecycle.acknowledge(a, "anna", now)
    assert acked.changed and acked.alert.status is AlertStatus.acknowledged
    assert acked.alert.acknowledged_by == "anna"
    assert not lifecycle.acknowledge(acked.alert, "bo", now).changed  # second tap: no change
    done = lifecycle.resolve(acked.alert, now, "anna", "needed_help")
    assert done.alert.status is AlertStatus.resolved and done.alert.acknowledged_at == now
    assert done.alert.resolved_by == "anna" and done.alert.outcome == "needed_help"
    assert not lifecycle.resolve(done.alert, now).changed
    with pytest.raises(lifecycle.InvalidTransition):
        lifecycle.acknowledge(done.alert, "anna", now)
    # Resolved without acknowledgement stays distinguishable; the system gives no outcome.
    unacked = lifecycle.resolve(a, now).alert
    assert unacked.status is AlertStatus.resolved and unacked.acknowledged_at is None
    assert unacked.resolved_by == "system" and unacked.outcome is None
    again = lifecycle.republished(a, sound=True, notify="repeat")
    assert again.id != a.id and again.alert_id == a.alert_id and again.sound


# -- escalation schedule ---------------------------------------------------------------------

POLICY = Policy(
    repeat_s=60,
    resound_s=180,
    steps=(Step(0, ("unit",)), Step(180, ("group:backup",)), Step(360, ("notifier:webhook",))),
)


def _apply(t: Tracking, n: escalation.Notification, now: datetime) -> Tracking:
    return Tracking(**{**t.__dict__, "step": n.step, "last_notified_at": now})


def run(t: Tracking, until_s: int, policy: Policy = POLICY, ack_at: int | None = None):
    """Step time second by second, applying each notification; returns (second, reason, step)."""
    out = []
    for sec in range(until_s + 1):
        now = T0 + s(sec)
        if ack_at is not None and sec == ack_at:
            t = Tracking(
                **{**t.__dict__, "status": AlertStatus.acknowledged, "acknowledged_at": now}
            )
        n = escalation.due(t, policy, now)
        if n is not None:
            out.append((sec, n.reason, n.step, n.new_targets, n.sound))
            t = _apply(t, n, now)
            assert escalation.due(t, policy, now) is None  # applied: nothing more this second
    return out


def test_high_alert_repeats_escalates_until_acknowledged() -> None:
    t = Tracking(AlertStatus.firing, AlertPriority.high, raised_at=T0)
    log = run(t, 400)
    reasons = [(sec, r) for sec, r, *_ in log]
    assert reasons[0] == (0, "new")
    assert (60, "repeat") in reasons and (120, "repeat") in reasons
    assert (180, "escalate") in reasons and (360, "escalate") in reasons
    esc = {sec: targets for sec, r, _, targets, _ in log if r != "repeat"}
    assert esc == {0: ("unit",), 180: ("group:backup",), 360: ("notifier:webhook",)}
    assert all(sound for *_, sound in log)
    # Acknowledged at 100 s: no escalation, no repeat; re-sound 180 s after the ack.
    log = run(t, 700, ack_at=100)
    reasons = [(sec, r) for sec, r, *_ in log]
    assert reasons == [
        (0, "new"),
        (60, "repeat"),
        (280, "resound"),
        (460, "resound"),
        (640, "resound"),
    ]


def test_next_at_predicts_due() -> None:
    t = Tracking(AlertStatus.firing, AlertPriority.high, raised_at=T0)
    for sec in range(0, 500, 7):
        now = T0 + s(sec)
        n = escalation.due(t, POLICY, now)
        if n is not None:
            t = _apply(t, n, now)
        nxt = escalation.next_at(t, POLICY)
        assert nxt is not None and nxt > now
        assert escalation.due(t, POLICY, nxt - s(0.001)) is None
        assert escalation.due(t, POLICY, nxt) is not None


def test_priorities_silences_practice_and_visits() -> None:
    low = run(Tracking(AlertStatus.firing, AlertPriority.low, raised_at=T0), 600)
    assert [(sec, r, sound) for sec, r, *_, sound in low] == [(0, "new", True)]
    info = run(Tracking(AlertStatus.firing, AlertPriority.info, raised_at=T0), 600)
    assert [(sec, r, sound) for sec, r, *_, sound in info] == [(0, "new", False)]
    muted = run(Tracking(AlertStatus.firing, AlertPriority.high, raised_at=T0, silenced=True), 600)
    assert [(sec, r, sound) for sec, r, *_, sound in muted] == [(0, "new", False)]
    practice = run(
        Tracking(AlertStatus.firing, AlertPriority.high, raised_at=T0, practice=True), 400
    )
    paged = [t for *_, targets, _ in practice for t in targets]
    assert "notifier:webhook" not in paged and "group:backup" in paged
    assert escalation.targets_reached(POLICY, 3, practice=True) == ["unit", "group:backup"]
    # A staff visit open in the room stops re-sounding.
    t = Tracking(
        AlertStatus.acknowledged, AlertPriority.high, raised_at=T0, acknowledged_at=T0,
        last_notified_at=T0, step=1, visit_open=True,
    )  # fmt: skip
    assert escalation.due(t, POLICY, T0 + s(3600)) is None
    assert escalation.next_at(t, POLICY) is None
    resolved = Tracking(AlertStatus.resolved, AlertPriority.high, raised_at=T0)
    assert escalation.due(resolved, POLICY, T0 + s(999)) is None


def test_overdue_steps_after_a_restart_come_at_once() -> None:
    t = Tracking(AlertStatus.firing, AlertPriority.high, raised_at=T0, step=1, last_notified_at=T0)
    n = escalation.due(t, POLICY, T0 + s(400))
    assert n.reason == "escalate" and n.step == 3
    assert n.new_targets == ("group:backup", "notifier:webhook")


# -- rounds -----------------------------------------------------------------------------------


def _round(samples, **kw) -> rounds.RoundResult:
    at = kw.pop("at", T0)
    base = dict(
        scheduled_at=at, mode="digital", monitored=True, samples=samples,
        last_heartbeat=at - s(10), device_online=True, open_alerts=[], rules=STD, tz=TZ,
    )  # fmt: skip
    return rounds.decide(rounds.RoundInput(**(base | kw)))


def sample(name: str, since: datetime, ts: datetime | None = None, conf: float = 0.9):
    return rounds.StateSample(ts or T0 - s(30), RoomStateName(name), since, conf)


def test_round_in_bed_calm_is_digital_with_a_readable_summary() -> None:
    r = _round([sample("in_bed", T0 - s(18 * 60))])
    assert r.decision == "digital_ok" and r.reason == "in_bed_calm"
    assert r.summary == "I sängen, lugn sedan 01:42"
    assert r.observed_state == "in_bed"


@pytest.mark.parametrize(
    ("kw", "samples", "decision", "reason"),
    [
        (
            {"mode": "physical"},
            [sample("in_bed", T0 - s(600))],
            "physical_needed",
            "planned_physical",
        ),
        ({"monitored": False}, [sample("in_bed", T0 - s(600))], "physical_needed", "not_monitored"),
        (
            {"device_online": False},
            [sample("in_bed", T0 - s(600))],
            "physical_needed",
            "device_offline",
        ),
        (
            {"last_heartbeat": T0 - s(600)},
            [sample("in_bed", T0 - s(600))],
            "physical_needed",
            "device_offline",
        ),
        ({}, [], "physical_needed", "no_data"),
        ({}, [sample("in_bed", T0 - s(7200), ts=T0 - s(3600))], "physical_needed", "no_data"),
        (
            {"open_alerts": ["possible_fall"]},
            [sample("in_bed", T0 - s(60))],
            "physical_needed",
            "open_alert",
        ),
        ({}, [sample("in_bed", T0 - s(60), conf=0.2)], "physical_needed", "low_confidence"),
        ({}, [sample("out_of_bed", T0 - s(240))], "digital_ok", "up_briefly"),
        ({}, [sample("out_of_bed", T0 - s(900))], "physical_needed", "up_long"),
        ({}, [sample("in_bathroom", T0 - s(300))], "digital_ok", "in_bathroom"),
        ({}, [sample("in_bathroom", T0 - s(1500))], "physical_needed", "bathroom_long"),
        ({}, [sample("in_chair", T0 - s(300))], "digital_ok", "in_chair"),
        ({}, [sample("on_floor", T0 - s(30))], "physical_needed", "on_floor"),
        ({}, [sample("left_room", T0 - s(30))], "physical_needed", "left_room"),
        ({}, [sample("empty", T0 - s(30))], "physical_needed", "empty"),
        ({}, [sample("no_motion", T0 - s(30))], "physical_needed", "no_motion"),
        ({}, [sample("paused", T0 - s(30))], "physical_needed", "device_paused"),
        ({}, [sample("unknown", T0 - s(30))], "physical_needed", "unknown"),
    ],
)
def test_round_decisions(kw, samples, decision, reason) -> None:
    r = _round(samples, **kw)
    assert (r.decision, r.reason) == (decision, reason)
    assert r.summary


def test_round_out_of_bed_summary_and_restless_bed() -> None:
    assert _round([sample("out_of_bed", T0 - s(240))]).summary == "Ur sängen 4 min"
    busy = [
        sample(
            "in_bed" if i % 2 == 0 else "present", T0 - s(500 - i * 100), ts=T0 - s(500 - i * 100)
        )
        for i in range(5)
    ]
    r = _round(busy)
    assert r.reason == "in_bed_restless" and r.decision == "digital_ok"


def test_round_occurrence_in_local_time() -> None:
    now = datetime(2026, 1, 15, 1, 5, tzinfo=UTC)  # 02:05 Stockholm
    assert rounds.occurrence(time(2), now, TZ) == datetime(2026, 1, 15, 2, 0, tzinfo=TZ)
    assert rounds.occurrence(time(23), now, TZ) == datetime(2026, 1, 14, 23, 0, tzinfo=TZ)


def test_liveness_runs_on_the_arrival_clock() -> None:
    """A device whose clock is an hour behind is not offline while its heartbeats arrive."""
    f = facts()
    f.apply(heartbeat(T0 - s(3600)), received=T0)
    assert RuleKind.device_offline not in dues(f, T0 + s(30))
    assert RuleKind.device_offline in dues(f, T0 + s(60))
    # Order still follows the source clock: an older heartbeat arriving late is ignored.
    assert not f.apply(heartbeat(T0 - s(3700)), received=T0 + s(50))
    assert f.last_heartbeat == T0
