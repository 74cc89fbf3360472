"""What a batch of messages becomes (pure)."""

from __future__ import annotations

import json

from connector.contracts.events import OrderType
from connector.contracts.records import AlertKind
from connector.tmc.batch import batch_outputs, trades_named
from connector.tmc.trades import TaobaoTrade, TmcMessage, TradeLine, parse_message

TID = 2**60


def message(mid: int, topic: str, tid: int | None, pub_ms: int) -> TmcMessage:
    content = {} if tid is None else {"tid": tid}
    return TmcMessage(mid, topic, content, pub_ms, "shop-nick")


def test_trades_are_named_once_with_their_newest_message() -> None:
    named = trades_named(
        [
            message(1, "taobao_trade_TradeCreate", TID, 1000),
            message(2, "taobao_trade_TradeBuyerPay", TID, 3000),
            message(3, "taobao_refund_RefundSuccess", TID + 2, 2000),
            message(4, "taobao_item_ItemStockChanged", None, 2500),
        ]
    )
    assert named == {TID: 3000, TID + 2: 2000}


def test_every_message_is_confirmed_and_lines_without_a_code_are_alerted() -> None:
    messages = [
        message(1, "taobao_trade_TradeCreate", TID, 1000),
        message(2, "taobao_item_ItemStockChanged", None, 1000),
        message(3, "taobao_trade_TradeCreate", TID + 4, 1000),
    ]
    lines = (
        TradeLine(TID + 1, 600, None, None, "MUG", 2),
        TradeLine(TID + 3, 601, 701, None, None, 1),  # a SKU without a merchant code
    )
    trades = {TID: TaobaoTrade(TID, "WAIT_BUYER_PAY", 1000, lines, created_ms=900)}
    out = batch_outputs(messages, trades, [TID + 4], default_shop="taobao", now_ms=5000)
    assert out.confirm == [1, 2, 3]
    assert [(e.order_id, e.type, e.shop) for e in out.events] == [
        (f"{TID}:{TID + 1}", OrderType.CREATED, "shop-nick")
    ]
    assert [a.kind for a in out.alerts] == [AlertKind.TAOBAO_ORDER_UNMAPPED] * 2
    assert out.alerts[0].details["sku_id"] == "701"
    assert out.alerts[1].details == {"tid": str(TID + 4)}


def test_a_message_with_big_ids_parses_exactly() -> None:
    raw = {"id": 2**62 + 1, "topic": "taobao_trade_TradeCreate",
           "content": json.dumps({"tid": 2**61 + 3}), "pub_time": "2026-12-01 10:00:00",
           "user_nick": "tb-shop"}  # fmt: skip
    parsed = parse_message(raw)
    assert (parsed.id, parsed.tid, parsed.user_nick) == (2**62 + 1, 2**61 + 3, "tb-shop")
