"""Pushing the ledger to Taobao: the hard cases, against real Redis and the sandbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    WarehouseEvent,
    WarehouseType,
)
from connector.contracts.records import AlertKind, TaobaoState
from connector.keys import Keys
from connector.ledger.ledger import Ledger
from connector.push.mapping import MappingCache
from connector.push.outcomes import Transition
from connector.push.projection import TaobaoProjection
from connector.push.reporting import alerts_for_push
from connector.sandbox.server import SandboxServer
from connector.settings import SyncSettings
from connector.taobao.client import TopClient
from tests.helpers import admin, state_item
from tests.pipeline_harness import wait_for

pytestmark = pytest.mark.integration

MakeClient = Callable[..., TopClient]
MUG = 600000000003
DUO_A, DUO_B = 610000000001, 610000000002

DUO_CATALOG: dict[str, Any] = {
    "items": [
        {"num_iid": DUO_A, "title": "Mug (shop A)", "outer_id": "DUO", "num": 10,
         "approve_status": "onsale", "price": "9.00"},
        {"num_iid": DUO_B, "title": "Mug (campaign listing)", "outer_id": "DUO", "num": 10,
         "approve_status": "onsale", "price": "9.00", "lock": "campaign"},
    ]
}  # fmt: skip


class Rig:
    def __init__(self, redis: Redis, keys: Keys, client: TopClient, **sync: Any) -> None:
        self.ledger = Ledger(redis, keys, dedupe_ttl_s=3600, default_warehouse="WH")
        settings = SyncSettings.model_validate({"push_lease_s": 5, **sync})
        self.mapping = MappingCache(redis, keys, client, ttl_s=60, unmapped_ttl_s=60)
        self.projection = TaobaoProjection(
            client=client,
            ledger=self.ledger,
            mapping=self.mapping,
            redis=redis,
            keys=keys,
            settings=settings,
            own_delist_slack_ms=0,
        )
        self.events = 0

    async def count(self, sku: str, quantity: int) -> None:
        self.events += 1
        event = WarehouseEvent(
            f"c{self.events}", "WH", WarehouseType.STOCKTAKE, sku, quantity, 10**12 + self.events
        )
        await self.ledger.apply([event])


@pytest.fixture(autouse=True)
async def marker(redis: Redis, keys: Keys) -> None:
    """The ledger's marker, as a connector creates it at its first start."""
    await redis.hset(keys.marker, "id", "test")


@pytest.fixture
def rig(redis: Redis, keys: Keys, sandbox: SandboxServer, make_client: MakeClient) -> Rig:
    return Rig(redis, keys, make_client(sandbox))


async def test_a_code_on_two_items_is_confirmed_only_when_both_took_it(
    rig: Rig, sandbox: SandboxServer
) -> None:
    admin(sandbox, "POST", "/sandbox/reset", {"catalog": DUO_CATALOG})
    await rig.count("DUO", 4)  # a decrease: the campaign listing refuses it

    report = await rig.projection.push(["DUO"])

    assert state_item(sandbox, DUO_A)["num"] == 4
    assert state_item(sandbox, DUO_B)["num"] == 10
    assert report.skus["DUO"].state is TaobaoState.FAILED
    # Still pending (rescheduled), so it is retried and never silently dropped.
    assert await rig.ledger.pending_count() == 1
    stock = await rig.ledger.stock(["DUO"])
    assert stock["DUO"].pushed == 0


async def test_a_push_that_lost_its_lease_confirms_nothing(
    rig: Rig, sandbox: SandboxServer, redis: Redis, keys: Keys
) -> None:
    admin(sandbox, "POST", "/sandbox/faults", {"latency_ms": 800})
    await rig.count("MUG-WHITE", 7)
    rig.projection._settings = rig.projection._settings.model_copy(update={"push_lease_s": 0.3})

    async def steal() -> None:
        # Once we hold the lease (after the mapping lookup), it "expires" under the slow
        # update call and another replica takes it.
        await wait_for(lambda: redis.exists(keys.push_lease(MUG)), timeout_s=10, what="lease")
        await redis.set(keys.push_lease(MUG), "someone-else", px=5000)

    report, _ = await asyncio.gather(rig.projection.push(["MUG-WHITE"]), steal())

    # The lease went while the item was being read (800 ms): the write was held back …
    assert state_item(sandbox, MUG)["num"] == 60
    assert report.skus["MUG-WHITE"].state is TaobaoState.PENDING  # … nothing confirmed …
    assert (await rig.ledger.stock(["MUG-WHITE"]))["MUG-WHITE"].pushed == 0
    assert await rig.ledger.due(10**13, 10) == ["MUG-WHITE"]  # … and it is pushed again


async def test_a_push_whose_lease_went_during_its_last_call_is_pushed_again(
    rig: Rig, sandbox: SandboxServer, redis: Redis, keys: Keys
) -> None:
    await rig.count("MUG-WHITE", 7)
    await rig.projection.push(["MUG-WHITE"])  # item state cached: the next push calls at once
    await rig.count("MUG-WHITE", 5)
    admin(sandbox, "POST", "/sandbox/faults", {"latency_ms": 500})
    # Another replica took the lease while our update was on its way, pushed and confirmed
    # version 2 (as far as the ledger knows): ours landed after it.

    async def steal() -> None:
        await wait_for(lambda: redis.exists(keys.push_lease(MUG)), timeout_s=10, what="lease")
        await redis.set(keys.push_lease(MUG), "someone-else", px=5000)
        await rig.ledger.confirm({"MUG-WHITE": 2})

    report, _ = await asyncio.gather(rig.projection.push(["MUG-WHITE"]), steal())

    assert report.skus["MUG-WHITE"].state is TaobaoState.PENDING
    # The ledger says version 2 is confirmed, yet the SKU is pending again: Taobao may show
    # what our late call wrote, so it gets the current figures once more.
    assert (await rig.ledger.stock(["MUG-WHITE"]))["MUG-WHITE"].pushed == 2
    assert await rig.ledger.due(10**13, 10) == ["MUG-WHITE"]


async def test_an_item_the_merchant_relisted_and_took_down_again_is_not_relisted(
    rig: Rig, sandbox: SandboxServer
) -> None:
    await rig.count("MUG-WHITE", 0)
    report = await rig.projection.push(["MUG-WHITE"])
    assert [t.kind for t in report.transitions] == [Transition.DELISTED]

    # The merchant puts it back on sale by hand, then takes it down again, later.
    admin(sandbox, "POST", f"/sandbox/items/{MUG}", {"approve_status": "onsale", "quantity": 3})
    await asyncio.sleep(1.1)  # Taobao's times have one-second resolution
    admin(sandbox, "POST", f"/sandbox/items/{MUG}", {"approve_status": "instock"})

    await rig.count("MUG-WHITE", 12)
    report = await rig.projection.push(["MUG-WHITE"])

    assert state_item(sandbox, MUG)["approve_status"] == "instock"  # left down
    assert state_item(sandbox, MUG)["num"] == 12  # stock still right
    assert report.skus["MUG-WHITE"].state is TaobaoState.HAND_DELISTED


async def test_our_own_delisting_is_relisted_on_restock(rig: Rig, sandbox: SandboxServer) -> None:
    await rig.count("MUG-WHITE", 0)
    await rig.projection.push(["MUG-WHITE"])
    await rig.count("MUG-WHITE", 5)

    report = await rig.projection.push(["MUG-WHITE"])

    assert [t.kind for t in report.transitions] == [Transition.RELISTED]
    assert state_item(sandbox, MUG)["approve_status"] == "onsale"
    assert state_item(sandbox, MUG)["num"] == 5


async def test_one_failing_item_does_not_pause_everything(rig: Rig, sandbox: SandboxServer) -> None:
    admin(sandbox, "POST", "/sandbox/reset", {"catalog": DUO_CATALOG})
    await rig.count("DUO", 4)

    report = await rig.projection.push(["DUO"])

    assert report.retry_after_s is None  # a per-item refusal is not an outage


async def test_a_ban_leaves_the_codes_it_stopped_in_their_place(
    rig: Rig, sandbox: SandboxServer
) -> None:
    await rig.count("MUG-WHITE", 5)
    await rig.count("TSHIRT-RED-M", 5)
    await rig.projection.push(["MUG-WHITE", "TSHIRT-RED-M"])  # mapping and items known
    admin(sandbox, "POST", "/sandbox/ban", {"seconds": 30})
    await rig.count("MUG-WHITE", 4)  # changed first …
    await rig.count("TSHIRT-RED-M", 3)  # … then this one

    report = await rig.projection.push(["MUG-WHITE", "TSHIRT-RED-M"])

    assert report.limited and (report.retry_after_s or 0) >= 20
    # Not put back as retries 30 s out: still due now, oldest change first, so the
    # catch-up after the ban goes in the order the changes came.
    now_ms = int(time.time() * 1000)
    assert await rig.ledger.due(now_ms, 10) == ["MUG-WHITE", "TSHIRT-RED-M"]
    assert await rig.ledger.oldest_pending_ms() is not None


async def test_a_target_below_what_unpaid_orders_hold_is_set_to_the_hold(
    rig: Rig, sandbox: SandboxServer
) -> None:
    shirt, blue = 600000000001, 700000000013  # the T-shirt deducts on payment (sub_stock 2)
    admin(sandbox, "POST", "/sandbox/orders", {"num_iid": shirt, "sku_id": blue, "quantity": 5})
    await rig.count("TSHIRT-BLUE-M", 3)  # the warehouse counts fewer than the unpaid hold

    report = await rig.projection.push(["TSHIRT-BLUE-M"])

    sku = next(s for s in state_item(sandbox, shirt)["skus"] if s["sku_id"] == blue)
    # As low as Taobao allows: the hold itself, so nothing is left for sale.
    assert (sku["quantity"], sku["with_hold_quantity"]) == (5, 5)
    assert report.skus["TSHIRT-BLUE-M"].state is TaobaoState.PENDING  # until the target goes in
    assert [t.kind for t in report.transitions] == [Transition.WITHHELD]
    alerts = alerts_for_push(report, now_ms=0)
    assert [a.kind for a in alerts] == [AlertKind.STOCK_WITHHELD]


async def test_an_ambiguous_base_is_written_again_once_taobao_goes_quiet(
    redis: Redis, keys: Keys, sandbox: SandboxServer, make_client: MakeClient
) -> None:
    rig = Rig(redis, keys, make_client(sandbox))
    rig.projection = TaobaoProjection(
        client=make_client(sandbox), ledger=rig.ledger, mapping=rig.mapping, redis=redis,
        keys=keys, settings=SyncSettings.model_validate({"push_lease_s": 5}),
        own_delist_slack_ms=0, increments=True, reanchor_quiet_s=1.0,
    )  # fmt: skip
    await rig.count("MUG-WHITE", 60)
    await rig.projection.push(["MUG-WHITE"])  # the first push: absolute, the base starts
    base = (await rig.ledger.stock(["MUG-WHITE"]))["MUG-WHITE"].bases[f"{MUG}:"]
    # A Taobao order in the very second of that write (sold on Taobao: 58 there).
    admin(sandbox, "POST", "/sandbox/orders", {"num_iid": MUG, "quantity": 2})
    tie = OrderEvent("t1", "t1", "taobao", "s", OrderType.CREATED,
                     (OrderLine("MUG-WHITE", 2, None, f"{MUG}:"),), base.absolute_ms)  # fmt: skip
    await rig.ledger.apply([tie])

    report = await rig.projection.push(["MUG-WHITE"])
    # Counted as before the write: pushed again (Taobao 56, less than the truth, never more),
    # and kept pending until Taobao's orders on it go quiet.
    assert state_item(sandbox, MUG)["num"] == 56
    assert report.skus["MUG-WHITE"].state is TaobaoState.PENDING
    await asyncio.sleep(1.1)
    report = await rig.projection.push(["MUG-WHITE"])
    assert state_item(sandbox, MUG)["num"] == 58  # re-anchored: an absolute write
    assert report.skus["MUG-WHITE"].state is TaobaoState.SYNCED
