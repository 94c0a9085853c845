"""Time, injected: services and state machines read it from a clock so tests can move it.

`Clock` is the system clock. `ManualClock` stands still until a test advances it: timers
(escalation delays, heartbeats, offline detection) then fire on the test's command instead of
the test sleeping for them. Every service takes ``clock: Clock = SYSTEM`` and uses only
`now`, `monotonic`, `sleep` and `wait`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta


class Clock:
    """The system clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for intervals."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for `event` for at most `timeout` seconds of this clock; True if it was set."""
        if event.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        return event.is_set()


SYSTEM = Clock()


class ManualClock(Clock):
    """A clock that moves only when `advance` is called (for tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 5, 22, 0, tzinfo=UTC)
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._slept = asyncio.Event()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock now."""
        return sum(1 for *_, f in self._sleepers if not f.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._seq), fut))
        self._slept.set()
        await fut

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        timer = asyncio.ensure_future(self.sleep(timeout))
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({timer, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (timer, waiter):
                task.cancel()
        return event.is_set()

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own deadline, in order.

        After each wake-up the loop runs until it is idle, so a woken task that sleeps again
        within the step is woken again in the same call."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        target = self._elapsed + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._elapsed = max(self._elapsed, deadline)
            if not fut.done():
                fut.set_result(None)
                await _settle()
        self._elapsed = target
        await _settle()

    async def until_sleeping(self, count: int = 1, timeout: float = 10.0) -> None:
        """Return once `count` tasks wait on this clock (a service has reached its timer)."""
        async with asyncio.timeout(timeout):
            while self.sleepers < count:
                self._slept.clear()
                await self._slept.wait()


async def _settle(rounds: int = 20) -> None:
    # Let woken tasks run up to their next await; I/O they start is polled for by the tests.
    for _ in range(rounds):
        await asyncio.sleep(0)
