"""bench.ingest on a tiny configuration: it runs, it accounts, and it can fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ingest_load import Devices
from bench.ingest_wire import parse, puback, publish_packet

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--plain", "--devices", "20", "--publishers", "1", "--connections", "2"]
TINY += ["--latency-rate", "500", "--fault-rate", "1000", "--invalid-every", "50"]


def _bench(*args: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--json", *TINY, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    return proc.returncode, json.loads(lines[-1]), proc.stderr


def test_wire_parses_what_it_writes() -> None:
    buf = bytearray(publish_packet(b"a/b", b"x" * 300, 7) + puback(7) + b"\x30")
    packets, used = parse(buf)
    assert [(first, end - start) for first, start, end in packets] == [
        (0x32, 2 + 3 + 2 + 1 + 300),
        (0x40, 2),
    ]
    assert used == len(buf) - 1  # the incomplete last packet stays


def test_malformed_payloads_are_unique_and_ids_follow_the_counter() -> None:
    gen = Devices("r", [0, 1, 2], run=0xABC, pub=1, invalid_every=10)
    out = [gen.next() for _ in range(200)]
    bad = [payload for _t, payload, kind in out if kind == "bad"]
    assert len(bad) == 20 and len(set(bad)) == 20
    valid = [json.loads(p) for _t, p, kind in out if kind != "bad"]
    # Every 10th id is a malformed message's: bench.ingest_db.expected_ids leaves those out.
    assert {int(v["id"].rsplit("-", 1)[1], 16) % 10 for v in valid} == set(range(1, 10))
    assert all(v["id"].startswith("00000abc-0001-") for v in valid)


@pytest.mark.timeout(180)
def test_short_run_accounts_for_everything_then_catches_a_double_store() -> None:
    code, res, err = _bench("--seconds", "2", "--phases", "ceiling,faults,latency")
    # Worker killed and broker restarted mid-run: nothing lost, nothing stored twice, no
    # dead letter twice (a malformed message redelivered after its batch committed).
    assert res["failed"] == [] and code == 0, err[-3000:]
    for key in ("events_per_s", "ceiling_per_s", "publish_per_s", "bound_by", "backend"):
        assert key in res
    assert res["lost"] == 0 and res["stored_twice"] == 0
    assert res["dead_letters_matched"] == res["dead_letters_sent"] > 0
    assert res["worker_restarted_s"] is not None and res["broker_restart_s"] is not None
    assert res["ceiling_per_s"] > 0 and res["p99_ms"] > 0

    code, res, err = _bench("--seconds", "2", "--phases", "throughput", "--inject-double-store")
    assert code == 1, err[-3000:]
    assert res["stored_twice"] > 0 and res["lost"] == 0
    assert any("stored_twice" in f for f in res["failed"])
