"""The sandbox's shop and the platform's stock and listing rules: the :class:`Catalog`.

Pure code, no I/O and no hidden clock: every operation that changes something takes ``now``.
Each operation validates everything first and only then writes, so a rejected call
(a :class:`~connector.sandbox.model.TopFault`) leaves the catalog exactly as it was. The
records it holds are in :mod:`connector.sandbox.model`; the catalog JSON format
(``--catalog FILE``) is described in :mod:`connector.sandbox.catalog_format`.

Stock rules (reference §3, with the sandbox's choices where the platform is UNCONFIRMED):

* an item with SKUs always has ``num == sum(sku.quantity)``; an item-level quantity update on
  it is refused (``isv.item-quantity-item-update-service-error``);
* full updates need ``quantity >= 0``; an incremental ``taobao.item.quantity.update`` may not
  go below 0, while an incremental ``taobao.skus.quantity.update`` floors the SKU at 0;
* ``presale`` items refuse full updates; ``campaign`` items refuse full updates and
  incremental decreases;
* a change that leaves an ``onsale`` item's total at 0 is rejected
  (``FORBIDDEN_QUANTITY_ZERO_ERROR``) or, with ``zero_onsale="auto_delist"``, applied and the
  item moved to ``instock``;
* a full update below what unpaid Taobao orders hold (``with_hold_quantity``) is refused
  (``isv.error-inventory-invalid-item-quantity``, "宝贝数量必须大于预扣库存", reference §3.1);
* Taobao's own orders change stock through :meth:`Catalog.platform_change` (see
  :mod:`connector.sandbox.trades`); an item they sell out goes off the shelf;
* every successful write bumps ``modified`` of the item (and of the SKUs it wrote), strictly
  increasing in memory even when the clock does not move.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, cast

from connector.sandbox.catalog_format import parse_document
from connector.sandbox.model import (
    ApproveStatus,
    Banner,
    CatalogError,
    Item,
    Lock,
    ScInventory,
    Sku,
    TopFault,
    UpdateType,
    ZeroOnsale,
)

__all__ = ["Catalog", "load_catalog", "parse_catalog_text"]

_REMOTE_ERROR: Final = 15
_TICK: Final = timedelta(microseconds=1)

# Platform sub codes (reference §3.1, §3.3).
_ITEM_NOT_EXIST: Final = "isv.item-not-exist:invalid-numIid-or-iid"
_SKU_NOT_FOUND: Final = "isv.invalid-parameter:sku-properties"
_BAD_QUANTITY: Final = "isv.invalid-parameter:quantity"
_ITEM_HAS_SKUS: Final = "isv.item-quantity-item-update-service-error"
_ZERO_ONSALE: Final = "isv.item-update-service-error:FORBIDDEN_QUANTITY_ZERO_ERROR"
_PRESALE_FULL: Final = "isv.item-is-presale:invalid-presale-tags-id"
_BELOW_WITHHELD: Final = "isv.error-inventory-invalid-item-quantity"
# Sandbox inventions standing for the platform's campaign-lock errors (no real code is known).
_CAMPAIGN_FULL: Final = "isv.item-is-campaign:full-update-forbidden"
_CAMPAIGN_DECREASE: Final = "isv.item-is-campaign:only-increase-allowed"


def _business(sub_code: str, sub_msg: str) -> TopFault:
    return TopFault(_REMOTE_ERROR, "Remote service error", sub_code, sub_msg)


def _advance(previous: datetime, now: datetime) -> datetime:
    # TOP shows seconds only, but in memory ``modified`` must move on every write so that
    # "changed since" comparisons never miss two writes within one clock tick.
    return now if now > previous else previous + _TICK


@dataclass
class Catalog:
    """Items by ``num_iid`` with indexes by SKU id and merchant codes."""

    items: dict[int, Item] = field(default_factory=dict)
    sc_items: list[ScInventory] = field(default_factory=list)
    _sku_owner: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._sku_owner = {s.sku_id: i.num_iid for i in self.items.values() for s in i.skus}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Catalog:
        return load_catalog(document)

    # ------------------------------------------------------------------ queries

    def get_item(self, num_iid: int) -> Item:
        item = self.items.get(num_iid)
        if item is None:
            raise _business(_ITEM_NOT_EXIST, f"商品不存在 (num_iid {num_iid})")
        return item

    def item_of_sku(self, sku_id: int) -> Item | None:
        owner = self._sku_owner.get(sku_id)
        return None if owner is None else self.items[owner]

    def skus_by_outer_id(self, outer_id: str) -> list[tuple[Item, Sku]]:
        """Every SKU with this merchant code, in catalog order (``taobao.skus.custom.get``)."""
        return [(i, s) for i in self.items.values() for s in i.skus if s.outer_id == outer_id]

    def items_by_outer_ids(self, outer_ids: Iterable[str]) -> list[Item]:
        """Items whose own merchant code is one of ``outer_ids`` (``taobao.items.custom.get``)."""
        wanted = set(outer_ids)
        return [i for i in self.items.values() if i.outer_id is not None and i.outer_id in wanted]

    def inventory(self, sc_item_ids: Sequence[int]) -> tuple[list[ScInventory], list[int]]:
        """Warehouse records for the ids, and the ids that do not exist."""
        wanted = set(sc_item_ids)
        found = [r for r in self.sc_items if r.sc_item_id in wanted]
        known = {r.sc_item_id for r in found}
        return found, [i for i in dict.fromkeys(sc_item_ids) if i not in known]

    def list_items(
        self,
        status: ApproveStatus,
        *,
        start_modified: datetime | None = None,
        end_modified: datetime | None = None,
        banner: Banner | None = None,
        order_by: str = "list_time",
        descending: bool = True,
        page_no: int = 1,
        page_size: int = 40,
    ) -> tuple[int, list[Item]]:
        """One page of ``status`` items filtered by modified time; returns (total, page).

        Banners (``taobao.items.inventory.get``), as the sandbox maps them onto its model:
        ``never_on_shelf`` = never listed (no list_time); ``off_shelf`` = listed before, taken
        down with stock left; ``sold_out`` = taken down with 0 stock; ``for_shelved`` =
        never_on_shelf + off_shelf (+ regular_shelved); ``regular_shelved`` (scheduled
        listing) and ``violation_off_shelf`` are always empty. No banner = every instock item.
        """
        chosen = [
            i
            for i in self.items.values()
            if i.approve_status == status
            and (start_modified is None or i.modified >= start_modified)
            and (end_modified is None or i.modified <= end_modified)
            and (banner is None or _in_banner(i, banner))
        ]
        chosen.sort(key=lambda i: (_order_key(i, order_by), i.num_iid), reverse=descending)
        start = (page_no - 1) * page_size
        return len(chosen), chosen[start : start + page_size]

    # ------------------------------------------------------------------ TOP writes

    def update_item_quantity(
        self,
        num_iid: int,
        quantity: int,
        *,
        now: datetime,
        sku_id: int | None = None,
        outer_id: str | None = None,
        update_type: UpdateType = 1,
        zero_onsale: ZeroOnsale = "reject",
    ) -> Item:
        """``taobao.item.quantity.update``: one SKU (by id, else by merchant code) or the item."""
        item = self.get_item(num_iid)
        target = _resolve_single_sku(item, sku_id, outer_id)
        _check_lock(item, update_type, [quantity])
        current = item.num if target is None else target.quantity
        new = quantity if update_type == 1 else current + quantity
        if new < 0:
            detail = "库存数量不能为负数" if update_type == 1 else f"增量更新后库存为负数 ({new})"
            raise _business(_BAD_QUANTITY, detail)
        _check_withheld(item if target is None else target, new)
        if target is None:
            _check_zero_onsale(item, new, zero_onsale)
            item.num = new
            _finish(item, now, [], new, zero_onsale)
        else:
            total = item.num - target.quantity + new
            _check_zero_onsale(item, total, zero_onsale)
            target.quantity = new
            _finish(item, now, [target], total, zero_onsale)
        return item

    def update_skus_quantity(
        self,
        num_iid: int,
        entries: Sequence[tuple[int | str, int]],
        *,
        now: datetime,
        by_outer_id: bool = False,
        update_type: UpdateType = 1,
        zero_onsale: ZeroOnsale = "reject",
    ) -> Item:
        """``taobao.skus.quantity.update``: all-or-nothing over ``(sku_id or outer_id, qty)``.

        With ``by_outer_id`` an outer id matching several SKUs of the item updates them all.
        Entries apply in order (a repeated SKU: the last full value wins, increments add up).
        """
        item = self.get_item(num_iid)
        _check_lock(item, update_type, [q for _, q in entries])
        plan: dict[int, int] = {}
        for key, quantity in entries:
            for sku in _resolve_many(item, key, by_outer_id):
                if update_type == 1:
                    if quantity < 0:
                        raise _business(_BAD_QUANTITY, "库存数量不能为负数")
                    plan[sku.sku_id] = quantity
                else:
                    # Documented difference from item.quantity.update: floor at zero.
                    plan[sku.sku_id] = max(0, plan.get(sku.sku_id, sku.quantity) + quantity)
        total = sum(plan.get(s.sku_id, s.quantity) for s in item.skus)
        for sku in item.skus:
            if sku.sku_id in plan:
                _check_withheld(sku, plan[sku.sku_id])
        _check_zero_onsale(item, total, zero_onsale)
        changed = [s for s in item.skus if s.sku_id in plan]
        for sku in changed:
            sku.quantity = plan[sku.sku_id]
        _finish(item, now, changed, total, zero_onsale)
        return item

    def list_item(self, num_iid: int, num: int, *, now: datetime) -> Item:
        """``taobao.item.update.listing``: put on shelf; ``num`` is the stock of a SKU-less item."""
        item = self.get_item(num_iid)
        if num < 0:
            raise _business("isv.invalid-parameter:num", "num 必须大于等于 0")
        total = sum(s.quantity for s in item.skus) if item.skus else num
        if total <= 0:
            raise _business(_ZERO_ONSALE, "上架的数量必须大于0")
        if not item.skus:
            _check_withheld(item, num)
        item.num = total
        item.approve_status = "onsale"
        item.list_time = now
        item.modified = _advance(item.modified, now)
        return item

    def delist_item(self, num_iid: int, *, now: datetime) -> Item:
        """``taobao.item.update.delisting``: take off shelf (idempotent, still bumps modified)."""
        item = self.get_item(num_iid)
        item.approve_status = "instock"
        item.delist_time = now
        item.modified = _advance(item.modified, now)
        return item

    def platform_change(self, item: Item, sku: Sku | None, delta: int, *, now: datetime) -> int:
        """Taobao's own stock change for its orders (negative: sold; positive: given back):
        never refused, never below zero; returns the change made. An item it sells out goes
        off the shelf (UNCONFIRMED: the sandbox's reading of 售罄下架)."""
        if sku is None:
            before, item.num = item.num, max(0, item.num + delta)
            made, changed = item.num - before, []
        else:
            before, sku.quantity = sku.quantity, max(0, sku.quantity + delta)
            made, changed = sku.quantity - before, [sku]
        _finish(item, now, changed, _total(item), "auto_delist")
        return made

    # ------------------------------------------------------------------ seller centre

    def merchant_edit(
        self,
        num_iid: int,
        *,
        now: datetime,
        approve_status: ApproveStatus | None = None,
        lock: Lock | Literal["keep"] | None = "keep",
        quantity: int | None = None,
        sku_quantities: Mapping[int, int] | None = None,
    ) -> Item:
        """A merchant's hand edit in the seller centre: no TOP rules, only sanity checks."""
        item = self.get_item(num_iid)
        if quantity is not None and (item.skus or quantity < 0):
            raise CatalogError("quantity applies to an item without SKUs and must be >= 0")
        for sku_id, qty in (sku_quantities or {}).items():
            sku = item.sku(sku_id)
            if sku is None or qty < 0:
                raise CatalogError(f"sku {sku_id} is not a SKU of {num_iid} or {qty} < 0")
            if qty < sku.with_hold_quantity:
                raise CatalogError(f"sku {sku_id}: {qty} is below what unpaid orders hold")
        if quantity is not None and quantity < item.with_hold_quantity:
            raise CatalogError(f"{quantity} is below what unpaid orders hold")
        changed: list[Sku] = []
        for sku_id, qty in (sku_quantities or {}).items():
            sku = cast(Sku, item.sku(sku_id))
            sku.quantity = qty
            changed.append(sku)
        if quantity is not None:
            item.num = quantity
        if lock != "keep":
            item.lock = lock
        if approve_status is not None and approve_status != item.approve_status:
            item.approve_status = approve_status
            if approve_status == "onsale":
                item.list_time = now
            else:
                item.delist_time = now
        _finish(item, now, changed, _total(item), "reject")
        return item


# ---------------------------------------------------------------------- rule helpers


def _total(item: Item) -> int:
    return sum(s.quantity for s in item.skus) if item.skus else item.num


def _resolve_single_sku(item: Item, sku_id: int | None, outer_id: str | None) -> Sku | None:
    if sku_id is not None:
        sku = item.sku(sku_id)
        if sku is None:
            raise _business(_SKU_NOT_FOUND, f"SKU {sku_id} 不属于商品 {item.num_iid}")
        return sku
    if outer_id is not None:
        match = next((s for s in item.skus if s.outer_id == outer_id), None)
        if match is None:
            raise _business(_SKU_NOT_FOUND, f"商家编码 {outer_id} 找不到对应的SKU")
        return match
    if item.skus:
        raise _business(_ITEM_HAS_SKUS, "商品含有销售属性(SKU)，请指定 sku_id 或 outer_id")
    return None


def _resolve_many(item: Item, key: int | str, by_outer_id: bool) -> list[Sku]:
    if by_outer_id:
        found = [s for s in item.skus if s.outer_id == str(key)]
    else:
        sku = item.sku(int(key))
        found = [] if sku is None else [sku]
    if not found:
        raise _business(_SKU_NOT_FOUND, f"SKU {key} 不属于商品 {item.num_iid}")
    return found


def _check_lock(item: Item, update_type: UpdateType, quantities: Sequence[int]) -> None:
    if item.lock == "presale" and update_type == 1:
        raise _business(_PRESALE_FULL, "预售商品，不能全量更新库存，只能增量更新库存")
    if item.lock == "campaign":
        if update_type == 1:
            raise _business(_CAMPAIGN_FULL, "活动锁定商品，不能全量更新库存，只能增量更新库存")
        if any(q < 0 for q in quantities):
            raise _business(_CAMPAIGN_DECREASE, "活动锁定商品，只能增加库存，不能减少库存")


def _check_withheld(record: Item | Sku, quantity: int) -> None:
    if quantity < record.with_hold_quantity:
        raise _business(
            _BELOW_WITHHELD,
            f"宝贝数量必须大于预扣库存 (quantity {quantity} < with_hold_quantity "
            f"{record.with_hold_quantity})",
        )


def _check_zero_onsale(item: Item, total: int, zero_onsale: ZeroOnsale) -> None:
    if item.approve_status == "onsale" and total == 0 and zero_onsale == "reject":
        raise _business(_ZERO_ONSALE, "在售商品库存不能为0，请先下架商品 (delist first)")


def _finish(
    item: Item, now: datetime, changed: Iterable[Sku], total: int, zero_onsale: ZeroOnsale
) -> None:
    """Write the derived state of a validated change: totals, shelf state, modified times."""
    for sku in changed:
        sku.modified = _advance(sku.modified, now)
    item.num = total
    if item.approve_status == "onsale" and total == 0 and zero_onsale == "auto_delist":
        item.approve_status = "instock"
        item.delist_time = now
    item.modified = _advance(item.modified, now)


def _in_banner(item: Item, banner: Banner) -> bool:
    never = item.list_time is None
    if banner == "never_on_shelf":
        return never
    if banner == "off_shelf":
        return not never and item.num > 0
    if banner == "sold_out":
        return not never and item.num == 0
    if banner == "for_shelved":
        return never or item.num > 0
    return False  # regular_shelved, violation_off_shelf: the sandbox has none


def _order_key(item: Item, order_by: str) -> tuple[int, float]:
    # Missing datetimes sort before any real one in ascending order.
    value: datetime | int | None = getattr(item, order_by)
    if value is None:
        return (0, 0.0)
    if isinstance(value, datetime):
        return (1, value.timestamp())
    return (1, float(value))


# ---------------------------------------------------------------------- loading


def load_catalog(document: Mapping[str, Any]) -> Catalog:
    """Build a catalog from its JSON document; :class:`CatalogError` names the bad entry."""
    items, sc_items = parse_document(document)
    return Catalog(items=items, sc_items=sc_items)


def parse_catalog_text(text: str) -> Catalog:
    """Load a catalog from JSON text (a file's content)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"not valid JSON: {exc}") from None
    return load_catalog(document)
