"""What the connector emits: one ``SyncResult`` per input event, ``StockAlert``s, and one
``StockPush`` per Taobao item the projection loop pushes.

Typed values, encoded to Avro by ``connector.contracts.codec`` with
``schemas/sync_result.avsc``, ``schemas/stock_alert.avsc`` and ``schemas/stock_push.avsc``
(``connector.contracts.convert`` maps the fields). Enum members carry the Avro symbol as
their value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

__all__ = [
    "AlertKind",
    "EventSource",
    "PushedSku",
    "ResultStatus",
    "Severity",
    "SkuResult",
    "StockAlert",
    "StockPush",
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
    SYNCED = "SYNCED"  # Taobao shows the target (has confirmed this ledger version or newer)
    PENDING = "PENDING"  # not yet confirmed (queued, outage, ban, lease held elsewhere)
    UNMAPPED = "UNMAPPED"  # no Taobao item carries this merchant code
    FAILED = "FAILED"  # Taobao refused the last push; see the push record and the alert
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
    LEDGER_LOST = "LEDGER_LOST"
    LEDGER_BEHIND = "LEDGER_BEHIND"
    # A Taobao-side order line the bridge cannot hand to the ledger (no merchant code on
    # the listing, or a trade Taobao no longer knows).
    TAOBAO_ORDER_UNMAPPED = "TAOBAO_ORDER_UNMAPPED"
    # The seller's session, its write permission or its refresh token expires soon.
    SESSION_EXPIRING = "SESSION_EXPIRING"
    # Unpaid Taobao orders hold more than the target: set to what they hold (none for sale).
    STOCK_WITHHELD = "STOCK_WITHHELD"
    # At the rate so far, today's calls will pass 80 % of TAOBAO_DAILY_QUOTA.
    CALL_QUOTA_LOW = "CALL_QUOTA_LOW"
    # A stock change on Taobao that neither the connector nor a Taobao order made.
    TAOBAO_STOCK_CHANGED = "TAOBAO_STOCK_CHANGED"


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


# Built for every input (the result and its parts): NamedTuples, immutable like frozen
# dataclasses but about 2.5 times cheaper to build.


class EventSource(NamedTuple):
    topic: str
    partition: int
    offset: int


class SkuResult(NamedTuple):
    sku: str
    effect: str  # what the ledger did, e.g. "reserved", "released", "nothing_to_release"
    available: int  # sum(on_hand) - reserved after the event (may be negative: oversold)
    version: int  # the SKU's ledger version after the event
    taobao_quantity: int | None  # what Taobao was last told for this code, when known
    taobao_state: TaobaoState  # where Taobao stood for this event when the result was made
    taobao_target: int | None = None  # max(0, available - safety stock): what Taobao must show
    taobao_version: int | None = None  # the newest ledger version Taobao had confirmed then


@dataclass(frozen=True, slots=True)
class TaobaoCall:
    method: str
    num_iid: int | None
    sku_ids: tuple[int, ...]
    request_id: str | None
    outcome: str  # "ok" or the error class name
    attempts: int = 1  # HTTP requests this call took, retries included


class SyncResult(NamedTuple):
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


@dataclass(frozen=True, slots=True)
class PushedSku:
    """One merchant code in a push: what Taobao was told, from which ledger version."""

    sku: str  # merchant code (outer_id)
    sku_id: int | None  # Taobao's SKU id; None for an item without SKUs
    quantity: int | None  # the quantity sent (None when nothing was computed, e.g. lease lost)
    version: int | None  # the ledger version that quantity came from
    confirmed: bool = False  # Taobao accepted it: the ledger recorded this version as pushed


@dataclass(frozen=True, slots=True)
class StockPush:
    """One push of one Taobao item by the projection loop, and what came of it."""

    push_id: str  # deterministic per item, ledger version and attempt time
    num_iid: int
    outcome: TaobaoState  # SYNCED, HAND_DELISTED, PENDING (retried later) or FAILED
    pushed_at_ms: int
    skus: tuple[PushedSku, ...] = ()
    calls: tuple[TaobaoCall, ...] = ()  # every TOP call made, in order (method, ids, outcome)
    shelf: tuple[str, ...] = ()  # shelf transitions: DELISTED, RELISTED, HAND_DELISTED
    error_class: str | None = None  # e.g. "call_limited", "transient", "caller", "auth"
    error_message: str | None = None
    attempts: int = 0  # HTTP requests sent for this push, retries included
    retry_at_ms: int | None = None  # when the codes not confirmed will be tried again
    trace_id: str | None = None  # the push's own trace
    event_trace_ids: tuple[str, ...] = ()  # traces of the input events it carries (span links)
