"""Validation of one received MQTT message against the contract: a Record or a DeadLetter.

Pure and total: every consumer (ingest, alerting, api, gateway) uses it, so all agree
on what is valid; ingest stores the rejects in the dead-letter table."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pydantic import ValidationError

from .base import SCHEMA_VERSION, DeviceMessage, Message
from .topics import SITE_KINDS, Topic, Topics

MAX_DEAD_LETTER_BYTES = 16384  # raw payload kept in the dead-letter table at most


@dataclass(frozen=True)
class Record:
    topic: Topic
    msg: Message
    topic_str: str
    raw: bytes


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    reason: str
    payload: bytes
    redelivered: bool = False  # MQTT DUP: maybe already stored before a crash

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.topic.encode() + b"\0" + self.payload).digest()

    @property
    def kept_payload(self) -> bytes:
        return self.payload[:MAX_DEAD_LETTER_BYTES]


def decode_message(
    topics: Topics, topic: str, payload: bytes, max_payload: int
) -> Record | DeadLetter:
    """Validate topic and payload; never raises."""
    parsed = topics.parse(topic)
    if parsed is None:
        return DeadLetter(topic, "unknown topic", payload)
    if len(payload) > max_payload:
        return DeadLetter(
            topic, f"payload too large: {len(payload)} > {max_payload} bytes", payload
        )
    try:  # the common case in one pass of pydantic's JSON parser
        msg: Message | None = parsed.model.model_validate_json(payload)
    except ValidationError:
        msg = None
    if msg is None or "v" not in msg.model_fields_set:  # `v` has a default, yet is required
        out = _checked(parsed, topic, payload)
        if isinstance(out, DeadLetter):
            return out
        msg = out
    if isinstance(msg, DeviceMessage) and (
        (msg.site, msg.room, msg.device) != (parsed.site, parsed.room, parsed.device)
    ):
        return DeadLetter(
            topic,
            f"sender mismatch: payload says {msg.site}/{msg.room}/{msg.device}, "
            f"topic says {parsed.site}/{parsed.room}/{parsed.device}",
            payload,
        )
    site = getattr(msg, "site", None)
    site = getattr(site, "id", site)  # a site snapshot carries the site's row
    if parsed.kind in SITE_KINDS and site != parsed.site:
        return DeadLetter(
            topic, f"sender mismatch: payload says site {site}, topic says {parsed.site}", payload
        )
    return Record(parsed, msg, topic, payload)


def _checked(parsed: Topic, topic: str, payload: bytes) -> Message | DeadLetter:
    """Validation step by step, naming the first failure as the dead-letter reason."""
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return DeadLetter(topic, f"invalid JSON: {exc}", payload)
    if not isinstance(raw, dict):
        return DeadLetter(topic, "invalid payload: not a JSON object", payload)
    if raw.get("v") != SCHEMA_VERSION:
        return DeadLetter(topic, f"unknown schema version: {raw.get('v')!r}", payload)
    try:
        return parsed.model.model_validate(raw)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        return DeadLetter(topic, f"invalid {parsed.kind} payload: {detail}", payload)
