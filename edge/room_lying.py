"""Lying low without a seen drop (a slow slide down, a drop the camera missed)."""

from __future__ import annotations

from collections import deque
from itertools import pairwise

from .detector import Box, Observation
from .room_fall import FallCandidate
from .room_geometry import beside, rest_region
from .room_occupancy import Occupancy
from .room_outputs import Output


class LyingLow:
    """Part of `room.RoomModel`: `on_floor` when the person came to rest low and still."""

    def _init_lying(self) -> None:
        self._upright: deque[tuple[float, Box]] = deque()  # tall moving regions, recent
        # The person's own recent movements: small motion far from them is someone else.
        self._person: deque[tuple[float, Box]] = deque()
        self._person_t: float | None = None
        self._low_since: float | None = None  # lying low and still outside bed/chair since
        self._low_box: Box | None = None
        self._low_checked: float | None = None
        self._low_onset: float | None = None  # a fast descent just before lying low

    def _low_update(self, o: Observation, active: bool) -> list[Output]:
        """`on_floor` also when the drop itself was missed: the person came to rest low
        (relative to their own upright size seen shortly before) and still, outside bed
        and chair, where the image still differs from the background."""
        p = self.params
        if active and o.box is not None:
            last = self._person[-1][1] if self._person else None
            if last is None or o.motion >= p.fall_peak or beside(o.box, last, p.fall_track_margin):
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
                and beside(o.box, lb, p.fall_track_margin, 0.0)
                and o.box[1] < lb[1] - p.fall_rise * max(0.05, lb[3])
            ):
                self._low_since = self._low_box = None  # got up
                return []
            if (
                self._low_onset is not None
                and lb is not None
                and o.t - self._low_since >= p.fall_confirm_s
            ):
                # Lying low and still after a fast descent: that was a fall, even though
                # the drop itself did not meet the drop criteria (a fall seen from high up,
                # a fall towards the camera). The event starts where the descent began.
                since = self._low_since
                f = FallCandidate.at(
                    self._low_onset, lb[1], lb[3], lb, since, o.t, settled_t=since, score=0.6
                )
                self._low_since = self._low_onset = None
                return self._fall_new(f, o.t)  # f.zone is None: no place judged
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
            if not beside(bb, rest, 0.0, 1.0):
                continue  # it must end where the person lies
            for i in range(j - 1, -1, -1):
                ta, ya, _, _ = tr[i]
                if tb - ta > p.fall_window_s:
                    break
                seg = tr[i : j + 1]
                if any(
                    b[0] - a[0] > p.fall_gap_max_s or not beside(b[3], a[3], 0.0, 1.0)
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
        rest = rest_region(self._person, self._person[-1][1])
        if rest[1] - top < p.fall_drop_rel * height or rest[3] > p.floor_low_rel * height:
            return None
        width = sorted(b[2] for b in ups)[len(ups) // 2]
        if rest[2] * rest[3] < p.floor_area_rel * width * height:
            return None  # a hand or a foot moving last, not a body settling
        f = FallCandidate.at(last, top, height, rest, last, o.t, drop=rest[1] - top)
        return rest if self._lies_there(o, f) else None
