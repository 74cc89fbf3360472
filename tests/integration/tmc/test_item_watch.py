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
from tests.helpers import admin
from tests.integration.tmc.conftest import FAST, MUG, first_push
from tests.pipeline_harness import Harness, count, move, shelf, taobao_quantities, wait_for

pytestmark = pytest.mark.integration

SNEAKER, SNEAKER_42 = 600000000002, 700000000021


async def started(harness: Harness, connector: Connector) -> None:
    harness.produce([count("MUG-WHITE", 60)])
    await first_push(connector)
    await wait_for(lambda: admin(harness.sandbox, "GET", "/sandbox/state")["tmc"]["topics"])


async def test_a_hand_edit_is_reported_and_written_over_and_taobao_orders_are_not(
    harness: Harness, sandbox: SandboxServer
) -> None:
    async with harness.running(taobao=FAST) as connector:
        await started(harness, connector)
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
