"""Typed values to Avro records (plain dicts) and back, one pair per schema.

``connector.contracts.codec`` does the wire format (framing, registry, fastavro); this
module only maps field names and types: the dataclasses' ``*_ms`` integers are the
schemas' ``timestamp-millis`` fields named without the suffix (``processed_at_ms`` is
``processed_at``), enums travel as their symbols, tuples as arrays.

The ``*_value`` functions take a record as fastavro decoded it against the bundled
(reader) schema, so every field is present, defaults filled in. A symbol the typed value
has no member for (an enum's ``UNKNOWN`` default) raises ``ValueError``; the codec turns
that into ``InvalidEvent``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from connector.contracts.events import OrderEvent, WarehouseEvent
from connector.contracts.records import (
    AlertKind,
    EventSource,
    PushedSku,
    ResultStatus,
    Severity,
    SkuResult,
    StockAlert,
    StockPush,
    SyncResult,
    TaobaoCall,
    TaobaoState,
)

__all__ = [
    "alert_record",
    "alert_value",
    "channel_symbol",
    "millis",
    "order_record",
    "push_record",
    "push_value",
    "result_record",
    "result_value",
    "warehouse_record",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLI: Final = timedelta(milliseconds=1)

_CHANNELS: Final = frozenset({"TAOBAO", "TMALL", "JD", "WEB", "POS", "WHOLESALE"})


def millis(value: datetime | int) -> int:
    """Milliseconds since the epoch of a fastavro ``timestamp-millis`` value.

    fastavro reads that logical type as an aware ``datetime``; integer arithmetic on the
    ``timedelta`` keeps every millisecond exact, where ``timestamp() * 1000`` would round.
    """
    if isinstance(value, datetime):
        return (value - _EPOCH) // _MILLI
    return value


def channel_symbol(channel: str) -> str:
    """A channel the schema has no symbol for travels as OTHER (the schema's default)."""
    symbol = channel.upper()
    return symbol if symbol in _CHANNELS else "OTHER"


# -- typed values to Avro records -------------------------------------------------------


def order_record(event: OrderEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "order_id": event.order_id,
        "channel": channel_symbol(event.channel),
        "shop": event.shop,
        "type": event.type.value.upper(),
        "lines": [
            {
                "sku": line.sku,
                "quantity": line.quantity,
                "warehouse": line.warehouse,
                "listing": line.listing,
            }
            for line in event.lines
        ],
        "occurred_at": event.occurred_at_ms,
    }


def warehouse_record(event: WarehouseEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "warehouse": event.warehouse,
        "type": event.type.value.upper(),
        "sku": event.sku,
        "quantity": event.quantity,
        "occurred_at": event.occurred_at_ms,
    }


def _call_record(call: TaobaoCall) -> dict[str, Any]:
    return {
        "method": call.method,
        "num_iid": call.num_iid,
        "sku_ids": list(call.sku_ids),
        "request_id": call.request_id,
        "outcome": call.outcome,
        "attempts": call.attempts,
    }


def result_record(result: SyncResult) -> dict[str, Any]:
    return {
        "event_id": result.event_id,
        "event_type": result.event_type,
        "source": {
            "topic": result.source.topic,
            "partition": result.source.partition,
            "offset": result.source.offset,
        },
        "status": result.status.value,
        "processed_at": result.processed_at_ms,
        "skus": [
            {
                "sku": s.sku,
                "effect": s.effect,
                "available": s.available,
                "version": s.version,
                "taobao_quantity": s.taobao_quantity,
                "taobao_state": s.taobao_state.value,
                "taobao_target": s.taobao_target,
                "taobao_version": s.taobao_version,
            }
            for s in result.skus
        ],
        "taobao_calls": [_call_record(c) for c in result.taobao_calls],
        "error_code": result.error_code,
        "error_message": result.error_message,
        "trace_id": result.trace_id,
    }


def alert_record(alert: StockAlert) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "message": alert.message,
        "raised_at": alert.raised_at_ms,
        "sku": alert.sku,
        "num_iid": alert.num_iid,
        "event_id": alert.event_id,
        "details": dict(alert.details),
        "trace_id": alert.trace_id,
    }


def push_record(push: StockPush) -> dict[str, Any]:
    return {
        "push_id": push.push_id,
        "num_iid": push.num_iid,
        "outcome": push.outcome.value,
        "pushed_at": push.pushed_at_ms,
        "skus": [
            {
                "sku": s.sku,
                "sku_id": s.sku_id,
                "quantity": s.quantity,
                "version": s.version,
                "confirmed": s.confirmed,
            }
            for s in push.skus
        ],
        "calls": [_call_record(c) for c in push.calls],
        "shelf": list(push.shelf),
        "error_class": push.error_class,
        "error_message": push.error_message,
        "attempts": push.attempts,
        "retry_at": push.retry_at_ms,
        "trace_id": push.trace_id,
        "event_trace_ids": list(push.event_trace_ids),
    }


# -- Avro records to typed values -------------------------------------------------------


def _call_value(c: dict[str, Any]) -> TaobaoCall:
    return TaobaoCall(
        method=c["method"],
        num_iid=c["num_iid"],
        sku_ids=tuple(c["sku_ids"]),
        request_id=c["request_id"],
        outcome=c["outcome"],
        attempts=c["attempts"],
    )


def result_value(r: dict[str, Any]) -> SyncResult:
    source = r["source"]
    return SyncResult(
        event_id=r["event_id"],
        event_type=r["event_type"],
        source=EventSource(source["topic"], source["partition"], source["offset"]),
        status=ResultStatus(r["status"]),
        processed_at_ms=millis(r["processed_at"]),
        skus=tuple(
            SkuResult(
                sku=s["sku"],
                effect=s["effect"],
                available=s["available"],
                version=s["version"],
                taobao_quantity=s["taobao_quantity"],
                taobao_state=TaobaoState(s["taobao_state"]),
                taobao_target=s["taobao_target"],
                taobao_version=s["taobao_version"],
            )
            for s in r["skus"]
        ),
        taobao_calls=tuple(_call_value(c) for c in r["taobao_calls"]),
        error_code=r["error_code"],
        error_message=r["error_message"],
        trace_id=r["trace_id"],
    )


def alert_value(r: dict[str, Any]) -> StockAlert:
    return StockAlert(
        alert_id=r["alert_id"],
        kind=AlertKind(r["kind"]),
        severity=Severity(r["severity"]),
        message=r["message"],
        raised_at_ms=millis(r["raised_at"]),
        sku=r["sku"],
        num_iid=r["num_iid"],
        event_id=r["event_id"],
        details=dict(r["details"]),
        trace_id=r["trace_id"],
    )


def push_value(r: dict[str, Any]) -> StockPush:
    retry_at = r["retry_at"]
    return StockPush(
        push_id=r["push_id"],
        num_iid=r["num_iid"],
        outcome=TaobaoState(r["outcome"]),
        pushed_at_ms=millis(r["pushed_at"]),
        skus=tuple(
            PushedSku(
                sku=s["sku"],
                sku_id=s["sku_id"],
                quantity=s["quantity"],
                version=s["version"],
                confirmed=s["confirmed"],
            )
            for s in r["skus"]
        ),
        calls=tuple(_call_value(c) for c in r["calls"]),
        shelf=tuple(r["shelf"]),
        error_class=r["error_class"],
        error_message=r["error_message"],
        attempts=r["attempts"],
        retry_at_ms=None if retry_at is None else millis(retry_at),
        trace_id=r["trace_id"],
        event_trace_ids=tuple(r["event_trace_ids"]),
    )
