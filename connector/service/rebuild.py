"""``taobao-connector ledger rebuild``: a lost ledger rebuilt from the input topics.

When the ledger is gone (``LEDGER_LOST``) and no Redis backup can be restored, the topics
still hold the events. This replays every input partition from its earliest retained
offset up to the group's committed offset (what the group had processed) through the same
ledger calls the connector makes, then makes the ledger ready with those positions:
connectors waiting on ``LEDGER_LOST`` go on by themselves from the committed offsets, and
their projection pushes every SKU the rebuild touched. Nothing is produced: the results and
alerts of those events went out when they were first processed.

Stocktakes are the anchors: a SKU's count is right as of its last stocktake in the range
plus the movements after it. Where the topic's retention already deleted the start of a
partition, a SKU with no stocktake in what is left counts only the retained movements: the
rebuild names how many, so the merchant can count them.

The rebuild refuses to run over an existing ledger. It first removes what is left under
the ledger's prefix (the mapping cache and item states a connector may have written after
the wipe; all of it is re-learnt), marks the ledger as being rebuilt (connectors keep
waiting), and prints its progress. ``--dry-run`` reads and decodes everything and prints
what would be applied, writing nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TextIO

from opentelemetry.trace import NoOpTracer

from connector.contracts.codec import AvroCodec
from connector.contracts.events import StockEvent, WarehouseEvent, WarehouseType
from connector.ingest.decoding import Decoder
from connector.kafka import PartitionReader
from connector.keys import Keys
from connector.ledger.ledger import Ledger, LedgerExists
from connector.ledger.positions import PartitionKey
from connector.redis_client import AsyncRedis, connect_redis
from connector.settings import Settings

__all__ = ["Rebuild", "run_rebuild"]

log = logging.getLogger(__name__)

PROGRESS_EVERY_S: Final = 5.0


@dataclass
class Rebuild:
    """What a rebuild read (and, unless a dry run, applied)."""

    ranges: dict[PartitionKey, tuple[int, int]] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    skus: set[str] = field(default_factory=set)
    counted: set[str] = field(default_factory=set)  # SKUs with a stocktake in the range
    truncated: set[PartitionKey] = field(default_factory=set)  # retention deleted the start

    def add(self, event: StockEvent) -> None:
        if isinstance(event, WarehouseEvent):
            self.events[event.type.value] += 1
            self.skus.add(event.sku)
            if event.type is WarehouseType.STOCKTAKE:
                self.counted.add(event.sku)
            return
        self.events[event.type.value] += 1
        self.skus.update(line.sku for line in event.lines)


async def run_rebuild(settings: Settings, *, dry_run: bool, out: TextIO = sys.stdout) -> int:
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
        marker = await ledger.marker()
        if marker.ledger_id is not None:
            raise LedgerExists(
                f"the ledger is there (marker id {marker.ledger_id}): a rebuild replaces only a "
                "lost ledger (LEDGER_LOST); nothing was changed"
            )
        kafka = settings.kafka
        with PartitionReader(kafka, [kafka.orders_topic, kafka.warehouse_topic]) as reader:
            plan = await asyncio.to_thread(_plan, reader)
            if not plan:
                print("the group has committed no offsets: nothing to rebuild", file=out)
                return 0
            leftovers = await _leftovers(redis, keys)
            print(_plan_text(plan, leftovers, dry_run), file=out)
            rebuild_id = None
            if not dry_run:
                await _remove(redis, keys)
                rebuild_id = await ledger.begin_rebuild()
            report = await _replay(reader, ledger, settings, plan, dry_run=dry_run, out=out)
            if rebuild_id is not None:
                positions = {p: end - 1 for p, (_, end) in plan.items()}
                ledger_id = await ledger.finish_rebuild(rebuild_id, positions)
                print(f"the ledger {ledger_id} is ready: connectors go on by themselves", file=out)
        print(_summary(report, dry_run), file=out)
        return 0
    finally:
        await redis.aclose()


def _plan(reader: PartitionReader) -> dict[PartitionKey, tuple[int, int]]:
    """Per partition with a committed offset: [earliest retained, committed)."""
    committed = reader.committed(reader.partitions())
    return {p: (min(reader.earliest(p), end), end) for p, end in committed.items()}


async def _leftovers(redis: AsyncRedis, keys: Keys) -> int:
    return sum([1 async for _ in redis.scan_iter(match=_pattern(keys), count=1000)])


async def _remove(redis: AsyncRedis, keys: Keys) -> None:
    batch: list[bytes | str] = []
    async for key in redis.scan_iter(match=_pattern(keys), count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)


def _pattern(keys: Keys) -> str:
    # The shop's keys share its hash tag: "{<prefix>}:..." (the app's TOP state, tokens
    # included, is under "<prefix>:{top:...}" and stays).
    return f"{{{keys.prefix}}}:*"  # (a prefix holds no glob characters: see Settings)


async def _replay(
    reader: PartitionReader,
    ledger: Ledger,
    settings: Settings,
    plan: dict[PartitionKey, tuple[int, int]],
    *,
    dry_run: bool,
    out: TextIO,
) -> Rebuild:
    decoder = Decoder(
        AvroCodec.from_settings(settings.kafka), settings.kafka, settings.sync, NoOpTracer()
    )
    report = Rebuild(ranges=dict(plan))
    progress = _Progress(out, sum(end - start for start, end in plan.values()))
    for partition, (start, end) in plan.items():
        if start > 0:
            report.truncated.add(partition)
        batches = reader.read(partition, start, end)
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            decoded = [decoder.decode(message) for message in batch]
            events = [d.event for d in decoded if d.event is not None]
            report.rejected += len(decoded) - len(events)
            for event in events:
                report.add(event)
            if not dry_run:
                await ledger.apply_viewing(events, positions={partition: batch[-1].offset})
            progress.step(partition, batch[-1].offset, len(batch))
    return report


class _Progress:
    def __init__(self, out: TextIO, total: int, clock: Callable[[], float] = time.monotonic):
        self._out, self._total, self._clock = out, max(total, 1), clock
        self._done = 0
        self._began = self._last = clock()

    def step(self, partition: PartitionKey, offset: int, n: int) -> None:
        self._done += n
        now = self._clock()
        if now - self._last < PROGRESS_EVERY_S and self._done < self._total:
            return
        self._last = now
        rate = self._done / max(now - self._began, 1e-9)
        topic, number = partition
        print(
            f"  {self._done:,}/{self._total:,} messages ({100 * self._done / self._total:.0f} %), "
            f"{rate:,.0f}/s; at {topic}[{number}] offset {offset}",
            file=self._out,
        )


def _plan_text(plan: dict[PartitionKey, tuple[int, int]], leftovers: int, dry_run: bool) -> str:
    lines = ["dry run: nothing is written" if dry_run else "rebuilding the ledger from:"]
    for (topic, number), (start, end) in plan.items():
        note = "" if start == 0 else "  (earlier offsets deleted by retention)"
        lines.append(f"  {topic}[{number}] offsets {start}..{end - 1}: {end - start:,}{note}")
    verb = "would be removed" if dry_run else "removed first"
    lines.append(f"{leftovers} keys left under the ledger's prefix {verb}")
    return "\n".join(lines)


def _summary(report: Rebuild, dry_run: bool) -> str:
    applied = "would be applied" if dry_run else "applied"
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(report.events.items())) or "none"
    lines = [
        f"{sum(report.events.values()):,} events {applied} ({kinds}); "
        f"{report.rejected:,} rejected as bad input (as when first read)",
        f"{len(report.skus):,} SKUs, {len(report.counted):,} with a stocktake in the range; "
        f"each is pushed to Taobao once the connectors go on",
    ]
    if report.truncated:
        uncounted = len(report.skus - report.counted)
        lines.append(
            f"WARNING: retention deleted the start of {len(report.truncated)} partition(s): "
            f"{uncounted:,} SKUs have no stocktake in what is left and count only the "
            "retained movements; send a stocktake for them"
        )
    return "\n".join(lines)
