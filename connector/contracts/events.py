"""The domain's input events as typed values: pure, no I/O.

Decoding (``connector.contracts.codec``) turns Avro records into these; validation happens there, so
a value of these types is always well formed: non-empty ids and codes, positive
quantities for movements, a signed non-zero one for adjustments, a non-negative count for
stocktakes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

__all__ = [
    "OrderEvent",
    "OrderLine",
    "OrderType",
    "StockEvent",
    "WarehouseEvent",
    "WarehouseType",
    "line_key",
]


class OrderType(StrEnum):
    CREATED = "created"  # reserve the line quantities
    CANCELLED = "cancelled"  # release exactly what the order reserved, once
    SHIPPED = "shipped"  # on_hand -n at the shipping warehouse, reserved -n
    REFUNDED = "refunded"  # no stock change: returned goods arrive as a warehouse return


class WarehouseType(StrEnum):
    RECEIVED = "received"  # on_hand +n
    RETURNED = "returned"  # on_hand +n
    ADJUSTED = "adjusted"  # on_hand ±n (signed quantity)
    DAMAGED = "damaged"  # on_hand -n
    STOCKTAKE = "stocktake"  # on_hand := n as of occurred_at; older movements stop applying


# The events are built for every consumed message: NamedTuples, immutable like frozen
# dataclasses but about 2.5 times cheaper to build.


class OrderLine(NamedTuple):
    sku: str  # the merchant's SKU code (商家编码, Taobao's outer_id)
    quantity: int  # > 0
    warehouse: str | None = None  # the shipping warehouse, where known
    # The Taobao listing (``<num_iid>:<sku_id>``) a Taobao-side order sold this line on:
    # Taobao deducted it there itself (set by the message-service bridge).
    listing: str | None = None


class OrderEvent(NamedTuple):
    event_id: str
    order_id: str
    channel: str  # taobao, jd, web, pos, wholesale, …
    shop: str
    type: OrderType
    lines: tuple[OrderLine, ...]
    occurred_at_ms: int


class WarehouseEvent(NamedTuple):
    event_id: str
    warehouse: str
    type: WarehouseType
    sku: str
    quantity: int
    occurred_at_ms: int


StockEvent = OrderEvent | WarehouseEvent


def line_key(order_id: str, sku: str, order_type: OrderType) -> str:
    """The de-duplication key of one order line: order id + SKU + event type."""
    return f"{order_id}|{sku}|{order_type.value}"
