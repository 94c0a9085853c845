"""The topic tree: `<root>/<site>/<room>/<device>/<kind>` (Frigate / Home Assistant style).

Room-level topics (alerts) use the reserved device level `alert`:
`<root>/<site>/<room>/alert` and `<root>/<site>/<room>/alert/set`.
Site-level topics (the care-home gateway and the centre) use the reserved room `_site`:
`<root>/<site>/_site/gateway`, `…/_site/gateway/sync`, … (alerts about the site as a whole,
e.g. "site offline", are room-level alerts of that room: `<root>/<site>/_site/alert`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from .alerts import Alert, AlertAction
from .base import Message
from .commands import Command, CommandResponse
from .device import Availability, ConfigState, DeviceConfig, Heartbeat
from .events import Event, RoomState
from .gateway import CentreStatus, GatewayStatus, GatewaySync, GatewaySyncAck, SiteSnapshot

RESERVED_DEVICE_NAMES = frozenset({"alert"})
SITE_ROOM = "_site"  # reserved room of site-level topics


class TopicKind(StrEnum):
    availability = "availability"
    heartbeat = "heartbeat"
    event = "event"
    state = "state"
    config_set = "config/set"
    config_state = "config/state"
    command = "command"
    command_response = "command/response"
    alert = "alert"
    alert_set = "alert/set"
    gateway = "gateway"
    gateway_sync = "gateway/sync"
    gateway_sync_ack = "gateway/sync/ack"
    gateway_config = "gateway/config"
    centre = "centre"


@dataclass(frozen=True)
class KindSpec:
    model: type[Message]
    retained: bool
    qos: int
    sender: str  # "device", "server" or "gateway"
    summary: str


SPEC: dict[TopicKind, KindSpec] = {
    TopicKind.availability: KindSpec(
        Availability, True, 1, "device", "online on connect, offline as last will"
    ),
    TopicKind.heartbeat: KindSpec(Heartbeat, False, 1, "device", "periodic health of the agent"),
    TopicKind.event: KindSpec(Event, False, 1, "device", "events with new/update/end phases"),
    TopicKind.state: KindSpec(RoomState, True, 1, "device", "current room state"),
    TopicKind.config_set: KindSpec(DeviceConfig, True, 1, "server", "desired device configuration"),
    TopicKind.config_state: KindSpec(
        ConfigState, True, 1, "device", "applied configuration version"
    ),
    TopicKind.command: KindSpec(Command, False, 1, "server", "request to the device"),
    TopicKind.command_response: KindSpec(
        CommandResponse, False, 1, "device", "answer with correlation id"
    ),
    TopicKind.alert: KindSpec(Alert, False, 1, "server", "alert state for staff clients"),
    TopicKind.alert_set: KindSpec(AlertAction, False, 1, "server", "staff action on an alert"),
    TopicKind.gateway: KindSpec(
        GatewayStatus, True, 1, "gateway", "gateway heartbeat and mode, offline as last will"
    ),
    TopicKind.gateway_sync: KindSpec(
        GatewaySync, False, 1, "gateway", "what happened on site while the centre was away"
    ),
    TopicKind.gateway_sync_ack: KindSpec(
        GatewaySyncAck, False, 1, "server", "the centre stored an upload (correlation id)"
    ),
    TopicKind.gateway_config: KindSpec(
        SiteSnapshot, True, 1, "server", "the site's configuration for its gateway"
    ),
    TopicKind.centre: KindSpec(
        CentreStatus, False, 1, "server", "the central alerting is alive and in charge"
    ),
}

ROOM_KINDS = frozenset({TopicKind.alert, TopicKind.alert_set})
SITE_KINDS = frozenset(
    {
        TopicKind.gateway,
        TopicKind.gateway_sync,
        TopicKind.gateway_sync_ack,
        TopicKind.gateway_config,
        TopicKind.centre,
    }
)


@dataclass(frozen=True)
class Topic:
    site: str
    room: str
    device: str | None
    kind: TopicKind

    @property
    def spec(self) -> KindSpec:
        return SPEC[self.kind]

    @property
    def model(self) -> type[BaseModel]:
        return SPEC[self.kind].model


class Topics:
    """Builds and parses topics under one root (tests use their own root)."""

    def __init__(self, root: str = "nattillsyn") -> None:
        self.root = root.strip("/")
        self._depth = len(self.root.split("/"))

    def device(self, site: str, room: str, device: str, kind: TopicKind) -> str:
        if kind in ROOM_KINDS or kind in SITE_KINDS:
            raise ValueError(f"{kind} is not a device-level topic")
        if device in RESERVED_DEVICE_NAMES:
            raise ValueError(f"device name {device!r} is reserved")
        return f"{self.root}/{site}/{room}/{device}/{kind}"

    def room(self, site: str, room: str, kind: TopicKind) -> str:
        if kind not in ROOM_KINDS:
            raise ValueError(f"{kind} is a device-level topic")
        return f"{self.root}/{site}/{room}/{kind}"

    def site(self, site: str, kind: TopicKind) -> str:
        if kind not in SITE_KINDS:
            raise ValueError(f"{kind} is not a site-level topic")
        return f"{self.root}/{site}/{SITE_ROOM}/{kind}"

    def subscription(self, kind: TopicKind, site: str = "+") -> str:
        """Wildcard filter for one kind on all rooms (and devices) of a site (or all sites)."""
        if kind in SITE_KINDS:
            return self.site(site, kind)
        if kind in ROOM_KINDS:
            return f"{self.root}/{site}/+/{kind}"
        return f"{self.root}/{site}/+/+/{kind}"

    def parse(self, topic: str) -> Topic | None:
        """The parts of a topic under this root, or None if it is not one of ours."""
        parts = topic.split("/")
        if parts[: self._depth] != self.root.split("/"):
            return None
        rest = parts[self._depth :]
        if len(rest) < 3:
            return None
        site, room = rest[0], rest[1]
        if room == SITE_ROOM and "/".join(rest[2:]) in SITE_KINDS:
            return Topic(site, room, None, TopicKind("/".join(rest[2:])))
        if rest[2] == "alert":
            kind_s, device = "/".join(rest[2:]), None
        else:
            if len(rest) < 4:
                return None
            device, kind_s = rest[2], "/".join(rest[3:])
        try:
            kind = TopicKind(kind_s)
        except ValueError:
            return None
        if kind in SITE_KINDS or (kind in ROOM_KINDS) != (device is None):
            return None
        return Topic(site, room, device, kind)
