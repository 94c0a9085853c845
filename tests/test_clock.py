"""The injectable clock: a manual clock wakes sleepers in deadline order and only when advanced."""

import asyncio

import pytest

from nattillsyn.clock import SYSTEM, ManualClock


async def test_manual_clock_wakes_sleepers_in_order_only_when_advanced():
    clock = ManualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, s: float) -> None:
        await clock.sleep(s)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 2.0), ("a", 1.0), ("c", 5.0))]
    await clock.until_sleeping(3)
    await clock.advance(0.5)
    assert woke == []
    await clock.advance(2.0)
    assert woke == [("a", 1.0), ("b", 2.0)]
    assert clock.monotonic() == 2.5
    await clock.advance(10)
    assert woke[-1] == ("c", 5.0)
    await asyncio.gather(*tasks)
    assert clock.sleepers == 0


async def test_a_periodic_task_fires_once_per_period_within_one_advance():
    clock = ManualClock()
    ticks: list[float] = []

    async def every_second() -> None:
        while True:
            await clock.sleep(1.0)
            ticks.append(clock.monotonic())

    task = asyncio.create_task(every_second())
    await clock.until_sleeping()
    start = clock.now()
    await clock.advance(3.5)
    assert ticks == [1.0, 2.0, 3.0]
    assert (clock.now() - start).total_seconds() == 3.5
    task.cancel()


async def test_wait_returns_on_the_event_or_at_the_clock_timeout():
    clock = ManualClock()
    event = asyncio.Event()
    waiter = asyncio.create_task(clock.wait(event, 10))
    await clock.until_sleeping()
    await clock.advance(9.9)
    assert not waiter.done()
    await clock.advance(0.1)
    assert await waiter is False
    event.set()
    assert await clock.wait(event, 10) is True
    assert await SYSTEM.wait(event, 0) is True


async def test_the_clock_does_not_go_back():
    with pytest.raises(ValueError):
        await ManualClock().advance(-1)
