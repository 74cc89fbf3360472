"""Retrying a Redis or broker step in place, for both loops.

A dependency that is down (``DependencyError``) is retried with exponential backoff until it
answers or shutdown is asked; the work in hand is kept, never dropped or half-committed.
While a step fails, the loop's ``LoopHealth`` names it, so readiness and metrics show which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from connector.errors import DependencyError

__all__ = ["LoopHealth", "Stopped", "retry_step", "wait_any"]

log = logging.getLogger(__name__)

RETRY_BASE_S: Final = 0.5
RETRY_MAX_S: Final = 15.0

_T = TypeVar("_T")


class Stopped(Exception):
    """Shutdown was requested while a step was being retried: drop the work uncommitted."""


@dataclass(slots=True)
class LoopHealth:
    """What readiness looks at for one loop (monotonic times)."""

    last_loop_at: float = 0.0  # the loop came round or made progress: not wedged
    failing_step: str | None = None  # a Redis/broker step currently being retried

    def progress(self) -> None:
        self.last_loop_at = time.monotonic()


async def retry_step(
    step: str,
    action: Callable[[], Awaitable[_T]],
    *,
    stop: asyncio.Event,
    health: LoopHealth,
    retries: Any,  # counter: steps retried, by loop and step
    loop: str,
) -> _T:
    """Run ``action``; on ``DependencyError`` retry with backoff until it works or ``stop``."""
    delay = RETRY_BASE_S
    while True:
        try:
            result = await action()
        except DependencyError as exc:
            health.failing_step = step
            retries.add(1, {"step": step, "loop": loop})
            log.error("%s: %s failed, retrying in %.1fs: %s", loop, step, delay, exc)
            if stop.is_set():
                raise Stopped(step) from exc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, RETRY_MAX_S)
            continue
        if health.failing_step == step:
            # (Only its own: another step of the loop may be failing meanwhile.)
            health.failing_step = None
        health.progress()
        return result


async def wait_any(*events: asyncio.Event, timeout_s: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout_s``."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
