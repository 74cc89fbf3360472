"""Typed results of the TOP calls the connector makes, with pure parsers.

TOP sends ids and quantities as JSON numbers (ids may exceed 2**53: Python ints are exact),
prices as strings and datetimes as China-time strings; a few fields come as strings from
some APIs, so every parser converts instead of trusting the JSON type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.taobao.protocol import parse_timestamp, unwrap_list

__all__ = [
    "InventoryQueryResult",
    "InventoryRecord",
    "Item",
    "ItemQuantity",
    "ShelfChange",
    "Sku",
    "SkuQuantity",
    "parse_inventory_query",
    "parse_item",
    "parse_item_quantity",
    "parse_shelf_change",
    "parse_sku",
]


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _time(value: Any) -> datetime | None:
    return parse_timestamp(str(value)) if value else None


@dataclass(frozen=True, slots=True)
class SkuQuantity:
    sku_id: int
    quantity: int
    modified: datetime | None


@dataclass(frozen=True, slots=True)
class ItemQuantity:
    """The item after a stock update: its total and the quantity of each SKU."""

    num_iid: int
    num: int | None
    modified: datetime | None
    skus: tuple[SkuQuantity, ...]


@dataclass(frozen=True, slots=True)
class ShelfChange:
    """The item after listing or delisting."""

    num_iid: int
    modified: datetime | None


@dataclass(frozen=True, slots=True)
class Sku:
    sku_id: int
    num_iid: int | None
    outer_id: str | None
    quantity: int | None
    properties: str | None
    modified: datetime | None
    status: str | None = None
    with_hold_quantity: int = 0  # held for unpaid orders (付款减库存, sub_stock 2)


@dataclass(frozen=True, slots=True)
class Item:
    num_iid: int
    title: str | None
    outer_id: str | None
    num: int | None
    approve_status: str | None  # "onsale" or "instock"
    modified: datetime | None
    list_time: datetime | None
    delist_time: datetime | None
    skus: tuple[Sku, ...]
    with_hold_quantity: int = 0
    # 1: Taobao takes the stock when the buyer orders (拍下减库存); 2: when the buyer pays
    # (付款减库存), holding it as with_hold_quantity meanwhile. None: not said.
    sub_stock: int | None = None

    @property
    def on_sale(self) -> bool:
        return self.approve_status == "onsale"


@dataclass(frozen=True, slots=True)
class InventoryRecord:
    """One warehouse stock line of a back-end (sc) item, from ``taobao.inventory.query``."""

    sc_item_id: int
    sc_item_code: str | None
    store_code: str | None
    inventory_type: int | None
    quantity: int
    occupy_quantity: int
    reserve_quantity: int


@dataclass(frozen=True, slots=True)
class InventoryQueryResult:
    records: tuple[InventoryRecord, ...]
    missing: tuple[str, ...]  # tip_infos: ids the platform does not know


def parse_sku(raw: Mapping[str, Any]) -> Sku:
    return Sku(
        sku_id=int(raw["sku_id"]),
        num_iid=_int(raw.get("num_iid")),
        outer_id=_str(raw.get("outer_id")),
        quantity=_int(raw.get("quantity")),
        properties=_str(raw.get("properties")),
        modified=_time(raw.get("modified")),
        status=_str(raw.get("status")),
        with_hold_quantity=_int(raw.get("with_hold_quantity")) or 0,
    )


def parse_item(raw: Mapping[str, Any]) -> Item:
    return Item(
        num_iid=int(raw["num_iid"]),
        title=_str(raw.get("title")),
        outer_id=_str(raw.get("outer_id")),
        num=_int(raw.get("num")),
        approve_status=_str(raw.get("approve_status")),
        modified=_time(raw.get("modified")),
        list_time=_time(raw.get("list_time")),
        delist_time=_time(raw.get("delist_time")),
        skus=tuple(parse_sku(s) for s in unwrap_list(raw.get("skus"), "sku")),
        with_hold_quantity=_int(raw.get("with_hold_quantity")) or 0,
        sub_stock=_int(raw.get("sub_stock")),
    )


def parse_item_quantity(raw: Mapping[str, Any]) -> ItemQuantity:
    skus = tuple(
        SkuQuantity(int(s["sku_id"]), int(s["quantity"]), _time(s.get("modified")))
        for s in unwrap_list(raw.get("skus"), "sku")
    )
    return ItemQuantity(
        num_iid=int(raw["num_iid"]),
        num=_int(raw.get("num")),
        modified=_time(raw.get("modified")),
        skus=skus,
    )


def parse_shelf_change(raw: Mapping[str, Any]) -> ShelfChange:
    return ShelfChange(num_iid=int(raw["num_iid"]), modified=_time(raw.get("modified")))


def parse_inventory_query(raw: Mapping[str, Any]) -> InventoryQueryResult:
    records = tuple(
        InventoryRecord(
            sc_item_id=int(r["sc_item_id"]),
            sc_item_code=_str(r.get("sc_item_code")),
            store_code=_str(r.get("store_code")),
            inventory_type=_int(r.get("inventory_type")),
            quantity=_int(r.get("quantity")) or 0,
            occupy_quantity=_int(r.get("occupy_quantity")) or 0,
            reserve_quantity=_int(r.get("reserve_quantity")) or 0,
        )
        for r in unwrap_list(raw.get("item_inventorys"), "inventory_sum")
    )
    missing = tuple(
        str(t.get("sc_item_id") or t.get("info") or "")
        for t in unwrap_list(raw.get("tip_infos"), "tip_info")
    )
    return InventoryQueryResult(records=records, missing=missing)
