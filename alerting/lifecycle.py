"""Alert lifecycle (Alertmanager / GoAlert vocabulary), pure: firing → acknowledged → resolved.

Resolving straight from firing is allowed and kept visible as resolved-unacknowledged
(acknowledged_at stays empty), which the evaluation counts separately. Who and when are
kept for each step; a resolve by staff carries an outcome (needed help / false alarm /
not needed), one by the system (`by="system"`, its cause cleared) carries none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nattillsyn.protocol import Alert, AlertStatus

SYSTEM = "system"


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


def resolve(alert: Alert, at: datetime, by: str = SYSTEM, outcome: str | None = None) -> Transition:
    if alert.status is AlertStatus.resolved:
        return Transition(alert, False)
    update = {"status": AlertStatus.resolved, "resolved_at": at, "resolved_by": by}
    if outcome is not None:
        update["outcome"] = outcome
    return Transition(alert.model_copy(update=update), True)


def republished(alert: Alert, **update) -> Alert:
    """The same alert as a new message (new id and ts), e.g. a repeat while firing."""
    data = alert.model_dump(exclude={"id", "ts"})
    data.update(update)
    return Alert.model_validate(data)


__all__ = ["SYSTEM", "InvalidTransition", "Transition", "acknowledge", "republished", "resolve"]
