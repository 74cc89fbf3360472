"""Parsers for realistic TOP JSON (reference §2.1, §3): exact ids, loose types, China time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.taobao.models import (
    InventoryRecord,
    Item,
    Sku,
    SkuQuantity,
    parse_inventory_query,
    parse_item,
    parse_item_quantity,
    parse_shelf_change,
    parse_sku,
)

BIG_ID = 2**53 + 1  # 9007199254740993: not representable as a float
BIG_SKU = 2**62 + 7


def _json(text: str) -> dict[str, Any]:
    """Parse like the client does: the standard json module keeps big integers exact."""
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


ITEM_WRAPPED = _json(
    """
{"item_seller_get_response": {"item": {
  "num_iid": 9007199254740993, "title": "纯棉T恤 夏季新款", "outer_id": "", "num": "597",
  "approve_status": "onsale", "price": "1999.00",
  "modified": "2015-06-26 13:14:24", "list_time": "2015-06-26 13:14:24",
  "delist_time": "2015-07-03 13:14:24",
  "skus": {"sku": [
    {"sku_id": 4611686018427387911, "properties": "1627207:28341;20509:28315",
     "quantity": 300, "outer_id": "TS-RED-M", "price": "1999.00",
     "modified": "2024-01-01 00:00:00", "num_iid": 9007199254740993},
    {"sku_id": "3000000002", "properties": "1627207:28341;20509:28316",
     "quantity": "297", "outer_id": "TS-RED-L", "status": "normal"}
  ]}
}, "request_id": "16ecoqo68zsa1"}}
"""
)


def test_item_with_wrapped_skus() -> None:
    item = parse_item(ITEM_WRAPPED["item_seller_get_response"]["item"])
    assert item.num_iid == BIG_ID
    assert item.title == "纯棉T恤 夏季新款"
    assert item.outer_id is None  # "" means absent
    assert item.num == 597  # a number sent as a string
    assert item.approve_status == "onsale"
    assert item.on_sale
    assert item.modified == datetime(2015, 6, 26, 5, 14, 24, tzinfo=UTC)
    assert item.list_time == datetime(2015, 6, 26, 5, 14, 24, tzinfo=UTC)
    assert item.delist_time == datetime(2015, 7, 3, 5, 14, 24, tzinfo=UTC)
    assert item.skus == (
        Sku(
            sku_id=BIG_SKU,
            num_iid=BIG_ID,
            outer_id="TS-RED-M",
            quantity=300,
            properties="1627207:28341;20509:28315",
            modified=datetime(2023, 12, 31, 16, 0, tzinfo=UTC),
        ),
        Sku(
            sku_id=3000000002,
            num_iid=None,
            outer_id="TS-RED-L",
            quantity=297,
            properties="1627207:28341;20509:28316",
            modified=None,
            status="normal",
        ),
    )


def test_item_with_plain_skus_and_no_optional_fields() -> None:
    item = parse_item(
        {
            "num_iid": str(BIG_ID),
            "approve_status": "instock",
            "skus": [{"sku_id": 7, "quantity": 0}],
        }
    )
    assert item == Item(
        num_iid=BIG_ID,
        title=None,
        outer_id=None,
        num=None,
        approve_status="instock",
        modified=None,
        list_time=None,
        delist_time=None,
        skus=(Sku(7, None, None, 0, None, None),),
    )
    assert not item.on_sale


@pytest.mark.parametrize("skus", [None, [], {}, {"sku": []}])
def test_item_without_skus(skus: Any) -> None:
    raw: dict[str, Any] = {"num_iid": 1, "num": 0}
    if skus is not None:
        raw["skus"] = skus
    assert parse_item(raw).skus == ()


def test_aware_utc_datetimes() -> None:
    item = parse_item({"num_iid": 1, "modified": "2024-02-29 07:59:59"})
    assert item.modified is not None
    assert item.modified.tzinfo is UTC
    assert item.modified == datetime(2024, 2, 28, 23, 59, 59, tzinfo=UTC)


def test_epoch_millisecond_datetimes() -> None:
    sku = parse_sku({"sku_id": 1, "modified": 1420084800000})
    assert sku.modified == datetime(2015, 1, 1, 4, 0, tzinfo=UTC)


ITEM_QUANTITY_WRAPPED = _json(
    """
{"item_quantity_update_response": {"item": {
  "iid": "1489161932", "num_iid": 1489161932, "num": 8888, "modified": "2000-01-01 00:00:00",
  "skus": {"sku": [{"sku_id": 123, "quantity": 3, "modified": "2000-01-01 00:00:00"},
                   {"sku_id": 9007199254740993, "quantity": "0"}]}
}, "request_id": "ej6ptuzf712n"}}
"""
)


def test_item_quantity_wrapped() -> None:
    result = parse_item_quantity(ITEM_QUANTITY_WRAPPED["item_quantity_update_response"]["item"])
    assert result.num_iid == 1489161932
    assert result.num == 8888
    assert result.modified == datetime(1999, 12, 31, 16, 0, tzinfo=UTC)
    assert result.skus == (
        SkuQuantity(123, 3, datetime(1999, 12, 31, 16, 0, tzinfo=UTC)),
        SkuQuantity(BIG_ID, 0, None),
    )


@pytest.mark.parametrize(
    ("skus", "expected"),
    [
        ([{"sku_id": "5", "quantity": "2"}], (SkuQuantity(5, 2, None),)),  # simplify=true
        ({"sku": {"sku_id": 5, "quantity": -0}}, (SkuQuantity(5, 0, None),)),  # single object
        (None, ()),
    ],
)
def test_item_quantity_sku_shapes(skus: Any, expected: tuple[SkuQuantity, ...]) -> None:
    result = parse_item_quantity({"num_iid": "42", "num": "", "skus": skus})
    assert result.num_iid == 42
    assert result.num is None
    assert result.skus == expected


def test_shelf_change() -> None:
    raw = _json(
        '{"item": {"iid": "x", "num_iid": 9007199254740993, "modified": "2024-06-18 00:00:00"}}'
    )
    change = parse_shelf_change(raw["item"])
    assert change.num_iid == BIG_ID
    assert change.modified == datetime(2024, 6, 17, 16, 0, tzinfo=UTC)


INVENTORY_WRAPPED = _json(
    """
{"inventory_query_response": {
  "item_inventorys": {"inventory_sum": [
    {"sc_item_id": 9007199254740993, "sc_item_code": "GLY201210120001", "store_code": "GLY001",
     "inventory_type": 1, "inventory_type_name": "正常", "quantity": 100,
     "occupy_quantity": 3, "reserve_quantity": "2"},
    {"sc_item_id": "2456", "store_code": "GLY002", "quantity": "0"}
  ]},
  "tip_infos": {"tip_info": [{"sc_item_id": "777", "info": "后端商品不存在"}, {"info": "9999"}]}
}}
"""
)


def test_inventory_query_wrapped() -> None:
    result = parse_inventory_query(INVENTORY_WRAPPED["inventory_query_response"])
    assert result.records == (
        InventoryRecord(BIG_ID, "GLY201210120001", "GLY001", 1, 100, 3, 2),
        InventoryRecord(2456, None, "GLY002", None, 0, 0, 0),
    )
    assert result.missing == ("777", "9999")


def test_inventory_query_plain_and_empty() -> None:
    plain = parse_inventory_query(
        {"item_inventorys": [{"sc_item_id": 1, "quantity": 5}], "tip_infos": []}
    )
    assert plain.records == (InventoryRecord(1, None, None, None, 5, 0, 0),)
    assert plain.missing == ()
    empty = parse_inventory_query({})
    assert (empty.records, empty.missing) == ((), ())


@pytest.mark.parametrize(
    "raw",
    [
        {},  # num_iid is required
        {"num_iid": None},
        {"num_iid": "abc"},
    ],
)
def test_item_without_a_usable_id_is_an_error(raw: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        parse_item(raw)


@given(
    num_iid=st.integers(min_value=1, max_value=2**63 - 1),
    sku_id=st.integers(min_value=1, max_value=2**63 - 1),
    quantity=st.integers(min_value=0, max_value=10**9),
    as_string=st.booleans(),
)
def test_ids_survive_a_json_round_trip_exactly(
    num_iid: int, sku_id: int, quantity: int, as_string: bool
) -> None:
    def enc(n: int) -> int | str:
        return str(n) if as_string else n

    text = json.dumps(
        {
            "num_iid": enc(num_iid),
            "skus": {"sku": [{"sku_id": enc(sku_id), "quantity": enc(quantity)}]},
        }
    )
    result = parse_item_quantity(json.loads(text))
    assert result.num_iid == num_iid
    assert result.skus == (SkuQuantity(sku_id, quantity, None),)
