"""Pluggable notifiers beyond the tablets' live connection.

- `WebhookNotifier`: an external step of the escalation (`notifier:webhook`), e.g. an
  SMS or phone gateway: the alert is POSTed as JSON, signed with HMAC-SHA256.
- `WebPushNotifier`: Web Push (RFC 8030 + VAPID, via pywebpush) to the tablets of the
  unit or group, so an alert reaches a page in the background or a sleeping screen.
- `LogNotifier`: when nothing is configured, say so loudly in the log.

A notifier failure never stops alerting: it is logged, counted and written to the
alert's history.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client import Counter
from psycopg import AsyncConnection
from py_vapid import Vapid  # part of pywebpush's dependencies
from pywebpush import WebPushException, webpush

from nattillsyn import log
from nattillsyn.protocol import Alert

logger = log.get(__name__)

SENT = Counter("nattillsyn_alerting_notifications_total", "Notifications sent", ["notifier"])
FAILED = Counter("nattillsyn_alerting_notification_failures_total", "Failures", ["notifier"])


class Notifier(Protocol):
    name: str

    async def send(self, alert: Alert, target: str) -> None: ...

    async def close(self) -> None: ...


def body(alert: Alert, target: str) -> dict:
    return {
        "target": target,
        "text": alert.title,
        "priority": alert.priority.value,
        "practice": alert.practice,
        "alert": alert.model_dump(mode="json", exclude_none=True),
    }


class WebhookNotifier:
    name = "webhook"

    def __init__(
        self, url: str, secret: str | None = None, timeout_s: float = 5.0, retries: int = 3
    ) -> None:
        self.url = url
        self.secret = secret.encode() if secret else None
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.retries = retries
        self._session: aiohttp.ClientSession | None = None

    async def send(self, alert: Alert, target: str) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        data = json.dumps(body(alert, target)).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(alert.alert_id)}
        if self.secret:
            sig = hmac.new(self.secret, data, hashlib.sha256).hexdigest()
            headers["X-Nattillsyn-Signature"] = f"sha256={sig}"
        delay = 0.5
        for attempt in range(1, self.retries + 1):
            try:
                async with self._session.post(self.url, data=data, headers=headers) as resp:
                    if resp.status < 300:
                        SENT.labels(self.name).inc()
                        return
                    error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = str(exc) or type(exc).__name__
            if attempt < self.retries:
                await asyncio.sleep(delay)
                delay *= 2
        FAILED.labels(self.name).inc()
        raise RuntimeError(f"webhook failed after {self.retries} attempts: {error}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class LogNotifier:
    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, alert: Alert, target: str) -> None:
        logger.error(
            "escalation reached a notifier that is not configured",
            notifier=self.name,
            alert=str(alert.alert_id),
            title=alert.title,
        )

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class PushSubscription:
    endpoint: str
    p256dh: str
    auth: str


async def push_subscriptions(
    conn: AsyncConnection, site: str, groups: list[str]
) -> list[PushSubscription]:
    """The live subscriptions of the site's tablets and of tablets in `groups`."""
    cur = await conn.execute(
        """SELECT p.endpoint, p.p256dh, p.auth FROM push_subscriptions p
           LEFT JOIN tablets t ON t.id = p.tablet_id
           WHERE p.failed_at IS NULL AND (t.revoked_at IS NULL)
             AND (p.site_id = %s OR (t.groups && %s::text[]))""",
        (site, groups),
    )
    return [PushSubscription(*r) for r in await cur.fetchall()]


async def forget_subscriptions(conn: AsyncConnection, endpoints: list[str]) -> None:
    """Subscriptions the push service says are gone are not tried again."""
    await conn.execute(
        "UPDATE push_subscriptions SET failed_at = now() WHERE endpoint = ANY(%s)", (endpoints,)
    )


class WebPushNotifier:
    """Sends a small payload (title, room, priority, alert id) to each subscription."""

    name = "webpush"

    def __init__(self, private_key: str, subject: str, ttl_s: int = 300) -> None:
        key = private_key.strip()
        self.vapid = Vapid.from_pem(key.encode()) if "BEGIN" in key else Vapid.from_string(key)
        self.subject = subject
        self.ttl = ttl_s

    def _send_one(self, sub: PushSubscription, data: str) -> int:
        try:
            resp = webpush(
                {"endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}},
                data=data,
                vapid_private_key=self.vapid,
                vapid_claims={"sub": self.subject},
                ttl=self.ttl,
                timeout=5,
                headers={"Urgency": "high"},
            )
            return resp.status_code
        except WebPushException as exc:
            return exc.response.status_code if exc.response is not None else 0

    async def push(self, alert: Alert, subs: list[PushSubscription]) -> list[str]:
        """Send to every subscription; returns the endpoints that are gone (404/410)."""
        data = json.dumps(
            {
                "alert_id": str(alert.alert_id),
                "title": alert.title,
                "priority": alert.priority.value,
                "status": alert.status.value,
                "practice": alert.practice,
                "room": alert.room,
                "site": alert.site,
            }
        )
        gone = []
        results = await asyncio.gather(
            *(asyncio.to_thread(self._send_one, s, data) for s in subs), return_exceptions=True
        )
        for sub, status in zip(subs, results, strict=True):
            if isinstance(status, BaseException) or not (200 <= status < 300):
                FAILED.labels(self.name).inc()
                logger.warning("web push failed", endpoint=sub.endpoint[:60], status=str(status))
                if status in (404, 410):
                    gone.append(sub.endpoint)
            else:
                SENT.labels(self.name).inc()
        return gone


def vapid_public_key(private_key: str) -> str:
    """The application server key a browser subscribes with (base64url, uncompressed point)."""
    key = private_key.strip()
    v = Vapid.from_pem(key.encode()) if "BEGIN" in key else Vapid.from_string(key)
    raw = v.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_vapid_key() -> str:
    """A fresh VAPID private key as PEM."""
    v = Vapid()
    v.generate_keys()
    return v.private_pem().decode()
