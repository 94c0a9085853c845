"""The phases of the ingest benchmark (see bench.ingest): the ceiling with the raw
consumers of bench.ingest_load, and ingest runs at full rate, under faults and paced."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import ingest_db as db
from nattillsyn.app.embedded import PrivateMosquitto, PrivatePostgres, free_port, port_open
from nattillsyn.db.migrate import migrate
from nattillsyn.testing.processes import service_process

COUNTERS = ("nattillsyn_ingest_redelivered_total", "nattillsyn_ingest_duplicates_total")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            p = int(stat.parent.name)
            parent[p] = int(fields[1])
            cpu[p] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for p, used in cpu.items():
        q = p
        while q and q != pid:
            q = parent.get(q, 0)
        if q == pid:
            total += used
    return total


def children(pid: int) -> dict[int, int]:
    """Worker index → pid of the ingest workers under the supervisor `pid`."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != pid:
                continue
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
            if b"--worker" in argv:
                out[int(argv[argv.index(b"--worker") + 1])] = int(stat.parent.name)
    return out


def _child(args: argparse.Namespace, role: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.ingest_load", "--role", role, "--run", str(args.run), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


class Publishers:
    """`--publishers` raw-socket publisher processes, started together on "go"."""

    def __init__(self, args: argparse.Namespace, url: str, root: str, rate: float, seconds: float):
        self.procs = []
        self.dir = Path(tempfile.mkdtemp(prefix="bench-ingest-pub-"))
        self.pause_file = self.dir / "pause"
        self.held = False
        for p in range(args.publishers):
            progress = self.dir / f"progress{p}"
            self.procs.append(
                _child(
                    args,
                    "publisher",
                    *("--url", url, "--root", root, "--publisher", str(p)),
                    *("--publishers", str(args.publishers), "--connections", str(args.connections)),
                    *("--window", str(args.window), "--rate", str(rate), "--seconds", str(seconds)),
                    *("--devices", str(args.devices), "--invalid-every", str(args.invalid_every)),
                    *("--replay-every", str(args.replay_every)),
                    *("--pause", str(self.pause_file), "--progress", str(progress)),
                )
            )
        self.window = 0
        for proc in self.procs:
            line = proc.stdout.readline()
            try:
                self.window = json.loads(line)["window"]
            except (ValueError, KeyError):
                self.kill()
                raise RuntimeError(f"publisher failed to start: {line!r}") from None

    def acked(self) -> int:
        n = 0
        for f in self.dir.glob("progress*"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                n += int(f.read_text().split()[0])
        return n

    def hold(self, on: bool) -> None:
        """Make the publishers stop making messages (on) or go on (off)."""
        if on and not self.held:
            self.pause_file.touch()
        elif not on and self.held:
            self.pause_file.unlink(missing_ok=True)
        self.held = on

    def go(self) -> None:
        for proc in self.procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def results(self) -> dict:
        res = []
        for proc in self.procs:
            line = proc.stdout.readline()
            proc.wait(30)
            if not line:
                raise RuntimeError(f"publisher exited with {proc.returncode} without a result")
            res.append(json.loads(line))
        counts = {k: sum(r["counts"][k] for r in res) for k in res[0]["counts"]}
        out = {
            "counts": counts,
            "valid": counts["event"] + counts["state"] + counts["heartbeat"],
            "t_first": min(r["t_first"] for r in res),
            "t_last": max(r["t_last"] for r in res),
            "gens": [tuple(g) for r in res for g in r["gens"]],
            "bad_hashes": [h for r in res for h in r["bad_hashes"]],
        }
        for key in ("sent", "acked", "unacked", "resent_dup", "unrouted_resent", "refused"):
            out[key] = sum(r[key] for r in res)
        for key in ("reconnects", "sessions_resumed", "cpu", "paused_s"):
            out[key] = sum(r[key] for r in res)
        out["window"] = min(r["window"] for r in res)
        span = out["t_last"] - out["t_first"]
        # While held back (flow control) the publishers make nothing: their rate is over
        # the time they were let publish; the average over the whole span is kept too.
        active = span - out["paused_s"] / len(res)
        out["publish_per_s"] = out["acked"] / active if active > 0 else 0.0
        out["publish_avg_per_s"] = out["acked"] / span if span > 0 else 0.0
        return out

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def ceiling_phase(args: argparse.Namespace, broker: PrivateMosquitto) -> dict:
    """The publishers into `workers` raw consumers that receive, PUBACK and count."""
    root = f"bench{args.run:x}c"
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    consumers = []
    try:
        for w in range(args.workers):
            out = tmp / f"count{w}"
            p = _child(
                args,
                "ceiling",
                *("--url", broker.url, "--root", root, "--worker", str(w), "--out", str(out)),
                *("--receive-maximum", str(args.receive_maximum)),
            )
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("ceiling consumer failed to start")
            consumers.append((p, out))
        pubs = Publishers(args, broker.url, root, 0, args.seconds)
        cpu0 = [tree_cpu(broker.proc.pid), sum(tree_cpu(p.pid) for p, _o in consumers)]
        pubs.go()
        res = pubs.results()
        want = res["acked"]
        seen, since, vals = -1, time.monotonic(), []
        while time.monotonic() - since < 10:
            vals = [out.read_text().split() for _p, out in consumers]
            got = sum(int(v[0]) for v in vals)
            if got != seen:
                seen, since = got, time.monotonic()
            if got >= want:
                break
            time.sleep(0.1)
        cpu1 = [tree_cpu(broker.proc.pid), sum(tree_cpu(p.pid) for p, _o in consumers)]
    finally:
        for p, _out in consumers:
            p.terminate()
            p.wait(10)
    got = sum(int(v[0]) for v in vals)
    t_end = max(float(v[2]) for v in vals)
    span = t_end - res["t_first"]
    drain = max(0.0, t_end - res["t_last"])
    n = max(1, got)
    return {
        "published": want,
        "received": got,
        "missing": want - got,
        "dup_seen": sum(int(v[1]) for v in vals),
        "per_s": got / span if span > 0 else 0.0,
        "publish_per_s": res["publish_per_s"],
        "drain_s": round(drain, 2),
        "bound_by": _bound_by(drain, res),
        "processes": len(consumers),
        "window": res["window"],
        "cpu_us_per_msg": {
            "publishers": round(res["cpu"] / n * 1e6, 1),
            "broker": round((cpu1[0] - cpu0[0]) / n * 1e6, 1),
            "consumers": round((cpu1[1] - cpu0[1]) / n * 1e6, 1),
        },
    }


def _bound_by(drain: float, res: dict) -> str:
    """Who set the pace: ingest if the publishers had to be held back for its backlog, or
    if it went on committing well after they stopped; else the publishers."""
    span = res["t_last"] - res["t_first"]
    held = res.get("paused_s", 0.0) > 0
    return "ingest" if held or drain > max(1.0, 0.05 * span) else "publisher"


class Ingest:
    """`nattillsyn ingest` (the supervisor and its workers) on a fresh schema and root."""

    def __init__(self, mqtt_url: str, db_url: str, schema: str, root: str, args) -> None:
        workers = args.workers
        self.metrics_port = free_port()
        while any(port_open("127.0.0.1", self.metrics_port + i, 0.05) for i in range(workers)):
            self.metrics_port = free_port()
        self.workers = workers
        env = os.environ | {
            "NATTILLSYN_DATABASE_URL": db_url,
            "NATTILLSYN_DATABASE_SCHEMA": schema,
            "NATTILLSYN_MQTT_URL": mqtt_url,
            "NATTILLSYN_TOPIC_ROOT": root,
            "NATTILLSYN_INGEST__WORKERS": str(workers),
            "NATTILLSYN_INGEST__BATCH_MS": str(args.batch_ms),
            "NATTILLSYN_INGEST__METRICS_PORT": str(self.metrics_port),
            "NATTILLSYN_INGEST__CLIENT_ID": f"bench-ingest-{root}",
            "NATTILLSYN_LOG__LEVEL": "WARNING",
        }
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the run
            prefix="bench-ingest-", suffix=".log", delete=False
        )
        self.proc = service_process(
            "ingest", env, start_new_session=True, stdout=self.log, stderr=subprocess.STDOUT
        )
        self._last: dict[tuple[int, str], float] = {}
        self._base: dict[tuple[int, str], float] = {}

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for i in range(self.workers):
                    self.scrape(i)
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise TimeoutError(f"ingest workers did not come up (log: {self.log.name})")

    def scrape(self, worker: int) -> str:
        url = f"http://127.0.0.1:{self.metrics_port + worker}/metrics"
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()

    def sample(self) -> None:
        """Read the workers' redelivered/duplicate counters; a restarted worker starts
        again from 0, so a drop adds the last value seen to the base."""
        for i in range(self.workers):
            try:
                text = self.scrape(i)
            except OSError:
                continue
            for line in text.splitlines():
                name = line.split(" ", 1)[0]
                if name in COUNTERS:
                    value = float(line.rsplit(" ", 1)[1])
                    key = (i, name)
                    if value < self._last.get(key, 0.0):
                        self._base[key] = self._base.get(key, 0.0) + self._last[key]
                    self._last[key] = value

    def counter(self, name: str) -> int:
        return int(
            sum(
                self._base.get((i, name), 0) + self._last.get((i, name), 0)
                for i in range(self.workers)
            )
        )

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def _kill_worker(ingest: Ingest, worker: int, faults: dict) -> None:
    pids = children(ingest.proc.pid)
    if worker not in pids:
        faults["worker_killed"] = False
        return
    os.kill(pids[worker], signal.SIGKILL)
    faults["worker_killed"] = True
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        new = children(ingest.proc.pid).get(worker)
        if new and new != pids[worker]:
            faults["worker_restarted_s"] = round(time.monotonic() - t0, 2)
            return
        ingest.sample()
        time.sleep(0.1)
    faults["worker_restarted_s"] = None


def _fault(what: str, args, broker: PrivateMosquitto, ingest: Ingest, faults: dict) -> None:
    faults[f"{what}_at"] = time.time()
    if what == "kill":
        if args.workers > 1:
            _kill_worker(ingest, 0, faults)
        else:
            faults["worker_killed"] = False  # one worker: no supervisor to restart it
    else:
        ingest.sample()
        t1 = time.monotonic()
        broker.restart()
        faults["broker_restart_s"] = round(time.monotonic() - t1, 2)


def ingest_phase(
    args: argparse.Namespace,
    servers: tuple[PrivateMosquitto, PrivatePostgres],
    name: str,
    rate: float,
    seconds: float,
) -> dict:
    """Publishers into `nattillsyn ingest` on a fresh schema, for `seconds` at `rate`
    (0: as fast as the windows allow); `name` faults: SIGKILL of a worker at 30 % of the
    time and a broker restart at 60 %. Then the accounts, from the database."""
    broker, pg = servers
    schema = f"bench_{args.run:x}_{name}"
    root = f"bench{args.run:x}{name[0]}"
    asyncio.run(migrate(pg.url, schema))
    db.install_audit(pg.url, schema, inject_double_store=args.inject_double_store)
    ingest = Ingest(broker.url, pg.url, schema, root, args)
    faults: dict = {}
    pubs = None
    try:
        ingest.wait_ready()
        pubs = Publishers(args, broker.url, root, rate, seconds)
        pids = (broker.proc.pid, pg.proc.pid, ingest.proc.pid)
        cpu0 = [tree_cpu(p) for p in pids]
        schedule = [(0.3, "kill"), (0.6, "broker")] if name == "faults" else []
        schedule = [(at, what) for at, what in schedule if what in args.faults.split(",")]
        with db.connect(pg.url, schema) as conn:
            t0 = time.monotonic()
            pubs.go()
            # A fault still due (the worker's restart is waited for) runs even if late.
            while time.monotonic() < t0 + seconds or schedule:
                if schedule and time.monotonic() >= t0 + schedule[0][0] * seconds:
                    _fault(schedule.pop(0)[1], args, broker, ingest, faults)
                # Flow control: a backlog above --max-backlog holds the publishers back
                # (the broker's queue stays bounded, the time to drain it too).
                backlog = pubs.acked() - db.progress(conn)
                if backlog > args.max_backlog:
                    pubs.hold(True)
                elif backlog < args.max_backlog // 2:
                    pubs.hold(False)
                ingest.sample()
                time.sleep(0.2)
            pubs.hold(False)
        res = pubs.results()
        db.wait_stored(
            pg.url,
            schema,
            res["valid"],
            res["counts"]["bad"],
            stall_s=15,
            limit_s=args.drain_limit,
        )
        cpu1 = [tree_cpu(p) for p in pids]
        ingest.sample()
        ingest.stop()
        ingest.sample()
        acc = db.account(pg.url, schema, res["gens"], res["bad_hashes"], res["t_last"])
        lat = db.latency_ms(pg.url, schema) if name == "latency" else {}
    finally:
        if pubs is not None:
            pubs.kill()
        ingest.stop()
    committed = acc["stored"] + acc["dead_letters"]
    span = acc["last_commit"] - res["t_first"]
    drain = max(0.0, acc["last_commit"] - res["t_last"])
    n = max(1, res["acked"])
    out = {
        "published": res["acked"],
        "unacked": res["unacked"],
        "valid": res["valid"],
        "invalid": res["counts"]["bad"],
        "replayed": res["counts"]["replay"],
        **{k: acc[k] for k in ("stored", "lost", "unexpected", "stored_twice", "audit_rows")},
        "dead_letters": acc["dead_letters"],
        "dead_letters_matched": acc["dead_letters_matched"],
        "dead_letters_missing": acc["dead_letters_missing"],
        "dead_letters_stored_twice": acc["dead_letters_stored_twice"],
        "dead_letters_unknown": acc["dead_letters_unknown"],
        **(
            {"dead_letters_twice_commits": acc["dead_letters_twice_commits"]}
            if acc["dead_letters_twice_commits"]
            else {}
        ),
        "redelivered": ingest.counter(COUNTERS[0]),
        "duplicates_skipped": ingest.counter(COUNTERS[1]),
        "publisher_resent_dup": res["resent_dup"],
        "publisher_reconnects": res["reconnects"],
        "publisher_sessions_resumed": res["sessions_resumed"],
        "publisher_unrouted_resent": res["unrouted_resent"],
        "refused": res["refused"],
        "seconds": round(span, 2),
        "per_s": committed / span if span > 0 else 0.0,
        "publish_per_s": res["publish_per_s"],
        "publish_avg_per_s": res["publish_avg_per_s"],
        "backlog_at_publish_end": res["acked"]
        - res["counts"]["replay"]
        - acc["committed_by_publish_end"],
        "drain_s": round(drain, 2),
        "publishers_held_s": round(res["paused_s"] / args.publishers, 2),
        "bound_by": _bound_by(drain, res),
        "window": res["window"],
        **faults,
        **({"lost_runs": acc["lost_runs"]} if acc["lost_runs"] else {}),
        **lat,
    }
    if name != "faults":  # a restarted broker is another process: no CPU figures then
        out["cpu_us_per_msg"] = {
            "publishers": round(res["cpu"] / n * 1e6, 1),
            **{
                k: round((b - a) / n * 1e6, 1)
                for k, a, b in zip(("broker", "postgres", "ingest"), cpu0, cpu1, strict=True)
            },
        }
    return out
