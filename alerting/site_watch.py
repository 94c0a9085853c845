"""The centre's watch over the care-home gateways (pure).

Each gateway's heartbeat (`GatewayStatus`) is folded in as it arrives. A site whose gateway
has gone quiet is **offline** ("enhet offline", raised to the on-call role); while it is
offline or says it alerts on site (fallback, handback) the centre leaves its rooms to the
gateway (no room alerts, no repeats: one call for one situation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nattillsyn.protocol import AlertPriority, GatewayMode, GatewayStatus

SITE_OFFLINE = "site_offline"
GATEWAY_STORAGE = "gateway_storage"
SITE_TITLES = {
    SITE_OFFLINE: "Enhet offline – {site}: centralen når inte enheten. Ring personalen; "
    "gatewayn larmar på plats om den är igång",
    GATEWAY_STORAGE: "Gatewayns lagring nästan full – {site}: data kan gå förlorad",
}
SITE_PRIORITY = {SITE_OFFLINE: AlertPriority.high, GATEWAY_STORAGE: AlertPriority.medium}


def site_title(kind: str, site_name: str) -> str:
    return SITE_TITLES.get(kind, kind + " – {site}").format(site=site_name)


@dataclass
class SiteGateway:
    gateway: str
    last_seen: datetime  # arrival of its last status here (liveness clock)
    status: GatewayStatus
    offline_since: datetime | None = None  # arrival of its last will


@dataclass(frozen=True)
class SiteCondition:
    site: str
    kind: str
    since: datetime
    episode: str


@dataclass
class SiteWatch:
    offline_after_s: float
    sites: dict[str, SiteGateway] = field(default_factory=dict)

    def apply(self, msg: GatewayStatus, now: datetime) -> bool:
        """Fold one status in; True when the site was not known before (a new gateway)."""
        known = self.sites.get(msg.site)
        if msg.state == "offline":
            # A last will (seq 0) or a clean stop of the session we know (or a newer one).
            if known is None or msg.session < known.status.session:
                return False  # nothing known, or a stale will of an older session
            known.offline_since = known.offline_since or now
            return False
        if known is not None and (msg.session, msg.seq) < (
            known.status.session,
            known.status.seq,
        ):
            return False  # an older status (replayed or reordered)
        new = known is None
        self.sites[msg.site] = SiteGateway(msg.gateway, now, msg)
        return new

    def offline(self, site: str, now: datetime) -> bool:
        g = self.sites.get(site)
        if g is None:
            return False  # no gateway: rooms talk to the centre directly
        if g.offline_since is not None:
            return True
        return (now - g.last_seen).total_seconds() >= self.offline_after_s

    def suppressed(self, site: str, now: datetime) -> bool:
        """The site's rooms are the gateway's: it is out of reach or says it alerts."""
        g = self.sites.get(site)
        if g is None:
            return False
        return self.offline(site, now) or g.status.mode is not GatewayMode.normal

    def conditions(self, now: datetime) -> list[SiteCondition]:
        out = []
        for site, g in self.sites.items():
            if self.offline(site, now):
                since = g.offline_since or g.last_seen
                # The episode is the last status heard: the same on every process.
                out.append(
                    SiteCondition(
                        site,
                        SITE_OFFLINE,
                        since,
                        f"site_offline:{g.gateway}:{g.status.session}:{g.status.seq}",
                    )
                )
            if g.status.spool_warn_since is not None:
                out.append(
                    SiteCondition(
                        site,
                        GATEWAY_STORAGE,
                        g.status.spool_warn_since,
                        f"storage:{g.gateway}:{g.status.spool_warn_since.isoformat()}",
                    )
                )
        return out
