"""Redis faults an operator meets, against the real broker, a real Valkey and the sandbox.

Each test owns its Redis server (restarted, killed, wiped or rolled back) and is bounded:
every wait has a deadline, and the servers stop with the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from connector.contracts.events import OrderType, StockEvent
from connector.contracts.records import AlertKind, ResultStatus
from connector.demo.embedded import EmbeddedRedis
from connector.keys import Keys
from connector.ledger.ledger import Ledger
from connector.ledger.stock import reference_apply
from connector.sandbox.server import SandboxServer
from connector.service.app import Connector
from connector.service.health import HealthServer, Readiness
from connector.settings import KafkaSettings, Settings
from connector.telemetry import setup_metrics
from tests.helpers import api_calls, set_faults
from tests.integration.service.test_service import (
    connector_env,
    free_port,
    metric,
    readiness,
    ready_is,
)
from tests.pipeline_harness import Harness, converged, count, order, taobao_quantities, wait_for

pytestmark = pytest.mark.integration

CODES = ["MUG-WHITE", "TSHIRT-RED-M", "TSHIRT-RED-L"]
STOCK_WRITES = ("quantity.update", "listing", "delisting")


def orders(first: int, n: int) -> list[StockEvent]:
    return [
        order(f"o{i}", f"o{i}", OrderType.CREATED, (CODES[i % 3], 1), at=1_000 + i)
        for i in range(first, first + n)
    ]


def stock_writes(sandbox: SandboxServer) -> int:
    return sum(1 for c in api_calls(sandbox) if c["method"].endswith(STOCK_WRITES))


@contextlib.asynccontextmanager
async def running(
    harness: Harness, settings: Settings | None = None
) -> AsyncIterator[tuple[Connector, str, asyncio.Task[None]]]:
    """A connector with its health server; the task shows whether it is still running."""
    meter_provider, registry = setup_metrics()
    connector = await Connector.start(settings or harness.settings(), meter_provider=meter_provider)
    health = HealthServer(
        Readiness(connector, stall_timeout_s=60), registry, host="127.0.0.1", port=0
    )
    await health.start()
    stop = asyncio.Event()
    task = asyncio.create_task(connector.run(stop))
    try:
        yield connector, f"http://127.0.0.1:{health.port}", task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=40)
        await health.stop()
        await connector.aclose()
        meter_provider.shutdown()


async def ledger_matches(harness: Harness, events: list[StockEvent]) -> bool:
    """The ledger holds every event's effect exactly once (the reference model's stock)."""
    client = Redis.from_url(harness.redis_url)
    try:
        ledger = Ledger(client, Keys(harness.prefix), dedupe_ttl_s=3600, default_warehouse="X")
        stock = await ledger.stock(CODES)
    except Exception:  # Redis still coming back
        return False
    finally:
        await client.aclose()
    want = reference_apply(events, default_warehouse="DEFAULT")
    return all(stock[c].available == want.available(c) for c in CODES)


async def test_a_wiped_redis_stops_every_stock_call_and_says_so(
    kafka_settings: KafkaSettings, sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedRedis() as server:
        harness = Harness(kafka_settings, sandbox, server.url)
        before = [count(code, 50) for code in CODES]
        harness.produce(before)
        async with running(harness) as (_, base, task):
            await converged(harness, before, CODES)
            shown = taobao_quantities(sandbox)
            writes = stock_writes(sandbox)

            client = Redis.from_url(server.url)
            await client.flushall()
            await client.aclose()
            harness.produce(orders(0, 30))

            alerts = await harness.alerts(1, timeout_s=20, settle=False)
            lost = [a for a in alerts if a.kind is AlertKind.LEDGER_LOST]
            assert len(lost) == 1, alerts
            assert "restore the Redis backup" in lost[0].message
            checks = await ready_is(base, False, timeout_s=10)
            assert not checks["ledger"]["ok"] and "LEDGER_LOST" in checks["ledger"]["detail"]
            async with httpx.AsyncClient(timeout=5) as http:
                text = (await http.get(f"{base}/metrics")).text
            assert metric(text, "sync_ledger_lost") == 1

            await asyncio.sleep(3)  # the events after the wipe are there to be applied
            assert stock_writes(sandbox) == writes  # not one stock call from an empty ledger
            assert taobao_quantities(sandbox) == shown
            assert not task.done()  # waiting for the operator, not crash-looping
            results = await harness.results(len(before), timeout_s=5)
            assert len(results) == len(before)  # nothing applied to the empty ledger
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "LEDGER_LOST" in r.msg]
    assert len(errors) == 1


async def test_a_redis_rolled_back_to_a_snapshot_is_caught_up_exactly(
    kafka_settings: KafkaSettings, sandbox: SandboxServer, tmp_path: Path
) -> None:
    """What a failover to a replica that lagged, or a restore from an older backup, does:
    Redis comes back holding less than Kafka's committed offsets say was applied."""
    port = free_port()
    server = EmbeddedRedis(port=port, data_dir=tmp_path).start()
    try:
        harness = Harness(kafka_settings, sandbox, server.url)
        first = [count(code, 100) for code in CODES] + orders(0, 30)
        second, third = orders(30, 30), orders(60, 15)
        harness.produce(first)
        async with running(harness) as (_, _, task):
            await harness.results(len(first), timeout_s=60, settle=False)
            await asyncio.sleep(0.5)  # committed
            client = Redis.from_url(server.url)
            await client.save()  # the snapshot the replica (or the backup) holds
            await client.aclose()
            harness.produce(second)
            await harness.results(len(first) + len(second), timeout_s=60, settle=False)
            await asyncio.sleep(0.5)  # committed past the snapshot
            server.kill()
            server = EmbeddedRedis(port=port, data_dir=tmp_path).start()
            harness.produce(third)

            everything = first + second + third
            await wait_for(lambda: ledger_matches(harness, everything), timeout_s=60)
            await converged(harness, everything, CODES)
            alerts = await harness.alerts(1, timeout_s=10, settle=False)
            assert AlertKind.LEDGER_BEHIND in {a.kind for a in alerts}
            assert not task.done()
        results = await harness.results(len(everything), timeout_s=10)
        applied = {r.event_id for r in results if r.status is ResultStatus.APPLIED}
        assert applied == {e.event_id for e in everything}  # nothing lost
    finally:
        server.stop()


async def test_redis_restarted_under_load_and_during_pushes_loses_and_doubles_nothing(
    kafka_settings: KafkaSettings, sandbox: SandboxServer, tmp_path: Path
) -> None:
    port = free_port()

    def durable() -> EmbeddedRedis:
        return EmbeddedRedis(port=port, appendonly=True, data_dir=tmp_path)

    server = durable().start()
    try:
        harness = Harness(kafka_settings, sandbox, server.url)
        events = [count(code, 5_000) for code in CODES] + orders(0, 1_500)
        # Slow stock calls: a push is in flight whenever Redis dies.
        set_faults(sandbox, {"latency_ms": 150})
        harness.produce(events)
        async with running(harness) as (_, _, task):
            # SIGKILL, SIGTERM (a graceful restart), SIGKILL, down for longer each time.
            for graceful, down_s in ((False, 0.5), (True, 1.5), (False, 3.0)):
                await asyncio.sleep(1.0)
                server.stop() if graceful else server.kill()
                await asyncio.sleep(down_s)
                assert not task.done()
                server = durable().start()
            set_faults(sandbox, {})
            await wait_for(lambda: ledger_matches(harness, events), timeout_s=90)
            await converged(harness, events, CODES)
            assert not task.done()
        results = await harness.results(len(events), timeout_s=30)
        applied = Counter(r.event_id for r in results if r.status is ResultStatus.APPLIED)
        assert set(applied) == {e.event_id for e in events}
    finally:
        server.stop()


async def test_a_start_with_redis_down_waits_for_it(
    kafka_settings: KafkaSettings, sandbox: SandboxServer, tmp_path: Path
) -> None:
    redis_port, http_port = free_port(), free_port()
    harness = Harness(kafka_settings, sandbox, f"redis://127.0.0.1:{redis_port}/0")
    env = connector_env(harness.settings())
    env["CONNECTOR_HTTP_PORT"] = str(http_port)
    env["CONNECTOR_LOG_FORMAT"] = "text"
    base = f"http://127.0.0.1:{http_port}"
    process = subprocess.Popen(  # noqa: ASYNC220 (a real process; we await nothing meanwhile)
        [sys.executable, "-m", "connector", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server: EmbeddedRedis | None = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, checks = await readiness(base)
                if "startup" in checks and "Redis" in checks["startup"]["detail"]:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "the connector exited instead of waiting for Redis"
            assert time.monotonic() < deadline, "no /readyz saying it waits for Redis"
            await asyncio.sleep(0.2)
        assert status == 503
        await asyncio.sleep(2)
        assert process.poll() is None

        server = EmbeddedRedis(port=redis_port, data_dir=tmp_path).start()
        await ready_is(base, True, timeout_s=60)
        harness.produce([count("MUG-WHITE", 7)])
        await harness.results(1, timeout_s=30, settle=False)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=40)
        if server is not None:
            server.stop()
    assert process.returncode == 0, output.decode()
    assert b"waiting for Redis" in output
