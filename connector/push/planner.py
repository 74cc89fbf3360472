"""Planning what Taobao must be told about one item: pure, no I/O.

Input: what the connector knows of the item (shelf state, who delisted it, the last known
quantity of each SKU, whether it refuses full updates) and the new target of the SKUs that
changed. Output: the calls to make, in order. The rules (DESIGN.md, "Taobao rules"):

- Taobao shows ``max(0, available - safety_stock)``; absolute quantities make retries safe.
- An on-sale item cannot be set to zero: delist it first, then set the stock.
- A positive total on an item the *connector* delisted relists it (listing takes the
  quantity); an item the merchant delisted by hand is never relisted, only its stock set.
- An item with SKUs has total = sum of its SKUs, so the total after the update is the
  targets plus the SKUs this update leaves alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Action", "Delist", "ItemPlan", "ItemView", "Relist", "SetStock", "plan_item", "target"]

SkuKey = int | None  # Taobao sku_id; None for an item without SKUs


def target(available: int, safety_stock: int) -> int:
    """The quantity Taobao must show for a ledger availability."""
    return max(0, available - safety_stock)


@dataclass(frozen=True, slots=True)
class ItemView:
    """What the connector knows of a Taobao item before pushing to it."""

    num_iid: int
    on_sale: bool
    delisted_by_us: bool
    quantities: Mapping[SkuKey, int]  # last known Taobao quantity per SKU
    has_skus: bool = True


@dataclass(frozen=True, slots=True)
class SetStock:
    """Set these absolute quantities (full update, or increments on a locked item)."""

    quantities: Mapping[SkuKey, int]


@dataclass(frozen=True, slots=True)
class Delist:
    pass


@dataclass(frozen=True, slots=True)
class Relist:
    num: int  # listing takes the quantity (for items with SKUs, Taobao uses their sum)


Action = SetStock | Delist | Relist


@dataclass(frozen=True, slots=True)
class ItemPlan:
    actions: tuple[Action, ...]
    total: int  # the item's total on Taobao once the plan has run
    hand_delisted: bool  # stock set but left off the shelf: the merchant took it down


def plan_item(view: ItemView, targets: Mapping[SkuKey, int]) -> ItemPlan:
    """The calls that bring ``view`` to ``targets`` (and the right shelf state)."""
    if not targets:
        raise ValueError("nothing to plan: no targets")
    if any(q < 0 for q in targets.values()):
        raise ValueError("targets must not be negative")
    after = {**view.quantities, **targets}
    total = sum(after.values())
    stock = SetStock(dict(targets))
    if view.on_sale and total == 0:
        return ItemPlan((Delist(), stock), total, hand_delisted=False)
    if not view.on_sale and total > 0:
        if view.delisted_by_us:
            # Listing an item without SKUs sets its quantity: one call instead of two.
            actions: tuple[Action, ...] = (
                (Relist(total),) if not view.has_skus else (stock, Relist(total))
            )
            return ItemPlan(actions, total, hand_delisted=False)
        return ItemPlan((stock,), total, hand_delisted=True)
    return ItemPlan((stock,), total, hand_delisted=False)
