"""The shared MQTT contract: topic tree and every payload, versioned.

Nothing outside this package declares an MQTT payload. `asyncapi.yaml` beside
this file is generated from these models (`nattillsyn asyncapi --write`).
"""

from .alerts import Alert, AlertAction, AlertPriority, AlertStatus
from .base import SCHEMA_VERSION, DeviceMessage, Message, decode, encode
from .commands import Command, CommandResponse
from .device import (
    Availability,
    ConfigState,
    DeviceConfig,
    Heartbeat,
    MonitoringWindow,
    Zone,
    ZoneKind,
)
from .events import Event, EventPhase, EventType, RoomState, RoomStateName
from .gateway import (
    CentreStatus,
    GatewayMode,
    GatewayStatus,
    GatewaySync,
    GatewaySyncAck,
    SiteSnapshot,
)
from .topics import Topic, TopicKind, Topics

__all__ = [
    "SCHEMA_VERSION",
    "Alert",
    "AlertAction",
    "AlertPriority",
    "AlertStatus",
    "Availability",
    "CentreStatus",
    "Command",
    "CommandResponse",
    "ConfigState",
    "DeviceConfig",
    "DeviceMessage",
    "Event",
    "EventPhase",
    "EventType",
    "GatewayMode",
    "GatewayStatus",
    "GatewaySync",
    "GatewaySyncAck",
    "Heartbeat",
    "Message",
    "MonitoringWindow",
    "RoomState",
    "RoomStateName",
    "SiteSnapshot",
    "Topic",
    "TopicKind",
    "Topics",
    "Zone",
    "ZoneKind",
    "decode",
    "encode",
]
