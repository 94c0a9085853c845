"""TLS with per-device credentials: the agent connects to a private Mosquitto that
requires a client certificate (the certificate's CN is the device's identity), and
a client without one is refused."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_edge_agent import SyntheticSource, Watcher, edge_settings

from nattillsyn.app.embedded import free_port, wait_port
from nattillsyn.edge.agent import EdgeAgent
from nattillsyn.mqtt import MqttClient, MqttError, TlsFiles
from nattillsyn.protocol import TopicKind

OPENSSL = shutil.which("openssl")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _ssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path, clients: list[str]) -> None:
    _ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key",
         "-out", "ca.crt", "-subj", "/CN=nattillsyn test CA", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in [("server", True)] + [(c, False) for c in clients]:
        cn = "127.0.0.1" if name == "server" else name
        _ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)  # fmt: skip
        _ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
             *(["-extfile", "san.ext"] if ext else []), cwd=d)  # fmt: skip


@contextlib.contextmanager
def tls_mosquitto(tmp_path: Path, users: dict[str, str]) -> Iterator[tuple[str, Path, str]]:
    """A private Mosquitto that wants a client certificate (its CN is the user name):
    `users` maps each user to the topic filter under the test's root it may use.
    Yields (url, PKI folder with ca/<user> .crt/.key, topic root)."""
    if OPENSSL is None or not Path(MOSQUITTO).exists():
        pytest.skip("openssl and mosquitto are needed for the TLS test")
    d = tmp_path / "pki"
    d.mkdir()
    make_pki(d, list(users))
    port = free_port()
    root = f"t{uuid.uuid4().hex[:10]}/nattillsyn"
    (d / "acl").write_text(
        "\n".join(f"user {u}\ntopic readwrite {root}/{t}\n" for u, t in users.items())
    )
    conf = d / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
        "require_certificate true\nuse_identity_as_username true\n"
        f"acl_file {d}/acl\npersistence false\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_port("127.0.0.1", port, 10, proc)
        yield f"mqtts://127.0.0.1:{port}", d, root
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.fixture
def tls_broker(tmp_path):
    with tls_mosquitto(tmp_path, {"cam-1": "site-1/rum-1/cam-1/#", "watcher": "#"}) as broker:
        yield broker


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
