"""What the connector emits: one ``SyncResult`` per input event, and ``StockAlert``s.

Typed values, encoded to Avro by ``connector.codec`` with ``schemas/sync_result.avsc`` and
``schemas/stock_alert.avsc``. Enum members carry the Avro symbol as their value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "AlertKind",
    "EventSource",
    "ResultStatus",
    "Severity",
    "SkuResult",
    "StockAlert",
    "SyncResult",
    "TaobaoCall",
    "TaobaoState",
]


class ResultStatus(StrEnum):
    APPLIED = "APPLIED"  # the ledger took the event (its effect may be nothing; see effects)
    DUPLICATE = "DUPLICATE"  # seen before: no effect this time
    REJECTED = "REJECTED"  # bad input: sent to the dead-letter topic
    UNMAPPED = "UNMAPPED"  # applied to the ledger, but a SKU has no Taobao listing
    FAILED = "FAILED"  # applied to the ledger, but Taobao refused the update


class TaobaoState(StrEnum):
    SYNCED = "SYNCED"  # Taobao shows the target
    PENDING = "PENDING"  # not yet confirmed (outage, ban, lease held elsewhere): retried
    UNMAPPED = "UNMAPPED"  # no Taobao item carries this merchant code
    FAILED = "FAILED"  # Taobao refused; see the error and the alert
    HAND_DELISTED = "HAND_DELISTED"  # the merchant took the item down: stock set, not relisted


class AlertKind(StrEnum):
    OVERSELL = "OVERSELL"
    OUT_OF_STOCK_DELISTED = "OUT_OF_STOCK_DELISTED"
    RELISTED = "RELISTED"
    LOW_STOCK = "LOW_STOCK"
    TAOBAO_FAILURE = "TAOBAO_FAILURE"
    POISON_MESSAGE = "POISON_MESSAGE"
    UNMAPPED_SKU = "UNMAPPED_SKU"
    HAND_DELISTED = "HAND_DELISTED"
    CALL_LIMITED = "CALL_LIMITED"


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


@dataclass(frozen=True, slots=True)
class EventSource:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class SkuResult:
    sku: str
    effect: str  # what the ledger did, e.g. "reserved", "released", "nothing_to_release"
    available: int  # sum(on_hand) - reserved after the event (may be negative: oversold)
    version: int  # the SKU's ledger version after the event
    taobao_quantity: int | None  # the quantity pushed to Taobao, when known
    taobao_state: TaobaoState


@dataclass(frozen=True, slots=True)
class TaobaoCall:
    method: str
    num_iid: int | None
    sku_ids: tuple[int, ...]
    request_id: str | None
    outcome: str  # "ok" or the error class name


@dataclass(frozen=True, slots=True)
class SyncResult:
    event_id: str  # "" when the input could not be decoded far enough to have one
    event_type: str  # e.g. "order.created", "warehouse.stocktake", "unknown"
    source: EventSource
    status: ResultStatus
    processed_at_ms: int
    skus: tuple[SkuResult, ...] = ()
    taobao_calls: tuple[TaobaoCall, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True)
class StockAlert:
    alert_id: str  # deterministic, so consumers can de-duplicate a replayed alert
    kind: AlertKind
    severity: Severity
    message: str
    raised_at_ms: int
    sku: str | None = None
    num_iid: int | None = None
    event_id: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    trace_id: str | None = None
