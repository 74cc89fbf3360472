"""Turn decoded Avro records into typed events, or reject them with a stable reason: pure.

``parse_order`` and ``parse_warehouse`` take the records ``connector.contracts.codec`` decodes and
return ``OrderEvent`` / ``WarehouseEvent`` values that satisfy the guarantees stated in
``connector.contracts.events``. Anything else raises ``InvalidEvent(reason, message)``; the message
names the offending field, the reason is one of:

==================  ===================================================================
``missing_field``   a required id or code is absent or empty
``bad_field``       a field has the wrong type (only from hand-built records: Avro
                    decoding already guarantees types)
``unknown_type``    the event type is ``UNKNOWN`` (a symbol from a newer writer) or not
                    one this connector knows
``bad_quantity``    a quantity outside what its event type allows
``no_lines``        an order event without lines
``too_many_lines``  more lines than ``max_lines``
``duplicate_line``  one SKU on two lines of one event: the ledger keys order lines by
                    order id + SKU + type, so they would silently merge
``bad_timestamp``   ``occurred_at`` not after the epoch, or more than a day in the future
``bad_code``        a SKU or warehouse code longer than 128 characters or containing
                    whitespace, control characters or ``|`` (the ledger's key separator);
                    an id longer than 256 characters
==================  ===================================================================

Time is an argument (``now_ms``), so these functions never read the clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

from connector.contracts.codec import millis
from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    WarehouseEvent,
    WarehouseType,
)
from connector.errors import InvalidEvent

__all__ = [
    "MAX_CODE_LENGTH",
    "MAX_FUTURE_MS",
    "MAX_ID_LENGTH",
    "parse_order",
    "parse_warehouse",
]

MAX_CODE_LENGTH: Final = 128
MAX_ID_LENGTH: Final = 256
MAX_FUTURE_MS: Final = 86_400_000  # clocks drift, but not by a day: a later time is a bug

# Whitespace (Unicode-wide, so a full-width space counts), C0/C1 control characters,
# invisible format characters, and "|", which the ledger uses to join key parts.
_BAD_CODE_CHAR: Final = re.compile(r"[\s|\x00-\x1f\x7f-\x9f\u200b-\u200f\u2060-\u2064\ufeff]")

_LISTING: Final = re.compile(r"^[1-9][0-9]{0,19}:([1-9][0-9]{0,19})?$")

_E = TypeVar("_E")

_ORDER_TYPES: Final = {t.value.upper(): t for t in OrderType}
_WAREHOUSE_TYPES: Final = {t.value.upper(): t for t in WarehouseType}
# Movements whose quantity is a positive amount; ADJUSTED is signed, STOCKTAKE a count.
_POSITIVE_MOVES: Final = frozenset(
    {WarehouseType.RECEIVED, WarehouseType.RETURNED, WarehouseType.DAMAGED}
)


def parse_order(
    record: Mapping[str, Any], *, max_quantity: int, max_lines: int, now_ms: int
) -> OrderEvent:
    """An ``OrderEvent`` from a decoded ``OrderEvent`` record, or ``InvalidEvent``."""
    event = OrderEvent(
        event_id=_id(record, "event_id"),
        order_id=_id(record, "order_id"),
        channel=_text(record, "channel").lower(),
        shop=_id(record, "shop"),
        type=_enum(record, "type", _ORDER_TYPES),
        lines=_lines(record, max_quantity=max_quantity, max_lines=max_lines),
        occurred_at_ms=_timestamp(record, "occurred_at", now_ms),
    )
    if event.channel != "taobao" and any(line.listing for line in event.lines):
        # A listing says Taobao took the stock itself: on another channel's order it
        # would keep that deduction from ever reaching Taobao.
        raise InvalidEvent(
            "bad_field", f"lines[].listing is for Taobao's own orders, not channel {event.channel}"
        )
    return event


def parse_warehouse(record: Mapping[str, Any], *, max_quantity: int, now_ms: int) -> WarehouseEvent:
    """A ``WarehouseEvent`` from a decoded ``WarehouseEvent`` record, or ``InvalidEvent``."""
    event_id = _id(record, "event_id")
    warehouse = _code(record, "warehouse")
    move = _enum(record, "type", _WAREHOUSE_TYPES)
    return WarehouseEvent(
        event_id=event_id,
        warehouse=warehouse,
        type=move,
        sku=_code(record, "sku"),
        quantity=_movement(_int(record, "quantity"), move, max_quantity),
        occurred_at_ms=_timestamp(record, "occurred_at", now_ms),
    )


def _lines(
    record: Mapping[str, Any], *, max_quantity: int, max_lines: int
) -> tuple[OrderLine, ...]:
    raw = _field(record, "lines")
    if not isinstance(raw, list | tuple):
        raise InvalidEvent("bad_field", f"lines must be a list, got {type(raw).__name__}")
    if not raw:
        raise InvalidEvent("no_lines", "lines is empty: an order event needs at least one line")
    if len(raw) > max_lines:
        raise InvalidEvent("too_many_lines", f"lines has {len(raw)} lines, at most {max_lines}")
    lines: list[OrderLine] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        line = _line(item, i, max_quantity)
        if line.sku in seen:
            raise InvalidEvent(
                "duplicate_line", f"lines[{i}].sku {line.sku!r} appears on an earlier line"
            )
        seen.add(line.sku)
        lines.append(line)
    return tuple(lines)


def _line(item: Any, index: int, max_quantity: int) -> OrderLine:
    where = f"lines[{index}]"
    if not isinstance(item, Mapping):
        raise InvalidEvent("bad_field", f"{where} must be a record, got {type(item).__name__}")
    quantity = _int(item, "quantity", where)
    if not 0 < quantity <= max_quantity:
        raise InvalidEvent(
            "bad_quantity", f"{where}.quantity must be 1..{max_quantity}, got {quantity}"
        )
    warehouse = item.get("warehouse")
    # An empty optional warehouse means "not known", like null: rejecting the order would
    # drop a real reservation, which is worse than shipping from the default warehouse.
    if warehouse is not None and warehouse != "":
        warehouse = _code(item, "warehouse", where)
    listing = item.get("listing")
    if listing is not None and not (isinstance(listing, str) and _LISTING.match(listing)):
        raise InvalidEvent(
            "bad_field", f"{where}.listing must be <num_iid>:<sku_id> (digits), got {listing!r}"
        )
    return OrderLine(
        sku=_code(item, "sku", where),
        quantity=quantity,
        warehouse=warehouse or None,
        listing=listing,
    )


def _movement(quantity: int, move: WarehouseType, max_quantity: int) -> int:
    if move in _POSITIVE_MOVES:
        ok, rule = 0 < quantity <= max_quantity, f"1..{max_quantity}"
    elif move is WarehouseType.ADJUSTED:
        ok, rule = quantity != 0 and abs(quantity) <= max_quantity, f"non-zero, ±{max_quantity}"
    else:  # STOCKTAKE: an absolute count, zero included
        ok, rule = 0 <= quantity <= max_quantity, f"0..{max_quantity}"
    if not ok:
        raise InvalidEvent(
            "bad_quantity", f"quantity for {move.value} must be {rule}, got {quantity}"
        )
    return quantity


# -- fields ------------------------------------------------------------------------------


def _name(field: str, where: str) -> str:
    return f"{where}.{field}" if where else field


def _field(record: Mapping[str, Any], field: str, where: str = "") -> Any:
    value = record.get(field)
    if value is None:
        raise InvalidEvent("missing_field", f"{_name(field, where)} is missing")
    return value


def _text(record: Mapping[str, Any], field: str, where: str = "") -> str:
    value = record.get(field)
    if value is None:
        raise InvalidEvent("missing_field", f"{_name(field, where)} is missing")
    if not isinstance(value, str):
        raise InvalidEvent(
            "bad_field", f"{_name(field, where)} must be text, got {type(value).__name__}"
        )
    if not value.strip():
        raise InvalidEvent("missing_field", f"{_name(field, where)} is empty")
    return value


def _id(record: Mapping[str, Any], field: str) -> str:
    value = _text(record, field)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(
            "bad_code", f"{field} is {len(value)} characters long, at most {MAX_ID_LENGTH}"
        )
    return value


def _code(record: Mapping[str, Any], field: str, where: str = "") -> str:
    """A SKU or warehouse code: it becomes part of ledger keys, so it must be plain."""
    value = _text(record, field, where)
    if len(value) > MAX_CODE_LENGTH:
        raise InvalidEvent(
            "bad_code",
            f"{_name(field, where)} is {len(value)} characters long, at most {MAX_CODE_LENGTH}",
        )
    bad = _BAD_CODE_CHAR.search(value)
    if bad is not None:
        raise InvalidEvent(
            "bad_code",
            f"{_name(field, where)} contains {bad.group()!r} (whitespace, control or '|')",
        )
    return value


def _int(record: Mapping[str, Any], field: str, where: str = "") -> int:
    value = _field(record, field, where)
    if isinstance(value, bool) or not isinstance(value, int):  # bool is an int subclass
        raise InvalidEvent(
            "bad_field", f"{_name(field, where)} must be an integer, got {type(value).__name__}"
        )
    return value


def _enum(record: Mapping[str, Any], field: str, members: Mapping[str, _E]) -> _E:
    symbol = _text(record, field)
    member = members.get(symbol)
    if member is None:
        raise InvalidEvent("unknown_type", f"{field} {symbol!r} is not one this connector knows")
    return member


def _timestamp(record: Mapping[str, Any], field: str, now_ms: int) -> int:
    """``timestamp-millis``: fastavro gives an aware datetime; hand-built records an int."""
    value = _field(record, field)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidEvent("bad_timestamp", f"{field} has no time zone")
        value = millis(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent("bad_field", f"{field} must be a timestamp, got {type(value).__name__}")
    if value <= 0:
        raise InvalidEvent("bad_timestamp", f"{field} must be after the epoch, got {value}")
    if value > now_ms + MAX_FUTURE_MS:
        raise InvalidEvent(
            "bad_timestamp", f"{field} {value} is more than a day after now ({now_ms})"
        )
    return value
