"""Possible fall after a seen drop: the top of the moving region drops fast and far,
the person comes to rest down there outside bed and chair, and does not get up."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from nattillsyn.protocol import EventPhase, EventType

from .detector import Box, Observation
from .room_geometry import beside, densest_band, rest_region, union
from .room_occupancy import Occupancy
from .room_outputs import EventOut, Output
from .zones import GRID_H, GRID_W, share_in


@dataclass
class Sample:
    t: float
    top: float
    bottom: float
    motion: float
    box: Box


@dataclass
class FallCandidate:
    onset: float
    pre_top: float
    height: float  # height of the moving region before the drop
    box: Box  # the lowest moving region of the drop
    last_box: Box  # where the person came to rest (set when they do)
    last_motion_t: float
    detected_t: float
    drop: float = 0.0
    peak: float = 0.0
    settled_t: float | None = None
    still_since: float | None = None
    moves: deque = field(default_factory=lambda: deque(maxlen=16))  # (t, box) clear motion
    up_frames: int = 0
    score: float = 0.0
    zone: str | None = None
    width: float = 0.0  # width of the moving region before the drop

    @classmethod
    def at(
        cls, onset: float, pre_top: float, height: float, box: Box, moved_t: float, t: float, **more
    ) -> FallCandidate:
        """A candidate found at `t` whose lowest region `box` is where it rests so far, last
        moving at `moved_t`."""
        return cls(onset, pre_top, height, box, box, moved_t, t, **more)


class FallTracking:
    """Part of `room.RoomModel`: the drop, its rest and its confirmation (`fall`,
    `fall_active`), and whether a person lies at rest somewhere (`lies_there`)."""

    def _init_fall(self) -> None:
        self._samples: deque[Sample] = deque()
        # (t, top, motion, box) of recent moving frames
        self._tops: deque[tuple[float, float, float, Box]] = deque()
        self._rise_since: float | None = None

    def _fall_update(self, o: Observation) -> list[Output]:
        p = self.params
        out: list[Output] = []
        box = o.box
        if box is not None and o.motion >= p.fall_track_motion:
            self._samples.append(Sample(o.t, box[1], box[1] + box[3], o.motion, box))
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
        if box is not None and not beside(box, ref, p.fall_track_margin, vm):
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
                f.last_box = rest_region(f.moves, f.box)
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
            self.fall = None
            return self._fall_new(f, o.t)
        return out

    def _fall_new(self, f: FallCandidate, t: float) -> list[Output]:
        """Confirm `f` (after a seen drop or lying low): it becomes the active fall."""
        self.fall_active = f
        return [
            EventOut(
                "fall", EventType.possible_fall, EventPhase.new, f.onset, t, f.score, f.box, f.zone
            )
        ]

    def _detect_drop(self, o: Observation) -> FallCandidate | None:
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
        if not beside(now.box, pre.box, p.fall_track_margin, 1.0):
            return None
        steps = [s for s in window if s.t >= pre.t]
        if any(not beside(b.box, a.box, 0.0, 1.0) for a, b in pairwise(steps)):
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
        return FallCandidate.at(
            fast_onset,
            pre.top,
            height,
            o.box,
            o.t,
            o.t,
            width=width,
            drop=drop,
            peak=peak,
            score=score,
        )

    def _lies_there(self, o: Observation, f: FallCandidate) -> bool:
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
        fg = densest_band(fg_box, p.fall_band_rows)
        if fg < p.fall_fg_min:
            return False
        place = np.zeros_like(o.fg_grid)
        place[gy0:gy1, gx0:gx1] = fg_box
        furniture = union(self._w_bed, self._w_chair)
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

    def _got_up(self, o: Observation, f: FallCandidate) -> bool:
        """Moving upwards well above where the person came to rest."""
        p = self.params
        if o.box is None or o.motion < p.fall_rise_motion:
            return False
        if not beside(o.box, f.last_box, p.fall_track_margin, 0.0):
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
