"""The composition root: every component built from ``Settings``, started and closed in order.

Two loops run in one process and share nothing but the ledger (and an in-process wake-up):
ingest (Kafka -> ledger -> Kafka) and the projection (ledger -> Taobao -> Kafka). Either
failing for good ends both, so the process exits and Kubernetes restarts it. With
``TAOBAO_TMC_ENABLED`` a third task bridges Taobao's own orders into the orders topic
(``connector.tmc.bridge``); it reaches the ledger only through that topic.

No component opens a connection in its constructor; ``Connector.start`` does, and checks
each dependency once so a wrong setting fails at start-up with one message naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer

from connector.contracts.codec import AvroCodec
from connector.ingest.loop import IngestLoop
from connector.kafka import (
    EventConsumer,
    EventProducer,
    PartitionReader,
    check_broker,
    check_topics,
)
from connector.keys import Keys
from connector.ledger.guard import LedgerGuard
from connector.ledger.ledger import Ledger
from connector.metrics import BridgeMetrics, SyncMetrics
from connector.push.base_store import BaseStore
from connector.push.items import ItemStates
from connector.push.loop import ProjectionLoop, ProjectionState
from connector.push.mapping import MappingCache
from connector.push.projection import TaobaoProjection
from connector.redis_client import AsyncRedis, connect_redis
from connector.retrying import Startup, wait_for_dependency
from connector.settings import Settings
from connector.taobao.client import TopClient, build_http_client
from connector.telemetry import TaobaoMetrics, get_tracer
from connector.tmc.bridge import TmcBridge
from connector.tmc.item_watch import ItemWatch

__all__ = ["Connector"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Connector:
    """A running connector's parts; ``aclose`` releases them in reverse order."""

    settings: Settings
    redis: AsyncRedis
    http: httpx.AsyncClient
    client: TopClient
    ledger: Ledger
    projection: TaobaoProjection
    consumer: EventConsumer
    producer: EventProducer  # ingest's: results, alerts, dead letters
    push_producer: EventProducer  # the projection's: push records, alerts
    ingest: IngestLoop
    projection_loop: ProjectionLoop
    guard: LedgerGuard  # both loops stop while the ledger is lost
    offsets: PartitionReader  # the group's committed offsets, read outside the group
    bridge: TmcBridge | None = None  # Taobao's own orders into the orders topic
    bridge_producer: EventProducer | None = None

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        tracer: Tracer | None = None,
        meter_provider: MeterProvider | None = None,
        startup: Startup | None = None,
        stop: asyncio.Event | None = None,
    ) -> Connector:
        """Check the broker and the topics, connect Redis and load the Taobao session,
        waiting up to ``CONNECTOR_STARTUP_TIMEOUT_S`` for a broker or Redis that does not
        answer yet (``startup`` says what is waited for; ``stop`` ends the wait with
        ``Stopped``). A wrong setting fails at once."""
        tracer = tracer or get_tracer()
        startup = startup or Startup()
        deadline = time.monotonic() + settings.runtime.startup_timeout_s
        waiting = functools.partial(
            wait_for_dependency, startup=startup, deadline=deadline, stop=stop or asyncio.Event()
        )
        await waiting("the broker", lambda: asyncio.to_thread(check_broker, settings.kafka))
        # (A missing topic is a ConfigError, raised at once; only an unreachable broker waits.)
        await waiting(
            "the broker's topics", lambda: asyncio.to_thread(check_topics, settings.kafka)
        )
        redis = await waiting("Redis", lambda: connect_redis(settings.redis))
        try:
            return await cls._assemble(settings, redis, tracer, meter_provider, waiting)
        except BaseException:
            await redis.aclose()
            raise

    @classmethod
    async def _assemble(
        cls,
        settings: Settings,
        redis: AsyncRedis,
        tracer: Tracer,
        meter_provider: MeterProvider | None,
        waiting: Callable[..., Awaitable[Any]],
    ) -> Connector:
        keys = Keys(settings.redis.key_prefix)
        http = build_http_client(settings.taobao)
        client = TopClient.from_settings(
            settings.taobao,
            redis=redis,
            keys=keys,
            http=http,
            tracer=tracer,
            metrics=TaobaoMetrics.create(meter_provider),
        )
        sync = settings.sync
        ledger = Ledger(
            redis, keys, dedupe_ttl_s=sync.dedupe_ttl_s, default_warehouse=sync.default_warehouse
        )
        mapping = MappingCache(
            redis,
            keys,
            client,
            ttl_s=sync.mapping_ttl_s,
            unmapped_ttl_s=sync.unmapped_retry_s,
            concurrency=sync.push_concurrency,
        )
        pushing = ProjectionState()
        projection = TaobaoProjection(
            client=client,
            ledger=ledger,
            mapping=mapping,
            redis=redis,
            keys=keys,
            settings=sync,
            tracer=tracer,
            on_item_done=pushing.progress,
            # The bridge brings Taobao's own orders with their listing: push by increments.
            increments=settings.taobao.tmc_enabled,
        )
        kafka = settings.kafka
        codec = AvroCodec.from_settings(kafka)
        metrics = SyncMetrics.create(meter_provider)
        guard = LedgerGuard()
        metrics.observe_ledger(lambda: guard.lost)
        metrics.observe_quota(client.quota)
        metrics.observe_session(client.session_expiry)
        # Each partition is held until the ledger's position for it is checked.
        inputs = [kafka.orders_topic, kafka.warehouse_topic]
        consumer = EventConsumer(kafka, inputs, hold_assigned=True)
        # The committed offsets the ledger's positions are compared with, read outside the
        # group: the member itself answers only once its join is done.
        offsets = PartitionReader(kafka, inputs)
        # One producer per loop: EventProducer.send waits for everything queued on it.
        producer, push_producer = EventProducer(kafka), EventProducer(kafka)
        projection_loop = ProjectionLoop(
            projection=projection,
            ledger=ledger,
            bans=client,
            producer=push_producer,
            codec=codec,
            kafka=kafka,
            sync=sync,
            state=pushing,
            metrics=metrics,
            guard=guard,
            session=client.session_expiry,
            session_warn_s=settings.taobao.session_warn_s,
            quota=client.quota,
        )
        ingest = IngestLoop(
            consumer=consumer,
            producer=producer,
            codec=codec,
            ledger=ledger,
            mapping=mapping,
            kafka=kafka,
            sync=sync,
            on_changed=projection_loop.changed,
            tracer=tracer,
            metrics=metrics,
            guard=guard,
            offsets=offsets,
        )
        bridge, bridge_producer = None, None
        if settings.taobao.tmc_enabled:
            bridge_producer = EventProducer(kafka)
            bridge = TmcBridge(
                client=client,
                redis=redis,
                keys=keys,
                producer=bridge_producer,
                codec=codec,
                kafka=kafka,
                taobao=settings.taobao,
                dedupe_ttl_s=sync.dedupe_ttl_s,
                metrics=BridgeMetrics.create(meter_provider),
                tracer=tracer,
                watch=ItemWatch(
                    client, ItemStates(redis, keys), BaseStore(redis, keys), ledger, redis, keys
                ),
            )
        await waiting("the Taobao session in Redis", client.prepare)
        return cls(
            settings,
            redis,
            http,
            client,
            ledger,
            projection,
            consumer,
            producer,
            push_producer,
            ingest,
            projection_loop,
            guard,
            offsets,
            bridge,
            bridge_producer,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Both loops until ``stop``; if one fails for good, the other is cancelled."""
        await asyncio.to_thread(self.consumer.start)
        try:
            async with asyncio.TaskGroup() as loops:
                loops.create_task(self.ingest.run(stop), name="ingest")
                loops.create_task(self.projection_loop.run(stop), name="projection")
                if self.bridge is not None:
                    loops.create_task(self.bridge.run(stop), name="tmc-bridge")
        except BaseExceptionGroup as failed:
            # Surface the loop's own error (one line naming what to fix), not the group.
            raise _first_leaf(failed) from failed

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.consumer.close)
        for client in (self.producer, self.push_producer, self.bridge_producer, self.offsets):
            if client is None:
                continue
            with contextlib.suppress(Exception):
                await asyncio.to_thread(client.close)
        await self.http.aclose()
        await self.redis.aclose()


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
