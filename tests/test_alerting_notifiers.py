"""Web Push to tablets in the background: real VAPID signing and aes128gcm encryption,
received and decrypted by a local push endpoint; and the alerting service pushing on a
new alert to the unit's subscribed tablets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from datetime import UTC, datetime

import http_ece
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from test_alerting_service import Staff

from nattillsyn.alerting.notifiers import (
    PushSubscription,
    WebPushNotifier,
    new_vapid_key,
    vapid_public_key,
)
from nattillsyn.alerting.service import AlertingService
from nattillsyn.app.demo import seed
from nattillsyn.protocol import Alert
from nattillsyn.settings.alerting import AlertingSettings


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class PushService:
    """A push service endpoint as a browser vendor runs it, on loopback."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.received: list[dict] = []
        self.status = 201

    async def start(self) -> str:
        async def push(request: web.Request) -> web.Response:
            body = await request.read()
            plain = http_ece.decrypt(
                body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
            )
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.received.append({"headers": headers, "data": json.loads(plain)})
            return web.Response(status=self.status)

        app = web.Application()
        app.router.add_post("/push/{id}", push)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/push/{uuid.uuid4().hex}"

    def subscription(self, endpoint: str) -> PushSubscription:
        pub = self.key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return PushSubscription(endpoint, b64(pub), b64(self.auth))

    async def stop(self) -> None:
        await self.runner.cleanup()


async def test_web_push_is_signed_encrypted_and_gone_endpoints_reported() -> None:
    svc = PushService()
    endpoint = await svc.start()
    try:
        key = new_vapid_key()
        assert len(vapid_public_key(key)) == 87  # 65-byte P-256 point, base64url
        notifier = WebPushNotifier(key, "mailto:drift@example.org")
        alert = Alert(
            alert_id=uuid.uuid4(), site="s", room="r", kind="possible_fall", priority="high",
            status="firing", title="Möjligt fall – Rum 1", started=datetime.now(UTC),
        )  # fmt: skip
        gone = await notifier.push(alert, [svc.subscription(endpoint)])
        assert gone == []
        got = svc.received[0]
        assert got["data"]["alert_id"] == str(alert.alert_id)
        assert got["data"]["title"] == "Möjligt fall – Rum 1"
        assert got["headers"]["content-encoding"] == "aes128gcm"
        assert got["headers"]["authorization"].startswith("vapid t=")
        assert vapid_public_key(key) in got["headers"]["authorization"]
        assert got["headers"]["urgency"] == "high" and got["headers"]["ttl"] == "300"
        svc.status = 410  # the browser unsubscribed
        assert await notifier.push(alert, [svc.subscription(endpoint)]) == [endpoint]
    finally:
        await svc.stop()


async def test_alerting_pushes_new_alerts_to_the_units_tablets(settings, pool) -> None:
    push = PushService()
    endpoint = await push.start()
    await seed(settings, ["rum-101"])
    sub = push.subscription(endpoint)
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO push_subscriptions (endpoint, site_id, p256dh, auth) VALUES (%s, %s, %s, %s)",
            (sub.endpoint, settings.site, sub.p256dh, sub.auth),
        )
    cfg = AlertingSettings.model_validate(
        settings.alerting.model_dump()
        | {"vapid_private_key": new_vapid_key(), "offline_after_s": 3600, "tick_s": 0.1}
    )
    svc = AlertingService(settings.model_copy(update={"alerting": cfg}))
    await svc.start()
    try:
        async with Staff(settings) as staff:
            await staff.fall("rum-101")
            alert = await staff.wait(lambda a: a.kind == "possible_fall")
        deadline = time.monotonic() + 10
        while not push.received:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert push.received[0]["data"]["alert_id"] == str(alert.alert_id)
    finally:
        await svc.stop()
        await push.stop()
