"""bench.ingest's command line, shared by the runner (bench.ingest) and its child processes
(`python -m bench.ingest_load`), which so import no more than the roles need."""

from __future__ import annotations

import argparse

from nattillsyn.settings.ingest import IngestSettings

PHASES = ("ceiling", "throughput", "faults", "latency")


def parse(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.add_argument("--seconds", type=float, default=40.0, help="publish time per phase")
    p.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes")
    p.add_argument("--connections", type=int, default=4, help="connections per publisher")
    p.add_argument(
        "--window",
        type=int,
        default=100,
        help="unacknowledged QoS 1 publishes per connection (at most the broker's receive "
        "maximum from its CONNACK)",
    )
    p.add_argument("--devices", type=int, default=2000, help="simulated devices")
    p.add_argument(
        "--batch-ms", type=int, default=IngestSettings().batch_ms, help="ingest.batch_ms"
    )
    p.add_argument("--latency-rate", type=float, default=2000.0, help="events/s, latency phase")
    p.add_argument(
        "--latency-seconds", type=float, default=None, help="default: --seconds, at most 30"
    )
    p.add_argument("--fault-rate", type=float, default=5000.0, help="events/s, faults phase")
    p.add_argument(
        "--faults",
        default="kill,broker",
        help="faults phase: kill (SIGKILL an ingest worker at 30 %%), broker (restart at 60 %%)",
    )
    p.add_argument("--invalid-every", type=int, default=1000, help="one malformed message per N")
    p.add_argument("--replay-every", type=int, default=500, help="one replayed message per N")
    p.add_argument(
        "--max-backlog",
        type=int,
        default=100_000,
        help="publishers are held back while more than this is published and not stored",
    )
    p.add_argument(
        "--drain-limit", type=float, default=180.0, help="longest wait for ingest to catch up (s)"
    )
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
