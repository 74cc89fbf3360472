"""Stock and shelf changes Taobao announces for an item, and whether the connector can
explain them: pure.

Taobao publishes ``taobao_item_ItemStockChanged`` for every change of a SKU's (or an
item's) quantity, whoever made it: the connector's own writes, Taobao's deductions for its
orders (at the order, or at payment for 付款减库存), the quantity it gives back when an
order closes, and a merchant's hand edit or another tool's. A change is *explained* when it
matches, within ``WINDOW_MS``, a write the connector recorded (same SKU, same quantity
after it) or a Taobao order on that SKU (the same units, at its creation, payment or
close). What is left was made by someone else: the bridge reports it and hands the SKU to
the projection, which writes the ledger's figure over it.

``taobao_item_ItemDownshelf`` carries the item id only: it is the connector's own when it
recorded a delisting just before, Taobao's when the item sold out, and the merchant's
otherwise (reported; the item then stays down).

UNCONFIRMED: the content of these messages beyond the fact sheet's field list (§5.3), and
whether a deduction at payment publishes one message or two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from connector.tmc.trades import TaobaoTrade, TmcMessage

__all__ = [
    "WINDOW_MS",
    "Downshelf",
    "StockChange",
    "TradeMove",
    "Write",
    "explained",
    "parse_item_message",
    "trade_moves",
]

WINDOW_MS: Final = 60_000
STOCK_CHANGED: Final = "taobao_item_ItemStockChanged"
DOWNSHELF: Final = "taobao_item_ItemDownshelf"


@dataclass(frozen=True, slots=True)
class StockChange:
    num_iid: int
    sku_id: int | None
    quantity: int  # after the change
    increment: int
    pub_ms: int


@dataclass(frozen=True, slots=True)
class Downshelf:
    num_iid: int
    pub_ms: int


@dataclass(frozen=True, slots=True)
class Write:
    """A quantity the connector set (Taobao's answer after one of its writes)."""

    sku_id: int | None
    quantity: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class TradeMove:
    """A stock change Taobao makes for its own order: ``delta`` units at one of ``at_ms``."""

    sku_id: int | None
    delta: int
    at_ms: tuple[int, ...]


def parse_item_message(message: TmcMessage) -> StockChange | Downshelf | None:
    content: Mapping[str, object] = message.content
    num_iid = message.num_iid
    if num_iid is None:
        return None
    if message.topic == DOWNSHELF:
        return Downshelf(num_iid, message.pub_time_ms)
    if message.topic != STOCK_CHANGED or content.get("increment") in (None, ""):
        return None
    sku = content.get("sku_id")
    sku_id = None if sku in (None, "", 0, "0") else int(str(sku))
    after = content.get("sku_num") if sku_id is not None else content.get("num")
    if after in (None, ""):
        return None
    return StockChange(
        num_iid, sku_id, int(str(after)), int(str(content["increment"])), message.pub_time_ms
    )


def trade_moves(trades: Iterable[TaobaoTrade], num_iid: int) -> list[TradeMove]:
    """What Taobao's own orders did to the item's stock: each line taken (at its creation
    or its payment) and, when it closed, given back."""
    moves: list[TradeMove] = []
    for trade in trades:
        for line in trade.lines:
            if line.num_iid != num_iid:
                continue
            taken = tuple(t for t in (trade.created_ms, trade.pay_ms) if t)
            moves.append(TradeMove(line.sku_id, -line.quantity, taken))
            ended = line.end_ms or trade.end_ms
            if ended:
                moves.append(TradeMove(line.sku_id, line.quantity, (ended,)))
    return moves


def explained(change: StockChange, writes: Iterable[Write], moves: Iterable[TradeMove]) -> bool:
    """Whether the connector or Taobao's own orders account for ``change``."""

    def near(at_ms: int) -> bool:
        return abs(at_ms - change.pub_ms) <= WINDOW_MS

    if any(
        w.sku_id == change.sku_id and w.quantity == change.quantity and near(w.at_ms)
        for w in writes
    ):
        return True
    return any(
        m.sku_id == change.sku_id and m.delta == change.increment and any(near(t) for t in m.at_ms)
        for m in moves
    )
