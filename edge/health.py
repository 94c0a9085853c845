"""Camera health, pure: is the camera covered, moved, or is it too dark to see?

Each condition must hold for a while before it is raised and clear for a while
before it ends, so a hand passing the lens or a lamp switched is not an event.
While any of them is active the room cannot be seen: the agent reports the
room as `unknown` and keeps the occupancy it had (nobody was seen leaving).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nattillsyn.protocol import EventPhase, EventType

from .detector import Observation
from .room import EventOut


@dataclass(frozen=True)
class HealthParams:
    dark_luma: float = 12.0  # mean luma below this: too dark to see
    covered_contrast: float = 4.0  # luma std below this: a uniform image (lens covered)
    moved_similarity: float = 0.45  # background edges this unlike the reference: camera moved
    raise_s: float = 5.0  # a condition must hold this long to be raised
    clear_s: float = 5.0  # and be gone this long to end


@dataclass
class _Cond:
    type: EventType
    since: float | None = None  # condition true since
    clear_since: float | None = None
    active_from: float | None = None  # raised at (event start)

    @property
    def active(self) -> bool:
        return self.active_from is not None


class CameraHealth:
    def __init__(self, params: HealthParams | None = None) -> None:
        self.p = params or HealthParams()
        self._conds = {
            EventType.camera_covered: _Cond(EventType.camera_covered),
            EventType.too_dark: _Cond(EventType.too_dark),
            EventType.camera_moved: _Cond(EventType.camera_moved),
        }
        self.rebase_requested = False

    @property
    def blind(self) -> bool:
        """Whether the room cannot be seen now."""
        return (
            self._conds[EventType.camera_covered].active or self._conds[EventType.too_dark].active
        )

    def active(self) -> list[EventType]:
        return [c.type for c in self._conds.values() if c.active]

    def update(self, o: Observation) -> list[EventOut]:
        p = self.p
        uniform = o.contrast < p.covered_contrast
        dark = o.brightness < p.dark_luma
        moved = (not math.isnan(o.structure)) and o.structure < p.moved_similarity
        out: list[EventOut] = []
        # A dark image is "too dark"; a uniform image that is not dark is "covered".
        out += self._step(self._conds[EventType.too_dark], dark, o.t)
        out += self._step(self._conds[EventType.camera_covered], uniform and not dark, o.t)
        blind = self.blind or uniform or dark
        out += self._step(self._conds[EventType.camera_moved], moved and not blind, o.t)
        return out

    def finish(self, t: float) -> list[EventOut]:
        """End every active condition (the view ends)."""
        out = []
        for c in self._conds.values():
            if c.active_from is not None:
                out.append(EventOut(c.type.value, c.type, EventPhase.end, c.active_from, t))
            c.active_from = c.since = c.clear_since = None
        return out

    def accept_view(self) -> list[EventOut]:
        """The view was re-checked (new zones): a moved camera is no longer an issue."""
        c = self._conds[EventType.camera_moved]
        self.rebase_requested = True
        if not c.active:
            return []
        assert c.active_from is not None
        start, c.active_from, c.since, c.clear_since = c.active_from, None, None, None
        return [EventOut(c.type.value, c.type, EventPhase.end, start, start)]

    def _step(self, c: _Cond, cond: bool, t: float) -> list[EventOut]:
        p = self.p
        if cond:
            c.clear_since = None
            if c.since is None:
                c.since = t
            if not c.active and t - c.since >= p.raise_s:
                c.active_from = c.since
                return [EventOut(c.type.value, c.type, EventPhase.new, c.since, t, 1.0)]
            return []
        c.since = None
        if c.active:
            if c.clear_since is None:
                c.clear_since = t
            if t - c.clear_since >= p.clear_s:
                assert c.active_from is not None
                start, c.active_from, c.clear_since = c.active_from, None, None
                return [EventOut(c.type.value, c.type, EventPhase.end, start, t)]
        return []
