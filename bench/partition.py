"""Partition: a care home cut off from the centre, with network namespaces.

    python -m bench.partition [--outage-s 600] [--rooms 6] [--json]

Three network namespaces on this machine, joined by veth pairs like separate hosts:

```
  centre (10.231.N.1)  ── veth ──  site      (10.231.N.2): Mosquitto, gateway (with its local
  PostgreSQL, Mosquitto,           PostgreSQL, standby alerting, tablet page), synthetic rooms,
  ingest, alerting, api            a tablet signed in on the gateway's page, an MQTT client
                       ── veth ──  reference (10.231.M.2): Mosquitto bridged to the centre by
                                   Mosquitto's own bridge (persistent queue), synthetic rooms
```

The **reference** is the same care home without the gateway's fallback: a plain
store-and-forward bridge (Mosquitto's, `cleansession false`, queued QoS 1), as the
issue allows instead of the project's bridge. Both sites get the same traffic, the same cut
and the same fall at the same moment, in the same run.

Scenario: rooms produce heartbeats, room states and motion events; after a warm-up a fall
happens with the link up (the centre alerts); then both links are cut (`ip link set … down`,
or `--cut drop` for an nftables drop), a fall happens 2 s into the outage (before the gateway
can know the centre is gone), and once the gateway alerts on site another fall happens:
measured is how long until each reaches the site's tablet (WebSocket on the gateway's page)
and an MQTT client on the site broker; staff acknowledge it on the tablet. After
`--outage-s` the links return; measured: the time until the gateway has uploaded, drained
and handed back, every device message in the central database exactly once (published,
stored, duplicated, lost per site), the central alert history of the falls (the local alert
and its acknowledgement), and how often staff were told of each fall as new (centre and
site): the duplicates sent to staff.

Needs root and `ip` (iproute2); PostgreSQL server binaries and Mosquitto. Everything it
creates (namespaces, veths, processes, temporary folders) is removed at the end, also on
failure. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

from nattillsyn.testing.partition import PartitionOptions, scenario


def main() -> int:
    d = PartitionOptions()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--outage-s", type=float, default=d.outage_s, help="length of the cut (default 600)"
    )
    p.add_argument("--rooms", type=int, default=d.rooms, help="rooms per care home (default 6)")
    p.add_argument("--rate", type=float, default=d.rate, help="room messages per second per site, "
                   "besides heartbeats (default 8)")  # fmt: skip
    p.add_argument(
        "--heartbeat-s", type=float, default=d.heartbeat_s, help="room heartbeat (default 5 s)"
    )
    p.add_argument("--warmup-s", type=float, default=d.warmup_s)
    p.add_argument("--early-fall-s", type=float, default=d.early_fall_s,
                   help="a fall this long into the outage, before the gateway can know the "
                   "centre is gone (default 2; negative: none)")  # fmt: skip
    p.add_argument("--tail-s", type=float, default=d.tail_s, help="traffic after the handback")
    p.add_argument("--takeover-after-s", type=float, default=d.takeover_after_s)
    p.add_argument("--handback-after-s", type=float, default=d.handback_after_s)
    p.add_argument("--site-offline-after-s", type=float, default=d.site_offline_after_s)
    p.add_argument("--cut", choices=["link", "drop"], default=d.cut,
                   help="ip link set … down (default) or an nftables drop")  # fmt: skip
    p.add_argument("--json", action="store_true", help="only the JSON line")
    a = p.parse_args()
    fields = {f.name for f in dataclasses.fields(PartitionOptions)}
    res = asyncio.run(
        scenario(PartitionOptions(**{k: v for k, v in vars(a).items() if k in fields}))
    )
    if not a.json:
        for k, v in res.items():
            if k not in ("gateway_events", "logs"):
                print(f"{k}: {v}")
    print(json.dumps(res, default=str))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
