"""Settings of the ingest service."""

from typing import Any

from pydantic import Field, model_validator

from .base import Section
from .fields import Days, MetricsPort


def _kept(days: int, rows: str) -> Any:
    return Field(days, description=f"Keep {rows} this many days (0 = for ever).")


class IngestSettings(Section):
    batch_size: int = Field(1000, description="Rows per COPY batch at most.", ge=1, le=100_000)
    batch_ms: int = Field(
        20,
        description="Longest time a message waits for its batch to fill before the batch is "
        "written (ms); under load batches fill to batch_size first.",
        ge=1,
        le=10_000,
    )
    workers: int = Field(
        1,
        description="Worker processes sharing the load through an MQTT 5 shared subscription "
        "(1 with an MQTT 3.1.1 broker). Each has its own persistent session: keep the number "
        "stable, a worker removed for good leaves its queued messages behind until its "
        "session expires.",
        ge=1,
        le=64,
    )
    receive_maximum: int = Field(
        2000,
        description="Messages the broker may have delivered to one worker and not yet had "
        "acknowledged (bounded in-flight; acknowledgement follows the commit). At least "
        "batch_size, ideally twice that so the next batch fills while one is written.",
        ge=1,
        le=65_535,
    )
    device_flush_ms: int = Field(
        1000,
        description="How often the devices table takes the last-seen time, sequence and "
        "heartbeat of devices (ms); availability and config changes are written with their "
        "batch. One row per device per interval instead of one per message; a worker killed "
        "outright loses at most this much of it (the next message puts it right). 0 = with "
        "every batch.",
        ge=0,
        le=60_000,
    )
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        description="How long the broker keeps a stopped worker's session and queued messages (s).",
        ge=60,
        le=365 * 24 * 3600,
    )
    client_id: str = Field(
        "nattillsyn-ingest",
        description="MQTT client id prefix; workers add -<topic root>-w<n> (persistent sessions).",
        min_length=1,
        max_length=64,
    )
    max_payload: int = Field(
        65536, description="Largest accepted payload (bytes).", ge=256, le=1 << 24
    )
    metrics_port: MetricsPort = Field(
        0, description="Prometheus port; worker n uses this + n; 0 = off."
    )
    maintenance_s: float = Field(
        60.0,
        description="Interval of storage maintenance (retention and summary refreshes on "
        "plain PostgreSQL, dead-letter retention on both); 0 = off.",
        ge=0,
        le=86_400,
    )
    apply_policies: bool = Field(
        True, description="Set the retention/compression policies below at start."
    )
    retention_events_days: Days = _kept(90, "raw events")
    retention_room_states_days: Days = _kept(90, "raw room states")
    retention_heartbeats_days: Days = _kept(30, "raw heartbeats")
    retention_dead_letters_days: Days = _kept(30, "dead letters")
    compress_after_days: Days = Field(
        7,
        description="Compress telemetry chunks older than this many days (TimescaleDB; 0 = never).",
    )

    @model_validator(mode="after")
    def _inflight_holds_a_batch(self) -> "IngestSettings":
        if self.receive_maximum < self.batch_size:
            raise ValueError(
                f"receive_maximum ({self.receive_maximum}) must be at least batch_size "
                f"({self.batch_size}): the broker would never deliver a full batch"
            )
        return self
