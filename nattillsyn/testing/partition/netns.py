"""Network namespaces for the partition: centre, site and reference joined by veth pairs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from nattillsyn.app.embedded import find_pg_bin


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    name = f"ntprobe{os.getpid() % 100000}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` failed: {getattr(exc, 'stderr', b'') or exc}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    if find_pg_bin() is None:
        return "no PostgreSQL server binaries"
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        return "no mosquitto binary"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=15)


class Topology:
    """centre, site and reference namespaces; one veth pair from the centre to each site."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.centre, self.site, self.ref = f"ntc{tag}", f"nts{tag}", f"ntr{tag}"
        n = int(tag[:2], 16) % 200 + 20  # one /24 per run, so runs never collide
        self.net = n
        self.links = {
            "site": (f"vc{tag}s", f"vs{tag}", f"10.231.{n}.1", f"10.231.{n}.2"),
            "ref": (f"vc{tag}r", f"vr{tag}", f"10.232.{n}.1", f"10.232.{n}.2"),
        }
        self.created: list[str] = []

    def __enter__(self) -> Topology:
        try:
            for ns in (self.centre, self.site, self.ref):
                _ip("netns", "add", ns)
                self.created.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            for key, ns in (("site", self.site), ("ref", self.ref)):
                c_if, s_if, c_ip, s_ip = self.links[key]
                _ip("link", "add", c_if, "netns", self.centre, "type", "veth", "peer", "name",
                    s_if, "netns", ns)  # fmt: skip
                _ip("-n", self.centre, "addr", "add", f"{c_ip}/24", "dev", c_if)
                _ip("-n", ns, "addr", "add", f"{s_ip}/24", "dev", s_if)
                _ip("-n", self.centre, "link", "set", c_if, "up")
                _ip("-n", ns, "link", "set", s_if, "up")
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def centre_ip(self, key: str) -> str:
        return self.links[key][2]

    def cut(self, how: str) -> None:
        for key, ns in (("site", self.site), ("ref", self.ref)):
            c_if, s_if, _, _ = self.links[key]
            if how == "drop":
                for n in (ns, self.centre):
                    subprocess.run(["ip", "netns", "exec", n, "nft", "-f", "-"], check=True,
                                   input=_NFT_DROP, text=True, capture_output=True)  # fmt: skip
            else:
                _ip("-n", ns, "link", "set", s_if, "down")
                _ip("-n", self.centre, "link", "set", c_if, "down")

    def restore(self, how: str) -> None:
        for key, ns in (("site", self.site), ("ref", self.ref)):
            c_if, s_if, _, _ = self.links[key]
            if how == "drop":
                for n in (ns, self.centre):
                    subprocess.run(["ip", "netns", "exec", n, "nft", "delete", "table", "inet",
                                    "ntpartition"], capture_output=True)  # fmt: skip
            else:
                _ip("-n", ns, "link", "set", s_if, "up")
                _ip("-n", self.centre, "link", "set", c_if, "up")

    def kill_all(self) -> None:
        """Every process still inside our namespaces (servers orphaned by a crash too)."""
        for ns in self.created:
            out = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in out:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)

    def __exit__(self, *exc: object) -> None:
        self.kill_all()
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)  # takes its end of each veth pair along
        self.created.clear()


_NFT_DROP = """table inet ntpartition {
  chain input { type filter hook input priority 0; iifname != "lo" drop; }
  chain output { type filter hook output priority 0; oifname != "lo" drop; }
}
"""
