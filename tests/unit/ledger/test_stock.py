"""The reference model of the ledger (``connector.ledger.stock``) on tables of scenarios."""

from __future__ import annotations

import itertools

import pytest

from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    StockEvent,
    WarehouseEvent,
    WarehouseType,
)
from connector.ledger.stock import LineState, canonical_order, reference_apply

W1, W2 = "W1", "W2"  # W1 is the default warehouse
Line = tuple[str, int] | tuple[str, int, str]


def order(kind: OrderType, order_id: str, at: int, *lines: Line, eid: str = "") -> OrderEvent:
    return OrderEvent(
        event_id=eid or f"{order_id}-{kind.value}",
        order_id=order_id,
        channel="web",
        shop="shop",
        type=kind,
        lines=tuple(OrderLine(*line) for line in lines),
        occurred_at_ms=at,
    )


def wh(
    kind: WarehouseType, sku: str, n: int, at: int, warehouse: str = W1, eid: str = ""
) -> WarehouseEvent:
    event_id = eid or f"{kind.value}-{sku}-{warehouse}-{at}-{n}"
    return WarehouseEvent(event_id, warehouse, kind, sku, n, at)


C, X, S, R = OrderType.CREATED, OrderType.CANCELLED, OrderType.SHIPPED, OrderType.REFUNDED
RECV, RET, ADJ, DMG, TAKE = (
    WarehouseType.RECEIVED,
    WarehouseType.RETURNED,
    WarehouseType.ADJUSTED,
    WarehouseType.DAMAGED,
    WarehouseType.STOCKTAKE,
)

# (id, events, on_hand {(sku, wh): n}, reserved {sku: n})
SCENARIOS: list[tuple[str, list[StockEvent], dict[tuple[str, str], int], dict[str, int]]] = [
    (
        "create reserves",
        [wh(RECV, "A", 10, 1), order(C, "o1", 2, ("A", 3), ("B", 1))],
        {("A", W1): 10},
        {"A": 3, "B": 1},
    ),
    (
        "cancel before create leaves a tombstone",
        [order(X, "o1", 1, ("A", 3)), order(C, "o1", 2, ("A", 3))],
        {},
        {"A": 0},
    ),
    (
        "create then cancel releases",
        [order(C, "o1", 1, ("A", 3)), order(X, "o1", 2, ("A", 99))],
        {},
        {"A": 0},
    ),
    (
        "double cancel releases once",
        [
            order(C, "o1", 1, ("A", 3)),
            order(C, "o2", 1, ("A", 2)),
            order(X, "o1", 2, ("A", 3)),
            order(X, "o1", 3, ("A", 3), eid="o1-cancelled-again"),
        ],
        {},
        {"A": 2},
    ),
    (
        "cancel of a shipped order changes nothing",
        [
            wh(RECV, "A", 10, 0),
            order(C, "o1", 1, ("A", 3)),
            order(S, "o1", 2, ("A", 3)),
            order(X, "o1", 3, ("A", 3)),
        ],
        {("A", W1): 7},
        {"A": 0},
    ),
    (
        "ship without a seen create",
        [wh(RECV, "A", 10, 0), order(S, "o1", 1, ("A", 2))],
        {("A", W1): 8},
        {"A": 0},
    ),
    (
        "ship then a late create reserves nothing",
        [order(S, "o1", 1, ("A", 2)), order(C, "o1", 2, ("A", 2))],
        {("A", W1): -2},
        {"A": 0},
    ),
    (
        "ship after cancel takes stock, releases nothing",
        [
            wh(RECV, "A", 10, 0),
            order(C, "o1", 1, ("A", 3)),
            order(X, "o1", 2, ("A", 3)),
            order(S, "o1", 3, ("A", 3)),
        ],
        {("A", W1): 7},
        {"A": 0},
    ),
    (
        "partial shipment closes the line",
        [wh(RECV, "A", 10, 0), order(C, "o1", 1, ("A", 5)), order(S, "o1", 2, ("A", 3))],
        {("A", W1): 7},
        {"A": 0},
    ),
    (
        "shipment from the line's warehouse",
        [order(C, "o1", 1, ("A", 2)), order(S, "o1", 2, ("A", 2, W2))],
        {("A", W2): -2},
        {"A": 0},
    ),
    (
        "refund changes no stock",
        [
            wh(RECV, "A", 10, 0),
            order(C, "o1", 1, ("A", 3)),
            order(S, "o1", 2, ("A", 3)),
            order(R, "o1", 3, ("A", 3)),
        ],
        {("A", W1): 7},
        {"A": 0},
    ),
    (
        "movements: received, returned, adjusted both ways, damaged",
        [
            wh(RECV, "A", 10, 1),
            wh(RET, "A", 2, 2),
            wh(ADJ, "A", -3, 3),
            wh(ADJ, "A", 1, 4),
            wh(DMG, "A", 4, 5),
        ],
        {("A", W1): 6},
        {},
    ),
    (
        "stocktake counts earlier and same-instant movements, not later ones",
        [
            wh(RECV, "A", 10, 1),
            wh(RECV, "A", 4, 3),  # at T: already in the count
            wh(TAKE, "A", 6, 3),
            wh(DMG, "A", 2, 5),  # after T: applies on top
        ],
        {("A", W1): 4},
        {},
    ),
    (
        "a later stocktake wins over an earlier one",
        [
            wh(TAKE, "A", 6, 3),
            wh(RECV, "A", 1, 5),
            wh(TAKE, "A", 9, 7),
            wh(RECV, "A", 2, 8),
        ],
        {("A", W1): 11},
        {},
    ),
    (
        "stocktakes at the same instant: the greater event id wins",
        [wh(TAKE, "A", 8, 3, eid="st-b"), wh(TAKE, "A", 5, 3, eid="st-a")],
        {("A", W1): 8},
        {},
    ),
    (
        "a stocktake is per warehouse",
        [wh(RECV, "A", 5, 1, W2), wh(TAKE, "A", 3, 2, W1), wh(RECV, "A", 1, 3, W2)],
        {("A", W1): 3, ("A", W2): 6},
        {},
    ),
    (
        "a shipment before the stocktake is counted in it but still releases",
        [
            order(C, "o1", 1, ("A", 3)),
            order(S, "o1", 2, ("A", 3)),
            wh(TAKE, "A", 10, 5),
        ],
        {("A", W1): 10},
        {"A": 0},
    ),
    (
        "oversell stays visible",
        [wh(RECV, "A", 2, 1), order(C, "o1", 2, ("A", 5))],
        {("A", W1): 2},
        {"A": 5},
    ),
]


@pytest.mark.parametrize(
    ("events", "on_hand", "reserved"),
    [pytest.param(e, o, r, id=name) for name, e, o, r in SCENARIOS],
)
def test_scenario(
    events: list[StockEvent], on_hand: dict[tuple[str, str], int], reserved: dict[str, int]
) -> None:
    state = reference_apply(events, default_warehouse=W1)
    assert {k: v for k, v in state.on_hand.items() if v or k in on_hand} == on_hand
    assert {k: v for k, v in state.reserved.items() if v or k in reserved} == reserved


@pytest.mark.parametrize(
    "events", [pytest.param(e, id=name) for name, e, _, _ in SCENARIOS if len(e) <= 5]
)
def test_any_listing_order_and_duplicates_give_the_same_state(events: list[StockEvent]) -> None:
    expected = reference_apply(events, default_warehouse=W1)
    for permutation in itertools.permutations(events):
        state = reference_apply([*permutation, permutation[0]], default_warehouse=W1)
        assert state.on_hand == expected.on_hand
        assert state.reserved == expected.reserved


def test_oversold_sku_has_negative_availability() -> None:
    state = reference_apply(
        [wh(RECV, "A", 2, 1), order(C, "o1", 2, ("A", 5))], default_warehouse=W1
    )
    assert state.available("A") == -3


def test_line_states_record_cancel_and_shipment() -> None:
    state = reference_apply(
        [order(X, "o1", 1, ("A", 1)), order(S, "o2", 1, ("B", 1)), order(C, "o3", 1, ("C", 4))],
        default_warehouse=W1,
    )
    assert state.lines[("o1", "A")].state is LineState.CANCELLED
    assert state.lines[("o2", "B")].state is LineState.SHIPPED
    assert state.lines[("o3", "C")].state is LineState.RESERVED
    assert state.lines[("o3", "C")].reserved == 4


def test_canonical_order_puts_movements_before_a_stocktake_at_the_same_instant() -> None:
    take, received = wh(TAKE, "A", 1, 5, eid="a"), wh(RECV, "A", 1, 5, eid="z")
    shipped = order(S, "o1", 5, ("A", 1), eid="zz")
    events: list[StockEvent] = [take, received, shipped]
    assert sorted(events, key=canonical_order)[-1] is take
    assert canonical_order(wh(TAKE, "A", 1, 4, eid="z")) < canonical_order(received)
