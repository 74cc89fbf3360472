"""One item's push as the projection combines it, and the policy for failed pushes: pure.

``ItemOutcome`` is what pushing one item produced (versions read, quantities sent, the
state, the calls); ``failure_policy`` says what a failure leaves its codes in and when to
try again; ``item_push`` turns an outcome into the ``ItemPush`` a push record is made of.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from connector.contracts.records import PushedSku, TaobaoCall, TaobaoState
from connector.errors import (
    TaobaoAuthError,
    TaobaoCallerError,
    TaobaoCallLimited,
    TaobaoError,
    TaobaoFullUpdateForbidden,
    TaobaoSessionError,
    TaobaoTransientError,
    TaobaoUnknownOutcome,
)
from connector.push.items import SkuKey
from connector.push.outcomes import ItemPush, ItemTransition
from connector.taobao.client import CallRecord

__all__ = [
    "FAILED_RETRY_S",
    "ITEM_GONE",
    "LEASE_BUSY_RETRY_S",
    "PARKED_RETRY_S",
    "RANK",
    "SYNCED",
    "TRANSIENT_RETRY_S",
    "ItemOutcome",
    "app_wide_error",
    "app_wide_retry",
    "calls_of",
    "error_class",
    "failure_policy",
    "item_push",
    "not_pushed",
]

TRANSIENT_RETRY_S: Final = 10.0
FAILED_RETRY_S: Final = 300.0
# A refusal (isv.*) repeats until something changes: the code waits for its next change
# (which brings it forward at once), with a daily try as the backstop.
PARKED_RETRY_S: Final = 86_400.0
LEASE_BUSY_RETRY_S: Final = 1.0
ITEM_GONE: Final = ("isv.item-not-exist", "isv.item-is-delete")
SYNCED: Final = frozenset({TaobaoState.SYNCED, TaobaoState.HAND_DELISTED})
RANK: Final = {
    TaobaoState.SYNCED: 0,
    TaobaoState.HAND_DELISTED: 1,
    TaobaoState.UNMAPPED: 2,
    TaobaoState.PENDING: 3,
    TaobaoState.FAILED: 4,
}


@dataclass(slots=True)
class ItemOutcome:
    """One item's push, before codes with several listings are combined."""

    num_iid: int
    read: dict[str, int | None]  # code -> ledger version read (None: never read)
    targets: dict[str, int]  # code -> quantity pushed
    state: TaobaoState
    retry_s: float = 0.0
    error: TaobaoError | None = None
    calls: tuple[TaobaoCall, ...] = ()
    transitions: list[ItemTransition] = field(default_factory=list)
    # Pushed under the lease (so it gets a push record); False when the lease was busy or
    # shutdown came first: nothing was sent for it.
    leased: bool = True
    listings: dict[str, SkuKey] = field(default_factory=dict)  # code -> Taobao sku_id
    trace_id: str | None = None
    trace_headers: tuple[tuple[str, bytes], ...] = ()
    event_trace_ids: tuple[str, ...] = ()
    finished_ms: int | None = None  # when this item's push ended (its calls returned)


def calls_of(records: Sequence[CallRecord]) -> tuple[TaobaoCall, ...]:
    return tuple(
        TaobaoCall(r.method, r.num_iid, r.sku_ids, r.request_id, r.outcome, r.attempts)
        for r in records
    )


_ERROR_CLASSES: Final = (
    (TaobaoCallLimited, "call_limited"),
    (TaobaoUnknownOutcome, "unknown_outcome"),
    (TaobaoTransientError, "transient"),
    (TaobaoSessionError, "session"),
    (TaobaoAuthError, "auth"),
    (TaobaoFullUpdateForbidden, "full_update_forbidden"),
    (TaobaoCallerError, "caller"),
)


def error_class(exc: TaobaoError) -> str:
    """What the caller should make of a failed push, as push records name it."""
    return next((name for cls, name in _ERROR_CLASSES if isinstance(exc, cls)), "platform")


def failure_policy(exc: TaobaoError) -> tuple[TaobaoState, float]:
    """The state a failed push leaves its codes in, and when to try again."""
    if isinstance(exc, TaobaoCallLimited):
        return TaobaoState.PENDING, max(exc.retry_after_s, 1.0)
    if isinstance(exc, TaobaoTransientError | TaobaoUnknownOutcome):
        return TaobaoState.PENDING, TRANSIENT_RETRY_S
    if (exc.sub_code or "").startswith(ITEM_GONE):
        return TaobaoState.PENDING, TRANSIENT_RETRY_S  # looked up again next time
    if isinstance(exc, TaobaoCallerError) and (
        (exc.sub_code or "").startswith("isv.") or exc.code in (40, 41)
    ):
        # Taobao refused this request: sending it again unchanged is refused again.
        return TaobaoState.FAILED, PARKED_RETRY_S
    # Session, credentials, the platform failing: an operator has to act; retry slowly.
    return TaobaoState.FAILED, FAILED_RETRY_S


def app_wide_error(exc: TaobaoError) -> bool:
    """An error that stops every call of the app, not one item's: a call limit, or the
    platform being unreachable."""
    if isinstance(exc, TaobaoCallLimited):
        return exc.app_wide
    return isinstance(exc, TaobaoTransientError | TaobaoUnknownOutcome)


def app_wide_retry(
    leased: Sequence[ItemOutcome], lookups: Mapping[str, TaobaoError]
) -> tuple[float | None, bool]:
    """A ban (or our own budget) stops every call; so does an outage: every item pushed and
    every failed lookup failing on the platform's side. One item's own failure is handled by
    rescheduling that item alone. ``leased``: the items actually pushed (not the ones
    another replica held). Returns the time to wait and whether it is a call limit."""
    errors = [o.error for o in leased] + list(lookups.values())
    limits = [e.retry_after_s for e in errors if isinstance(e, TaobaoCallLimited) and e.app_wide]
    if limits:
        return max(max(limits), 1.0), True
    if errors and all(e is not None and app_wide_error(e) for e in errors):
        return TRANSIENT_RETRY_S, False
    return None, False


def not_pushed(num_iid: int, skus: Mapping[SkuKey, str]) -> ItemOutcome:
    """An item nothing was sent for (lease held elsewhere, shutdown): its codes stay pending."""
    read: dict[str, int | None] = dict.fromkeys(skus.values())
    return ItemOutcome(num_iid, read, {}, TaobaoState.PENDING, leased=False)


def item_push(outcome: ItemOutcome, confirmed: Mapping[str, int], now_ms: int) -> ItemPush:
    skus = tuple(
        PushedSku(
            code,
            outcome.listings.get(code),
            outcome.targets.get(code),
            version,
            confirmed=code in confirmed and version is not None and confirmed[code] <= version,
        )
        for code, version in outcome.read.items()
    )
    settled = all(s.confirmed for s in skus)
    return ItemPush(
        num_iid=outcome.num_iid,
        state=outcome.state,
        skus=skus,
        calls=outcome.calls,
        transitions=tuple(t.kind for t in outcome.transitions),
        error_class=error_class(outcome.error) if outcome.error else None,
        error=str(outcome.error) if outcome.error else None,
        error_code=outcome.error.code if outcome.error else None,
        error_sub_code=outcome.error.sub_code if outcome.error else None,
        retry_at_ms=None if settled else now_ms + int(outcome.retry_s * 1000),
        trace_id=outcome.trace_id,
        event_trace_ids=outcome.event_trace_ids,
        trace_headers=outcome.trace_headers,
        pushed_at_ms=outcome.finished_ms,
    )
