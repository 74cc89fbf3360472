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
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from connector.errors import DependencyError

__all__ = ["LoopHealth", "Startup", "Stopped", "retry_step", "wait_any", "wait_for_dependency"]

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


@dataclass(slots=True)
class Startup:
    """What a starting process waits for (readiness shows it until the loops run)."""

    waiting_for: str = "starting"
    since: float = field(default_factory=time.monotonic)


async def wait_for_dependency(
    what: str,
    action: Callable[[], Awaitable[_T]],
    *,
    startup: Startup,
    deadline: float,
    stop: asyncio.Event,
) -> _T:
    """At start-up: run ``action`` until it stops raising ``DependencyError``, backing off,
    until the monotonic ``deadline`` (then the last error is raised, with the setting to
    change) or ``stop`` (``Stopped``). Any other error is a wrong setting: raised at once."""
    delay = RETRY_BASE_S
    while True:
        startup.waiting_for = what
        try:
            return await action()
        except DependencyError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DependencyError(
                    f"{exc} (gave up waiting at start-up: CONNECTOR_STARTUP_TIMEOUT_S)"
                ) from exc
            startup.waiting_for = f"{what}: {exc}"
            log.warning("waiting for %s (%.0fs left): %s", what, left, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(delay, left))
            if stop.is_set():
                raise Stopped(what) from exc
            delay = min(delay * 2, RETRY_MAX_S)


async def wait_any(*events: asyncio.Event, timeout_s: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout_s``."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
