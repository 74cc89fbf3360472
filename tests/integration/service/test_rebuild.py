"""The ledger's operator tools: ``ledger rebuild`` after a wipe, with a connector waiting on
LEDGER_LOST, and ``ledger accept-offsets`` after an offset reset."""

from __future__ import annotations

import asyncio
import io

import pytest
from confluent_kafka import Consumer, TopicPartition
from redis.asyncio import Redis

from connector.contracts.events import OrderType, StockEvent
from connector.contracts.records import ResultStatus
from connector.demo.embedded import EmbeddedRedis
from connector.kafka import client_config
from connector.keys import Keys
from connector.ledger.ledger import Ledger, LedgerExists
from connector.sandbox.server import SandboxServer
from connector.service.accept_offsets import run_accept_offsets
from connector.service.rebuild import run_rebuild
from connector.settings import KafkaSettings
from tests.integration.service.test_redis_faults import (
    CODES,
    ledger_matches,
    orders,
    running,
    stock_writes,
)
from tests.integration.service.test_service import ready_is
from tests.pipeline_harness import Harness, converged, count, order, wait_for

pytestmark = pytest.mark.integration


def shipped_over(minutes: int) -> list[StockEvent]:
    """Orders created and shipped a minute apart: their movement logs reach further back
    than the de-dup TTL of these tests (60 s), so the logs are trimmed as they grow."""
    events: list[StockEvent] = []
    for i in range(minutes):
        code = CODES[i % 3]
        events.append(order(f"c{i}", f"s{i}", OrderType.CREATED, (code, 1), at=60_000 * i + 1))
        events.append(order(f"h{i}", f"s{i}", OrderType.SHIPPED, (code, 1), at=60_000 * i + 2))
    return events


async def stock_of(redis_url: str, prefix: str) -> dict[str, tuple[int, int, int]]:
    client = Redis.from_url(redis_url)
    try:
        ledger = Ledger(client, Keys(prefix), dedupe_ttl_s=60, default_warehouse="X")
        stock = await ledger.stock(CODES)
    finally:
        await client.aclose()
    return {c: (s.available, s.reserved, sum(s.on_hand.values())) for c, s in stock.items()}


async def test_a_wiped_ledger_is_rebuilt_from_the_topics_and_the_connector_goes_on(
    kafka_settings: KafkaSettings, sandbox: SandboxServer
) -> None:
    with EmbeddedRedis() as server:
        harness = Harness(kafka_settings, sandbox, server.url)
        settings = harness.settings(dedupe_ttl_s=60)
        # The stocktakes come first (live and replayed: the rebuild merges the topics by
        # broker time), then shipments over 40 minutes of event time.
        counts = [count(code, 100) for code in CODES]
        harness.produce(counts)
        before = counts + shipped_over(40) + orders(0, 30)
        async with running(harness, settings) as (connector, base, _):
            # Applied before the shipments arrive: a stocktake 40 minutes older than the
            # newest movement is refused once the movement log is trimmed (60 s here).
            await harness.results(len(counts), timeout_s=60, settle=False)
            harness.produce(before[len(counts) :])
            await converged(harness, before, CODES)
            live = await stock_of(server.url, harness.prefix)
            client = Redis.from_url(server.url)
            await client.flushall()
            await wait_for(lambda: connector.guard.lost, timeout_s=15, what="LEDGER_LOST")
            writes = stock_writes(sandbox)

            dry = io.StringIO()
            assert await run_rebuild(settings, dry_run=True, out=dry) == 0
            text = dry.getvalue()
            assert "dry run: nothing is written" in text
            assert f"{len(before)} events would be applied" in text
            assert await client.exists(Keys(harness.prefix).marker) == 0
            assert connector.guard.lost

            out = io.StringIO()
            assert await run_rebuild(settings, dry_run=False, out=out) == 0
            assert "is ready: connectors go on by themselves" in out.getvalue()
            assert f"{len(before)} events applied" in out.getvalue()
            await client.aclose()
            assert await stock_of(server.url, harness.prefix) == live

            await ready_is(base, True, timeout_s=30)
            assert stock_writes(sandbox) == writes  # nothing was pushed while it was lost
            after = orders(60, 30)
            harness.produce(after)
            everything = before + after
            await wait_for(lambda: ledger_matches(harness, everything), timeout_s=60)
            await converged(harness, everything, CODES)
            results = await harness.results(len(everything), timeout_s=30, settle=False)
            applied = {r.event_id for r in results if r.status is ResultStatus.APPLIED}
            assert applied == {e.event_id for e in everything}

            with pytest.raises(LedgerExists, match="replaces only a lost ledger"):
                await run_rebuild(settings, dry_run=True, out=io.StringIO())


async def test_a_rebuild_that_stopped_half_way_is_started_again_with_restart(
    kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str
) -> None:
    harness = Harness(kafka_settings, sandbox, redis_url)
    settings = harness.settings()
    events = [count(code, 9) for code in CODES]
    harness.produce(events)
    async with running(harness) as _:
        await harness.results(len(events), timeout_s=60, settle=False)
        await asyncio.sleep(0.5)  # committed
    client = Redis.from_url(redis_url)
    marker = Keys(harness.prefix).marker
    # What a rebuild killed half way leaves: its marker, and part of a ledger.
    await client.delete(marker)
    await client.hset(marker, "id", "rebuilding:killed")
    try:
        with pytest.raises(LedgerExists, match="--restart"):
            await run_rebuild(settings, dry_run=False, out=io.StringIO())
        assert await run_rebuild(settings, dry_run=False, restart=True, out=io.StringIO()) == 0
        assert not (await client.hget(marker, "id") or b"").startswith(b"rebuilding:")
        assert await stock_of(redis_url, harness.prefix) == {c: (9, 0, 9) for c in CODES}
    finally:
        await client.aclose()


async def test_an_offset_reset_forward_is_accepted_by_moving_the_ledgers_positions(
    kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str
) -> None:
    harness = Harness(kafka_settings, sandbox, redis_url)
    settings = harness.settings()
    partition = (kafka_settings.orders_topic, 0)
    # What `kafka-consumer-groups --reset-offsets` leaves: the group committed at 10.
    committer = Consumer({**client_config(kafka_settings), "group.id": kafka_settings.group_id})
    try:
        committer.commit(offsets=[TopicPartition(*partition, 10)], asynchronous=False)
    finally:
        committer.close()
    client = Redis.from_url(redis_url)
    ledger = Ledger(client, Keys(harness.prefix), dedupe_ttl_s=60, default_warehouse="W")
    await ledger.create_marker({partition: 3})

    out = io.StringIO()
    assert await run_accept_offsets(settings, dry_run=True, out=out) == 0
    assert "offsets 4..9 (6) would be skipped" in out.getvalue()
    assert (await ledger.marker([partition])).positions == {partition: 3}

    assert await run_accept_offsets(settings, dry_run=False, out=io.StringIO()) == 0
    assert (await ledger.marker([partition])).positions == {partition: 9}
    again = io.StringIO()
    assert await run_accept_offsets(settings, dry_run=False, out=again) == 0
    assert "nothing to move" in again.getvalue()
    await client.aclose()
