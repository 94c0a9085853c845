"""Occupancy: whether someone is in the room, entered, or left through a door.

A track of the person, not a motion detector: someone is present from the moment
person-sized motion is seen, and stays present while still until the track ends in a
door zone and the place it ended has gone back to the background.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from nattillsyn.protocol import RoomStateName

from .detector import Observation
from .zones import share_in


class Occupancy(Enum):
    unknown = "unknown"
    present = "present"
    absent = "absent"  # empty or left_room
    bathroom = "bathroom"


class OccupancyTracking:
    """Part of `room.RoomModel`: entering and leaving (its `occupancy`, `absent_state`,
    `passage` and leaving confidence)."""

    def _init_occupancy(self) -> None:
        self._leave_conf = 0.7
        self.passage: np.ndarray | None = None  # where the last entry/exit happened (grid)

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
