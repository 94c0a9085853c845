"""Settings of the alerting service."""

from pydantic import Field

from .base import Section


class AlertingSettings(Section):
    client_id: str = Field("nattillsyn-alerting", description="MQTT client id.", min_length=1)
    repeat_s: float = Field(
        60.0,
        description="Publish a firing alert again this often until acknowledged (s).",
        gt=0,
        le=3600,
    )
    metrics_port: int = Field(0, description="Prometheus port; 0 = off.", ge=0, le=65535)
