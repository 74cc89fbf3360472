"""``taobao-connector ledger accept-offsets``: take an operator's offset reset as intended.

A committed offset past the ledger's position normally means Redis lost writes, and the
connector reads those offsets again. After an operator moved the group's offsets forward on
purpose (``kafka-consumer-groups --reset-offsets``, to skip input), that replay would undo
the skip: this command moves the ledger's positions up to the committed offsets, so the
skipped input stays skipped. Run it with the connectors stopped (a reset needs an inactive
group anyway), after the reset and before starting them again.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from connector.errors import LedgerLost
from connector.kafka import PartitionReader
from connector.keys import Keys
from connector.ledger.ledger import Ledger
from connector.ledger.positions import rewinds
from connector.redis_client import connect_redis
from connector.settings import Settings

__all__ = ["run_accept_offsets"]


async def run_accept_offsets(settings: Settings, *, dry_run: bool, out: TextIO = sys.stdout) -> int:
    redis = await connect_redis(settings.redis)
    try:
        ledger = Ledger(
            redis,
            Keys(settings.redis.key_prefix),
            dedupe_ttl_s=settings.sync.dedupe_ttl_s,
            default_warehouse=settings.sync.default_warehouse,
        )
        kafka = settings.kafka
        with PartitionReader(kafka, [kafka.orders_topic, kafka.warehouse_topic]) as reader:
            committed = await asyncio.to_thread(reader.committed)
        marker = await ledger.marker(committed)
        if not marker.ready:
            raise LedgerLost(
                "no ledger to move (its marker is missing or a rebuild is running): "
                "nothing was changed"
            )
        ahead = rewinds(marker.positions, committed, committed)
        if not ahead:
            print("the ledger already holds every committed offset: nothing to move", file=out)
            return 0
        for (topic, number), start in sorted(ahead.items()):
            skipped = committed[(topic, number)] - start
            print(
                f"  {topic}[{number}]: offsets {start}..{committed[(topic, number)] - 1} "
                f"({skipped:,}) {'would be' if dry_run else 'are'} skipped",
                file=out,
            )
        if not dry_run:
            # Both: what the ledger holds, and how far the outputs are out (a partition
            # whose committed offset expires later resumes after the latter).
            skipped_to = {p: committed[p] - 1 for p in ahead}
            await ledger.raise_positions(skipped_to)
            await ledger.record_reported(skipped_to)
        return 0
    finally:
        await redis.aclose()
