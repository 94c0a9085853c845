"""Edge/server compatibility: what a first-release (contract v1) agent sends stays valid.

The payloads below are frozen copies of what agents of the first release publish, with
only the fields that release had. Servers are upgraded before devices (docs/deploy.md), so
every later server must accept them unchanged: a new required field, a renamed field or a
narrowed range in `protocol/` fails here. A message of an unknown major version is not
lost but dead-lettered with its reason.
"""

from __future__ import annotations

import json

import pytest

from nattillsyn.protocol import Topics
from nattillsyn.protocol.base import SCHEMA_VERSION
from nattillsyn.protocol.validate import DeadLetter, Record, decode_message

ROOT = "nattillsyn"
DEV = {
    "v": 1,
    "ts": "2026-01-15T02:14:07.120000Z",
    "site": "solgarden",
    "room": "rum-101",
    "device": "edge-101",
    "session": 1768443247000,
}
V1_MESSAGES = {
    "availability": DEV
    | {"id": "01940a1c-1f2e-7a3b-8c4d-5e6f7a8b9c0d", "seq": 0, "state": "online"},
    "heartbeat": DEV
    | {
        "id": "01940a1c-1f2e-7a3b-8c4d-5e6f7a8b9c0e",
        "seq": 1,
        "uptime_s": 15.0,
        "fps": 5.0,
        "agent_version": "0.1.0",
    },
    "event": DEV
    | {
        "id": "01940a1c-1f2e-7a3b-8c4d-5e6f7a8b9c0f",
        "seq": 2,
        "event_id": "01940a1c-1f2e-7a3b-8c4d-5e6f7a8b9c10",
        "type": "possible_fall",
        "phase": "new",
        "start": "2026-01-15T02:13:37.000000Z",
        "score": 0.82,
    },
    "state": DEV
    | {
        "id": "01940a1c-1f2e-7a3b-8c4d-5e6f7a8b9c11",
        "seq": 3,
        "state": "on_floor",
        "since": "2026-01-15T02:13:40.000000Z",
        "confidence": 0.7,
    },
    "config/state": DEV | {"id": "01940a1c-1f2e-7a3b-8c4d-5e6f7a8b9c12", "seq": 4, "version": 3},
}


def _topic(kind: str) -> str:
    return f"{ROOT}/solgarden/rum-101/edge-101/{kind}"


@pytest.mark.parametrize("kind", sorted(V1_MESSAGES))
def test_first_release_agent_messages_are_still_accepted(kind: str):
    payload = json.dumps(V1_MESSAGES[kind]).encode()
    got = decode_message(Topics(ROOT), _topic(kind), payload, 65536)
    assert isinstance(got, Record), getattr(got, "reason", got)
    assert got.msg.v == 1


def test_contract_major_is_still_one_or_the_server_keeps_reading_it():
    # Raising SCHEMA_VERSION without keeping a v1 reader strands every deployed edge.
    assert SCHEMA_VERSION == 1, "a new major needs a v1 reader for one release (docs/deploy.md)"


@pytest.mark.parametrize("v", [2, 0, "1", None])
def test_unknown_major_version_is_dead_lettered_with_the_reason(v):
    msg = dict(V1_MESSAGES["event"], v=v)
    got = decode_message(Topics(ROOT), _topic("event"), json.dumps(msg).encode(), 65536)
    assert isinstance(got, DeadLetter)
    assert "schema version" in got.reason
