"""Field types several sections share: the same concept, the same bounds and wording.

A section declares `metrics_port: MetricsPort = 0` and adds only what is its own (a default,
another description); pydantic merges the `Field` here with the one at the assignment.
"""

from typing import Annotated

from pydantic import Field

Port = Annotated[int, Field(ge=0, le=65535)]
MetricsPort = Annotated[Port, Field(description="Prometheus port; 0 = off.")]

# A condition seen by the alerting service this long → a system alert (s).
AlertDelay = Annotated[float, Field(ge=0, le=3600)]

# Who hears an alert: `unit`, `group:<name>`, `notifier:<name>`.
Targets = Annotated[list[str], Field(min_length=1, max_length=10)]

# How long ingest keeps rows (0 = for ever; compression: 0 = never).
Days = Annotated[int, Field(ge=0, le=36_500)]

# An identity provider's URL (issuer, redirect).
ProviderUrl = Annotated[str, Field(max_length=500, pattern=r"^https?://[^\s]+$")]

# Names of ID-token claims to look in.
ClaimNames = Annotated[list[str], Field(max_length=8)]
