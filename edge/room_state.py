"""Where the person is (bed, chair, elsewhere) and the room state with its confidence."""

from __future__ import annotations

import math

import numpy as np

from nattillsyn.protocol import RoomStateName

from .detector import Observation
from .room_geometry import lower_part
from .room_occupancy import Occupancy
from .room_outputs import Output, StateChange
from .zones import GRID_H, GRID_W, share_in


class PlaceAndState:
    """Part of `room.RoomModel`: the place under the person with hysteresis, and `state`."""

    def _init_place(self) -> None:
        self._place: RoomStateName | None = None  # where the person is (candidate)
        self._place_since = 0.0
        self._place_state = RoomStateName.present
        self._place_zone: str | None = None
        self._place_conf = 0.6

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
            m = lower_part(self._act_map)
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
