"""nattillsyn: digital night supervision for elderly care.

The code lives in one import namespace, one sub-package per deployable:
`nattillsyn.edge`, `.gateway`, `.ingest`, `.alerting`, `.api`, and the shared
contract `nattillsyn.protocol`. This package holds what they share: settings,
logging, metrics, the MQTT client wrapper, database migrations and the CLI.
"""

__version__ = "0.1.0"
