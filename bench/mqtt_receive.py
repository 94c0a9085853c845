"""Benchmark: the fast MQTT reader (nattillsyn/mqtt_fastpath.py) against stock paho.

`python -m bench.mqtt_receive [--json] [--messages N] [--rounds R]`

A private Mosquitto; a raw-socket MQTT 5 publisher process sends N QoS 1 messages (an
ingest-sized JSON payload, at most 18 unconfirmed per connection: Mosquitto's receive
maximum is 20) to one `MqttClient` subscriber with manual acknowledgement, which takes
them with `next_batch` and acknowledges each batch with `ack_many`, as an ingest worker
does. The same client runs with the fast reader and, as the reference, with stock
paho-mqtt's reader (`mqtt_fastpath.AVAILABLE` off): the same broker, messages, event-loop
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

from nattillsyn import mqtt_fastpath
from nattillsyn.embedded import PrivateMosquitto
from nattillsyn.mqtt import MqttClient

PUBLISHER = r"""
import socket, struct, sys, threading
n, topic = int(sys.argv[1]), sys.argv[2].encode()
port = int(sys.argv[3])
def pkt(cmd, body):
    size, length = len(body), bytearray()
    while True:
        b, size = size & 0x7F, size >> 7
        length.append(b | (0x80 if size else 0))
        if not size:
            return bytes([cmd]) + bytes(length) + body
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
connect = struct.pack("!H", 4) + b"MQTT" + bytes([5, 2]) + struct.pack("!H", 60) + b"\x00"
s.sendall(pkt(0x10, connect + struct.pack("!H", 6) + b"rawpub"))
s.recv(100)
acked, cv = [0], threading.Condition()
def drain():
    while True:
        d = s.recv(1 << 16)
        if not d:
            return
        with cv:
            acked[0] += len(d) // 4  # PUBACK: 40 02 <id>
            cv.notify()
threading.Thread(target=drain, daemon=True).start()
payload = (b'{"v":1,"id":"0f8fad5b-d9cb-469f-a165-70867728950e","site":"site-1",'
           b'"room":"rum-101","device":"cam-101","session":1,"seq":%d,'
           b'"ts":"2026-12-04T03:00:00Z","type":"motion","phase":"update"}')
buf = bytearray()
for i in range(n):
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", i % 60000 + 1) + b"\x00"
    buf += pkt(0x32, body + payload % i)
    if len(buf) > 1500 or i == n - 1:
        s.sendall(buf)
        buf = bytearray()
        with cv:
            cv.wait_for(lambda: i + 1 - acked[0] < 18)
with cv:
    cv.wait_for(lambda: acked[0] >= n)
s.sendall(pkt(0xE0, b"\x00"))
"""


async def receive(url: str, port: int, n: int, fast: bool) -> dict:
    saved = mqtt_fastpath.AVAILABLE
    mqtt_fastpath.AVAILABLE = fast
    try:
        sub = MqttClient(url, f"rx-{uuid.uuid4().hex[:6]}", manual_ack=True, receive_maximum=1000)
    finally:
        mqtt_fastpath.AVAILABLE = saved
    topic = f"bench/{uuid.uuid4().hex[:6]}/event"
    await sub.start()
    await sub.subscribe(topic, qos=1)
    pub = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, str(n), topic, str(port)
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
    if not mqtt_fastpath.AVAILABLE:
        sys.exit("this paho release lacks what the fast reader needs: nothing to compare")
    broker = PrivateMosquitto()
    url = await asyncio.to_thread(broker.start)
    runs: dict[str, list[dict]] = {"fast": [], "stock": []}
    try:
        for _ in range(args.rounds):
            for name in ("fast", "stock"):
                r = await receive(url, broker.port, args.messages, name == "fast")
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
    asyncio.run(main())
