"""Whether the ledger can be trusted right now, shared by both loops of a process.

When either loop finds the ledger's marker gone (``LedgerLost``), the guard says so: ingest
stops consuming (every partition paused, the group kept), the projection stops pushing,
readiness turns 503, and one ERROR line and one ``LEDGER_LOST`` alert say what to do. When
the marker is back (the operator restored Redis, or rebuilt the ledger), ingest checks every
partition's position again and the guard lets both loops go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from connector.contracts.records import AlertKind, Severity, StockAlert
from connector.ledger.positions import PartitionKey

__all__ = ["LedgerGuard", "behind_alert", "lost_alert"]

log = logging.getLogger(__name__)


class LedgerGuard:
    """``lost`` while the ledger's marker is missing; see the module docstring."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.lost_at_ms: int | None = None
        self._restored = asyncio.Event()
        self._restored.set()

    @property
    def lost(self) -> bool:
        return self.reason is not None

    def lose(self, reason: str, *, now_ms: int) -> bool:
        """Record that the ledger is gone; ``True`` for the first report (which alerts)."""
        if self.reason is not None:
            return False
        self.reason, self.lost_at_ms = reason, now_ms
        self._restored.clear()
        log.error("LEDGER_LOST: %s; nothing is consumed or pushed until it is back", reason)
        return True

    def restore(self) -> None:
        if self.reason is None:
            return
        self.reason = self.lost_at_ms = None
        self._restored.set()
        log.warning("the ledger's marker is back: consuming and pushing again")

    async def wait_restored(self, stop: asyncio.Event, *, timeout_s: float) -> None:
        """Until the ledger is back, ``stop`` is set or ``timeout_s`` passes."""
        waiters = [asyncio.create_task(self._restored.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


def lost_alert(reason: str, *, now_ms: int) -> StockAlert:
    return StockAlert(
        alert_id=f"ledger_lost:{now_ms}",
        kind=AlertKind.LEDGER_LOST,
        severity=Severity.CRITICAL,
        message=(
            f"{reason}. No event is applied and no Taobao stock call is made until the "
            "ledger is back; Taobao keeps the quantities it has."
        ),
        raised_at_ms=now_ms,
    )


def behind_alert(positions: Mapping[PartitionKey, int], *, now_ms: int) -> StockAlert:
    named = ", ".join(f"{t}[{p}] from offset {o + 1}" for (t, p), o in sorted(positions.items()))
    return StockAlert(
        alert_id=f"ledger_behind:{now_ms}",
        kind=AlertKind.LEDGER_BEHIND,
        severity=Severity.WARNING,
        message=(
            "Redis holds less than was applied to it (a replica that lagged was promoted, "
            "or writes inside its fsync window were lost): reading again "
            f"{named}; de-duplication makes the replay exact"
        ),
        raised_at_ms=now_ms,
        details={f"{t}[{p}]": str(o + 1) for (t, p), o in positions.items()},
    )
