"""The sandbox's shop: items, SKUs and warehouse records, and the platform's stock rules.

Pure code, no I/O and no hidden clock: every operation that changes something takes ``now``.
Each operation validates everything first and only then writes, so a rejected call
(a :class:`TopFault`) leaves the catalog exactly as it was.

Catalog JSON format (``--catalog FILE``; the built-in one is ``demo_catalog.json``)::

    {
      "items": [
        {
          "num_iid": 600000000001,          # JSON number (ids exceed 2^32), required
          "title": "Cotton T-shirt",         # required
          "outer_id": "TSHIRT",              # item merchant code, optional (null)
          "price": "99.00",                  # string, 2 decimals, default "0.00"
          "approve_status": "onsale",        # "onsale" (default) | "instock"
          "lock": null,                      # null | "presale" | "campaign"
          "num": 10,                         # stock of an item WITHOUT skus (ignored with skus)
          "list_time": "2024-01-01 10:00:00",    # China time, optional
          "delist_time": null,                   # China time, optional
          "modified": "2024-01-01 10:00:00",     # China time, optional (default: list_time
                                                 # or 2024-01-01 00:00:00)
          "sold_quantity": 0,                # optional, only used by order_by
          "skus": [                          # optional; with skus, num = sum of quantities
            {"sku_id": 700000000001, "outer_id": "TSHIRT-RED-M", "quantity": 5,
             "properties": "1627207:28326;20509:28315",
             "properties_name": "1627207:28326:颜色:红色;20509:28315:尺码:M",
             "price": "99.00", "modified": "2024-01-01 10:00:00"}
          ]
        }
      ],
      "sc_items": [                          # optional, for taobao.inventory.query
        {"sc_item_id": 800000000001, "sc_item_code": "TSHIRT-RED-M", "store_code": "WH-SH",
         "inventory_type": 1, "quantity": 40, "occupy_quantity": 2, "reserve_quantity": 0}
      ]
    }

(The ``#`` comments are for this description only; JSON has none.) Ids must be unique:
``num_iid`` across items and ``sku_id`` across all SKUs. Merchant codes may repeat.

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
* every successful write bumps ``modified`` of the item (and of the SKUs it wrote), strictly
  increasing in memory even when the clock does not move.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, cast

from connector.taobao.protocol import format_timestamp, parse_timestamp

__all__ = [
    "BANNERS",
    "ORDER_FIELDS",
    "ApproveStatus",
    "Banner",
    "Catalog",
    "CatalogError",
    "Item",
    "Lock",
    "ScInventory",
    "Sku",
    "TopFault",
    "UpdateType",
    "ZeroOnsale",
    "item_to_json",
    "load_catalog",
    "parse_catalog_text",
    "sku_to_json",
]

ApproveStatus = Literal["onsale", "instock"]
Lock = Literal["presale", "campaign"]
ZeroOnsale = Literal["reject", "auto_delist"]
UpdateType = Literal[1, 2]
Banner = Literal[
    "regular_shelved",
    "never_on_shelf",
    "off_shelf",
    "for_shelved",
    "sold_out",
    "violation_off_shelf",
]
BANNERS: Final[tuple[Banner, ...]] = (
    "regular_shelved",
    "never_on_shelf",
    "off_shelf",
    "for_shelved",
    "sold_out",
    "violation_off_shelf",
)
ORDER_FIELDS: Final = frozenset({"list_time", "delist_time", "num", "modified", "sold_quantity"})

_REMOTE_ERROR: Final = 15
_TICK: Final = timedelta(microseconds=1)
_DEFAULT_TIME: Final = parse_timestamp("2024-01-01 00:00:00")
_INVENTORY_TYPE_NAMES: Final[Mapping[int, str]] = {1: "正常", 2: "损坏", 3: "冻结", 10: "质押"}

# Platform sub codes (reference §3.1, §3.3).
_ITEM_NOT_EXIST: Final = "isv.item-not-exist:invalid-numIid-or-iid"
_SKU_NOT_FOUND: Final = "isv.invalid-parameter:sku-properties"
_BAD_QUANTITY: Final = "isv.invalid-parameter:quantity"
_ITEM_HAS_SKUS: Final = "isv.item-quantity-item-update-service-error"
_ZERO_ONSALE: Final = "isv.item-update-service-error:FORBIDDEN_QUANTITY_ZERO_ERROR"
_PRESALE_FULL: Final = "isv.item-is-presale:invalid-presale-tags-id"
# Sandbox inventions standing for the platform's campaign-lock errors (no real code is known).
_CAMPAIGN_FULL: Final = "isv.item-is-campaign:full-update-forbidden"
_CAMPAIGN_DECREASE: Final = "isv.item-is-campaign:only-increase-allowed"


class TopFault(Exception):
    """A TOP error answer: ``code``/``msg`` plus the optional ``sub_code``/``sub_msg``."""

    def __init__(
        self, code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None
    ) -> None:
        super().__init__(f"{code} {msg}: {sub_code or ''} {sub_msg or ''}".strip())
        self.code = code
        self.msg = msg
        self.sub_code = sub_code
        self.sub_msg = sub_msg


class CatalogError(ValueError):
    """A catalog document that cannot be loaded; the message names what to fix."""


def _business(sub_code: str, sub_msg: str) -> TopFault:
    return TopFault(_REMOTE_ERROR, "Remote service error", sub_code, sub_msg)


def _advance(previous: datetime, now: datetime) -> datetime:
    # TOP shows seconds only, but in memory ``modified`` must move on every write so that
    # "changed since" comparisons never miss two writes within one clock tick.
    return now if now > previous else previous + _TICK


@dataclass
class Sku:
    sku_id: int
    outer_id: str | None
    quantity: int
    properties: str
    modified: datetime
    properties_name: str = ""
    price: str | None = None


@dataclass
class Item:
    num_iid: int
    title: str
    outer_id: str | None
    num: int
    approve_status: ApproveStatus
    lock: Lock | None
    list_time: datetime | None
    delist_time: datetime | None
    modified: datetime
    skus: list[Sku]
    price: str
    sold_quantity: int = 0

    def sku(self, sku_id: int) -> Sku | None:
        return next((s for s in self.skus if s.sku_id == sku_id), None)


@dataclass(frozen=True)
class ScInventory:
    """One ``item_inventorys`` record of ``taobao.inventory.query`` (back-end warehouse stock)."""

    sc_item_id: int
    sc_item_code: str
    store_code: str
    inventory_type: int
    quantity: int
    occupy_quantity: int = 0
    reserve_quantity: int = 0

    @property
    def inventory_type_name(self) -> str:
        return _INVENTORY_TYPE_NAMES.get(self.inventory_type, "自定义")


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
            if item.sku(sku_id) is None or qty < 0:
                raise CatalogError(f"sku {sku_id} is not a SKU of {num_iid} or {qty} < 0")
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


# ---------------------------------------------------------------------- JSON views


def _fmt(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def sku_to_json(item: Item, sku: Sku) -> dict[str, Any]:
    """Every field of a SKU as TOP renders it (numbers for ids, strings for prices/times)."""
    return {
        "sku_id": sku.sku_id,
        "num_iid": item.num_iid,
        "iid": str(item.num_iid),
        "outer_id": sku.outer_id or "",
        "quantity": sku.quantity,
        "with_hold_quantity": 0,
        "properties": sku.properties,
        "properties_name": sku.properties_name,
        "price": sku.price or item.price,
        "modified": format_timestamp(sku.modified),
        "status": "normal",
    }


def item_to_json(item: Item) -> dict[str, Any]:
    """Every field of an item, SKUs included, without TOP list wrapping."""
    view: dict[str, Any] = {
        "num_iid": item.num_iid,
        "iid": str(item.num_iid),
        "title": item.title,
        "nick": "sandbox_b_01",
        "type": "fixed",
        "outer_id": item.outer_id or "",
        "num": item.num,
        "price": item.price,
        "approve_status": item.approve_status,
        "lock": item.lock,
        "list_time": _fmt(item.list_time),
        "delist_time": _fmt(item.delist_time),
        "modified": format_timestamp(item.modified),
        "sold_quantity": item.sold_quantity,
        "with_hold_quantity": 0,
        "sub_stock": 0,
        "skus": [sku_to_json(item, s) for s in item.skus],
    }
    return view


# ---------------------------------------------------------------------- loading


def load_catalog(document: Mapping[str, Any]) -> Catalog:
    """Build a catalog from its JSON document; :class:`CatalogError` names the bad entry."""
    if not isinstance(document, Mapping) or not isinstance(document.get("items"), list):
        raise CatalogError('the catalog must be a JSON object with an "items" list')
    items: dict[int, Item] = {}
    sku_ids: set[int] = set()
    for index, raw in enumerate(document["items"]):
        where = f"items[{index}]"
        item = _load_item(raw, where)
        if item.num_iid in items:
            raise CatalogError(f"{where}: duplicate num_iid {item.num_iid}")
        for sku in item.skus:
            if sku.sku_id in sku_ids:
                raise CatalogError(f"{where}: duplicate sku_id {sku.sku_id}")
            sku_ids.add(sku.sku_id)
        items[item.num_iid] = item
    raw_sc = document.get("sc_items", [])
    if not isinstance(raw_sc, list):
        raise CatalogError('"sc_items" must be a list')
    sc_items = [_load_sc(raw, f"sc_items[{i}]") for i, raw in enumerate(raw_sc)]
    return Catalog(items=items, sc_items=sc_items)


def _load_item(raw: Any, where: str) -> Item:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: must be an object")
    status = raw.get("approve_status", "onsale")
    if status not in ("onsale", "instock"):
        raise CatalogError(f'{where}.approve_status: expected "onsale" or "instock"')
    lock = raw.get("lock")
    if lock not in (None, "presale", "campaign"):
        raise CatalogError(f'{where}.lock: expected null, "presale" or "campaign"')
    list_time = _time(raw.get("list_time"), f"{where}.list_time")
    modified = _time(raw.get("modified"), f"{where}.modified") or list_time or _DEFAULT_TIME
    raw_skus = raw.get("skus") or []
    if not isinstance(raw_skus, list):
        raise CatalogError(f"{where}.skus: must be a list")
    skus = [_load_sku(s, f"{where}.skus[{j}]", modified) for j, s in enumerate(raw_skus)]
    num = sum(s.quantity for s in skus) if skus else _int(raw.get("num", 0), f"{where}.num")
    return Item(
        num_iid=_int(raw.get("num_iid"), f"{where}.num_iid", minimum=1),
        title=_str(raw.get("title"), f"{where}.title"),
        outer_id=_opt_str(raw.get("outer_id"), f"{where}.outer_id"),
        num=num,
        approve_status=cast(ApproveStatus, status),
        lock=cast("Lock | None", lock),
        list_time=list_time,
        delist_time=_time(raw.get("delist_time"), f"{where}.delist_time"),
        modified=modified,
        skus=skus,
        price=_str(raw.get("price", "0.00"), f"{where}.price"),
        sold_quantity=_int(raw.get("sold_quantity", 0), f"{where}.sold_quantity"),
    )


def _load_sku(raw: Any, where: str, default_modified: datetime) -> Sku:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: must be an object")
    price = raw.get("price")
    return Sku(
        sku_id=_int(raw.get("sku_id"), f"{where}.sku_id", minimum=1),
        outer_id=_opt_str(raw.get("outer_id"), f"{where}.outer_id"),
        quantity=_int(raw.get("quantity", 0), f"{where}.quantity"),
        properties=_str(raw.get("properties", ""), f"{where}.properties"),
        modified=_time(raw.get("modified"), f"{where}.modified") or default_modified,
        properties_name=_str(raw.get("properties_name", ""), f"{where}.properties_name"),
        price=None if price is None else _str(price, f"{where}.price"),
    )


def _load_sc(raw: Any, where: str) -> ScInventory:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: must be an object")
    return ScInventory(
        sc_item_id=_int(raw.get("sc_item_id"), f"{where}.sc_item_id", minimum=1),
        sc_item_code=_str(raw.get("sc_item_code", ""), f"{where}.sc_item_code"),
        store_code=_str(raw.get("store_code", ""), f"{where}.store_code"),
        inventory_type=_int(raw.get("inventory_type", 1), f"{where}.inventory_type"),
        quantity=_int(raw.get("quantity", 0), f"{where}.quantity"),
        occupy_quantity=_int(raw.get("occupy_quantity", 0), f"{where}.occupy_quantity"),
        reserve_quantity=_int(raw.get("reserve_quantity", 0), f"{where}.reserve_quantity"),
    )


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CatalogError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise CatalogError(f"{where}: expected a string, got {value!r}")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    return None if value is None or value == "" else _str(value, where)


def _time(value: Any, where: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(_str(value, where))
    except ValueError:
        raise CatalogError(f'{where}: expected "yyyy-MM-dd HH:mm:ss", got {value!r}') from None


def parse_catalog_text(text: str) -> Catalog:
    """Load a catalog from JSON text (a file's content)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"not valid JSON: {exc}") from None
    return load_catalog(document)
