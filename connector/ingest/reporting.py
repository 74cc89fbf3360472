"""Building result events and the ingest loop's alerts from what the ledger did: pure, no I/O.

A result says what the ledger did with the event and where Taobao stood for each SKU at
that moment (from what the projection last recorded in the ledger): ingest never waits for
Taobao, so a fresh change is normally ``PENDING`` with the version Taobao must reach.
Taobao-side alerts (shelf changes, refusals, bans, unknown codes) come from the projection
(``connector.push.reporting``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import NamedTuple

from connector.contracts.events import OrderEvent, StockEvent, WarehouseType
from connector.contracts.records import (
    AlertKind,
    EventSource,
    ResultStatus,
    Severity,
    SkuResult,
    StockAlert,
    SyncResult,
    TaobaoState,
)
from connector.errors import InvalidEvent
from connector.ledger.outcomes import Effect, EventOutcome, LineOutcome, SkuStock, TaobaoView
from connector.push.planner import target

__all__ = [
    "Applied",
    "Standing",
    "alerts_for_applied",
    "alerts_for_rejection",
    "event_type",
    "rejected_result",
    "result_for",
]


class Applied(NamedTuple):
    """One input event the ledger took, with what it did and where it came from (a
    NamedTuple: one is built per event, and it builds faster than a frozen dataclass)."""

    event: StockEvent
    outcome: EventOutcome
    source: EventSource
    trace_id: str | None


def event_type(event: StockEvent) -> str:
    kind = "order" if isinstance(event, OrderEvent) else "warehouse"
    return f"{kind}.{event.type.value}"


@dataclass(frozen=True, slots=True)
class Standing:
    """Where Taobao stands for the batch's SKUs, read by the ledger's own apply call."""

    stock: Mapping[str, TaobaoView | SkuStock]  # pushed version, last push's state, quantity
    unmapped: Set[str] = frozenset()  # codes the mapping cache knows are not on Taobao
    safety_stock: int = 0


_SETTLED: dict[str | None, TaobaoState] = {
    TaobaoState.HAND_DELISTED.value: TaobaoState.HAND_DELISTED,
}


def _taobao_state(
    line: LineOutcome, stock: TaobaoView | SkuStock | None, unmapped: Set[str]
) -> TaobaoState:
    if line.sku in unmapped:
        return TaobaoState.UNMAPPED
    if stock is not None and stock.pushed >= line.version:
        # Taobao has this event's version (or a newer one): synced, or set but left down.
        return _SETTLED.get(stock.taobao_state, TaobaoState.SYNCED)
    if stock is not None and stock.taobao_state == TaobaoState.FAILED.value:
        return TaobaoState.FAILED  # the last push of this code was refused: see its alert
    if stock is not None and stock.taobao_state == TaobaoState.UNMAPPED.value:
        return TaobaoState.UNMAPPED  # the last lookup found no listing (the cache expired)
    return TaobaoState.PENDING


def _status(applied: Applied, states: Iterable[TaobaoState]) -> ResultStatus:
    if applied.outcome.duplicate:
        return ResultStatus.DUPLICATE
    found = set(states)
    if TaobaoState.FAILED in found:
        return ResultStatus.FAILED
    if TaobaoState.UNMAPPED in found:
        return ResultStatus.UNMAPPED
    return ResultStatus.APPLIED


def result_for(applied: Applied, standing: Standing, *, now_ms: int) -> SyncResult:
    """The result event of one applied (or duplicate) input event."""
    skus: list[SkuResult] = []
    for line in applied.outcome.lines:
        stock = standing.stock.get(line.sku)
        skus.append(
            SkuResult(
                sku=line.sku,
                effect=line.effect.value,
                available=line.available,
                version=line.version,
                taobao_quantity=stock.taobao_quantity if stock is not None else None,
                taobao_state=_taobao_state(line, stock, standing.unmapped),
                taobao_target=target(line.available, standing.safety_stock),
                taobao_version=stock.pushed if stock is not None and stock.pushed else None,
            )
        )
    status = _status(applied, (s.taobao_state for s in skus))
    failed = [s.sku for s in skus if s.taobao_state is TaobaoState.FAILED]
    return SyncResult(
        event_id=applied.event.event_id,
        event_type=event_type(applied.event),
        source=applied.source,
        status=status,
        processed_at_ms=now_ms,
        skus=tuple(skus),
        error_code="taobao" if failed and status is ResultStatus.FAILED else None,
        error_message=(
            f"the last Taobao push of {', '.join(failed)} was refused (see the push records)"
            if failed
            else None
        ),
        trace_id=applied.trace_id,
    )


def rejected_result(
    source: EventSource,
    rejection: InvalidEvent,
    *,
    event_id: str,
    kind: str,
    trace_id: str | None,
    now_ms: int,
) -> SyncResult:
    return SyncResult(
        event_id=event_id,
        event_type=kind,
        source=source,
        status=ResultStatus.REJECTED,
        processed_at_ms=now_ms,
        error_code=rejection.reason,
        error_message=str(rejection),
        trace_id=trace_id,
    )


def alerts_for_rejection(
    source: EventSource,
    rejection: InvalidEvent,
    *,
    event_id: str,
    trace_id: str | None,
    now_ms: int,
) -> StockAlert:
    where = f"{source.topic}:{source.partition}:{source.offset}"
    return StockAlert(
        alert_id=f"{where}:poison",
        kind=AlertKind.POISON_MESSAGE,
        severity=Severity.WARNING,
        message=f"rejected {where} ({rejection.reason}): {rejection}; dead-lettered",
        raised_at_ms=now_ms,
        event_id=event_id or None,
        details={
            "reason": rejection.reason,
            "topic": source.topic,
            "partition": str(source.partition),
            "offset": str(source.offset),
        },
        trace_id=trace_id,
    )


def _reduction(event: StockEvent, line: LineOutcome) -> int | None:
    """How much this event lowered the SKU's availability, if it did."""
    if isinstance(event, OrderEvent):
        quantity = next((ln.quantity for ln in event.lines if ln.sku == line.sku), None)
        # A shipment against its reservation moves stock out without changing availability.
        lowers = line.effect in (Effect.RESERVED, Effect.SHIPPED_WITHOUT_RESERVATION)
        return quantity if lowers else None
    if event.type is WarehouseType.DAMAGED:
        return event.quantity
    if event.type is WarehouseType.ADJUSTED and event.quantity < 0:
        return -event.quantity
    return None


def alerts_for_applied(
    applied: Applied, *, low_stock_threshold: int, now_ms: int
) -> list[StockAlert]:
    """Oversell and low stock caused by one event.

    A duplicate re-raises only its oversell (with the same alert id): the first delivery's
    alert may have been lost with a crash before it was produced.
    """
    alerts = []
    duplicate = applied.outcome.duplicate
    for line in applied.outcome.lines:
        if line.oversold:
            text = _oversold(line, applied)
            alerts.append(
                _line_alert(applied, line, AlertKind.OVERSELL, Severity.CRITICAL, text, now_ms)
            )
        elif (
            not duplicate
            and line.available <= low_stock_threshold
            and _crossed_low(applied.event, line, low_stock_threshold)
        ):
            text = f"{line.sku} low: {line.available} available (threshold {low_stock_threshold})"
            alerts.append(
                _line_alert(applied, line, AlertKind.LOW_STOCK, Severity.WARNING, text, now_ms)
            )
    return alerts


def _oversold(line: LineOutcome, applied: Applied) -> str:
    return (
        f"{line.sku} oversold by {event_type(applied.event)} {applied.event.event_id}: "
        f"available {line.available}; Taobao is set to 0"
    )


def _line_alert(
    applied: Applied,
    line: LineOutcome,
    kind: AlertKind,
    severity: Severity,
    message: str,
    now_ms: int,
) -> StockAlert:
    event_id = applied.event.event_id
    return StockAlert(
        # Deterministic: a replayed batch raises the same ids, so consumers can de-duplicate.
        alert_id=f"{event_id}:{kind.value.lower()}:{line.sku}",
        kind=kind,
        severity=severity,
        message=message,
        raised_at_ms=now_ms,
        sku=line.sku,
        event_id=event_id,
        details={
            "available": str(line.available),
            "reserved": str(line.reserved),
            "on_hand": str(line.on_hand),
            "version": str(line.version),
        },
        trace_id=applied.trace_id,
    )


def _crossed_low(event: StockEvent, line: LineOutcome, threshold: int) -> bool:
    reduced = _reduction(event, line)
    return reduced is not None and line.available <= threshold < line.available + reduced
