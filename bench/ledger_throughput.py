"""Throughput of the stock ledger: ``Ledger.apply`` in pipelined batches against Redis.

Generates N synthetic events over ~1000 SKUs (orders created, then some cancelled or shipped,
refunds, warehouse receipts, damages, adjustments and the odd stocktake; every order has
1–3 lines), applies them in batches through ``Ledger.apply`` on one connection, and prints
events/s, order lines/s and p50/p99 batch latency. Bounded by the event count and by time.
An embedded Valkey server is started unless ``--redis-url`` is given.

    .venv/bin/python bench/ledger_throughput.py --events 200000 --batch 500
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Iterator

from redis.asyncio import Redis

from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    StockEvent,
    WarehouseEvent,
    WarehouseType,
)
from connector.demo.embedded import EmbeddedRedis
from connector.keys import Keys
from connector.ledger.ledger import Ledger

__all__ = ["main"]

WAREHOUSES = ("WH-SH", "WH-GZ", "WH-BJ")


def synthetic_events(n: int, skus: int, seed: int) -> Iterator[StockEvent]:
    """A plausible mix: ~55% order events, ~45% warehouse events, time moving forward."""
    rng = random.Random(seed)
    codes = [f"SKU-{i:05d}" for i in range(skus)]
    open_orders: list[tuple[str, tuple[OrderLine, ...]]] = []
    now = 1_700_000_000_000
    for i in range(n):
        now += rng.randint(0, 3)
        roll = rng.random()
        if roll < 0.30 or (roll < 0.55 and not open_orders):
            lines = tuple(
                OrderLine(sku, rng.randint(1, 3)) for sku in rng.sample(codes, rng.randint(1, 3))
            )
            order_id = f"O{i}"
            open_orders.append((order_id, lines))
            yield OrderEvent(f"e{i}", order_id, "taobao", "shop", OrderType.CREATED, lines, now)
        elif roll < 0.55:
            order_id, lines = open_orders.pop(rng.randrange(len(open_orders)))
            kind = rng.choices(
                [OrderType.SHIPPED, OrderType.CANCELLED, OrderType.REFUNDED], [6, 3, 1]
            )[0]
            shipped = tuple(OrderLine(ln.sku, ln.quantity, rng.choice(WAREHOUSES)) for ln in lines)
            yield OrderEvent(f"e{i}", order_id, "taobao", "shop", kind, shipped, now)
        else:
            yield warehouse_event(rng, f"e{i}", rng.choice(codes), now)


def warehouse_event(rng: random.Random, event_id: str, sku: str, now: int) -> WarehouseEvent:
    kinds = list(WarehouseType)  # received, returned, adjusted, damaged, stocktake
    kind = rng.choices(kinds, [10, 2, 2, 2, 1])[0]
    if kind is WarehouseType.STOCKTAKE:
        # Counted "as of" a little while ago, so some logged movements get re-applied.
        count = rng.randint(0, 200)
        return WarehouseEvent(event_id, rng.choice(WAREHOUSES), kind, sku, count, now - 50)
    quantity = rng.randint(1, 50)
    if kind is WarehouseType.ADJUSTED and rng.random() < 0.5:
        quantity = -quantity
    return WarehouseEvent(event_id, rng.choice(WAREHOUSES), kind, sku, quantity, now)


async def run(url: str, args: argparse.Namespace) -> None:
    events = list(synthetic_events(args.events, args.skus, args.seed))
    lines = sum(len(e.lines) if isinstance(e, OrderEvent) else 1 for e in events)
    client = Redis.from_url(url)
    keys = Keys(f"bench-{uuid.uuid4().hex[:8]}")
    try:
        ledger = Ledger(client, keys, dedupe_ttl_s=86_400, default_warehouse=WAREHOUSES[0])
        await ledger.create_marker()  # as a connector's first start does
        await ledger.apply(events[:1])  # loads the script; not timed
        latencies: list[float] = []
        applied = 0
        started = time.perf_counter()
        deadline = started + args.seconds
        for offset in range(1, len(events), args.batch):
            batch = events[offset : offset + args.batch]
            t0 = time.perf_counter()
            await ledger.apply(batch)
            latencies.append(time.perf_counter() - t0)
            applied += len(batch)
            if time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - started
    finally:
        await cleanup(client, keys)
        await client.aclose()
    report(applied, lines * applied / len(events), elapsed, latencies, args)


async def cleanup(client: Redis, keys: Keys) -> None:
    """Remove this run's keys (it has its own prefix), so a shared server is left clean."""
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{{{keys.prefix}}}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)


def report(
    applied: int, lines: float, elapsed: float, latencies: list[float], args: argparse.Namespace
) -> None:
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    print(
        f"events applied   {applied} in {elapsed:.2f} s ({len(latencies)} batches of {args.batch})"
    )
    print(f"events/s         {applied / elapsed:,.0f}")
    print(f"lines/s          {lines / elapsed:,.0f}  (order lines + warehouse events, approx.)")
    print(f"batch p50        {cuts[49] * 1000:.1f} ms")
    print(f"batch p99        {cuts[98] * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0, help="stop after this long")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-url", help="use this server instead of an embedded one")
    args = parser.parse_args()
    if args.redis_url:
        asyncio.run(run(args.redis_url, args))
        return
    with EmbeddedRedis() as server:
        asyncio.run(run(server.url, args))


if __name__ == "__main__":
    main()
