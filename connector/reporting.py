"""Building result events and alerts from what the ledger and Taobao said: pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

from connector.errors import InvalidEvent
from connector.events import OrderEvent, StockEvent, WarehouseType
from connector.ledger import Effect, EventOutcome, LineOutcome
from connector.projection import ItemTransition, SkuPush, Transition
from connector.records import (
    AlertKind,
    EventSource,
    ResultStatus,
    Severity,
    SkuResult,
    StockAlert,
    SyncResult,
    TaobaoCall,
    TaobaoState,
)

__all__ = [
    "Applied",
    "alerts_for_applied",
    "alerts_for_rejection",
    "alerts_for_transitions",
    "event_type",
    "rejected_result",
    "result_for",
]


@dataclass(frozen=True, slots=True)
class Applied:
    """One input event the ledger took, with what it did and where it came from."""

    event: StockEvent
    outcome: EventOutcome
    source: EventSource
    trace_id: str | None


def event_type(event: StockEvent) -> str:
    kind = "order" if isinstance(event, OrderEvent) else "warehouse"
    return f"{kind}.{event.type.value}"


def _taobao_state(
    line: LineOutcome, push: SkuPush | None, pushed: Mapping[str, int], unmapped: Set[str]
) -> TaobaoState:
    if push is not None:
        return push.state
    # Not pushed in this batch (no stock change): synced iff Taobao has this version,
    # unless Taobao has no listing for the code at all.
    if line.sku in unmapped:
        return TaobaoState.UNMAPPED
    return TaobaoState.SYNCED if pushed.get(line.sku, 0) >= line.version else TaobaoState.PENDING


def _status(applied: Applied, states: Iterable[TaobaoState]) -> ResultStatus:
    if applied.outcome.duplicate:
        return ResultStatus.DUPLICATE
    found = set(states)
    if TaobaoState.FAILED in found:
        return ResultStatus.FAILED
    if TaobaoState.UNMAPPED in found:
        return ResultStatus.UNMAPPED
    return ResultStatus.APPLIED


def result_for(
    applied: Applied,
    pushes: Mapping[str, SkuPush],
    pushed_versions: Mapping[str, int],
    *,
    now_ms: int,
    unmapped: Set[str] = frozenset(),
) -> SyncResult:
    """The result event of one applied (or duplicate) input event.

    ``pushed_versions`` and ``unmapped`` describe the SKUs not pushed in this batch: the
    version Taobao has, and the codes known not to be listed on Taobao."""
    skus: list[SkuResult] = []
    calls: dict[tuple[object, ...], TaobaoCall] = {}
    errors: list[str] = []
    for line in applied.outcome.lines:
        push = pushes.get(line.sku)
        state = _taobao_state(line, push, pushed_versions, unmapped)
        quantity = push.quantity if push is not None else None
        skus.append(
            SkuResult(line.sku, line.effect.value, line.available, line.version, quantity, state)
        )
        if push is not None:
            calls.update({(c.method, c.num_iid, c.sku_ids, c.request_id): c for c in push.calls})
            if push.error:
                errors.append(f"{line.sku}: {push.error}")
    status = _status(applied, (s.taobao_state for s in skus))
    return SyncResult(
        event_id=applied.event.event_id,
        event_type=event_type(applied.event),
        source=applied.source,
        status=status,
        processed_at_ms=now_ms,
        skus=tuple(skus),
        taobao_calls=tuple(calls.values()),
        error_code="taobao" if errors and status is ResultStatus.FAILED else None,
        error_message="; ".join(errors)[:2000] or None,
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
    applied: Applied,
    pushes: Mapping[str, SkuPush],
    *,
    low_stock_threshold: int,
    now_ms: int,
) -> list[StockAlert]:
    """Oversell, low stock, unmapped and Taobao failures caused by one event.

    A duplicate re-raises only its oversell (with the same alert id): the first delivery's
    alert may have been lost with a crash before it was produced.
    """
    if applied.outcome.duplicate:
        return [
            _line_alert(
                applied,
                line,
                AlertKind.OVERSELL,
                Severity.CRITICAL,
                _oversold(line, applied),
                now_ms,
            )
            for line in applied.outcome.lines
            if line.oversold
        ]
    alerts = []
    for line in applied.outcome.lines:
        push = pushes.get(line.sku)
        state = push.state if push is not None else None
        if line.oversold:
            text = _oversold(line, applied)
            alerts.append(
                _line_alert(applied, line, AlertKind.OVERSELL, Severity.CRITICAL, text, now_ms)
            )
        elif _crossed_low(applied.event, line, low_stock_threshold):
            text = f"{line.sku} low: {line.available} available (threshold {low_stock_threshold})"
            alerts.append(
                _line_alert(applied, line, AlertKind.LOW_STOCK, Severity.WARNING, text, now_ms)
            )
        if state is TaobaoState.UNMAPPED:
            text = f"{line.sku} has no Taobao listing (merchant code unknown): ledger updated only"
            alerts.append(
                _line_alert(applied, line, AlertKind.UNMAPPED_SKU, Severity.WARNING, text, now_ms)
            )
        if state is TaobaoState.FAILED and push is not None:
            text = f"Taobao refused the update of {line.sku}: {push.error}"
            alerts.append(
                _line_alert(
                    applied, line, AlertKind.TAOBAO_FAILURE, Severity.CRITICAL, text, now_ms
                )
            )
    return alerts


def _oversold(line: LineOutcome, applied: Applied) -> str:
    return (
        f"{line.sku} oversold by {event_type(applied.event)} {applied.event.event_id}: "
        f"available {line.available}; Taobao shows 0"
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


_TRANSITION_ALERTS = {
    Transition.DELISTED: (AlertKind.OUT_OF_STOCK_DELISTED, Severity.WARNING, "sold out: delisted"),
    Transition.RELISTED: (AlertKind.RELISTED, Severity.INFO, "restocked: relisted"),
    Transition.HAND_DELISTED: (
        AlertKind.HAND_DELISTED,
        Severity.INFO,
        "taken down by the merchant: stock set, left off the shelf",
    ),
}


def alerts_for_transitions(
    transitions: Sequence[ItemTransition], *, now_ms: int
) -> list[StockAlert]:
    """Shelf changes the connector made, or declined to make."""
    alerts = []
    for t in transitions:
        kind, severity, what = _TRANSITION_ALERTS[t.kind]
        skus = ", ".join(t.skus)
        alerts.append(
            StockAlert(
                # Stable across a replay: the item, the change and the ledger version.
                alert_id=f"{t.num_iid}:{kind.value.lower()}:v{t.version}",
                kind=kind,
                severity=severity,
                message=f"item {t.num_iid} ({skus}) {what}",
                raised_at_ms=now_ms,
                num_iid=t.num_iid,
                details={"skus": skus},
            )
        )
    return alerts
