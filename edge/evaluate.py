"""`nattillsyn edge evaluate`: the agent's analysis on labelled clips, scored by the
rules of the clips' MANIFEST.md.

- **Presence**: per video frame, present = any label but `empty`; the agent's
  view at a frame is the room state after the last analysed frame at or before it
  (present = a state with the person in view). Not scored: the first 1.0 s, frames
  within 0.5 s of a boundary between two labels, frames covered by no label.
- **Falls**: after the last frame the clip's last frame is held for the agent's
  fall-confirmation time plus 10 s. A `fall` row is detected by a confirmed
  possible-fall event whose onset lies in [start − 1, end]; every other
  possible-fall event is a false fall event.

Each clip runs on its room configuration `<zones-dir>/<clip-stem>.json` (the
production `DeviceConfig` document), or on the default configuration without one.
The thresholds are the agent's defaults for every clip.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nattillsyn.protocol import DeviceConfig, EventPhase, EventType, RoomStateName

from .pipeline import Analysis
from .room import EventOut, StateChange
from .sources import ClipReader, clip_files

# States in which the person is in view of the camera.
PRESENT_STATES = frozenset(
    {
        RoomStateName.present,
        RoomStateName.in_bed,
        RoomStateName.out_of_bed,
        RoomStateName.in_chair,
        RoomStateName.on_floor,
        RoomStateName.no_motion,
    }
)
UNSCORED_START_S = 1.0
BOUNDARY_MARGIN_S = 0.5
HOLD_EXTRA_S = 10.0
ONSET_BEFORE_S = 1.0


@dataclass(frozen=True)
class Label:
    start: float
    end: float
    label: str


def read_labels(path: Path) -> dict[str, list[Label]]:
    out: dict[str, list[Label]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["clip"].strip(), []).append(
                Label(float(row["start_s"]), float(row["end_s"]), row["label"].strip())
            )
    for rows in out.values():
        rows.sort(key=lambda r: r.start)
    return out


def load_room_config(path: Path) -> DeviceConfig:
    """A room-configuration file: one DeviceConfig JSON document."""
    try:
        return DeviceConfig.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: invalid room configuration: {exc}") from None


@dataclass
class FallEvent:
    onset: float
    confirmed_at: float
    score: float
    zone: str | None


@dataclass
class ClipResult:
    clip: str
    zones: str | None
    video_s: float
    processed_s: float
    native_fps: float
    frames_scored: int = 0
    frames_agree: int = 0
    falls_expected: int = 0
    falls_detected: int = 0
    false_falls: int = 0
    time_to_confirm_s: list[float] = field(default_factory=list)
    fall_events: list[FallEvent] = field(default_factory=list)
    states: list[tuple[float, str]] = field(default_factory=list)
    analysis_s: float = 0.0

    @property
    def presence(self) -> float | None:
        return self.frames_agree / self.frames_scored if self.frames_scored else None


def _boundaries(rows: list[Label]) -> list[float]:
    if not rows:
        return []
    first, last = min(r.start for r in rows), max(r.end for r in rows)
    points = {r.start for r in rows} | {r.end for r in rows}
    return sorted(b for b in points if first < b < last)


def score_presence(
    rows: list[Label], states: list[tuple[float, RoomStateName]], native_fps: float, n: int
) -> tuple[int, int]:
    """(scored frames, agreeing frames) for one clip."""
    bounds = _boundaries(rows)
    scored = agree = 0
    k = -1
    for i in range(n):
        t = i / native_fps
        while k + 1 < len(states) and states[k + 1][0] <= t + 1e-9:
            k += 1
        if t < UNSCORED_START_S:
            continue
        if any(abs(t - b) <= BOUNDARY_MARGIN_S for b in bounds):
            continue
        covering = [r for r in rows if r.start <= t <= r.end]
        if not covering:
            continue
        truth = covering[0].label != "empty"
        state = states[k][1] if k >= 0 else RoomStateName.unknown
        scored += 1
        agree += (state in PRESENT_STATES) == truth
    return scored, agree


def score_falls(rows: list[Label], events: list[FallEvent]) -> tuple[int, int, int, list[float]]:
    """(expected, detected, false events, seconds from fall start to confirmation)."""
    falls = [r for r in rows if r.label == "fall"]
    used: set[int] = set()
    detected = 0
    delays: list[float] = []
    for fall in falls:
        for i, e in enumerate(events):
            if i not in used and fall.start - ONSET_BEFORE_S <= e.onset <= fall.end:
                used.add(i)
                detected += 1
                delays.append(round(e.confirmed_at - fall.start, 2))
                break
    return len(falls), detected, len(events) - len(used), delays


def evaluate_clip(
    path: Path,
    rows: list[Label],
    config: DeviceConfig | None,
    *,
    fps: float = 5.0,
    width: int = 160,
    zones_name: str | None = None,
) -> ClipResult:
    analysis = Analysis(config, width=width)
    confirm = analysis.model.params.fall_confirm_s
    states: list[tuple[float, RoomStateName]] = [(0.0, analysis.state)]
    falls: list[FallEvent] = []
    reader = ClipReader(path, fps, width)
    t_last = 0.0
    busy = 0.0

    def run(image, t: float) -> None:
        nonlocal busy
        t0 = time.perf_counter()
        outputs = analysis.process(image, t)
        busy += time.perf_counter() - t0
        for out in outputs:
            if isinstance(out, StateChange):
                states.append((t, out.state))
            elif (
                isinstance(out, EventOut)
                and out.type is EventType.possible_fall
                and out.phase is EventPhase.new
            ):
                falls.append(FallEvent(round(out.start, 2), round(t, 2), out.score, out.zone))

    last = None
    for t, image in reader.frames():
        run(image, t)
        last, t_last = image, t
    if last is not None:
        # The clip's last frame held for the confirmation time plus 10 s.
        step, held = 1.0 / fps, 1.0 / fps
        while held <= confirm + HOLD_EXTRA_S + 1e-9:
            run(last, t_last + held)
            held += step
        t_last += held - step
    result = ClipResult(
        clip=path.name,
        zones=zones_name,
        video_s=round(reader.native_frames / reader.native_fps, 2) if reader.native_fps else 0.0,
        processed_s=round(t_last, 2),
        native_fps=round(reader.native_fps, 2),
        fall_events=falls,
        states=[(round(t, 2), s.value) for t, s in states],
        analysis_s=busy,
    )
    result.frames_scored, result.frames_agree = score_presence(
        rows, states, reader.native_fps or fps, reader.native_frames
    )
    (
        result.falls_expected,
        result.falls_detected,
        result.false_falls,
        result.time_to_confirm_s,
    ) = score_falls(rows, falls)
    return result


def _job(args: tuple) -> ClipResult:
    path, rows, config_path, fps, width = args
    config = load_room_config(config_path) if config_path else None
    return evaluate_clip(
        path,
        rows,
        config,
        fps=fps,
        width=width,
        zones_name=config_path.name if config_path else None,
    )


@dataclass
class Report:
    clips: list[ClipResult]
    fps: float
    width: int
    wall_s: float

    def summary(self) -> dict:
        scored = sum(c.frames_scored for c in self.clips)
        agree = sum(c.frames_agree for c in self.clips)
        delays = [d for c in self.clips for d in c.time_to_confirm_s]
        return {
            "presence_accuracy": round(agree / scored, 4) if scored else None,
            "frames_scored": scored,
            "falls_total": sum(c.falls_expected for c in self.clips),
            "falls_detected": sum(c.falls_detected for c in self.clips),
            "false_fall_events": sum(c.false_falls for c in self.clips),
            "mean_time_to_confirmed_fall_s": round(sum(delays) / len(delays), 2)
            if delays
            else None,
            "seconds_processed": round(sum(c.processed_s for c in self.clips), 2),
            "video_seconds": round(sum(c.video_s for c in self.clips), 2),
            "clips": len(self.clips),
            "fps": self.fps,
            "width": self.width,
            "analysis_cpu_s": round(sum(c.analysis_s for c in self.clips), 3),
            "wall_s": round(self.wall_s, 2),
            "per_clip": [
                {
                    "clip": c.clip,
                    "zones": c.zones,
                    "presence": round(c.presence, 4) if c.presence is not None else None,
                    "frames_scored": c.frames_scored,
                    "falls_expected": c.falls_expected,
                    "falls_detected": c.falls_detected,
                    "false_falls": c.false_falls,
                    "time_to_confirm_s": c.time_to_confirm_s,
                    "fall_onsets": [e.onset for e in c.fall_events],
                }
                for c in self.clips
            ],
        }

    def table(self) -> str:
        head = f"{'clip':36} {'zones':5} {'presence':>9} {'frames':>6} {'falls':>5} {'found':>5} {'false':>5} {'confirm s':>10}"
        lines = [head, "-" * len(head)]
        for c in self.clips:
            pres = f"{c.presence:.3f}" if c.presence is not None else "-"
            conf = ",".join(f"{d:.1f}" for d in c.time_to_confirm_s) or "-"
            lines.append(
                f"{c.clip[:36]:36} {'yes' if c.zones else 'no':5} {pres:>9} {c.frames_scored:>6} "
                f"{c.falls_expected:>5} {c.falls_detected:>5} {c.false_falls:>5} {conf:>10}"
            )
        s = self.summary()
        lines.append("-" * len(head))
        acc = s["presence_accuracy"]
        lines.append(
            f"{'all':36} {'':5} {acc if acc is not None else '-':>9} {s['frames_scored']:>6} "
            f"{s['falls_total']:>5} {s['falls_detected']:>5} {s['false_fall_events']:>5}"
        )
        return "\n".join(lines)


def evaluate_dir(
    clips_dir: Path,
    zones_dir: Path | None = None,
    *,
    fps: float = 5.0,
    width: int = 160,
    workers: int = 1,
    only: Iterable[str] | None = None,
) -> Report:
    clips_dir = Path(clips_dir)
    labels_path = clips_dir / "labels.csv"
    labels = read_labels(labels_path) if labels_path.exists() else {}
    files = clip_files(clips_dir)
    if only:
        wanted = set(only)
        files = [f for f in files if f.name in wanted or f.stem in wanted]
    jobs = []
    for f in files:
        cfg = Path(zones_dir) / f"{f.stem}.json" if zones_dir else None
        jobs.append((f, labels.get(f.name, []), cfg if cfg and cfg.exists() else None, fps, width))
    t0 = time.monotonic()
    if workers > 1 and len(jobs) > 1:
        # Longest first so the pool finishes together.
        order = sorted(range(len(jobs)), key=lambda i: -jobs[i][0].stat().st_size)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = dict(zip(order, pool.map(_job, [jobs[i] for i in order]), strict=True))
        results = [done[i] for i in range(len(jobs))]
    else:
        results = [_job(j) for j in jobs]
    return Report(results, fps, width, time.monotonic() - t0)


def main(
    clips_dir: Path,
    zones_dir: Path | None,
    *,
    as_json: bool = False,
    fps: float = 5.0,
    width: int = 160,
    workers: int = 1,
    verbose: bool = False,
) -> int:
    if not (Path(clips_dir) / "labels.csv").exists():
        print(f"note: no labels.csv in {clips_dir}: presence and falls are not scored")
    report = evaluate_dir(clips_dir, zones_dir, fps=fps, width=width, workers=workers)
    print(report.table())
    if verbose:
        for c in report.clips:
            print(f"\n{c.clip}: states {c.states}")
            for e in c.fall_events:
                print(f"  possible_fall {asdict(e)}")
    if as_json:
        print(json.dumps(report.summary(), separators=(",", ":")))
    return 0
