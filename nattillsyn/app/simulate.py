"""Simulated rooms: the shared real clips replayed through the real edge pipeline.

Each room gets its own playlist (a rotation of the clips, so rooms differ) and
its own EdgeAgent publishing to the configured broker, exactly as a device would.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from nattillsyn import log
from nattillsyn.edge.agent import EdgeAgent
from nattillsyn.edge.sources import PlaylistSource
from nattillsyn.service import run_until_signalled
from nattillsyn.settings import Settings

logger = log.get(__name__)

# A fall first in room 1, so the demo shows an alert within a minute.
FIRST_CLIPS = [
    "gmdcsa24_s3_fall_19.mp4",
    "gmdcsa24_s3_adl_18.mp4",
    "one-by-one-person-detection.mp4",
    "gmdcsa24_s2_adl_23.mp4",
]


def room_ids(n: int) -> list[str]:
    return [f"rum-{101 + i}" for i in range(n)]


def playlist(clips_dir: Path, index: int) -> list[Path]:
    """All clips, rotated so room `index` starts with its own first clip."""
    clips = sorted(clips_dir.glob("*.mp4"))
    if not clips:
        raise FileNotFoundError(f"no clips in {clips_dir}: set NATTILLSYN_CLIPS_DIR")
    first = FIRST_CLIPS[index % len(FIRST_CLIPS)]
    names = [c.name for c in clips]
    start = names.index(first) if first in names else index % len(clips)
    start = (start + (index // len(FIRST_CLIPS))) % len(clips)
    return clips[start:] + clips[:start]


def room_settings(
    settings: Settings, index: int, *, speed: float, fall_confirm_s: float
) -> Settings:
    room = room_ids(index + 1)[-1]
    edge = settings.edge.model_copy(
        update={
            "room": room,
            "device": f"cam-{room}",
            "replay_speed": speed,
            "loop": True,
            "fall_confirm_s": fall_confirm_s,
            # Hold each clip's last frame as the scoring rule does: a fallen person stays down.
            "hold_last_s": fall_confirm_s + 10.0,
            # Simulated rooms have no administrator to send a config with consent.
            "monitor_without_config": True,
        }
    )
    return settings.model_copy(update={"edge": edge})


def make_agents(
    settings: Settings, rooms: int, *, speed: float = 1.0, fall_confirm_s: float = 10.0
):

    agents = []
    for i in range(rooms):
        s = room_settings(settings, i, speed=speed, fall_confirm_s=fall_confirm_s)
        source = partial(
            PlaylistSource,
            playlist(settings.clips_dir, i),
            fps=s.edge.fps,
            width=s.edge.width,
            replay_speed=speed,
            loop=True,
            hold_last_s=s.edge.hold_last_s,
        )
        agents.append(EdgeAgent(s, source=source))
    return agents


async def run_simulation(settings: Settings, rooms: int, speed: float) -> int:

    await run_until_signalled(make_agents(settings, rooms, speed=speed))
    return 0


__all__ = ["make_agents", "playlist", "room_ids", "room_settings", "run_simulation"]
