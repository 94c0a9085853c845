"""When an open alert is sounded again, escalated or re-sounded; pure.

- **repeat**: a firing (unacknowledged) alert sounds again every `repeat_s`;
- **escalate**: step n of the policy is reached `after_s` after the alert was raised while
  it is still unacknowledged; acknowledgement stops escalation (GoAlert);
- **resound**: an acknowledged but unresolved alert sounds again `resound_s` after the
  acknowledgement (and after each re-sound) unless a staff visit to the room is open
  (VDE 0834: presence of staff in the room clears the call).

Priorities (IEC 60601-1-8): high and medium do all three; low sounds once; info never
sounds. Silenced alerts never sound. Practice alerts never reach external notifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from nattillsyn.protocol import AlertPriority, AlertStatus

Reason = Literal["new", "repeat", "escalate", "resound"]
LOUD = frozenset({AlertPriority.high, AlertPriority.medium})


@dataclass(frozen=True)
class Step:
    after_s: float
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    repeat_s: float = 60.0
    resound_s: float = 180.0
    steps: tuple[Step, ...] = (Step(0, ("unit",)),)

    @classmethod
    def from_settings(cls, cfg) -> Policy:
        steps = tuple(
            Step(s.after_s, tuple(s.targets))
            for s in sorted(cfg.escalation, key=lambda s: s.after_s)
        )
        return cls(cfg.repeat_s, cfg.resound_s, steps)


@dataclass(frozen=True)
class Tracking:
    """The part of an alert's state the schedule depends on."""

    status: AlertStatus
    priority: AlertPriority
    raised_at: datetime
    acknowledged_at: datetime | None = None
    last_notified_at: datetime | None = None
    step: int = 0  # steps reached so far (0: none yet, not even the unit)
    silenced: bool = False
    practice: bool = False
    visit_open: bool = False


@dataclass(frozen=True)
class Notification:
    reason: Reason
    sound: bool
    step: int  # steps reached after this notification
    new_targets: tuple[str, ...]  # targets first reached now (external notifiers are paged)


def allowed_targets(targets: tuple[str, ...], practice: bool) -> tuple[str, ...]:
    if not practice:
        return targets
    return tuple(t for t in targets if not t.startswith("notifier:"))


def targets_reached(policy: Policy, step: int, practice: bool = False) -> list[str]:
    out: list[str] = []
    for s in policy.steps[:step]:
        for t in allowed_targets(s.targets, practice):
            if t not in out:
                out.append(t)
    return out


def due(t: Tracking, policy: Policy, now: datetime) -> Notification | None:
    """The notification due now, if any (at most one per call; call again after applying it)."""
    if t.status is AlertStatus.resolved:
        return None
    loud = t.priority in LOUD and not t.silenced
    sounds = t.priority is not AlertPriority.info and not t.silenced
    if t.status is AlertStatus.firing:
        # Steps reached by now (the first, after 0 s, is the unit itself).
        reach = t.step
        if loud or t.step == 0:
            while (
                reach < len(policy.steps)
                and t.raised_at + timedelta(seconds=policy.steps[reach].after_s) <= now
            ):
                reach += 1
                if not loud:
                    break  # low/info/silenced: the unit only, never escalated
        if reach > t.step:
            new = tuple(
                x
                for s in policy.steps[t.step : reach]
                for x in allowed_targets(s.targets, t.practice)
            )
            return Notification("new" if t.step == 0 else "escalate", sounds, reach, new)
        if (
            loud
            and t.last_notified_at is not None
            and now - t.last_notified_at >= timedelta(seconds=policy.repeat_s)
        ):
            return Notification("repeat", True, t.step, ())
        return None
    # acknowledged
    if not loud or t.visit_open or t.acknowledged_at is None:
        return None
    last = max(t.acknowledged_at, t.last_notified_at or t.acknowledged_at)
    if now - last >= timedelta(seconds=policy.resound_s):
        return Notification("resound", True, t.step, ())
    return None


def next_at(t: Tracking, policy: Policy) -> datetime | None:
    """When `due` will next return something (for sleeping until then), None if never."""
    if t.status is AlertStatus.resolved:
        return None
    loud = t.priority in LOUD and not t.silenced
    times: list[datetime] = []
    if t.status is AlertStatus.firing:
        if t.step < len(policy.steps) and (loud or t.step == 0):
            times.append(t.raised_at + timedelta(seconds=policy.steps[t.step].after_s))
        if loud and t.last_notified_at is not None:
            times.append(t.last_notified_at + timedelta(seconds=policy.repeat_s))
    elif loud and not t.visit_open and t.acknowledged_at is not None:
        last = max(t.acknowledged_at, t.last_notified_at or t.acknowledged_at)
        times.append(last + timedelta(seconds=policy.resound_s))
    return min(times) if times else None


__all__ = [
    "Notification",
    "Policy",
    "Step",
    "Tracking",
    "allowed_targets",
    "due",
    "next_at",
    "targets_reached",
]
