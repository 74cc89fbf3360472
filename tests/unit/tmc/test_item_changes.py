"""Which of Taobao's item messages the connector or Taobao's own orders explain (pure)."""

from __future__ import annotations

import json

from connector.tmc.fetch import TradeCache
from connector.tmc.item_changes import (
    Downshelf,
    StockChange,
    TradeMove,
    Write,
    explained,
    parse_item_message,
    trade_moves,
)
from connector.tmc.trades import TaobaoTrade, TmcMessage, TradeLine

T = 1_790_000_000_000
ITEM, SKU = 600000000001, 700000000011


def message(topic: str, **content: object) -> TmcMessage:
    return TmcMessage(1, topic, json.loads(json.dumps(content)), T)


def test_stock_and_shelf_messages_parse() -> None:
    change = parse_item_message(
        message(
            "taobao_item_ItemStockChanged",
            num_iid=ITEM,
            sku_id=SKU,
            sku_num=7,
            increment=-2,
            num=30,
        )
    )
    assert change == StockChange(ITEM, SKU, 7, -2, T)
    bare = parse_item_message(
        message("taobao_item_ItemStockChanged", num_iid=ITEM, num=9, increment=3)
    )
    assert bare == StockChange(ITEM, None, 9, 3, T)
    assert parse_item_message(message("taobao_item_ItemDownshelf", num_iid=ITEM)) == Downshelf(
        ITEM, T
    )
    assert parse_item_message(message("taobao_trade_TradeCreate", tid=5)) is None


def test_the_connectors_writes_and_taobaos_orders_explain_their_changes() -> None:
    change = StockChange(ITEM, SKU, 7, -2, T)
    assert explained(change, [Write(SKU, 7, T - 500)], [])
    assert not explained(change, [Write(SKU, 8, T - 500)], [])  # another quantity
    assert not explained(change, [Write(SKU, 7, T - 120_000)], [])  # long before
    assert explained(change, [], [TradeMove(SKU, -2, (T + 900,))])
    assert not explained(change, [], [TradeMove(SKU, -3, (T,))])
    assert not explained(change, [], [TradeMove(None, -2, (T,))])  # another listing


def test_an_orders_stock_moves_at_creation_or_payment_and_back_at_its_close() -> None:
    line = TradeLine(1, ITEM, SKU, "RED-M", "SHIRT", 2)
    closed = TaobaoTrade(
        9, "TRADE_CLOSED", T, (line,), created_ms=T - 5000, pay_ms=T - 4000, end_ms=T
    )
    assert trade_moves([closed], ITEM) == [
        TradeMove(SKU, -2, (T - 5000, T - 4000)),
        TradeMove(SKU, 2, (T,)),
    ]
    assert trade_moves([closed], ITEM + 1) == []


def test_the_trade_cache_finds_the_trades_of_an_item() -> None:
    cache = TradeCache(max_entries=2)
    trades = [
        TaobaoTrade(
            tid, "WAIT_BUYER_PAY", T, (TradeLine(tid + 1, ITEM + tid % 2, None, None, "X", 1),)
        )
        for tid in (10, 11, 12)
    ]
    cache.put(trades, read_ms=T)
    assert [t.tid for t in cache.trades_of(ITEM)] == [12]  # 10 was evicted
    assert [t.tid for t in cache.trades_of(ITEM + 1)] == [11]
