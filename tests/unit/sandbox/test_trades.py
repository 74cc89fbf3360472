"""Taobao sells on its own: the sandbox's trades, their stock rules and the TMC queue (pure)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.sandbox.catalog import Catalog, load_catalog
from connector.sandbox.item_events import Snapshot, changes
from connector.sandbox.model import CatalogError, TopFault
from connector.sandbox.tmc import MessageService
from connector.sandbox.trades import FIRST_TID, Published, TradeBook, TradeError

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
SHIRT, RED, BLUE = 1001, 2001, 2002
MUG = 1002

DOC: dict[str, Any] = {
    "items": [
        {
            "num_iid": SHIRT,
            "title": "shirt",
            "price": "99.00",
            "sub_stock": 2,
            "skus": [
                {"sku_id": RED, "outer_id": "SHIRT-RED", "quantity": 5},
                {"sku_id": BLUE, "outer_id": "SHIRT-BLUE", "quantity": 3},
            ],
        },
        {"num_iid": MUG, "title": "mug", "outer_id": "MUG", "num": 4, "price": "9.00"},
    ]
}


def fresh() -> Catalog:
    return load_catalog(copy.deepcopy(DOC))


def topics(published: list[Published]) -> list[str]:
    return [topic for topic, _ in published]


def test_an_order_on_sub_stock_1_deducts_at_once_and_a_close_gives_it_back() -> None:
    catalog, book = fresh(), TradeBook()
    trade, published = book.create(catalog, MUG, None, 3, now=NOW)
    assert trade.tid > 2**53 and trade.tid == FIRST_TID
    assert catalog.get_item(MUG).num == 1
    assert topics(published) == ["taobao_trade_TradeCreate", "taobao_item_ItemStockChanged"]
    assert published[1][1]["increment"] == -3
    assert topics(book.pay(catalog, trade.tid, now=NOW)) == ["taobao_trade_TradeBuyerPay"]
    assert catalog.get_item(MUG).num == 1  # paying moves nothing: it was taken on order

    closed = book.close(catalog, trade.tid, now=NOW)
    assert topics(closed) == ["taobao_trade_TradeClose", "taobao_item_ItemStockChanged"]
    assert closed[0][1]["status"] == "TRADE_CLOSED" and closed[1][1]["increment"] == 3
    assert catalog.get_item(MUG).num == 4


def test_an_order_on_sub_stock_2_holds_until_payment() -> None:
    catalog, book = fresh(), TradeBook()
    trade, published = book.create(catalog, SHIRT, RED, 2, now=NOW)
    red = catalog.get_item(SHIRT).sku(RED)
    assert red is not None
    assert (red.quantity, red.with_hold_quantity) == (5, 2)
    assert topics(published) == ["taobao_trade_TradeCreate"]  # nothing deducted yet
    with pytest.raises(TradeError, match="only 3 sellable"):
        book.create(catalog, SHIRT, RED, 4, now=NOW)

    paid = book.pay(catalog, trade.tid, now=NOW)
    assert topics(paid) == ["taobao_trade_TradeBuyerPay", "taobao_item_ItemStockChanged"]
    assert (red.quantity, red.with_hold_quantity) == (3, 0)


def test_closing_an_unpaid_held_order_releases_the_hold_only() -> None:
    catalog, book = fresh(), TradeBook()
    trade, _ = book.create(catalog, SHIRT, BLUE, 3, now=NOW)
    assert topics(book.close(catalog, trade.tid, now=NOW)) == ["taobao_trade_TradeClose"]
    blue = catalog.get_item(SHIRT).sku(BLUE)
    assert blue is not None and (blue.quantity, blue.with_hold_quantity) == (3, 0)


def test_a_full_update_below_what_is_held_is_refused_as_the_platform_does() -> None:
    catalog, book = fresh(), TradeBook()
    book.create(catalog, SHIRT, RED, 2, now=NOW)
    with pytest.raises(TopFault) as refused:
        catalog.update_item_quantity(SHIRT, 1, sku_id=RED, now=NOW)
    assert refused.value.sub_code == "isv.error-inventory-invalid-item-quantity"
    assert "宝贝数量必须大于预扣库存" in (refused.value.sub_msg or "")
    with pytest.raises(TopFault):
        catalog.update_skus_quantity(SHIRT, [(RED, 1)], now=NOW)
    catalog.update_item_quantity(SHIRT, 2, sku_id=RED, now=NOW)  # what is held is fine


def test_nothing_sets_stock_below_what_unpaid_orders_hold() -> None:
    catalog, book = fresh(), TradeBook()
    book.create(catalog, SHIRT, RED, 2, now=NOW)
    with pytest.raises(CatalogError, match="below what unpaid orders hold"):
        catalog.merchant_edit(SHIRT, now=NOW, sku_quantities={RED: 1})
    held_mug = load_catalog(
        {"items": [{**DOC["items"][1], "sub_stock": 2, "approve_status": "instock"}]}
    )
    held_mug.get_item(MUG).with_hold_quantity = 3
    with pytest.raises(TopFault) as refused:
        held_mug.list_item(MUG, 2, now=NOW)  # listing sets the stock too
    assert refused.value.sub_code == "isv.error-inventory-invalid-item-quantity"


def test_a_refund_before_shipment_closes_and_gives_stock_back_after_it_does_not() -> None:
    catalog, book = fresh(), TradeBook()
    early, _ = book.create(catalog, MUG, None, 1, now=NOW)
    book.pay(catalog, early.tid, now=NOW)
    refunded = book.refund(catalog, early.tid, now=NOW)
    assert topics(refunded) == [
        "taobao_refund_RefundSuccess",
        "taobao_trade_TradeClose",
        "taobao_item_ItemStockChanged",
    ]
    assert refunded[1][1]["status"] == "TRADE_CLOSED"
    assert catalog.get_item(MUG).num == 4

    late, _ = book.create(catalog, MUG, None, 1, now=NOW)
    book.pay(catalog, late.tid, now=NOW)
    assert topics(book.ship(late.tid, now=NOW)) == ["taobao_trade_TradeSellerShip"]
    refunded = book.refund(catalog, late.tid, now=NOW)
    assert topics(refunded) == ["taobao_refund_RefundSuccess", "taobao_trade_TradeClose"]
    assert refunded[0][1]["bill_type"] == "return_bill"
    assert catalog.get_item(MUG).num == 3  # the goods come back through the warehouse


def test_selling_out_takes_the_item_off_the_shelf_and_says_so() -> None:
    catalog, book = fresh(), TradeBook()
    _, published = book.create(catalog, MUG, None, 4, now=NOW)
    mug = catalog.get_item(MUG)
    assert (mug.num, mug.approve_status) == (0, "instock")
    assert topics(published) == [
        "taobao_trade_TradeCreate",
        "taobao_item_ItemStockChanged",
        "taobao_item_ItemDownshelf",
    ]
    with pytest.raises(TradeError, match="not on sale"):
        book.create(catalog, MUG, None, 1, now=NOW)


def test_trades_in_the_wrong_state_or_unknown_are_refused() -> None:
    catalog, book = fresh(), TradeBook()
    trade, _ = book.create(catalog, MUG, None, 1, now=NOW)
    with pytest.raises(TradeError, match="WAIT_BUYER_PAY"):
        book.ship(trade.tid, now=NOW)
    with pytest.raises(TradeError, match="no trade"):
        book.pay(catalog, 1, now=NOW)
    with pytest.raises(TradeError, match="has SKUs"):
        book.create(catalog, SHIRT, None, 1, now=NOW)


def test_the_queue_serves_only_permitted_topics_at_least_once() -> None:
    tmc = MessageService(visibility_s=10)
    tmc.publish("taobao_trade_TradeCreate", {"tid": 1}, now=NOW)  # before the permit: lost
    tmc.permit(["taobao_trade_TradeCreate"], now=NOW)
    tmc.publish("taobao_trade_TradeCreate", {"tid": 2}, now=NOW)
    tmc.publish("taobao_item_ItemStockChanged", {"num_iid": 3}, now=NOW)  # not permitted
    tmc.publish("taobao_trade_TradeCreate", {"tid": 2**60}, now=NOW)

    first = tmc.consume("default", 10, clock=0.0)
    assert [json.loads(m.content)["tid"] for m in first] == [2, 2**60]
    assert first[0].id > 2**53
    assert tmc.consume("default", 10, clock=5.0) == []  # hidden while in flight
    assert tmc.consume("another-group", 10, clock=20.0) == []  # the seller is not in it
    tmc.confirm([first[0].id, first[0].id, 12345])
    again = tmc.consume("default", 10, clock=11.0)  # unconfirmed: served again
    assert [m.id for m in again] == [first[1].id]
    tmc.confirm([again[0].id])
    assert tmc.pending() == 0


def test_a_permit_without_topics_is_every_topic() -> None:
    tmc = MessageService()
    tmc.permit(None, now=NOW)
    tmc.publish("taobao_item_ItemDownshelf", {"num_iid": 1}, now=NOW)
    assert len(tmc.consume("default", 10, clock=0.0)) == 1
    assert "taobao_trade_TradeCreate" in tmc.topics()


def test_any_change_to_an_item_is_announced() -> None:
    catalog = fresh()
    before = Snapshot.of(catalog.get_item(SHIRT))
    catalog.update_skus_quantity(SHIRT, [(RED, 9)], now=NOW)
    (message,) = changes(before, catalog.get_item(SHIRT))
    assert message == (
        "taobao_item_ItemStockChanged",
        {"num_iid": SHIRT, "nick": "sandbox_b_01", "num": 12, "increment": 4,
         "changed_fields": "num", "sku_id": RED, "sku_num": 9},
    )  # fmt: skip
    before = Snapshot.of(catalog.get_item(MUG))
    catalog.delist_item(MUG, now=NOW)
    # §5.3: ItemDownshelf carries num_iid only.
    assert changes(before, catalog.get_item(MUG)) == [
        ("taobao_item_ItemDownshelf", {"num_iid": MUG})
    ]
