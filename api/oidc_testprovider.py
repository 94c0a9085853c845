"""Runs the test OpenID Provider (`tests/oidc/provider.mjs`, panva's oidc-provider on Node).

For the test suite and `nattillsyn demo --sso` only: test users sign in with any password.
`./dev test` installs its npm packages into `tests/oidc/node_modules` (gitignored).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

DIR = Path(__file__).resolve().parents[1] / "tests" / "oidc"
SCRIPT = DIR / "provider.mjs"
INSTALL_ERROR = DIR / "node_modules" / ".install-error"
CLIENT_ID = "nattillsyn"
CLIENT_SECRET = "test-secret"
HSA_UNIT = "SE2321000016-NT01"
# Settings mapping the test provider's groups and unit to nattillsyn (demo and tests).
ROLE_MAP = {
    "nattillsyn-nattpersonal": "night_staff",
    "nattillsyn-enhetschef": "unit_manager",
    "nattillsyn-utvardering": "evaluator",
    "nattillsyn-it": "sysadmin",
}


def unavailable() -> str | None:
    """Why the provider cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not (DIR / "node_modules" / "oidc-provider").is_dir():
        why = INSTALL_ERROR.read_text().strip() if INSTALL_ERROR.exists() else ""
        return (
            f"oidc-provider is not installed in {DIR}/node_modules (./dev test runs npm ci) {why}"
        )
    return None


def oidc_settings(issuer: str, site: str = "site-1", **extra) -> dict:
    return {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": ["openid", "profile", "email", "groups"],
        "display_name": "Testkommunens konto",
        "role_map": ROLE_MAP,
        "unit_map": {HSA_UNIT: site},
        "active_claim": "nattillsyn_active",
    } | extra


class TestProvider:
    """The Node process; `control()` reaches its /__test/ endpoints."""

    __test__ = False  # not a pytest class

    def __init__(self, port: int = 0, redirect_uris: list[str] = (), post_logout: list[str] = ()):
        why = unavailable()
        if why:
            raise RuntimeError(why)
        cmd = ["node", str(SCRIPT), "--port", str(port)]
        cmd += [a for u in redirect_uris for a in ("--redirect-uri", u)]
        cmd += [a for u in post_logout for a in ("--post-logout-redirect-uri", u)]
        self.proc = subprocess.Popen(
            cmd, cwd=DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(30)
        if not line or not line[0].strip():
            self.stop()
            raise RuntimeError(
                f"the test provider did not start: {self.proc.stderr.read()[-2000:]}"
            )
        self.issuer: str = json.loads(line[0])["issuer"]
        # Keep draining stderr so the process never blocks on a full pipe.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def control(self, what: str, **params) -> dict:
        query = urlencode(
            [(k, x) for k, v in params.items() for x in (v if isinstance(v, list) else [v])]
        )
        req = urllib.request.Request(f"{self.issuer}/__test/{what}?{query}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
