"""Layout-level guarantees: CLI, settings, contract, migrations, OpenAPI coverage."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nattillsyn.api.app import ROUTES, create_app
from nattillsyn.api.openapi import document
from nattillsyn.app.cli import build_parser
from nattillsyn.db.migrate import migrate
from nattillsyn.protocol import TopicKind, Topics
from nattillsyn.protocol.asyncapi import PATH, render
from nattillsyn.protocol.topics import SITE_KINDS
from nattillsyn.settings import SettingsError, load

SUBCOMMANDS = ("edge", "gateway", "ingest", "alerting", "api", "db", "simulate", "demo")


def test_cli_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nattillsyn.app.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in out.stdout, name
    assert build_parser().parse_args(["db", "migrate"]).db_command == "migrate"


def test_settings_errors_name_the_field(monkeypatch) -> None:
    monkeypatch.setenv("NATTILLSYN_EDGE__FPS", "0")
    monkeypatch.setenv("NATTILLSYN_INGEST__NOPE", "1")
    with pytest.raises(SettingsError) as err:
        load()
    assert "edge.fps" in str(err.value) and "ingest.nope" in str(err.value)


def test_settings_from_toml(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("NATTILLSYN_CONFIG", raising=False)
    f = tmp_path / "n.toml"
    f.write_text('site = "solgarden"\n[edge]\nfps = 3.0\n')
    monkeypatch.setenv("NATTILLSYN_EDGE__WIDTH", "200")  # env wins over the file
    s = load(f)
    assert (s.site, s.edge.fps, s.edge.width) == ("solgarden", 3.0, 200)


def test_topics_round_trip() -> None:
    t = Topics("x/nattillsyn")
    for kind in TopicKind:
        if kind in (TopicKind.alert, TopicKind.alert_set):
            topic = t.room("s1", "r1", kind)
        elif kind in SITE_KINDS:
            topic = t.site("s1", kind)
        else:
            topic = t.device("s1", "r1", "d1", kind)
        parsed = t.parse(topic)
        assert parsed is not None and parsed.kind is kind and parsed.site == "s1"
    assert t.parse("x/nattillsyn/s1/r1/d1/unknown") is None
    with pytest.raises(ValueError):
        t.device("s1", "r1", "alert", TopicKind.event)


def test_asyncapi_document_is_current() -> None:
    assert PATH.read_text() == render(), "run `nattillsyn asyncapi --write`"
    assert render().startswith("asyncapi: 3.0.0")


async def test_migrations_are_idempotent(database_url, db_schema) -> None:
    assert await migrate(database_url, db_schema) == []


def test_openapi_covers_every_api_route(settings) -> None:
    app = create_app(settings)
    served = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
        and r.resource.canonical.startswith("/api/")
        and r.method != "HEAD"
    }
    doc = document(ROUTES)
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
