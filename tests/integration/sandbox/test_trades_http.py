"""Taobao selling on its own, over HTTP: the admin trade endpoints, the TMC APIs and the
trade APIs, as a bridge would use them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connector.sandbox import SandboxServer
from connector.taobao.protocol import format_timestamp
from tests.integration.sandbox.test_gateway import (
    CONFIG,
    MUG,
    RED_M,
    SHIRT,
    call,
    error,
    item_state,
    now_ts,
    ok,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(CONFIG) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


@pytest.fixture(autouse=True)
def _reset(sandbox: SandboxServer, http: httpx.Client) -> None:
    http.post(f"{sandbox.url}/sandbox/reset").raise_for_status()


CONSUME, CONFIRM = "taobao.tmc.messages.consume", "taobao.tmc.messages.confirm"


def order(sandbox: SandboxServer, http: httpx.Client, **body: int) -> int:
    answer = http.post(f"{sandbox.url}/sandbox/orders", json=body)
    assert answer.status_code == 200, answer.text
    tid: int = answer.json()["tid"]
    return tid


def messages(sandbox: SandboxServer, http: httpx.Client) -> list[dict[str, object]]:
    found = ok(call(sandbox, http, CONSUME, quantity="100"), CONSUME)["messages"]
    return list(found.get("tmc_message", [])) if found else []


def test_a_taobao_order_reaches_the_queue_and_the_trade_apis(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    permit = "taobao.tmc.user.permit"
    assert ok(call(sandbox, http, permit), permit)["is_success"] is True
    user = ok(call(sandbox, http, "taobao.tmc.user.get", fields="topics,group_name",
                    nick="sandbox_b_01"), "taobao.tmc.user.get")["tmc_user"]  # fmt: skip
    assert user["group_name"] == "default"
    assert "taobao_trade_TradeCreate" in user["topics"]["string"]

    before = item_state(sandbox, http, MUG)["num"]
    tid = order(sandbox, http, num_iid=MUG, quantity=2)
    assert tid > 2**53
    assert item_state(sandbox, http, MUG)["num"] == before - 2

    got = messages(sandbox, http)
    assert [m["topic"] for m in got] == ["taobao_trade_TradeCreate", "taobao_item_ItemStockChanged"]
    content = json.loads(str(got[0]["content"]))
    assert content["tid"] == tid and content["status"] == "WAIT_BUYER_PAY"
    assert messages(sandbox, http) == []  # in flight until confirmed or timed out
    ids = ",".join(str(m["id"]) for m in got)
    assert ok(call(sandbox, http, CONFIRM, s_message_ids=ids), CONFIRM)["is_success"] is True

    full = ok(call(sandbox, http, "taobao.trade.fullinfo.get", tid=str(tid),
                    fields="tid,status,orders"), "taobao.trade.fullinfo.get")["trade"]  # fmt: skip
    assert full["tid"] == tid and full["status"] == "WAIT_BUYER_PAY"
    (line,) = full["orders"]["order"]
    assert (line["num_iid"], line["num"], line["outer_iid"]) == (MUG, 2, "MUG-WHITE")

    assert http.post(f"{sandbox.url}/sandbox/orders/{tid}/pay").json()["status"] == (
        "WAIT_SELLER_SEND_GOODS"
    )
    window = {
        "start_modified": now_ts(timedelta(minutes=-5)),
        "end_modified": now_ts(timedelta(minutes=5)),
    }
    increment = "taobao.trades.sold.increment.get"
    page = ok(call(sandbox, http, increment, fields="tid,status", page_size="100",
                    use_has_next="true", **window), increment)  # fmt: skip
    assert page["has_next"] is False
    assert [t["tid"] for t in page["trades"]["trade"]] == [tid]


def test_the_connectors_own_update_and_a_hand_edit_are_announced(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    call(sandbox, http, "taobao.tmc.user.permit", topics="taobao_item_ItemStockChanged")
    update = "taobao.item.quantity.update"
    ok(call(sandbox, http, update, num_iid=str(SHIRT), sku_id=str(RED_M), quantity="30"), update)
    http.post(f"{sandbox.url}/sandbox/items/{SHIRT}", json={"sku_quantities": {str(RED_M): 31}})
    got = messages(sandbox, http)
    increments = [json.loads(str(m["content"]))["increment"] for m in got]
    assert increments == [5, 1]  # 25 -> 30 (the connector), 30 -> 31 (by hand)


def test_a_full_update_below_the_withheld_stock_is_refused(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    # The demo shop's T-shirt deducts on payment (sub_stock 2): an unpaid order holds.
    assert item_state(sandbox, http, SHIRT)["sub_stock"] == 2
    order(sandbox, http, num_iid=SHIRT, sku_id=RED_M, quantity=4)
    sku = next(s for s in item_state(sandbox, http, SHIRT)["skus"] if s["sku_id"] == RED_M)
    assert sku["with_hold_quantity"] == 4
    update = "taobao.item.quantity.update"
    refused = error(call(sandbox, http, update, num_iid=str(SHIRT), sku_id=str(RED_M),
                         quantity="3"))  # fmt: skip
    assert refused["sub_code"] == "isv.error-inventory-invalid-item-quantity"


def test_orders_the_shop_cannot_take_are_refused(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    assert http.post(f"{sandbox.url}/sandbox/orders", json={"num_iid": 1, "quantity": 1}
                     ).status_code == 400  # fmt: skip
    too_many = http.post(f"{sandbox.url}/sandbox/orders", json={"num_iid": MUG, "quantity": 999})
    assert too_many.status_code == 400 and "sellable" in too_many.json()["error"]
    assert http.post(f"{sandbox.url}/sandbox/orders/123/pay").status_code == 404
    assert http.post(f"{sandbox.url}/sandbox/orders/123/explode").status_code == 404
    window_too_long = error(call(sandbox, http, "taobao.trades.sold.increment.get",
                                 fields="tid", start_modified=format_timestamp_days(0),
                                 end_modified=format_timestamp_days(2)))  # fmt: skip
    assert window_too_long["code"] == 41


def format_timestamp_days(days: int) -> str:
    return format_timestamp(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=days))
