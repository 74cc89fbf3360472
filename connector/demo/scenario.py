"""A realistic day of events for the demo and ``taobao-connector produce --sample``: pure.

Codes match the sandbox's demo shop (``connector/sandbox/demo_catalog.json``), plus one
code that is not on Taobao at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    StockEvent,
    WarehouseEvent,
    WarehouseType,
)

__all__ = ["POISON", "UNMAPPED_CODE", "Step", "TaobaoSale", "demo_scenario"]

WAREHOUSE: Final = "WH-SHANGHAI"
SHIRT, MUG, RED_M = 600000000001, 600000000003, 700000000011  # the sandbox's demo shop
UNMAPPED_CODE: Final = "SOCKS-GREY"
POISON: Final = b"\x00\x00\x00\x00\x07not avro at all"

OPENING: Final = {
    "TSHIRT-RED-M": 30,
    "TSHIRT-RED-L": 12,
    "TSHIRT-BLUE-M": 8,
    "SNEAKER-42": 3,
    "SNEAKER-43": 2,
    "MUG-WHITE": 50,
    "NOTEBOOK-A5": 15,
    "HEADPHONES-PRE": 30,
    "JACKET-BLACK-M": 12,
    "JACKET-BLACK-L": 9,
    UNMAPPED_CODE: 40,
}


@dataclass(frozen=True, slots=True)
class TaobaoSale:
    """A buyer's order placed on Taobao itself (the sandbox), then moved on by ``then``
    (``pay``, ``close``, ``ship``, ``refund``): the bridge brings it in through TMC."""

    num_iid: int
    sku_id: int | None
    quantity: int
    then: tuple[str, ...] = ()

    @property
    def events(self) -> int:
        """The order events the bridge derives from it (created, and cancelled if closed)."""
        return 2 if "close" in self.then else 1


@dataclass(frozen=True, slots=True)
class Step:
    title: str
    events: tuple[StockEvent | bytes, ...]  # bytes: a poison message for the orders topic
    taobao: tuple[TaobaoSale, ...] = ()  # sales made on Taobao itself


class _Clock:
    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def tick(self, ms: int = 1000) -> int:
        self.ms += ms
        return self.ms


def _order(
    clock: _Clock, order_id: str, kind: OrderType, channel: str, *lines: tuple[str, int]
) -> OrderEvent:
    return OrderEvent(
        event_id=f"{order_id}-{kind.value}",
        order_id=order_id,
        channel=channel,
        shop="demo-shop",
        type=kind,
        lines=tuple(OrderLine(sku, qty, WAREHOUSE) for sku, qty in lines),
        occurred_at_ms=clock.tick(),
    )


def _move(clock: _Clock, event_id: str, kind: WarehouseType, sku: str, qty: int) -> WarehouseEvent:
    return WarehouseEvent(event_id, WAREHOUSE, kind, sku, qty, clock.tick())


def demo_scenario(start_ms: int) -> list[Step]:
    """The demo's story, in steps; event times start at ``start_ms`` and go forward."""
    c = _Clock(start_ms)
    created, cancelled, shipped = OrderType.CREATED, OrderType.CANCELLED, OrderType.SHIPPED
    opening = tuple(
        _move(c, f"count-{sku}", WarehouseType.STOCKTAKE, sku, qty) for sku, qty in OPENING.items()
    )
    orders = (
        _order(c, "TB-1001", created, "taobao", ("TSHIRT-RED-M", 2), ("MUG-WHITE", 1)),
        _order(c, "JD-2001", created, "jd", ("TSHIRT-RED-M", 1), ("TSHIRT-BLUE-M", 3)),
        _order(c, "WEB-3001", created, "web", ("MUG-WHITE", 4)),
        _order(c, "POS-4001", created, "pos", ("HEADPHONES-PRE", 2)),
        _order(c, "TB-1002", created, "taobao", ("TSHIRT-RED-L", 1), (UNMAPPED_CODE, 2)),
    )
    flash = tuple(
        _order(c, f"TB-FLASH-{n}", created, "taobao", (sku, 1))
        for n, sku in enumerate(["SNEAKER-42"] * 3 + ["SNEAKER-43"] * 3, start=1)
    )
    follow_up = (
        _order(c, "JD-2001", cancelled, "jd", ("TSHIRT-RED-M", 1), ("TSHIRT-BLUE-M", 3)),
        _order(c, "TB-1001", shipped, "taobao", ("TSHIRT-RED-M", 2), ("MUG-WHITE", 1)),
        _order(c, "TB-FLASH-6", cancelled, "taobao", ("SNEAKER-43", 1)),
    )
    restock = (
        _move(c, "grn-7001", WarehouseType.RECEIVED, "SNEAKER-43", 10),
        _move(c, "grn-7002", WarehouseType.RECEIVED, "JACKET-BLACK-M", 5),
        _move(c, "dmg-7003", WarehouseType.DAMAGED, "TSHIRT-RED-L", 1),
        _move(c, "count-MUG-2", WarehouseType.STOCKTAKE, "MUG-WHITE", 44),
    )
    return [
        Step("opening stocktake: 11 merchant codes counted in the warehouse", opening),
        Step("orders from Taobao, JD, the web shop and a store POS", orders),
        Step("flash sale: 6 sneaker orders for 5 pairs (one oversold)", flash),
        Step(
            "Taobao sells on its own: 2 mugs, 1 mug the buyer never pays for (closed), a red "
            "M T-shirt paid later (付款减库存); Taobao deducts first, TMC brings them in",
            (),
            (
                TaobaoSale(MUG, None, 2),
                TaobaoSale(MUG, None, 1, ("close",)),
                TaobaoSale(SHIRT, RED_M, 1, ("pay",)),
            ),
        ),
        Step("a cancel, a shipment, a cancelled flash-sale order", follow_up),
        Step("restock, damage and a recount of the mugs", restock),
        Step("redelivery: the orders and the flash sale arrive a second time", orders + flash),
        Step("a poison message on the orders topic", (POISON,)),
    ]
