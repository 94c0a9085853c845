"""The transport's values: broker URL, TLS files, last will, a received message, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

UNROUTED = 0x10
UNROUTED_TEXT = "no matching subscribers"


class MqttError(RuntimeError):
    pass


class MqttUnrouted(MqttError):
    """The broker took the message but no subscriber matched it (MQTT 5 reason 0x10)."""


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    protocol: int = paho.MQTTv5

    @property
    def v5(self) -> bool:
        return self.protocol == paho.MQTTv5

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        """`mqtt[s]://[user[:pass]@]host[:port][?protocol=5|3.1.1]`."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} in {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        proto = parse_qs(parts.query).get("protocol", ["5"])[0]
        if proto not in ("5", "3.1.1"):
            raise ValueError(f"protocol must be 5 or 3.1.1, not {proto!r}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            protocol=paho.MQTTv5 if proto == "5" else paho.MQTTv311,
        )


@dataclass(slots=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    properties: Properties | None = field(default=None, repr=False)
    # Which connection delivered it: a manual ack is only valid on that connection
    # (after a reconnect the broker redelivers unacknowledged messages itself).
    generation: int = 0
    received_at: float = 0.0  # time.time() when it was read
    dup: bool = False


@dataclass(frozen=True)
class TlsFiles:
    """Files for `mqtts://`: the CA that signed the broker's certificate and, for
    per-device credentials, the client's own certificate and key (None: system CAs,
    no client certificate)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True
