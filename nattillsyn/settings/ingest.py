"""Settings of the ingest service."""

from pydantic import Field

from .base import Section


class IngestSettings(Section):
    batch_size: int = Field(1000, description="Rows per COPY batch at most.", ge=1, le=100_000)
    batch_ms: int = Field(
        50, description="Longest wait before a partial batch is written (ms).", ge=1, le=10_000
    )
    client_id: str = Field(
        "nattillsyn-ingest", description="MQTT client id (persistent session).", min_length=1
    )
    max_payload: int = Field(
        65536, description="Largest accepted payload (bytes).", ge=256, le=1 << 24
    )
    metrics_port: int = Field(0, description="Prometheus port; 0 = off.", ge=0, le=65535)
