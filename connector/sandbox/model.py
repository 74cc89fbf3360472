"""The sandbox shop's data model: items, SKUs and warehouse records, and their JSON views.

Plain data, no rules: the literal types of the fields, the records themselves, the two
exceptions the shop raises (:class:`TopFault` for a TOP error answer, :class:`CatalogError`
for a catalog that cannot be loaded) and the views that render a record with every field
as TOP shows it. The stock rules that change these records live in
:mod:`connector.sandbox.catalog`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from connector.taobao.protocol import format_timestamp

__all__ = [
    "BANNERS",
    "ORDER_FIELDS",
    "ApproveStatus",
    "Banner",
    "CatalogError",
    "Item",
    "Lock",
    "ScInventory",
    "Sku",
    "TopFault",
    "UpdateType",
    "ZeroOnsale",
    "item_to_json",
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

_INVENTORY_TYPE_NAMES: Final[Mapping[int, str]] = {1: "正常", 2: "损坏", 3: "冻结", 10: "质押"}


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


@dataclass
class Sku:
    sku_id: int
    outer_id: str | None
    quantity: int
    properties: str
    modified: datetime
    properties_name: str = ""
    price: str | None = None
    with_hold_quantity: int = 0  # held for unpaid Taobao orders (sub_stock 2)


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
    # 1: Taobao deducts stock when a buyer orders (拍下减库存); 2: when the buyer pays
    # (付款减库存), holding it for unpaid orders meanwhile.
    sub_stock: int = 1
    with_hold_quantity: int = 0  # the item's total held (its SKUs' holds summed)

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
        "with_hold_quantity": sku.with_hold_quantity,
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
        "with_hold_quantity": item.with_hold_quantity,
        "sub_stock": item.sub_stock,
        "skus": [sku_to_json(item, s) for s in item.skus],
    }
    return view
