"""Taobao sells on its own: the sandbox's trades and what they do to stock.

Pure code, clock passed in, like :mod:`connector.sandbox.catalog`. A trade here is one buyer
order of one item (or one SKU of it): one ``tid`` with one ``oid``. How it moves stock
follows the item's ``sub_stock`` (reference §3.11; the transitions are the sandbox's reading
of the platform, marked UNCONFIRMED where no source says):

* ``sub_stock=1`` (拍下减库存, on order): the quantity is deducted when the trade is created;
  a trade closed before shipment gives it back.
* ``sub_stock=2`` (付款减库存, on payment): creating the trade holds the quantity
  (``with_hold_quantity`` grows, the quantity does not move); payment deducts it and
  releases the hold; closing an unpaid trade releases the hold.
* A buyer can order only what is sellable: quantity minus what is held.
* A refund of a paid, unshipped trade closes it (stock back as above); a refund after
  shipment changes no stock (the goods come back through the merchant's warehouse)
  (UNCONFIRMED).

Every operation returns the TMC messages it publishes (topic, content), in order; the
message service (:mod:`connector.sandbox.tmc`) queues them. Ids start above 2^53, as real
trade ids do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from connector.sandbox.catalog import Catalog
from connector.sandbox.item_events import SELLER_NICK, Published, Snapshot, changes
from connector.sandbox.model import Item, Sku, TopFault
from connector.taobao.protocol import format_timestamp

__all__ = [
    "BUYER_NICK",
    "SELLER_NICK",
    "Published",
    "Trade",
    "TradeBook",
    "TradeError",
    "TradeStatus",
]

BUYER_NICK: Final = "sandbox_c_1"
FIRST_TID: Final = (1 << 53) + 1_000_000_007
TradeStatus = Literal[
    "WAIT_BUYER_PAY",
    "WAIT_SELLER_SEND_GOODS",
    "WAIT_BUYER_CONFIRM_GOODS",
    "TRADE_FINISHED",
    "TRADE_CLOSED",
]


class TradeError(ValueError):
    """An admin request the shop cannot carry out (unknown trade, wrong state, no stock)."""


@dataclass
class Trade:
    tid: int
    oid: int
    num_iid: int
    sku_id: int | None
    outer_sku_id: str | None
    outer_iid: str | None
    title: str
    price: str
    quantity: int
    sub_stock: int
    status: TradeStatus
    created: datetime
    modified: datetime
    pay_time: datetime | None = None
    consign_time: datetime | None = None
    end_time: datetime | None = None
    refund_id: int | None = None
    # Where the trade stands with stock: "held" (sub_stock 2, unpaid), "deducted", "none".
    stock: Literal["held", "deducted", "none"] = "none"
    deducted: int = 0  # what Taobao actually took (a hand edit may have left less)

    @property
    def payment(self) -> str:
        return f"{float(self.price) * self.quantity:.2f}"


@dataclass
class TradeBook:
    """Every trade the sandbox shop has sold, by ``tid``."""

    trades: dict[int, Trade] = field(default_factory=dict)
    _next: int = FIRST_TID

    def create(
        self, catalog: Catalog, num_iid: int, sku_id: int | None, quantity: int, *, now: datetime
    ) -> tuple[Trade, list[Published]]:
        """A buyer orders ``quantity`` of the item (or of one SKU of it)."""
        item = catalog.get_item(num_iid) if _exists(catalog, num_iid) else None
        if item is None:
            raise TradeError(f"no item {num_iid}")
        sku = _sku(item, sku_id)
        if quantity <= 0:
            raise TradeError("quantity must be positive")
        if item.approve_status != "onsale":
            raise TradeError(f"item {num_iid} is not on sale")
        if _sellable(item, sku) < quantity:
            raise TradeError(f"only {_sellable(item, sku)} sellable")
        tid, self._next = self._next, self._next + 2
        trade = Trade(
            tid=tid,
            oid=tid + 1,
            num_iid=num_iid,
            sku_id=None if sku is None else sku.sku_id,
            outer_sku_id=None if sku is None else sku.outer_id,
            outer_iid=item.outer_id,
            title=item.title,
            price=(sku.price if sku is not None and sku.price else item.price),
            quantity=quantity,
            sub_stock=item.sub_stock,
            status="WAIT_BUYER_PAY",
            created=now,
            modified=now,
        )
        self.trades[tid] = trade
        published = [_trade_message("taobao_trade_TradeCreate", trade)]
        if item.sub_stock == 1:
            trade.deducted, moved = _deduct(catalog, item, sku, quantity, now)
            published += moved
            trade.stock = "deducted"
        else:
            _hold(item, sku, quantity)
            trade.stock = "held"
        return trade, published

    def pay(self, catalog: Catalog, tid: int, *, now: datetime) -> list[Published]:
        trade = self._in(tid, "WAIT_BUYER_PAY")
        item, sku = _listing(catalog, trade)
        published: list[Published] = []
        if trade.stock == "held":
            _hold(item, sku, -trade.quantity)
            trade.deducted, moved = _deduct(catalog, item, sku, trade.quantity, now)
            published += moved
            trade.stock = "deducted"
        trade.status, trade.pay_time, trade.modified = "WAIT_SELLER_SEND_GOODS", now, now
        return [_trade_message("taobao_trade_TradeBuyerPay", trade), *published]

    def close(self, catalog: Catalog, tid: int, *, now: datetime) -> list[Published]:
        """The buyer cancels, or Taobao closes an unpaid trade: stock comes back."""
        trade = self._in(tid, "WAIT_BUYER_PAY", "WAIT_SELLER_SEND_GOODS")
        published = self._release(catalog, trade, now)
        return [_close_message(trade), *published]

    def ship(self, tid: int, *, now: datetime) -> list[Published]:
        trade = self._in(tid, "WAIT_SELLER_SEND_GOODS")
        trade.status, trade.consign_time, trade.modified = "WAIT_BUYER_CONFIRM_GOODS", now, now
        return [_trade_message("taobao_trade_TradeSellerShip", trade)]

    def refund(self, catalog: Catalog, tid: int, *, now: datetime) -> list[Published]:
        """A full refund: before shipment it closes the trade (stock back); after, no
        stock moves."""
        trade = self._in(tid, "WAIT_SELLER_SEND_GOODS", "WAIT_BUYER_CONFIRM_GOODS")
        shipped = trade.status == "WAIT_BUYER_CONFIRM_GOODS"
        trade.refund_id = trade.tid + 7
        refund: Published = (
            "taobao_refund_RefundSuccess",
            {
                "refund_id": trade.refund_id,
                "tid": trade.tid,
                "oid": trade.oid,
                "buyer_nick": BUYER_NICK,
                "seller_nick": SELLER_NICK,
                "refund_fee": trade.payment,
                "bill_type": "return_bill" if shipped else "refund_bill",
                "refund_phase": "onsale",
                "modified": format_timestamp(now),
            },
        )
        if shipped:
            trade.status, trade.modified, trade.end_time = "TRADE_CLOSED", now, now
            return [refund, _close_message(trade)]
        released = self._release(catalog, trade, now)
        return [refund, _close_message(trade), *released]

    def modified_between(self, start: datetime, end: datetime) -> Iterator[Trade]:
        """Trades last modified in ``[start, end]``, by modified time then tid."""
        found = [t for t in self.trades.values() if start <= t.modified <= end]
        yield from sorted(found, key=lambda t: (t.modified, t.tid))

    def _release(self, catalog: Catalog, trade: Trade, now: datetime) -> list[Published]:
        item, sku = _listing(catalog, trade)
        published: list[Published] = []
        if trade.stock == "held":
            _hold(item, sku, -trade.quantity)
        elif trade.stock == "deducted":
            # What was taken comes back, no more (UNCONFIRMED: the platform's rule for a
            # deduction a hand edit cut short is not documented).
            _, published = _deduct(catalog, item, sku, -trade.deducted, now)
        trade.stock, trade.deducted = "none", 0
        trade.status, trade.modified, trade.end_time = "TRADE_CLOSED", now, now
        return published

    def _in(self, tid: int, *statuses: TradeStatus) -> Trade:
        trade = self.trades.get(tid)
        if trade is None:
            raise TradeError(f"no trade {tid}")
        if trade.status not in statuses:
            raise TradeError(f"trade {tid} is {trade.status}")
        return trade


def _exists(catalog: Catalog, num_iid: int) -> bool:
    try:
        catalog.get_item(num_iid)
    except TopFault:
        return False
    return True


def _sku(item: Item, sku_id: int | None) -> Sku | None:
    if sku_id is None:
        if item.skus:
            raise TradeError(f"item {item.num_iid} has SKUs: name sku_id")
        return None
    sku = item.sku(sku_id)
    if sku is None:
        raise TradeError(f"sku {sku_id} is not a SKU of item {item.num_iid}")
    return sku


def _listing(catalog: Catalog, trade: Trade) -> tuple[Item, Sku | None]:
    item = catalog.get_item(trade.num_iid)
    return item, None if trade.sku_id is None else item.sku(trade.sku_id)


def _sellable(item: Item, sku: Sku | None) -> int:
    if sku is None:
        return item.num - item.with_hold_quantity
    return sku.quantity - sku.with_hold_quantity


def _hold(item: Item, sku: Sku | None, quantity: int) -> None:
    if sku is None:
        item.with_hold_quantity += quantity
    else:
        sku.with_hold_quantity += quantity
        item.with_hold_quantity += quantity


def _deduct(
    catalog: Catalog, item: Item, sku: Sku | None, quantity: int, now: datetime
) -> tuple[int, list[Published]]:
    """Taobao's own stock change (negative: given back): what it really took (stock never
    goes below zero), and the messages of every change it made (a sell-out delists)."""
    before = Snapshot.of(item)
    taken = -catalog.platform_change(item, sku, -quantity, now=now)
    return taken, changes(before, item)


def _trade_message(topic: str, trade: Trade) -> Published:
    return (
        topic,
        {
            "tid": trade.tid,
            "oid": trade.oid,
            "buyer_nick": BUYER_NICK,
            "seller_nick": SELLER_NICK,
            "payment": trade.payment,
            "status": trade.status,
            "type": "fixed",
        },
    )


def _close_message(trade: Trade) -> Published:
    topic, content = _trade_message("taobao_trade_TradeClose", trade)
    # (What num and sku_num carry here is UNCONFIRMED: the sandbox sends the order's.)
    content.update(num_iid=trade.num_iid, num=trade.quantity)
    if trade.sku_id is not None:
        content.update(sku_id=trade.sku_id, sku_num=trade.quantity)
    return topic, content
