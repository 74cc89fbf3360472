"""Taobao's own orders as the ledger's events: what each message-service (TMC) trade message
means for stock. Pure; the bridge that consumes the messages and fetches the trades is I/O.

A Taobao trade (``tid``) has one or more sub-orders (``oid``), one item or SKU each. Each
sub-order is its own order in the ledger (``order_id`` ``<tid>:<oid>``), so a message that
names one ``oid`` (a partial close) moves only that line, and two sub-orders of the same
SKU never share a line. The ledger's order types map the messages as Taobao's stock moves
(reference §5.3 topics; the ledger's rules in ``connector.ledger.stock``):

================================  ===========  ==========================================
message                           ledger       why
================================  ===========  ==========================================
``taobao_trade_TradeCreate``      created      the buyer ordered: the quantity is taken
                                               from sale (Taobao deducts it, or holds it
                                               until payment)
``taobao_trade_TradeClose``,      cancelled    closed before shipment: released (after
``…CloseAndModifyDetailOrder``                 shipment nothing is reserved any more)
``taobao_trade_TradeSellerShip``  shipped      the lines whose own status says they left
                                               (a partial shipment ships only those)
``taobao_refund_RefundSuccess``   cancelled    a line that never shipped: released
                                  refunded     a shipped one: no stock change (returned
                                               goods come back as a warehouse return)
``TradeBuyerPay`` and the rest    –            nothing new for stock
================================  ===========  ==========================================

A message naming a sub-order (``oid``) moves only that line for a close or a refund; one
that names a sub-order the trade does not have moves nothing and reports the trade's
lines (alerted). ``TradePartlyRefund`` is not mapped yet: whether it ends a line is
UNCONFIRMED.

Event ids are deterministic (``taobao:<tid>:<oid>:<type>``): a redelivered message, or the
same change seen twice, is one event for the ledger's de-duplication. Ids are integers of
any size (Taobao's exceed 2^53; Python's int keeps them exact).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from connector.contracts.events import OrderEvent, OrderLine, OrderType
from connector.taobao.protocol import parse_timestamp, unwrap_list

__all__ = [
    "EFFECTS",
    "TRADE_TOPICS",
    "TaobaoTrade",
    "TmcMessage",
    "TradeLine",
    "merchant_code",
    "order_events",
    "parse_message",
    "parse_trade",
]

EFFECTS: Final[Mapping[str, OrderType]] = {
    "taobao_trade_TradeCreate": OrderType.CREATED,
    "taobao_trade_TradeClose": OrderType.CANCELLED,
    "taobao_trade_TradeCloseAndModifyDetailOrder": OrderType.CANCELLED,
    "taobao_trade_TradeSellerShip": OrderType.SHIPPED,
    "taobao_refund_RefundSuccess": OrderType.REFUNDED,
}
# A sub-order's own status before its goods left (reference §5.3 status values).
NOT_SHIPPED: Final = frozenset({"TRADE_NO_CREATE_PAY", "WAIT_BUYER_PAY", "WAIT_SELLER_SEND_GOODS",
                                "PAY_PENDING", "WAIT_PRE_AUTH_CONFIRM"})  # fmt: skip
CLOSED: Final = frozenset({"TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"})
# Every trade topic the bridge permits (the others carry nothing for stock, but are
# consumed and confirmed so they do not pile up).
TRADE_TOPICS: Final = (*EFFECTS, "taobao_trade_TradeBuyerPay", "taobao_trade_TradePartlyRefund")


@dataclass(frozen=True, slots=True)
class TmcMessage:
    id: int
    topic: str
    content: Mapping[str, Any]
    pub_time_ms: int

    @property
    def tid(self) -> int | None:
        value = self.content.get("tid")
        return None if value is None else int(value)

    @property
    def oid(self) -> int | None:
        value = self.content.get("oid")
        return None if value in (None, "", 0) else int(value)


@dataclass(frozen=True, slots=True)
class TradeLine:
    oid: int
    num_iid: int
    sku_id: int | None
    outer_sku_id: str | None  # the SKU's merchant code
    outer_iid: str | None  # the item's merchant code (an item without SKUs)
    quantity: int
    status: str | None = None  # the sub-order's own status, where the trade says it


@dataclass(frozen=True, slots=True)
class TaobaoTrade:
    tid: int
    status: str
    modified_ms: int
    lines: tuple[TradeLine, ...]
    consigned: bool = False  # the trade has a consign (shipment) time


def parse_message(raw: Mapping[str, Any]) -> TmcMessage:
    """One ``tmc_message`` of ``taobao.tmc.messages.consume``; ``content`` is a JSON string
    (parsed so that big ids stay exact integers)."""
    content = raw.get("content") or "{}"
    parsed = json.loads(content) if isinstance(content, str) else dict(content)
    pub_time = raw.get("pub_time")
    pub_ms = int(parse_timestamp(str(pub_time)).timestamp() * 1000) if pub_time else 0
    return TmcMessage(int(raw["id"]), str(raw["topic"]), parsed, pub_ms)


def parse_trade(raw: Mapping[str, Any]) -> TaobaoTrade:
    """A ``trade`` of ``taobao.trade.fullinfo.get`` / ``taobao.trades.sold.increment.get``
    (fields ``tid,status,modified,orders``)."""
    lines = tuple(
        TradeLine(
            oid=int(order["oid"]),
            num_iid=int(order["num_iid"]),
            sku_id=int(order["sku_id"]) if order.get("sku_id") else None,
            outer_sku_id=order.get("outer_sku_id") or None,
            outer_iid=order.get("outer_iid") or None,
            quantity=int(order["num"]),
            status=order.get("status") or None,
        )
        for order in unwrap_list(raw.get("orders"), "order")
    )
    modified = raw.get("modified")
    modified_ms = int(parse_timestamp(str(modified)).timestamp() * 1000) if modified else 0
    return TaobaoTrade(
        int(raw["tid"]),
        str(raw.get("status", "")),
        modified_ms,
        lines,
        consigned=bool(raw.get("consign_time")),
    )


def order_events(
    message: TmcMessage,
    trade: TaobaoTrade,
    *,
    code_of: Callable[[TradeLine], str | None],
    shop: str,
) -> tuple[list[OrderEvent], list[TradeLine]]:
    """The ledger events one message means (none for a topic without a stock effect), and
    the lines whose merchant code is unknown (they cannot reach the ledger: alerted)."""
    kind = EFFECTS.get(message.topic)
    if kind is None:
        return [], []
    lines: Sequence[TradeLine] = trade.lines
    named = message.oid
    if named is not None and kind in (OrderType.CANCELLED, OrderType.REFUNDED):
        lines = [line for line in trade.lines if line.oid == named]
        if not lines:
            return [], list(trade.lines)  # a sub-order this trade does not have
    events: list[OrderEvent] = []
    unknown: list[TradeLine] = []
    for line in lines:
        line_kind = _line_kind(kind, line, trade)
        if line_kind is None:
            continue
        code = code_of(line)
        if code is None:
            unknown.append(line)
            continue
        kind_here = line_kind
        events.append(
            OrderEvent(
                event_id=f"taobao:{trade.tid}:{line.oid}:{kind_here.value}",
                order_id=f"{trade.tid}:{line.oid}",
                channel="taobao",
                shop=shop,
                type=kind_here,
                lines=(OrderLine(code, line.quantity),),
                occurred_at_ms=message.pub_time_ms or trade.modified_ms,
            )
        )
    return events, unknown


def _line_kind(kind: OrderType, line: TradeLine, trade: TaobaoTrade) -> OrderType | None:
    """What the message means for this line (``None``: nothing)."""
    if kind is OrderType.SHIPPED:
        shipped = line.status is None or line.status not in NOT_SHIPPED | CLOSED
        return OrderType.SHIPPED if shipped else None
    if kind is OrderType.REFUNDED:
        before_shipment = line.status in NOT_SHIPPED or (
            line.status in CLOSED and not trade.consigned
        )
        return OrderType.CANCELLED if before_shipment else OrderType.REFUNDED
    return kind


def merchant_code(line: TradeLine) -> str | None:
    """The code a trade line carries itself: the SKU's, else the item's (without SKUs)."""
    if line.sku_id is not None:
        return line.outer_sku_id
    return line.outer_iid
