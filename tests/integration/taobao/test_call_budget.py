"""The call budget shared through Redis by several client instances (replicas)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from connector.errors import TaobaoCallLimited
from connector.keys import Keys
from connector.sandbox.server import SandboxServer
from connector.taobao.budget import BudgetPolicy, RedisCallBudget
from connector.taobao.client import TopClient, build_http_client
from connector.telemetry import TaobaoMetrics, get_tracer
from tests.conftest import SandboxFactory, taobao_settings
from tests.helpers import admin, api_calls, set_faults

pytestmark = pytest.mark.integration

MUG = 600000000003
MakeClient = Callable[..., TopClient]


def arrival_times(sandbox: SandboxServer) -> list[float]:
    return sorted(datetime.fromisoformat(c["time"]).timestamp() for c in api_calls(sandbox))


def max_in_window(times: list[float], window_s: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_two_replicas_together_stay_within_the_qps(
    sandbox_factory: SandboxFactory, make_client: MakeClient
) -> None:
    qps = 20
    # The sandbox bans above the same QPS: a single code 7 would mean we overspent.
    sandbox = sandbox_factory(qps=qps, ban_s=5)
    replicas = [make_client(sandbox, qps=qps, burst=1) for _ in range(2)]

    started = time.monotonic()
    await asyncio.gather(
        *(replica.update_quantity(MUG, n) for replica in replicas for n in range(1, 31))
    )
    elapsed = time.monotonic() - started

    calls = api_calls(sandbox)
    assert len(calls) == 60
    assert all(c["code"] is None for c in calls)  # never limited by the platform
    assert elapsed >= (60 - 1) / qps * 0.95
    # Arrivals are stamped by the gateway, after delivery jitter: a few calls of slack.
    # A budget not shared between the replicas would show about twice the QPS here.
    assert max_in_window(arrival_times(sandbox), 1.0) <= qps + 3


async def test_a_ban_seen_by_one_replica_pauses_the_other(
    sandbox_factory: SandboxFactory, make_client: MakeClient
) -> None:
    # A 3 s ban: the checks below need it to outlast a few admin calls with room to spare.
    sandbox = sandbox_factory(ban_s=3)
    banned, other = make_client(sandbox, deadline_s=1.0), make_client(sandbox, deadline_s=0.5)
    set_faults(sandbox, {"error_rates": {"7": 1.0}})
    with pytest.raises(TaobaoCallLimited) as info:
        await banned.update_quantity(MUG, 1)
    assert info.value.retry_after_s >= 1
    set_faults(sandbox, {})

    # The other replica does not call at all while the ban lasts longer than its deadline …
    with pytest.raises(TaobaoCallLimited):
        await other.update_quantity(MUG, 2)
    assert len(api_calls(sandbox)) == 1

    # … and with a longer deadline it waits the ban out, then calls.
    patient = make_client(sandbox, deadline_s=10.0)
    started = time.monotonic()
    await patient.update_quantity(MUG, 3)
    assert time.monotonic() - started >= 0.5
    assert [c["code"] for c in api_calls(sandbox)] == [7, None]


@pytest.fixture
async def observed_client(
    sandbox: SandboxServer, redis: Redis, keys: Keys
) -> AsyncIterator[tuple[TopClient, InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    # 2 per second: a wait stays visible even when the previous call was slow (a loaded CI).
    settings = taobao_settings(sandbox, qps=2, burst=1)
    async with build_http_client(settings) as http:
        client = TopClient.from_settings(
            settings,
            redis=redis,
            keys=keys,
            http=http,
            tracer=get_tracer(tracer_provider),
            metrics=TaobaoMetrics.create(MeterProvider(metric_readers=[reader])),
        )
        yield client, spans, reader
    tracer_provider.shutdown()


async def test_waiting_for_the_budget_is_visible(
    observed_client: tuple[TopClient, InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    client, spans, reader = observed_client

    for n in range(3):
        await client.update_quantity(MUG, n + 1)

    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["taobao taobao.item.quantity.update"] * 3
    waits = [s.attributes["taobao.budget_wait_s"] for s in finished if s.attributes]
    assert waits[0] == 0
    assert all(0.25 <= w <= 0.5 for w in waits[1:])  # paced at 2 per second
    assert all(s.attributes and s.attributes["taobao.request_id"] for s in finished)

    data = reader.get_metrics_data()
    assert data is not None
    metrics = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    wait_points = list(metrics["taobao.budget.wait"].data.data_points)
    assert wait_points[0].count == 3
    assert wait_points[0].sum >= 0.5
    calls = list(metrics["taobao.calls"].data.data_points)
    assert calls[0].attributes == {"method": "taobao.item.quantity.update", "outcome": "ok"}
    assert calls[0].value == 3


async def _wipe(redis: Redis, keys: Keys) -> None:
    """What a FLUSHALL or a failover to an empty replica does to one app's budget."""
    async for key in redis.scan_iter(match=f"{keys.prefix}:*"):
        await redis.delete(key)


async def test_a_wiped_budget_grants_nothing_until_the_earlier_reservations_are_past(
    redis: Redis, keys: Keys
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = BudgetPolicy(qps=10)
    replica = RedisCallBudget(redis, keys, "app", policy, sleep=sleep, reach_s=2.0)
    for _ in range(5):  # reservations reaching up to 0.4 s ahead
        await replica.acquire("taobao.item.quantity.update", max_wait_s=2.0)
    assert max(slept) == pytest.approx(0.4, abs=0.05)

    await _wipe(redis, keys)
    slept.clear()
    # Calls other replicas reserved before the wipe are unknown: nothing for as long as a
    # reservation can reach (reach_s) and a burst's span (0.1 s), then the configured rate.
    await replica.acquire("taobao.item.quantity.update", max_wait_s=3.0)
    assert slept[-1] == pytest.approx(2.1, abs=0.05)
    # A replica that never called keeps to the same floor: it is in Redis.
    other = RedisCallBudget(redis, keys, "app", policy, sleep=sleep, reach_s=2.0)
    await other.acquire("taobao.item.quantity.update", max_wait_s=3.0)
    assert slept[-1] == pytest.approx(2.2, abs=0.05)
    with pytest.raises(TaobaoCallLimited):
        await other.acquire("taobao.item.quantity.update", max_wait_s=1.0)


async def test_a_first_reservation_ever_is_not_held_back(redis: Redis, keys: Keys) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    budget = RedisCallBudget(redis, keys, "app", BudgetPolicy(qps=10), sleep=sleep)
    assert await budget.acquire("m", max_wait_s=30.0) == 0.0
    assert slept == []


async def test_a_replica_that_only_ever_waited_still_holds_back_after_a_wipe(
    redis: Redis, keys: Keys
) -> None:
    """It called (and was told to wait) before: the epoch it saw is gone, so it is a wipe,
    not a first start, whichever replica calls first afterwards."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = BudgetPolicy(qps=10)
    busy = RedisCallBudget(redis, keys, "app", policy, sleep=sleep)
    for _ in range(3):
        await busy.acquire("m", max_wait_s=1.0)
    waiter = RedisCallBudget(redis, keys, "app", policy, sleep=sleep)
    with pytest.raises(TaobaoCallLimited):
        await waiter.acquire("m", max_wait_s=0.0)  # over budget: nothing reserved
    await _wipe(redis, keys)
    with pytest.raises(TaobaoCallLimited):
        await waiter.acquire("m", max_wait_s=0.5)


async def test_a_ban_seen_holds_when_redis_loses_it(redis: Redis, keys: Keys) -> None:
    seen = RedisCallBudget(redis, keys, "app", BudgetPolicy(qps=10))
    await seen.ban(30)
    await _wipe(redis, keys)

    assert await seen.ban_remaining_s() == pytest.approx(30, abs=1)
    with pytest.raises(TaobaoCallLimited, match="banned"):
        await seen.acquire("m", max_wait_s=0.1)


async def test_the_daily_quota_is_counted_across_replicas_and_never_exceeded(
    sandbox_factory: SandboxFactory, make_client: MakeClient
) -> None:
    sandbox = sandbox_factory(daily_quota=30)
    first, second = make_client(sandbox, daily_quota=30), make_client(sandbox, daily_quota=30)
    # Reads that can wait stop at 90 % of the quota, keeping the rest for stock updates.
    for i in range(27):
        await (first if i % 2 else second).items_by_outer_ids(["MUG-WHITE"])
    with pytest.raises(TaobaoCallLimited, match="reads wait for midnight") as info:
        await first.items_by_outer_ids(["MUG-WHITE"])
    assert 0 < info.value.retry_after_s <= 86_400
    for i in range(3):
        await (first if i % 2 else second).update_quantity(MUG, 50 + i)
    with pytest.raises(TaobaoCallLimited, match="spent until midnight China time"):
        await second.update_quantity(MUG, 60)
    # The sandbox counted exactly the calls the connector made: none was refused there.
    state = admin(sandbox, "GET", "/sandbox/state")["daily_quota"]
    assert state == {"limit": 30, "used_today": 30}
    assert all(c["code"] is None for c in api_calls(sandbox))


async def test_a_ban_of_one_api_waits_on_that_api_only(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox, deadline_s=1.0)
    ban = {"seconds": 30, "scope": "app-api", "method": "taobao.items.custom.get"}
    admin(sandbox, "POST", "/sandbox/ban", ban)
    with pytest.raises(TaobaoCallLimited):
        await client.items_by_outer_ids(["MUG-WHITE"])
    refused = len(api_calls(sandbox))
    with pytest.raises(TaobaoCallLimited):  # remembered: not sent again
        await client.items_by_outer_ids(["MUG-WHITE"])
    assert len(api_calls(sandbox)) == refused
    # Every other API goes on, and the app is not banned.
    assert (await client.get_item(MUG)).num_iid == MUG
    assert await client.ban_remaining_s() == 0


async def test_a_lost_daily_count_is_restored_from_what_the_replica_saw(
    sandbox_factory: SandboxFactory, make_client: MakeClient, redis: Redis, keys: Keys
) -> None:
    sandbox = sandbox_factory(daily_quota=10)
    client = make_client(sandbox, daily_quota=8)
    for _ in range(6):
        await client.get_item(MUG)
    # Redis loses the budget's state (a failover to an empty replica): the count with it.
    await redis.delete(
        *await redis.keys(f"{keys.prefix}:*budget*"), *await redis.keys(f"{keys.prefix}:*quota*")
    )
    with pytest.raises(TaobaoCallLimited):  # the budget resumes carefully (no call yet)
        await client.get_item(MUG)
    # The count came back as this replica last saw it, not from zero.
    counts = await redis.keys(f"{keys.prefix}:*quota*")
    assert [int(await redis.get(k)) for k in counts] == [6]
    assert client.quota().used == 6
