"""The composition root: every component built from ``Settings``, started and closed in order.

No component opens a connection in its constructor; ``Connector.start`` does, and checks
each dependency once so a wrong setting fails at start-up with one message naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import httpx
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer

from connector.codec import AvroCodec
from connector.kafka_io import EventConsumer, EventProducer, check_broker
from connector.keys import Keys
from connector.ledger import Ledger
from connector.mapping import MappingCache
from connector.pipeline import Pipeline, PipelineMetrics
from connector.projection import TaobaoProjection
from connector.redis_client import AsyncRedis, connect_redis
from connector.settings import Settings
from connector.taobao.client import TopClient, build_http_client
from connector.telemetry import TaobaoMetrics, get_tracer

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
    producer: EventProducer
    pipeline: Pipeline

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        tracer: Tracer | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> Connector:
        tracer = tracer or get_tracer()
        await asyncio.to_thread(check_broker, settings.kafka)
        redis = await connect_redis(settings.redis)
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
        projection = TaobaoProjection(
            client=client,
            ledger=ledger,
            mapping=mapping,
            redis=redis,
            keys=keys,
            settings=sync,
            tracer=tracer,
        )
        kafka = settings.kafka
        consumer = EventConsumer(kafka, [kafka.orders_topic, kafka.warehouse_topic])
        producer = EventProducer(kafka)
        pipeline = Pipeline(
            consumer=consumer,
            producer=producer,
            codec=AvroCodec.from_settings(kafka),
            ledger=ledger,
            projection=projection,
            kafka=kafka,
            sync=sync,
            tracer=tracer,
            metrics=PipelineMetrics.create(meter_provider),
        )
        await client.prepare()
        return cls(settings, redis, http, client, ledger, projection, consumer, producer, pipeline)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self.consumer.start)
        await self.pipeline.run(stop)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.consumer.close)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.producer.close)
        await self.http.aclose()
        await self.redis.aclose()
