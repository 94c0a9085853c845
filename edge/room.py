"""Room state machine, pure: observations in, state changes and events out.

`RoomModel` holds the state and the frame loop; its parts live beside it: `room_occupancy`
(entering, leaving), `room_fall` (a seen drop), `room_lying` (lying low without one),
`room_state` (place and state), with `room_params`, `room_outputs` and `room_geometry`.

Time is the source clock of the frames (seconds), so replays at any speed give
the same results as live capture. The agent maps the outputs to the contract.

How the room is read (all thresholds in `RoomParams`, the same for every room):

- **Occupancy** is a track of the person, not a motion detector: someone is
  present from the moment person-sized motion is seen, and stays present while
  still (asleep, reading) until the track ends *in a door zone* and the place it
  ended has gone back to the background. Ending in a `bathroom_door` zone gives
  `in_bathroom`. Without door zones the image border is the way out.
- **Where** the person is: the zone under the band where they rest (the lowest
  part of their recent moving region, extended down through the foreground),
  decided while they move and frozen while they are still: `in_bed`, `in_chair`,
  else `out_of_bed` (`present` when the room has no bed zone). Changes need to
  hold for `zone_dwell_s` (hysteresis); each state carries a confidence.
- **Possible fall**: the top of the person's moving region drops fast and far
  (relative to their height before the onset) and does not come back up; motion
  settles with the person still down; the place where they came to rest still
  differs from the background (someone lies there, not an exit) and is outside
  bed and chair zones (inside a floor zone if the room has one). The event is
  raised when the person has not got up for `fall_confirm_s`; its start is the
  onset of the fast descent. State `on_floor` until the person gets up or leaves.
- `no_motion` after `no_motion_s` without motion while present (outside the bed
  unless `no_motion_in_bed`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nattillsyn.protocol import EventPhase, EventType, RoomStateName, ZoneKind

from .detector import Box, Observation
from .room_fall import FallCandidate, FallTracking
from .room_lying import LyingLow
from .room_occupancy import Occupancy, OccupancyTracking
from .room_outputs import EventOut, Output, StateChange
from .room_params import RoomParams
from .room_state import PlaceAndState
from .zones import GRID_H, GRID_W, RoomZones, default_border_door, share_in

__all__ = ["EventOut", "Occupancy", "Output", "RoomModel", "RoomParams", "StateChange"]


@dataclass
class RoomModel(OccupancyTracking, FallTracking, LyingLow, PlaceAndState):
    params: RoomParams = field(default_factory=RoomParams)
    zones: RoomZones = field(default_factory=RoomZones)
    state: RoomStateName = RoomStateName.unknown
    since: float = 0.0
    confidence: float = 0.0
    last_t: float = 0.0
    first_t: float | None = None
    occupancy: Occupancy = Occupancy.unknown
    absent_state: RoomStateName = RoomStateName.empty
    last_activity: float | None = None
    fall: FallCandidate | None = None
    fall_active: FallCandidate | None = None
    blind: bool = False

    def __post_init__(self) -> None:
        # What the frames showed lately, shared by the parts of the analysis.
        self._act_map = np.zeros((GRID_H, GRID_W), np.float32)
        self._support: deque[tuple[float, Box]] = deque()
        self._fg: np.ndarray | None = None
        self._recent_map = np.zeros((GRID_H, GRID_W), np.float32)
        self._activity_run: float | None = None  # start of the current run of active frames
        self._objects: Callable[[], np.ndarray | None] | None = None
        self._last_grid: np.ndarray | None = None  # motion of the last active frame
        self._track: deque[tuple[float, float]] = deque()  # (t, motion) of active frames, 1 s
        self._motion_started: float | None = None
        self._motion_last: float | None = None
        self._motion_peak = 0.0
        self._motion_level = 0.0  # smoothed share of moving pixels, for the state message
        self._init_occupancy()
        self._init_fall()
        self._init_lying()
        self._init_place()
        self._configure()

    # -- configuration ------------------------------------------------------------

    def _configure(self) -> None:
        z = self.zones
        self._w_bed = z.weight(ZoneKind.bed)
        self._w_chair = z.weight(ZoneKind.chair)
        self._w_floor = z.weight(ZoneKind.floor)
        self._w_bath = z.weight(ZoneKind.bathroom_door)
        door = z.weight(ZoneKind.door)
        if door is None and self._w_bath is None:
            door = default_border_door()
        self._w_door = door

    def reconfigure(self, params: RoomParams, zones: RoomZones) -> None:
        """New thresholds or zones, applied without losing the occupancy."""
        self.params = params
        self.zones = zones
        self._configure()

    # -- main entry ---------------------------------------------------------------

    def update(
        self,
        o: Observation,
        blind: bool = False,
        objects: Callable[[], np.ndarray | None] | None = None,
    ) -> list[Output]:
        """`objects`: asked at candidate moments only, the foreground of this frame without
        what light alone explains (`MotionDetector.object_grid`); None: the foreground."""
        p = self.params
        self._objects = objects
        out: list[Output] = []
        if self.first_t is None:
            self.first_t = o.t
        dt = o.t - self.last_t if self.last_t else 0.0
        self.last_t = o.t
        self.blind = blind
        self._fg = o.fg_grid
        a = 1.0 - math.exp(-dt / 1.0) if dt > 0 else 1.0
        self._motion_level += a * (o.motion - self._motion_level)
        if blind:
            return self._set_state(RoomStateName.unknown, o.t, 0.0)
        active = o.motion >= p.act_motion and o.motion_grid is not None
        if active:
            assert o.motion_grid is not None
            decay = math.exp(-dt / p.act_map_tau_s) if dt > 0 else 0.0
            self._act_map *= decay
            self._act_map += o.motion_grid
            self._recent_map = self._recent_map * (decay * decay) + o.motion_grid
            self._last_grid = o.motion_grid
            self._track.append((o.t, o.motion))
            while self._track and self._track[0][0] < o.t - 1.0:
                self._track.popleft()
            self.last_activity = o.t
            if o.box is not None:
                self._support.append((o.t, o.box))
                while self._support and self._support[0][0] < o.t - p.place_memory_s:
                    self._support.popleft()
            if self._activity_run is None:
                self._activity_run = o.t
        else:
            self._activity_run = None

        out += self._motion_event(o)
        self._occupancy(o, active)
        out += self._fall_update(o)
        out += self._low_update(o, active)
        out += self._room_state(o)
        return out

    # -- motion events --------------------------------------------------------------

    def _motion_event(self, o: Observation) -> list[Output]:
        p = self.params
        if o.motion >= p.motion_on:
            self._motion_last = o.t
            self._motion_peak = max(self._motion_peak, o.motion)
            if self._motion_started is None:
                self._motion_started = o.t
                self._motion_peak = o.motion
                return [
                    EventOut(
                        "motion",
                        EventType.motion,
                        EventPhase.new,
                        o.t,
                        o.t,
                        min(1.0, o.motion * 10),
                        o.box,
                        self._zone_name(o.motion_grid),
                    )
                ]
        elif (
            self._motion_started is not None
            and self._motion_last is not None
            and o.t - self._motion_last >= p.motion_quiet_s
        ):
            start, self._motion_started = self._motion_started, None
            return [
                EventOut(
                    "motion",
                    EventType.motion,
                    EventPhase.end,
                    start,
                    self._motion_last,
                    min(1.0, self._motion_peak * 10),
                )
            ]
        return []

    def _zone_name(self, grid: np.ndarray | None) -> str | None:
        if grid is None:
            return None
        best, best_share = None, 0.3
        for z in self.zones.zones:
            if z.kind is ZoneKind.ignore:
                continue
            s = share_in(grid, z.weight)
            if s > best_share:
                best, best_share = z.name, s
        return best

    # -- outside control --------------------------------------------------------------

    def finish(self, t: float) -> list[Output]:
        """End the events still open (motion, possible fall)."""
        out: list[Output] = []
        if self._motion_started is not None:
            out.append(
                EventOut("motion", EventType.motion, EventPhase.end, self._motion_started, t, 0.0)
            )
            self._motion_started = None
        if self.fall_active is not None:
            f, self.fall_active = self.fall_active, None
            out.append(
                EventOut("fall", EventType.possible_fall, EventPhase.end, f.onset, t, f.score)
            )
        return out

    @property
    def motion_level(self) -> float:
        return self._motion_level

    def current(self) -> StateChange:
        return StateChange(
            self.state, self.since, self.confidence, round(self._motion_level, 4), self._place_zone
        )

    def restore(self, state: RoomStateName, t: float) -> None:
        """Resume from a state saved before a restart (the person may lie still now)."""
        if state in (RoomStateName.left_room, RoomStateName.empty):
            self.occupancy, self.absent_state = Occupancy.absent, state
        elif state is RoomStateName.in_bathroom:
            self.occupancy = Occupancy.bathroom
        elif state not in (RoomStateName.unknown, RoomStateName.paused):
            self.occupancy = Occupancy.present
            if state in (RoomStateName.in_bed, RoomStateName.in_chair, RoomStateName.out_of_bed):
                self._place = self._place_state = state
                self._place_since = t
            self.last_activity = t
