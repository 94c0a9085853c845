"""Place and check the videos of the multi-source evaluation set (`evalset/`).

Each dataset folder holds `labels.csv`, `PROVENANCE.md`, `SHA256SUMS` and
`SOURCES.csv` (clip, repository, commit, path, bytes, sha256): where the unmodified
video is published. The videos themselves stay out of git; this copies each one from
a local clone of its public repository (or from the shared clips folder) and refuses
any file whose SHA-256 differs.

    python -m nattillsyn.edge.evalset place evalset --git DIR [--shared ../shared/data/clips]
    python -m nattillsyn.edge.evalset check evalset

A clone of `owner/name` is looked for as `DIR/owner+name/repo` (a bare mirror),
`DIR/owner/name`, `DIR/name` or `DIR/owner+name`: `git clone https://github.com/owner/name`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    clip: str
    repository: str
    commit: str
    path: str
    bytes: int
    sha256: str


def read_sources(folder: Path) -> list[Source]:
    with open(folder / "SOURCES.csv", newline="") as f:
        return [
            Source(r["clip"], r["repository"], r["commit"], r["path"], int(r["bytes"]), r["sha256"])
            for r in csv.DictReader(f)
        ]


def datasets(root: Path) -> list[Path]:
    root = Path(root)
    if (root / "SOURCES.csv").exists():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "SOURCES.csv").exists())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _clone(git_dirs: list[Path], repository: str) -> Path | None:
    owner, name = repository.split("/", 1)
    for d in git_dirs:
        for c in (
            d / f"{owner}+{name}" / "repo",
            d / owner / name,
            d / name,
            d / f"{owner}+{name}",
        ):
            if c.is_dir():
                return c
    return None


def place(root: Path, git_dirs: list[Path], shared: Path | None) -> tuple[int, list[str]]:
    """(clips placed now, problems). Clips already present and intact are left alone."""
    placed, problems = 0, []
    for folder in datasets(root):
        for s in read_sources(folder):
            dest = folder / s.clip
            if dest.exists() and sha256(dest) == s.sha256:
                continue
            data = None
            from_shared = shared / s.clip if shared is not None else None
            if from_shared is not None and from_shared.exists() and sha256(from_shared) == s.sha256:
                shutil.copyfile(from_shared, dest)
                placed += 1
                continue
            clone = _clone(git_dirs, s.repository)
            if clone is not None:
                out = subprocess.run(
                    ["git", "-C", str(clone), "show", f"{s.commit}:{s.path}"],
                    capture_output=True,
                    check=False,
                )
                if out.returncode == 0:
                    data = out.stdout
            if data is None:
                problems.append(f"{folder.name}/{s.clip}: no clone of {s.repository} @ {s.commit}")
                continue
            if hashlib.sha256(data).hexdigest() != s.sha256:
                problems.append(f"{folder.name}/{s.clip}: checksum differs, not placed")
                continue
            dest.write_bytes(data)
            placed += 1
    return placed, problems


def check(root: Path) -> list[str]:
    """Problems with the placed videos: missing or altered."""
    problems = []
    for folder in datasets(root):
        for s in read_sources(folder):
            p = folder / s.clip
            if not p.exists():
                problems.append(f"{folder.name}/{s.clip}: missing")
            elif sha256(p) != s.sha256:
                problems.append(f"{folder.name}/{s.clip}: checksum differs")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nattillsyn.edge.evalset", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("place", help="copy the videos from local clones, checksums verified")
    pl.add_argument("root", type=Path)
    pl.add_argument("--git", type=Path, action="append", default=[], metavar="DIR")
    pl.add_argument("--shared", type=Path, help="the shared clips folder")
    ck = sub.add_parser("check", help="verify the placed videos against SOURCES.csv")
    ck.add_argument("root", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "place":
        n, problems = place(a.root, a.git, a.shared)
        print(f"placed {n} clip(s)")
    else:
        problems = check(a.root)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
