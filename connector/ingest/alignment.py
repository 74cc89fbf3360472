"""Keeping the consumer where the ledger is (``connector.ledger.positions`` decides).

- At start: the group's committed offsets are read, then the ledger's marker; the marker is
  created (a first start), Kafka's offsets adopted (a ledger written by a version before
  markers), or the ledger is lost (committed offsets, no ledger): stop.
- On assignment: each partition is held (paused) until its ledger position has been
  compared with its committed offset; one the ledger is behind is read from after the
  ledger's position.
- Between batches, every ``POSITION_CHECK_S``, and whenever a ledger call refuses a batch:
  the marker must exist and no position may have gone back (the refused batch is read
  again from its first offsets, uncommitted, so nothing is skipped).
- While the ledger is lost: every partition paused (the group is kept by polling), the
  marker read every ``LOST_CHECK_S``; once it is back, every partition is checked again as
  on assignment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, Protocol, TypeVar

from connector.contracts.records import StockAlert
from connector.errors import LedgerBehind
from connector.kafka import EventConsumer, Inbound
from connector.ledger.guard import LedgerGuard, behind_alert, lost_alert
from connector.ledger.ledger import Ledger
from connector.ledger.positions import (
    Opening,
    PartitionKey,
    behind,
    opening,
    resumes,
    rewinds,
)
from connector.metrics import SyncMetrics

__all__ = ["LOST_CHECK_S", "POSITION_CHECK_S", "Alignment"]

log = logging.getLogger(__name__)

POSITION_CHECK_S: Final = 5.0
LOST_CHECK_S: Final = 2.0

_T = TypeVar("_T")


class CommittedOffsets(Protocol):
    """The group's committed offsets (``None``: of every input partition). Best read
    outside the group (``PartitionReader``): a member that is joining answers only once
    the join is done, seconds later."""

    def committed(
        self, partitions: Sequence[PartitionKey] | None = None
    ) -> dict[PartitionKey, int]: ...


class Retrying(Protocol):
    """The loop's retry wrapper (``connector.retrying.retry_step`` bound to the loop)."""

    def __call__(self, step: str, action: Callable[[], Awaitable[_T]], /) -> Awaitable[_T]: ...


SendAlert = Callable[[StockAlert], Awaitable[None]]


class Alignment:
    """The ingest loop's side of the ledger's positions (see the module docstring)."""

    def __init__(
        self,
        *,
        consumer: EventConsumer,
        offsets: CommittedOffsets,
        ledger: Ledger,
        guard: LedgerGuard,
        retrying: Retrying,
        send_alert: SendAlert,
        metrics: SyncMetrics,
        clock_ms: Callable[[], int],
    ) -> None:
        self._consumer = consumer
        self._offsets = offsets
        self._ledger = ledger
        self._guard = guard
        self._retrying = retrying
        self._send_alert = send_alert
        self._metrics = metrics
        self._clock_ms = clock_ms
        self._checked_at = time.monotonic()

    async def open(self) -> None:
        """At start, before the first poll (see the module docstring)."""
        offsets, ledger = self._offsets, self._ledger
        committed = await self._retrying("broker", lambda: asyncio.to_thread(offsets.committed))
        marker = await self._retrying("ledger", lambda: ledger.marker(committed))
        decision = opening(marker, committed)
        if decision is Opening.OPEN:
            log.info("ledger %s", marker.ledger_id)
        elif decision is Opening.NEW:
            ledger_id = await self._retrying("ledger", ledger.create_marker)
            log.info("a new ledger %s: nothing committed by the group yet", ledger_id)
        elif decision is Opening.ADOPT:
            adopted = {p: offset - 1 for p, offset in committed.items()}
            await self._retrying("ledger", lambda: ledger.create_marker(adopted))
            log.warning(
                "the ledger has data but no marker (written by an earlier version): taking "
                "the group's committed offsets as the positions it has applied"
            )
        elif decision is Opening.REBUILDING:
            await self.lose(_REBUILDING)
        else:
            await self.lose(
                "the group has committed offsets but Redis holds no ledger (its marker is "
                "missing): Redis was wiped, restored from before the ledger existed, or "
                "REDIS_URL names another server. Restore the Redis backup, or rebuild the "
                "ledger from the topics with `taobao-connector ledger rebuild` "
                "(README: Redis faults)"
            )

    async def verify_assigned(self) -> None:
        """Compare each held partition's ledger position with its committed offset; read
        it from after the ledger's position where that is behind, then release it."""
        if not self._guard.lost:
            await self._verify()

    async def _verify(self) -> bool:
        """``verify_assigned``'s work; ``False`` if the ledger turned out not ready."""
        held = self._consumer.unverified()
        if not held:
            return True
        consumer, ledger = self._consumer, self._ledger
        committed = await self._retrying(
            "broker", lambda: asyncio.to_thread(self._offsets.committed, held)
        )
        marker = await self._retrying("ledger", lambda: ledger.marker(held))
        if not marker.ready:
            await self.lose(_GONE if marker.ledger_id is None else _REBUILDING)
            return False
        positions: dict[PartitionKey, int] = marker.positions
        behind_at = rewinds(positions, committed, held)
        seek = {**resumes(marker.reported, committed, held), **behind_at}
        ledger.know({p: positions.get(p, -1) for p in held})
        still_held = consumer.release(held, seek)
        rewound = {p: positions.get(p, -1) for p in behind_at if p not in still_held}
        if rewound:
            await self._report_behind(rewound)
        return True

    async def check(self) -> None:
        """Every ``POSITION_CHECK_S`` between batches: the marker exists and no position
        this process saw has gone back (a failover while idle)."""
        if time.monotonic() - self._checked_at < POSITION_CHECK_S or self._guard.lost:
            return
        self._checked_at = time.monotonic()
        owned = set(self._consumer.assignment()) - set(self._consumer.unverified())
        known = {p: o for p, o in self._ledger.known().items() if p in owned}
        marker = await self._retrying("ledger", lambda: self._ledger.marker(known))
        if not marker.ready:
            await self.lose(_GONE if marker.ledger_id is None else _REBUILDING)
            return
        back = behind(marker.positions, known)
        if back:
            await self._rewind(back, first={})

    async def refused(self, exc: Exception, batch: Sequence[Inbound]) -> None:
        """A ledger call refused ``batch`` (``LedgerBehind`` or ``LedgerLost``): it is
        dropped uncommitted and read again from its first offsets, or from after the
        ledger's position where that is earlier."""
        first: dict[PartitionKey, int] = {}
        for message in batch:
            key = (message.topic, message.partition)
            first[key] = min(first.get(key, message.offset), message.offset)
        if isinstance(exc, LedgerBehind):
            await self._rewind(exc.positions, first=first)
            return
        self._consumer.seek(first)
        await self.lose(_GONE)

    async def wait_restored(self, stop: asyncio.Event) -> None:
        """While the ledger is lost: poll (the group is kept, nothing is fetched) and read
        the marker every ``LOST_CHECK_S``; when it is back, hold every partition for the
        check on assignment and let both loops go on."""
        consumer = self._consumer
        if not consumer.paused():  # (the projection may have found the ledger lost)
            consumer.pause_all()
        deadline = time.monotonic() + LOST_CHECK_S
        while time.monotonic() < deadline and not stop.is_set():
            stray = await asyncio.to_thread(consumer.poll_batch, 1, 0.2)
            if stray:  # never expected while paused; never skipped either
                consumer.seek({(m.topic, m.partition): m.offset for m in stray})
        if stop.is_set():
            return
        marker = await self._retrying("ledger", self._ledger.marker)
        if not marker.ready:
            return
        # Every partition is checked again (the ledger may be an older backup), and any
        # rewind set up, before either loop goes on.
        consumer.hold(consumer.assignment())
        consumer.resume_all()
        if await self._verify():
            # A restored backup's push bases miss the increments sent since it was taken.
            await self._retrying("ledger", self._ledger.forget_push_bases)
            self._guard.restore()

    async def lose(self, reason: str) -> None:
        now_ms = self._clock_ms()
        if self._guard.lose(reason, now_ms=now_ms):
            self._consumer.pause_all()
            await self._send_alert(lost_alert(reason, now_ms=now_ms))

    async def _rewind(
        self, positions: Mapping[PartitionKey, int], *, first: Mapping[PartitionKey, int]
    ) -> None:
        seek = dict(first)
        for partition, stored in positions.items():
            seek[partition] = min(seek.get(partition, stored + 1), stored + 1)
        self._ledger.know(positions)
        self._consumer.seek(seek)
        await self._report_behind(positions)

    async def _report_behind(self, positions: Mapping[PartitionKey, int]) -> None:
        named = ", ".join(f"{t}[{p}] from {o + 1}" for (t, p), o in sorted(positions.items()))
        log.warning(
            "LEDGER_BEHIND: Redis holds less than was applied to it; reading again %s "
            "(de-duplication makes the replay exact)",
            named,
        )
        for topic, partition in positions:
            self._metrics.rewinds.add(1, {"topic": topic, "partition": str(partition)})
        # The replay restores the ledger, not the push bases written since (increments
        # sent): each listing is written absolutely once more instead.
        await self._retrying("ledger", self._ledger.forget_push_bases)
        await self._send_alert(behind_alert(positions, now_ms=self._clock_ms()))


_REBUILDING: Final = (
    "a ledger rebuild is writing the ledger (taobao-connector ledger rebuild): nothing is "
    "consumed or pushed until it has finished"
)
_GONE: Final = (
    "the ledger's marker vanished from Redis (a FLUSHALL, a restart of a server without "
    "persistence, or a failover to an empty replica): restore the Redis backup, or rebuild "
    "the ledger from the topics with `taobao-connector ledger rebuild` (README: Redis faults)"
)
