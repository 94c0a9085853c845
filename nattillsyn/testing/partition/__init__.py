"""The partition harness: a care home cut off from the centre, with network namespaces.

Used by `tests/test_gateway_partition.py` (a short cut) and `python -m bench.partition` (the
issue's 10-minute cut); the scenario is described there and in docs/gateway.md.

- `netns`: the three namespaces (centre, site, reference) and their veth pairs; the cut.
- `runner`: each role as a process inside its namespace, spoken to with JSON lines
  (`python -m nattillsyn.testing.partition --role …` is that process).
- `centre`, `sites`: the roles: the centre's services; the care home with the gateway and
  the reference care home with Mosquitto's own bridge.
- `clients`: synthetic rooms, a staff MQTT client, a tablet on the gateway's page.
- `scenario`: start, cut, falls, restore, and the figures.
"""

from nattillsyn.testing.partition.netns import netns_unavailable
from nattillsyn.testing.partition.scenario import PartitionOptions, scenario

__all__ = ["PartitionOptions", "netns_unavailable", "scenario"]
