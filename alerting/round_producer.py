"""Digital rounds at the agreed times: the service calls `produce` every `round_check_s`; the
entries whose time has come are made and stored (`rounds_db.produce_due`, idempotent)."""

from __future__ import annotations

from prometheus_client import Counter

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.settings.alerting import AlertingSettings

from . import rounds_db
from .database import Database

logger = log.get(__name__)

ROUNDS = Counter("nattillsyn_alerting_round_entries_total", "Round entries made", ["decision"])


class RoundProducer:
    def __init__(
        self, cfg: AlertingSettings, schema: str, db: Database, clock: Clock = SYSTEM
    ) -> None:
        self.cfg, self.schema, self.db, self.clock = cfg, schema, db, clock

    async def produce(self) -> None:
        made = await self.db.run(
            lambda conn: rounds_db.produce_due(
                conn,
                self.schema,
                self.clock.now(),
                self.cfg.round_window_s,
                self.cfg.round_grace_s,
            )
        )
        for entry in made:
            ROUNDS.labels(entry["decision"]).inc()
            logger.info(
                "round entry",
                site=entry["site"],
                room=entry["room"],
                decision=entry["decision"],
                reason=entry["reason"],
            )
