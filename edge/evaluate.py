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
from .scoring import PresenceCounts, Tally, by_dataset, figures, on_floor_reached
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


LABELS = frozenset({"empty", "person", "lying", "fall"})


@dataclass(frozen=True)
class Label:
    start: float
    end: float
    label: str


def read_labels(path: Path) -> dict[str, list[Label]]:
    """`clip,start_s,end_s,label` rows (extra columns such as `dataset` are allowed)."""
    out: dict[str, list[Label]] = {}
    with open(path, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                label = Label(float(row["start_s"]), float(row["end_s"]), row["label"].strip())
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{n}: bad label row {row}: {exc}") from None
            if label.label not in LABELS or label.end < label.start:
                raise ValueError(f"{path}:{n}: bad label row {row}")
            out.setdefault(row["clip"].strip(), []).append(label)
    for rows in out.values():
        rows.sort(key=lambda r: r.start)
    return out


def read_datasets(path: Path, default: str) -> dict[str, str]:
    """clip -> dataset from the optional `dataset` column of a labels.csv."""
    with open(path, newline="") as f:
        return {
            row["clip"].strip(): (row.get("dataset") or default).strip()
            for row in csv.DictReader(f)
        }


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
    falls_expected: int = 0
    falls_detected: int = 0
    false_falls: int = 0
    time_to_confirm_s: list[float] = field(default_factory=list)
    fall_events: list[FallEvent] = field(default_factory=list)
    states: list[tuple[float, str]] = field(default_factory=list)
    analysis_s: float = 0.0
    dataset: str = ""
    presence_counts: PresenceCounts = field(default_factory=PresenceCounts)
    on_floor_after_falls: int = 0
    fall_confirm_s: float = 0.0

    @property
    def tally(self) -> Tally:
        activity = self.falls_expected == 0
        return Tally(
            falls=self.falls_expected,
            detected=self.falls_detected,
            on_floor=self.on_floor_after_falls,
            false_falls=self.false_falls,
            false_falls_on_activity=self.false_falls if activity else 0,
            video_s=self.video_s,
            activity_video_s=self.video_s if activity else 0.0,
            presence=self.presence_counts,
            clips=1,
            activity_clips=int(activity),
            on_floor_on_activity=int(
                activity and any(s == RoomStateName.on_floor.value for _, s in self.states)
            ),
        )

    @property
    def presence(self) -> float | None:
        return self.presence_counts.accuracy


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
    c = presence_counts(rows, states, native_fps, n)
    return c.scored, c.agree


def presence_counts(
    rows: list[Label], states: list[tuple[float, RoomStateName]], native_fps: float, n: int
) -> PresenceCounts:
    """Scored and agreeing frames of one clip, split into truly present and empty."""
    bounds = _boundaries(rows)
    present = present_agree = empty = empty_agree = 0
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
        says = state in PRESENT_STATES
        if truth:
            present += 1
            present_agree += says
        else:
            empty += 1
            empty_agree += not says
    return PresenceCounts(present, present_agree, empty, empty_agree)


def score_on_floor(rows: list[Label], states: list[tuple[float, str]], confirm_s: float) -> int:
    """Falls after which the room state reached `on_floor` by the fall's end plus the
    confirmation time plus 10 s (whether or not the drop was detected)."""
    return sum(
        on_floor_reached(
            states,
            r.start - ONSET_BEFORE_S,
            r.end + confirm_s + HOLD_EXTRA_S,
            RoomStateName.on_floor.value,
        )
        for r in rows
        if r.label == "fall"
    )


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
    dataset: str = "",
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
        dataset=dataset,
        fall_confirm_s=confirm,
    )
    result.presence_counts = presence_counts(
        rows, states, reader.native_fps or fps, reader.native_frames
    )
    result.on_floor_after_falls = score_on_floor(rows, [(t, s.value) for t, s in states], confirm)
    (
        result.falls_expected,
        result.falls_detected,
        result.false_falls,
        result.time_to_confirm_s,
    ) = score_falls(rows, falls)
    return result


def _job(args: tuple) -> ClipResult:
    path, rows, config_path, fps, width, dataset = args
    config = load_room_config(config_path) if config_path else None
    return evaluate_clip(
        path,
        rows,
        config,
        fps=fps,
        width=width,
        zones_name=config_path.name if config_path else None,
        dataset=dataset,
    )


@dataclass
class Report:
    clips: list[ClipResult]
    fps: float
    width: int
    wall_s: float

    def summary(self) -> dict:
        scored = sum(c.presence_counts.scored for c in self.clips)
        agree = sum(c.presence_counts.agree for c in self.clips)
        delays = [d for c in self.clips for d in c.time_to_confirm_s]
        datasets, total = by_dataset((c.dataset, c.tally) for c in self.clips)
        overall = figures(total)
        return {
            **overall,
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
            "fall_confirm_s": self.clips[0].fall_confirm_s if self.clips else None,
            "datasets": datasets,
            "per_clip": [
                {
                    "dataset": c.dataset,
                    "clip": c.clip,
                    "zones": c.zones,
                    "presence": round(c.presence, 4) if c.presence is not None else None,
                    "frames_scored": c.presence_counts.scored,
                    "falls_expected": c.falls_expected,
                    "falls_detected": c.falls_detected,
                    "false_falls": c.false_falls,
                    "time_to_confirm_s": c.time_to_confirm_s,
                    "fall_onsets": [e.onset for e in c.fall_events],
                    "on_floor_after_falls": c.on_floor_after_falls,
                    "video_s": c.video_s,
                }
                for c in self.clips
            ],
        }

    def table(self) -> str:
        head = (
            f"{'clip':36} {'zones':5} {'presence':>9} {'frames':>6} {'falls':>5} {'found':>5} "
            f"{'floor':>5} {'false':>5} {'confirm s':>10}"
        )
        lines = [head, "-" * len(head)]
        for c in self.clips:
            pres = f"{c.presence:.3f}" if c.presence is not None else "-"
            conf = ",".join(f"{d:.1f}" for d in c.time_to_confirm_s) or "-"
            lines.append(
                f"{c.clip[:36]:36} {'yes' if c.zones else 'no':5} {pres:>9} {c.presence_counts.scored:>6} "
                f"{c.falls_expected:>5} {c.falls_detected:>5} {c.on_floor_after_falls:>5} "
                f"{c.false_falls:>5} {conf:>10}"
            )
        s = self.summary()
        lines.append("-" * len(head))
        acc = s["presence_accuracy"]
        lines.append(
            f"{'all':36} {'':5} {acc if acc is not None else '-':>9} {s['frames_scored']:>6} "
            f"{s['falls_total']:>5} {s['falls_detected']:>5} {s['on_floor_after_falls']:>5} "
            f"{s['false_fall_events']:>5}"
        )
        lines.append("")
        lines.append(
            f"{'dataset':24} {'clips':>5} {'recall (95% CI)':>22} {'on_floor':>9} "
            f"{'false/h':>8} {'bal.acc':>8} {'acc':>6} {'always P':>8} {'always E':>8}"
        )
        rows = (
            [*s["datasets"].items(), ("overall", s)]
            if len(s["datasets"]) > 1
            else [*s["datasets"].items()]
        )
        for name, d in rows:
            lines.append(_dataset_line(name, d))
        return "\n".join(lines)


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _dataset_line(name: str, d: dict) -> str:
    ci = d["fall_recall_ci95"]
    recall = f"{d['falls_detected']}/{d['falls_total']} [{ci[0]:.2f},{ci[1]:.2f}]" if ci else "-"
    floor = f"{d['on_floor_after_falls']}/{d['falls_total']}" if d["falls_total"] else "-"
    return (
        f"{name[:24]:24} {d['clips']:>5} {recall:>22} {floor:>9} "
        f"{_fmt(d['false_falls_per_hour'], '.1f'):>8} "
        f"{_fmt(d['presence_balanced_accuracy']):>8} {_fmt(d['presence_accuracy']):>6} "
        f"{_fmt(d['baseline_always_present_accuracy']):>8} "
        f"{_fmt(d['baseline_always_empty_accuracy']):>8}"
    )


@dataclass(frozen=True)
class DatasetDir:
    """One labelled folder: labels.csv beside its clips, optional zones/<stem>.json."""

    path: Path
    labels: dict[str, list[Label]]
    datasets: dict[str, str]


def find_datasets(root: Path) -> list[DatasetDir]:
    """`root` with a labels.csv is one dataset (named by a `dataset` column or the
    folder); otherwise every sub-folder with a labels.csv is one."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    if (root / "labels.csv").exists():
        dirs = [root]
    else:
        dirs = sorted(p for p in root.iterdir() if (p / "labels.csv").exists())
    return [
        DatasetDir(d, read_labels(d / "labels.csv"), read_datasets(d / "labels.csv", d.name))
        for d in dirs
    ]


class MissingClips(ValueError):
    pass


def evaluate_dir(
    clips_dir: Path | list[Path],
    zones_dir: Path | None = None,
    *,
    fps: float = 5.0,
    width: int = 160,
    workers: int = 1,
    only: Iterable[str] | None = None,
    use_zones: bool = True,
) -> Report:
    roots = [Path(p) for p in (clips_dir if isinstance(clips_dir, list) else [clips_dir])]
    jobs = []
    missing: list[str] = []
    for root in roots:
        sets = find_datasets(root)
        if not sets:
            # An unlabelled folder: run, score nothing.
            sets = [DatasetDir(root, {}, {})]
        for ds in sets:
            files = clip_files(ds.path)
            names = {f.name for f in files}
            missing += [str(ds.path / c) for c in ds.labels if c not in names]
            if only:
                wanted = set(only)
                files = [f for f in files if f.name in wanted or f.stem in wanted]
            for f in files:
                cfg = None
                for d in (Path(zones_dir) if zones_dir else None, ds.path / "zones"):
                    if use_zones and d is not None and (d / f"{f.stem}.json").exists():
                        cfg = d / f"{f.stem}.json"
                        break
                jobs.append(
                    (
                        f,
                        ds.labels.get(f.name, []),
                        cfg,
                        fps,
                        width,
                        ds.datasets.get(f.name, ds.path.name),
                    )
                )
    if missing and not only:
        raise MissingClips(
            f"{len(missing)} labelled clip(s) not found (place them first, see the folder's "
            f"PROVENANCE.md): " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        )
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
    clips_dir: Path | list[Path],
    zones_dir: Path | None,
    *,
    as_json: bool = False,
    fps: float = 5.0,
    width: int = 160,
    workers: int = 1,
    verbose: bool = False,
    use_zones: bool = True,
) -> int:
    roots = clips_dir if isinstance(clips_dir, list) else [clips_dir]
    for root in roots:
        if not find_datasets(root):
            print(f"note: no labels.csv in {root}: presence and falls are not scored")
    try:
        report = evaluate_dir(
            roots, zones_dir, fps=fps, width=width, workers=workers, use_zones=use_zones
        )
    except MissingClips as exc:
        print(f"error: {exc}")
        return 2
    print(report.table())
    if verbose:
        for c in report.clips:
            print(f"\n{c.clip}: states {c.states}")
            for e in c.fall_events:
                print(f"  possible_fall {asdict(e)}")
    if as_json:
        print(json.dumps(report.summary(), separators=(",", ":")))
    return 0
