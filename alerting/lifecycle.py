"""Alert lifecycle (Alertmanager / GoAlert vocabulary), pure: firing → acknowledged → resolved.

Resolving straight from firing is allowed and kept visible as resolved-unacknowledged
(acknowledged_at stays empty), which the evaluation counts separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nattillsyn.protocol import Alert, AlertStatus


class InvalidTransition(ValueError):
    pass


@dataclass(frozen=True)
class Transition:
    alert: Alert
    changed: bool


def acknowledge(alert: Alert, by: str, at: datetime) -> Transition:
    if alert.status is AlertStatus.acknowledged:
        return Transition(alert, False)  # a second tap changes nothing
    if alert.status is AlertStatus.resolved:
        raise InvalidTransition("a resolved alert cannot be acknowledged")
    new = alert.model_copy(
        update={"status": AlertStatus.acknowledged, "acknowledged_at": at, "acknowledged_by": by}
    )
    return Transition(new, True)


def resolve(alert: Alert, at: datetime) -> Transition:
    if alert.status is AlertStatus.resolved:
        return Transition(alert, False)
    return Transition(
        alert.model_copy(update={"status": AlertStatus.resolved, "resolved_at": at}), True
    )


def republished(alert: Alert) -> Alert:
    """The same alert state as a new message (new id and ts), e.g. a repeat while firing."""
    return Alert.model_validate(alert.model_dump(exclude={"id", "ts"}))


__all__ = ["InvalidTransition", "Transition", "acknowledge", "republished", "resolve"]
