"""Remote control of the edge agent: its configuration (`…/config/set`, retained) and its
commands (`…/command`), each answered on the contract's topics."""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

from nattillsyn import log
from nattillsyn.mqtt import Received
from nattillsyn.protocol import (
    Command,
    CommandResponse,
    ConfigState,
    DeviceConfig,
    TopicKind,
    decode,
)

logger = log.get(__name__)


class RemoteControl:
    """Part of `agent.EdgeAgent`: a new configuration is kept on disk and applied between two
    frames without a restart (a new frame rate reopens the source); commands answer with
    their correlation id."""

    async def _control(self) -> None:
        async for msg in self.mqtt.messages():
            try:
                if msg.topic == self._topic(TopicKind.config_set):
                    await self._apply_config(msg)
                elif msg.topic == self._topic(TopicKind.command):
                    await self._command(decode(Command, msg.payload))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("control message refused", topic=msg.topic, error=str(exc))

    async def _apply_config(self, msg: Received) -> None:
        if not msg.payload:
            return  # retained config cleared
        try:
            cfg = decode(DeviceConfig, msg.payload)
            ZoneInfo(cfg.timezone)
        except Exception as exc:
            await self._send_live(
                TopicKind.config_state,
                ConfigState(**self._ids(), version=self.config_version, error=str(exc)[:500]),
                retain=True,
            )
            return
        old = self.config
        self.config = cfg
        self.config_version = cfg.version
        await asyncio.to_thread(self.store.set, "config", cfg.model_dump_json())
        if old is not None and old.fps != cfg.fps and self.monitoring:
            await self._start_analysis()  # a new frame rate needs a new source
        else:
            self.worker.apply(cfg)  # picked up between two frames
        await self._gate()
        await self._send_live(
            TopicKind.config_state, ConfigState(**self._ids(), version=cfg.version), retain=True
        )
        self._beat_now.set()
        logger.info("config applied", version=cfg.version, monitoring=self.monitoring)

    async def _zone_map(self) -> dict:
        if not self.monitoring or self.worker.analysis is None:
            raise RuntimeError("monitoring is paused: the camera is closed")
        return await self.worker.zone_map()

    async def _command(self, cmd: Command) -> None:
        ok, result, error = True, {}, None
        try:
            if cmd.command == "ping":
                result = {"uptime_s": round(self.clock.monotonic() - self._started_at, 1)}
            elif cmd.command == "publish_state":
                await self._publish_state()
            elif cmd.command == "restart":
                if self.monitoring:
                    await self._start_analysis()
                result = {"monitoring": self.monitoring}
            elif cmd.command == "zone_map":
                result = await self._zone_map()
            else:
                ok, error = False, f"command {cmd.command!r} not supported"
        except (RuntimeError, TimeoutError) as exc:
            ok, error = False, str(exc) or "timed out"
        await self._send_live(
            TopicKind.command_response,
            CommandResponse(
                **self._ids(),
                correlation_id=cmd.correlation_id,
                ok=ok,
                result=result if ok else {},
                error=error,
            ),
        )
