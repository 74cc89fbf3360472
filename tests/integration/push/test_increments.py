"""Pushing by increments (the bridge on): what a failed, unknown or refused increment
leaves, against the sandbox over HTTP, a real broker and a real Redis-compatible server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connector.contracts.events import WarehouseType
from connector.errors import LedgerLost
from connector.sandbox.server import SandboxServer
from connector.service.app import Connector
from connector.settings import KafkaSettings
from tests.helpers import calls, set_faults
from tests.pipeline_harness import Harness, count, move, taobao_quantities, wait_for

pytestmark = pytest.mark.integration

MUG, SNEAKER = 600000000003, 600000000002
BRIDGE: dict[str, Any] = {"tmc_enabled": True, "tmc_poll_s": 0.05, "tmc_idle_max_s": 0.2}


@pytest.fixture
def harness(kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str) -> Harness:
    return Harness(kafka_settings, sandbox, redis_url)


async def based(connector: Connector, code: str, listing: str) -> bool:
    try:
        return listing in (await connector.ledger.stock([code]))[code].bases
    except LedgerLost:  # (the marker is written once the consumer has its partitions)
        return False


def refused(sandbox: SandboxServer) -> list[dict[str, Any]]:
    updates = calls(sandbox, "taobao.skus.quantity.update")
    return [c for c in updates if c["params"].get("type") == "2" and c["sub_code"]]


async def test_after_an_unknown_outcome_the_next_push_writes_absolutely(
    harness: Harness, sandbox: SandboxServer
) -> None:
    async with harness.running(taobao=BRIDGE) as connector:
        harness.produce([count("MUG-WHITE", 60)])
        await wait_for(lambda: based(connector, "MUG-WHITE", f"{MUG}:"), what="the base")
        # Taobao applies the increment and the answer is lost: sending it again would
        # count it twice.
        set_faults(
            sandbox, {"drop_after_apply_rate": 1.0, "methods": ["taobao.item.quantity.update"]}
        )
        harness.produce([move("r1", WarehouseType.RECEIVED, "MUG-WHITE", 5, at=10)])
        await wait_for(lambda: taobao_quantities(sandbox)["MUG-WHITE"] == 65, what="65 applied")
        await asyncio.sleep(0.5)
        assert not await based(connector, "MUG-WHITE", f"{MUG}:")  # in flight: unknown
        set_faults(sandbox, {})
        harness.produce([move("r2", WarehouseType.RECEIVED, "MUG-WHITE", 1, at=20)])
        await wait_for(lambda: taobao_quantities(sandbox)["MUG-WHITE"] == 66, what="66")
        await wait_for(lambda: based(connector, "MUG-WHITE", f"{MUG}:"), what="a new base")
        await asyncio.sleep(0.5)
        assert taobao_quantities(sandbox)["MUG-WHITE"] == 66  # never 71 or 72
    quantities = [
        c["params"].get("quantity") for c in calls(sandbox, "taobao.item.quantity.update")
    ]
    types = [c["params"].get("type") for c in calls(sandbox, "taobao.item.quantity.update")]
    assert types[-1] == "1" and quantities[-1] == "66"  # the absolute write


async def test_a_refused_increment_is_not_repeated_and_the_next_write_is_absolute(
    harness: Harness, sandbox: SandboxServer
) -> None:
    async with harness.running(taobao=BRIDGE) as connector:
        harness.produce([count("SNEAKER-42", 10), count("SNEAKER-43", 4)])
        await wait_for(
            lambda: based(connector, "SNEAKER-42", f"{SNEAKER}:700000000021"), what="the base"
        )
        set_faults(
            sandbox,
            {
                "error_rates": {"isv.item-quantity-locked": 1.0},
                "methods": ["taobao.skus.quantity.update"],
            },
        )
        harness.produce([move("r1", WarehouseType.RECEIVED, "SNEAKER-42", 3, at=10)])
        await wait_for(lambda: refused(sandbox), what="the refused increment")
        await asyncio.sleep(1.0)
        # Refused once, not hammered: the push is retried later, and absolutely.
        assert len(refused(sandbox)) == 1
        assert not await based(connector, "SNEAKER-42", f"{SNEAKER}:700000000021")
        set_faults(sandbox, {})
        # Its next change (or its retry) writes the target absolutely.
        harness.produce([move("r2", WarehouseType.RECEIVED, "SNEAKER-42", 1, at=20)])
        await wait_for(lambda: taobao_quantities(sandbox)["SNEAKER-42"] == 14, what="14")
        assert taobao_quantities(sandbox)["SNEAKER-43"] == 4
    last = calls(sandbox, "taobao.skus.quantity.update")[-1]["params"]
    assert (last["type"], last["skuid_quantities"]) == ("1", "700000000021:14")
