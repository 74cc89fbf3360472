"""What Taobao's trade messages mean for the ledger (pure)."""

from __future__ import annotations

import json
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from connector.contracts.events import OrderType
from connector.taobao.protocol import CHINA_TZ
from connector.tmc.trades import (
    TmcMessage,
    merchant_code,
    order_events,
    parse_message,
    parse_trade,
)

TID = 2**60 + 11  # beyond 2^53, as Taobao's are
TRADE = {
    "tid": TID,
    "status": "WAIT_BUYER_PAY",
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
    parsed = message("taobao_trade_TradeCreate", oid=TID + 1)
    assert (parsed.tid, parsed.oid, parsed.id) == (TID, TID + 1, 2**53 + 5)
    china = datetime(2026, 12, 1, 16, 0, 1, tzinfo=CHINA_TZ)  # pub_time is China time
    assert parsed.pub_time_ms == int(china.timestamp() * 1000)


def test_a_create_reserves_every_line_once_each() -> None:
    trade = parse_trade(TRADE)
    events, unknown = order_events(
        message("taobao_trade_TradeCreate"), trade, code_of=merchant_code, shop="tmall-1"
    )
    assert unknown == []
    seen = [(e.event_id, e.order_id, e.type, e.lines[0].sku, e.lines[0].quantity) for e in events]
    first, second = f"{TID}:{TID + 1}", f"{TID}:{TID + 2}"
    assert seen == [
        (f"taobao:{first}:created", first, OrderType.CREATED, "TSHIRT-RED-M", 2),
        (f"taobao:{second}:created", second, OrderType.CREATED, "MUG-WHITE", 1),
    ]
    assert all(e.channel == "taobao" and e.shop == "tmall-1" for e in events)


def test_a_close_naming_one_sub_order_cancels_only_that_line() -> None:
    events, _ = order_events(
        message("taobao_trade_TradeClose", oid=TID + 2),
        parse_trade(TRADE),
        code_of=merchant_code,
        shop="s",
    )
    assert [(e.order_id, e.type) for e in events] == [(f"{TID}:{TID + 2}", OrderType.CANCELLED)]


def test_ship_refund_and_the_topics_without_a_stock_effect() -> None:
    trade = parse_trade(TRADE)
    kinds = {
        topic: [e.type for e in order_events(message(topic), trade, code_of=merchant_code,
                                             shop="s")[0]]
        for topic in ("taobao_trade_TradeSellerShip", "taobao_refund_RefundSuccess",
                      "taobao_trade_TradeBuyerPay", "taobao_item_ItemStockChanged")
    }  # fmt: skip
    assert kinds == {
        "taobao_trade_TradeSellerShip": [OrderType.SHIPPED] * 2,
        "taobao_refund_RefundSuccess": [OrderType.REFUNDED] * 2,
        "taobao_trade_TradeBuyerPay": [],
        "taobao_item_ItemStockChanged": [],
    }


def test_a_line_without_a_merchant_code_is_reported_not_guessed() -> None:
    raw = json.loads(json.dumps(TRADE))
    raw["orders"]["order"][0]["outer_sku_id"] = ""
    events, unknown = order_events(
        message("taobao_trade_TradeCreate"), parse_trade(raw), code_of=merchant_code, shop="s"
    )
    assert [e.lines[0].sku for e in events] == ["MUG-WHITE"]
    assert [line.oid for line in unknown] == [TID + 1]


@given(st.sampled_from(["taobao_trade_TradeCreate", "taobao_trade_TradeClose",
                        "taobao_trade_TradeSellerShip"]))  # fmt: skip
def test_a_redelivered_message_is_the_same_events(topic: str) -> None:
    trade = parse_trade(TRADE)
    first, _ = order_events(message(topic), trade, code_of=merchant_code, shop="s")
    again, _ = order_events(message(topic), trade, code_of=merchant_code, shop="s")
    assert first == again


def with_statuses(*statuses: str, consign_time: str | None = None) -> dict[str, object]:
    raw = json.loads(json.dumps(TRADE))
    for order, status in zip(raw["orders"]["order"], statuses, strict=True):
        order["status"] = status
    if consign_time:
        raw["consign_time"] = consign_time
    return raw


def test_a_partial_shipment_ships_only_the_lines_that_left() -> None:
    trade = parse_trade(with_statuses("WAIT_BUYER_CONFIRM_GOODS", "WAIT_SELLER_SEND_GOODS"))
    events, _ = order_events(
        message("taobao_trade_TradeSellerShip"), trade, code_of=merchant_code, shop="s"
    )
    assert [(e.lines[0].sku, e.type) for e in events] == [("TSHIRT-RED-M", OrderType.SHIPPED)]


def test_a_refund_releases_a_line_that_never_shipped_and_leaves_a_shipped_one() -> None:
    never = parse_trade(with_statuses("TRADE_CLOSED", "WAIT_SELLER_SEND_GOODS"))
    shipped = parse_trade(with_statuses("TRADE_CLOSED", "TRADE_FINISHED", consign_time="x"))
    refund = message("taobao_refund_RefundSuccess", oid=TID + 1)
    assert [e.type for e in order_events(refund, never, code_of=merchant_code, shop="s")[0]] == [
        OrderType.CANCELLED
    ]
    assert [e.type for e in order_events(refund, shipped, code_of=merchant_code, shop="s")[0]] == [
        OrderType.REFUNDED
    ]


def test_a_sub_order_close_and_a_message_naming_a_sub_order_the_trade_lacks() -> None:
    trade = parse_trade(TRADE)
    detail = message("taobao_trade_TradeCloseAndModifyDetailOrder", oid=TID + 1)
    events, _ = order_events(detail, trade, code_of=merchant_code, shop="s")
    assert [(e.order_id, e.type) for e in events] == [(f"{TID}:{TID + 1}", OrderType.CANCELLED)]
    events, unknown = order_events(
        message("taobao_trade_TradeClose", oid=999), trade, code_of=merchant_code, shop="s"
    )
    assert events == [] and len(unknown) == 2  # reported, nothing cancelled
    # A create names the trade as a whole, whatever oid it carries.
    events, _ = order_events(
        message("taobao_trade_TradeCreate", oid=TID), trade, code_of=merchant_code, shop="s"
    )
    assert len(events) == 2
