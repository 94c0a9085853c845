"""Pure administration logic, exhaustively: inclusion rules, schedule boundaries, device
health, Mosquitto files, claim codes."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from nattillsyn.api import mosquitto
from nattillsyn.api.inclusion import (
    ConsentFacts,
    Criterion,
    Facts,
    Window,
    next_boundary,
    status,
)
from nattillsyn.api.mosquitto_sync import run_reload
from nattillsyn.api.queries.devices import claim_hash, health, new_claim_code
from nattillsyn.protocol import Topics

TODAY = date(2026, 3, 1)
OK_CONSENT = ConsentFacts(withdrawn=False, cohabitants_consent=True, covers_monitoring=True)


def facts(**kw) -> Facts:
    base = dict(
        active=True,
        has_room=True,
        decision_reference="SoL-1",
        decision_date=date(2026, 2, 1),
        offer_answer="accepted",
        criteria=[Criterion("sleeps_alone", True), Criterion("language", False)],
        answers={"sleeps_alone": "yes"},
        consents=[OK_CONSENT],
    )
    return Facts(**(base | kw))


def test_all_facts_allow_monitoring() -> None:
    assert status(facts(), TODAY).monitoring_allowed
    assert status(facts(), TODAY).missing == []


def test_every_combination_needs_every_fact() -> None:
    """Monitoring is allowed iff every single condition holds (2^7 combinations)."""
    for bits in itertools.product([True, False], repeat=7):
        active, room, decision, accepted, crit, consent, cohab = bits
        f = facts(
            active=active,
            has_room=room,
            decision_reference="SoL-1" if decision else None,
            offer_answer="accepted" if accepted else "pending",
            answers={"sleeps_alone": "yes" if crit else "no"},
            consents=[ConsentFacts(not consent, cohab, True)],
        )
        st = status(f, TODAY)
        assert st.monitoring_allowed == all(bits), bits
        assert bool(st.missing) != all(bits)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"decision_date": date(2026, 4, 1)}, "decision_in_future"),
        ({"decision_date": None}, "decision"),
        ({"offer_answer": "declined"}, "offer_declined"),
        ({"answers": {}}, "criterion:sleeps_alone"),
        ({"answers": {"sleeps_alone": "unknown"}}, "criterion:sleeps_alone"),
        ({"consents": []}, "consent"),
        ({"consents": [ConsentFacts(True, True, True)]}, "consent_withdrawn"),
        ({"consents": [ConsentFacts(False, True, False)]}, "consent_scope"),
        ({"consents": [ConsentFacts(False, False, True)]}, "cohabitant_consent"),
        ({"has_room": False}, "room"),
        ({"active": False}, "discharged"),
    ],
)
def test_each_missing_fact_is_named(change, reason) -> None:
    st = status(facts(**change), TODAY)
    assert not st.monitoring_allowed and reason in st.missing


def test_optional_criterion_and_newest_consent_rule() -> None:
    assert status(facts(answers={"sleeps_alone": "yes", "language": "no"}), TODAY).missing == []
    # A new consent after a withdrawn one counts; a withdrawal of the newest stops it.
    assert status(facts(consents=[OK_CONSENT, ConsentFacts(True, True, True)]), TODAY).missing == []
    assert (
        "consent_withdrawn"
        in status(
            facts(consents=[ConsentFacts(True, True, True), ConsentFacts(True, True, True)]), TODAY
        ).missing
    )


def test_next_boundary_window_and_pauses() -> None:
    tz = "Europe/Stockholm"
    now = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)  # 13:00 local
    w = Window(tz, time(21), time(7))
    assert next_boundary(now, [w], []) == datetime(2026, 1, 10, 21, tzinfo=ZoneInfo(tz))
    late = datetime(2026, 1, 10, 22, 0, tzinfo=UTC)  # 23:00 local: next is 07:00 tomorrow
    assert next_boundary(late, [w], []) == datetime(2026, 1, 11, 7, tzinfo=ZoneInfo(tz))
    edge = now + timedelta(minutes=5)
    assert next_boundary(now, [w], [now - timedelta(hours=1), edge]) == edge
    assert next_boundary(now, [Window(tz, time(0), time(0))], []) is None
    assert next_boundary(now, [], []) is None


def test_next_boundary_across_daylight_saving() -> None:
    tz = ZoneInfo("Europe/Stockholm")
    # 2026-03-29 clocks go 02:00 → 03:00; a window ending 07:00 ends at 05:00 UTC that day.
    now = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    nxt = next_boundary(now, [Window("Europe/Stockholm", time(21), time(7))], [])
    assert nxt == datetime(2026, 3, 29, 7, tzinfo=tz)
    assert nxt.astimezone(UTC).hour == 5


def _dev(**kw) -> dict:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    base = dict(
        status="active",
        last_seen=now,
        availability="online",
        settings={},
        last_heartbeat=now - timedelta(seconds=10),
        desired_version=3,
        config_version=3,
        config_pushed_at=now - timedelta(minutes=1),
    )
    return base | kw


def test_device_health() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert health(_dev(), now) == "ok"
    assert health(_dev(status="retired"), now) == "retired"
    assert health(_dev(last_seen=None), now) == "never_seen"
    assert health(_dev(availability="offline"), now) == "offline"
    assert health(_dev(last_heartbeat=now - timedelta(seconds=60)), now) == "stale"
    # A slower heartbeat setting moves the stale limit.
    assert (
        health(_dev(last_heartbeat=now - timedelta(seconds=60), settings={"heartbeat_s": 60}), now)
        == "ok"
    )
    assert health(_dev(desired_version=4), now) == "config_pending"
    # Just pushed: give the device a moment before calling it pending.
    assert health(_dev(desired_version=4, config_pushed_at=now - timedelta(seconds=2)), now) == "ok"


def test_claim_codes() -> None:
    codes = {new_claim_code() for _ in range(200)}
    assert len(codes) == 200
    code = codes.pop()
    assert len(code) == 14 and code[4] == code[9] == "-"
    assert not set(code.replace("-", "")) & set("01IO")
    assert claim_hash(code) == claim_hash(code.lower().replace("-", " "))


def test_acl_gives_devices_only_their_own_topics() -> None:
    t = Topics("nt")
    acl = mosquitto.render_acl(
        [
            mosquitto.Account("svc", "service", "h"),
            mosquitto.Account("dev-s-a", "device", "h", "s", "r1", "a"),
            mosquitto.Account("dev-s-b", "device", "h", "s", None, "b"),  # no room: nothing
        ],
        t,
    )
    blocks = {b.split("\n")[0]: b for b in acl.split("\n\n") if b.startswith("user")}
    assert blocks["user svc"].endswith("topic readwrite nt/#")
    dev = blocks["user dev-s-a"].splitlines()[1:]
    assert all(line.split()[2].startswith("nt/s/r1/a/") for line in dev)
    assert {line.split()[1] for line in dev} == {"read", "write"}
    assert (
        "topic read nt/s/r1/a/config/set" in dev and "topic write nt/s/r1/a/config/set" not in dev
    )
    assert not any("+" in line or "#" in line for line in dev)
    assert blocks["user dev-s-b"].strip() == "user dev-s-b"
    assert mosquitto.render_passwd([mosquitto.Account("u", "device", "$7$x")]) == "u:$7$x\n"


async def test_reload_command_reports_success() -> None:
    assert await run_reload(["true"]) is True
    assert await run_reload(["false"]) is False
    assert await run_reload(["/nonexistent/reload-mosquitto"]) is False
