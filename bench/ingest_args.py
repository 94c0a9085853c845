"""bench.ingest's command line, shared by the runner (bench.ingest) and its child processes
(`python -m bench.ingest_load`), which so import no more than the roles need."""

from __future__ import annotations

import argparse

from nattillsyn.settings.ingest import IngestSettings

PHASES = ("ceiling", "throughput", "faults", "latency")


# The run's knobs: option, type, default, help (in the order --help shows them).
KNOBS: tuple[tuple[str, type, object, str], ...] = (
    ("--seconds", float, 40.0, "publish time per phase"),
    ("--workers", int, 2, "ingest worker processes"),
    ("--publishers", int, 2, "publisher processes"),
    ("--connections", int, 4, "connections per publisher"),
    ("--window", int, 100, "unacknowledged QoS 1 publishes per connection (at most the "
     "broker's receive maximum from its CONNACK)"),
    ("--devices", int, 2000, "simulated devices"),
    ("--batch-ms", int, IngestSettings().batch_ms, "ingest.batch_ms"),
    ("--latency-rate", float, 2000.0, "events/s, latency phase"),
    ("--latency-seconds", float, None, "default: --seconds, at most 30"),
    ("--fault-rate", float, 5000.0, "events/s, faults phase"),
    ("--faults", str, "kill,broker",
     "faults phase: kill (SIGKILL an ingest worker at 30 %%), broker (restart at 60 %%)"),
    ("--invalid-every", int, 1000, "one malformed message per N"),
    ("--replay-every", int, 500, "one replayed message per N"),
    ("--max-backlog", int, 100_000,
     "publishers are held back while more than this is published and not stored"),
    ("--drain-limit", float, 180.0, "longest wait for ingest to catch up (s)"),
)  # fmt: skip


def parse(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    for flag, kind, default, text in KNOBS:
        p.add_argument(flag, type=kind, default=default, help=text)
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset to run")
    p.add_argument("--plain", action="store_true", help="plain PostgreSQL even if TimescaleDB")
    p.add_argument("--no-durable", action="store_true", help="fsync off (throw-away data)")
    p.add_argument(
        "--inject-double-store",
        action="store_true",
        help="drop the primary keys of events, room_states and heartbeats: replayed and "
        "redelivered messages are stored twice (shows that stored_twice counts)",
    )
    # internal: the child processes (bench.ingest_load)
    p.add_argument("--role", choices=("runner", "publisher", "ceiling"), default="runner")
    p.add_argument("--url")
    p.add_argument("--root")
    p.add_argument("--run", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--publisher", type=int, default=0)
    p.add_argument("--worker", type=int, default=0)
    p.add_argument("--out")
    p.add_argument("--pause", help=argparse.SUPPRESS)
    p.add_argument("--progress", help=argparse.SUPPRESS)
    p.add_argument(
        "--receive-maximum", type=int, default=IngestSettings().receive_maximum, help="ceiling"
    )
    p.add_argument("--drain-timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.latency_seconds is None:
        args.latency_seconds = min(args.seconds, 30.0)
    return args
