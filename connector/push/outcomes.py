"""What a push reports: pure values, no I/O (the projection loop and reporting read them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from connector.contracts.records import PushedSku, TaobaoCall, TaobaoState

__all__ = ["ItemPush", "ItemTransition", "PushReport", "SkuPush", "Transition"]


class Transition(IntEnum):
    DELISTED = 1
    RELISTED = 2
    HAND_DELISTED = 3
    WITHHELD = 4  # a target below what unpaid orders hold: set to the hold instead


@dataclass(frozen=True, slots=True)
class ItemTransition:
    num_iid: int
    kind: Transition
    skus: tuple[str, ...]
    version: int  # the newest ledger version among the item's codes: makes alert ids stable


@dataclass(frozen=True, slots=True)
class SkuPush:
    """What happened on Taobao for one merchant code (all its listings combined)."""

    sku: str
    state: TaobaoState
    quantity: int | None  # the quantity Taobao was given (when it was)
    version: int | None  # the ledger version that quantity came from
    calls: tuple[TaobaoCall, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ItemPush:
    """One item pushed under its lease: what was sent, what Taobao said, what was confirmed."""

    num_iid: int
    state: TaobaoState
    skus: tuple[PushedSku, ...]
    calls: tuple[TaobaoCall, ...] = ()
    transitions: tuple[Transition, ...] = ()
    error_class: str | None = None  # see ``error_class`` in connector.push.projection
    error: str | None = None
    error_code: int | None = None  # TOP's code and sub code of the error, when it had them
    error_sub_code: str | None = None
    retry_at_ms: int | None = None
    trace_id: str | None = None
    event_trace_ids: tuple[str, ...] = ()
    trace_headers: tuple[tuple[str, bytes], ...] = ()  # the push span's W3C context
    pushed_at_ms: int | None = None  # when the item's push ended

    @property
    def version(self) -> int:
        """The newest ledger version among the item's codes (stable ids for its record)."""
        return max((s.version for s in self.skus if s.version is not None), default=0)


@dataclass(slots=True)
class PushReport:
    skus: dict[str, SkuPush] = field(default_factory=dict)
    items: list[ItemPush] = field(default_factory=list)
    transitions: list[ItemTransition] = field(default_factory=list)
    unmapped: dict[str, int] = field(default_factory=dict)  # code -> ledger version, found now
    retry_after_s: float | None = None  # a ban or an outage: the projection waits, then retries
    limited: bool = False  # retry_after_s comes from a call limit (code 7 or our own budget)
