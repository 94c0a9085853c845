"""Staff actions on alerts (AlertAction on `…/alert/set`): acknowledge, resolve, and raising
a practice alert. Refused or repeated actions republish the alert as it is."""

from __future__ import annotations

from prometheus_client import Counter

from nattillsyn import log
from nattillsyn.protocol import Alert, AlertAction, AlertPriority, AlertStatus

from . import alerts_db, lifecycle, rules
from .open_alerts import OpenAlert
from .paging import Pager

logger = log.get(__name__)

ACTIONS = Counter("nattillsyn_alerting_actions_total", "Staff actions applied", ["action"])


async def act(pager: Pager, action: AlertAction) -> None:
    """Acknowledge or resolve, as staff asked."""
    alert = await pager.db.run(lambda conn: alerts_db.get(conn, action.alert_id))
    if alert is None:
        logger.warning("action on unknown alert", alert=str(action.alert_id))
        return
    oa = pager.book.by_id.get(str(alert.alert_id))
    if oa is not None:  # the in-memory copy knows the schedule fields
        alert = oa.alert.model_copy(update={"rev": alert.rev})
    try:
        if action.action == "acknowledge":
            t = lifecycle.acknowledge(alert, action.by, action.ts)
        else:
            t = lifecycle.resolve(alert, action.ts, action.by, action.outcome)
    except lifecycle.InvalidTransition as exc:
        logger.info("action refused", alert=str(action.alert_id), reason=str(exc))
        await pager.publish(lifecycle.republished(alert))
        return
    if not t.changed:
        await pager.publish(lifecycle.republished(alert))
        return
    new = await pager.db.run(lambda conn: alerts_db.update(conn, t.alert, action.by))
    ACTIONS.labels(action.action).inc()
    if new.status is AlertStatus.resolved:
        pager.book.drop(new)
    elif oa is not None:
        oa.alert = new
    else:
        pager.book.add(OpenAlert(new, None, None))
    await pager.publish(new)


async def practice(pager: Pager, action: AlertAction, site: str, room: str) -> None:
    """A practice alert in the room (training): marked, sounding, never paged out."""
    rc = pager.care.rooms.get((site, room))
    kind = action.kind or "possible_fall"
    alert = Alert(
        alert_id=action.alert_id,
        site=site,
        room=room,
        kind=kind,
        priority=action.priority or AlertPriority.high,
        status=AlertStatus.firing,
        title="ÖVNING – " + rules.title(kind, rc.name if rc else room),
        started=pager.clock.now(),
        practice=True,
    )
    await pager.store_and_announce(alert, None, rc, pager.clock.now(), require_monitoring=False)
