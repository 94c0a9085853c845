"""Who alerts for the site, decided from what the gateway hears of the centre; pure.

```
normal ──centre silent ≥ takeover_after_s, or a high alert the centre did not publish
  ▲          within confirm_s──────────────────────────────────────► fallback
  │                                                                      │
  └── uploaded and spool drained ◄── handback ◄── centre heard for ≥ handback_after_s
                                        │
                                        └── centre silent again ──► fallback
```

"The centre" is its alerting service: it sends a beacon (`CentreStatus`) every few seconds
through the central broker, so a dead link, a dead central broker and a dead central
alerting look the same here, and each leads to the gateway alerting on site.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from nattillsyn.protocol import GatewayMode


@dataclass
class ModeMachine:
    takeover_after_s: float
    handback_after_s: float
    started: datetime
    mode: GatewayMode = GatewayMode.normal
    mode_since: datetime | None = None
    centre_seen: datetime | None = None  # last beacon
    contact_since: datetime | None = None  # first beacon of the current unbroken contact
    reason: str = "start"

    def __post_init__(self) -> None:
        self.mode_since = self.mode_since or self.started

    def contact(self, now: datetime) -> bool:
        last = self.centre_seen or self.started  # at start: give the centre time to speak
        return (now - last).total_seconds() < self.takeover_after_s

    def beacon(self, now: datetime) -> None:
        if self.contact_since is None or self.centre_seen is None or not self.contact(now):
            self.contact_since = now
        self.centre_seen = now

    def link_lost(self) -> None:
        """The upstream connection broke: contact must be proven again from scratch."""
        self.contact_since = None

    def decide(
        self, now: datetime, *, unconfirmed: bool = False, handed_over: bool = False
    ) -> GatewayMode | None:
        """The mode to switch to now, if any. `unconfirmed`: a high-priority alert the
        centre has not published in time; `handed_over`: upload done and spool drained."""
        contact = self.contact(now) and self.contact_since is not None
        if self.mode is GatewayMode.normal:
            if not self.contact(now):
                return self._to(GatewayMode.fallback, now, "centre silent")
            if unconfirmed:
                return self._to(GatewayMode.fallback, now, "alert not confirmed by the centre")
            return None
        if self.mode is GatewayMode.fallback:
            stable = (
                contact
                and self.contact_since is not None
                and (now - self.contact_since) >= timedelta(seconds=self.handback_after_s)
            )
            return self._to(GatewayMode.handback, now, "centre back") if stable else None
        # handback
        if not contact:
            return self._to(GatewayMode.fallback, now, "centre silent during handback")
        if handed_over:
            return self._to(GatewayMode.normal, now, "handed back")
        return None

    def _to(self, mode: GatewayMode, now: datetime, reason: str) -> GatewayMode:
        self.mode, self.mode_since, self.reason = mode, now, reason
        if mode is GatewayMode.fallback:
            self.contact_since = None  # the centre must be heard anew before a handback
        return mode


__all__ = ["ModeMachine"]
