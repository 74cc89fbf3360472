"""What the ledger reports: pure values, no I/O (so reporting and planning depend on none)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

__all__ = ["Effect", "EventOutcome", "LineOutcome", "PushBase", "SkuStock", "TaobaoView"]


class Effect(StrEnum):
    """What one event did to one SKU (stored as the value of its de-dup key)."""

    RESERVED = "reserved"
    ORDER_ALREADY_CANCELLED = "order_already_cancelled"  # create after its cancel
    ORDER_ALREADY_SHIPPED = "order_already_shipped"  # create after its shipment
    RELEASED = "released"
    NOTHING_TO_RELEASE = "nothing_to_release"  # cancel before create: tombstone recorded
    ALREADY_SHIPPED = "already_shipped"  # cancel after shipment
    SHIPPED = "shipped"
    SHIPPED_WITHOUT_RESERVATION = "shipped_without_reservation"
    NO_STOCK_CHANGE = "no_stock_change"  # refund
    ON_HAND_CHANGED = "on_hand_changed"  # received, returned, damaged, adjusted
    STOCKTAKE_APPLIED = "stocktake_applied"
    SUPERSEDED_BY_STOCKTAKE = "superseded_by_stocktake"  # already counted by a stocktake
    STOCKTAKE_TOO_OLD = "stocktake_too_old"  # older than the movement log's horizon


# The outcomes are built for every line of every event: NamedTuples, immutable like a
# frozen dataclass but about 2.5 times cheaper to build.


class LineOutcome(NamedTuple):
    """One line's effect and its SKU's figures right after it."""

    sku: str
    effect: Effect
    duplicate: bool
    available: int
    reserved: int
    on_hand: int
    version: int
    oversold: bool  # this effect reduced availability and left it below zero
    # A duplicate of an application whose outputs may never have been produced (another
    # apply attempt, not yet marked reported): it is reported as that application.
    unreported: bool = False


class EventOutcome(NamedTuple):
    event_id: str
    lines: tuple[LineOutcome, ...]

    @property
    def duplicate(self) -> bool:
        """Every line was a duplicate of an application already reported: nothing to say
        but "duplicate". (An event whose application was never reported is reported as
        applied, with the effects it had then.)"""
        return all(line.duplicate and not line.unreported for line in self.lines)


class PushBase(NamedTuple):
    """Where a Taobao listing pushed by increments stands (fields ``b:`` / ``a:<listing>``
    of the SKU's hash): ``base`` is the target Taobao's quantity was last brought to, moved
    since by the Taobao-side orders on that listing the ledger applied (Taobao had already
    deducted or returned them); ``absolute_ms`` is Taobao's time of the last absolute write
    to it, which erased the deductions of orders placed before it, so those do not move
    the base when they arrive."""

    base: int
    absolute_ms: int


@dataclass(frozen=True, slots=True)
class SkuStock:
    sku: str
    on_hand: Mapping[str, int]  # per warehouse
    reserved: int
    available: int  # sum(on_hand) - reserved; negative when oversold
    version: int
    pushed: int  # highest version Taobao confirmed
    # What the projection last recorded for this code on Taobao (``None``: nothing yet):
    # the state of its last push and the quantity Taobao was told.
    taobao_state: str | None = None
    taobao_quantity: int | None = None
    # Per Taobao listing (``<num_iid>:<sku_id>``) pushed by increments: its push base
    # (``connector.push.bases``).
    bases: Mapping[str, PushBase] = field(default_factory=dict)
    # Per listing: when its newest Taobao-side order reached the ledger (epoch ms), and
    # since when its base is ambiguous (an order in the second of its absolute write).
    taobao_orders_ms: Mapping[str, int] = field(default_factory=dict)
    ambiguous: Mapping[str, int] = field(default_factory=dict)


class TaobaoView(NamedTuple):
    """Where Taobao stands for a SKU, as the projection last recorded it in the ledger."""

    pushed: int  # highest ledger version Taobao confirmed (0: none yet)
    taobao_state: str | None = None  # the state of its last push
    taobao_quantity: int | None = None  # the quantity Taobao was last told
