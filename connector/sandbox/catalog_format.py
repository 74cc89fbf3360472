"""The catalog JSON format (``--catalog FILE``, ``POST /sandbox/reset``) and its parser.

:func:`parse_document` checks a whole document and turns it into model records; it raises
:class:`~connector.sandbox.model.CatalogError` naming the first bad entry.
:func:`connector.sandbox.catalog.load_catalog` wraps the records in a
:class:`~connector.sandbox.catalog.Catalog`.

The format (the built-in catalog is ``demo_catalog.json``)::

    {
      "items": [
        {
          "num_iid": 600000000001,          # JSON number (ids exceed 2^32), required
          "title": "Cotton T-shirt",         # required
          "outer_id": "TSHIRT",              # item merchant code, optional (null)
          "price": "99.00",                  # string, 2 decimals, default "0.00"
          "approve_status": "onsale",        # "onsale" (default) | "instock"
          "lock": null,                      # null | "presale" | "campaign"
          "sub_stock": 1,                    # 1: stock deducted on order (default),
                                             # 2: on payment, held meanwhile
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
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, cast

from connector.sandbox.model import ApproveStatus, CatalogError, Item, Lock, ScInventory, Sku
from connector.taobao.protocol import parse_timestamp

__all__ = ["parse_document"]

_DEFAULT_TIME: Final = parse_timestamp("2024-01-01 00:00:00")


def parse_document(document: Mapping[str, Any]) -> tuple[dict[int, Item], list[ScInventory]]:
    """The items by ``num_iid`` and the warehouse records of a catalog document."""
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
    return items, sc_items


def _load_item(raw: Any, where: str) -> Item:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: must be an object")
    status = raw.get("approve_status", "onsale")
    if status not in ("onsale", "instock"):
        raise CatalogError(f'{where}.approve_status: expected "onsale" or "instock"')
    lock = raw.get("lock")
    if lock not in (None, "presale", "campaign"):
        raise CatalogError(f'{where}.lock: expected null, "presale" or "campaign"')
    sub_stock = raw.get("sub_stock", 1)
    if sub_stock not in (1, 2):
        raise CatalogError(f"{where}.sub_stock: expected 1 (on order) or 2 (on payment)")
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
        sub_stock=int(sub_stock),
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
