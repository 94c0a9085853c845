"""Waiting for a condition with a deadline (the deadline a timeout, not a timer under test)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def until(fn: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Call `fn` (plain or async) every `every` seconds until it returns something true and
    return that; None once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        out = (await out) if inspect.isawaitable(out) else out
        if out or time.monotonic() > deadline:
            return out or None
        await asyncio.sleep(every)


async def poll(fn: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> Any:
    """Like `until`, but the test fails (AssertionError) when `timeout` passes first."""
    out = await until(fn, timeout, every)
    if not out:
        raise AssertionError(f"condition not met within {timeout}s")
    return out
