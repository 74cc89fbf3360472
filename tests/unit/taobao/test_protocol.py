"""TOP wire-protocol helpers (reference §1.3, §2.1, §2.2): response keys, timestamps, lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.taobao.protocol import (
    CHINA_TZ,
    PLATFORM_ERRORS,
    SYSTEM_PARAMS,
    format_timestamp,
    parse_ban_seconds,
    parse_timestamp,
    response_key,
    unwrap_list,
)


@pytest.mark.parametrize(
    ("method", "key"),
    [
        ("taobao.item.quantity.update", "item_quantity_update_response"),
        ("taobao.top.auth.token.create", "top_auth_token_create_response"),
        ("taobao.skus.quantity.update", "skus_quantity_update_response"),
        ("taobao.item.quantity.update.tmall", "item_quantity_update_tmall_response"),
        ("taobao.items.onsale.get", "items_onsale_get_response"),
        ("taobao.tmc.user.get", "tmc_user_get_response"),
        ("tmall.item.quantity.update", "tmall_item_quantity_update_response"),
        (
            "tmall.supplychain.channel.product.quantity.update",
            "tmall_supplychain_channel_product_quantity_update_response",
        ),
        ("alibaba.foo.bar", "alibaba_foo_bar_response"),
    ],
)
def test_response_key(method: str, key: str) -> None:
    assert response_key(method) == key


def test_response_key_strips_only_a_leading_taobao() -> None:
    assert response_key("tmall.taobao.thing") == "tmall_taobao_thing_response"


def test_protocol_tables() -> None:
    assert {"method", "app_key", "sign", "sign_method", "timestamp", "v"} <= SYSTEM_PARAMS
    assert "num_iid" not in SYSTEM_PARAMS
    assert PLATFORM_ERRORS[7] == "App Call Limited"
    assert PLATFORM_ERRORS[27] == "Invalid Session"
    assert CHINA_TZ.utcoffset(None) == timedelta(hours=8)


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2015, 1, 1, 4, 0, tzinfo=UTC), "2015-01-01 12:00:00"),
        (datetime(2024, 12, 31, 16, 0, 0, tzinfo=UTC), "2025-01-01 00:00:00"),  # year rollover
        (datetime(2024, 3, 1, 0, 0, 59, 999_999, tzinfo=UTC), "2024-03-01 08:00:59"),  # truncated
        (datetime(2024, 7, 1, 12, 0, tzinfo=CHINA_TZ), "2024-07-01 12:00:00"),
        (datetime(2024, 7, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))), "2024-07-01 13:00:00"),
    ],
)
def test_format_timestamp_in_china_time(moment: datetime, text: str) -> None:
    assert format_timestamp(moment) == text


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2015-01-01 12:00:00", datetime(2015, 1, 1, 4, 0, tzinfo=UTC)),
        ("2025-01-01 00:00:00", datetime(2024, 12, 31, 16, 0, tzinfo=UTC)),
        ("  2000-01-01 00:00:00\n", datetime(1999, 12, 31, 16, 0, tzinfo=UTC)),
        ("1420084800000", datetime(2015, 1, 1, 4, 0, tzinfo=UTC)),  # epoch milliseconds
        ("1420084800123", datetime(2015, 1, 1, 4, 0, 0, 123_000, tzinfo=UTC)),
        ("0", datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, moment: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == moment
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["", "2015-01-01", "2015-01-01T12:00:00", "yesterday", "-1000"])
def test_parse_timestamp_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


_moments = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, CHINA_TZ, timezone(timedelta(hours=-9, minutes=-30))]),
)


@given(_moments)
def test_timestamp_round_trip_at_second_resolution(moment: datetime) -> None:
    back = parse_timestamp(format_timestamp(moment))
    assert back == moment.replace(microsecond=0)
    assert back.tzinfo is UTC


@given(st.integers(min_value=0, max_value=7_258_118_400_000))  # up to 2200
def test_epoch_milliseconds_are_exact(ms: int) -> None:
    assert parse_timestamp(str(ms)) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


# --- ban time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sub_msg", "seconds"),
    [
        ("This ban will last for 31062 more seconds", 31062),
        ("This ban will last for 1 more second", 1),
        ("this BAN will last for 60 more SECONDS", 60),
        ("App Call Limited, This ban will last for 5 more seconds.", 5),
        ("App Call Limited", None),
        ("ban will last for many more seconds", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_ban_seconds(sub_msg: str | None, seconds: int | None) -> None:
    assert parse_ban_seconds(sub_msg) == seconds


# --- lists ----------------------------------------------------------------------------------

SKU_A = {"sku_id": 1, "quantity": 3}
SKU_B = {"sku_id": 2, "quantity": 0}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"sku": [SKU_A, SKU_B]}, [SKU_A, SKU_B]),  # simplify=false wrapper
        ([SKU_A, SKU_B], [SKU_A, SKU_B]),  # simplify=true plain array
        ({"sku": SKU_A}, [SKU_A]),  # a single object instead of a one-item list
        ({"sku": []}, []),
        ([], []),
        ({}, []),  # wrapper without the singular key
        ({"sku": None}, []),
        (None, []),  # absent
    ],
)
def test_unwrap_list(value: Any, expected: list[Any]) -> None:
    assert unwrap_list(value, "sku") == expected


def test_unwrap_list_string_wrapper() -> None:
    topics = {"string": ["taobao_item_ItemStockChanged"]}
    assert unwrap_list(topics, "string") == ["taobao_item_ItemStockChanged"]


@pytest.mark.parametrize("value", ["sku", 3, 1.5, True])
def test_unwrap_list_rejects_scalars(value: Any) -> None:
    with pytest.raises(TypeError, match="sku"):
        unwrap_list(value, "sku")
