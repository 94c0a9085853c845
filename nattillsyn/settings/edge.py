"""Settings of the edge agent (one per room device)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .base import Section
from .fields import MetricsPort


class EdgeSettings(Section):
    room: str = Field(
        "room-1", description="Room id this device watches.", min_length=1, max_length=64
    )
    device: str = Field(
        "edge-1", description="Device id, unique within the site.", min_length=1, max_length=64
    )
    source: str = Field(
        "0",
        description="Frame source: a camera index (0), a V4L2 device (/dev/video0), an RTSP URL, "
        "a video file or a directory of clips replayed in order.",
    )
    fps: float = Field(5.0, description="Analysed frames per second.", gt=0, le=60)
    width: int = Field(
        160, description="Analysis width in pixels; frames are downscaled to it.", ge=32, le=1920
    )
    replay_speed: float = Field(
        1.0,
        description="Replay speed for files: 1 = real time, 0 = as fast as possible.",
        ge=0,
        le=100,
    )
    loop: bool = Field(False, description="Replay files/directories forever.")
    hold_last_s: float = Field(
        0.0,
        description="After a file ends, keep analysing its last frame this long (s).",
        ge=0,
        le=3600,
    )
    heartbeat_s: float = Field(15.0, description="Heartbeat interval (s).", gt=0, le=3600)
    state_interval_s: float = Field(
        60.0, description="Periodic retained state interval (s).", gt=0, le=3600
    )
    fall_confirm_s: float = Field(
        30.0,
        description="Stillness after a fall-like motion before a possible fall is raised (s); "
        "the room configuration's value wins once one is applied.",
        ge=0,
        le=600,
    )
    metrics_port: MetricsPort = 0
    room_config: Path | None = Field(
        None,
        description="Room-configuration file (a DeviceConfig JSON document: zones, thresholds, "
        "schedule) used until the server's retained config arrives.",
    )
    monitor_without_config: bool = Field(
        False,
        description="Analyse before any room configuration (with its monitoring flag) is known. "
        "Off in production: no recorded consent, no monitoring. The demo turns it on.",
    )
    state_dir: Path | None = Field(
        None,
        description="Folder for the on-disk event queue and the last applied configuration "
        "(survive restarts and power loss). Unset: $STATE_DIRECTORY (systemd) if set, else "
        "an in-memory queue that is lost on restart (a warning is logged).",
    )
    queue_max_events: int = Field(
        20000,
        description="Events kept at most while the broker is unreachable; when full, the oldest "
        "motion events go first, then the oldest of any type.",
        ge=100,
        le=1_000_000,
    )
    resume_max_s: float = Field(
        900.0,
        description="After a restart within this time the last room state is resumed (a person "
        "asleep does not move); later the agent starts from unknown (s).",
        ge=0,
        le=86400,
    )
    tls_ca_file: Path | None = Field(
        None, description="CA certificate for an mqtts:// broker (unset: system CAs)."
    )
    tls_cert_file: Path | None = Field(
        None, description="This device's client certificate (per-device credentials)."
    )
    tls_key_file: Path | None = Field(None, description="This device's client private key.")
