"""Ingest benchmark: simulated devices → Mosquitto (project config) → ingest → PostgreSQL.

Against a private Mosquitto started from deploy/mosquitto/mosquitto.conf and a private
PostgreSQL (TimescaleDB when installed, `--plain` for plain PostgreSQL; durable commits,
track_commit_timestamp on), with load and ceiling built on a raw-socket MQTT 5 client of
its own (bench.ingest_wire), sharing no code with the project's transport:

1. ceiling: `--publishers` publisher processes into `--workers` consumer processes (as
   many as ingest's workers) on a shared subscription, that receive, PUBACK and count;
2. throughput: the same publishers, as fast as their windows allow, into
   `nattillsyn ingest`; events/s is messages committed (stored or dead-lettered) over
   first publish → last commit, next to the publishers' rate. Flow control holds the
   publishers back while more than `--max-backlog` messages are published and not yet
   stored (the broker's queue and the drain stay bounded); `bound_by` is "ingest" when
   they were held back or ingest went on committing after they stopped, else "publisher";
3. faults: publishing at `--fault-rate` while an ingest worker is SIGKILLed (at 30 %,
   the supervisor must restart it) and the broker restarted (at 60 %, persistent
   sessions must survive; what a PUBACK "no matching subscribers" refused until ingest
   has subscribed again is published again, as the edge does); `redelivered` counts the
   DUP-flagged deliveries ingest received (its own counter, summed over restarts);
4. latency: a steady `--latency-rate` (2,000/s); source time (set by the publisher just
   before sending) → commit time of the inserting transaction, p50/p99 from the server.

In every ingest phase, from the database: `lost` by id (every valid id made, none
stored), `stored_twice` from an audit table without uniqueness that an AFTER INSERT row
trigger fills (ON CONFLICT DO NOTHING skips fire nothing), dead letters matched to the
malformed messages sent by sha256 of the payload. One valid message in `--replay-every`
is published again (as an edge queue does), so idempotency is always exercised;
`--inject-double-store` drops the tables' primary keys to show stored_twice can count.

`python -m bench.ingest --json` prints the phases and, last, one JSON object; the exit
status is 1 when a check failed (lost, stored twice, a dead letter missing or stored
twice, a publish refused or never acknowledged, a killed worker not restarted).
See bench/RESULTS.md for figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from bench.ingest_args import PHASES, parse
from bench.ingest_phases import ceiling_phase, ingest_phase
from nattillsyn.app.embedded import PrivateMosquitto, PrivatePostgres


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _round(x: float | None, digits: int = 1) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, digits)


def checks(phases: dict[str, dict]) -> list[str]:
    """What failed: any of these makes the exit status 1."""
    failed = []
    for name, ph in phases.items():
        if name == "ceiling":
            if ph["missing"]:
                failed.append(f"ceiling: {ph['missing']} published messages not received")
            continue
        for key in (
            "lost",
            "stored_twice",
            "unexpected",
            "unacked",
            "refused",
            "dead_letters_missing",
            "dead_letters_stored_twice",
            "dead_letters_unknown",
        ):
            if ph[key]:
                failed.append(f"{name}: {key} = {ph[key]}")
        if name == "faults" and "kill_at" in ph:
            if not ph.get("worker_killed"):
                failed.append("faults: no ingest worker was killed (needs --workers > 1)")
            elif ph.get("worker_restarted_s") is None:
                failed.append("faults: the killed ingest worker was not restarted")
    return failed


def summary(args: argparse.Namespace, phases: dict[str, dict], backend: str) -> dict:
    thr = phases.get("throughput", {})
    ceil = phases.get("ceiling", {})
    lat = phases.get("latency", {})
    ingest_phases = [p for n, p in phases.items() if n != "ceiling"]

    def total(key: str) -> int:
        return sum(p.get(key, 0) for p in ingest_phases)

    events = thr.get("per_s")
    ceiling = ceil.get("per_s")
    failed = checks(phases)
    return {
        "events_per_s": _round(events),
        "ceiling_per_s": _round(ceiling),
        "publish_per_s": _round(thr.get("publish_per_s")),
        "bound_by": thr.get("bound_by"),
        "ratio_vs_ceiling": _round(events / ceiling, 3) if events and ceiling else None,
        "ceiling_publish_per_s": _round(ceil.get("publish_per_s")),
        "ceiling_bound_by": ceil.get("bound_by"),
        "lost": total("lost"),
        "stored_twice": total("stored_twice"),
        "redelivered": total("redelivered"),
        "duplicates_skipped": total("duplicates_skipped"),
        "replayed": total("replayed"),
        "publisher_unrouted_resent": total("publisher_unrouted_resent"),
        "publisher_resent_dup": total("publisher_resent_dup"),
        "publishers_held_s": thr.get("publishers_held_s"),
        "dead_letters_sent": total("invalid"),
        "dead_letters_matched": total("dead_letters_matched"),
        "dead_letters_stored_twice": total("dead_letters_stored_twice"),
        "p50_ms": lat.get("p50_ms"),
        "p99_ms": lat.get("p99_ms"),
        "latency_rate_per_s": args.latency_rate if lat else None,
        "latency_publish_per_s": _round(lat.get("publish_per_s")),
        "worker_restarted_s": phases.get("faults", {}).get("worker_restarted_s"),
        "broker_restart_s": phases.get("faults", {}).get("broker_restart_s"),
        "published": total("published"),
        "seconds": args.seconds,
        "workers": args.workers,
        "publishers": args.publishers,
        "connections": args.connections,
        "window": thr.get("window") or ceil.get("window"),
        "backend": backend,
        "durable_commits": not args.no_durable,
        "inject_double_store": args.inject_double_store,
        "ok": not failed,
        "failed": failed,
        "cpu_us_per_msg": {
            "ceiling": ceil.get("cpu_us_per_msg"),
            "ingest": thr.get("cpu_us_per_msg"),
        },
        "cpus": os.cpu_count(),
    }


def main_runner(args: argparse.Namespace) -> int:
    loads = [loadavg()]
    args.run = int(time.time()) & 0xFFFFFFF
    durable = {} if args.no_durable else {"fsync": "on", "synchronous_commit": "on"}
    broker = PrivateMosquitto()
    pg = PrivatePostgres(
        timescale=not args.plain, settings=durable | {"track_commit_timestamp": "on"}
    )
    wanted = [p for p in PHASES if p in args.phases.split(",")]
    phases: dict[str, dict] = {}
    try:
        broker.start()
        pg.start()
        backend = "timescaledb" if pg.timescale else "postgresql"
        print(
            f"bench.ingest: {args.workers} ingest workers, {args.publishers} publishers x "
            f"{args.connections} connections, {args.devices} devices, {args.seconds:g} s per "
            f"phase, backend {backend}, load {loads[0]}",
            file=sys.stderr,
        )
        for name in wanted:
            if name == "ceiling":
                phases[name] = ceiling_phase(args, broker)
            elif name == "throughput":
                phases[name] = ingest_phase(args, (broker, pg), name, 0, args.seconds)
            elif name == "faults":
                phases[name] = ingest_phase(args, (broker, pg), name, args.fault_rate, args.seconds)
            else:
                phases[name] = ingest_phase(
                    args, (broker, pg), name, args.latency_rate, args.latency_seconds
                )
            loads.append(loadavg())
            print(f"{name}: {json.dumps(phases[name])}", file=sys.stderr)
    finally:
        broker.stop()
        pg.stop()
    result = summary(args, phases, backend)
    result["loadavg"] = loads
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:24s} {v}")
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    return main_runner(parse(argv, __doc__))


if __name__ == "__main__":
    sys.exit(main())
