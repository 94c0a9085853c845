"""The complete per-frame analysis: detector → camera health → room state machine.

One object per camera, used by the agent (live), the evaluation and the
benchmark, so all three measure exactly the same thing. A room configuration
(`DeviceConfig`: zones and thresholds) is applied between two frames.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from nattillsyn.protocol import DeviceConfig, RoomStateName

from .detector import Detector, MotionDetector, MotionParams
from .health import CameraHealth, HealthParams
from .placement import PlacementAid
from .room import Output, RoomModel, RoomParams
from .zones import RoomZones


def room_params(config: DeviceConfig | None, base: RoomParams | None = None) -> RoomParams:
    """The state machine's thresholds with the room configuration's overrides."""
    p = base or RoomParams()
    if config is None:
        return p
    return replace(
        p,
        fall_confirm_s=config.fall_confirm_s,
        no_motion_s=config.no_motion_s,
        no_motion_in_bed=config.no_motion_in_bed,
    )


class Analysis:
    """Frames in, outputs out. Holds no frame beyond the one being processed."""

    def __init__(
        self,
        config: DeviceConfig | None = None,
        *,
        width: int = 160,
        detector: Detector | None = None,
        base_params: RoomParams | None = None,
        health: HealthParams | None = None,
    ) -> None:
        self.width = width
        self.base_params = base_params or RoomParams()
        self.zones = RoomZones.from_config(config.zones if config else [])
        self._custom_detector = detector is not None
        self.detector: Detector = detector or MotionDetector(MotionParams(width=width))
        self._apply_keep_mask()
        self.health = CameraHealth(health)
        self.model = RoomModel(room_params(config, self.base_params), self.zones)
        self.config = config
        self.frames = 0
        self.placement = PlacementAid()

    def _apply_keep_mask(self) -> None:
        if isinstance(self.detector, MotionDetector):
            # Height is only known from the first frame; the detector rescales the mask.
            self.detector.set_keep_mask(self.zones.ignore_mask(self.width, self.width * 3 // 4))

    def apply(self, config: DeviceConfig) -> list[Output]:
        """A new room configuration, without losing what is known about the room."""
        zones_changed = self.config is None or config.zones != self.config.zones
        self.config = config
        out: list[Output] = []
        if zones_changed:
            self.zones = RoomZones.from_config(config.zones)
            self._apply_keep_mask()
            out += self.health.accept_view()
        self.model.reconfigure(room_params(config, self.base_params), self.zones)
        return out

    def process(self, image: np.ndarray, t: float) -> list[Output]:
        self.frames += 1
        o = self.detector.process(image, t)
        self.placement.add_motion(o.motion_grid)
        out: list[Output] = list(self.health.update(o))
        if self.health.rebase_requested and isinstance(self.detector, MotionDetector):
            self.detector.rebase_structure()
            self.health.rebase_requested = False
        objects = self.detector.object_grid if isinstance(self.detector, MotionDetector) else None
        out += self.model.update(o, blind=self.health.blind, objects=objects)
        if self.model.passage is not None:
            self.placement.add_passage(self.model.passage)
            self.model.passage = None
        return out

    def finish(self, t: float) -> list[Output]:
        """End every open event (the view ends: a replayed clip changes, the camera closes)."""
        return self.model.finish(t) + self.health.finish(t)

    def zone_map(self) -> dict:
        """The placement aid's answer (coarse digit maps; edges only while empty)."""
        edges = self.detector.edge_grid() if isinstance(self.detector, MotionDetector) else None
        return self.placement.answer(self.model.state.value, edges)

    @property
    def state(self) -> RoomStateName:
        return self.model.state

    def restore(self, state: RoomStateName, t: float) -> None:
        self.model.restore(state, t)
