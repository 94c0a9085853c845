"""The room state machine and camera health on synthetic observations (pure, fast)."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace

import numpy as np
import pytest

from nattillsyn.edge.detector import Observation
from nattillsyn.edge.health import CameraHealth, HealthParams
from nattillsyn.edge.room import EventOut, RoomModel, RoomParams, StateChange
from nattillsyn.edge.zones import GRID_H, GRID_W, RoomZones
from nattillsyn.protocol import EventPhase, EventType, RoomStateName, Zone, ZoneKind

DT = 0.2  # 5 fps
S = RoomStateName


def rect(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


BED = Zone(name="bed", kind=ZoneKind.bed, polygon=rect(0.15, 0.3, 0.5, 0.6))
CHAIR = Zone(name="chair", kind=ZoneKind.chair, polygon=rect(0.6, 0.3, 0.8, 0.7))
FLOOR = Zone(name="floor", kind=ZoneKind.floor, polygon=rect(0.0, 0.6, 1.0, 1.0))
DOOR = Zone(name="door", kind=ZoneKind.door, polygon=rect(0.85, 0.2, 1.0, 1.0))
BATH = Zone(name="bath", kind=ZoneKind.bathroom_door, polygon=rect(0.0, 0.1, 0.1, 0.6))
ROOM = [BED, CHAIR, FLOOR, DOOR, BATH]


def grid(box, value=1.0):
    g = np.zeros((GRID_H, GRID_W), np.float32)
    if box is None:
        return g
    x, y, w, h = box
    g[int(y * GRID_H) : max(int(y * GRID_H) + 1, math.ceil((y + h) * GRID_H)),
      int(x * GRID_W) : max(int(x * GRID_W) + 1, math.ceil((x + w) * GRID_W))] = value  # fmt: skip
    return g


def obs(t, box=None, motion=None, fg_box=None, fg=0.6, **kw) -> Observation:
    """A frame: something moving in `box` (share `motion`), foreground in `fg_box`."""
    if box is not None and motion is None:
        motion = 0.05
    motion = motion or 0.0
    return Observation(
        t=t,
        motion=motion,
        box=box if motion else None,
        motion_grid=grid(box, 0.5) if motion else None,
        fg_grid=grid(fg_box, fg),
        brightness=kw.get("brightness", 120.0),
        contrast=kw.get("contrast", 40.0),
        global_change=kw.get("global_change", False),
        structure=kw.get("structure", 1.0),
    )


class Run:
    """Feeds observations at 5 fps and keeps every output."""

    def __init__(self, zones=ROOM, **params) -> None:
        self.m = RoomModel(RoomParams(**params), RoomZones.from_config(list(zones)))
        self.t = 0.0
        self.out: list = []

    def frame(self, **kw) -> list:
        self.t = round(self.t + DT, 3)
        o = self.m.update(obs(self.t, **kw))
        self.out += o
        return o

    def frames(self, seconds: float, **kw) -> None:
        for _ in range(round(seconds / DT)):
            self.frame(**kw)

    def walk(self, points, seconds_each=0.4, size=(0.1, 0.4)) -> None:
        """Walk through the centres `points` (feet at y); foreground follows the person."""
        for cx, cy in points:
            box = (cx - size[0] / 2, cy - size[1], size[0], size[1])
            self.frames(seconds_each, box=box, fg_box=box)

    @property
    def state(self) -> RoomStateName:
        return self.m.state

    def states(self) -> list[RoomStateName]:
        return [o.state for o in self.out if isinstance(o, StateChange)]

    def events(self, etype=None, phase=None) -> list[EventOut]:
        return [
            o
            for o in self.out
            if isinstance(o, EventOut)
            and (etype is None or o.type is etype)
            and (phase is None or o.phase is phase)
        ]


# -- occupancy --------------------------------------------------------------------------


def test_starts_unknown_and_becomes_present_on_person_motion() -> None:
    r = Run()
    r.frames(1.0)
    assert r.state is S.unknown
    r.walk([(0.5, 0.95)], seconds_each=0.6)
    assert r.state is S.out_of_bed


def test_single_noise_frame_does_not_make_an_empty_room_occupied() -> None:
    r = Run()
    r.frames(1.0)
    for _ in range(20):
        r.frame(box=(0.5, 0.5, 0.02, 0.02), motion=0.01)
        r.frames(1.0)
    assert r.state is S.unknown


def test_no_sign_of_anybody_after_start_gives_empty() -> None:
    r = Run(startup_empty_s=60)
    r.frames(59)
    assert r.state is S.unknown
    r.frames(2)
    assert r.state is S.empty


@pytest.mark.parametrize("still_s", [5, 60, 600, 3600])
def test_a_still_person_stays_present(still_s) -> None:
    r = Run(no_motion_s=7200)
    r.walk([(0.5, 0.95), (0.55, 0.95)])
    r.frames(still_s, fg_box=(0.45, 0.55, 0.1, 0.4))
    assert r.state is S.out_of_bed


def test_no_motion_after_n_seconds_outside_bed_but_not_in_bed() -> None:
    r = Run(no_motion_s=120)
    r.walk([(0.5, 0.95)])
    r.frames(119)
    assert r.state is S.out_of_bed
    r.frames(2)
    assert r.state is S.no_motion
    # Moving again: back to where the person is.
    r.walk([(0.5, 0.95)])
    assert r.state is S.out_of_bed
    # In bed, stillness is sleep (lying down takes a few seconds).
    r.walk([(0.3, 0.55)] * 8, size=(0.3, 0.15))
    r.frames(3)
    assert r.state is S.in_bed
    r.frames(600)
    assert r.state is S.in_bed


def test_no_motion_in_bed_when_configured() -> None:
    r = Run(no_motion_s=60, no_motion_in_bed=True)
    r.walk([(0.3, 0.55)] * 3, size=(0.3, 0.15))
    r.frames(61)
    assert r.state is S.no_motion


def _leave(r: Run, end_x: float, fg_after: float) -> None:
    """Walk from the room's middle to `end_x`, then nothing moves; foreground `fg_after` stays."""
    r.walk([(0.4, 0.95), (0.6, 0.95), (end_x, 0.95)])
    last = (end_x - 0.05, 0.55, 0.1, 0.4)
    r.frames(3, fg_box=last, fg=fg_after)


def test_leaving_through_the_door_gives_left_room() -> None:
    r = Run()
    _leave(r, 0.93, fg_after=0.0)
    assert r.state is S.left_room
    # Someone comes back in.
    r.walk([(0.93, 0.95), (0.7, 0.95)])
    assert r.state is S.out_of_bed


@pytest.mark.parametrize(
    ("end_x", "fg_after", "left"),
    [
        (0.93, 0.0, True),  # through the door, gone
        (0.93, 0.6, False),  # stands still in the doorway
        (0.5, 0.0, False),  # stopped in the middle (the background swallowed nothing yet)
        (0.5, 0.6, False),  # stands still in the middle
        (0.2, 0.0, False),
    ],
)
def test_left_only_through_a_door_and_only_when_gone(end_x, fg_after, left) -> None:
    r = Run()
    _leave(r, end_x, fg_after)
    assert (r.state is S.left_room) is left


def test_a_person_standing_in_the_doorway_is_not_declared_gone_later() -> None:
    r = Run()
    _leave(r, 0.93, fg_after=0.6)
    r.frames(2, fg_box=(0.88, 0.55, 0.1, 0.4), fg=0.6)
    # Later the background has learned the person: still no exit without motion.
    r.frames(60, fg_box=None)
    assert r.state is S.out_of_bed


def test_bathroom_door_gives_in_bathroom_and_back() -> None:
    r = Run()
    r.walk([(0.4, 0.95), (0.2, 0.8), (0.05, 0.55)])
    r.frames(3)
    assert r.state is S.in_bathroom
    r.walk([(0.05, 0.55), (0.2, 0.8), (0.3, 0.9), (0.4, 0.9), (0.5, 0.9), (0.5, 0.9), (0.5, 0.9)])
    assert r.state is S.out_of_bed


def test_without_door_zones_the_image_border_is_the_way_out() -> None:
    r = Run(zones=[])
    r.walk([(0.5, 0.9), (0.8, 0.9), (0.97, 0.9)])
    r.frames(3)
    assert r.state is S.left_room
    r2 = Run(zones=[])
    r2.walk([(0.5, 0.9), (0.6, 0.9)])
    r2.frames(3)
    assert r2.state is S.present


# -- where the person is ---------------------------------------------------------------


def test_bed_chair_floor_states() -> None:
    r = Run()
    r.walk([(0.3, 0.58)] * 4, size=(0.3, 0.2))
    assert r.state is S.in_bed
    r.walk([(0.7, 0.7)] * 8, size=(0.15, 0.35))
    assert r.state is S.in_chair
    r.walk([(0.5, 0.95)] * 8)
    assert r.state is S.out_of_bed


def test_room_without_bed_zone_says_present() -> None:
    r = Run(zones=[FLOOR, DOOR])
    r.walk([(0.5, 0.95)])
    assert r.state is S.present


def test_place_hysteresis_ignores_short_excursions() -> None:
    r = Run(zone_dwell_s=2.0)
    r.walk([(0.3, 0.58)] * 4, size=(0.3, 0.2))
    assert r.state is S.in_bed
    r.walk([(0.5, 0.95)], seconds_each=1.0)  # a leg out of bed for a second
    r.walk([(0.3, 0.58)] * 2, size=(0.3, 0.2))
    assert S.out_of_bed not in r.states()


def test_standing_in_front_of_the_bed_is_out_of_bed() -> None:
    """The torso overlaps the bed in the image; the feet are on the floor."""
    r = Run()
    r.walk([(0.3, 0.95)] * 6, size=(0.1, 0.8))
    assert r.state is S.out_of_bed


# -- possible fall ---------------------------------------------------------------------


def _fall(r: Run, *, end=(0.4, 0.95), lie_w=0.4, after_fg=0.6, steps=4) -> tuple:
    """Standing at x, then the moving region's top drops to the floor within ~1 s."""
    x, floor_y = end
    r.walk([(x, floor_y)] * 3, size=(0.12, 0.8))
    top0, top1 = floor_y - 0.8, floor_y - 0.15
    for i in range(1, steps + 1):
        top = top0 + (top1 - top0) * i / steps
        box = (x - 0.1, top, 0.2 + (lie_w - 0.2) * i / steps, floor_y - top)
        r.frame(box=box, motion=0.08, fg_box=box)
    lie = (x - 0.1, top1, lie_w, 0.15)
    return lie, after_fg


@pytest.mark.parametrize("confirm_s", [0.0, 5.0, 30.0])
def test_fall_is_confirmed_after_the_confirmation_time(confirm_s) -> None:
    r = Run(fall_confirm_s=confirm_s)
    onset_t = r.t + 0.6  # the last standing frame
    lie, fg = _fall(r)
    rest_t = r.t  # the person lies still from the next frame on
    r.frames(max(0.0, confirm_s - 0.6), fg_box=lie, fg=fg)
    early = r.events(EventType.possible_fall) if confirm_s >= 1.2 else []
    r.frames(3, fg_box=lie, fg=fg)
    new = r.events(EventType.possible_fall, EventPhase.new)
    assert len(new) == 1 and not early
    assert abs(new[0].start - onset_t) <= 0.4
    assert new[0].t - rest_t >= confirm_s
    assert r.state is S.on_floor
    assert new[0].zone == "floor"


def test_got_up_before_confirmation_no_event() -> None:
    r = Run(fall_confirm_s=10)
    lie, fg = _fall(r)
    r.frames(4, fg_box=lie, fg=fg)
    r.walk([(0.45, 0.95)] * 4, size=(0.12, 0.8))  # stands up
    r.frames(30, fg_box=(0.4, 0.15, 0.12, 0.8))
    assert not r.events(EventType.possible_fall)


def test_fall_ends_when_the_person_gets_up() -> None:
    r = Run(fall_confirm_s=5)
    lie, fg = _fall(r)
    r.frames(8, fg_box=lie, fg=fg)
    assert r.state is S.on_floor
    r.walk([(0.45, 0.95)] * 4, size=(0.12, 0.8))
    end = r.events(EventType.possible_fall, EventPhase.end)
    assert len(end) == 1
    assert r.state is S.out_of_bed


def test_a_second_person_moving_elsewhere_does_not_undo_the_fall() -> None:
    """An onlooker at the far side moves a little while the fallen person lies still:
    their motion is neither the fallen person coming to rest high nor getting up."""
    r = Run(zones=[], fall_confirm_s=5)
    lie, fg = _fall(r, end=(0.3, 0.95))
    onlooker = (0.86, 0.4, 0.12, 0.15)  # seated at the right edge, moving an arm
    for i in range(60):
        r.frame(box=onlooker if i % 3 == 0 else None, motion=0.012 if i % 3 == 0 else 0.0,
                fg_box=lie, fg=fg)  # fmt: skip
    assert len(r.events(EventType.possible_fall, EventPhase.new)) == 1
    assert r.state is S.on_floor
    r.walk([(0.9, 0.6)] * 6, size=(0.12, 0.3))  # the onlooker stands up over there
    assert not r.events(EventType.possible_fall, EventPhase.end)
    assert r.state is S.on_floor


def test_someone_walking_past_behind_the_fallen_person_does_not_undo_the_fall() -> None:
    """A passer-by far behind the person on the floor is above them in the image and in
    the same columns: their walking neither keeps the fallen person "moving" nor is it
    the fallen person getting up (UP-Fall: people walk past behind a glass wall)."""
    r = Run(zones=[], fall_confirm_s=5)
    lie, fg = _fall(r, end=(0.4, 0.95))
    for i in range(40):
        x = 0.8 - 0.015 * i  # walks right to left across the columns of the lying body
        r.frame(box=(x, 0.25, 0.08, 0.35), motion=0.02, fg_box=lie, fg=fg)
    assert len(r.events(EventType.possible_fall, EventPhase.new)) == 1
    assert r.state is S.on_floor


def test_two_people_are_not_one_drop() -> None:
    """Someone's region high up on one side, then another person's small movement low
    down on the other side: the tops differ as much as in a fall, but no body went down."""
    r = Run(zones=[], fall_confirm_s=5)
    r.walk([(0.15, 0.6)] * 3, size=(0.1, 0.45))  # someone standing at the left
    seated = (0.7, 0.55, 0.1, 0.15)  # a seated person's hand at the right, lower down
    r.frame(box=seated, motion=0.03, fg_box=seated)
    r.frames(10, fg_box=seated, fg=0.6)
    assert not r.events(EventType.possible_fall)


def test_a_twitch_at_the_bottom_edge_is_not_leaving() -> None:
    """Without door zones the image border is the way out; a person lying at the bottom
    edge (cut by it) who moves a hand has not walked out, even where the background holds
    them (they were there from the first frame)."""
    r = Run(zones=[])
    r.walk([(0.5, 0.9), (0.6, 0.9)])
    r.frames(4)  # lies still
    twitch = (0.3, 0.88, 0.06, 0.12)
    for _ in range(3):
        r.frame(box=twitch, motion=0.004)
    r.frames(3)
    assert r.state is S.present


def _slide_down(r: Run, end=(0.4, 0.95), seconds=6.0) -> tuple:
    """Standing, then sinking slowly to the floor (too slow for a drop) and lying there."""
    x, floor_y = end
    r.walk([(x, floor_y)] * 6, size=(0.12, 0.8))
    top0, top1 = floor_y - 0.8, floor_y - 0.15
    n = round(seconds / DT)
    for i in range(1, n + 1):
        top = top0 + (top1 - top0) * i / n
        box = (x - 0.1, top, 0.2 + 0.2 * i / n, floor_y - top)
        r.frame(box=box, motion=0.03, fg_box=box)
    return (x - 0.1, top1, 0.4, 0.15)


def test_lying_low_and_still_reaches_on_floor_without_a_seen_drop() -> None:
    r = Run(fall_confirm_s=10, fall_drop_min=5.0)  # the drop is missed
    lie = _slide_down(r)
    r.frames(8, fg_box=lie)
    assert r.state is not S.on_floor  # not before the confirmation time
    r.frames(4, fg_box=lie)
    assert r.state is S.on_floor
    assert not r.events(EventType.possible_fall)  # no drop seen: the state, not the event
    r.walk([(0.45, 0.95)] * 4, size=(0.12, 0.8))  # gets up
    assert r.state is S.out_of_bed


def test_lying_low_reaches_on_floor_while_an_onlooker_moves_a_little() -> None:
    r = Run(zones=[], fall_confirm_s=10, fall_drop_min=5.0)  # the drop is missed
    lie = _slide_down(r, end=(0.3, 0.95))
    onlooker = (0.86, 0.4, 0.12, 0.15)  # seated at the right edge, moving a hand now and then
    for i in range(80):
        moving = i % 2 == 0
        r.frame(box=onlooker if moving else None, motion=0.006 if moving else 0.0, fg_box=lie)
    assert r.state is S.on_floor


@pytest.mark.parametrize("end", [(0.3, 0.6), (0.7, 0.7)])
def test_lying_low_in_bed_or_chair_is_not_on_floor(end) -> None:
    r = Run(fall_confirm_s=5, fall_drop_min=5.0)
    lie = _slide_down(r, end=end)
    r.frames(20, fg_box=lie)
    assert S.on_floor not in r.states()


@pytest.mark.parametrize("area_rel", [0.15, 0.0])
def test_a_small_movement_low_down_is_not_a_body_on_the_floor(area_rel) -> None:
    """Seated, only a hand moves in the lap, then stillness: low and small is a hand."""
    r = Run(zones=[], fall_confirm_s=5, fall_drop_min=5.0, floor_area_rel=area_rel)
    r.walk([(0.4, 0.95)] * 6, size=(0.12, 0.8))
    hand = (0.38, 0.72, 0.06, 0.06)
    r.frames(2, box=hand, motion=0.004, fg_box=(0.34, 0.4, 0.14, 0.55))
    r.frames(12, fg_box=(0.34, 0.4, 0.14, 0.55))
    assert (S.on_floor in r.states()) == (area_rel == 0.0)  # the check is what prevents it


def test_sitting_still_is_not_on_floor() -> None:
    r = Run(zones=[], fall_confirm_s=5, fall_drop_min=5.0)
    r.walk([(0.4, 0.95)] * 6, size=(0.12, 0.8))
    for i in range(1, 11):  # sits down: the top sinks by a third of the height
        box = (0.34, 0.15 + 0.25 * i / 10, 0.14, 0.8 - 0.25 * i / 10)
        r.frame(box=box, motion=0.03, fg_box=box)
    r.frames(20, fg_box=(0.34, 0.4, 0.14, 0.55))
    assert S.on_floor not in r.states()


def test_drop_into_bed_or_chair_is_not_a_fall() -> None:
    for end in [(0.3, 0.6), (0.7, 0.7)]:
        r = Run(fall_confirm_s=5)
        lie, fg = _fall(r, end=end, lie_w=0.2)
        r.frames(20, fg_box=lie, fg=fg)
        assert not r.events(EventType.possible_fall), end


@pytest.mark.parametrize("shadow_is_light", [True, False])
def test_a_fall_onto_the_bed_is_judged_without_the_shadow_it_left_on_the_floor(
    shadow_is_light,
) -> None:
    """Falling backwards onto the bed: the body lies in the bed zone, but the floor in front
    of it changed too (the person's shadow left it) and the rest region spans both, its
    centre on the floor. Where the detector says that change is only light, the body is in
    the bed: no fall. If it were a body, it would be one on the floor."""
    r = Run(zones=[BED], fall_confirm_s=5)
    _fall(r, end=(0.3, 0.6), lie_w=0.25)
    spread = (0.15, 0.45, 0.3, 0.5)  # body on the bed (rows 0.45-0.6) + floor below it
    body = grid((0.15, 0.45, 0.3, 0.15), 0.8)
    fg_all = np.maximum(grid((0.15, 0.6, 0.3, 0.35), 0.8), body)
    objects = body if shadow_is_light else fg_all
    for _ in range(3):
        r.t = round(r.t + DT, 3)
        o = replace(obs(r.t, box=spread, motion=0.03), fg_grid=fg_all)
        r.out += r.m.update(o, objects=lambda: objects)
    for _ in range(60):
        r.t = round(r.t + DT, 3)
        o = replace(obs(r.t), fg_grid=fg_all)
        r.out += r.m.update(o, objects=lambda: objects)
    assert bool(r.events(EventType.possible_fall)) is not shadow_is_light


def test_drop_outside_floor_zone_is_not_a_fall_when_the_room_has_one() -> None:
    r = Run(fall_confirm_s=5)
    lie, fg = _fall(r, end=(0.4, 0.45))  # ends high on the wall (a curtain falling)
    r.frames(20, fg_box=lie, fg=fg)
    assert not r.events(EventType.possible_fall)


def test_drop_then_gone_through_the_door_is_an_exit_not_a_fall() -> None:
    r = Run(fall_confirm_s=5)
    _fall(r, end=(0.9, 0.98), after_fg=0.0)
    r.frames(20)
    assert not r.events(EventType.possible_fall)
    assert r.state is S.left_room


def test_slow_sitting_down_and_bending_are_not_falls() -> None:
    r = Run(fall_confirm_s=5)
    r.walk([(0.4, 0.95)] * 3, size=(0.12, 0.8))
    for i in range(1, 21):  # the top sinks 0.4 over 4 s
        top = 0.15 + 0.4 * i / 20
        r.frame(
            box=(0.34, top, 0.12, 0.95 - top), motion=0.02, fg_box=(0.34, top, 0.12, 0.95 - top)
        )
    r.frames(20, fg_box=(0.34, 0.55, 0.12, 0.4))
    # bending: down by a third of the height, then up again
    for top in (0.25, 0.35, 0.45, 0.35, 0.2, 0.15):
        r.frame(box=(0.3, top, 0.2, 0.95 - top), motion=0.05, fg_box=(0.3, top, 0.2, 0.95 - top))
    r.frames(20, fg_box=(0.34, 0.15, 0.12, 0.8))
    assert not r.events(EventType.possible_fall)


def test_squats_even_one_frozen_mid_rise_are_not_falls() -> None:
    """Exercise: down and up again; the clip (or the camera) stops half way up."""
    r = Run(fall_confirm_s=5)
    r.walk([(0.5, 0.95)] * 3, size=(0.12, 0.8))
    tops = [0.15, 0.3, 0.45, 0.55, 0.45, 0.3, 0.15, 0.15, 0.3, 0.45, 0.55, 0.5, 0.35]
    for top in tops:
        box = (0.44, top, 0.14, 0.95 - top)
        r.frame(box=box, motion=0.06, fg_box=box)
    r.frames(40, fg_box=(0.44, 0.35, 0.14, 0.6))  # frozen half way up
    assert not r.events(EventType.possible_fall)


def test_drop_with_nobody_lying_there_is_not_a_fall() -> None:
    r = Run(fall_confirm_s=5)
    _fall(r, end=(0.4, 0.95), after_fg=0.0)  # e.g. a coat falling off a chair, then nothing
    r.frames(20)
    assert not r.events(EventType.possible_fall)


# -- events, blindness, restore ---------------------------------------------------------


def test_motion_event_new_and_end() -> None:
    r = Run(motion_quiet_s=5)
    r.walk([(0.5, 0.95)] * 3)
    r.frames(4.8)
    assert len(r.events(EventType.motion, EventPhase.new)) == 1
    assert not r.events(EventType.motion, EventPhase.end)
    r.frames(1)
    end = r.events(EventType.motion, EventPhase.end)
    assert len(end) == 1 and end[0].key == "motion"


def test_blind_gives_unknown_and_keeps_occupancy() -> None:
    r = Run()
    r.walk([(0.5, 0.95)])
    r.t += DT
    r.out += r.m.update(obs(r.t), blind=True)
    assert r.state is S.unknown
    r.frames(1)
    assert r.state is S.out_of_bed


def test_restore_after_restart() -> None:
    for saved, want in [
        (S.in_bed, S.in_bed),
        (S.left_room, S.left_room),
        (S.in_bathroom, S.in_bathroom),
        (S.unknown, S.unknown),
    ]:
        r = Run()
        r.m.restore(saved, 0.0)
        r.frames(1)
        assert r.state is want, saved


def test_random_small_noise_never_changes_a_present_state() -> None:
    """Exhaustive-ish: tiny motions anywhere never move a sleeping person out of bed."""
    rng = random.Random(7)
    r = Run()
    r.walk([(0.3, 0.58)] * 4, size=(0.3, 0.2))
    assert r.state is S.in_bed
    for _ in range(2000):
        x, y = rng.random() * 0.95, rng.random() * 0.95
        r.frame(box=(x, y, 0.03, 0.03), motion=rng.random() * 0.0015, fg_box=(0.15, 0.48, 0.3, 0.1))
    assert r.state is S.in_bed


@pytest.mark.parametrize(("place", "zones"), list(itertools.product(["bed", "floor"], [ROOM, []])))
def test_every_output_is_consistent(place, zones) -> None:
    r = Run(zones=zones, fall_confirm_s=3)
    r.walk([(0.3, 0.58)] * 4 if place == "bed" else [(0.5, 0.95)] * 4)
    _fall(r)
    r.frames(10, fg_box=(0.3, 0.8, 0.4, 0.15))
    r.walk([(0.6, 0.95), (0.8, 0.95), (0.95, 0.95)])
    r.frames(5)
    changes = [o for o in r.out if isinstance(o, StateChange)]
    assert all(0 <= c.confidence <= 1 for c in changes)
    assert all(a.state is not b.state for a, b in itertools.pairwise(changes))
    # every event that started has ended or is the fall still open, never ended twice
    for key in {e.key for e in r.events()}:
        phases = [e.phase for e in r.events() if e.key == key]
        assert phases.count(EventPhase.end) <= phases.count(EventPhase.new)


# -- camera health ----------------------------------------------------------------------


def _health(params=None):
    h = CameraHealth(params or HealthParams(raise_s=2, clear_s=2))
    out = []

    def feed(seconds, **kw):
        t0 = feed.t
        while feed.t < t0 + seconds - 1e-9:
            feed.t = round(feed.t + DT, 3)
            out.extend(h.update(obs(feed.t, **kw)))

    feed.t = 0.0
    return h, out, feed


@pytest.mark.parametrize(
    ("kw", "etype"),
    [
        ({"brightness": 5.0, "contrast": 2.0}, EventType.too_dark),
        ({"brightness": 90.0, "contrast": 1.5}, EventType.camera_covered),
        ({"structure": 0.1}, EventType.camera_moved),
    ],
)
def test_camera_conditions_raise_after_a_while_and_clear(kw, etype) -> None:
    h, out, feed = _health()
    feed(5)
    feed(1.0, **kw)  # shorter than raise_s: nothing
    feed(1)
    assert not out
    feed(3, **kw)
    assert [(e.type, e.phase) for e in out] == [(etype, EventPhase.new)]
    assert h.blind is (etype is not EventType.camera_moved)
    feed(3)
    assert [(e.type, e.phase) for e in out][-1] == (etype, EventPhase.end)


def test_moved_camera_ends_when_the_view_is_accepted() -> None:
    h, out, feed = _health()
    feed(4, structure=0.1)
    assert out and out[-1].phase is EventPhase.new
    out.extend(h.accept_view())
    assert out[-1].phase is EventPhase.end and h.rebase_requested
