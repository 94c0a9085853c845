"""Detector, zones, schedule and sources on synthetic frames (and one real clip)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from nattillsyn.edge.detector import MotionDetector, MotionParams
from nattillsyn.edge.schedule import monitoring_allowed
from nattillsyn.edge.sources import ClipReader, PlaylistSource
from nattillsyn.edge.zones import RoomZones, share_in
from nattillsyn.protocol import DeviceConfig, MonitoringWindow, Zone, ZoneKind

W, H = 160, 120


def room(seed: int = 1) -> np.ndarray:
    """A textured 'room' so that edges and a moved camera can be seen."""
    rng = np.random.default_rng(seed)
    img = np.full((H, W), 110, np.uint8)
    for _ in range(25):
        x, y = rng.integers(0, W - 20), rng.integers(0, H - 20)
        img[y : y + rng.integers(5, 30), x : x + rng.integers(5, 30)] = rng.integers(30, 220)
    return img


def with_person(img: np.ndarray, x: int, y: int, w: int = 12, h: int = 40) -> np.ndarray:
    out = img.copy()
    out[y : y + h, x : x + w] = 20
    return out


def test_moving_person_gives_motion_and_box() -> None:
    d = MotionDetector()
    base = room()
    d.process(base, 0.0)
    o = None
    for i in range(1, 6):
        o = d.process(with_person(base, 20 + 15 * i, 50), i * 0.2)
    assert o is not None and o.motion > 0.01 and o.box is not None
    x, y, w, h = o.box
    assert 0.35 < x + w / 2 < 0.75 and 0.4 < y < 0.5 and 0.3 < h < 0.4
    assert o.motion_grid is not None and o.motion_grid.sum() > 0
    assert not o.global_change


def test_box_is_the_main_blob_not_a_curtain_elsewhere() -> None:
    d = MotionDetector()
    base = room()
    d.process(base, 0.0)
    for i in range(1, 4):
        img = with_person(base, 60 + 12 * i, 60, w=24, h=50)
        img[5:40, 150:153] = 250 if i % 2 else 0  # a thin curtain edge swinging far away
        o = d.process(img, i * 0.2)
    assert o.box is not None
    x, y, w, _ = o.box
    assert x + w < 0.85 and y > 0.4  # the person's region only


@pytest.mark.parametrize("delta", [-60, 45, 80])
def test_lighting_change_is_not_motion(delta) -> None:
    d = MotionDetector()
    base = room()
    for i in range(5):
        d.process(base, i * 0.2)
    lit = np.clip(base.astype(int) + delta, 0, 255).astype(np.uint8)
    o = d.process(lit, 1.0)
    assert o.global_change and o.motion == 0.0
    o = d.process(lit, 1.2)
    assert o.motion == 0.0 and o.foreground < 0.01  # the background restarted from the new light


@pytest.mark.parametrize("kind", ["lamp", "ir"])
def test_uneven_lighting_and_day_ir_switch_are_not_motion(kind) -> None:
    """A bedside lamp brightens one side more; the IR switch changes texture everywhere."""
    d = MotionDetector()
    base = room()
    for i in range(5):
        d.process(base, i * 0.2)
    if kind == "lamp":
        ramp = np.linspace(4, 30, W)[None, :].repeat(H, 0)
        after = np.clip(base + ramp, 0, 255).astype(np.uint8)
    else:
        rng = np.random.default_rng(9)
        grain = rng.integers(-25, 26, (H // 8, W // 8)).repeat(8, 0).repeat(8, 1)
        after = np.clip(base.astype(int) + grain, 0, 255).astype(np.uint8)
    o = d.process(after, 1.0)
    assert o.global_change and o.motion == 0.0
    assert d.process(after, 1.2).motion == 0.0


def test_a_grainy_night_camera_is_not_motion_but_a_person_is() -> None:
    """Strong sensor noise (IR at night): the threshold rises above it."""
    rng = np.random.default_rng(4)
    d = MotionDetector()
    base = room()

    def grainy(img):
        return np.clip(img + rng.normal(0, 15, img.shape), 0, 255).astype(np.uint8)

    shares = [d.process(grainy(base), i * 0.2).motion for i in range(40)]
    assert max(shares[2:]) < 0.002  # empty room: no person-sized motion
    o = None
    for i in range(40, 45):
        o = d.process(grainy(with_person(base, 20 + 15 * (i - 40), 50)), i * 0.2)
    assert o is not None and o.motion > 0.01 and o.box is not None


def test_still_person_stays_foreground_for_a_while() -> None:
    d = MotionDetector(MotionParams(bg_tau_s=20))
    base = room()
    for i in range(10):
        d.process(base, i * 0.2)
    for i in range(10, 16):
        d.process(with_person(base, 10 + 10 * (i - 10), 50), i * 0.2)
    still = with_person(base, 60, 50)
    o = None
    for i in range(16, 16 + 25):  # 5 s still
        o = d.process(still, i * 0.2)
    assert o is not None and o.motion == 0.0
    cell = o.fg_grid[int(60 / H * 24) : int(90 / H * 24), int(60 / W * 32) : int(72 / W * 32)]
    assert cell.mean() > 0.5


def test_object_grid_leaves_out_light_and_shadow() -> None:
    """A patch of textured floor that only got darker (a shadow that moved there) differs
    from the background like a body does, but keeps the floor's pattern: `object_grid`
    drops it; a plain body lying on the same kind of floor stays."""
    rng = np.random.default_rng(3)
    floor = (110 + 40 * rng.standard_normal((H, W))).clip(0, 255).astype(np.uint8)
    d = MotionDetector()
    for i in range(10):
        d.process(floor, i * 0.2)
    frame = floor.copy()
    frame[80:110, 10:60] = (floor[80:110, 10:60] * 0.55).astype(np.uint8)  # shadow
    frame[80:110, 100:150] = 30  # a body in dark clothes
    o = d.process(frame, 2.0)
    objects = d.object_grid()
    assert objects is not None
    shadow, body = (slice(17, 22), slice(3, 11)), (slice(17, 22), slice(21, 29))
    assert o.fg_grid[shadow].mean() > 0.8 and o.fg_grid[body].mean() > 0.8
    assert objects[shadow].mean() < 0.2 and objects[body].mean() > 0.8


def test_ignore_zone_hides_motion() -> None:
    zones = RoomZones.from_config(
        [Zone(name="tv", kind=ZoneKind.ignore, polygon=[(0.5, 0), (1, 0), (1, 1), (0.5, 1)])]
    )
    d = MotionDetector(keep=zones.ignore_mask(W, H))
    base = room()
    d.process(base, 0)
    flicker = base.copy()
    flicker[20:60, 100:150] = 250  # a TV in the right half
    o = d.process(flicker, 0.2)
    assert o.motion == 0.0
    o = d.process(with_person(flicker, 20, 50), 0.4)
    assert o.motion > 0 and o.box is not None and o.box[0] < 0.5


def test_moved_camera_lowers_structure_similarity() -> None:
    d = MotionDetector(MotionParams(structure_every_s=0.2, bg_tau_s=1.0))
    base = room(3)
    sims = []
    for i in range(30):
        sims.append(d.process(base, i * 0.2).structure)
    assert sims[-1] > 0.95
    moved = np.roll(base, (25, 40), axis=(0, 1))
    for i in range(30, 80):
        o = d.process(moved, i * 0.2)
    assert o.structure < 0.45


def test_zone_rasterisation_and_shares() -> None:
    zones = RoomZones.from_config(
        [
            Zone(name="bed", kind=ZoneKind.bed, polygon=[(0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5)]),
            Zone(name="d", kind=ZoneKind.door, polygon=[(0.9, 0.2), (1, 0.2), (1, 1), (0.9, 1)]),
        ]
    )
    bed = zones.weight(ZoneKind.bed)
    assert bed is not None and abs(float(bed.mean()) - 0.25) < 0.01
    assert zones.of(ZoneKind.door)[0].border == frozenset({"right", "bottom"})
    m = np.zeros_like(bed)
    m[:6, :8] = 1
    assert share_in(m, bed) == pytest.approx(1.0)
    assert zones.weight(ZoneKind.chair) is None


@pytest.mark.parametrize(
    ("hhmm", "windows", "allowed"),
    [
        ("23:30", [("22:00", "07:00")], True),
        ("06:59", [("22:00", "07:00")], True),
        ("07:00", [("22:00", "07:00")], False),
        ("12:00", [("22:00", "07:00")], False),
        ("12:00", [], True),
        ("12:00", [("00:00", "00:00")], True),
        ("13:00", [("08:00", "09:00"), ("12:30", "13:30")], True),
    ],
)
def test_schedule_windows(hhmm, windows, allowed) -> None:
    cfg = DeviceConfig(
        version=1,
        timezone="UTC",
        schedule=[MonitoringWindow(start=a, end=b) for a, b in windows],
    )
    h, m = map(int, hhmm.split(":"))
    now = datetime(2026, 1, 10, h, m, tzinfo=UTC)
    assert monitoring_allowed(cfg, now, default=False) is allowed
    off = cfg.model_copy(update={"monitoring": False})
    assert monitoring_allowed(off, now, default=True) is False
    assert monitoring_allowed(None, now, default=False) is False


@pytest.mark.clips
def test_clip_reader_and_playlist_hold(clips_dir) -> None:
    clip = clips_dir / "gmdcsa24_s4_fall_02.mp4"  # 89 frames at 29.89 fps
    reader = ClipReader(clip, 5.0, 160)
    frames = list(reader.frames())
    assert reader.native_frames == 89 and abs(reader.native_fps - 29.89) < 0.01
    assert len(frames) == 15 and frames[0][1].shape == (120, 160)
    ts = [t for t, _ in frames]
    assert all(0.15 < b - a < 0.25 for a, b in itertools.pairwise(ts))
    src = PlaylistSource([clip], fps=5.0, width=80, replay_speed=0, hold_last_s=2.0)
    out = list(src.frames())
    assert len(out) == 15 + 10 and out[-1].t == pytest.approx(ts[-1] + 2.0)
    assert out[0].image.shape == (60, 80)
