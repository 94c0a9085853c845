"""Alerts the gateway's alerting held back in standby, until the centre publishes them.

While the centre is in charge the local alerting raises the same alerts under the same ids
and announces nothing. An alert the centre has published (seen coming down the bridge) is
*confirmed*; one it has not is *unannounced* and goes out on site at a takeover. A
high-priority one still unannounced after `confirm_s` is itself a reason to take over.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import OrderedDict

from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.protocol import Alert, AlertPriority

CONFIRMED_KEEP = 4096
FORGET_AFTER_S = 600.0  # held and never confirmed: the centre may not raise it at all


class HeldAlerts:
    def __init__(self, confirm_s: float, clock: Clock = SYSTEM) -> None:
        self.confirm_s = confirm_s
        self.clock = clock
        self.unannounced: dict[uuid.UUID, float] = {}  # id → deadline (clock.monotonic)
        self.urgent: set[uuid.UUID] = set()  # high priority among them (confirm_s applies)
        self.confirmed: OrderedDict[uuid.UUID, None] = OrderedDict()

    def held(self, alert: Alert) -> None:
        """The local alerting (standby) would have announced this."""
        if alert.notify != "new" or alert.alert_id in self.confirmed:
            return
        self.unannounced[alert.alert_id] = self.clock.monotonic() + self.confirm_s
        if alert.priority is AlertPriority.high and not alert.practice:
            self.urgent.add(alert.alert_id)

    def published(self, payload: bytes) -> None:
        """The centre published this alert (an encoded `Alert` brought down)."""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            aid = uuid.UUID(json.loads(payload)["alert_id"])
            self.confirmed[aid] = None
            while len(self.confirmed) > CONFIRMED_KEEP:
                self.confirmed.popitem(last=False)
            self._forget(aid)

    def overdue(self) -> bool:
        """A high-priority alert the centre has not published in time; forgets old ones."""
        mono = self.clock.monotonic()
        late = any(self.unannounced.get(a, mono + 1) <= mono for a in self.urgent)
        for aid, deadline in list(self.unannounced.items()):
            if deadline + FORGET_AFTER_S < mono:
                self._forget(aid)
        return late

    def take(self) -> set[uuid.UUID]:
        """Every unannounced alert, for the takeover to announce; they are no longer held."""
        out = set(self.unannounced)
        self.unannounced.clear()
        self.urgent.clear()
        return out

    def _forget(self, aid: uuid.UUID) -> None:
        self.unannounced.pop(aid, None)
        self.urgent.discard(aid)


__all__ = ["HeldAlerts"]
