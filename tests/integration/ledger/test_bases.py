"""Push bases moved by Taobao-side orders in the ledger's own call, against a real
Redis-compatible server (``ledger_apply.lua``'s ``move_base``, ``connector.push.base_store``)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from connector.contracts.events import OrderEvent, OrderLine, OrderType
from connector.keys import Keys
from connector.ledger.ledger import Ledger
from connector.ledger.outcomes import PushBase
from connector.push.base_store import BaseStore
from tests.unit.ledger.test_stock import RECV, W1, wh

pytestmark = pytest.mark.integration

LISTING, OTHER = "600000000001:700000000011", "600000000002:"
WRITTEN_MS = 1_790_000_000_000  # Taobao's time of the absolute write


def taobao(kind: OrderType, order: str, qty: int, at_ms: int, listing: str = LISTING) -> OrderEvent:
    return OrderEvent(
        f"taobao:{order}:{kind.value}", order, "taobao", "shop", kind,
        (OrderLine("A", qty, None, listing),), at_ms,
    )  # fmt: skip


@pytest.fixture
async def ledger(redis: Redis, keys: Keys) -> Ledger:
    ledger = Ledger(redis, keys, dedupe_ttl_s=3600, default_warehouse=W1)
    await ledger.create_marker()
    await ledger.apply([wh(RECV, "A", 50, 1, eid="r1")])
    return ledger


async def bases(ledger: Ledger) -> dict[str, PushBase]:
    return dict((await ledger.stock(["A"]))["A"].bases)


async def test_a_taobao_order_after_the_write_moves_its_listings_base_only(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    store = BaseStore(redis, keys)
    await store.written({("A", LISTING): 50, ("A", OTHER): 50}, WRITTEN_MS)
    after = WRITTEN_MS + 1000
    await ledger.apply([taobao(OrderType.CREATED, "t1", 3, after)])
    assert await bases(ledger) == {
        LISTING: PushBase(47, WRITTEN_MS),  # Taobao took the 3 there already
        OTHER: PushBase(50, WRITTEN_MS),  # the other listing still has to hear of them
    }
    # Redelivered: applied once, moved once. Shipped: availability unchanged.
    await ledger.apply([taobao(OrderType.CREATED, "t1", 3, after)])
    await ledger.apply([taobao(OrderType.SHIPPED, "t1", 3, after + 1000)])
    assert (await bases(ledger))[LISTING].base == 47
    await ledger.apply([taobao(OrderType.CREATED, "t2", 2, after)])
    await ledger.apply([taobao(OrderType.CANCELLED, "t2", 2, after + 2000)])  # given back
    assert (await bases(ledger))[LISTING].base == 47


async def test_orders_placed_before_an_absolute_write_do_not_move_the_base(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    # The write overwrote their deduction: the projection pushes it like any change.
    await BaseStore(redis, keys).written({("A", LISTING): 50}, WRITTEN_MS)
    await ledger.apply([taobao(OrderType.CREATED, "t2", 4, WRITTEN_MS - 5000)])
    stock = (await ledger.stock(["A"]))["A"]
    assert stock.bases[LISTING].base == 50 and stock.ambiguous == {}
    # In the very second of the write: before or after it, nobody can tell. Counted as
    # before (Taobao shows less, never more), and the base is marked for re-anchoring.
    await ledger.apply([taobao(OrderType.CREATED, "t1", 3, WRITTEN_MS)])
    stock = (await ledger.stock(["A"]))["A"]
    assert stock.bases[LISTING].base == 50 and stock.available == 43
    assert set(stock.ambiguous) == {LISTING}
    assert set(stock.taobao_orders_ms) == {LISTING}  # (when it reached the ledger)
    await BaseStore(redis, keys).written({("A", LISTING): 43}, WRITTEN_MS + 20_000)
    assert (await ledger.stock(["A"]))["A"].ambiguous == {}


async def test_without_a_base_nothing_is_written_and_increments_do_not_create_one(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    store = BaseStore(redis, keys)
    await ledger.apply([taobao(OrderType.CREATED, "t1", 3, WRITTEN_MS)])
    await store.begin({("A", LISTING): -2})
    await store.done([("A", LISTING)])
    assert await bases(ledger) == {}
    await store.written({("A", LISTING): 47}, WRITTEN_MS)
    await store.begin({("A", LISTING): 5})
    assert await bases(ledger) == {}  # in flight: unknown until settled
    await store.done([("A", LISTING)])
    assert (await bases(ledger))[LISTING].base == 52
    await store.forget([("A", LISTING)])
    assert await bases(ledger) == {}


async def test_other_channels_orders_never_move_a_base(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    await BaseStore(redis, keys).written({("A", LISTING): 50}, WRITTEN_MS)
    web = OrderEvent(
        "w1", "w1", "web", "shop", OrderType.CREATED, (OrderLine("A", 5),), WRITTEN_MS + 9000
    )
    await ledger.apply([web])
    assert (await bases(ledger))[LISTING].base == 50


async def test_after_redis_came_back_behind_every_base_is_forgotten(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    store = BaseStore(redis, keys)
    await store.written({("A", LISTING): 50, ("A", OTHER): 50}, WRITTEN_MS)
    await store.begin({("A", LISTING): 2})
    assert await ledger.forget_push_bases() == 2
    assert await bases(ledger) == {}
    fields = await redis.hkeys(keys.sku("A"))
    assert not [f for f in fields if f[:2] in (b"b:", b"a:", b"i:")]
    assert (await ledger.stock(["A"]))["A"].available == 50  # the stock itself untouched
