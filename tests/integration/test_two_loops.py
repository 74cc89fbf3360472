"""Ingest never waits for Taobao: bans, slow gateways and two replicas, end to end.

Real broker, real Redis-compatible server, the sandbox over HTTP. These are the acceptance
tests of the two-loop architecture: a ban or a slow gateway pauses only the projection,
while results keep coming and readiness stays green; when Taobao answers again it converges.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import datetime

import pytest

from connector.contracts.events import OrderType
from connector.contracts.records import AlertKind, TaobaoState
from connector.sandbox.server import SandboxServer
from connector.service.health import Readiness
from connector.settings import KafkaSettings
from tests.helpers import admin, api_calls, set_faults
from tests.pipeline_harness import Harness, converged, count, order, wait_for

pytestmark = pytest.mark.integration

C = OrderType.CREATED
CODES = ["MUG-WHITE", "TSHIRT-RED-M", "TSHIRT-RED-L"]
OPENING = [count("MUG-WHITE", 50), count("TSHIRT-RED-M", 40), count("TSHIRT-RED-L", 30)]


@pytest.fixture
def harness(kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str) -> Harness:
    return Harness(kafka_settings, sandbox, redis_url)


def _at(call: dict[str, object], field: str) -> float:
    """When the gateway received (``received``) or answered (``time``) a call."""
    return datetime.fromisoformat(str(call[field])).timestamp()


async def test_a_long_ban_pauses_only_the_projection(
    harness: Harness, sandbox: SandboxServer
) -> None:
    ban_s = 60
    orders = [order(f"b{i}", f"b{i}", C, (CODES[i % 3], 1), at=100 + i) for i in range(30)]
    async with harness.running() as connector:
        readiness = Readiness(connector, stall_timeout_s=120)
        harness.produce(OPENING)
        await converged(harness, OPENING, CODES)
        admin(sandbox, "POST", "/sandbox/ban", {"seconds": ban_s})
        banned_at = time.time()

        harness.produce(orders[:10])  # the projection's next push hears code 7
        await wait_for(lambda: connector.projection_loop.state.ban_remaining_s > 30, what="ban")
        produced_at = time.monotonic()
        harness.produce(orders[10:])  # during the ban: ingest goes on at full speed
        results = await harness.results(len(OPENING) + len(orders), settle=False)
        results_took_s = time.monotonic() - produced_at
        checks = await readiness.checks()
        # The projection's gauges are read about once a second, beside its passes.
        await wait_for(lambda: readiness.projection()["pending_skus"] >= 1, timeout_s=5)
        projection = readiness.projection()

        ban_ends = banned_at + ban_s
        await wait_for(lambda: time.time() > ban_ends, timeout_s=ban_s + 5, what="ban end")
        converge_started = time.monotonic()
        await converged(harness, OPENING + orders, CODES)
        converge_s = time.monotonic() - converge_started
        alerts = await harness.alerts(1)

    assert results_took_s < 10, f"results took {results_took_s:.1f}s during the ban"
    assert {r.event_id for r in results} >= {o.event_id for o in orders}
    assert all(c.ok for c in checks), checks  # /readyz stays 200
    assert projection["state"].startswith("banned")
    assert projection["ban_remaining_s"] > 0
    assert projection["pending_skus"] >= 1
    calls = api_calls(sandbox)
    # Pushes of other items sent concurrently with the first one (SYNC_PUSH_CONCURRENCY) may
    # still arrive as its code 7 comes back; after that, nothing until the ban ends.
    first_answer = min(_at(c, "time") for c in calls if c["code"] == 7)
    in_flight = [c for c in calls if first_answer < _at(c, "received") < first_answer + 0.2]
    during = [c for c in calls if first_answer + 0.2 <= _at(c, "received") < ban_ends - 0.5]
    assert during == [], f"{len(during)} calls reached Taobao during the ban"
    assert len(in_flight) < 4 and all(c["code"] == 7 for c in in_flight)
    assert converge_s < 10, f"Taobao took {converge_s:.1f}s to converge after the ban"
    assert AlertKind.CALL_LIMITED in {a.kind for a in alerts}


async def test_a_slow_gateway_does_not_slow_ingest(
    harness: Harness, sandbox: SandboxServer
) -> None:
    async with harness.running(taobao={"timeout_s": 5.0, "deadline_s": 30.0}) as connector:
        harness.produce(OPENING)
        await converged(harness, OPENING, CODES)
        set_faults(sandbox, {"latency_ms": 2500})
        orders = [order(f"s{i}", f"s{i}", C, (CODES[i % 3], 1), at=100 + i) for i in range(60)]
        produced_at = time.monotonic()
        harness.produce(orders)
        results = await harness.results(len(OPENING) + len(orders), settle=False)
        results_took_s = time.monotonic() - produced_at
        pending_then = connector.projection_loop.state.items_pushed
        await converged(harness, OPENING + orders, CODES)
        set_faults(sandbox, {})

    # Every result came while the projection was still waiting on 2.5 s calls.
    assert results_took_s < 2.5, f"results took {results_took_s:.1f}s behind a slow gateway"
    assert {r.event_id for r in results} >= {o.event_id for o in orders}
    fresh = [r for r in results if r.event_id.startswith("s")]
    assert any(s.taobao_state is TaobaoState.PENDING for r in fresh for s in r.skus)
    assert pending_then >= 1  # the projection was at work meanwhile, not idle


async def test_two_replicas_share_the_items_and_never_push_an_older_version(
    harness: Harness, sandbox: SandboxServer
) -> None:
    # Three items, two replicas, one consumer group and one ledger: each item is pushed by
    # one replica at a time (the lease), each push reads the ledger after taking it.
    events = [*OPENING]
    events += [order(f"r{i}", f"r{i}", C, (CODES[i % 3], 1), at=100 + i) for i in range(90)]
    harness.produce(events[:3])
    async with harness.running() as one, harness.running() as two:
        await converged(harness, events[:3], CODES)
        for start in range(3, len(events), 15):
            harness.produce(events[start : start + 15])
            await asyncio.sleep(0.05)
        await converged(harness, events, CODES)
        await wait_for(lambda: _no_pending(one), what="the pending set to empty")
        pushes = await harness.pushes(1)
        pushed_by = (one.projection_loop.state.items_pushed, two.projection_loop.state.items_pushed)

    assert sum(pushed_by) == len(pushes)
    versions: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for push in pushes:
        for sku in push.skus:
            if sku.confirmed and sku.version is not None:
                versions[sku.sku].append((push.pushed_at_ms, sku.version))
    for code, seen in versions.items():
        in_time = [v for _, v in sorted(seen)]
        assert in_time == sorted(in_time), f"{code}: an older version was pushed after a newer"


async def _no_pending(connector: object) -> bool:
    return bool(await connector.ledger.pending_count() == 0)  # type: ignore[attr-defined]
