"""Synthetic months of nights for many residents: rounds, visits, room states, alerts with
outcomes, pauses, device health and a baseline from before introduction; pure and seeded.

Used by the demo (history behind the report), the tests and `bench/report.py`. The loader in
`evaluation/load.py` writes the rows with COPY. Assumptions (docs/evaluation.md lists them with
their sources) are the module constants below; each unit draws its own character around them,
so comparisons between units show real differences.

Nothing here is real data: units and residents are named as synthetic.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .baseline import BaselineRow

# --- Assumptions ------------------------------------------------------------------------
AGREED_TIMES = (  # care-plan tillsyn times, drawn per resident
    (time(23, 0), time(2, 0), time(5, 0)),
    (time(22, 30), time(1, 30), time(4, 30)),
    (time(23, 0), time(3, 0)),
    (time(22, 0), time(0, 30), time(3, 0), time(5, 30)),
)
MONITOR_FROM, MONITOR_TO = time(21, 0), time(7, 0)
SPONTANEOUS_PER_NIGHT = (0.4, 2.5)  # the resident's own getting-up episodes (range over residents)
WAKE_AFTER_PHYSICAL = (0.2, 0.4)  # chance a visit to a sleeping resident wakes them (per unit)
WAKE_DELAY_MIN = 4.0  # mean minutes from the visit's end to getting up, when woken
DIGITAL_SHARE = (0.55, 0.9)  # agreed times made digital in the care plans (per unit)
DIGITAL_UNCLEAR = 0.03  # digital check inconclusive although in bed → physical
NOT_IN_BED_PHYSICAL = 0.5  # resident up at the digital check → staff go and look
VISIT_MIN = (2.0, 6.0)  # minutes a night visit takes
VISIT_UNTIMED = 0.05  # visits whose end was not recorded
PLANNED_PER_NIGHT = 0.25  # other planned visits (turning, medication)
UNPLANNED_PER_NIGHT = 0.15  # resident called, staff passed by
BED_EXIT_RULE = 0.25  # residents with a bed-exit alert in their rules
FALL_PER_NIGHT = 0.02  # possible-fall alerts per resident-night
FALSE_FALL, FALSE_BED_EXIT = 0.45, 0.12  # false-alarm shares at introduction…
TUNING_DAYS = 60.0  # …falling towards half of that as rules are tuned (e-folding days)
NO_OUTCOME = 0.08  # alerts resolved without an outcome
PRACTICE_ALERT = 0.01  # practice alerts (kept out of every statistic)
ACK_MEDIAN_S = {"high": 25.0, "medium": 50.0, "low": 90.0}  # lognormal, sigma 0.7
RESPONSE_EXTRA_S = (40.0, 200.0)  # acknowledgement to staff in the room
OUTAGE_PER_NIGHT = 0.03  # device outage during a night (10 min to 3 h)
OUTAGE_WHOLE_NIGHT = 0.004
PAUSE_NIGHT = 0.015  # resident asks for no camera tonight
HOSPITAL_STAY = 0.25  # chance per 90 nights of a 3–10 night stay away (paused)
EVALUATION_CONSENT = 0.9  # consents that also cover pseudonymised evaluation
BASELINE_PLANNED_EXTRA = 0.25  # planned visits beyond the agreed times before introduction
BASELINE_UNPLANNED = 0.35
UNIT_NAMES = (
    "Björkbacken", "Ekhagen", "Lindgården", "Tallbacken", "Rosengården", "Solbacken",
    "Ängsgården", "Granliden", "Sjöudden", "Vallmon", "Hassel", "Lärkan",
)  # fmt: skip
_STATE_PAYLOAD = '{"synthetic": true}'
_ACTIVE = ("out_of_bed", "in_bathroom")


@dataclass(frozen=True)
class ResidentSpec:
    id: uuid.UUID
    room: str
    name: str
    times: tuple[tuple[time, str], ...]  # (agreed time, 'digital' | 'physical')
    monitor_from: time = MONITOR_FROM
    monitor_to: time = MONITOR_TO
    evaluation_consent: bool = True  # consent covers pseudonymised evaluation


@dataclass(frozen=True)
class UnitSpec:
    site: str
    name: str
    residents: tuple[ResidentSpec, ...]
    tz: str = "Europe/Stockholm"
    create: bool = True  # insert site, rooms, residents and care plans too
    digital_share: float = 0.75
    wake_after_physical: float = 0.3


@dataclass
class UnitData:
    """Rows per table, in the column order of `load.COLUMNS`."""

    unit: UnitSpec
    rounds: list[tuple] = field(default_factory=list)
    visits: list[tuple] = field(default_factory=list)
    states: list[tuple] = field(default_factory=list)
    alerts: list[tuple] = field(default_factory=list)
    alert_history: list[tuple] = field(default_factory=list)
    pauses: list[tuple] = field(default_factory=list)
    heartbeats: list[tuple] = field(default_factory=list)  # intervals, expanded by the loader
    baseline: list[BaselineRow] = field(default_factory=list)


def slug(name: str) -> str:
    table = str.maketrans({"å": "a", "ä": "a", "ö": "o", "Å": "a", "Ä": "a", "Ö": "o"})
    return name.translate(table).lower().replace(" ", "-")


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def make_units(units: int, residents_per_unit: int, seed: int = 1) -> list[UnitSpec]:
    """New synthetic units with their residents and care plans."""
    rng = random.Random(seed)
    out = []
    for u in range(units):
        base = UNIT_NAMES[u % len(UNIT_NAMES)]
        name = base if u < len(UNIT_NAMES) else f"{base} {u // len(UNIT_NAMES) + 1}"
        digital_share = rng.uniform(*DIGITAL_SHARE)
        residents = []
        for i in range(residents_per_unit):
            times = rng.choice(AGREED_TIMES)
            plan = tuple(
                (t, "digital" if rng.random() < digital_share else "physical") for t in times
            )
            residents.append(
                ResidentSpec(
                    id=_uuid(rng),
                    room=f"rum-{101 + i}",
                    name=f"Boende {i + 1:02d} (syntetisk)",
                    times=plan,
                    evaluation_consent=rng.random() < EVALUATION_CONSENT,
                )
            )
        out.append(
            UnitSpec(
                site=slug(name),
                name=f"{name} (syntetisk)",
                residents=tuple(residents),
                digital_share=digital_share,
                wake_after_physical=rng.uniform(*WAKE_AFTER_PHYSICAL),
            )
        )
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth: fine for the small rates used here
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class _Night:
    """One resident's night: a timeline of states, built as events are added."""

    def __init__(self, ws: datetime, we: datetime) -> None:
        self.ws, self.we = ws, we
        self.changes: list[tuple[datetime, str]] = []  # (since, state)

    def state_at(self, t: datetime) -> str:
        before = [c for c in self.changes if c[0] <= t]
        return max(before, key=lambda c: c[0])[1] if before else "out_of_bed"


def generate(
    units: list[UnitSpec],
    first_night: date,
    nights: int,
    *,
    intro: date | None = None,
    baseline_nights: int = 28,
    heartbeat_s: int = 300,
    seed: int = 1,
) -> Iterator[UnitData]:
    """Nights [first_night, first_night + nights) for every unit, one unit at a time.

    `intro` (default: first_night) is the first night with digital tillsyn; the baseline covers
    the `baseline_nights` before it.
    """
    intro = intro or first_night
    for ui, unit in enumerate(units):
        rng = random.Random(seed * 1_000_003 + ui)
        data = UnitData(unit)
        tz = ZoneInfo(unit.tz)
        for ri, res in enumerate(unit.residents):
            _resident(rng, data, unit, res, tz, first_night, nights, intro, heartbeat_s, ri)
            _baseline(rng, data, unit, res, intro, baseline_nights, ri)
        yield data


def _local(night: date, t: time, tz: ZoneInfo) -> datetime:
    day = night if t >= time(12, 0) else night + timedelta(days=1)
    return datetime.combine(day, t, tzinfo=tz).astimezone(UTC)


def _window(night: date, res: ResidentSpec, tz: ZoneInfo) -> tuple[datetime, datetime]:
    if res.monitor_from == res.monitor_to:
        return _local(night, time(12, 0), tz), _local(night + timedelta(days=1), time(12, 0), tz)
    ws = _local(night, res.monitor_from, tz)
    we = _local(night, res.monitor_to, tz)
    if we <= ws:
        we += timedelta(days=1)
    return ws, we


def _resident(
    rng: random.Random,
    data: UnitData,
    unit: UnitSpec,
    res: ResidentSpec,
    tz: ZoneInfo,
    first_night: date,
    nights: int,
    intro: date,
    heartbeat_s: int,
    index: int,
) -> None:
    site, room = unit.site, res.room
    device = f"dev-{room}"
    spontaneous = rng.uniform(*SPONTANEOUS_PER_NIGHT)
    bed_exit_rule = rng.random() < BED_EXIT_RULE
    session = 1
    seq = 0
    hospital_left = 0
    for d in range(nights):
        night = first_night + timedelta(days=d)
        if night < intro:
            continue
        ws, we = _window(night, res, tz)  # monitoring (device, coverage)
        ss, se = _local(night, MONITOR_FROM, tz), _local(night, MONITOR_TO, tz)  # the night's sleep
        days_in = (night - intro).days
        tuning = 0.5 + 0.5 * math.exp(-days_in / TUNING_DAYS)
        # Pauses: a night without camera, or a hospital stay over several nights.
        if hospital_left == 0 and rng.random() < HOSPITAL_STAY / 90:
            hospital_left = rng.randint(3, 10)
        paused = hospital_left > 0 or rng.random() < PAUSE_NIGHT
        if paused:
            reason = "sjukhusvistelse" if hospital_left else "boendes önskan"
            data.pauses.append((_uuid(rng), res.id, ws, we, reason, "synthetic"))
        if hospital_left:
            hospital_left -= 1
            continue  # away: no rounds, no visits, no states
        # Device health: outages without heartbeats.
        outages: list[tuple[datetime, datetime]] = []
        if rng.random() < OUTAGE_WHOLE_NIGHT:
            outages.append((ws - timedelta(minutes=30), we + timedelta(minutes=30)))
        elif rng.random() < OUTAGE_PER_NIGHT:
            o_start = ws + (we - ws) * rng.random()
            outages.append((o_start, o_start + timedelta(minutes=rng.uniform(10, 180))))
        hb_from, hb_to = ws - timedelta(minutes=30), we + timedelta(minutes=30)
        cursor = hb_from
        session += 1
        for o_start, o_end in sorted(outages):
            if o_start > cursor:
                data.heartbeats.append((site, room, device, session, cursor, o_start, not paused))
            cursor = max(cursor, o_end)
            session += 1
        if cursor < hb_to:
            data.heartbeats.append((site, room, device, session, cursor, hb_to, not paused))

        def down(t: datetime, outages=outages) -> bool:
            return any(a <= t < b for a, b in outages)

        # The resident's own night: asleep after settling, up a few times, up in the morning.
        n = _Night(ss, se)
        asleep = ss + timedelta(minutes=rng.uniform(0, 60))
        n.changes.append((min(ws, ss), "in_chair"))
        n.changes.append((asleep, "in_bed"))
        episodes = sorted(
            asleep + (se - asleep) * rng.random() for _ in range(_poisson(rng, spontaneous))
        )
        rise = se - timedelta(minutes=rng.uniform(0, 45))
        for onset in episodes:
            if onset < rise:
                _episode(rng, n, onset)
        n.changes.append((rise, "out_of_bed"))
        # Rounds at the agreed times.
        visits: list[tuple[datetime, datetime | None, str, uuid.UUID | None, uuid.UUID | None]] = []
        for at, mode in res.times:
            sched = _local(night, at, tz)
            if not ws <= sched < we:
                continue
            produced = sched + timedelta(seconds=rng.uniform(0, 60))
            st = n.state_at(sched)
            if mode == "physical":
                decision, why = "physical_needed", "fysisk tillsyn enligt genomförandeplan"
            elif paused:
                decision, why = "physical_needed", "pausad"
            elif down(sched):
                decision, why = "physical_needed", "enhet offline"
            elif st in _ACTIVE and rng.random() < NOT_IN_BED_PHYSICAL:
                decision, why = "physical_needed", "inte i sängen"
            elif rng.random() < DIGITAL_UNCLEAR:
                decision, why = "physical_needed", "oklart läge"
            else:
                decision, why = "digital_ok", None
            round_id = _uuid(rng)
            observed = None if (paused or down(sched)) else st
            summary = "Sover lugnt" if st == "in_bed" else "Uppe"
            confirmed = produced + timedelta(seconds=rng.uniform(10, 300))
            data.rounds.append(
                (round_id, site, room, res.id, sched, mode, produced, observed, summary,
                 decision, why, "natt", confirmed, False)
            )  # fmt: skip
            if decision == "physical_needed":
                start = (sched if mode == "physical" else confirmed) + timedelta(
                    minutes=rng.uniform(0, 10)
                )
                visits.append((start, None, "round", round_id, None))
        for _ in range(_poisson(rng, PLANNED_PER_NIGHT)):
            visits.append((ss + (se - ss) * rng.random(), None, "planned", None, None))
        for _ in range(_poisson(rng, UNPLANNED_PER_NIGHT)):
            visits.append((ss + (se - ss) * rng.random(), None, "unplanned", None, None))
        # Alerts: bed exits for residents with that rule, possible falls, device offline.
        alert_specs: list[tuple[datetime, str, str, float]] = []
        if bed_exit_rule and not paused:
            for onset in episodes:
                if not down(onset):
                    alert_specs.append((onset + timedelta(seconds=20), "out_of_bed", "medium",
                                        FALSE_BED_EXIT * tuning))  # fmt: skip
        if not paused and rng.random() < FALL_PER_NIGHT:
            alert_specs.append((ss + (se - ss) * rng.random(), "possible_fall", "high",
                                FALSE_FALL * tuning))  # fmt: skip
        for o_start, _ in outages:
            if ws <= o_start < we:
                alert_specs.append(
                    (o_start + timedelta(seconds=120), "device_offline", "medium", 0.0)
                )
        for started, kind, prio, p_false in alert_specs:
            _alert(rng, data, site, room, device, res.id, started, kind, prio, p_false, visits)
        # Visits in time order: staff in the room show as `present`, and may wake the resident.
        visits.sort(key=lambda v: v[0])
        for start, _end, reason, round_id, alert_id in visits:
            dur = timedelta(minutes=rng.uniform(*VISIT_MIN))
            end = start + dur
            before = n.state_at(start)
            n.changes.append((start, "present"))
            n.changes.append((end, before))
            woken = rng.random() < unit.wake_after_physical
            if reason in ("round", "planned") and before == "in_bed" and woken:
                _episode(rng, n, end + timedelta(minutes=rng.expovariate(1 / WAKE_DELAY_MIN)))
            timed = rng.random() >= VISIT_UNTIMED
            data.visits.append(
                (_uuid(rng), site, room, res.id, start, end if timed else None, "natt", reason,
                 round_id, alert_id, False)
            )  # fmt: skip
        if paused:
            continue  # camera off: no states
        # States on change only, in time order; none while the device is down.
        n.changes.sort(key=lambda c: c[0])
        last = None
        for since, st in n.changes:
            if st == last or since >= we or down(since):
                continue
            last = st
            seq += 1
            ts = since + timedelta(seconds=rng.uniform(0.2, 2.0))
            conf = round(rng.uniform(0.7, 0.99), 2)
            data.states.append(
                (ts, _uuid(rng), site, room, device, session, seq, st, since, conf, _STATE_PAYLOAD)
            )
    del index


def _episode(rng: random.Random, n: _Night, onset: datetime) -> None:
    """Up from bed: out of bed, to the bathroom, back to bed."""
    up = timedelta(minutes=rng.uniform(0.5, 3))
    bath = timedelta(minutes=rng.uniform(3, 10))
    n.changes.append((onset, "out_of_bed"))
    n.changes.append((onset + up, "in_bathroom"))
    n.changes.append((onset + up + bath, "in_bed"))


def _alert(
    rng: random.Random,
    data: UnitData,
    site: str,
    room: str,
    device: str,
    resident: uuid.UUID,
    started: datetime,
    kind: str,
    prio: str,
    p_false: float,
    visits: list,
) -> None:
    alert_id = _uuid(rng)
    practice = rng.random() < PRACTICE_ALERT
    ack = started + timedelta(seconds=rng.lognormvariate(math.log(ACK_MEDIAN_S[prio]), 0.7))
    if kind == "device_offline":
        outcome = "not_needed"
    elif rng.random() < p_false:
        outcome = "false_alarm"
    elif kind == "possible_fall" or rng.random() < 0.5:
        outcome = "needed_help"
    else:
        outcome = "not_needed"
    arrive = ack + timedelta(seconds=rng.uniform(*RESPONSE_EXTRA_S))
    resolved = arrive + timedelta(minutes=rng.uniform(1, 8))
    if outcome == "needed_help" or rng.random() < 0.5:
        visits.append((arrive, None, "alert", None, alert_id))
    stored_outcome = None if rng.random() < NO_OUTCOME else outcome
    title = {"possible_fall": "Möjligt fall", "out_of_bed": "Ur sängen"}.get(
        kind, "Digital tillsyn ej tillgänglig"
    )
    data.alerts.append(
        (alert_id, site, room, device, kind, prio, "resolved", f"{title} – {room}", started, ack,
         "natt", resolved, "natt", stored_outcome, resident, practice)
    )  # fmt: skip
    data.alert_history.append((alert_id, started, "firing", None, None))
    data.alert_history.append((alert_id, ack, "acknowledged", "natt", None))
    data.alert_history.append((alert_id, resolved, "resolved", "natt", stored_outcome))


def _baseline(
    rng: random.Random,
    data: UnitData,
    unit: UnitSpec,
    res: ResidentSpec,
    intro: date,
    nights: int,
    index: int,
) -> None:
    """Paper records from before introduction: every agreed time was a physical visit."""
    ref = f"B-{index + 1:03d}"
    for d in range(nights, 0, -1):
        night = intro - timedelta(days=d)
        planned = len(res.times) + _poisson(rng, BASELINE_PLANNED_EXTRA)
        unplanned = _poisson(rng, BASELINE_UNPLANNED)
        minutes = None
        if rng.random() > 0.1:
            minutes = round(sum(rng.uniform(*VISIT_MIN) for _ in range(planned + unplanned)))
        data.baseline.append(BaselineRow(unit.site, ref, night, planned, unplanned, minutes))
