"""The connector as Kubernetes runs it: probes, metrics, and SIGTERM during a batch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from connector.contracts.events import OrderType
from connector.contracts.records import ResultStatus
from connector.demo.embedded import EmbeddedBroker, EmbeddedRedis
from connector.errors import ConfigError
from connector.keys import Keys
from connector.ledger.ledger import Ledger
from connector.ledger.stock import reference_apply
from connector.sandbox.server import SandboxServer
from connector.service.app import Connector
from connector.service.health import HealthServer, Readiness
from connector.settings import KafkaSettings, Settings
from connector.telemetry import setup_metrics
from tests.conftest import create_topics, new_kafka_settings
from tests.helpers import admin
from tests.pipeline_harness import Harness, count, order, wait_for

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Connector, str]]:
    """A connector consuming in the background, with its health server on a free port."""
    meter_provider, registry = setup_metrics()
    connector = await Connector.start(settings, meter_provider=meter_provider)
    health = HealthServer(
        Readiness(connector, stall_timeout_s=30), registry, host="127.0.0.1", port=0
    )
    await health.start()
    stop = asyncio.Event()
    task = asyncio.create_task(connector.run(stop))
    try:
        yield connector, f"http://127.0.0.1:{health.port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await health.stop()
        await connector.aclose()
        meter_provider.shutdown()


async def readiness(base: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"{base}/readyz")
    return response.status_code, response.json()["checks"]


async def ready_is(base: str, want: bool, *, timeout_s: float = 40) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, checks = await readiness(base)
        if (status == 200) == want:
            return checks
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz stayed {status}: {checks}")
        await asyncio.sleep(0.3)


async def test_a_ban_leaves_the_pod_ready_and_shows_in_the_body_and_the_metrics(
    kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str
) -> None:
    harness = Harness(kafka_settings, sandbox, redis_url)
    async with serving(harness.settings()) as (_, base), httpx.AsyncClient(timeout=5) as http:
        await ready_is(base, True)
        # Longer than the client's deadline (10 s here): a shorter ban is waited out in the call.
        admin(sandbox, "POST", "/sandbox/ban", {"seconds": 15})
        harness.produce([count("MUG-WHITE", 8)])
        deadline = time.monotonic() + 20
        while True:
            answer = await http.get(f"{base}/readyz")
            projection = answer.json()["projection"]
            if projection["state"].startswith("banned") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        text = (await http.get(f"{base}/metrics")).text

    assert answer.status_code == 200, answer.json()
    assert projection["state"].startswith("banned"), projection
    assert projection["ok"] is False
    assert 0 < projection["ban_remaining_s"] <= 15
    assert metric(text, "taobao_ban_remaining_seconds") > 0
    assert metric(text, "sync_projection_paused") == 1


async def test_readiness_follows_redis_and_the_broker(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    redis_port, broker_port = free_port(), free_port()

    # Persistent, as a ledger's Redis must be: a restart keeps the ledger.
    def durable() -> EmbeddedRedis:
        return EmbeddedRedis(port=redis_port, appendonly=True, data_dir=tmp_path)

    redis = durable().start()
    broker = EmbeddedBroker(port=broker_port).start()
    try:
        kafka = new_kafka_settings(broker.bootstrap_servers)
        harness = Harness(kafka, sandbox, redis.url)
        async with serving(harness.settings()) as (_, base):
            async with httpx.AsyncClient(timeout=5) as http:
                assert (await http.get(f"{base}/healthz")).status_code == 200
            await ready_is(base, True)

            redis.stop()
            checks = await ready_is(base, False)
            assert not checks["redis"]["ok"]
            redis = durable().start()
            await ready_is(base, True)

            broker.stop()
            checks = await ready_is(base, False)
            assert not checks["broker"]["ok"]
            broker = EmbeddedBroker(port=broker_port).start()
            create_topics(kafka)  # an in-memory broker comes back empty
            await ready_is(base, True, timeout_s=60)
    finally:
        broker.stop()
        redis.stop()


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.match(rf"{name}(\{{(?P<labels>.*)\}})? (?P<value>\S+)$", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels") or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group("value"))
    return total


async def test_metrics_move_when_events_are_processed(
    kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str
) -> None:
    harness = Harness(kafka_settings, sandbox, redis_url)
    async with serving(harness.settings()) as (_, base), httpx.AsyncClient(timeout=5) as http:
        before = (await http.get(f"{base}/metrics")).text
        harness.produce(
            [count("MUG-WHITE", 8), order("m1", "m1", OrderType.CREATED, ("MUG-WHITE", 1), at=1)]
        )
        await harness.results(2)
        await harness.pushes(1)
        # The batch duration is recorded after the commit, a moment after the results.
        after = await scrape_once_present(http, f"{base}/metrics", "sync_pushes_total")

    assert metric(before, "sync_events_total") == 0
    assert metric(after, "sync_events_total", status="APPLIED") == 2
    assert metric(after, "taobao_calls_total", outcome="ok") >= 1
    assert metric(after, "taobao_call_duration_seconds_count") >= 1
    assert metric(after, "sync_ledger_duration_seconds_count") >= 1
    assert "sync_pending_skus" in after
    assert metric(after, "sync_pushes_total", outcome="SYNCED") >= 1
    assert metric(after, "sync_push_pass_duration_seconds_count") >= 1
    for gauge in (
        "sync_pending_oldest_age_seconds",
        "taobao_ban_remaining_seconds",
        "sync_projection_paused",
    ):
        assert f"{gauge} " in after or f"{gauge}{{" in after, gauge
    # Second-scale buckets: a sub-second batch must not all land in one millisecond bucket.
    assert 'sync_batch_duration_seconds_bucket{le="0.1",' in after
    assert "sync_consumer_lag" in after


async def scrape_once_present(
    http: httpx.AsyncClient, url: str, needle: str, timeout_s: float = 10
) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        text = (await http.get(url)).text
        if needle in text or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.1)


def connector_env(settings: Settings) -> dict[str, str]:
    """The environment a pod would get for these settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAOBAO_", "REDIS_", "KAFKA_", "SYNC_", "CONNECTOR_"))
    }
    prefixes = {
        "taobao": "TAOBAO_",
        "redis": "REDIS_",
        "kafka": "KAFKA_",
        "sync": "SYNC_",
        "runtime": "CONNECTOR_",
    }
    for group, prefix in prefixes.items():
        for name, value in getattr(settings, group):
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"{prefix}{name.upper()}"] = (
                json.dumps(value) if isinstance(value, dict) else str(value)
            )
    env["CONNECTOR_HTTP_PORT"] = "0"
    env["OTEL_TRACES_EXPORTER"] = "none"
    return env


async def test_sigterm_during_a_batch_loses_and_duplicates_nothing(
    kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str
) -> None:
    harness = Harness(kafka_settings, sandbox, redis_url)
    codes = ["MUG-WHITE", "TSHIRT-RED-M", "TSHIRT-RED-L"]
    events = [count(code, 5000) for code in codes]
    events += [
        order(f"o{i}", f"o{i}", OrderType.CREATED, (codes[i % 3], 1), at=i + 1) for i in range(3000)
    ]
    harness.produce(events)
    settings = harness.settings().model_copy(
        update={"kafka": harness.settings().kafka.model_copy(update={"batch_max_events": 200})}
    )
    env = connector_env(settings)
    command = [sys.executable, "-m", "connector", "run"]

    first = subprocess.Popen(  # noqa: ASYNC220 (a real process to signal; we await nothing meanwhile)
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    await harness.results(300, timeout_s=60, settle=False)  # well into the backlog
    first.send_signal(signal.SIGTERM)
    started = time.monotonic()
    output, _ = first.communicate(timeout=40)
    assert first.returncode == 0, output.decode()
    assert time.monotonic() - started < settings.runtime.shutdown_timeout_s
    assert b"shutting down" in output

    second = subprocess.Popen(  # noqa: ASYNC220
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        results = await harness.results(len(events), timeout_s=120)
        await wait_for(lambda: _all_results(harness, len(events)), timeout_s=60, what="all results")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(40)

    results = await harness.results(len(events))
    applied = Counter(r.event_id for r in results if r.status is ResultStatus.APPLIED)
    assert set(applied) == {e.event_id for e in events}  # nothing lost
    assert max(applied.values()) == 1  # nothing applied twice
    client = Redis.from_url(redis_url)
    try:
        ledger = Ledger(
            client, Keys(harness.prefix), dedupe_ttl_s=3600, default_warehouse="DEFAULT"
        )
        stock = await ledger.stock(codes)
    finally:
        await client.aclose()
    reference = reference_apply(events, default_warehouse="DEFAULT")
    assert {c: stock[c].available for c in codes} == {c: reference.available(c) for c in codes}


async def _all_results(harness: Harness, n: int) -> bool:
    results = await harness.results(0, timeout_s=30)
    return len({r.event_id for r in results}) >= n


async def test_the_connector_refuses_to_start_when_a_topic_is_missing(
    kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str
) -> None:
    missing = kafka_settings.model_copy(update={"pushes_topic": "never-created-pushes"})
    harness = Harness(missing, sandbox, redis_url)

    with pytest.raises(ConfigError) as info:
        await Connector.start(harness.settings())

    assert "KAFKA_PUSHES_TOPIC (never-created-pushes)" in str(info.value)
