"""The central compose stack: valid without an engine, complete, and its parts run for real.

`docker-compose config -q` (Debian's docker-compose, installed by ./dev test as root)
checks the file. The broker config, certificates, generated secrets, Prometheus targets,
Grafana dashboards and the database roles are checked against the real programs they
configure: a real Mosquitto with TLS, a real PostgreSQL, the services' real metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from mqtt_wire import connack_reason
from prometheus_client import REGISTRY

# The services register their metrics on import (_exposed_metric_names reads the registry).
import nattillsyn.alerting.service  # noqa: F401
import nattillsyn.api.app  # noqa: F401
import nattillsyn.api.live  # noqa: F401
import nattillsyn.gateway.service  # noqa: F401
import nattillsyn.ingest.service  # noqa: F401
from nattillsyn.alerting.notifiers import vapid_public_key
from nattillsyn.app.embedded import PrivatePostgres, free_port, wait_port
from nattillsyn.db.migrate import migrate
from nattillsyn.settings import load

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
CERTS = DEPLOY / "certs" / "nattillsyn-certs"
PROJECT_BROKER_CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
STACK_BROKER_CONF = COMPOSE_DIR / "mosquitto" / "mosquitto.conf"
SERVICES = ("ingest", "alerting", "api")
# Broker directives that belong to where the broker runs, not to the project's policy.
PLACE_DIRECTIVES = {
    "listener",
    "protocol",
    "certfile",
    "keyfile",
    "cafile",
    "capath",
    "tls_version",
    "require_certificate",
    "use_identity_as_username",
    "password_file",
    "acl_file",
    "pid_file",
    "persistence_location",
    "log_dest",
    "user",
    "include_dir",
}


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def directives(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition(" ")
            out.append((key, value.strip()))
    return out


# -- the compose file ----------------------------------------------------------------


def test_compose_file_validates_with_docker_compose():
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip(
            "Debian's docker-compose is not installed (./dev test installs it when run as root)"
        )
    res = subprocess.run(
        [exe, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=COMPOSE_DIR,
    )
    assert res.returncode == 0, res.stderr
    # And the fully resolved file has every service with its anchors merged.
    res = subprocess.run(
        [exe, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    resolved = yaml.safe_load(res.stdout)
    for svc in SERVICES:
        assert resolved["services"][svc]["read_only"] is True
        assert resolved["services"][svc]["environment"]["NATTILLSYN_METRICS_HOST"] == "0.0.0.0"


def test_stack_has_every_component_on_official_images():
    services = compose()["services"]
    images = {name: s.get("image", "") for name, s in services.items()}
    assert images["db"].startswith("timescale/timescaledb:")
    assert images["mosquitto"].startswith("eclipse-mosquitto:2")
    assert images["prometheus"].startswith("prom/prometheus:")
    assert images["grafana"].startswith("grafana/grafana")
    for svc in (*SERVICES, "migrate", "mqtt-auth"):
        assert services[svc]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["ingest"]["command"] == ["ingest"]
    assert services["migrate"]["command"] == ["db", "migrate"]
    # Pinned versions: an upgrade is a reviewed change, not whatever `latest` is today.
    for name, image in images.items():
        if not image.startswith("${"):
            assert ":" in image and not image.endswith(":latest"), name


def test_no_secret_is_written_into_the_stack():
    text = COMPOSE.read_text()
    data = compose()
    for name, svc in data["services"].items():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if re.search("PASS|SECRET|TOKEN", key):
                assert key.endswith("_FILE"), f"{name}: {key} must point at a secret file"
            assert "://" not in str(value) or "@" not in str(value), f"{name}: {key}"
    for secret in data["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert "BEGIN" not in text
    ignored = (COMPOSE_DIR / ".gitignore").read_text().split()
    assert {"/secrets/", "/certs/", "/backups/"} <= set(ignored)
    tracked = subprocess.run(
        ["git", "ls-files", "deploy"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    for path in tracked:
        body = (ROOT / path).read_text(errors="replace")
        assert "PRIVATE KEY-----" not in body, path


def test_prometheus_scrapes_every_service_on_its_metrics_port():
    services = compose()["services"]
    prom = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    for svc in SERVICES:
        env = services[svc]["environment"]
        if svc == "api":
            port = env["NATTILLSYN_API__PORT"]
            assert jobs[svc].get("metrics_path") == "/metrics"
        else:
            port = env[f"NATTILLSYN_{svc.upper()}__METRICS_PORT"]
        assert str(port) in services[svc]["expose"]
        targets = [t for sc in jobs[svc]["static_configs"] for t in sc["targets"]]
        assert targets == [f"{svc}:{port}"]
    assert "postgres" in jobs
    assert (COMPOSE_DIR / "prometheus" / "rules.yml").exists()


def test_service_settings_of_the_stack_are_valid(monkeypatch):
    """The environment compose gives each service loads as nattillsyn settings."""
    services = compose()["services"]
    for svc in SERVICES:
        env = {
            k: str(v)
            for k, v in services[svc]["environment"].items()
            if k.startswith("NATTILLSYN_") and k != "NATTILLSYN_CONFIG" and "${" not in str(v)
        }
        for key in list(os.environ):
            if key.startswith("NATTILLSYN_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load()
        assert settings.metrics_host == "0.0.0.0"


# -- the broker ----------------------------------------------------------------------


def test_stack_broker_keeps_the_projects_queue_policy():
    """Queue limits and session expiry come from deploy/mosquitto/mosquitto.conf."""
    policy = {(k, v) for k, v in directives(PROJECT_BROKER_CONF) if k not in PLACE_DIRECTIVES}
    stack = set(directives(STACK_BROKER_CONF))
    missing = sorted(policy - stack)
    assert not missing, f"{STACK_BROKER_CONF.name} lacks the project's {missing}"
    keys = dict(directives(STACK_BROKER_CONF))
    assert int(keys["max_queued_messages"]) >= 100_000  # the default 1000 drops QoS 1
    assert keys["allow_anonymous"] == "false"


def _run_certs(*args: str, certs: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(CERTS), "-d", str(certs), *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")
    for args in (
        ("ca",),
        ("server", "localhost", "127.0.0.1"),
        ("device", "solgarden", "edge-101"),
        ("gateway", "solgarden"),
    ):
        res = _run_certs(*args, certs=d)
        assert res.returncode == 0, res.stderr
        assert "PRIVATE KEY" not in res.stdout + res.stderr
    return d


def test_certificates_chain_to_the_installation_ca(certs: Path):
    ca = certs / "ca" / "ca.crt"
    leaves = [
        certs / "broker" / "server.crt",
        certs / "devices" / "solgarden" / "edge-101" / "client.crt",
        certs / "gateways" / "solgarden" / "client.crt",
    ]
    res = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), *map(str, leaves)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for key in certs.rglob("*.key"):
        assert key.stat().st_mode & 0o077 == 0, f"{key} is readable by others"
    shown = _run_certs("show", str(leaves[1]), certs=certs).stdout
    assert "CN = dev-solgarden-edge-101" in shown and "Client Authentication" in shown
    shown = _run_certs("show", str(leaves[0]), certs=certs).stdout
    assert "DNS:localhost" in shown and "IP Address:127.0.0.1" in shown


def test_certificate_script_refuses_bad_input(certs: Path):
    assert _run_certs("device", "site one", "x", certs=certs).returncode == 2
    assert _run_certs("device", "../etc", "x", certs=certs).returncode == 2
    assert _run_certs("ca", certs=certs).returncode == 2  # never overwrites a CA
    assert _run_certs("server", certs=certs / "nowhere").returncode == 2


class StackBroker:
    """The stack's mosquitto.conf on a real Mosquitto: paths and ports moved to a folder."""

    def __init__(self, folder: Path, auth: Path, certs: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        (folder / "data").mkdir(exist_ok=True)
        self.plain, self.tls = free_port(), free_port()
        conf = STACK_BROKER_CONF.read_text()
        conf = conf.replace("listener 1883 0.0.0.0", f"listener {self.plain} 127.0.0.1")
        conf = conf.replace("listener 8883 0.0.0.0", f"listener {self.tls} 127.0.0.1")
        conf = conf.replace("/mosquitto/auth/", f"{auth}/")
        conf = conf.replace("/mosquitto/data/", f"{folder}/data/")
        conf = conf.replace("/mosquitto/certs/", f"{certs}/broker/")
        if os.geteuid() == 0:
            conf += "\nuser root\n"
        (folder / "mosquitto.conf").write_text(conf)
        self.log = open(folder / "log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, "-c", str(folder / "mosquitto.conf")], stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            wait_port("127.0.0.1", self.tls, 10, self.proc)
            wait_port("127.0.0.1", self.plain, 10, self.proc)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def _needs_mosquitto() -> None:
    if shutil.which("mosquitto_passwd") is None or not (
        shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()
    ):
        pytest.skip("Debian's mosquitto (with mosquitto_passwd) is not installed")


@pytest.fixture(scope="module")
def stack_broker(certs: Path, tmp_path_factory):
    _needs_mosquitto()
    d = tmp_path_factory.mktemp("broker")
    auth = d / "auth"
    auth.mkdir()
    password = uuid.uuid4().hex
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(auth / "passwd"), "svc-ingest", password], check=True
    )
    (auth / "acl").write_text("user svc-ingest\ntopic readwrite nattillsyn/#\n")
    broker = StackBroker(d, auth, certs)
    try:
        yield {
            "plain": broker.plain,
            "tls": broker.tls,
            "password": password,
            "certs": certs,
            "dir": d,
        }
    finally:
        broker.stop()


def _connect(port: int, *, user=None, password=None, ca: Path | None = None) -> int | str:
    """CONNACK reason of one connection attempt (0 = accepted), or the TLS error."""
    return connack_reason(port, user=user, password=password, ca=ca)


def test_stack_broker_serves_tls_with_generated_passwords(stack_broker):
    b = stack_broker
    ca = b["certs"] / "broker" / "ca.crt"
    assert _connect(b["tls"], user="svc-ingest", password=b["password"], ca=ca) == 0
    assert _connect(b["plain"], user="svc-ingest", password=b["password"]) == 0
    # Wrong password, anonymous: refused (5 = not authorized / 135 in MQTT 5).
    assert _connect(b["tls"], user="svc-ingest", password="wrong", ca=ca) not in (0, "no CONNACK")
    assert _connect(b["plain"]) not in (0, "no CONNACK")


def test_stack_broker_certificate_is_verified_by_clients(stack_broker, tmp_path):
    b = stack_broker
    other = tmp_path / "other"
    assert _run_certs("ca", certs=other).returncode == 0
    # A client trusting another CA refuses the broker (no man in the middle).
    assert _connect(
        b["tls"], user="svc-ingest", password=b["password"], ca=other / "ca" / "ca.crt"
    ) in ("SSLCertVerificationError", "SSLError")


def test_first_boot_job_gives_the_services_broker_accounts(settings, certs, tmp_path):
    """deploy/compose/mqtt-accounts.py: service accounts in the database, then the broker's
    passwd/acl written by the project's own `nattillsyn mqtt-auth`, accepted by Mosquitto."""
    _needs_mosquitto()
    secrets, auth = tmp_path / "mqtt_services", tmp_path / "auth"
    pw = uuid.uuid4().hex
    secrets.write_text(f"svc-ingest {pw}\nsvc-alerting {uuid.uuid4().hex}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATTILLSYN_")}
    env |= {
        "NATTILLSYN_DATABASE_URL": settings.database_url,
        "NATTILLSYN_DATABASE_SCHEMA": settings.database_schema,
        "NATTILLSYN_TOPIC_ROOT": settings.topic_root,
    }

    def job() -> subprocess.CompletedProcess:
        res = subprocess.run(
            [sys.executable, str(COMPOSE_DIR / "mqtt-accounts.py"), str(secrets), str(auth)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert pw not in res.stdout + res.stderr
        return res

    job()
    passwd = (auth / "passwd").read_text()
    assert passwd.startswith("svc-") and "svc-ingest:$7$" in passwd
    assert f"topic readwrite {settings.topic_root}/#" in (auth / "acl").read_text()
    job()  # idempotent: a password that did not change keeps its hash
    assert (auth / "passwd").read_text() == passwd
    broker = StackBroker(tmp_path, auth, certs)
    try:
        assert _connect(broker.plain, user="svc-ingest", password=pw) == 0
        assert _connect(broker.plain, user="svc-ingest", password="wrong") != 0
    finally:
        broker.stop()


# -- secrets ---------------------------------------------------------------------------


def test_init_secrets_makes_valid_settings_once(tmp_path: Path):
    out = tmp_path / "secrets"
    first = subprocess.run(
        ["sh", str(COMPOSE_DIR / "init-secrets"), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert first.returncode == 0, first.stderr
    declared = {Path(s["file"]).name for s in compose()["secrets"].values()}
    assert declared <= {p.name for p in out.iterdir()}
    assert out.stat().st_mode & 0o077 == 0
    pw = (out / "db_app_password").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{48}", pw)
    secrets = [p.read_text().strip() for p in out.iterdir() if p.name.endswith("_password")]
    assert len(set(secrets)) == len(secrets)
    for value in secrets:
        assert value not in first.stdout + first.stderr
    for svc in SERVICES:
        s = load(out / f"{svc}.toml")
        assert s.database_url and pw in s.database_url and s.mqtt_url.startswith("mqtt://svc-")
    # Web Push: alerting signs with the key, the api derives the public half for tablets.
    alerting, api = load(out / "alerting.toml"), load(out / "api.toml")
    key = alerting.alerting.vapid_private_key.get_secret_value()
    assert api.alerting.vapid_private_key.get_secret_value() == key
    assert len(vapid_public_key(key)) == 87  # base64url of a 65-byte uncompressed P-256 point
    assert load(out / "ingest.toml").alerting.vapid_private_key is None
    assert "PRIVATE KEY" not in first.stdout + first.stderr
    users = [ln.split()[0] for ln in (out / "mqtt_services").read_text().splitlines()]
    assert users == ["svc-ingest", "svc-alerting", "svc-api"]
    again = subprocess.run(
        ["sh", str(COMPOSE_DIR / "init-secrets"), str(out)], capture_output=True, text=True
    )
    assert again.returncode == 0 and "already exist" in again.stdout
    assert (out / "db_app_password").read_text().strip() == pw


def test_settings_errors_do_not_print_urls_with_passwords(tmp_path: Path):
    secret = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATTILLSYN_")}
    env |= {
        "NATTILLSYN_DATABASE_URL": f"postgresql://nattillsyn:{secret}@127.0.0.1:1/x",
        "NATTILLSYN_MQTT_URL": f"mqtt://svc-ingest:{secret}@127.0.0.1:1",
        "NATTILLSYN_INGEST__BATCH_SIZE": "0",
    }
    res = subprocess.run(
        [sys.executable, "-m", "nattillsyn.app.cli", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "batch_size" in res.stderr
    assert secret not in res.stdout + res.stderr


# -- Grafana -----------------------------------------------------------------------


def _dashboards() -> list[dict]:
    return [
        json.loads(p.read_text())
        for p in sorted((COMPOSE_DIR / "grafana/dashboards").glob("*.json"))
    ]


def _panels(kind: str | None = None) -> list[dict]:
    return [
        p
        for d in _dashboards()
        for p in d["panels"]
        if kind is None or p["datasource"]["uid"] == kind
    ]


def test_dashboards_chart_what_operators_need():
    titles = " | ".join(p["title"].lower() for p in _panels())
    for needed in (
        "ingest rate",
        "lag",
        "dead letters",
        "devices online",
        "alert latency",
        "open alerts",
    ):
        assert needed in titles, needed
    sources = yaml.safe_load(
        (COMPOSE_DIR / "grafana/provisioning/datasources/datasources.yaml").read_text()
    )
    uids = {d["uid"]: d for d in sources["datasources"]}
    assert {"prometheus", "timescaledb"} <= set(uids)
    assert "$__file{/run/secrets/" in uids["timescaledb"]["secureJsonData"]["password"]
    for p in _panels():
        assert p["datasource"]["uid"] in uids
        assert p["targets"], p["title"]


def _exposed_metric_names() -> set[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "gauge": ("",),
    }
    names = set()
    for metric in REGISTRY.collect():
        for suffix in suffixes.get(metric.type, ("",)):
            names.add(metric.name + suffix)
    return names


def test_dashboard_and_alert_queries_are_valid_promql():
    promql = pytest.importorskip("promql_parser", reason="promql-parser (test extra) not installed")
    exprs = [(p["title"], t["expr"]) for p in _panels("prometheus") for t in p["targets"]]
    rules = yaml.safe_load((COMPOSE_DIR / "prometheus" / "rules.yml").read_text())
    exprs += [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
    for name, expr in exprs:
        try:
            promql.parse(expr)
        except ValueError as exc:
            pytest.fail(f"{name}: {expr}: {exc}")


def test_dashboard_and_alert_metrics_exist_in_the_services():
    exposed = _exposed_metric_names()
    exprs = [t["expr"] for p in _panels("prometheus") for t in p["targets"]]
    rules = yaml.safe_load((COMPOSE_DIR / "prometheus" / "rules.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\bnattillsyn_[a-z_]+", e)}
    assert used, "no nattillsyn metric charted"
    assert not used - exposed, f"charted but not exported: {sorted(used - exposed)}"


@pytest.fixture(scope="module")
def stack_database(tmp_path_factory):
    """A private PostgreSQL set up as the stack's db container does: roles, migrations, grants."""
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed (Debian's postgresql-client)")
    try:
        pg = PrivatePostgres()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    pg.start()
    try:
        secrets = tmp_path_factory.mktemp("dbsecrets")
        (secrets / "db_app_password").write_text("app-pw\n")
        (secrets / "grafana_reader_password").write_text("reader-pw\n")
        env = os.environ | {
            "SECRETS_DIR": str(secrets),
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "nattillsyn",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg.port),
        }
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE nattillsyn")
        res = subprocess.run(
            ["sh", str(COMPOSE_DIR / "postgres" / "10-roles.sh")],
            env=env,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        assert "app-pw" not in res.stdout + res.stderr
        base = f"postgresql://{{}}@127.0.0.1:{pg.port}/nattillsyn"
        asyncio.run(migrate(base.format("nattillsyn")))
        grants = str(COMPOSE_DIR / "postgres" / "grants.sql")
        res = subprocess.run(
            ["psql", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "nattillsyn", "-f", grants],
            env=env,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        yield base
    finally:
        pg.stop()


def _grafana_sql(sql: str) -> str:
    """Expand the Grafana macros the panels use into plain SQL over the last day."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 > now() - interval '1 day'", sql)
    sql = re.sub(r"\$__timeGroupAlias\((\w+),\s*'1h'\)", r"date_trunc('hour', \1) AS time", sql)
    assert "$__" not in sql, f"unexpanded macro in {sql}"
    return sql


def test_dashboard_queries_run_as_the_read_only_grafana_role(stack_database):
    url = stack_database.format("grafana_reader")
    with psycopg.connect(stack_database.format("nattillsyn"), autocommit=True) as app:
        app.execute("INSERT INTO sites (id, name) VALUES ('s1', 'Solgården')")
        app.execute("INSERT INTO devices (site_id, id, availability) VALUES ('s1', 'e1', 'online')")
    with psycopg.connect(url, autocommit=True) as conn:
        for panel in _panels("timescaledb"):
            for target in panel["targets"]:
                conn.execute(_grafana_sql(target["rawSql"])).fetchall()
        online = conn.execute(
            "SELECT count(*) FROM devices WHERE availability = 'online'"
        ).fetchone()
        assert online == (1,)


def test_grafana_role_cannot_read_resident_data_or_write(stack_database):
    url = stack_database.format("grafana_reader")
    for sql in (
        "SELECT * FROM residents",
        "SELECT * FROM audit_log",
        "SELECT payload FROM events",
        "SELECT payload FROM dead_letters",
        "SELECT password_hash FROM users",
    ):
        with (
            psycopg.connect(url, autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(sql)
    with (
        psycopg.connect(url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("CREATE TABLE public.x (i int)")
