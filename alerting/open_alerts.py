"""The unresolved alerts alerting follows (by id and by room), and the episodes each room has
already raised or had absorbed, so that one episode alerts once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from nattillsyn.protocol import Alert, AlertStatus

from .alerts_db import Stored

Key = tuple[str, str]  # (site, room)


@dataclass
class OpenAlert:
    alert: Alert
    episode: str | None
    last_notified_at: datetime | None


class OpenAlerts:
    def __init__(self) -> None:
        self.by_id: dict[str, OpenAlert] = {}
        self._by_room: dict[Key, set[str]] = {}
        self._handled: dict[Key, set[str]] = {}

    def __iter__(self) -> Iterator[OpenAlert]:
        """A snapshot: the loop may add and drop alerts while it runs."""
        return iter(list(self.by_id.values()))

    def __len__(self) -> int:
        return len(self.by_id)

    def still_open(self, oa: OpenAlert) -> bool:
        """Whether `oa` is still followed (not resolved meanwhile)."""
        return str(oa.alert.alert_id) in self.by_id

    def add(self, oa: OpenAlert) -> None:
        aid = str(oa.alert.alert_id)
        self.by_id[aid] = oa
        self._by_room.setdefault((oa.alert.site, oa.alert.room), set()).add(aid)

    def drop(self, alert: Alert) -> None:
        aid = str(alert.alert_id)
        self.by_id.pop(aid, None)
        self._by_room.get((alert.site, alert.room), set()).discard(aid)

    def follow(self, stored: Stored) -> None:
        """Take an alert as the database has it (at start-up, after a gateway's upload)."""
        alert = stored.alert
        if stored.episode:
            self.handled((alert.site, alert.room)).add(stored.episode)
        if alert.status is AlertStatus.resolved:
            self.drop(alert)
        else:
            self.add(OpenAlert(alert, stored.episode, stored.last_notified_at))

    def in_room(self, key: Key) -> list[OpenAlert]:
        return [self.by_id[a] for a in self._by_room.get(key, ()) if a in self.by_id]

    def handled(self, key: Key) -> set[str]:
        """The room's episodes that raised an alert or were absorbed by an open one."""
        return self._handled.setdefault(key, set())

    def firing(self) -> int:
        return sum(1 for o in self.by_id.values() if o.alert.status is AlertStatus.firing)
