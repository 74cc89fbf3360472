"""What Taobao's trade messages mean for the ledger (pure)."""

from __future__ import annotations

import json
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from connector.contracts.events import OrderEvent, OrderType
from connector.taobao.protocol import CHINA_TZ
from connector.tmc.trades import (
    TaobaoTrade,
    TmcMessage,
    merchant_code,
    parse_message,
    parse_trade,
    trade_events,
)

TID = 2**60 + 11  # beyond 2^53, as Taobao's are
TRADE = {
    "tid": TID,
    "status": "WAIT_BUYER_PAY",
    "created": "2026-12-01 15:59:00",
    "modified": "2026-12-01 16:00:00",
    "orders": {
        "order": [
            {"oid": TID + 1, "num_iid": 600000000001, "sku_id": "700000000011",
             "outer_sku_id": "TSHIRT-RED-M", "outer_iid": "TSHIRT", "num": 2},
            {"oid": TID + 2, "num_iid": 600000000003, "outer_iid": "MUG-WHITE", "num": 1},
        ]
    },
}  # fmt: skip


def message(topic: str, **content: object) -> TmcMessage:
    raw = {
        "id": 2**53 + 5,
        "topic": topic,
        "content": json.dumps({"tid": TID, **content}),
        "pub_time": "2026-12-01 16:00:01",
    }
    return parse_message(raw)


def test_a_message_parses_with_its_big_ids_exact() -> None:
    parsed = message("taobao_trade_TradeClose", num_iid=2**55 + 3)
    assert (parsed.tid, parsed.num_iid, parsed.id) == (TID, 2**55 + 3, 2**53 + 5)
    china = datetime(2026, 12, 1, 16, 0, 1, tzinfo=CHINA_TZ)  # pub_time is China time
    assert parsed.pub_time_ms == int(china.timestamp() * 1000)


def events_of(trade: TaobaoTrade) -> list[OrderEvent]:
    events, unknown = trade_events(trade, code_of=merchant_code, shop="tmall-1")
    assert unknown == []
    return events


def kinds(trade: TaobaoTrade) -> list[tuple[str, OrderType]]:
    return [(e.lines[0].sku, e.type) for e in events_of(trade)]


def with_statuses(*statuses: str, consign_time: str | None = None) -> TaobaoTrade:
    raw = json.loads(json.dumps(TRADE))
    for order, status in zip(raw["orders"]["order"], statuses, strict=True):
        order["status"] = status
    if consign_time:
        raw["consign_time"] = consign_time
    return parse_trade(raw)


def test_a_new_trade_reserves_every_line_once_each() -> None:
    events = events_of(parse_trade(TRADE))
    seen = [(e.event_id, e.order_id, e.type, e.lines[0].sku, e.lines[0].quantity) for e in events]
    first, second = f"{TID}:{TID + 1}", f"{TID}:{TID + 2}"
    assert seen == [
        (f"taobao:{first}:created", first, OrderType.CREATED, "TSHIRT-RED-M", 2),
        (f"taobao:{second}:created", second, OrderType.CREATED, "MUG-WHITE", 1),
    ]
    assert all(e.channel == "taobao" and e.shop == "tmall-1" for e in events)
    created = datetime(2026, 12, 1, 15, 59, tzinfo=CHINA_TZ)
    assert events[0].occurred_at_ms == int(created.timestamp() * 1000)


def test_a_closed_line_is_reserved_then_released_in_that_order() -> None:
    # A close seen before (or without) its create still reserves first: the ledger never
    # sees a release before the reservation it releases.
    assert kinds(with_statuses("TRADE_CLOSED", "WAIT_SELLER_SEND_GOODS")) == [
        ("TSHIRT-RED-M", OrderType.CREATED),
        ("TSHIRT-RED-M", OrderType.CANCELLED),
        ("MUG-WHITE", OrderType.CREATED),
    ]


def test_a_partial_shipment_ships_only_the_lines_that_left() -> None:
    assert kinds(with_statuses("WAIT_BUYER_CONFIRM_GOODS", "WAIT_SELLER_SEND_GOODS")) == [
        ("TSHIRT-RED-M", OrderType.CREATED),
        ("TSHIRT-RED-M", OrderType.SHIPPED),
        ("MUG-WHITE", OrderType.CREATED),
    ]


def test_a_refund_after_shipment_ships_then_refunds() -> None:
    trade = with_statuses("TRADE_CLOSED", "TRADE_FINISHED", consign_time="2026-12-01 17:00:00")
    assert kinds(trade) == [
        ("TSHIRT-RED-M", OrderType.CREATED),
        ("TSHIRT-RED-M", OrderType.SHIPPED),
        ("TSHIRT-RED-M", OrderType.REFUNDED),
        ("MUG-WHITE", OrderType.CREATED),
        ("MUG-WHITE", OrderType.SHIPPED),
    ]


def test_a_line_status_decides_over_the_trade_status() -> None:
    raw = json.loads(json.dumps(TRADE))
    raw["status"] = "TRADE_CLOSED"  # the trade says closed, but one line has its own status
    raw["orders"]["order"][1]["status"] = "WAIT_SELLER_SEND_GOODS"
    assert kinds(parse_trade(raw)) == [
        ("TSHIRT-RED-M", OrderType.CREATED),
        ("TSHIRT-RED-M", OrderType.CANCELLED),
        ("MUG-WHITE", OrderType.CREATED),
    ]


def test_a_line_without_a_merchant_code_is_reported_not_guessed() -> None:
    raw = json.loads(json.dumps(TRADE))
    raw["orders"]["order"][0]["outer_sku_id"] = ""
    events, unknown = trade_events(parse_trade(raw), code_of=merchant_code, shop="s")
    assert [e.lines[0].sku for e in events] == ["MUG-WHITE"]
    assert [line.oid for line in unknown] == [TID + 1]


STATUSES = ["WAIT_BUYER_PAY", "WAIT_SELLER_SEND_GOODS", "WAIT_BUYER_CONFIRM_GOODS",
            "TRADE_FINISHED", "TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"]  # fmt: skip
LIFECYCLE = [OrderType.CREATED, OrderType.SHIPPED, OrderType.CANCELLED, OrderType.REFUNDED]


@given(st.lists(st.sampled_from(STATUSES), min_size=2, max_size=2), st.booleans())
def test_every_state_reads_as_a_prefix_of_one_lifecycle(statuses: list[str], shipped: bool) -> None:
    """Whatever the state, each line's events start with its reservation, never repeat,
    and a later state's events extend an earlier state's (so events derived from messages
    seen in any order are one history)."""
    trade = with_statuses(*statuses, consign_time="2026-12-01 17:00:00" if shipped else None)
    events = events_of(trade)
    for code in ("TSHIRT-RED-M", "MUG-WHITE"):
        mine = [e.type for e in events if e.lines[0].sku == code]
        assert mine[0] is OrderType.CREATED
        assert len(set(mine)) == len(mine)
        assert [LIFECYCLE.index(k) for k in mine] == sorted(LIFECYCLE.index(k) for k in mine)
        assert not {OrderType.CANCELLED, OrderType.SHIPPED} <= set(mine)
    assert events == events_of(trade)  # derived again: the same events, the same ids
