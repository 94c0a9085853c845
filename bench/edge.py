"""Benchmark: the edge agent's complete per-frame analysis against OpenCV's MOG2 and KNN.

`python -m bench.edge [--json] [--rounds N] [--agent-seconds S]`

1. **Analysis throughput, like for like.** Every shared clip is decoded once, at the
   agent's rate (5 fps), to 320×240 grayscale frames kept in memory (the agent's
   capture size). On exactly these frames, in the same run and with
   `cv2.setNumThreads(1)`, it times
   - the agent's complete analysis (`pipeline.Analysis`: downscale to its analysis
     size, frame difference, selective background, grids, zones, camera health,
     occupancy, state machine, fall logic), one fresh instance per clip with the
     clip's room configuration;
   - the same downscale (INTER_AREA to the analysis size) followed by
     `cv2.createBackgroundSubtractorMOG2(detectShadows=False)` and
     `…KNN(detectShadows=False)` (`apply` per frame), one fresh instance per clip: the
     references work on frames of the SAME size as the analysis (`analysis_px` and
     `reference_px` in the JSON), so the ratio compares the methods, not the pixel
     counts. Shadow detection is off in both, as the analysis has none.
   Each is run `--rounds` times in alternating order; the best round counts. Rates are
   frames per CPU-second of the benchmark thread (one core; other load on a shared
   machine does not count), wall-clock rates are reported beside them.
2. **The whole agent** (`nattillsyn edge` in a subprocess: a 320×240 stream at 15 fps,
   every frame read and decoded, analysed at 5 fps, MQTT publishing, the on-disk queue):
   CPU share of one core and resident memory, read from /proc over `--agent-seconds`.
   The stream is a synthetic 320×240 MJPEG file made here (a person walking in a
   textured room), since the shared clips must not be re-encoded; it is deleted
   afterwards.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from nattillsyn.app.embedded import PrivateMosquitto, port_open
from nattillsyn.edge.detector import MotionParams
from nattillsyn.edge.evaluate import load_room_config
from nattillsyn.edge.pipeline import Analysis
from nattillsyn.edge.sources import ClipReader, clip_files
from nattillsyn.settings import default_clips_dir
from nattillsyn.testing.processes import service_process

ZONES = Path(__file__).resolve().parents[1] / "tests" / "data" / "zones"
SIZE = (320, 240)  # what the agent captures


def analysis_size(width: int = MotionParams().width) -> tuple[int, int]:
    """The frame size the analysis works on, from the capture size (aspect kept)."""
    return width, max(1, round(SIZE[1] * width / SIZE[0]))


def load_frames(clips_dir: Path, fps: float) -> list[tuple[str, list[tuple[float, np.ndarray]]]]:
    out = []
    for f in clip_files(clips_dir):
        frames = []
        for t, img in ClipReader(f, fps, SIZE[0]).frames():
            if img.shape != (SIZE[1], SIZE[0]):
                img = cv2.resize(img, SIZE, interpolation=cv2.INTER_AREA)
            frames.append((t, np.ascontiguousarray(img)))
        out.append((f.stem, frames))
    return out


def run_agent(clips, configs) -> tuple[float, float]:
    """(CPU seconds of this thread, wall seconds)."""
    c0, w0 = time.thread_time(), time.perf_counter()
    for name, frames in clips:
        a = Analysis(configs.get(name))
        for t, img in frames:
            a.process(img, t)
    return time.thread_time() - c0, time.perf_counter() - w0


def run_subtractor(clips, make, size: tuple[int, int]) -> tuple[float, float]:
    """A reference on the analysis's frame size: the same downscale, then `apply`."""
    c0, w0 = time.thread_time(), time.perf_counter()
    for _name, frames in clips:
        sub = make()
        for _t, img in frames:
            if img.shape[1] != size[0] or img.shape[0] != size[1]:
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            sub.apply(img)
    return time.thread_time() - c0, time.perf_counter() - w0


def mog2():
    return cv2.createBackgroundSubtractorMOG2(detectShadows=False)


def knn():
    return cv2.createBackgroundSubtractorKNN(detectShadows=False)


def synthetic_stream(path: Path, seconds: float = 60.0, fps: float = 15.0) -> Path:
    """A 320×240 MJPEG file of a person walking to and fro in a textured room."""
    rng = np.random.default_rng(1)
    room = np.full((SIZE[1], SIZE[0]), 120, np.uint8)
    for _ in range(40):
        x, y = rng.integers(0, SIZE[0] - 40), rng.integers(0, SIZE[1] - 40)
        room[y : y + rng.integers(8, 40), x : x + rng.integers(8, 40)] = rng.integers(30, 220)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE, False)
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MJPEG here")
    for i in range(int(seconds * fps)):
        t = i / fps
        img = room.copy()
        x = int(40 + 110 * (1 + np.sin(t / 3)))
        if (t // 20) % 2 == 0:  # walks 20 s, then nobody for 20 s
            img[60:220, x : x + 30] = 25
        noise = rng.integers(-3, 4, img.shape)
        writer.write(np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8))
    writer.release()
    return path


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _proc_mem_mb(pid: int) -> tuple[float, float]:
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


def whole_agent(seconds: float, warmup: float = 8.0) -> dict:
    """`nattillsyn edge` on a 320×240 15 fps stream analysed at 5 fps: CPU and RSS from /proc."""
    tmp = Path(tempfile.mkdtemp(prefix="nattillsyn-bench-"))
    broker = None
    try:
        url = os.environ.get("NATTILLSYN_MQTT_URL")
        if not url:
            if port_open("127.0.0.1", 1883):
                url = "mqtt://127.0.0.1:1883"
            else:
                broker = PrivateMosquitto()
                url = broker.start()
        # A 15 fps camera analysed at 5 fps: every frame is read (decode included).
        stream = synthetic_stream(tmp / "stream.avi", fps=15.0)
        env = {
            **os.environ,
            "NATTILLSYN_MQTT_URL": url,
            "NATTILLSYN_TOPIC_ROOT": f"bench{uuid.uuid4().hex[:8]}/nattillsyn",
            "NATTILLSYN_EDGE__SOURCE": str(stream),
            "NATTILLSYN_EDGE__LOOP": "true",
            "NATTILLSYN_EDGE__FPS": "5",
            "NATTILLSYN_EDGE__MONITOR_WITHOUT_CONFIG": "true",
            "NATTILLSYN_EDGE__STATE_DIR": str(tmp / "state"),
            "NATTILLSYN_LOG__LEVEL": "WARNING",
        }
        proc = service_process("edge", env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(warmup)
            if proc.poll() is not None:
                raise RuntimeError(f"nattillsyn edge exited with {proc.returncode}")
            c0, w0 = _proc_cpu_s(proc.pid), time.monotonic()
            rss_samples = []
            while time.monotonic() - w0 < seconds:
                time.sleep(1.0)
                rss_samples.append(_proc_mem_mb(proc.pid)[0])
            c1, w1 = _proc_cpu_s(proc.pid), time.monotonic()
            _, hwm = _proc_mem_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(20)
        return {
            "agent_cpu_share": round((c1 - c0) / (w1 - w0), 4),
            "agent_rss_mb": round(max(rss_samples), 1),
            "agent_peak_rss_mb": round(hwm, 1),
            "agent_seconds": round(w1 - w0, 1),
            "agent_stream": "320x240 MJPEG at 15 fps (synthetic), analysed at 5 fps",
        }
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="(the last line is JSON anyway)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--agent-seconds", type=float, default=30.0, help="0: skip the whole agent")
    ap.add_argument("--clips", type=Path, default=None)
    ap.add_argument(
        "--reference-width",
        type=int,
        default=None,
        help="run the references at this width instead of the analysis's (to show the "
        "difference a size mismatch makes; the ratio is then not like for like)",
    )
    ap.add_argument(
        "--min-ratio",
        type=float,
        default=None,
        help="exit 1 unless the analysis is at least this many times MOG2's rate, like for like",
    )
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    clips_dir = args.clips or Path(os.environ.get("NATTILLSYN_CLIPS_DIR") or default_clips_dir())
    clips = load_frames(clips_dir, 5.0)
    n = sum(len(f) for _, f in clips)
    configs = {
        name: load_room_config(ZONES / f"{name}.json")
        for name, _ in clips
        if (ZONES / f"{name}.json").exists()
    }
    best = {"agent": float("inf"), "mog2": float("inf"), "knn": float("inf")}
    best_wall = dict(best)
    a_size = analysis_size()
    r_size = analysis_size(args.reference_width) if args.reference_width else a_size
    runs = {
        "agent": lambda: run_agent(clips, configs),
        "mog2": lambda: run_subtractor(clips, mog2, r_size),
        "knn": lambda: run_subtractor(clips, knn, r_size),
    }
    order = list(runs)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else reversed(order):
            cpu, wall = runs[name]()
            best[name] = min(best[name], cpu)
            best_wall[name] = min(best_wall[name], wall)
    load = os.getloadavg()
    result = {
        "frames": n,
        "clips": len(clips),
        "frame_size": f"{SIZE[0]}x{SIZE[1]}",
        "analysis_px": f"{a_size[0]}x{a_size[1]}",
        "reference_px": f"{r_size[0]}x{r_size[1]}",
        "like_for_like": r_size == a_size,
        "reference": "downscale (INTER_AREA) + MOG2/KNN apply, detectShadows=False",
        "agent_fps": round(n / best["agent"], 1),
        "mog2_fps": round(n / best["mog2"], 1),
        "knn_fps": round(n / best["knn"], 1),
        "ratio_vs_mog2": round(best["mog2"] / best["agent"], 2),
        "ratio_vs_knn": round(best["knn"] / best["agent"], 2),
        "agent_us_per_frame": round(best["agent"] / n * 1e6, 1),
        "timing": "CPU time of the benchmark thread (robust on a shared machine); *_wall: wall clock",
        "agent_fps_wall": round(n / best_wall["agent"], 1),
        "mog2_fps_wall": round(n / best_wall["mog2"], 1),
        "knn_fps_wall": round(n / best_wall["knn"], 1),
        "ratio_vs_mog2_wall": round(best_wall["mog2"] / best_wall["agent"], 2),
        "rounds": args.rounds,
        "opencv": cv2.__version__,
        "loadavg_before_agent": [round(x, 2) for x in load],
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    print(
        f"analysis on {n} frames of {len(clips)} clips captured at {result['frame_size']} "
        f"(analysis {result['analysis_px']}, references {result['reference_px']}): "
        f"agent {result['agent_fps']} fps, MOG2 {result['mog2_fps']} fps, "
        f"KNN {result['knn_fps']} fps → {result['ratio_vs_mog2']}× MOG2"
    )
    if args.agent_seconds > 0:
        result.update(whole_agent(args.agent_seconds))
        print(
            f"whole agent (15 fps source, 5 fps analysis): "
            f"{result['agent_cpu_share'] * 100:.2f}% of one core, "
            f"RSS {result['agent_rss_mb']} MB (peak {result['agent_peak_rss_mb']} MB)"
        )
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))
    if args.min_ratio is not None and not (
        result["like_for_like"] and result["ratio_vs_mog2"] >= args.min_ratio
    ):
        print(
            f"FAIL: {result['ratio_vs_mog2']}× MOG2 (like for like: {result['like_for_like']}), "
            f"wanted ≥ {args.min_ratio}×",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
