"""The monitoring schedule, enforced on the device (pure).

The server sends `monitoring` (consent, decision, pause) and the daily windows;
the device also checks the windows itself so monitoring stops on time even
when the link to the server is down.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nattillsyn.protocol import DeviceConfig, MonitoringWindow


def _hm(s: str) -> time:
    h, m = s.split(":")
    return time(int(h), int(m))


def in_window(w: MonitoringWindow, local: time) -> bool:
    start, end = _hm(w.start), _hm(w.end)
    if start == end:
        return True  # the whole day
    if start < end:
        return start <= local < end
    return local >= start or local < end  # across midnight, e.g. 22:00-07:00


def monitoring_allowed(config: DeviceConfig | None, now: datetime, default: bool) -> bool:
    """Whether the device may analyse now under `config` (None: `default`)."""
    if config is None:
        return default
    if not config.monitoring:
        return False
    if not config.schedule:
        return True
    try:
        tz = ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = now.astimezone(tz).time()
    return any(in_window(w, local) for w in config.schedule)
