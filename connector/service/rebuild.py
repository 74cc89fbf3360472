"""``taobao-connector ledger rebuild``: a lost ledger rebuilt from the input topics.

When the ledger is gone (``LEDGER_LOST``) and no Redis backup can be restored, the topics
still hold the events. This replays every input partition from its earliest retained
offset up to the group's committed offset (what the group had processed), merged across the
partitions in broker-timestamp order as a live consumer would roughly have read them,
through the same ledger calls the connector makes, then makes the ledger ready with those
positions: connectors waiting on ``LEDGER_LOST`` go on by themselves from the committed
offsets, and their projection pushes every SKU the rebuild touched. Nothing is produced:
the results and alerts of those events went out when they were first processed (and a copy
of one arriving later is a plain duplicate).

Stocktakes are the anchors: a SKU's count is right as of its last stocktake in the range
plus the movements after it. Where the topic's retention already deleted the start of a
partition, a SKU with no stocktake in what is left counts only the retained movements: the
rebuild names how many, so the merchant can count them.

It refuses to run over a ledger that is there. It first claims the marker (its id says a
rebuild is running: connectors keep waiting, and their ledger calls are refused), then
removes what is left of the ledger's own keys (SKUs, movement logs, orders, de-dup values,
the pending set; the mapping cache and item states stay), and prints its progress. A Redis
or broker failure on the way is retried; a rebuild that stopped half way is started again
with ``--restart``. ``--dry-run`` reads and decodes everything and prints what would be
applied, writing nothing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TextIO, TypeVar

from opentelemetry.trace import NoOpTracer

from connector.contracts.codec import AvroCodec
from connector.contracts.events import StockEvent, WarehouseEvent, WarehouseType
from connector.errors import ConnectorError
from connector.ingest.decoding import Decoder
from connector.kafka import Inbound, PartitionReader, ReadReport
from connector.keys import Keys
from connector.ledger.ledger import Ledger, LedgerExists
from connector.ledger.positions import REBUILDING, PartitionKey
from connector.redis_client import AsyncRedis, connect_redis
from connector.retrying import LoopHealth, retry_step
from connector.settings import Settings

__all__ = ["Rebuild", "RebuildStopped", "run_rebuild"]

PROGRESS_EVERY_S: Final = 5.0
# The ledger's own key families under the shop's hash tag (connector.keys.Keys).
LEDGER_FAMILIES: Final = ("sku:", "mv:", "order:", "seen:", "reported:", "pending", "skus")

_T = TypeVar("_T")
Plan = dict[PartitionKey, tuple[int, int]]


@dataclass
class Rebuild:
    """What a rebuild read (and, unless a dry run, applied)."""

    plan: Plan = field(default_factory=dict)
    read: ReadReport = field(default_factory=ReadReport)
    events: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    skus: set[str] = field(default_factory=set)
    counted: set[str] = field(default_factory=set)  # SKUs with a stocktake in the range
    uncounted_in_truncated: set[str] = field(default_factory=set)

    def add(self, event: StockEvent, *, truncated: bool) -> None:
        self.events[event.type.value] += 1
        if isinstance(event, WarehouseEvent):
            codes = [event.sku]
            if event.type is WarehouseType.STOCKTAKE:
                self.counted.add(event.sku)
        else:
            codes = [line.sku for line in event.lines]
        self.skus.update(codes)
        if truncated:
            self.uncounted_in_truncated.update(codes)

    @property
    def gaps(self) -> int:
        """Offsets in the ranges that held no message (compaction, transaction markers)."""
        expected = sum(end - start for start, end in self.plan.values())
        return max(0, expected - sum(self.read.read.values()))


async def run_rebuild(
    settings: Settings, *, dry_run: bool, restart: bool = False, out: TextIO = sys.stdout
) -> int:
    """The command: 0 when the ledger was rebuilt (or the dry run read everything)."""
    redis = await connect_redis(settings.redis)
    try:
        keys = Keys(settings.redis.key_prefix)
        ledger = Ledger(
            redis,
            keys,
            dedupe_ttl_s=settings.sync.dedupe_ttl_s,
            default_warehouse=settings.sync.default_warehouse,
        )
        take_over = _check_marker((await ledger.marker()).ledger_id, restart=restart)
        kafka = settings.kafka
        with PartitionReader(kafka, [kafka.orders_topic, kafka.warehouse_topic]) as reader:
            plan = await asyncio.to_thread(_plan, reader)
            if not plan:
                print("the group has committed no offsets: nothing to rebuild", file=out)
                return 0
            print(_plan_text(plan, dry_run), file=out)
            if dry_run:
                report = await _replay(reader, ledger, settings, plan, dry_run=True, out=out)
            else:
                rebuild_id = await ledger.begin_rebuild(take_over=take_over)
                try:
                    report = await _rebuild(reader, ledger, redis, settings, plan, rebuild_id, out)
                except Exception as exc:
                    raise RebuildStopped(
                        f"{exc}; the rebuild stopped half way and connectors keep waiting: "
                        "start it again with `taobao-connector ledger rebuild --restart`"
                    ) from exc
        print(_summary(report, dry_run), file=out)
        return 0
    finally:
        await redis.aclose()


class RebuildStopped(ConnectorError):
    """A rebuild failed after claiming the marker: it must be started again."""


async def _rebuild(
    reader: PartitionReader,
    ledger: Ledger,
    redis: AsyncRedis,
    settings: Settings,
    plan: Plan,
    rebuild_id: str,
    out: TextIO,
) -> Rebuild:
    removed = await _remove(redis, Keys(settings.redis.key_prefix))
    print(f"removed {removed:,} keys left of the lost ledger", file=out)
    report = await _replay(reader, ledger, settings, plan, dry_run=False, out=out)
    positions = {p: end - 1 for p, (_, end) in plan.items()}
    ledger_id = await ledger.finish_rebuild(rebuild_id, positions)
    print(f"the ledger {ledger_id} is ready: connectors go on by themselves", file=out)
    return report


def _check_marker(ledger_id: str | None, *, restart: bool) -> str | None:
    """The id of a stopped rebuild to take over, if any; raises if the ledger is there."""
    if ledger_id is None:
        return None
    if ledger_id.startswith(REBUILDING):
        if restart:
            return ledger_id
        raise LedgerExists(
            f"a rebuild is marked as running (marker id {ledger_id}): if none is running any "
            "more (it stopped half way), start it again with --restart; nothing was changed"
        )
    raise LedgerExists(
        f"the ledger is there (marker id {ledger_id}): a rebuild replaces only a lost ledger "
        "(LEDGER_LOST); nothing was changed"
    )


def _plan(reader: PartitionReader) -> Plan:
    """Per partition with a committed offset: [earliest retained, committed)."""
    committed = reader.committed(reader.partitions())
    return {p: (min(reader.earliest(p), end), end) for p, end in sorted(committed.items())}


async def _remove(redis: AsyncRedis, keys: Keys) -> int:
    removed = 0
    for family in LEDGER_FAMILIES:
        batch: list[Any] = []
        async for key in redis.scan_iter(match=f"{{{keys.prefix}}}:{family}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += await redis.unlink(*batch)
                batch.clear()
        if batch:
            removed += await redis.unlink(*batch)
    return removed


async def _replay(
    reader: PartitionReader,
    ledger: Ledger,
    settings: Settings,
    plan: Plan,
    *,
    dry_run: bool,
    out: TextIO,
) -> Rebuild:
    # Decoded as of each message's own time, as when it was first read (an event rejected
    # then as too far ahead must not be applied now).
    now = [0]
    codec = AvroCodec.from_settings(settings.kafka)
    decoder = Decoder(codec, settings.kafka, settings.sync, NoOpTracer(), clock_ms=lambda: now[0])
    report = Rebuild(plan=dict(plan))
    progress = _Progress(out, sum(end - start for start, end in plan.values()))
    truncated = {p for p, (start, _) in plan.items() if start > 0}
    batches = reader.merged(plan, report.read)
    while (batch := await asyncio.to_thread(_next, batches)) is not None:
        events = []
        cut = truncated | report.read.truncated
        for message in batch:
            now[0] = message.timestamp_ms or int(time.time() * 1000)
            decoded = decoder.decode(message)
            if decoded.event is None:
                report.rejected += 1
                continue
            events.append(decoded.event)
            key = (message.topic, message.partition)
            report.add(decoded.event, truncated=key in cut)
        if not dry_run:
            await _apply(ledger, events, _positions(batch))
        progress.step(batch[-1], len(batch))
    return report


def _next(batches: Iterator[list[Inbound]]) -> list[Inbound] | None:
    return next(batches, None)


async def _apply(
    ledger: Ledger, events: list[StockEvent], positions: dict[PartitionKey, int]
) -> None:
    """One batch, retried while Redis is unreachable; marked reported at once (its outputs
    went out when it was first read)."""
    application = await _retrying(
        "ledger", lambda: ledger.apply_viewing(events, positions=positions)
    )
    if any(not outcome.duplicate for outcome in application.outcomes):
        await _retrying("ledger", lambda: ledger.mark_reported(application.attempt))


async def _retrying(step: str, action: Callable[[], Awaitable[_T]]) -> _T:
    return await retry_step(
        step, action, stop=asyncio.Event(), health=LoopHealth(), retries=_NoCount(), loop="rebuild"
    )


class _NoCount:
    def add(self, amount: int, attributes: object = None) -> None:
        """(retry_step counts its retries; a one-off command has no metrics.)"""


def _positions(batch: list[Inbound]) -> dict[PartitionKey, int]:
    last: dict[PartitionKey, int] = {}
    for message in batch:
        key = (message.topic, message.partition)
        last[key] = max(last.get(key, -1), message.offset)
    return last


class _Progress:
    def __init__(self, out: TextIO, total: int, clock: Callable[[], float] = time.monotonic):
        self._out, self._total, self._clock = out, max(total, 1), clock
        self._done = 0
        self._began = self._last = clock()

    def step(self, last: Inbound, n: int) -> None:
        self._done += n
        now = self._clock()
        if now - self._last < PROGRESS_EVERY_S and self._done < self._total:
            return
        self._last = now
        rate = self._done / max(now - self._began, 1e-9)
        print(
            f"  {self._done:,}/{self._total:,} messages ({100 * self._done / self._total:.0f} %), "
            f"{rate:,.0f}/s; at {last.topic}[{last.partition}] offset {last.offset}",
            file=self._out,
            flush=True,
        )


def _plan_text(plan: Plan, dry_run: bool) -> str:
    lines = ["dry run: nothing is written" if dry_run else "rebuilding the ledger from:"]
    for (topic, number), (start, end) in plan.items():
        note = "" if start == 0 else "  (earlier offsets deleted by retention)"
        lines.append(f"  {topic}[{number}] offsets {start}..{end - 1}: {end - start:,}{note}")
    return "\n".join(lines)


def _summary(report: Rebuild, dry_run: bool) -> str:
    applied = "would be applied" if dry_run else "applied"
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(report.events.items())) or "none"
    lines = [
        f"{sum(report.events.values()):,} events {applied} ({kinds}); "
        f"{report.rejected:,} rejected as bad input (as when first read)",
        f"{len(report.skus):,} SKUs, {len(report.counted):,} with a stocktake in the range; "
        "each is pushed to Taobao once the connectors go on",
    ]
    if report.gaps:
        lines.append(
            f"{report.gaps:,} offsets held no message (compaction or transaction markers): "
            "whatever a compacted topic dropped is not in the ledger"
        )
    uncounted = report.uncounted_in_truncated - report.counted
    if uncounted:
        lines.append(
            f"WARNING: retention deleted the start of a partition: {len(uncounted):,} SKUs "
            "named there have no stocktake in the range and count only the retained "
            "movements; send a stocktake for them"
        )
    return "\n".join(lines)
