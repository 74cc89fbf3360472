"""Pushing by increments against Taobao's own deductions: pure, no I/O.

With the message-service bridge on, Taobao deducts the stock of its own orders itself,
before the ledger hears of them. An absolute quantity computed from the ledger in that
moment would write back units already sold (an oversell window the connector opens), so a
listing is pushed by *increments* once its base is known:

- the **base** of a listing (``PushBase``, fields of the SKU's ledger hash) is the target
  Taobao's quantity was last brought to, moved since by every Taobao-side order on that
  listing the ledger applied (``ledger_apply.lua``'s ``move_base``, in the same atomic call:
  Taobao had already taken or given back those units);
- a push sends ``target - base``: everything that moved the target except Taobao's own
  orders on this listing, which Taobao applied already (a Taobao order on *another*
  listing of the same code is pushed here like any other channel's). Taobao applies an
  increment atomically on top of whatever it sold meanwhile, so the push never erases a
  deduction and never deducts an order twice;
- after the increment the base moves by what was sent (``HINCRBY``, so it commutes with
  the ledger moving it meanwhile).

A listing without a base (its first push, after a relist, after an increment whose outcome
is unknown) gets one absolute write, which sets the base to the quantity written and
records Taobao's time of it: orders placed before that moment were overwritten with the
rest, so when they reach the ledger they do not move the base (their deduction is then
pushed like any other change). A reply showing 0 after a decrease is read the same way (a
batch increment floors at zero on Taobao, reference §3.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from connector.ledger.outcomes import PushBase

__all__ = ["FLOORED", "increments", "listing_key"]

SkuKey = int | None
FLOORED: Final = 0  # a quantity that may be Taobao's floor rather than the sum sent


def listing_key(num_iid: int, sku_id: SkuKey) -> str:
    """``<num_iid>:<sku_id>``, ``<num_iid>:`` for an item without SKUs (as on order lines)."""
    return f"{num_iid}:{'' if sku_id is None else sku_id}"


def increments(
    targets: Mapping[SkuKey, int], bases: Mapping[SkuKey, PushBase | None]
) -> dict[SkuKey, int] | None:
    """The increment per SKU that brings it to its target (SKUs already there left out),
    or ``None`` when a SKU has no base: the item needs an absolute write."""
    deltas: dict[SkuKey, int] = {}
    for key, wanted in targets.items():
        base = bases.get(key)
        if base is None:
            return None
        if wanted != base.base:
            deltas[key] = wanted - base.base
    return deltas
