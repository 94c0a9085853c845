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

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.protocol import GatewayMode


@dataclass
class ModeMachine:
    """Every method takes the time it decides at; without one it asks `clock`."""

    takeover_after_s: float
    handback_after_s: float
    started: datetime | None = None  # None: the clock's now
    mode: GatewayMode = GatewayMode.normal
    mode_since: datetime | None = None
    centre_seen: datetime | None = None  # last beacon
    contact_since: datetime | None = None  # first beacon of the current unbroken contact
    reason: str = "start"
    clock: Clock = field(default=SYSTEM, repr=False)

    def __post_init__(self) -> None:
        self.started = self.started or self.clock.now()
        self.mode_since = self.mode_since or self.started

    def contact(self, now: datetime | None = None) -> bool:
        last = self.centre_seen or self.started  # at start: give the centre time to speak
        return ((now or self.clock.now()) - last).total_seconds() < self.takeover_after_s

    def beacon(self, now: datetime | None = None) -> None:
        now = now or self.clock.now()
        if self.contact_since is None or self.centre_seen is None or not self.contact(now):
            self.contact_since = now
        self.centre_seen = now

    def link_lost(self) -> None:
        """The upstream connection broke: contact must be proven again from scratch."""
        self.contact_since = None

    def decide(
        self,
        now: datetime | None = None,
        *,
        unconfirmed: bool = False,
        handed_over: bool = False,
    ) -> GatewayMode | None:
        """The mode to switch to now, if any. `unconfirmed`: a high-priority alert the
        centre has not published in time; `handed_over`: upload done and spool drained."""
        now = now or self.clock.now()
        contact = self.contact(now) and self.contact_since is not None
        if self.mode is GatewayMode.normal:
            if not self.contact(now):
                return self.switch(GatewayMode.fallback, now, "centre silent")
            if unconfirmed:
                return self.switch(GatewayMode.fallback, now, "alert not confirmed by the centre")
            return None
        if self.mode is GatewayMode.fallback:
            stable = (
                contact
                and self.contact_since is not None
                and (now - self.contact_since) >= timedelta(seconds=self.handback_after_s)
            )
            return self.switch(GatewayMode.handback, now, "centre back") if stable else None
        # handback
        if not contact:
            return self.switch(GatewayMode.fallback, now, "centre silent during handback")
        if handed_over:
            return self.switch(GatewayMode.normal, now, "handed back")
        return None

    def switch(self, mode: GatewayMode, now: datetime | None, reason: str) -> GatewayMode:
        """Go to `mode` now, for `reason` (`decide` does this; a restart in fallback too)."""
        now = now or self.clock.now()
        self.mode, self.mode_since, self.reason = mode, now, reason
        if mode is GatewayMode.fallback:
            self.contact_since = None  # the centre must be heard anew before a handback
        return mode


__all__ = ["ModeMachine"]
