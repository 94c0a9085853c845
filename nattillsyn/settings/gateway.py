"""Settings of the care-home gateway."""

from pydantic import Field

from .base import Section


class GatewaySettings(Section):
    upstream_url: str | None = Field(None, description="Central broker URL the site bridges to.")
    metrics_port: int = Field(0, description="Prometheus port; 0 = off.", ge=0, le=65535)
