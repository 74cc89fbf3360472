"""The sandbox's stock rules (pure catalog, no I/O)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.sandbox.catalog import Catalog, load_catalog, parse_catalog_text
from connector.sandbox.model import Banner, CatalogError, Item, TopFault, ZeroOnsale, item_to_json

NOW = datetime(2025, 11, 11, 0, 0, 0, tzinfo=UTC)
SHIRT, MUG, PRESALE, JACKET = 1001, 1002, 1003, 1004
RED, BLUE, GREEN = 2001, 2002, 2003
JACKET_M, JACKET_L = 2011, 2012

DOC: dict[str, Any] = {
    "items": [
        {
            "num_iid": SHIRT,
            "title": "shirt",
            "outer_id": "SHIRT",
            "price": "99.00",
            "list_time": "2024-01-01 10:00:00",
            "skus": [
                {"sku_id": RED, "outer_id": "SHIRT-RED", "quantity": 5},
                {"sku_id": BLUE, "outer_id": "SHIRT-BLUE", "quantity": 3},
                {"sku_id": GREEN, "outer_id": "SHIRT-BLUE", "quantity": 2},
            ],
        },
        {"num_iid": MUG, "title": "mug", "outer_id": "MUG", "num": 4, "price": "9.00"},
        {"num_iid": PRESALE, "title": "pre", "lock": "presale", "num": 10},
        {
            "num_iid": JACKET,
            "title": "jacket",
            "lock": "campaign",
            "skus": [
                {"sku_id": JACKET_M, "outer_id": "J-M", "quantity": 4},
                {"sku_id": JACKET_L, "outer_id": "J-L", "quantity": 1},
            ],
        },
    ],
    "sc_items": [{"sc_item_id": 9, "sc_item_code": "X", "store_code": "W", "quantity": 3}],
}


def fresh() -> Catalog:
    return load_catalog(copy.deepcopy(DOC))


def snapshot(catalog: Catalog) -> list[dict[str, Any]]:
    return [item_to_json(i) for i in catalog.items.values()]


def sub_code_of(call: Any) -> str | None:
    with pytest.raises(TopFault) as info:
        call()
    assert info.value.code == 15
    return info.value.sub_code


def test_demo_catalog_loads_with_the_promised_shapes() -> None:
    text = resources.files("connector.sandbox").joinpath("demo_catalog.json").read_text()
    catalog = parse_catalog_text(text)
    items = list(catalog.items.values())
    assert len(items) == 6
    assert all(i.num_iid > 2**32 for i in items)
    assert {i.lock for i in items} == {None, "presale", "campaign"}
    assert any(i.approve_status == "instock" for i in items)
    assert any(i.skus and i.lock == "campaign" for i in items)
    assert all(i.num == sum(s.quantity for s in i.skus) for i in items if i.skus)
    assert catalog.skus_by_outer_id("TSHIRT-RED-M")
    assert catalog.sc_items


# ---------------------------------------------------------------- item.quantity.update

ItemCase = tuple[int, dict[str, Any], int, dict[int, int] | None]


@pytest.mark.parametrize(
    ("num_iid", "kwargs", "want_num", "want_skus"),
    [
        (SHIRT, {"quantity": 9, "sku_id": RED}, 14, {RED: 9, BLUE: 3, GREEN: 2}),
        (SHIRT, {"quantity": 7, "outer_id": "SHIRT-BLUE"}, 14, {RED: 5, BLUE: 7, GREEN: 2}),
        (SHIRT, {"quantity": 1, "sku_id": RED, "outer_id": "SHIRT-BLUE"}, 6, {RED: 1}),
        (SHIRT, {"quantity": -5, "sku_id": RED, "update_type": 2}, 5, {RED: 0}),
        (SHIRT, {"quantity": 4, "sku_id": GREEN, "update_type": 2}, 14, {GREEN: 6}),
        (MUG, {"quantity": 0 + 12}, 12, None),
        (MUG, {"quantity": -4 + 1, "update_type": 2}, 1, None),
        (PRESALE, {"quantity": 5, "update_type": 2}, 15, None),
        (PRESALE, {"quantity": -3, "update_type": 2}, 7, None),
        (JACKET, {"quantity": 2, "sku_id": JACKET_L, "update_type": 2}, 7, {JACKET_L: 3}),
    ],
)
def test_item_quantity_update_applies(
    num_iid: int, kwargs: dict[str, Any], want_num: int, want_skus: dict[int, int] | None
) -> None:
    catalog = fresh()
    item = catalog.update_item_quantity(num_iid, now=NOW, **kwargs)
    assert item.num == want_num
    for sku_id, qty in (want_skus or {}).items():
        assert item.sku(sku_id) is not None
        assert item.sku(sku_id).quantity == qty  # type: ignore[union-attr]
    assert item.num == (sum(s.quantity for s in item.skus) if item.skus else item.num)
    assert item.modified == NOW


@pytest.mark.parametrize(
    ("num_iid", "kwargs", "sub_code"),
    [
        (999, {"quantity": 1}, "isv.item-not-exist:invalid-numIid-or-iid"),
        (SHIRT, {"quantity": 1}, "isv.item-quantity-item-update-service-error"),
        (SHIRT, {"quantity": 1, "sku_id": JACKET_M}, "isv.invalid-parameter:sku-properties"),
        (SHIRT, {"quantity": 1, "outer_id": "NOPE"}, "isv.invalid-parameter:sku-properties"),
        (SHIRT, {"quantity": -1, "sku_id": RED}, "isv.invalid-parameter:quantity"),
        (
            SHIRT,
            {"quantity": -6, "sku_id": RED, "update_type": 2},
            "isv.invalid-parameter:quantity",
        ),
        (MUG, {"quantity": -5, "update_type": 2}, "isv.invalid-parameter:quantity"),
        (MUG, {"quantity": 0}, "isv.item-update-service-error:FORBIDDEN_QUANTITY_ZERO_ERROR"),
        (
            MUG,
            {"quantity": -4, "update_type": 2},
            "isv.item-update-service-error:FORBIDDEN_QUANTITY_ZERO_ERROR",
        ),
        (PRESALE, {"quantity": 5}, "isv.item-is-presale:invalid-presale-tags-id"),
        (JACKET, {"quantity": 5, "sku_id": JACKET_M}, "isv.item-is-campaign:full-update-forbidden"),
        (
            JACKET,
            {"quantity": -1, "sku_id": JACKET_M, "update_type": 2},
            "isv.item-is-campaign:only-increase-allowed",
        ),
    ],
)
def test_item_quantity_update_rejects_and_changes_nothing(
    num_iid: int, kwargs: dict[str, Any], sub_code: str
) -> None:
    catalog = fresh()
    before = snapshot(catalog)
    assert sub_code_of(lambda: catalog.update_item_quantity(num_iid, now=NOW, **kwargs)) == sub_code
    assert snapshot(catalog) == before


def test_presale_message_is_the_platforms() -> None:
    with pytest.raises(TopFault) as info:
        fresh().update_item_quantity(PRESALE, 1, now=NOW)
    assert info.value.sub_msg == "预售商品，不能全量更新库存，只能增量更新库存"


def test_zero_sum_on_an_item_with_skus_is_rejected_only_at_total_zero() -> None:
    catalog = fresh()
    catalog.update_item_quantity(SHIRT, 0, sku_id=RED, now=NOW)  # total 5 left: fine
    catalog.update_item_quantity(SHIRT, 0, sku_id=BLUE, now=NOW)
    with pytest.raises(TopFault):
        catalog.update_item_quantity(SHIRT, 0, sku_id=GREEN, now=NOW)
    assert catalog.items[SHIRT].num == 2


@pytest.mark.parametrize("mode", ["reject", "auto_delist"])
def test_zero_onsale_modes(mode: ZeroOnsale) -> None:
    catalog = fresh()
    if mode == "reject":
        with pytest.raises(TopFault):
            catalog.update_item_quantity(MUG, 0, now=NOW, zero_onsale=mode)
        assert catalog.items[MUG].approve_status == "onsale"
    else:
        item = catalog.update_item_quantity(MUG, 0, now=NOW, zero_onsale=mode)
        assert (item.num, item.approve_status, item.delist_time) == (0, "instock", NOW)


def test_zero_is_fine_for_an_instock_item() -> None:
    catalog = fresh()
    catalog.delist_item(MUG, now=NOW)
    assert catalog.update_item_quantity(MUG, 0, now=NOW).num == 0


# ---------------------------------------------------------------- skus.quantity.update


@pytest.mark.parametrize(
    ("num_iid", "entries", "kwargs", "want"),
    [
        (SHIRT, [(RED, 1), (BLUE, 2)], {}, {RED: 1, BLUE: 2, GREEN: 2}),
        (SHIRT, [(RED, 1), (RED, 4)], {}, {RED: 4}),
        (SHIRT, [("SHIRT-BLUE", 8)], {"by_outer_id": True}, {BLUE: 8, GREEN: 8}),
        # incremental below zero floors at 0 (unlike item.quantity.update)
        (SHIRT, [(BLUE, -10), (RED, 1)], {"update_type": 2}, {BLUE: 0, RED: 6}),
        (SHIRT, [(RED, -2), (RED, -2)], {"update_type": 2}, {RED: 1}),
        (JACKET, [(JACKET_M, 3)], {"update_type": 2}, {JACKET_M: 7, JACKET_L: 1}),
    ],
)
def test_skus_quantity_update_applies(
    num_iid: int,
    entries: list[tuple[int | str, int]],
    kwargs: dict[str, Any],
    want: dict[int, int],
) -> None:
    catalog = fresh()
    item = catalog.update_skus_quantity(num_iid, entries, now=NOW, **kwargs)
    for sku_id, qty in want.items():
        assert item.sku(sku_id).quantity == qty  # type: ignore[union-attr]
    assert item.num == sum(s.quantity for s in item.skus)


@pytest.mark.parametrize(
    ("num_iid", "entries", "kwargs", "sub_code"),
    [
        (999, [(RED, 1)], {}, "isv.item-not-exist:invalid-numIid-or-iid"),
        (SHIRT, [(RED, 1), (JACKET_M, 1)], {}, "isv.invalid-parameter:sku-properties"),
        (SHIRT, [("NOPE", 1)], {"by_outer_id": True}, "isv.invalid-parameter:sku-properties"),
        (MUG, [(RED, 1)], {}, "isv.invalid-parameter:sku-properties"),
        (SHIRT, [(RED, 3), (BLUE, -1)], {}, "isv.invalid-parameter:quantity"),
        (
            SHIRT,
            [(RED, 0), (BLUE, 0), (GREEN, 0)],
            {},
            "isv.item-update-service-error:FORBIDDEN_QUANTITY_ZERO_ERROR",
        ),
        (
            SHIRT,
            [(RED, -99), (BLUE, -99), (GREEN, -99)],
            {"update_type": 2},
            "isv.item-update-service-error:FORBIDDEN_QUANTITY_ZERO_ERROR",
        ),
        (JACKET, [(JACKET_M, 3)], {}, "isv.item-is-campaign:full-update-forbidden"),
        (
            JACKET,
            [(JACKET_M, 3), (JACKET_L, -1)],
            {"update_type": 2},
            "isv.item-is-campaign:only-increase-allowed",
        ),
    ],
)
def test_skus_quantity_update_is_all_or_nothing(
    num_iid: int, entries: list[tuple[int | str, int]], kwargs: dict[str, Any], sub_code: str
) -> None:
    catalog = fresh()
    before = snapshot(catalog)
    call = lambda: catalog.update_skus_quantity(num_iid, entries, now=NOW, **kwargs)  # noqa: E731
    assert sub_code_of(call) == sub_code
    assert snapshot(catalog) == before


# ---------------------------------------------------------------- listing / delisting


@pytest.mark.parametrize(
    ("num_iid", "num", "want_num"),
    [(SHIRT, 0, 10), (SHIRT, 999, 10), (MUG, 7, 7)],
)
def test_listing_sets_onsale_and_stock(num_iid: int, num: int, want_num: int) -> None:
    catalog = fresh()
    catalog.delist_item(num_iid, now=NOW)
    later = NOW + timedelta(seconds=5)
    item = catalog.list_item(num_iid, num, now=later)
    assert (item.approve_status, item.num, item.list_time) == ("onsale", want_num, later)


@pytest.mark.parametrize(("num_iid", "num"), [(MUG, 0), (999, 1)])
def test_listing_rejections(num_iid: int, num: int) -> None:
    catalog = fresh()
    catalog.delist_item(MUG, now=NOW)
    before = snapshot(catalog)
    with pytest.raises(TopFault):
        catalog.list_item(num_iid, num, now=NOW)
    assert snapshot(catalog) == before


def test_listing_an_item_whose_skus_sum_to_zero_is_rejected() -> None:
    catalog = fresh()
    catalog.delist_item(SHIRT, now=NOW)
    catalog.update_skus_quantity(SHIRT, [(RED, 0), (BLUE, 0), (GREEN, 0)], now=NOW)
    assert sub_code_of(lambda: catalog.list_item(SHIRT, 5, now=NOW)) == (
        "isv.item-update-service-error:FORBIDDEN_QUANTITY_ZERO_ERROR"
    )


def test_modified_strictly_increases_within_one_clock_tick() -> None:
    catalog = fresh()
    stamps = [catalog.update_item_quantity(MUG, q, now=NOW).modified for q in (1, 2, 3)]
    assert stamps[0] < stamps[1] < stamps[2]
    assert stamps[0] == NOW


# ---------------------------------------------------------------- queries


def test_list_items_filters_orders_and_pages() -> None:
    catalog = fresh()
    total, page = catalog.list_items("onsale", order_by="num", descending=False, page_size=2)
    assert total == 4
    assert [i.num_iid for i in page] == [MUG, JACKET]
    _, second = catalog.list_items(
        "onsale", order_by="num", descending=False, page_no=2, page_size=2
    )
    assert [i.num_iid for i in second] == [SHIRT, PRESALE]  # a tie on num: by num_iid
    catalog.update_item_quantity(MUG, 3, now=NOW)
    total, page = catalog.list_items("onsale", start_modified=NOW - timedelta(seconds=1))
    assert (total, [i.num_iid for i in page]) == (1, [MUG])
    # ties on list_time (None for all but SHIRT) break by num_iid, deterministically
    _, all_desc = catalog.list_items("onsale")
    assert [i.num_iid for i in all_desc] == [SHIRT, JACKET, PRESALE, MUG]


def test_banners() -> None:
    catalog = fresh()
    catalog.delist_item(SHIRT, now=NOW)  # listed before, stock left: off_shelf
    catalog.delist_item(MUG, now=NOW)
    catalog.update_item_quantity(MUG, 0, now=NOW)  # listed? no list_time: never_on_shelf

    def ids(banner: Banner) -> list[int]:
        return [i.num_iid for i in catalog.list_items("instock", banner=banner)[1]]

    assert ids("off_shelf") == [SHIRT]
    assert ids("never_on_shelf") == [MUG]
    assert sorted(ids("for_shelved")) == [SHIRT, MUG]
    assert ids("regular_shelved") == [] == ids("violation_off_shelf")
    catalog.update_skus_quantity(SHIRT, [(RED, 0), (BLUE, 0), (GREEN, 0)], now=NOW)
    assert ids("sold_out") == [SHIRT]


def test_lookups_by_merchant_code_and_inventory() -> None:
    catalog = fresh()
    assert [s.sku_id for _, s in catalog.skus_by_outer_id("SHIRT-BLUE")] == [BLUE, GREEN]
    assert catalog.skus_by_outer_id("nope") == []
    assert [i.num_iid for i in catalog.items_by_outer_ids(["MUG", "SHIRT", "x"])] == [SHIRT, MUG]
    records, unknown = catalog.inventory([9, 10, 10])
    assert ([r.sc_item_id for r in records], unknown) == ([9], [10])


def test_merchant_edit_bypasses_rules_but_keeps_the_sum() -> None:
    catalog = fresh()
    item = catalog.merchant_edit(
        SHIRT, now=NOW, approve_status="instock", lock="campaign", sku_quantities={RED: 0}
    )
    assert (item.approve_status, item.lock, item.num) == ("instock", "campaign", 5)
    assert catalog.merchant_edit(MUG, now=NOW, quantity=0).num == 0  # onsale at 0: allowed
    with pytest.raises(CatalogError):
        catalog.merchant_edit(SHIRT, now=NOW, quantity=3)
    with pytest.raises(CatalogError):
        catalog.merchant_edit(SHIRT, now=NOW, sku_quantities={JACKET_M: 1})


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({}, '"items" list'),
        ({"items": [{"title": "x"}]}, "items[0].num_iid"),
        ({"items": [{"num_iid": 1, "title": "x", "approve_status": "gone"}]}, "approve_status"),
        ({"items": [{"num_iid": 1, "title": "x", "lock": "frozen"}]}, "lock"),
        ({"items": [{"num_iid": 1, "title": "x", "list_time": "yesterday"}]}, "list_time"),
        ({"items": [{"num_iid": 1, "title": "a"}, {"num_iid": 1, "title": "b"}]}, "duplicate"),
        (
            {"items": [{"num_iid": 1, "title": "a", "skus": [{"sku_id": 2, "quantity": -1}]}]},
            "quantity",
        ),
        ({"items": [], "sc_items": {}}, "sc_items"),
    ],
)
def test_bad_catalogs_name_the_problem(document: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CatalogError, match=None) as info:
        load_catalog(document)
    assert fragment in str(info.value)


def test_bad_json_text() -> None:
    with pytest.raises(CatalogError, match="not valid JSON"):
        parse_catalog_text("{nope")


def test_from_json_round_trips_the_demo_document() -> None:
    assert Catalog.from_json(json.loads(json.dumps(DOC))).items[SHIRT].num == 10


# ---------------------------------------------------------------- property


def _check_invariants(item: Item) -> None:
    assert all(s.quantity >= 0 for s in item.skus)
    assert item.num >= 0
    if item.skus:
        assert item.num == sum(s.quantity for s in item.skus)


_ops = st.one_of(
    st.tuples(
        st.just("item"),
        st.sampled_from([SHIRT, MUG, PRESALE, JACKET, 5]),
        st.sampled_from([None, RED, BLUE, GREEN, JACKET_M, 77]),
        st.integers(-8, 8),
        st.sampled_from([1, 2]),
    ),
    st.tuples(
        st.just("skus"),
        st.sampled_from([SHIRT, JACKET, MUG]),
        st.lists(
            st.tuples(
                st.sampled_from([RED, BLUE, GREEN, JACKET_M, JACKET_L, 77]), st.integers(-8, 8)
            ),
            min_size=1,
            max_size=4,
        ),
        st.integers(-8, 8),
        st.sampled_from([1, 2]),
    ),
    st.tuples(
        st.just("list"), st.sampled_from([SHIRT, MUG]), st.none(), st.integers(0, 5), st.just(1)
    ),
    st.tuples(st.just("delist"), st.sampled_from([SHIRT, MUG]), st.none(), st.just(0), st.just(1)),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_ops, max_size=25), mode=st.sampled_from(["reject", "auto_delist"]))
def test_any_sequence_keeps_the_invariants(ops: list[tuple[Any, ...]], mode: ZeroOnsale) -> None:
    catalog = fresh()
    clock = NOW
    for kind, num_iid, arg, qty, update_type in ops:
        clock += timedelta(milliseconds=300)
        before = snapshot(catalog)
        try:
            if kind == "item":
                catalog.update_item_quantity(
                    num_iid, qty, sku_id=arg, update_type=update_type, now=clock, zero_onsale=mode
                )
            elif kind == "skus":
                catalog.update_skus_quantity(
                    num_iid, arg, update_type=update_type, now=clock, zero_onsale=mode
                )
            elif kind == "list":
                catalog.list_item(num_iid, qty, now=clock)
            else:
                catalog.delist_item(num_iid, now=clock)
        except TopFault:
            assert snapshot(catalog) == before
        for item in catalog.items.values():
            _check_invariants(item)
            if mode == "reject" and item.approve_status == "onsale":
                changed = item_to_json(item) not in before
                assert not (changed and item.num == 0)
