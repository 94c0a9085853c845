"""A role (centre, site, reference) as a process inside its namespace, spoken to with JSON
lines: commands on stdin, answers and events on stdout (lines starting with MARK)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

MARK = "@@partition "


class Runner:
    """A process inside a namespace, spoken to with JSON lines (stdin → commands,
    stdout lines starting with MARK → answers and events)."""

    def __init__(self, ns: str, role: str, workdir: Path, args: list[str]) -> None:
        self.role = role
        self.log_path = workdir / f"{role}.log"
        env = dict(os.environ, TMPDIR=str(workdir), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "nattillsyn.testing.partition", "--role", role,
             "--workdir", str(workdir), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log_path, "ab"),  # noqa: SIM115
            cwd=workdir, env=env, text=True, bufsize=1, start_new_session=True,
        )  # fmt: skip
        self.events: list[dict] = []
        self._answers: asyncio.Queue[dict] = asyncio.Queue()
        self._reader: asyncio.Task | None = None

    async def ready(self, timeout: float = 120.0) -> dict:
        """Read its output from now on and wait until it says it is ready."""
        self._reader = asyncio.get_running_loop().create_task(self._read())
        answer = await asyncio.wait_for(self._answers.get(), timeout)
        if not answer.get("ready"):
            raise RuntimeError(f"{self.role}: {answer}\n{self.tail()}")
        return answer

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "a") as log:  # noqa: ASYNC230 - a local log file
            while True:
                line = await asyncio.to_thread(self.proc.stdout.readline)
                if not line:
                    await self._answers.put({"error": f"{self.role} runner exited"})
                    return
                if not line.startswith(MARK):
                    log.write(line)
                    continue
                msg = json.loads(line[len(MARK) :])
                if "event" in msg:
                    self.events.append(msg)
                else:
                    await self._answers.put(msg)

    async def ask(self, cmd: str, timeout: float = 120.0, **kw: object) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        answer = await asyncio.wait_for(self._answers.get(), timeout)
        if "error" in answer:
            raise RuntimeError(f"{self.role}: {answer['error']}\n{self.tail()}")
        return answer

    def tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.poll() is None and self.proc.stdin:
                self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(30)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self._reader:
            self._reader.cancel()


def say(obj: dict) -> None:
    print(MARK + json.dumps(obj, default=str), flush=True)


async def commands() -> AsyncIterator[dict]:
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        yield json.loads(line)


async def with_ticks(cmds, every: float = 0.1):
    """Commands, with None every `every` seconds in between."""
    it = cmds.__aiter__()
    pending = asyncio.ensure_future(it.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield None
                continue
            try:
                cmd = pending.result()
            except StopAsyncIteration:
                return
            yield cmd
            pending = asyncio.ensure_future(it.__anext__())
    finally:
        pending.cancel()
