"""A private Mosquitto over TLS that wants a client certificate (its CN is the user), with a
throw-away PKI: for the tests of the edge agent's and the gateway's TLS links."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nattillsyn.app.embedded import free_port, stop_group, wait_port

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


@contextmanager
def tls_mosquitto(d: Path, acl: dict[str, str]) -> Iterator[str]:
    """A broker for the users of `acl` (user → the topic pattern it may read and write),
    each with a certificate in `d` (`<user>.crt`, `<user>.key`, the CA `ca.crt`); yields
    its URL. Skips the test without openssl or mosquitto."""
    if OPENSSL is None or not Path(MOSQUITTO).exists():
        pytest.skip("openssl and mosquitto are needed for the TLS test")
    d.mkdir()
    make_pki(d, list(acl))
    port = free_port()
    (d / "acl").write_text("\n".join(f"user {u}\ntopic readwrite {t}\n" for u, t in acl.items()))
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
        yield f"mqtts://127.0.0.1:{port}"
    finally:
        stop_group(proc, signal.SIGTERM, 10)
