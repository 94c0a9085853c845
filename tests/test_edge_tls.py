"""TLS with per-device credentials: the agent connects to a private Mosquitto that
requires a client certificate (the certificate's CN is the device's identity), and
a client without one is refused."""

from __future__ import annotations

import uuid

import pytest
from test_edge_agent import SyntheticSource, Watcher, edge_settings
from tls_broker import tls_mosquitto

from nattillsyn.edge.agent import EdgeAgent
from nattillsyn.mqtt import MqttClient, MqttError, TlsFiles
from nattillsyn.protocol import TopicKind


@pytest.fixture
def tls_broker(tmp_path):
    root = f"t{uuid.uuid4().hex[:10]}/nattillsyn"
    acl = {"cam-1": f"{root}/site-1/rum-1/cam-1/#", "watcher": f"{root}/#"}
    with tls_mosquitto(tmp_path / "pki", acl) as url:
        yield url, tmp_path / "pki", root


async def test_agent_with_its_own_certificate(tls_broker, tmp_path) -> None:
    url, pki, root = tls_broker
    s = edge_settings(
        url,
        root,
        tmp_path / "state",
        tls_ca_file=pki / "ca.crt",
        tls_cert_file=pki / "cam-1.crt",
        tls_key_file=pki / "cam-1.key",
    )
    agent = EdgeAgent(s, source=SyntheticSource)
    watcher = Watcher(url, root)
    watcher.client = MqttClient(
        url,
        "watcher",
        tls=TlsFiles(str(pki / "ca.crt"), str(pki / "watcher.crt"), str(pki / "watcher.key")),
    )
    async with watcher as w:
        await agent.start()
        try:
            await w.wait(lambda: w.of(TopicKind.availability), what="online over TLS")
            await w.wait(lambda: w.of(TopicKind.state), what="state over TLS")
            assert w.of(TopicKind.availability)[0]["state"] == "online"
            assert agent.mqtt.connected.is_set()
        finally:
            await agent.stop()


async def test_client_without_certificate_is_refused(tls_broker) -> None:
    url, pki, _ = tls_broker
    c = MqttClient(url, "intruder", tls=TlsFiles(ca_file=str(pki / "ca.crt")))
    with pytest.raises(MqttError):
        await c.start(timeout=3)


def test_tls_files_need_mqtts() -> None:
    with pytest.raises(ValueError):
        MqttClient("mqtt://127.0.0.1:1", "x", tls=TlsFiles(ca_file="/nope"))
