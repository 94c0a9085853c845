"""Room state machine, pure: observations in, state changes and events out.

Time is the source clock of the frames (seconds), so replays at any speed give
the same results as live capture. The agent maps the outputs to the contract.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from nattillsyn.protocol import EventPhase, EventType, RoomStateName

from .detector import Box, Observation


@dataclass(frozen=True)
class RoomParams:
    motion_on: float = 0.01  # share of pixels moving that counts as motion
    motion_quiet_s: float = 3.0  # quiet this long ends a motion event
    presence_hold_s: float = 300.0  # keep "present" this long after the last motion
    fall_window_s: float = 2.0  # a fall happens within this time
    fall_drop: float = 0.15  # the moving region's centre drops this much (image heights)
    fall_peak: float = 0.04  # with at least this much of the image moving
    fall_low: float = 0.6  # and ends in the lower part of the image
    still_motion: float = 0.01  # below this, the person lies still
    fall_confirm_s: float = 30.0  # stillness after a fall-like motion before the event
    fall_clear_s: float = 2.0  # sustained motion this long ends a possible fall (got up)


@dataclass(frozen=True)
class StateChange:
    state: RoomStateName
    since: float
    confidence: float


@dataclass(frozen=True)
class EventOut:
    key: str  # one key per event lifetime; the agent gives it an event_id
    type: EventType
    phase: EventPhase
    start: float
    t: float
    score: float = 0.0
    box: Box | None = None
    zone: str | None = None


Output = StateChange | EventOut


@dataclass
class _Track:
    t: float
    motion: float
    cy: float | None


@dataclass
class RoomModel:
    params: RoomParams = field(default_factory=RoomParams)
    state: RoomStateName = RoomStateName.unknown
    since: float = 0.0
    last_motion: float | None = None
    motion_started: float | None = None
    fall_candidate: tuple[float, float, Box | None] | None = None  # onset, score, box
    fall_active: float | None = None  # onset of a confirmed possible fall
    moving_since: float | None = None
    last_t: float = 0.0
    last_active: float | None = None  # last frame with more than still motion
    _history: deque[_Track] = field(default_factory=lambda: deque(maxlen=64))

    def update(self, o: Observation) -> list[Output]:
        p = self.params
        out: list[Output] = []
        self.last_t = o.t
        cy = (o.box[1] + o.box[3] / 2) if o.box else None
        self._history.append(_Track(o.t, o.motion, cy))
        while self._history and self._history[0].t < o.t - p.fall_window_s:
            self._history.popleft()
        moving = o.motion >= p.motion_on
        if o.motion >= p.still_motion:
            self.last_active = o.t

        # Motion events: new when it starts, end after a quiet spell.
        if moving:
            self.last_motion = o.t
            if self.motion_started is None:
                self.motion_started = o.t
                out.append(EventOut("motion", EventType.motion, EventPhase.new, o.t, o.t, o.motion))
        elif (
            self.motion_started is not None
            and self.last_motion is not None
            and o.t - self.last_motion >= p.motion_quiet_s
        ):
            out.append(
                EventOut("motion", EventType.motion, EventPhase.end, self.motion_started, o.t)
            )
            self.motion_started = None

        out += self._fall(o)
        out += self._state(o)
        return out

    def _fall(self, o: Observation) -> list[Output]:
        p = self.params
        out: list[Output] = []
        if self.fall_active is not None:
            self.moving_since = (self.moving_since or o.t) if o.motion >= p.fall_peak else None
            if self.moving_since is not None and o.t - self.moving_since >= p.fall_clear_s:
                out.append(
                    EventOut("fall", EventType.possible_fall, EventPhase.end, self.fall_active, o.t)
                )
                self.fall_active = None
                self.moving_since = None
            return out
        tracked = [h for h in self._history if h.cy is not None and h.motion >= p.motion_on]
        if len(tracked) >= 2:
            drop = tracked[-1].cy - min(h.cy for h in tracked)  # type: ignore[operator]
            peak = max(h.motion for h in tracked)
            if (
                drop >= p.fall_drop
                and peak >= p.fall_peak
                and (tracked[-1].cy or 0) >= p.fall_low
                and self.fall_candidate is None
            ):
                onset = tracked[0].t
                self.fall_candidate = (onset, min(1.0, drop * 2 + peak), o.box)
        if self.fall_candidate is not None:
            onset, score, box = self.fall_candidate
            if o.motion >= p.fall_peak and o.t - onset > p.fall_window_s * 2:
                self.fall_candidate = None  # moving again: got up
            elif self.last_active is not None and o.t - self.last_active >= p.fall_confirm_s:
                self.fall_active = onset
                self.fall_candidate = None
                out.append(
                    EventOut(
                        "fall", EventType.possible_fall, EventPhase.new, onset, o.t, score, box
                    )
                )
        return out

    def _state(self, o: Observation) -> list[Output]:
        p = self.params
        if self.fall_active is not None:
            new = RoomStateName.on_floor
        elif self.last_motion is not None and o.t - self.last_motion < p.presence_hold_s:
            new = RoomStateName.present
        elif self.last_motion is not None:
            new = RoomStateName.no_motion
        else:
            new = RoomStateName.unknown
        if new is self.state:
            return []
        self.state, self.since = new, o.t
        return [StateChange(new, o.t, 0.6 if new is RoomStateName.present else 0.5)]
