"""The ledger's marker and positions, against a real Redis-compatible server."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from connector.errors import LedgerBehind, LedgerLost
from connector.keys import Keys
from connector.ledger.ledger import Ledger, LedgerExists
from connector.ledger.positions import Marker
from tests.unit.ledger.test_stock import RECV, W1, wh

pytestmark = pytest.mark.integration

P0, P1 = ("orders", 0), ("orders", 1)


@pytest.fixture
def ledger(redis: Redis, keys: Keys) -> Ledger:
    return Ledger(redis, keys, dedupe_ttl_s=3600, default_warehouse=W1)


async def test_without_a_marker_nothing_is_applied(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    with pytest.raises(LedgerLost, match="restore the Redis backup"):
        await ledger.apply([wh(RECV, "A", 5, 1, eid="a1")])
    assert await redis.keys(f"{{{keys.prefix}}}:*") == []


async def test_without_a_marker_no_stock_is_read(ledger: Ledger) -> None:
    # A wiped ledger reads as zeros, which would take items off sale.
    with pytest.raises(LedgerLost):
        await ledger.stock(["A"])


async def test_the_marker_is_created_once(ledger: Ledger, redis: Redis, keys: Keys) -> None:
    assert await ledger.marker([P0]) == Marker(None)
    first = await ledger.create_marker({P0: 9})
    # Another replica starting at the same moment finds it and keeps it.
    assert await ledger.create_marker({P0: 500, P1: 3}) == first
    marker = await ledger.marker([P0, P1])
    assert marker == Marker(first, {P0: 9, P1: 3}, has_data=False)


async def test_each_call_records_its_partitions_positions(ledger: Ledger) -> None:
    await ledger.create_marker()
    await ledger.apply_viewing([wh(RECV, "A", 5, 1, eid="a1")], positions={P0: 10, P1: 4})
    # A slice of dead letters applies nothing and still moves its partition.
    await ledger.apply_viewing([], positions={P1: 7})
    marker = await ledger.marker([P0, P1])
    assert marker.positions == {P0: 10, P1: 7}
    assert marker.has_data


async def test_a_position_is_never_lowered(ledger: Ledger, redis: Redis, keys: Keys) -> None:
    """A replica re-reading older offsets after a rebalance must not move the position back
    (another replica's check would take that for lost writes)."""
    await ledger.create_marker()
    await ledger.apply_viewing([], positions={P0: 50})
    other = Ledger(redis, keys, dedupe_ttl_s=3600, default_warehouse=W1)
    await other.apply_viewing([wh(RECV, "A", 5, 1, eid="a1")], positions={P0: 20})
    assert (await ledger.marker([P0])).positions == {P0: 50}
    assert (await ledger.stock(["A"]))["A"].available == 5


async def test_a_ledger_that_went_back_refuses_and_writes_nothing(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    await ledger.create_marker()
    await ledger.apply_viewing([wh(RECV, "A", 5, 1, eid="a1")], positions={P0: 10})
    # What a failover to a replica that lagged looks like: the position (and whatever
    # came with it) is older than what this process applied.
    await redis.hset(keys.marker, "p:orders:0", 6)

    with pytest.raises(LedgerBehind) as behind:
        await ledger.apply_viewing([wh(RECV, "A", 1, 2, eid="a2")], positions={P0: 11})
    assert behind.value.positions == {P0: 6}
    assert (await ledger.stock(["A"]))["A"].available == 5

    # Told where the ledger is (after the rewind), it applies again.
    ledger.know({P0: 6})
    await ledger.apply_viewing([wh(RECV, "A", 1, 2, eid="a2")], positions={P0: 7})
    assert (await ledger.stock(["A"]))["A"].available == 6


async def test_a_ledger_that_lost_a_partition_entirely_is_behind(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    await ledger.create_marker()
    await ledger.apply_viewing([], positions={P0: 3})
    await redis.hdel(keys.marker, "p:orders:0")
    with pytest.raises(LedgerBehind) as behind:
        await ledger.apply_viewing([], positions={P0: 4})
    assert behind.value.positions == {P0: -1}


async def test_a_wipe_between_calls_stops_the_next(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    await ledger.create_marker()
    await ledger.apply_viewing([wh(RECV, "A", 5, 1, eid="a1")], positions={P0: 1})
    for key in await redis.keys(f"{{{keys.prefix}}}:*"):
        await redis.delete(key)
    with pytest.raises(LedgerLost):
        await ledger.apply_viewing([wh(RECV, "A", 1, 2, eid="a2")], positions={P0: 2})
    assert await redis.keys(f"{{{keys.prefix}}}:*") == []


async def test_only_the_last_chunk_of_a_call_records_the_positions(
    redis: Redis, keys: Keys
) -> None:
    """A call cut off between its chunks must not claim the offsets of the chunks that did
    not run: each chunk checks, the last one writes."""
    ledger = Ledger(redis, keys, dedupe_ttl_s=3600, default_warehouse=W1, chunk_lines=1)
    await ledger.create_marker()
    events = [wh(RECV, "A", 1, i, eid=f"a{i}") for i in range(3)]
    chunks = ledger._chunks(  # the calls the pipeline would send
        [(e, *ledger._op_and_lines(e)) for e in events], 0, "x", (), [["p:orders:0", 9, -1]]
    )
    # ARGV head: ..., companions, positions, write_positions, events (ledger_apply.lua).
    assert [json.loads(c.call.arg)[9] for c in chunks] == [0, 0, 1]


async def test_reported_positions_are_kept_apart_from_applied_ones(ledger: Ledger) -> None:
    await ledger.create_marker()
    await ledger.apply_viewing([], positions={P0: 9})
    await ledger.record_reported({P0: 4})
    marker = await ledger.marker([P0])
    assert (marker.positions, marker.reported) == ({P0: 9}, {P0: 4})


async def test_while_a_rebuild_writes_the_ledger_only_its_own_calls_apply(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    rebuilder = Ledger(redis, keys, dedupe_ttl_s=3600, default_warehouse=W1)
    await rebuilder.begin_rebuild()
    with pytest.raises(LedgerLost):  # a connector that has not noticed yet
        await ledger.apply([wh(RECV, "A", 5, 1, eid="a1")])
    with pytest.raises(LedgerLost):
        await ledger.stock(["A"])
    await rebuilder.apply_viewing([wh(RECV, "A", 5, 1, eid="a1")], positions={P0: 3})
    with pytest.raises(LedgerExists):  # another rebuild, not taking this one over
        await Ledger(redis, keys, dedupe_ttl_s=3600, default_warehouse=W1).begin_rebuild()

    ready = await rebuilder.finish_rebuild((await ledger.marker()).ledger_id or "", {P0: 3, P1: 8})
    marker = await ledger.marker([P0, P1])
    assert marker.ledger_id == ready and marker.ready
    assert marker.positions == marker.reported == {P0: 3, P1: 8}
    assert (await ledger.stock(["A"]))["A"].available == 5


async def test_positions_are_only_ever_raised(ledger: Ledger) -> None:
    await ledger.create_marker({P0: 5})
    await ledger.raise_positions({P0: 4, P1: 2})
    assert (await ledger.marker([P0, P1])).positions == {P0: 5, P1: 2}
    await ledger.raise_positions({P0: 8})
    assert (await ledger.marker([P0])).positions == {P0: 8}
