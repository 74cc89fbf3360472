"""What one batch of Taobao's messages becomes: pure, given the trades read for it.

Trade messages name the trades to read; each trade read gives its lines' events
(``connector.tmc.trades``); a line without a merchant code, or a trade Taobao no longer
knows, gives an alert instead (nothing is dropped silently). Every message of the batch
is confirmed once its outputs are acknowledged, the ones without a stock effect included,
so they do not pile up in the seller's queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from connector.contracts.events import OrderEvent
from connector.contracts.records import AlertKind, Severity, StockAlert
from connector.tmc.trades import (
    TRADE_TOPICS,
    TaobaoTrade,
    TmcMessage,
    TradeLine,
    merchant_code,
    trade_events,
)

__all__ = ["BatchOutputs", "batch_outputs", "trades_named"]


def trades_named(messages: Iterable[TmcMessage]) -> dict[int, int]:
    """tid -> when its newest message in the batch was published (epoch ms)."""
    named: dict[int, int] = {}
    for message in messages:
        tid = message.tid
        if message.topic in TRADE_TOPICS and tid is not None:
            named[tid] = max(named.get(tid, 0), message.pub_time_ms)
    return named


@dataclass(slots=True)
class BatchOutputs:
    events: list[OrderEvent] = field(default_factory=list)
    alerts: list[StockAlert] = field(default_factory=list)
    confirm: list[int] = field(default_factory=list)  # every message id of the batch


def batch_outputs(
    messages: Sequence[TmcMessage],
    trades: Mapping[int, TaobaoTrade],
    missing: Iterable[int],
    *,
    default_shop: str,
    now_ms: int,
) -> BatchOutputs:
    out = BatchOutputs(confirm=[m.id for m in messages])
    shops = {m.tid: m.user_nick for m in messages if m.tid is not None and m.user_nick}
    for tid in sorted(trades):
        trade = trades[tid]
        events, unknown = trade_events(
            trade, code_of=merchant_code, shop=shops.get(tid) or default_shop
        )
        out.events += events
        out.alerts += [_unmapped_line(trade, line, now_ms) for line in unknown]
    out.alerts += [_unknown_trade(tid, now_ms) for tid in sorted(set(missing))]
    return out


def _unmapped_line(trade: TaobaoTrade, line: TradeLine, now_ms: int) -> StockAlert:
    listing = f"item {line.num_iid}" + ("" if line.sku_id is None else f" SKU {line.sku_id}")
    return StockAlert(
        alert_id=f"taobao_order_unmapped:{trade.tid}:{line.oid}",
        kind=AlertKind.TAOBAO_ORDER_UNMAPPED,
        severity=Severity.WARNING,
        message=(
            f"Taobao order {trade.tid} line {line.oid} sold {line.quantity} of {listing}, "
            "which carries no merchant code (outer_id): the ledger does not count it. Set "
            "the listing's merchant code on Taobao and record the order by hand."
        ),
        raised_at_ms=now_ms,
        num_iid=line.num_iid,
        details={
            "tid": str(trade.tid),
            "oid": str(line.oid),
            "num_iid": str(line.num_iid),
            "sku_id": "" if line.sku_id is None else str(line.sku_id),
            "quantity": str(line.quantity),
        },
    )


def _unknown_trade(tid: int, now_ms: int) -> StockAlert:
    return StockAlert(
        alert_id=f"taobao_order_unmapped:{tid}",
        kind=AlertKind.TAOBAO_ORDER_UNMAPPED,
        severity=Severity.WARNING,
        message=(
            f"Taobao announced trade {tid}, but taobao.trade.fullinfo.get does not know it: "
            "its stock effect (if any) is not in the ledger. Check the trade in the seller "
            "centre."
        ),
        raised_at_ms=now_ms,
        details={"tid": str(tid)},
    )
