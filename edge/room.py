"""Room state machine, pure: observations in, state changes and events out.

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
from enum import Enum
from itertools import pairwise

import numpy as np

from nattillsyn.protocol import EventPhase, EventType, RoomStateName, ZoneKind

from .detector import Box, Observation
from .zones import GRID_H, GRID_W, RoomZones, default_border_door, share_in


@dataclass(frozen=True)
class RoomParams:
    # Activity: person-sized motion.
    act_motion: float = 0.002  # share of pixels moving that counts as a person moving
    enter_s: float = 0.2  # activity this long (two frames at 5 fps) makes an empty room occupied
    act_map_tau_s: float = 1.0  # the location map forgets older motion this fast (while moving)
    # Leaving through a door.
    leave_quiet_s: float = 0.5  # no activity this long after the track ended in a door zone
    leave_window_s: float = 3.0  # ... and at most this long after (later: still there)
    door_share: float = 0.12  # share of the recent motion that must lie in a door zone
    leave_fg_max: float = 0.12  # where the track ended must be this close to the background
    leave_motion: float = 0.01  # ... and someone walked there: this much motion in its last second
    # Where the person is.
    zone_share: float = 0.5  # share of where the person rests inside bed/chair for in_bed/in_chair
    place_memory_s: float = 2.0  # where the person rests: from their motion in this last time
    zone_dwell_s: float = 2.0  # a new place must hold this long before the state changes
    no_motion_s: float = 900.0  # present without any motion this long: no_motion
    no_motion_in_bed: bool = False  # whether a still person in bed also becomes no_motion
    startup_empty_s: float = 60.0  # after a start with no sign of anybody: empty (low confidence)
    # Motion events.
    motion_on: float = 0.005  # share of pixels moving that starts a motion event
    motion_quiet_s: float = 10.0  # quiet this long ends a motion event
    # Possible fall.
    fall_window_s: float = 1.6  # the drop happens within this time
    fall_track_motion: float = 0.003  # frames with less motion do not enter the fall track
    fall_drop_min: float = 0.15  # the top of the moving region drops at least this (image heights)
    fall_drop_rel: float = 0.45  # ... and at least this share of the region's height before
    fall_min_height: float = 0.2  # height of the region before the drop is taken as at least this
    fall_peak: float = 0.02  # with at least this share of pixels moving at the peak
    fall_settle_motion: float = 0.01  # below this the person has come to rest
    fall_still_s: float = 1.0  # ... for this long
    fall_settle_max_s: float = 10.0  # no rest within this time after the drop: not a fall
    fall_fg_min: float = 0.2  # where the person came to rest differs from the background this much
    fall_body_rel: float = 0.15  # ... and is at least this share of the region before the drop
    fall_band_rows: int = 3  # ... judged on its densest band of this many grid rows
    fall_bed_chair_max: float = 0.5  # at most this share of that place in bed/chair zones
    fall_floor_min: float = 0.3  # at least this share in floor zones (if the room has any)
    fall_body_min: float = 0.25  # where light alone explains the change, it is not the body ...
    # ... unless that leaves less than this share of the place (then the place is judged whole)
    fall_upright_recent_s: float = 5.0  # the person's upright size: from this long before the drop
    fall_gap_max_s: float = 0.55  # the drop's moving frames are at most this far apart
    fall_onset_speed: float = 0.12  # the descent starts where the top sinks at least this fast (/s)
    fall_fast_speed: float = 0.3  # ... and the fall itself where it sinks this fast (/s)
    # At rest the top must still be this share of the height below where it was (the drop
    # itself needed fall_drop_rel): a rise back up caught half way stops well above it.
    fall_rest_rel: float = 0.35
    fall_low_motion: float = 0.01  # the drop's lowest frame moves at least this much
    fall_back_up: float = 0.4  # before resting, the top back within this share of the drop: no fall
    fall_rise: float = 0.5  # getting up: the moving region's top rises this share of its height
    fall_rise_motion: float = 0.01  # ... with at least this much motion
    fall_confirm_s: float = 30.0  # not got up this long after coming to rest: possible fall
    fall_track_margin: float = 0.1  # after the drop, motion this far beside it is someone else
    # Lying low without a seen drop (a slow slide down, a drop the camera missed).
    floor_upright_s: float = 30.0  # the person's own upright size: from their motion this long
    floor_low_rel: float = 0.6  # at rest, at most this share of that height (and ended low)
    floor_descent_s: float = 8.0  # a fast descent remembered this long ...
    floor_descent_gap_s: float = 2.5  # ... ending this close to the rest makes lying low a fall
    floor_area_rel: float = 0.3  # ... and its last movements at least this share of its area


@dataclass(frozen=True)
class StateChange:
    state: RoomStateName
    since: float
    confidence: float
    motion: float = 0.0
    zone: str | None = None


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


class Occupancy(Enum):
    unknown = "unknown"
    present = "present"
    absent = "absent"  # empty or left_room
    bathroom = "bathroom"


@dataclass
class _Sample:
    t: float
    top: float
    bottom: float
    motion: float
    box: Box


@dataclass
class _FallCandidate:
    onset: float
    pre_top: float
    height: float  # height of the moving region before the drop
    drop: float
    peak: float
    box: Box  # the lowest moving region of the drop
    last_box: Box  # where the person came to rest (set when they do)
    last_motion_t: float
    detected_t: float
    settled_t: float | None = None
    still_since: float | None = None
    moves: deque = field(default_factory=lambda: deque(maxlen=16))  # (t, box) clear motion
    up_frames: int = 0
    score: float = 0.0
    zone: str | None = None
    width: float = 0.0  # width of the moving region before the drop


@dataclass
class RoomModel:
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
    fall: _FallCandidate | None = None
    fall_active: _FallCandidate | None = None
    blind: bool = False

    def __post_init__(self) -> None:
        self._act_map = np.zeros((GRID_H, GRID_W), np.float32)
        self._support: deque[tuple[float, Box]] = deque()
        self._fg: np.ndarray | None = None
        self._recent_map = np.zeros((GRID_H, GRID_W), np.float32)
        self._activity_run: float | None = None  # start of the current run of active frames
        self._samples: deque[_Sample] = deque()
        self._motion_started: float | None = None
        self._motion_last: float | None = None
        self._motion_peak = 0.0
        self._motion_level = 0.0  # smoothed share of moving pixels, for the state message
        self._place: RoomStateName | None = None  # where the person is (candidate)
        self._place_since = 0.0
        self._place_state = RoomStateName.present
        self._place_zone: str | None = None
        self._place_conf = 0.6
        self._rise_since: float | None = None
        self._upright: deque[tuple[float, Box]] = deque()  # tall moving regions, recent
        # The person's own recent movements: small motion far from them is someone else.
        self._person: deque[tuple[float, Box]] = deque()
        self._person_t: float | None = None
        self._low_since: float | None = None  # lying low and still outside bed/chair since
        self._low_box: Box | None = None
        self._low_checked: float | None = None
        self._leave_conf = 0.7
        # (t, top, motion, box) of recent moving frames
        self._tops: deque[tuple[float, float, float, Box]] = deque()
        self._low_onset: float | None = None  # a fast descent just before lying low
        self._objects: Callable[[], np.ndarray | None] | None = None
        self._last_grid: np.ndarray | None = None  # motion of the last active frame
        self._track: deque[tuple[float, float]] = deque()  # (t, motion) of active frames, 1 s
        self.passage: np.ndarray | None = None  # where the last entry/exit happened (grid)
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

    # -- occupancy ------------------------------------------------------------------

    def _occupancy(self, o: Observation, active: bool) -> None:
        p = self.params
        if self.occupancy is not Occupancy.present:
            if (
                active
                and self._activity_run is not None
                and o.t - self._activity_run >= p.enter_s - 0.05
            ):
                if self.occupancy is not Occupancy.unknown:
                    self.passage = o.motion_grid
                self.occupancy = Occupancy.present
                self._place = None
            elif (
                self.occupancy is Occupancy.unknown
                and self.first_t is not None
                and o.t - self.first_t >= p.startup_empty_s
                and self.last_activity is None
            ):
                self.occupancy = Occupancy.absent
                self.absent_state = RoomStateName.empty
            return
        if active or self.last_activity is None:
            return
        if self.fall is not None and self.fall.settled_t is not None:
            return  # someone lies where the drop ended
        quiet = o.t - self.last_activity
        if not (p.leave_quiet_s <= quiet <= p.leave_window_s):
            return
        recent = self._recent_map
        if float(recent.sum()) <= 1e-6:
            return
        door = share_in(recent, self._w_door)
        bath = share_in(recent, self._w_bath)
        if max(door, bath) < p.door_share:
            return
        # The track ends there: its last movement is in the doorway, and it was someone
        # walking (person-sized motion in its last second), not a hand twitching at the
        # bottom edge of the view while someone else walked out a moment before.
        last = self._last_grid
        if last is None or max(share_in(last, self._w_door), share_in(last, self._w_bath)) < (
            p.door_share
        ):
            return
        if max((m for _, m in self._track), default=0.0) < p.leave_motion:
            return
        # Has the place where the track ended gone back to the background?
        weights = recent / float(recent.sum())
        fg = float((o.fg_grid * weights).sum())
        if fg > p.leave_fg_max:
            return
        self.passage = recent.copy()
        if bath > door:
            self.occupancy = Occupancy.bathroom
        else:
            self.occupancy = Occupancy.absent
            self.absent_state = RoomStateName.left_room
        self._leave_conf = 0.6 + 0.4 * min(1.0, max(door, bath) / 0.5) * (1 - fg / p.leave_fg_max)

    # -- possible fall --------------------------------------------------------------

    def _fall_update(self, o: Observation) -> list[Output]:
        p = self.params
        out: list[Output] = []
        box = o.box
        if box is not None and o.motion >= p.fall_track_motion:
            self._samples.append(_Sample(o.t, box[1], box[1] + box[3], o.motion, box))
            self._tops.append((o.t, box[1], o.motion, box))
        while self._tops and self._tops[0][0] < o.t - p.floor_descent_s:
            self._tops.popleft()
        while self._samples and self._samples[0].t < o.t - 2 * p.fall_window_s:
            self._samples.popleft()

        if self.fall_active is not None:
            return self._fall_active_update(o)

        if self.fall is None:
            cand = self._detect_drop(o)
            if cand is not None:
                self.fall = cand
            return out

        f = self.fall
        # Follow the drop to its end; rising back up before coming to rest is a squat,
        # a bend or someone catching themselves, not a fall. Motion beside the fall (a
        # second person elsewhere in the room) is not the fallen person's.
        ref, vm = (f.box, None) if f.settled_t is None else (f.last_box, 0.0)
        if box is not None and not _beside(box, ref, p.fall_track_margin, vm):
            box = None
        if box is not None and o.motion >= p.fall_track_motion:
            if f.settled_t is None:
                if o.motion >= p.fall_settle_motion:
                    f.moves.append((o.t, box))
                if box[1] >= f.box[1]:
                    f.box = box
                f.drop = max(f.drop, box[1] - f.pre_top)
                # Up again: a region that reaches back up AND down to where the drop went
                # (a person rising from a squat or catching themselves), not a small blob
                # higher up (an arm flung up, something moving on a shelf).
                if (
                    o.motion >= p.fall_rise_motion
                    and box[1] < f.pre_top + p.fall_back_up * f.drop
                    and box[1] + box[3] >= f.box[1]
                ):
                    f.up_frames += 1
                    if f.up_frames >= 2:  # up again for two frames: not a stray arm
                        self.fall = None
                        return out
                else:
                    f.up_frames = 0
            f.peak = max(f.peak, o.motion)
        if o.motion >= p.fall_settle_motion and box is not None:
            f.last_motion_t = o.t
            f.still_since = None
            if f.settled_t is not None and self._got_up(o, f):
                self.fall = None  # moving again after the rest, upwards: got up
                return out
        elif f.still_since is None:
            f.still_since = o.t
        if self.occupancy is not Occupancy.present:
            self.fall = None  # the track left: an exit, not a fall
            return out
        if f.settled_t is None:
            if o.t - f.detected_t > p.fall_settle_max_s:
                self.fall = None
                return out
            if f.still_since is not None and o.t - f.still_since >= p.fall_still_s:
                f.last_box = _rest_region(f.moves, f.box)
                # Still down by the fall criterion (not a squat or a bend caught mid-rise):
                # judged on the last clear movement (legs swinging down after a roll on the
                # floor stretch the region of the last moments upwards).
                last_top = f.moves[-1][1][1] if f.moves else f.last_box[1]
                ended_low = last_top - f.pre_top >= p.fall_rest_rel * f.height
                # A body came to rest, not a hand or a foot that moved last.
                body = f.last_box[2] * f.last_box[3] >= p.fall_body_rel * f.width * f.height
                if not ended_low or not body or not self._lies_there(o, f):
                    self.fall = None
                    return out
                f.settled_t = f.still_since
            return out
        if o.t - f.settled_t >= p.fall_confirm_s:
            self.fall_active, self.fall = f, None
            out.append(
                EventOut(
                    "fall",
                    EventType.possible_fall,
                    EventPhase.new,
                    f.onset,
                    o.t,
                    f.score,
                    f.box,
                    f.zone,
                )
            )
        return out

    def _detect_drop(self, o: Observation) -> _FallCandidate | None:
        p = self.params
        if len(self._samples) < 2 or o.box is None or o.motion < p.fall_track_motion:
            return None
        now = self._samples[-1]
        if now.t != o.t:
            return None
        window = [s for s in self._samples if s.t >= o.t - p.fall_window_s - 0.01]
        pre = min(window, key=lambda s: s.top)
        if pre.t >= now.t:
            return None
        drop = now.top - pre.top
        peak = max(s.motion for s in window if s.t >= pre.t)
        if drop < p.fall_drop_min or peak < p.fall_peak:
            return None
        # The body itself is down there, moving: not only a hand or the legs still moving
        # after the head and the shoulders have stopped higher up (sitting down: the
        # moving region shrinks to the lap, its top "drops" without anybody falling).
        if now.motion < p.fall_low_motion:
            return None
        # One body going down: the high region and the low one, and every step between
        # them (0.2 s apart), overlap side by side. A jump from one person's region to
        # another's (someone walking past high up, then a seated person's hand low down)
        # is not a drop.
        if not _beside(now.box, pre.box, p.fall_track_margin, 1.0):
            return None
        steps = [s for s in window if s.t >= pre.t]
        if any(not _beside(b.box, a.box, 0.0, 1.0) for a, b in pairwise(steps)):
            return None
        # A fall is one continuous movement: motion in every frame from the highest point
        # to now (a burst at start-up, a pause, then a small movement lower down is not).
        if any(b.t - a.t > p.fall_gap_max_s for a, b in pairwise(steps)):
            return None
        # Onset: where the continuous descent that ends now began (a slow lean first is
        # not part of the fall; the fast part is).
        seq = [s for s in self._samples if s.t <= now.t]
        i = len(seq) - 1
        while i > 0:
            a, b = seq[i - 1], seq[i]
            gap = b.t - a.t
            if gap > 0.6 or (b.top - a.top) / max(1e-3, gap) < p.fall_onset_speed:
                break
            i -= 1
        onset = seq[i - 1].t if i > 0 else seq[0].t
        # The person's size before the fall: the moving region's height up to where the
        # descent began (legs swinging off a bed already stretch the region when the top
        # starts to drop).
        before = sorted(s.bottom - s.top for s in seq if s.t <= onset)
        # The fall itself starts where the top begins to sink fast; a slow bend or a
        # lean before it is not part of it (the event's start is the fall's).
        j = len(seq) - 1
        while j > i:
            a, b = seq[j - 1], seq[j]
            if (b.top - a.top) / max(1e-3, b.t - a.t) < p.fall_fast_speed:
                break
            j -= 1
        fast_onset = seq[j - 1].t if j > 0 else seq[0].t
        height = pre.bottom - pre.top
        if before:
            height = min(height, before[len(before) // 2])
        # ... and not less than their own upright size seen just before (someone who sits
        # down moves only their upper body, but was seen walking in a moment ago).
        ups = sorted(
            b[3] for t, b in self._upright if onset - p.fall_upright_recent_s <= t <= onset
        )
        if len(ups) >= 3:
            height = max(height, ups[-2])
        height = max(p.fall_min_height, height)
        if drop < p.fall_drop_rel * height:
            return None
        widths = sorted(s.box[2] for s in seq if s.t <= onset) or [pre.box[2]]
        width = widths[len(widths) // 2]
        score = min(1.0, 0.4 + 0.4 * drop / height + 5 * peak)
        return _FallCandidate(
            onset=fast_onset,
            pre_top=pre.top,
            height=height,
            width=width,
            drop=drop,
            peak=peak,
            box=o.box,
            last_box=o.box,
            last_motion_t=o.t,
            detected_t=o.t,
            score=score,
        )

    def _lies_there(self, o: Observation, f: _FallCandidate) -> bool:
        """After the drop: is there a person at rest where it ended, outside bed and chair?

        The place is the region of the last clear movements before the rest; it is in bed
        or chair if most of its foreground, or its centre of mass, lies there (a torso on
        the bed with the legs hanging to the floor is on the bed).
        """
        p = self.params
        x, y, w, h = f.last_box
        gx0, gx1 = int(x * GRID_W), max(int(x * GRID_W) + 1, math.ceil((x + w) * GRID_W))
        gy0, gy1 = int(y * GRID_H), max(int(y * GRID_H) + 1, math.ceil((y + h) * GRID_H))
        fg_box = o.fg_grid[gy0:gy1, gx0:gx1]
        # Someone lies there: the densest band of rows of the place differs from the
        # background (the body lies across the lowest rows; an arm that moved last can
        # stretch the place upwards over empty floor).
        fg = _densest_band(fg_box, p.fall_band_rows)
        if fg < p.fall_fg_min:
            return False
        place = np.zeros_like(o.fg_grid)
        place[gy0:gy1, gx0:gx1] = fg_box
        furniture = _union(self._w_bed, self._w_chair)
        if furniture is not None:
            # Where the body lies: the place without light and shadow (a shadow that left
            # the floor in front of the bed, a lamp-lit patch of floor), if any is left.
            objects = self._objects() if self._objects is not None else None
            if objects is not None:
                body = np.zeros_like(place)
                body[gy0:gy1, gx0:gx1] = objects[gy0:gy1, gx0:gx1]
                if float(body.sum()) >= p.fall_body_min * float(place.sum()):
                    place = body
            if share_in(place, furniture) > p.fall_bed_chair_max:
                return False
            total = float(place.sum())
            cy = float((place.sum(axis=1) * np.arange(GRID_H)).sum()) / total
            cx = float((place.sum(axis=0) * np.arange(GRID_W)).sum()) / total
            if furniture[min(GRID_H - 1, round(cy)), min(GRID_W - 1, round(cx))] >= 0.5:
                return False
        if self._w_floor is not None and share_in(place, self._w_floor) < p.fall_floor_min:
            return False
        f.zone = self._zone_name(place)
        f.score = min(1.0, f.score * (0.7 + 0.6 * min(1.0, fg)))
        return True

    def _got_up(self, o: Observation, f: _FallCandidate) -> bool:
        """Moving upwards well above where the person came to rest."""
        p = self.params
        if o.box is None or o.motion < p.fall_rise_motion:
            return False
        if not _beside(o.box, f.last_box, p.fall_track_margin, 0.0):
            return False  # someone else moving
        # Relative to the whole region where they came to rest, not to its lowest
        # moving part (a foot twitching at the bottom edge would make any movement of
        # the body on the floor look like rising).
        _, y, _, h = f.last_box
        return o.box[1] < y - p.fall_rise * max(0.05, h, f.height * 0.5)

    def _fall_active_update(self, o: Observation) -> list[Output]:
        f = self.fall_active
        assert f is not None
        ended = self.occupancy is not Occupancy.present
        if not ended and o.motion >= self.params.fall_settle_motion and self._got_up(o, f):
            self._rise_since = self._rise_since if self._rise_since is not None else o.t
            ended = o.t - self._rise_since >= 1.0
        elif o.motion < self.params.fall_settle_motion:
            self._rise_since = None
        if not ended:
            return []
        self.fall_active = None
        self._rise_since = None
        return [EventOut("fall", EventType.possible_fall, EventPhase.end, f.onset, o.t, f.score)]

    # -- lying low without a seen drop ------------------------------------------------

    def _low_update(self, o: Observation, active: bool) -> list[Output]:
        """`on_floor` also when the drop itself was missed: the person came to rest low
        (relative to their own upright size seen shortly before) and still, outside bed
        and chair, where the image still differs from the background."""
        p = self.params
        if active and o.box is not None:
            last = self._person[-1][1] if self._person else None
            if last is None or o.motion >= p.fall_peak or _beside(o.box, last, p.fall_track_margin):
                self._person.append((o.t, o.box))
                self._person_t = o.t
                while self._person and self._person[0][0] < o.t - p.place_memory_s:
                    self._person.popleft()
                if o.box[3] >= p.fall_min_height:
                    self._upright.append((o.t, o.box))
        while self._upright and self._upright[0][0] < o.t - p.floor_upright_s:
            self._upright.popleft()
        if (
            self.occupancy is not Occupancy.present
            or self.fall is not None
            or self.fall_active is not None
        ):
            self._low_since = None
            return []
        if self._low_since is not None:
            lb = self._low_box
            if (
                lb is not None
                and o.box is not None
                and o.motion >= p.fall_rise_motion
                and _beside(o.box, lb, p.fall_track_margin, 0.0)
                and o.box[1] < lb[1] - p.fall_rise * max(0.05, lb[3])
            ):
                self._low_since = self._low_box = None  # got up
                return []
            if (
                self._low_onset is not None
                and self._low_box is not None
                and o.t - self._low_since >= p.fall_confirm_s
            ):
                # Lying low and still after a fast descent: that was a fall, even though
                # the drop itself did not meet the drop criteria (a fall seen from high up,
                # a fall towards the camera). The event starts where the descent began.
                f = _FallCandidate(
                    onset=self._low_onset,
                    pre_top=self._low_box[1],
                    height=self._low_box[3],
                    drop=0.0,
                    peak=0.0,
                    box=self._low_box,
                    last_box=self._low_box,
                    last_motion_t=self._low_since,
                    detected_t=o.t,
                    settled_t=self._low_since,
                    score=0.6,
                )
                self._low_since = self._low_onset = None
                self.fall_active = f
                return [
                    EventOut(
                        "fall",
                        EventType.possible_fall,
                        EventPhase.new,
                        f.onset,
                        o.t,
                        f.score,
                        f.box,
                        self._zone_name(None),
                    )
                ]
            return []
        last = self._person_t
        if last is None or o.t - last < p.fall_still_s or self._low_checked == last:
            return []
        self._low_checked = last
        low = self._lies_low(o, last)
        if low is not None:
            self._low_since, self._low_box = last, low
            found = self._descent_before(last, low)
            self._low_onset = None
            if found is not None:
                self._low_onset = found
        return []

    def _descent_before(self, last: float, rest: Box) -> float | None:
        """Start of the fast descent of the moving region's top that ended just before the
        person came to rest (None if there was none): the top sank at least fall_drop_min
        within fall_window_s, in one continuous movement with fall_peak motion, and that
        movement ended at most floor_descent_gap_s before their last movement."""
        p = self.params
        tr = [x for x in self._tops if x[0] <= last + 1e-6]
        for j in range(len(tr) - 1, 0, -1):
            tb, yb, _, bb = tr[j]
            if tb < last - p.floor_descent_gap_s:
                break
            if not _beside(bb, rest, 0.0, 1.0):
                continue  # it must end where the person lies
            for i in range(j - 1, -1, -1):
                ta, ya, _, _ = tr[i]
                if tb - ta > p.fall_window_s:
                    break
                seg = tr[i : j + 1]
                if any(
                    b[0] - a[0] > p.fall_gap_max_s or not _beside(b[3], a[3], 0.0, 1.0)
                    for a, b in pairwise(seg)
                ):
                    break  # one body going down, without a pause
                if yb - ya >= p.fall_drop_min and max(x[2] for x in seg) >= p.fall_peak:
                    # the fall starts where the top begins to sink fast
                    k = j
                    while (
                        k > i
                        and (tr[k][1] - tr[k - 1][1]) / max(1e-3, tr[k][0] - tr[k - 1][0])
                        >= p.fall_fast_speed
                    ):
                        k -= 1
                    return tr[k][0]
        return None

    def _lies_low(self, o: Observation, last: float) -> Box | None:
        p = self.params
        if not self._person:
            return None
        ups = [b for t, b in self._upright if t <= last]
        if len(ups) < 3:
            return None
        height = sorted(b[3] for b in ups)[-2]  # the second tallest: one stray frame is not it
        tops = sorted(b[1] for b in ups if b[3] >= 0.8 * height)
        top = tops[len(tops) // 2]
        rest = _rest_region(self._person, self._person[-1][1])
        if rest[1] - top < p.fall_drop_rel * height or rest[3] > p.floor_low_rel * height:
            return None
        width = sorted(b[2] for b in ups)[len(ups) // 2]
        if rest[2] * rest[3] < p.floor_area_rel * width * height:
            return None  # a hand or a foot moving last, not a body settling
        f = _FallCandidate(
            onset=last,
            pre_top=top,
            height=height,
            drop=rest[1] - top,
            peak=0.0,
            box=rest,
            last_box=rest,
            last_motion_t=last,
            detected_t=o.t,
        )
        return rest if self._lies_there(o, f) else None

    # -- room state -----------------------------------------------------------------

    def _support_patch(self) -> np.ndarray | None:
        """Cells where the person rests: the lowest band of their extent.

        That is where a person touches the bed, the chair or the floor: someone standing
        in front of the bed overlaps it in the image with the torso only, their feet are
        on the floor. The extent is the recent moving region (one stray low box does not
        count: the second lowest is taken), extended downwards through the foreground
        below it (legs that stand still differ from the background too).
        """
        if not self._support:
            return None
        boxes = sorted((b for _, b in self._support), key=lambda b: b[1] + b[3])
        x, y, w, h = boxes[-2] if len(boxes) >= 3 else boxes[-1]
        gx0, gx1 = max(0, int(x * GRID_W)), min(GRID_W, math.ceil((x + w) * GRID_W))
        gx1 = max(gx1, gx0 + 1)
        row = min(GRID_H - 1, int((y + h) * GRID_H))
        if self._fg is not None:
            below = (self._fg[row + 1 :, gx0:gx1].sum(axis=1) / (gx1 - gx0)).tolist()
            for v in below:
                if v < 0.25:
                    break
                row += 1
        bottom = (row + 1) / GRID_H
        top = bottom - max(0.08, 0.25 * h)
        patch = np.zeros((GRID_H, GRID_W), np.float32)
        gy0 = max(0, int(top * GRID_H))
        patch[gy0 : row + 1, gx0:gx1] = 1.0
        return patch

    def _where(self) -> tuple[RoomStateName, str | None, float]:
        """Where the person is: the zone under the band where they rest (see above)."""
        m = self._support_patch()
        if m is None:
            m = _lower_part(self._act_map)
        if m is None:
            return RoomStateName.present, None, 0.6
        bed = share_in(m, self._w_bed)
        chair = share_in(m, self._w_chair)
        zone = self._zone_name(m)
        if bed >= self.params.zone_share and bed >= chair:
            return RoomStateName.in_bed, zone, 0.5 + 0.5 * bed
        if chair >= self.params.zone_share:
            return RoomStateName.in_chair, zone, 0.5 + 0.5 * chair
        if self._w_bed is not None:
            return RoomStateName.out_of_bed, zone, 0.5 + 0.5 * (1 - bed)
        return RoomStateName.present, zone, 0.8

    def _room_state(self, o: Observation) -> list[Output]:
        p = self.params
        t = o.t
        if self.occupancy is Occupancy.unknown:
            return self._set_state(RoomStateName.unknown, t, 0.0)
        if self.occupancy is Occupancy.absent:
            conf = self._leave_conf
            if self.absent_state is RoomStateName.empty:
                conf = 0.5
            return self._set_state(self.absent_state, t, conf)
        if self.occupancy is Occupancy.bathroom:
            return self._set_state(RoomStateName.in_bathroom, t, self._leave_conf)
        if self.fall_active is not None:
            return self._set_state(RoomStateName.on_floor, t, max(0.6, self.fall_active.score))
        if self._low_since is not None and t - self._low_since >= p.fall_confirm_s:
            return self._set_state(RoomStateName.on_floor, t, 0.6)
        recent = self.last_activity is not None and t - self.last_activity <= p.zone_dwell_s + 0.5
        if recent or self._place is None:
            place, zone, conf = self._where()
            self._place_conf = conf
        else:  # still: the place stays where the person came to rest
            place, zone, conf = self._place_state, self._place_zone, self._place_conf
        if self._place is None:
            # Just entered (or first sight): take the place at once.
            self._place, self._place_since = place, t
            self._place_state, self._place_zone = place, zone
        elif place is not self._place:
            self._place, self._place_since = place, t
        elif place is not self._place_state and t - self._place_since >= p.zone_dwell_s:
            self._place_state, self._place_zone = place, zone
        state = self._place_state
        quiet = t - self.last_activity if self.last_activity is not None else 0.0
        if quiet >= p.no_motion_s and (state is not RoomStateName.in_bed or p.no_motion_in_bed):
            return self._set_state(RoomStateName.no_motion, t, min(0.95, 0.6 + quiet / 7200))
        # Confidence: how sure of the place, less the longer nothing moved.
        conf *= 1.0 - 0.3 * min(1.0, quiet / max(1.0, p.no_motion_s))
        return self._set_state(state, t, conf, self._place_zone)

    def _set_state(
        self, state: RoomStateName, t: float, confidence: float, zone: str | None = None
    ) -> list[Output]:
        confidence = round(min(1.0, max(0.0, confidence)), 2)
        if state is self.state:
            self.confidence = confidence
            return []
        self.state, self.since, self.confidence = state, t, confidence
        return [StateChange(state, t, confidence, round(self._motion_level, 4), zone)]

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


def _rest_region(moves: deque, fallback: Box, span_s: float = 0.6) -> Box:
    """Union of the clear movements in the last `span_s` before the rest."""
    if not moves:
        return fallback
    last_t = moves[-1][0]
    boxes = [b for t, b in moves if t >= last_t - span_s]
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def _densest_band(cells: np.ndarray, rows: int) -> float:
    """Mean of the densest band of `rows` consecutive rows of `cells` (0 if empty)."""
    if not cells.size:
        return 0.0
    per_row = cells.mean(axis=1)
    k = min(rows, per_row.size)
    sums = np.convolve(per_row, np.ones(k), mode="valid") / k
    return float(sums.max())


def _beside(box: Box, ref: Box, margin: float, vmargin: float | None = None) -> bool:
    """Whether `box` overlaps `ref` widened by `margin` horizontally and `vmargin`
    (default: `margin`) vertically, in image sizes.

    Someone seated at the other side of the room is beyond it horizontally; someone
    walking past behind a person lying on the floor is above them in the image (their
    region ends above where the person lies). Getting up starts where the person lies,
    so its motion overlaps that place."""
    vm = margin if vmargin is None else vmargin
    return (
        box[0] <= ref[0] + ref[2] + margin
        and box[0] + box[2] >= ref[0] - margin
        and box[1] <= ref[1] + ref[3] + vm
        and box[1] + box[3] >= ref[1] - vm
    )


def _lower_part(m: np.ndarray, share: float = 0.4) -> np.ndarray | None:
    """The rows of `m` holding the lowest `share` of its mass (None if it is empty)."""
    rows = m.sum(axis=1)
    total = float(rows.sum())
    if total <= 1e-6:
        return None
    cut = int(np.searchsorted(np.cumsum(rows), (1 - share) * total))
    out = np.zeros_like(m)
    out[cut:] = m[cut:]
    return out


def _union(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return np.maximum(a, b)
