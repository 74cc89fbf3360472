"""Taobao's own orders, end to end: the sandbox sells, its message service (TMC) announces
it, the bridge produces the events to the orders topic, the ledger applies each line once.

Real broker, real Redis-compatible server, the sandbox over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import pytest

from connector.contracts.records import ResultStatus
from connector.kafka import EventProducer
from connector.keys import Keys
from connector.metrics import BridgeMetrics
from connector.redis_client import connect_redis
from connector.sandbox.server import SandboxServer
from connector.service.app import Connector
from connector.tmc import api
from connector.tmc.bridge import TmcBridge
from connector.tmc.sent import SentRecords
from tests.helpers import admin, calls
from tests.integration.tmc.conftest import FAST, MUG, first_push
from tests.pipeline_harness import Harness, count, wait_for

pytestmark = pytest.mark.integration


def sell(sandbox: SandboxServer, quantity: int, *then: str) -> int:
    tid = int(
        admin(sandbox, "POST", "/sandbox/orders", {"num_iid": MUG, "quantity": quantity})["tid"]
    )
    for step in then:
        admin(sandbox, "POST", f"/sandbox/orders/{tid}/{step}")
    return tid


async def mug(connector: Connector) -> tuple[int, int, int]:
    stock = (await connector.ledger.stock(["MUG-WHITE"]))["MUG-WHITE"]
    return sum(stock.on_hand.values()), stock.reserved, stock.available


def order_ids(harness: Harness, found: list[Any]) -> Counter[str]:
    codec = harness.codec
    return Counter(codec.decode_order(m.value)["event_id"] for m in found)


async def test_taobao_orders_reach_the_ledger_once_each_as_their_trades_move(
    harness: Harness, sandbox: SandboxServer
) -> None:
    async with harness.running(taobao=FAST) as connector:
        harness.produce([count("MUG-WHITE", 60)])
        await harness.results(1, settle=False)  # the opening count is in
        await first_push(connector)
        shipped = sell(sandbox, 2, "pay", "ship")
        closed = sell(sandbox, 3)
        refunded = sell(sandbox, 1, "pay", "ship", "refund")
        unpaid = sell(sandbox, 4)
        admin(sandbox, "POST", f"/sandbox/orders/{closed}/close")

        async def settled() -> bool:
            return await mug(connector) == (57, 4, 53)

        # 60 - 2 shipped - 1 shipped (refunded: the goods come back as a warehouse return);
        # 4 reserved by the unpaid order; the closed one released.
        await wait_for(settled, timeout_s=30, what="the ledger to count Taobao's orders")
        # Taobao agrees once the projection pushed the ledger's figure.
        await wait_for(lambda: _item(sandbox)["num"] == 53, timeout_s=15, what="Taobao to show 53")

    events = order_ids(harness, await harness.read(harness.kafka.orders_topic, 8, partitions=3))
    assert all(n == 1 for n in events.values()), events  # produced once each
    kinds = Counter(
        event_id.rsplit(":", 1)[1] for event_id in events if event_id.startswith("taobao:")
    )
    assert kinds == {"created": 4, "shipped": 2, "cancelled": 1, "refunded": 1}
    assert {
        f"taobao:{tid}:{tid + 1}:created" for tid in (shipped, closed, refunded, unpaid)
    } <= set(events)
    # Calls per Taobao order: consume, confirm and paged trade reads, not one read each.
    reads = calls(sandbox, "taobao.trade.fullinfo.get")
    assert reads == []


def _item(sandbox: SandboxServer) -> dict[str, Any]:
    items = admin(sandbox, "GET", "/sandbox/state")["items"]
    found: dict[str, Any] = next(i for i in items if i["num_iid"] == MUG)
    return found


def _tmc(sandbox: SandboxServer) -> dict[str, Any]:
    found: dict[str, Any] = admin(sandbox, "GET", "/sandbox/state")["tmc"]
    return found


class Crash(BaseException):
    """The bridge's process dying: nothing on the way catches it."""


async def test_a_bridge_killed_before_confirming_leaves_the_lines_applied_once(
    harness: Harness, sandbox: SandboxServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = harness.settings(taobao=FAST)
    async with harness.running(taobao={"tmc_enabled": False}) as connector:
        harness.produce([count("MUG-WHITE", 60)])
        await harness.results(1, settle=False)  # the opening count is in
        # A bridge that dies after the broker acknowledged its events, before confirming.
        real_confirm = api.confirm

        async def dies(*_: Any, **__: Any) -> None:
            raise Crash

        monkeypatch.setattr(api, "confirm", dies)
        first = asyncio.create_task((await _bridge(settings, redis_url)).run(asyncio.Event()))
        await wait_for(lambda: _tmc(sandbox)["topics"], what="the permit")
        tids = [sell(sandbox, 1) for _ in range(5)]
        with contextlib.suppress(Crash):
            await asyncio.wait_for(first, timeout=20)
        monkeypatch.setattr(api, "confirm", real_confirm)

        # Its messages come back after the visibility timeout, to a new bridge; its
        # records say the events went out, so it only confirms.
        second = await _bridge(settings, redis_url)
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        try:

            async def done() -> bool:
                return await mug(connector) == (60, 5, 55)

            await wait_for(done, timeout_s=20, what="five reservations")
            await wait_for(
                lambda: _tmc(sandbox)["unconfirmed"] == 0, timeout_s=20, what="confirmed"
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)

    events = order_ids(harness, await harness.read(harness.kafka.orders_topic, 5, partitions=3))
    assert events == {f"taobao:{t}:{t + 1}:created": 1 for t in tids}


async def test_events_produced_again_after_a_crash_are_applied_once(
    harness: Harness, sandbox: SandboxServer, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the broker's acknowledgement but before recording it: the new bridge
    produces the same events again, and the ledger's de-duplication absorbs them."""
    settings = harness.settings(taobao=FAST)
    async with harness.running(taobao={"tmc_enabled": False}) as connector:
        harness.produce([count("MUG-WHITE", 60)])
        await harness.results(1, settle=False)  # the opening count is in

        async def dies(*_: Any, **__: Any) -> None:
            raise Crash

        with monkeypatch.context() as patch:
            patch.setattr(SentRecords, "mark", dies)
            first = asyncio.create_task((await _bridge(settings, redis_url)).run(asyncio.Event()))
            await wait_for(lambda: _tmc(sandbox)["topics"], what="the permit")
            for _ in range(3):
                sell(sandbox, 2, "pay")
            with contextlib.suppress(Crash):
                await asyncio.wait_for(first, timeout=20)

        second = await _bridge(settings, redis_url)
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        try:

            async def done() -> bool:
                return await mug(connector) == (60, 6, 54)

            await wait_for(done, timeout_s=20, what="three reservations")
            await wait_for(
                lambda: _tmc(sandbox)["unconfirmed"] == 0, timeout_s=20, what="confirmed"
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)
        results = await harness.results(1 + 6)
    statuses = Counter(r.status for r in results if r.event_id.startswith("taobao:"))
    assert statuses == {ResultStatus.APPLIED: 3, ResultStatus.DUPLICATE: 3}


async def _bridge(settings: Any, redis_url: str) -> TmcBridge:
    """A bridge of its own (its own Redis connection, client and producer), as another
    process would have."""
    from connector.taobao.client import TopClient, build_http_client

    redis = await connect_redis(settings.redis)
    keys = Keys(settings.redis.key_prefix)
    http = build_http_client(settings.taobao)
    client = TopClient.from_settings(settings.taobao, redis=redis, keys=keys, http=http)
    return TmcBridge(
        client=client,
        redis=redis,
        keys=keys,
        producer=EventProducer(settings.kafka),
        codec=AvroCodecFor(settings),
        kafka=settings.kafka,
        taobao=settings.taobao,
        dedupe_ttl_s=3600,
        metrics=BridgeMetrics.create(),
    )


def AvroCodecFor(settings: Any) -> Any:
    from connector.contracts.codec import AvroCodec

    return AvroCodec.from_settings(settings.kafka)
