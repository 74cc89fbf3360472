"""Taobao's own orders as the ledger's events: what a trade's state means for stock. Pure;
the bridge that consumes the message service (TMC) and fetches the trades is I/O.

A Taobao trade (``tid``) has one or more sub-orders (``oid``), one item or SKU each. Each
sub-order is its own order in the ledger (``order_id`` ``<tid>:<oid>``), so a partial
close or shipment moves only its line, and two sub-orders of the same SKU never share a
line.

The events come from the trade *as it stands*, not from the message that announced a
change: a message only says "trade ``tid`` changed". Each line's history is replayed from
its current status, in the order the ledger needs it (reference §5.3 status values):

=================================================  =========================================
the line now                                       events (in this order)
=================================================  =========================================
any status (the buyer ordered)                     created: taken from sale (Taobao deducts
                                                   it, or holds it until payment)
shipped: ``WAIT_BUYER_CONFIRM_GOODS``,             + shipped
``TRADE_BUYER_SIGNED``, ``TRADE_FINISHED``, or
closed after its consign time
closed (``TRADE_CLOSED``, ``…_BY_TAOBAO``)         + cancelled when it never shipped (the
                                                   reservation is released), refunded when
                                                   it had (no stock change: returned goods
                                                   come back as a warehouse return)
=================================================  =========================================

So messages that arrive out of order, twice, or not at all (a ``TradeClose`` before its
``TradeCreate``, a lost ``TradeSellerShip``) still give every line its events in the order
above: the ledger never sees a cancellation before the reservation it releases. Event ids
are deterministic (``taobao:<tid>:<oid>:<type>``), so an event derived again from a later
message is a duplicate the ledger (and the bridge's own record of what it sent) drops. Ids
are integers of any size (Taobao's exceed 2^53; Python's int keeps them exact).

UNCONFIRMED: how a partial refund (``TradePartlyRefund``) shows on the sub-order's status;
a line is read as closed only when its own status says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from connector.contracts.events import OrderEvent, OrderLine, OrderType
from connector.taobao.protocol import parse_timestamp, unwrap_list

__all__ = [
    "ITEM_TOPICS",
    "TRADE_FIELDS",
    "TRADE_TOPICS",
    "TaobaoTrade",
    "TmcMessage",
    "TradeLine",
    "line_history",
    "listing_of",
    "merchant_code",
    "parse_message",
    "parse_trade",
    "trade_events",
]

# Every trade topic the bridge permits: each means "read this trade again".
TRADE_TOPICS: Final = (
    "taobao_trade_TradeCreate",
    "taobao_trade_TradeBuyerPay",
    "taobao_trade_TradeClose",
    "taobao_trade_TradeCloseAndModifyDetailOrder",
    "taobao_trade_TradeSellerShip",
    "taobao_trade_TradeSuccess",
    "taobao_trade_TradePartlyRefund",
    "taobao_refund_RefundSuccess",
)
# Item topics: what happened to a listing on Taobao's side (a hand edit, a sell-out).
ITEM_TOPICS: Final = ("taobao_item_ItemStockChanged", "taobao_item_ItemDownshelf")
# The fields a trade is read with (taobao.trades.sold.increment.get, taobao.trade.fullinfo.get).
TRADE_FIELDS: Final = (
    "tid,status,created,modified,pay_time,consign_time,end_time,"
    "orders.oid,orders.num_iid,orders.sku_id,orders.outer_iid,orders.outer_sku_id,"
    "orders.num,orders.status,orders.consign_time,orders.end_time"
)
SHIPPED: Final = frozenset({"WAIT_BUYER_CONFIRM_GOODS", "TRADE_BUYER_SIGNED", "TRADE_FINISHED"})
CLOSED: Final = frozenset({"TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"})


@dataclass(frozen=True, slots=True)
class TmcMessage:
    id: int
    topic: str
    content: Mapping[str, Any]
    pub_time_ms: int
    user_nick: str | None = None

    @property
    def tid(self) -> int | None:
        return _opt_int(self.content.get("tid"))

    @property
    def num_iid(self) -> int | None:
        return _opt_int(self.content.get("num_iid"))


@dataclass(frozen=True, slots=True)
class TradeLine:
    oid: int
    num_iid: int
    sku_id: int | None
    outer_sku_id: str | None  # the SKU's merchant code
    outer_iid: str | None  # the item's merchant code (an item without SKUs)
    quantity: int
    status: str | None = None  # the sub-order's own status, where the trade says it
    consign_ms: int | None = None
    end_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TaobaoTrade:
    tid: int
    status: str
    modified_ms: int
    lines: tuple[TradeLine, ...]
    created_ms: int = 0
    consign_ms: int | None = None  # the trade's consign (shipment) time
    end_ms: int | None = None
    pay_ms: int | None = None


def _opt_int(value: Any) -> int | None:
    return None if value in (None, "", 0, "0") else int(value)


def _ms(value: Any) -> int | None:
    if not value:
        return None
    return int(parse_timestamp(str(value)).timestamp() * 1000)


def parse_message(raw: Mapping[str, Any]) -> TmcMessage:
    """One ``tmc_message`` of ``taobao.tmc.messages.consume``; ``content`` is a JSON string
    (parsed so that big ids stay exact integers)."""
    content = raw.get("content") or "{}"
    parsed = json.loads(content) if isinstance(content, str) else dict(content)
    nick = raw.get("user_nick")
    return TmcMessage(
        int(raw["id"]),
        str(raw["topic"]),
        parsed if isinstance(parsed, dict) else {},
        _ms(raw.get("pub_time")) or 0,
        str(nick) if nick else None,
    )


def parse_trade(raw: Mapping[str, Any]) -> TaobaoTrade:
    """A ``trade`` of ``taobao.trade.fullinfo.get`` / ``taobao.trades.sold.increment.get``
    (fields ``TRADE_FIELDS``)."""
    lines = tuple(
        TradeLine(
            oid=int(order["oid"]),
            num_iid=int(order["num_iid"]),
            sku_id=_opt_int(order.get("sku_id")),
            outer_sku_id=order.get("outer_sku_id") or None,
            outer_iid=order.get("outer_iid") or None,
            quantity=int(order["num"]),
            status=order.get("status") or None,
            consign_ms=_ms(order.get("consign_time")),
            end_ms=_ms(order.get("end_time")),
        )
        for order in unwrap_list(raw.get("orders"), "order")
    )
    modified_ms = _ms(raw.get("modified")) or 0
    return TaobaoTrade(
        int(raw["tid"]),
        str(raw.get("status", "")),
        modified_ms,
        lines,
        created_ms=_ms(raw.get("created")) or modified_ms,
        consign_ms=_ms(raw.get("consign_time")),
        end_ms=_ms(raw.get("end_time")),
        pay_ms=_ms(raw.get("pay_time")),
    )


def line_history(line: TradeLine, trade: TaobaoTrade) -> list[tuple[OrderType, int]]:
    """The ledger events this line's current state implies, in order, with when each
    happened (as far as the trade says)."""
    status = line.status or trade.status
    consigned = line.consign_ms or trade.consign_ms
    ended = line.end_ms or trade.end_ms or trade.modified_ms
    history = [(OrderType.CREATED, trade.created_ms)]
    shipped = status in SHIPPED or (status in CLOSED and consigned is not None)
    if shipped:
        history.append((OrderType.SHIPPED, consigned or trade.modified_ms))
    if status in CLOSED:
        history.append((OrderType.REFUNDED if shipped else OrderType.CANCELLED, ended))
    return history


def trade_events(
    trade: TaobaoTrade, *, code_of: Callable[[TradeLine], str | None], shop: str
) -> tuple[list[OrderEvent], list[TradeLine]]:
    """The ledger events the trade's state implies (every line, in lifecycle order), and
    the lines whose merchant code is unknown (they cannot reach the ledger: alerted)."""
    events: list[OrderEvent] = []
    unknown: list[TradeLine] = []
    for line in trade.lines:
        code = code_of(line)
        if code is None:
            unknown.append(line)
            continue
        order_id = f"{trade.tid}:{line.oid}"
        for kind, at_ms in line_history(line, trade):
            events.append(
                OrderEvent(
                    event_id=f"taobao:{order_id}:{kind.value}",
                    order_id=order_id,
                    channel="taobao",
                    shop=shop,
                    type=kind,
                    # Taobao took (or gave back) the stock of this listing itself.
                    lines=(OrderLine(code, line.quantity, listing=listing_of(line)),),
                    occurred_at_ms=at_ms,
                )
            )
    return events, unknown


def listing_of(line: TradeLine) -> str:
    """``<num_iid>:<sku_id>`` (``<num_iid>:`` without SKUs), as order lines carry it."""
    return f"{line.num_iid}:{'' if line.sku_id is None else line.sku_id}"


def merchant_code(line: TradeLine) -> str | None:
    """The code a trade line carries itself: the SKU's, else the item's (without SKUs)."""
    if line.sku_id is not None:
        return line.outer_sku_id
    return line.outer_iid
