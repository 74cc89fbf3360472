"""The ledger's semantics as a pure reference model: the executable specification.

``reference_apply`` sorts events into the canonical order, drops duplicates and applies
them one by one with the plainest possible rules. The Redis ledger (``connector.ledger.ledger``)
must reach the same on-hand and reserved figures whatever order and however often the same
events arrive; the property test in ``tests/integration/test_ledger.py`` checks exactly that.

Canonical order: ``(occurred_at_ms, kind rank, event_id)``. The rank only matters at equal
timestamps, and only one tie matters: a movement at the same instant as a stocktake is
counted in that stocktake (a count "as of T" includes what happened at T), so stocktakes
rank last. Two stocktakes at the same instant are ordered by event id, so the greater id
wins, deterministically.

Rules, per order line (order id, SKU), each event type applying at most once per line:

- created: reserve the quantity, unless the line was already cancelled or shipped;
- cancelled: release what the line still reserves; otherwise leave a tombstone;
- shipped: on_hand[warehouse] -= n, and the line releases its whole remaining reservation
  (a line ships once, so nothing could release a remainder later);
- refunded: nothing.

Per (SKU, warehouse): a movement adds its signed delta; a stocktake sets the count. In
canonical order no movement ever follows a stocktake that counts it, so this model needs
no "superseded" rule: that rule exists only in the ledger, to cope with arrival order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    StockEvent,
    WarehouseEvent,
    WarehouseType,
    line_key,
)

__all__ = [
    "LineState",
    "OrderLineState",
    "StockState",
    "canonical_order",
    "movement_delta",
    "reference_apply",
]


class LineState(StrEnum):
    """Where one order line stands (the ``state:<sku>`` field of the order hash)."""

    RESERVED = "reserved"
    CANCELLED = "cancelled"  # released, or a tombstone when the cancel came first
    SHIPPED = "shipped"


@dataclass(slots=True)
class OrderLineState:
    state: LineState
    reserved: int = 0  # what this line holds in its SKU's ``reserved``


@dataclass(slots=True)
class StockState:
    """Stock after a set of events: what the ledger must agree with."""

    on_hand: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    reserved: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    lines: dict[tuple[str, str], OrderLineState] = field(default_factory=dict)

    def total_on_hand(self, sku: str) -> int:
        return sum(n for (s, _), n in self.on_hand.items() if s == sku)

    def available(self, sku: str) -> int:
        """May be negative: an oversold SKU stays visible, never clamped."""
        return self.total_on_hand(sku) - self.reserved[sku]


# Only the stocktake's rank matters (see the module docstring); the rest just fixes an order.
_RANK: dict[OrderType | WarehouseType, int] = {
    OrderType.CREATED: 0,
    OrderType.CANCELLED: 1,
    OrderType.SHIPPED: 2,
    OrderType.REFUNDED: 3,
    WarehouseType.RECEIVED: 4,
    WarehouseType.RETURNED: 4,
    WarehouseType.ADJUSTED: 4,
    WarehouseType.DAMAGED: 4,
    WarehouseType.STOCKTAKE: 5,
}


def canonical_order(event: StockEvent) -> tuple[int, int, str]:
    """Sort key: (occurred_at_ms, kind rank, event_id)."""
    return (event.occurred_at_ms, _RANK[event.type], event.event_id)


def movement_delta(event: WarehouseEvent) -> int:
    """The signed on-hand change of a warehouse movement (not of a stocktake)."""
    if event.type is WarehouseType.DAMAGED:
        return -event.quantity
    return event.quantity  # received, returned: positive; adjusted: already signed


def _order_line(state: StockState, event: OrderEvent, line: OrderLine, warehouse: str) -> None:
    key = (event.order_id, line.sku)
    current = state.lines.get(key)
    if event.type is OrderType.CREATED:
        if current is None:
            state.lines[key] = OrderLineState(LineState.RESERVED, line.quantity)
            state.reserved[line.sku] += line.quantity
    elif event.type is OrderType.CANCELLED:
        if current is None or current.state is not LineState.SHIPPED:
            released = current.reserved if current else 0
            state.reserved[line.sku] -= released
            state.lines[key] = OrderLineState(LineState.CANCELLED)
    elif event.type is OrderType.SHIPPED:
        state.on_hand[(line.sku, line.warehouse or warehouse)] -= line.quantity
        state.reserved[line.sku] -= current.reserved if current else 0
        state.lines[key] = OrderLineState(LineState.SHIPPED)


def _warehouse(state: StockState, event: WarehouseEvent) -> None:
    key = (event.sku, event.warehouse)
    if event.type is WarehouseType.STOCKTAKE:
        state.on_hand[key] = event.quantity
    else:
        state.on_hand[key] += movement_delta(event)


def _unique(events: Iterable[StockEvent]) -> Iterator[tuple[StockEvent, tuple[OrderLine, ...]]]:
    """Each event with the lines not seen before: events by id, order lines by line key."""
    seen: set[str] = set()
    for event in sorted(events, key=canonical_order):
        if isinstance(event, WarehouseEvent):
            if event.event_id not in seen:
                seen.add(event.event_id)
                yield event, ()
            continue
        fresh = tuple(
            line
            for line in event.lines
            if line_key(event.order_id, line.sku, event.type) not in seen
        )
        seen.update(line_key(event.order_id, line.sku, event.type) for line in fresh)
        yield event, fresh


def reference_apply(events: Iterable[StockEvent], *, default_warehouse: str) -> StockState:
    """Apply each distinct event once, in canonical order, to an empty ledger."""
    state = StockState()
    for event, lines in _unique(events):
        if isinstance(event, WarehouseEvent):
            _warehouse(state, event)
        else:
            for line in lines:
                _order_line(state, event, line, default_warehouse)
    return state
