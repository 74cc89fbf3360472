"""Changes on Taobao that neither the connector nor Taobao's own orders made: reported by
the bridge and written over (stock), or left alone (a hand delisting).

Real broker, real Redis-compatible server, the sandbox over HTTP.
"""

from __future__ import annotations

import asyncio

import pytest

from connector.contracts.events import WarehouseType
from connector.contracts.records import AlertKind
from connector.sandbox.server import SandboxServer
from connector.service.app import Connector
from connector.settings import KafkaSettings
from tests.conftest import SandboxFactory
from tests.helpers import admin
from tests.pipeline_harness import Harness, count, move, shelf, taobao_quantities, wait_for

pytestmark = pytest.mark.integration

MUG, SNEAKER, SNEAKER_42 = 600000000003, 600000000002, 700000000021
FAST = {"tmc_enabled": True, "tmc_poll_s": 0.05, "tmc_idle_max_s": 0.2}


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory) -> SandboxServer:
    return sandbox_factory(tmc_visibility_s=2.0)


@pytest.fixture
def harness(kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str) -> Harness:
    return Harness(kafka_settings, sandbox, redis_url)


async def started(harness: Harness, connector: Connector) -> None:
    harness.produce([count("MUG-WHITE", 60)])

    async def based() -> bool:
        try:
            stock = await connector.ledger.stock(["MUG-WHITE"])
        except Exception:
            return False
        return f"{MUG}:" in stock["MUG-WHITE"].bases

    await wait_for(based, what="the first push")
    await wait_for(lambda: admin(harness.sandbox, "GET", "/sandbox/state")["tmc"]["topics"])


async def test_a_hand_edit_is_reported_and_written_over_and_taobao_orders_are_not(
    harness: Harness, sandbox: SandboxServer
) -> None:
    async with harness.running(taobao=FAST) as connector:
        await started(harness, connector)
        await asyncio.sleep(1.1)  # (out of the first write's second)
        admin(sandbox, "POST", "/sandbox/orders", {"num_iid": MUG, "quantity": 2})
        admin(sandbox, "POST", f"/sandbox/items/{MUG}", {"quantity": 70})  # by hand
        # A listing the ledger knows nothing of is not the connector's to judge or set.
        admin(sandbox, "POST", f"/sandbox/items/{SNEAKER}", {"sku_quantities": {SNEAKER_42: 9}})
        alerts = await harness.alerts(1, timeout_s=30, settle=False)
        changed = [a for a in alerts if a.kind is AlertKind.TAOBAO_STOCK_CHANGED]
        assert len(changed) == 1 and changed[0].sku == "MUG-WHITE"
        assert changed[0].details["quantity"] == "70"
        # The ledger's figure goes back over the hand edit: 60 less the Taobao order.
        await wait_for(lambda: taobao_quantities(sandbox)["MUG-WHITE"] == 58, what="58 again")
        await asyncio.sleep(6)  # the order's own change is judged too: no alert for it
    alerts = await harness.alerts(1)
    assert [a.kind for a in alerts].count(AlertKind.TAOBAO_STOCK_CHANGED) == 1
    assert taobao_quantities(sandbox)["SNEAKER-42"] == 9


async def test_a_hand_delisting_is_reported_and_the_item_stays_down(
    harness: Harness, sandbox: SandboxServer
) -> None:
    async with harness.running(taobao=FAST) as connector:
        await started(harness, connector)
        admin(sandbox, "POST", f"/sandbox/items/{MUG}", {"approve_status": "instock"})
        alerts = await harness.alerts(1, timeout_s=30, settle=False)
        assert [a.kind for a in alerts] == [AlertKind.HAND_DELISTED]
        harness.produce([move("r1", WarehouseType.RECEIVED, "MUG-WHITE", 5, at=10)])
        await wait_for(lambda: taobao_quantities(sandbox)["MUG-WHITE"] == 65, what="65")
        assert shelf(sandbox, MUG) == "instock"  # stock set, never relisted
