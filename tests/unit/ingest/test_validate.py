"""Validation of decoded records: one test per rule, and no exception but InvalidEvent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    WarehouseEvent,
    WarehouseType,
)
from connector.errors import InvalidEvent
from connector.ingest.validate import MAX_FUTURE_MS, parse_order, parse_warehouse

NOW_MS = 1_714_521_600_000
MAX_QUANTITY = 1_000
MAX_LINES = 3
DAY_MS = 86_400_000


def order(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "evt-1",
        "order_id": "TB-1",
        "channel": "TMALL",
        "shop": "flagship",
        "type": "CREATED",
        "lines": [{"sku": "SKU-1", "quantity": 2, "warehouse": None}],
        "occurred_at": NOW_MS,
    }
    record.update(changes)
    return record


def line(sku: str = "SKU-1", quantity: Any = 1, warehouse: Any = None) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "warehouse": warehouse}


def warehouse(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "evt-2",
        "warehouse": "HZ-01",
        "type": "RECEIVED",
        "sku": "SKU-1",
        "quantity": 5,
        "occurred_at": NOW_MS,
    }
    record.update(changes)
    return record


def _order(record: dict[str, Any]) -> OrderEvent:
    return parse_order(record, max_quantity=MAX_QUANTITY, max_lines=MAX_LINES, now_ms=NOW_MS)


def _warehouse(record: dict[str, Any]) -> WarehouseEvent:
    return parse_warehouse(record, max_quantity=MAX_QUANTITY, now_ms=NOW_MS)


def _rejects(parse: Callable[[dict[str, Any]], object], record: dict[str, Any]) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse(record)
    return info.value


# -- accepted ------------------------------------------------------------------------------


def test_valid_order() -> None:
    record = order(
        lines=[line("红色-XL/纯棉", 2), line("SKU-2", MAX_QUANTITY, "HZ-01"), line("S3", 1, "")]
    )
    assert _order(record) == OrderEvent(
        event_id="evt-1",
        order_id="TB-1",
        channel="tmall",
        shop="flagship",
        type=OrderType.CREATED,
        lines=(
            OrderLine("红色-XL/纯棉", 2),
            OrderLine("SKU-2", MAX_QUANTITY, "HZ-01"),
            OrderLine("S3", 1, None),  # an empty optional warehouse means "not known"
        ),
        occurred_at_ms=NOW_MS,
    )


@pytest.mark.parametrize("symbol", ["CREATED", "CANCELLED", "SHIPPED", "REFUNDED"])
def test_every_order_type_maps_to_lower_case(symbol: str) -> None:
    assert _order(order(type=symbol)).type == OrderType(symbol.lower())


@pytest.mark.parametrize(
    ("move", "quantity"),
    [
        ("RECEIVED", 1),
        ("RETURNED", MAX_QUANTITY),
        ("DAMAGED", 3),
        ("ADJUSTED", -MAX_QUANTITY),
        ("ADJUSTED", 7),
        ("STOCKTAKE", 0),
        ("STOCKTAKE", MAX_QUANTITY),
    ],
)
def test_valid_warehouse(move: str, quantity: int) -> None:
    event = _warehouse(warehouse(type=move, quantity=quantity))
    assert event == WarehouseEvent(
        "evt-2", "HZ-01", WarehouseType(move.lower()), "SKU-1", quantity, NOW_MS
    )


def test_fastavro_datetimes_are_milliseconds() -> None:
    moment = datetime(2024, 5, 1, 0, 0, 0, 123_000, tzinfo=UTC)
    assert _warehouse(warehouse(occurred_at=moment)).occurred_at_ms == NOW_MS + 123


def test_timestamp_limits_are_inclusive() -> None:
    assert _order(order(occurred_at=1)).occurred_at_ms == 1
    assert _order(order(occurred_at=NOW_MS + MAX_FUTURE_MS)).occurred_at_ms == NOW_MS + DAY_MS


# -- rejected: order events ----------------------------------------------------------------

ORDER_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("empty event id", order(event_id=""), "missing_field", "event_id"),
    ("blank event id", order(event_id="  "), "missing_field", "event_id"),
    (
        "no event id",
        {k: v for k, v in order().items() if k != "event_id"},
        "missing_field",
        "event_id",
    ),
    ("empty order id", order(order_id=""), "missing_field", "order_id"),
    ("empty shop", order(shop=""), "missing_field", "shop"),
    ("long event id", order(event_id="e" * 257), "bad_code", "event_id"),
    ("unknown type", order(type="UNKNOWN"), "unknown_type", "type"),
    ("lower-case type", order(type="created"), "unknown_type", "type"),
    ("no lines", order(lines=[]), "no_lines", "lines"),
    ("too many lines", order(lines=[line(f"S{i}") for i in range(4)]), "too_many_lines", "lines"),
    (
        "duplicate sku",
        order(lines=[line("A"), line("B"), line("A")]),
        "duplicate_line",
        "lines[2].sku",
    ),
    ("zero quantity", order(lines=[line(quantity=0)]), "bad_quantity", "lines[0].quantity"),
    ("negative quantity", order(lines=[line(quantity=-1)]), "bad_quantity", "lines[0].quantity"),
    (
        "absurd quantity",
        order(lines=[line(quantity=MAX_QUANTITY + 1)]),
        "bad_quantity",
        "lines[0].quantity",
    ),
    ("empty sku", order(lines=[line("")]), "missing_field", "lines[0].sku"),
    ("sku with space", order(lines=[line("SKU 1")]), "bad_code", "lines[0].sku"),
    ("sku with pipe", order(lines=[line("A|B")]), "bad_code", "lines[0].sku"),
    ("sku with tab", order(lines=[line("A\tB")]), "bad_code", "lines[0].sku"),
    ("sku with NUL", order(lines=[line("A\x00")]), "bad_code", "lines[0].sku"),
    ("sku with full-width space", order(lines=[line("A\u3000B")]), "bad_code", "lines[0].sku"),
    ("sku with zero-width space", order(lines=[line("A\u200bB")]), "bad_code", "lines[0].sku"),
    ("long sku", order(lines=[line("S" * 129)]), "bad_code", "lines[0].sku"),
    ("warehouse with pipe", order(lines=[line(warehouse="W|1")]), "bad_code", "lines[0].warehouse"),
    ("zero timestamp", order(occurred_at=0), "bad_timestamp", "occurred_at"),
    ("negative timestamp", order(occurred_at=-5), "bad_timestamp", "occurred_at"),
    ("future timestamp", order(occurred_at=NOW_MS + DAY_MS + 1), "bad_timestamp", "occurred_at"),
    ("naive datetime", order(occurred_at=datetime(2024, 1, 1)), "bad_timestamp", "occurred_at"),
    ("text quantity", order(lines=[line(quantity="2")]), "bad_field", "lines[0].quantity"),
    ("bool quantity", order(lines=[line(quantity=True)]), "bad_field", "lines[0].quantity"),
    ("lines not a list", order(lines="SKU-1"), "bad_field", "lines"),
    ("line not a record", order(lines=["SKU-1"]), "bad_field", "lines[0]"),
    ("text timestamp", order(occurred_at="2024-05-01"), "bad_field", "occurred_at"),
    ("numeric event id", order(event_id=7), "bad_field", "event_id"),
]


@pytest.mark.parametrize(
    ("record", "reason", "field"),
    [case[1:] for case in ORDER_CASES],
    ids=[case[0] for case in ORDER_CASES],
)
def test_order_rule(record: dict[str, Any], reason: str, field: str) -> None:
    error = _rejects(_order, record)
    assert error.reason == reason
    assert str(error).startswith(field), str(error)


# -- rejected: warehouse events ------------------------------------------------------------

WAREHOUSE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("empty event id", warehouse(event_id=""), "missing_field", "event_id"),
    ("empty warehouse", warehouse(warehouse=""), "missing_field", "warehouse"),
    ("no warehouse", warehouse(warehouse=None), "missing_field", "warehouse"),
    ("empty sku", warehouse(sku=""), "missing_field", "sku"),
    ("unknown type", warehouse(type="UNKNOWN"), "unknown_type", "type"),
    ("received zero", warehouse(type="RECEIVED", quantity=0), "bad_quantity", "quantity"),
    ("returned negative", warehouse(type="RETURNED", quantity=-2), "bad_quantity", "quantity"),
    ("damaged zero", warehouse(type="DAMAGED", quantity=0), "bad_quantity", "quantity"),
    (
        "received absurd",
        warehouse(type="RECEIVED", quantity=MAX_QUANTITY + 1),
        "bad_quantity",
        "quantity",
    ),
    ("adjusted zero", warehouse(type="ADJUSTED", quantity=0), "bad_quantity", "quantity"),
    (
        "adjusted absurd",
        warehouse(type="ADJUSTED", quantity=-MAX_QUANTITY - 1),
        "bad_quantity",
        "quantity",
    ),
    ("stocktake negative", warehouse(type="STOCKTAKE", quantity=-1), "bad_quantity", "quantity"),
    (
        "stocktake absurd",
        warehouse(type="STOCKTAKE", quantity=MAX_QUANTITY + 1),
        "bad_quantity",
        "quantity",
    ),
    ("warehouse with space", warehouse(warehouse="HZ 01"), "bad_code", "warehouse"),
    ("warehouse with newline", warehouse(warehouse="HZ\n01"), "bad_code", "warehouse"),
    ("long warehouse", warehouse(warehouse="W" * 129), "bad_code", "warehouse"),
    ("sku with pipe", warehouse(sku="a|b"), "bad_code", "sku"),
    ("sku with DEL", warehouse(sku="a\x7f"), "bad_code", "sku"),
    ("zero timestamp", warehouse(occurred_at=0), "bad_timestamp", "occurred_at"),
    (
        "future timestamp",
        warehouse(occurred_at=NOW_MS + DAY_MS + 1),
        "bad_timestamp",
        "occurred_at",
    ),
    ("float quantity", warehouse(quantity=1.5), "bad_field", "quantity"),
]


@pytest.mark.parametrize(
    ("record", "reason", "field"),
    [case[1:] for case in WAREHOUSE_CASES],
    ids=[case[0] for case in WAREHOUSE_CASES],
)
def test_warehouse_rule(record: dict[str, Any], reason: str, field: str) -> None:
    error = _rejects(_warehouse, record)
    assert error.reason == reason
    assert str(error).startswith(field), str(error)


def test_code_of_exactly_128_characters_is_accepted() -> None:
    assert _warehouse(warehouse(sku="S" * 128, warehouse="W" * 128)).sku == "S" * 128


# -- never another exception ---------------------------------------------------------------

texts = st.one_of(
    st.sampled_from(["", " ", "SKU-1", "A|B", "红色-XL", "x" * 129, "UNKNOWN"]),
    st.text(max_size=12),
)
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    texts,
    st.datetimes(timezones=st.sampled_from([UTC])),
    st.datetimes(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
quantities = st.one_of(st.integers(-2 * MAX_QUANTITY, 2 * MAX_QUANTITY), anything)
timestamps = st.one_of(st.integers(-DAY_MS, NOW_MS + 2 * DAY_MS), anything)
lines = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"sku": texts, "quantity": quantities},
            optional={"warehouse": st.one_of(st.none(), texts)},
        ),
        anything,
    ),
    max_size=5,
)
order_records = st.fixed_dictionaries(
    {},
    optional={
        "event_id": texts,
        "order_id": texts,
        "channel": st.one_of(st.sampled_from(["TAOBAO", "OTHER"]), anything),
        "shop": texts,
        "type": st.one_of(st.sampled_from(["CREATED", "SHIPPED", "UNKNOWN", "created"]), anything),
        "lines": st.one_of(lines, anything),
        "occurred_at": timestamps,
    },
)
warehouse_records = st.fixed_dictionaries(
    {},
    optional={
        "event_id": texts,
        "warehouse": texts,
        "type": st.one_of(st.sampled_from([t.value.upper() for t in WarehouseType]), anything),
        "sku": texts,
        "quantity": quantities,
        "occurred_at": timestamps,
    },
)


@settings(max_examples=500, deadline=None)
@given(order_records)
def test_any_order_record_parses_or_is_invalid(record: dict[str, Any]) -> None:
    try:
        event = _order(record)
    except InvalidEvent:
        return
    assert event.lines
    assert all(0 < ln.quantity <= MAX_QUANTITY for ln in event.lines)
    assert len({ln.sku for ln in event.lines}) == len(event.lines)


@settings(max_examples=500, deadline=None)
@given(warehouse_records)
def test_any_warehouse_record_parses_or_is_invalid(record: dict[str, Any]) -> None:
    try:
        event = _warehouse(record)
    except InvalidEvent:
        return
    assert abs(event.quantity) <= MAX_QUANTITY
    assert 0 < event.occurred_at_ms <= NOW_MS + DAY_MS


def test_a_taobao_listing_on_a_line_is_kept_and_checked() -> None:
    def taobao(listing: str) -> dict[str, Any]:
        return order(channel="TAOBAO", lines=[{**line("SKU-1", 1), "listing": listing}])

    assert _order(taobao("600000000001:700000000011")).lines[0].listing == (
        "600000000001:700000000011"
    )
    assert _order(taobao("600000000003:")).lines[0].listing == "600000000003:"
    for bad in ("600:x", ":7", "0:1", "600000000001", " 6:7"):
        rejected = _rejects(_order, taobao(bad))
        assert rejected.reason == "bad_field" and "listing" in str(rejected)
    # Only Taobao's own orders carry one: on another channel's it would hide a deduction.
    other = order(lines=[{**line("SKU-1", 1), "listing": "600000000003:"}])
    assert "not channel tmall" in str(_rejects(_order, other))
