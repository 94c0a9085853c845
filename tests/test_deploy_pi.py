"""The Raspberry Pi install script, run into a staging root (`--root`): no apt, no systemctl.

pip really installs this checkout into the staged venv (without dependencies, to keep the
test quick and offline-tolerant); the staged units then pass `systemd-analyze verify`
against the staged tree, so ExecStart points at the program the script installed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "deploy" / "pi" / "install.sh"


def _install(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PIP_NO_DEPS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(
        ["sh", str(INSTALL), *args, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_install_script_is_valid_shell():
    assert subprocess.run(["sh", "-n", str(INSTALL)]).returncode == 0
    if shutil.which("shellcheck"):
        res = subprocess.run(["shellcheck", "-s", "sh", str(INSTALL)], capture_output=True)
        assert res.returncode == 0, res.stdout.decode()


@pytest.mark.parametrize(
    "args,error",
    [
        ((), "usage"),
        (("camera",), "usage"),
        (("edge", "--claim", "ABC"), "--claim needs --api"),
        (("gateway",), "gateway needs --site"),
        (("gateway", "--site", "a b"), "invalid site"),
        (("edge", "--ca", "/nonexistent.crt"), "no such CA"),
    ],
)
def test_install_script_refuses_bad_arguments(tmp_path: Path, args, error):
    res = subprocess.run(
        ["sh", str(INSTALL), *args, "--root", str(tmp_path)] if args else ["sh", str(INSTALL)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and error in res.stderr


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pi")
    ca = root.parent / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nstaged\n-----END CERTIFICATE-----\n")
    res = _install(root, "edge", "--ca", str(ca))
    assert res.returncode == 0, res.stdout + res.stderr
    res = _install(root, "gateway", "--site", "solgarden")
    assert res.returncode == 0, res.stdout + res.stderr
    return root


def test_install_stages_program_units_account_and_private_settings(staged: Path):
    assert os.access(staged / "opt/nattillsyn/venv/bin/nattillsyn", os.X_OK)
    site = next((staged / "opt/nattillsyn/venv/lib").glob("python3*/site-packages"))
    assert (site / "nattillsyn" / "edge").is_dir()  # package-dir mapping survived the install
    for unit in ("nattillsyn-edge.service", "nattillsyn-gateway.service"):
        staged_unit = staged / "etc/systemd/system" / unit
        assert staged_unit.read_text() == (ROOT / "deploy/systemd" / unit).read_text()
    assert (staged / "usr/lib/sysusers.d/nattillsyn.conf").exists()
    assert (staged / "usr/local/share/ca-certificates/nattillsyn-ca.crt").exists()
    etc = staged / "etc/nattillsyn"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o700
    for name in ("edge.toml", "gateway.toml"):
        assert stat.S_IMODE((etc / name).stat().st_mode) == 0o600


def test_gateway_gets_a_locked_site_broker_and_its_own_account(staged: Path):
    conf = (staged / "etc/mosquitto/conf.d/nattillsyn.conf").read_text()
    assert "allow_anonymous false" in conf and "max_queued_messages 1000000" in conf
    passwd = (staged / "etc/mosquitto/nattillsyn/passwd").read_text().splitlines()
    assert len(passwd) == 1 and passwd[0].startswith("gw-local:$7$101$")
    settings = (staged / "etc/nattillsyn/gateway.toml").read_text()
    assert 'site = "solgarden"' in settings and "mqtt://gw-local:" in settings
    assert stat.S_IMODE((staged / "etc/mosquitto/nattillsyn/passwd").stat().st_mode) == 0o640


def test_reinstall_keeps_settings(staged: Path):
    before = (staged / "etc/nattillsyn/gateway.toml").read_text()
    res = _install(staged, "gateway", "--site", "solgarden")
    assert res.returncode == 0, res.stderr
    assert (staged / "etc/nattillsyn/gateway.toml").read_text() == before
    assert len((staged / "etc/mosquitto/nattillsyn/passwd").read_text().splitlines()) == 1


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_staged_units_verify_against_the_installed_program(staged: Path):
    system = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")))
    target = staged / "usr/lib/systemd/system"
    if not target.exists():
        shutil.copytree(system, target, symlinks=True)
    for unit in ("nattillsyn-edge.service", "nattillsyn-gateway.service"):
        res = subprocess.run(
            ["systemd-analyze", "verify", f"--root={staged}", "--man=no", unit],
            capture_output=True,
            text=True,
        )
        ours = [ln for ln in (res.stdout + res.stderr).splitlines() if "nattillsyn" in ln]
        assert res.returncode == 0 and not ours, res.stdout + res.stderr
