"""Driving the whole connector in tests: real broker, real Redis, the sandbox over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from opentelemetry.trace import Tracer

from connector.contracts.codec import AvroCodec
from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    StockEvent,
    WarehouseEvent,
    WarehouseType,
)
from connector.contracts.records import StockAlert, StockPush, SyncResult
from connector.kafka import EventProducer, Inbound, Outbound
from connector.ledger.stock import reference_apply
from connector.push.planner import target
from connector.sandbox.server import SandboxServer
from connector.service.app import Connector
from connector.settings import KafkaSettings, Settings
from tests.helpers import admin

WAREHOUSE = "WH-1"
BASE_MS = int(time.time() * 1000) - 3_600_000


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way catches it."""


def order(
    event_id: str, order_id: str, kind: OrderType, *lines: tuple[str, int], at: int = 0
) -> OrderEvent:
    return OrderEvent(
        event_id=event_id,
        order_id=order_id,
        channel="taobao",
        shop="shop-1",
        type=kind,
        lines=tuple(OrderLine(sku, qty, WAREHOUSE) for sku, qty in lines),
        occurred_at_ms=BASE_MS + at,
    )


def move(event_id: str, kind: WarehouseType, sku: str, qty: int, at: int = 0) -> WarehouseEvent:
    return WarehouseEvent(event_id, WAREHOUSE, kind, sku, qty, BASE_MS + at)


def count(sku: str, qty: int, at: int = 0) -> WarehouseEvent:
    return move(f"count-{sku}-{at}", WarehouseType.STOCKTAKE, sku, qty, at)


@dataclass
class Harness:
    kafka: KafkaSettings
    sandbox: SandboxServer
    redis_url: str
    prefix: str = field(default_factory=lambda: f"pipe-{uuid.uuid4().hex[:10]}")
    codec: AvroCodec = field(default_factory=AvroCodec)

    def settings(
        self,
        *,
        kafka: KafkaSettings | None = None,
        taobao: dict[str, Any] | None = None,
        **sync: Any,
    ) -> Settings:
        config = self.sandbox.config
        return Settings.model_validate(
            {
                "taobao": {
                    "app_key": config.app_key,
                    "app_secret": config.app_secret,
                    "session": config.session,
                    "refresh_token": config.refresh_token,
                    "gateway_url": self.sandbox.gateway_url,
                    "token_url": self.sandbox.token_url,
                    "qps": 500,
                    "burst": 50,
                    "timeout_s": 2.0,
                    "deadline_s": 10.0,
                    "backoff_base_s": 0.01,
                    "backoff_max_s": 0.1,
                    **(taobao or {}),
                },
                "redis": {"url": self.redis_url, "key_prefix": self.prefix},
                "kafka": (kafka or self.kafka).model_copy(update={"batch_wait_ms": 50}),
                "sync": {"sweep_interval_s": 0.2, **sync},
            }
        )

    @contextlib.asynccontextmanager
    async def running(
        self,
        *,
        tracer: Tracer | None = None,
        kafka: KafkaSettings | None = None,
        taobao: dict[str, Any] | None = None,
        **sync: Any,
    ) -> AsyncIterator[Connector]:
        """A connector consuming in the background; stopped (finishing its batch) on exit."""
        settings = self.settings(kafka=kafka, taobao=taobao, **sync)
        connector = await Connector.start(settings, tracer=tracer)
        stop = asyncio.Event()
        task = asyncio.create_task(connector.run(stop))
        try:
            yield connector
        finally:
            stop.set()
            with contextlib.suppress(Crash):
                await asyncio.wait_for(task, timeout=30)
            await connector.aclose()

    def produce(
        self, events: Sequence[StockEvent | bytes], *, headers: tuple[tuple[str, bytes], ...] = ()
    ) -> None:
        messages = []
        for event in events:
            if isinstance(event, bytes):
                messages.append(Outbound(self.kafka.orders_topic, event, headers=headers))
            elif isinstance(event, OrderEvent):
                value = self.codec.encode_order(event, topic=self.kafka.orders_topic)
                messages.append(
                    Outbound(self.kafka.orders_topic, value, event.order_id.encode(), headers)
                )
            else:
                value = self.codec.encode_warehouse(event, topic=self.kafka.warehouse_topic)
                messages.append(
                    Outbound(self.kafka.warehouse_topic, value, event.sku.encode(), headers)
                )
        producer = EventProducer(self.kafka)
        try:
            producer.send(messages, timeout_s=15)
        finally:
            producer.close()

    async def read(
        self,
        topic: str,
        expected: int,
        *,
        timeout_s: float = 30,
        settle: bool = True,
        partitions: int = 1,
    ) -> list[Inbound]:
        """Every message of a topic (one partition unless told), once at least ``expected``
        are there.

        With ``settle`` it returns only once the topic has also gone quiet (so a count that
        is too high shows); without, as soon as ``expected`` are there.
        """
        return await asyncio.to_thread(
            _read, self.kafka.bootstrap_servers, topic, expected, timeout_s, settle, partitions
        )

    async def results(self, expected: int, **kw: Any) -> list[SyncResult]:
        messages = await self.read(self.kafka.results_topic, expected, **kw)
        return [self.codec.decode_result(m.value or b"") for m in messages]

    async def alerts(self, expected: int = 0, **kw: Any) -> list[StockAlert]:
        messages = await self.read(self.kafka.alerts_topic, expected, **kw)
        return [self.codec.decode_alert(m.value or b"") for m in messages]

    async def pushes(self, expected: int = 0, **kw: Any) -> list[StockPush]:
        messages = await self.read(self.kafka.pushes_topic, expected, **kw)
        return [self.codec.decode_push(m.value or b"") for m in messages]


def _read(
    bootstrap: str, topic: str, expected: int, timeout_s: float, settle: bool, partitions: int
) -> list[Inbound]:
    # Assign mode: no consumer group to join, so reading takes milliseconds, not seconds.
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    found: list[Inbound] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            fresh = _inbound(consumer.consume(500, 0.3))
            found += fresh
            # Drain: return once the count is reached and the topic has gone quiet.
            if len(found) >= expected and not (fresh and settle):
                return found
    finally:
        consumer.close()
    raise AssertionError(f"{topic}: {len(found)} messages after {timeout_s}s, expected {expected}")


def _inbound(messages: list[Any]) -> list[Inbound]:
    return [
        Inbound(
            m.topic(), m.partition(), m.offset(), m.key(), m.value(), tuple(m.headers() or ()), None
        )
        for m in messages
        if m.error() is None
    ]


async def wait_for(predicate: Callable[[], Any], *, timeout_s: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def taobao_quantities(sandbox: SandboxServer) -> dict[str, int]:
    view: dict[str, int] = {}
    for item in admin(sandbox, "GET", "/sandbox/state")["items"]:
        for sku in item.get("skus") or []:
            view[sku["outer_id"]] = sku["quantity"]
        if not item.get("skus"):
            view[item["outer_id"]] = item["num"]
    return view


def shelf(sandbox: SandboxServer, num_iid: int) -> str:
    items = admin(sandbox, "GET", "/sandbox/state")["items"]
    return str(next(i["approve_status"] for i in items if i["num_iid"] == num_iid))


def expected_targets(events: Iterable[StockEvent], codes: Iterable[str]) -> dict[str, int]:
    state = reference_apply(events, default_warehouse="DEFAULT")
    return {code: target(state.available(code), 0) for code in codes}


async def converged(harness: Harness, events: list[StockEvent], codes: list[str]) -> None:
    want = expected_targets(events, codes)

    def matches() -> bool:
        shown = taobao_quantities(harness.sandbox)
        return all(shown[c] == want[c] for c in codes)

    await wait_for(matches, what=f"Taobao to show {want}")
