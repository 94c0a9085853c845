"""Settings of the alerting service (and the tablet parts of the api that share them)."""

from typing import Any

from pydantic import Field, SecretStr, field_validator

from .base import Section
from .fields import AlertDelay, MetricsPort, Targets


class EscalationStep(Section):
    after_s: float = Field(
        description="Seconds after the alert was raised, while still unacknowledged.",
        ge=0,
        le=24 * 3600,
    )
    targets: Targets = Field(
        description="`unit` (the unit's tablets), `group:<name>` (tablets enrolled in that "
        "group, e.g. a neighbouring unit or the night nurse), `notifier:<name>` (external: "
        "`notifier:webhook` for an SMS/phone gateway)."
    )

    @field_validator("targets")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for t in v:
            if not (t == "unit" or t.startswith(("group:", "notifier:"))):
                raise ValueError(f"unknown escalation target {t!r}")
        return v


DEFAULT_STEPS = [
    EscalationStep(after_s=0, targets=["unit"]),
    EscalationStep(after_s=180, targets=["group:backup"]),
    EscalationStep(after_s=360, targets=["notifier:webhook"]),
]


def _system_alert(delay_s: float, condition: str) -> Any:
    return Field(delay_s, description=f"{condition} this long → system alert (s).")


class AlertingSettings(Section):
    client_id: str = Field("nattillsyn-alerting", description="MQTT client id.", min_length=1)
    repeat_s: float = Field(
        60.0,
        description="Sound a firing (unacknowledged) alert again this often (s).",
        gt=0,
        le=3600,
    )
    resound_s: float = Field(
        180.0,
        description="Sound an acknowledged but unresolved alert again after this long (s; "
        "VDE 0834 ≈ 3 min); not while a staff visit to the room is open.",
        gt=0,
        le=24 * 3600,
    )
    escalation: list[EscalationStep] = Field(
        default_factory=lambda: [s.model_copy() for s in DEFAULT_STEPS],
        description="Escalation steps of high and medium alerts; acknowledgement stops them.",
        min_length=1,
        max_length=10,
    )
    tick_s: float = Field(
        1.0, description="Timer resolution for delays, repeats and escalation (s).", gt=0, le=30
    )
    offline_after_s: float = Field(
        60.0,
        description="No heartbeat from a room's device this long → device offline alert (s).",
        ge=1,
        le=3600,
    )
    camera_covered_delay_s: AlertDelay = _system_alert(30.0, "Camera covered")
    too_dark_delay_s: AlertDelay = _system_alert(60.0, "Image too dark")
    camera_moved_delay_s: AlertDelay = Field(
        0.0, description="Camera moved → system alert after (s)."
    )
    backlog_threshold: int = Field(
        100, description="Edge send queue at or above this → backlog condition.", ge=1
    )
    backlog_delay_s: AlertDelay = _system_alert(60.0, "Edge backlog")
    paused_delay_s: AlertDelay = Field(
        120.0,
        description="Device reports `paused` this long while monitoring should run → alert (s).",
    )
    care_refresh_s: float = Field(
        5.0,
        description="Re-read residents, schedules, pauses and silences at least this often (s); "
        "changes also arrive at once by LISTEN/NOTIFY.",
        gt=0,
        le=300,
    )
    round_window_s: float = Field(
        600.0, description="A digital round looks at the sensor data of this long (s).", gt=0
    )
    round_grace_s: float = Field(
        1800.0,
        description="A round missed (service down) is still produced this long after its time (s).",
        ge=0,
        le=6 * 3600,
    )
    round_check_s: float = Field(
        10.0, description="How often due tillsyn times are looked for (s).", gt=0, le=300
    )
    webhook_url: str | None = Field(
        None,
        description="External notifier (SMS/phone gateway): alerts are POSTed here as JSON at "
        "the `notifier:webhook` step.",
        pattern=r"^https?://",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key; the signature goes in X-Nattillsyn-Signature."
    )
    webhook_timeout_s: float = Field(5.0, description="Webhook timeout (s).", gt=0, le=60)
    vapid_private_key: SecretStr | None = Field(
        None,
        description="Web Push VAPID private key (PEM or base64url); unset: no web push. "
        "`nattillsyn alerting-keys` makes one.",
    )
    vapid_subject: str = Field(
        "mailto:nattillsyn@localhost", description="VAPID contact (mailto: or https: URL)."
    )
    liveness_stale_s: float = Field(
        30.0,
        description="The api warns every tablet when alerting has not written its liveness "
        "row for this long (s).",
        ge=10,
        le=600,
    )
    metrics_port: MetricsPort = 0
