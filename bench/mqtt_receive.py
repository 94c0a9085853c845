"""Benchmark: the fast MQTT reader (nattillsyn/mqtt/fastpath.py) against stock paho.

`python -m bench.mqtt_receive [--json] [--messages N] [--rounds R]`

A private Mosquitto; a raw-socket MQTT 5 publisher process sends N QoS 1 messages (an
ingest-sized JSON payload, at most 18 unconfirmed per connection: Mosquitto's receive
maximum is 20) to one `MqttClient` subscriber with manual acknowledgement, which takes
them with `next_batch` and acknowledges each batch with `ack_many`, as an ingest worker
does. The same client runs with the fast reader and, as the reference, with stock
paho-mqtt's reader (`fastpath.AVAILABLE` off): the same broker, messages, event-loop
driver and process. Rounds alternate; the best round of each counts. CPU is the
subscriber process's, per message. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid

from bench import ingest_wire as wire
from nattillsyn.app.embedded import PrivateMosquitto
from nattillsyn.mqtt import MqttClient, fastpath


def publish(n: int, topic: str, url: str) -> None:
    """The publisher process: n QoS 1 messages, at most 18 unconfirmed (Mosquitto's
    default receive maximum is 20), then DISCONNECT."""
    sock, _ack, buf = wire.connect(url, "rawpub")
    sock.settimeout(None)
    name = topic.encode()
    payload = (
        b'{"v":1,"id":"0f8fad5b-d9cb-469f-a165-70867728950e","site":"site-1",'
        b'"room":"rum-101","device":"cam-101","session":1,"seq":%d,'
        b'"ts":"2026-12-04T03:00:00Z","type":"motion","phase":"update"}'
    )
    out, acked = bytearray(), 0

    def take_acks() -> int:
        nonlocal buf
        buf += sock.recv(1 << 16)
        packets, used = wire.parse(buf)
        del buf[:used]
        return sum(1 for first, _s, _e in packets if first & 0xF0 == wire.PUBACK)

    for i in range(n):
        out += wire.publish_packet(name, payload % i, i % 60000 + 1)
        if len(out) > 1500 or i == n - 1:
            sock.sendall(out)
            out.clear()
            while i + 1 - acked >= 18:
                acked += take_acks()
    while acked < n:
        acked += take_acks()
    sock.sendall(wire.DISCONNECT_PACKET)
    sock.close()


async def receive(url: str, n: int, fast: bool) -> dict:
    saved = fastpath.AVAILABLE
    fastpath.AVAILABLE = fast
    try:
        sub = MqttClient(url, f"rx-{uuid.uuid4().hex[:6]}", manual_ack=True, receive_maximum=1000)
    finally:
        fastpath.AVAILABLE = saved
    topic = f"bench/{uuid.uuid4().hex[:6]}/event"
    await sub.start()
    await sub.subscribe(topic, qos=1)
    pub = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.mqtt_receive", "--role", "publisher", str(n), topic, url
    )
    got, t0, c0 = 0, 0.0, 0.0
    while got < n:
        batch = await asyncio.wait_for(sub.next_batch(500, 0.02), 60)
        if not got:
            t0, c0 = time.perf_counter(), time.process_time()
        got += len(batch)
        sub.ack_many(batch)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    await sub.stop()
    await asyncio.wait_for(pub.wait(), 60)
    return {"cpu_us": round(cpu / n * 1e6, 2), "per_s": round(n / wall)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not fastpath.AVAILABLE:
        sys.exit("this paho release lacks what the fast reader needs: nothing to compare")
    broker = PrivateMosquitto()
    url = await asyncio.to_thread(broker.start)
    runs: dict[str, list[dict]] = {"fast": [], "stock": []}
    try:
        for _ in range(args.rounds):
            for name in ("fast", "stock"):
                r = await receive(url, args.messages, name == "fast")
                runs[name].append(r)
                print(f"{name:5}  {r['cpu_us']:6.2f} CPU µs/message  {r['per_s']:>8,}/s")
    finally:
        broker.stop()
    best = {k: min(v, key=lambda r: r["cpu_us"]) for k, v in runs.items()}
    out = {
        "messages": args.messages,
        "fast_cpu_us": best["fast"]["cpu_us"],
        "fast_per_s": best["fast"]["per_s"],
        "reference": "stock paho-mqtt reader, same client, broker and messages",
        "stock_cpu_us": best["stock"]["cpu_us"],
        "stock_per_s": best["stock"]["per_s"],
        "cpu_ratio_stock_vs_fast": round(best["stock"]["cpu_us"] / best["fast"]["cpu_us"], 2),
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--role"]:  # ["--role", "publisher", n, topic, url]
        publish(int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        asyncio.run(main())
