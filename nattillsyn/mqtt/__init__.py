"""The MQTT transport: the only package that imports paho (docs/mqtt.md).

`connection` drives paho from the asyncio event loop, `client` adds publishing,
subscribing and receiving, `fastpath` is the isolated fast reader, `types` the values.
"""

from nattillsyn.mqtt.client import MqttClient
from nattillsyn.mqtt.connection import CONNECTS, PROTOCOL_ERRORS
from nattillsyn.mqtt.types import (
    UNROUTED,
    UNROUTED_TEXT,
    MqttError,
    MqttUnrouted,
    MqttUrl,
    Received,
    TlsFiles,
    Will,
)

__all__ = [
    "CONNECTS",
    "PROTOCOL_ERRORS",
    "UNROUTED",
    "UNROUTED_TEXT",
    "MqttClient",
    "MqttError",
    "MqttUnrouted",
    "MqttUrl",
    "Received",
    "TlsFiles",
    "Will",
]
