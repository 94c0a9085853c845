"""`nattillsyn`: one command for every service and tool.

Each subcommand imports its deployable lazily, so a Raspberry Pi with only the
`edge` extra installed can run `nattillsyn edge`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

from nattillsyn import __version__, log, metrics
from nattillsyn.service import run_until_signalled
from nattillsyn.settings import Settings, SettingsError, load

DESCRIPTION = """\
nattillsyn: digital night supervision for elderly care.

Settings come from NATTILLSYN_* environment variables (nested with __, e.g.
NATTILLSYN_EDGE__FPS=5) over an optional TOML file (--config or NATTILLSYN_CONFIG).
"""


def _require(settings: Settings, *names: str) -> None:
    missing = [n for n in names if getattr(settings, n) is None]
    if missing:
        env = ", ".join(f"NATTILLSYN_{n.upper()}" for n in missing)
        raise SettingsError(f"this command needs {env} (or run `nattillsyn demo`)")


def _run_services(
    factory: Callable[[Settings], list],
) -> Callable[[Settings, argparse.Namespace], int]:
    def run(settings: Settings, _args: argparse.Namespace) -> int:
        asyncio.run(run_until_signalled(factory(settings)))
        return 0

    return run


def _edge(s: Settings) -> list:
    from nattillsyn.edge.agent import EdgeAgent

    _require(s, "mqtt_url")
    return [EdgeAgent(s)]


def _edge_command(settings: Settings, args: argparse.Namespace) -> int:
    if getattr(args, "edge_command", None) == "evaluate":
        from nattillsyn.edge.evaluate import main as evaluate_main

        return evaluate_main(
            args.clips_dir,
            args.zones,
            as_json=args.json,
            fps=args.fps or settings.edge.fps,
            width=args.width or settings.edge.width,
            workers=args.workers,
            verbose=args.verbose,
            use_zones=not args.no_zones,
        )
    return _run_services(_edge)(settings, args)


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from nattillsyn.ingest.service import services

    _require(settings, "mqtt_url", "database_url")
    asyncio.run(run_until_signalled(services(settings, args.worker, args.config)))
    return 0


def _alerting(s: Settings) -> list:
    from nattillsyn.alerting.service import AlertingService

    _require(s, "mqtt_url", "database_url")
    return [AlertingService(s)]


def _api(s: Settings) -> list:
    from nattillsyn.api.app import ApiService

    _require(s, "mqtt_url", "database_url")
    return [ApiService(s)]


def _gateway(s: Settings) -> list:
    from nattillsyn.gateway.service import GatewayService

    _require(s, "mqtt_url")
    return [GatewayService(s)]


def _db_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from nattillsyn.db.migrate import migrate

    _require(settings, "database_url")
    applied = asyncio.run(migrate(settings.database_url, settings.database_schema))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def _db_maintain(settings: Settings, _args: argparse.Namespace) -> int:
    import psycopg

    from nattillsyn.ingest.storage import maintain

    _require(settings, "database_url")

    async def run() -> dict:
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True
        ) as conn:
            await conn.execute(
                psycopg.sql.SQL("SET search_path TO {}, public").format(
                    psycopg.sql.Identifier(settings.database_schema)
                )
            )
            return await maintain(conn)

    print(json.dumps(asyncio.run(run())))
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from nattillsyn.app.demo import run_demo

    return asyncio.run(run_demo(settings, rooms=args.rooms, port=args.port, sso=args.sso))


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from nattillsyn.app.simulate import run_simulation

    _require(settings, "mqtt_url")
    return asyncio.run(run_simulation(settings, rooms=args.rooms, speed=args.speed))


def _alerting_keys(settings: Settings, _args: argparse.Namespace) -> int:
    from nattillsyn.alerting.notifiers import new_vapid_key, vapid_public_key

    key = new_vapid_key()
    print("# Web Push (VAPID) key for the tablets; keep the private key secret.")
    print(f"# public key (browsers subscribe with it): {vapid_public_key(key)}")
    print("# set it for alerting and the api, e.g. NATTILLSYN_ALERTING__VAPID_PRIVATE_KEY:")
    print(key.strip())
    return 0


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from nattillsyn.evaluation.commands import run_report

    return run_report(settings, args)


def _baseline_import(settings: Settings, args: argparse.Namespace) -> int:
    from nattillsyn.evaluation.commands import run_baseline_import

    return run_baseline_import(settings, args)


def _synthesize(settings: Settings, args: argparse.Namespace) -> int:
    from nattillsyn.evaluation.commands import run_synthesize

    return run_synthesize(settings, args)


def _asyncapi(settings: Settings, args: argparse.Namespace) -> int:
    from nattillsyn.protocol.asyncapi import main as asyncapi_main

    return asyncapi_main(check=args.check, write=args.write)


def _mqtt_auth(settings: Settings, args: argparse.Namespace) -> int:
    from nattillsyn.api.mqtt_auth_cli import run

    _require(settings, "database_url")
    return asyncio.run(run(settings, args))


def _claim(settings: Settings, args: argparse.Namespace) -> int:
    from nattillsyn.edge.claim import run

    return run(args.api, args.code, args.write)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nattillsyn",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"nattillsyn {__version__}")
    p.add_argument("--config", metavar="FILE", help="TOML settings file (env vars override it)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, fn: Callable, **kw) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_, **kw)
        sp.set_defaults(fn=fn)
        return sp

    edge = add(
        "edge",
        "Run the edge agent: analyse a camera or clips in a room, publish events and state "
        "over MQTT. Frames never leave the process.",
        _edge_command,
    )
    edgesub = edge.add_subparsers(dest="edge_command", metavar="EDGE_COMMAND")
    ev = edgesub.add_parser(
        "evaluate",
        help="Score the edge analysis on labelled clips (labels.csv in the clip folder).",
        description="Run the edge analysis on every clip of a folder and score it by the rules "
        "of its MANIFEST: presence agreement per frame, falls detected, false fall events; "
        "per dataset and overall: fall recall with a 95 percent Wilson interval, on_floor after "
        "each fall, false falls per hour of video, presence balanced accuracy beside the "
        "trivial baselines. Prints a per-clip table; with --json a JSON summary as the last "
        "line.",
    )
    ev.add_argument(
        "clips_dir",
        type=Path,
        nargs="+",
        help="folder of clips with labels.csv, or a folder of such folders (one per dataset)",
    )
    ev.add_argument(
        "--zones",
        type=Path,
        metavar="DIR",
        help="folder of room-configuration files <clip-stem>.json (default configuration "
        "for clips without one)",
    )
    ev.add_argument(
        "--no-zones",
        action="store_true",
        help="default configuration for every clip (ignore --zones and the folders' zones/)",
    )
    ev.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    ev.add_argument("--fps", type=float, help="analysed frames per second (default: settings)")
    ev.add_argument("--width", type=int, help="analysis width (default: settings)")
    ev.add_argument("--workers", type=int, default=2, help="clips analysed in parallel")
    ev.add_argument("--verbose", action="store_true", help="print state timelines and events")
    add(
        "gateway",
        "Run the care-home gateway: bridge the site broker to the centre and keep alerting "
        "locally when the link is down.",
        _run_services(_gateway),
    )
    ing = add(
        "ingest",
        "Run the ingest service: store every MQTT message in TimescaleDB/PostgreSQL exactly "
        "once, invalid ones in the dead-letter table. With ingest.workers > 1 it supervises "
        "that many worker processes (MQTT 5 shared subscription).",
        _ingest,
    )
    ing.add_argument(
        "--worker",
        type=int,
        metavar="N",
        help="run only worker N in this process (what the supervisor starts)",
    )
    add(
        "alerting",
        "Run the alerting service: turn events into alerts for night staff, with "
        "acknowledgement and escalation.",
        _run_services(_alerting),
    )
    add(
        "api", "Run the HTTP api and the tablet web app (live over WebSocket).", _run_services(_api)
    )

    db = sub.add_parser("db", help="Database tools.", description="Database tools.")
    dbsub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    m = dbsub.add_parser(
        "migrate",
        help="Apply pending SQL migrations (idempotent).",
        description="Apply pending SQL migrations in order; each is recorded once.",
    )
    m.set_defaults(fn=_db_migrate)
    mt = dbsub.add_parser(
        "maintain",
        help="Run storage maintenance once (retention, summary refreshes); ingest does it "
        "on a schedule.",
        description="Delete telemetry past its retention and refresh the summaries that are "
        "due (TimescaleDB runs its own jobs for hypertables); prints what was done as JSON.",
    )
    mt.set_defaults(fn=_db_maintain)

    sim = add(
        "simulate",
        "Replay the shared real clips as several rooms through the real edge pipeline "
        "against a configured broker.",
        _simulate,
    )
    sim.add_argument("--rooms", type=int, default=4, help="number of simulated rooms (default 4)")
    sim.add_argument("--speed", type=float, default=1.0, help="replay speed, 1 = real time")

    demo = add(
        "demo",
        "Run everything on embedded defaults: a private PostgreSQL and MQTT broker "
        "(unless URLs are set), all services and simulated rooms; prints the tablet URL and "
        "demo logins. Ctrl-C stops it all.",
        _demo,
    )
    demo.add_argument("--rooms", type=int, default=4, help="number of simulated rooms (default 4)")
    demo.add_argument(
        "--port", type=int, default=8080, help="api port (default 8080; 0 = any free)"
    )
    demo.add_argument(
        "--sso",
        action="store_true",
        help="also start the test OpenID Provider (Node, npm's oidc-provider) and sign-in with it",
    )

    ma = add(
        "mqtt-auth",
        "Mosquitto credentials and ACL from the database: write the password and ACL files "
        "(devices may publish only under their own topic), or create a service account.",
        _mqtt_auth,
    )
    ma.add_argument("action", choices=["write", "service"], help="write files / add a service")
    ma.add_argument("name", nargs="?", help="service account name (for `service`)")
    ma.add_argument("--dir", help="folder for passwd and acl (default: api.mosquitto_dir)")
    ma.add_argument("--reload-pid-file", help="Mosquitto pid file to SIGHUP after writing")

    cl = add(
        "claim",
        "On a room device: claim it with the code from the admin page; writes the edge "
        "settings (site, room, device, broker credentials) to a TOML file.",
        _claim,
    )
    cl.add_argument("code", help="claim code shown when the device was provisioned")
    cl.add_argument("--api", required=True, help="api base URL, e.g. https://nattillsyn.example")
    cl.add_argument("--write", default="/etc/nattillsyn/edge.toml", help="settings file to write")
    add(
        "alerting-keys",
        "Make a Web Push (VAPID) key pair so alerts reach tablets whose page is in the background.",
        _alerting_keys,
    )

    from nattillsyn.evaluation import cli as evaluation_cli

    evaluation_cli.add_report_args(
        add(
            "report",
            "Write an evaluation report for a unit and period: HTML with plots and tables, CSV "
            "and Parquet tables; small cells suppressed, residents pseudonymised per export.",
            _report,
        )
    )
    evaluation_cli.add_baseline_args(
        add(
            "baseline-import",
            "Import night visits from before introduction (CSV, see docs/evaluation.md).",
            _baseline_import,
        )
    )
    evaluation_cli.add_synth_args(
        add(
            "synthesize",
            "Generate synthetic units with months of nights (rounds, visits, states, alerts, "
            "outcomes, pauses, device health) and a baseline, for demos and trials.",
            _synthesize,
        )
    )

    aa = add(
        "asyncapi",
        "Print, write or check the AsyncAPI 3.0 document of the MQTT contract.",
        _asyncapi,
    )
    g = aa.add_mutually_exclusive_group()
    g.add_argument(
        "--check", action="store_true", help="exit 1 if the checked-in document is stale"
    )
    g.add_argument("--write", action="store_true", help="rewrite the checked-in document")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load(args.config)
    except SettingsError as exc:
        print(f"nattillsyn: {exc}", file=sys.stderr)
        return 2
    log.configure(settings.log.level, settings.log.json_)
    metrics.bind(settings.metrics_host)
    try:
        return args.fn(settings, args) or 0
    except SettingsError as exc:
        print(f"nattillsyn: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
