"""Settings of the care-home gateway, and of the centre's side of it (`NATTILLSYN_GATEWAY__…`).

On the gateway, the top-level `mqtt_url` is the site's local broker and `database_url` the
gateway's local PostgreSQL (the replica of the site's configuration and what happens on site);
`api.host`/`api.port` is where it serves the tablet page on the local network.
"""

from pathlib import Path
from typing import Literal

from pydantic import Field

from .base import Section
from .fields import MetricsPort, Targets


class GatewaySettings(Section):
    upstream_url: str | None = Field(
        None,
        description="Central broker URL the site bridges to (mqtts://user:pass@host:8883).",
        max_length=500,
    )
    upstream_ca_file: Path | None = Field(
        None, description="CA certificate of the central broker (unset: system CAs)."
    )
    upstream_cert_file: Path | None = Field(
        None, description="The gateway's client certificate (mutual TLS, optional)."
    )
    upstream_key_file: Path | None = Field(None, description="The gateway's client private key.")
    id: str = Field(
        "gateway",
        description="This gateway's id within its site.",
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
    )
    metrics_port: MetricsPort = 0
    state_dir: Path | None = Field(
        None,
        description="Folder of the store-and-forward spool; default $STATE_DIRECTORY (systemd), "
        "else in memory (lost on restart: only for tests).",
    )
    spool_max_mb: float = Field(
        1024.0,
        description="Disk bound of the spool (MB of topics and payloads). When full, the oldest "
        "heartbeats, then motion events, then states are dropped; other events never are.",
        ge=0.01,
        le=1_000_000,
    )
    spool_warn_ratio: float = Field(
        0.8,
        description="Spool fill above this share of its bound → system alert and metric.",
        ge=0.1,
        le=0.99,
    )
    spool_sync: Literal["full", "normal"] = Field(
        "full",
        description="SQLite synchronous mode of the spool: full survives a power cut; normal "
        "only a crash of the process (faster on slow SD cards).",
    )
    inflight: int = Field(
        200, description="Messages sent to the centre awaiting its PUBACK.", ge=1, le=10000
    )
    heartbeat_s: float = Field(
        5.0, description="Gateway heartbeat to the centre (s).", gt=0, le=300
    )
    takeover_after_s: float = Field(
        20.0,
        description="The centre silent (no link or no word from its alerting) this long → the "
        "gateway alerts for its rooms (s).",
        ge=1,
        le=3600,
    )
    confirm_s: float = Field(
        5.0,
        description="An alert the gateway raised that the centre has not published within this "
        "time → the gateway takes over at once (s; VDE 0834: a call reaches staff in 5 s).",
        ge=0.5,
        le=600,
    )
    handback_after_s: float = Field(
        10.0,
        description="The centre heard again for this long → upload and hand back (s).",
        ge=0,
        le=3600,
    )
    sync_timeout_s: float = Field(
        30.0, description="Wait this long for the centre to confirm an upload (s).", gt=0, le=600
    )
    sync_batch: int = Field(
        100,
        description="Rows per upload message (kept under the broker's size limit).",
        ge=1,
        le=1000,
    )
    local_alerting: bool = Field(
        True,
        description="Run the alert rules on site (needs database_url: the local PostgreSQL); "
        "off: bridge and spool only.",
    )
    tablet_page: bool = Field(
        True, description="Serve the tablet page on the local network (api.host, api.port)."
    )
    local_retention_h: float = Field(
        48.0,
        description="Site telemetry kept in the local database (h); alerts, rounds and visits "
        "stay until uploaded.",
        ge=1,
        le=24 * 90,
    )
    # -- the centre's side (read by the central alerting service) ---------------------------
    watch_sites: bool = Field(
        True,
        description="(centre) Alerting watches gateways: site offline, leaves a site's rooms "
        "to its gateway while it alerts, merges uploads, publishes site snapshots.",
    )
    site_offline_after_s: float = Field(
        30.0,
        description="(centre) No gateway heartbeat this long → 'site offline' alert (s).",
        ge=3,
        le=3600,
    )
    site_offline_targets: Targets = Field(
        default_factory=lambda: ["group:oncall", "notifier:webhook"],
        description="(centre) Who hears 'site offline' (the on-call role): `group:<name>` "
        "tablets, `notifier:<name>`; the site's own tablets cannot be reached then.",
    )
    snapshot_interval_s: float = Field(
        60.0,
        description="(centre) Rebuild each site's configuration snapshot at least this often "
        "(s); care-model changes publish it at once.",
        ge=5,
        le=3600,
    )
