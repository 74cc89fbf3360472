"""The sandbox TOP gateway over real HTTP: protocol checks, APIs, OAuth, limits, faults, admin."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.sandbox import FaultConfig, SandboxConfig, SandboxServer
from connector.taobao.protocol import format_timestamp, response_key
from connector.taobao.signing import SIGN_METHODS, SignMethod, sign

pytestmark = pytest.mark.integration

CONFIG = SandboxConfig(seed=20251111, ban_s=1, shutdown_timeout_s=0.5)
APP_KEY, SECRET, SESSION = CONFIG.app_key, CONFIG.app_secret, CONFIG.session
SHIRT, SNEAKER, MUG, NOTEBOOK, PRESALE, JACKET = (600000000001 + i for i in range(6))
RED_M, RED_L, BLUE_M = 700000000011, 700000000012, 700000000013
JACKET_M = 700000000061
QTY_UPDATE = "taobao.item.quantity.update"
BASE36 = set("0123456789abcdefghijklmnopqrstuvwxyz")


# ---------------------------------------------------------------------- fixtures and helpers


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


def now_ts(shift: timedelta = timedelta(0)) -> str:
    return format_timestamp(datetime.now(UTC) + shift)


def signed(method: str | None, **extra: str) -> dict[str, str]:
    return signed_with("md5", method, **extra)


def signed_with(sign_method: SignMethod, method: str | None, **extra: str) -> dict[str, str]:
    params = {
        "app_key": APP_KEY,
        "session": SESSION,
        "timestamp": now_ts(),
        "v": "2.0",
        "format": "json",
        "sign_method": sign_method,
        **extra,
    }
    if method is not None:
        params["method"] = method
    return resign(params)


def resign(params: dict[str, str], secret: str = SECRET) -> dict[str, str]:
    params.pop("sign", None)
    method = params.get("sign_method", "md5")
    params["sign"] = sign(params, secret, method if method in SIGN_METHODS else "md5")
    return params


def post(sandbox: SandboxServer, http: httpx.Client, params: dict[str, str]) -> dict[str, Any]:
    response = http.post(sandbox.gateway_url, data=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    body: dict[str, Any] = response.json()
    return body


def call(sandbox: SandboxServer, http: httpx.Client, method: str, **extra: str) -> dict[str, Any]:
    return post(sandbox, http, signed(method, **extra))


def ok(body: dict[str, Any], method: str) -> dict[str, Any]:
    assert "error_response" not in body, body
    result: dict[str, Any] = body[response_key(method)]
    assert set(result["request_id"]) <= BASE36 and len(result["request_id"]) == 13
    return result


def error(body: dict[str, Any]) -> dict[str, Any]:
    err: dict[str, Any] = body["error_response"]
    assert len(err["request_id"]) == 13
    return err


def item_state(sandbox: SandboxServer, http: httpx.Client, num_iid: int) -> dict[str, Any]:
    items = http.get(f"{sandbox.url}/sandbox/state").json()["items"]
    found: dict[str, Any] = next(i for i in items if i["num_iid"] == num_iid)
    return found


def set_faults(sandbox: SandboxServer, http: httpx.Client, **config: Any) -> None:
    http.post(f"{sandbox.url}/sandbox/faults", json=config).raise_for_status()


def calls(sandbox: SandboxServer, http: httpx.Client, since: int = 0) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = http.get(
        f"{sandbox.url}/sandbox/calls", params={"since": since}
    ).json()["calls"]
    return found


# ---------------------------------------------------------------------- envelopes and transport


def test_post_form_success_envelope(sandbox: SandboxServer, http: httpx.Client) -> None:
    body = call(
        sandbox, http, QTY_UPDATE, num_iid=str(SHIRT), sku_id=str(RED_M), quantity="3", type="1"
    )
    item = ok(body, QTY_UPDATE)["item"]
    assert item["iid"] == str(SHIRT) and item["num_iid"] == SHIRT
    assert item["num"] == 3 + 18 + 7
    first_sku = {k: v for k, v in item["skus"]["sku"][0].items() if k != "modified"}
    assert first_sku == {"sku_id": RED_M, "quantity": 3}
    datetime.strptime(item["modified"], "%Y-%m-%d %H:%M:%S")


def test_get_query_works(sandbox: SandboxServer, http: httpx.Client) -> None:
    params = signed("taobao.item.seller.get", num_iid=str(MUG), fields="num_iid,num,price,title")
    response = http.get(sandbox.gateway_url, params=params)
    item = ok(response.json(), "taobao.item.seller.get")["item"]
    assert item == {"num_iid": MUG, "num": 60, "price": "39.00", "title": item["title"]}


def test_system_params_in_query_and_api_params_in_body(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    params = signed(QTY_UPDATE, num_iid=str(MUG), quantity="9")
    system = {k: v for k, v in params.items() if k not in ("num_iid", "quantity")}
    response = http.post(
        sandbox.gateway_url, params=system, data={"num_iid": str(MUG), "quantity": "9"}
    )
    assert ok(response.json(), QTY_UPDATE)["item"]["num"] == 9


def test_body_wins_over_query(sandbox: SandboxServer, http: httpx.Client) -> None:
    params = signed(QTY_UPDATE, num_iid=str(MUG), quantity="9")
    response = http.post(sandbox.gateway_url, params={"quantity": "1"}, data=params)
    assert ok(response.json(), QTY_UPDATE)["item"]["num"] == 9


@pytest.mark.parametrize("simplify", [False, True])
def test_list_shapes(sandbox: SandboxServer, http: httpx.Client, simplify: bool) -> None:
    extra = {"simplify": "true"} if simplify else {}

    def result(method: str, **params: str) -> dict[str, Any]:
        body = call(sandbox, http, method, **params, **extra)
        if simplify:
            assert response_key(method) not in body and "request_id" in body
            return body
        return ok(body, method)

    def unwrap(value: Any, singular: str) -> list[Any]:
        if simplify:
            assert isinstance(value, list)
            return value
        assert isinstance(value, dict) and list(value) == [singular]
        inner: list[Any] = value[singular]
        return inner

    onsale = result("taobao.items.onsale.get", fields="num_iid,num,sku")
    items = unwrap(onsale["items"], "item")
    assert onsale["total_results"] == len(items) == 5
    shirt = next(i for i in items if i["num_iid"] == SHIRT)
    assert len(unwrap(shirt["skus"], "sku")) == 3
    skus = unwrap(
        result("taobao.skus.custom.get", fields="sku_id,num_iid,quantity", outer_id="TSHIRT-RED-M")[
            "skus"
        ],
        "sku",
    )
    assert skus == [{"sku_id": RED_M, "num_iid": SHIRT, "quantity": 25}]
    inv = result("taobao.inventory.query", sc_item_ids="800000000011^42")
    assert len(unwrap(inv["item_inventorys"], "inventory_sum")) == 2
    assert unwrap(inv["tip_infos"], "tip_info")[0]["sc_item_id"] == 42
    custom = result("taobao.items.custom.get", fields="num_iid,outer_id", outer_id="MUG-WHITE,NONE")
    assert unwrap(custom["items"], "item") == [{"num_iid": MUG, "outer_id": "MUG-WHITE"}]
    updated = result(QTY_UPDATE, num_iid=str(SHIRT), sku_id=str(RED_M), quantity="4")
    assert len(unwrap(updated["item"]["skus"], "sku")) == 3


def test_errors_are_never_simplified(sandbox: SandboxServer, http: httpx.Client) -> None:
    body = call(sandbox, http, QTY_UPDATE, num_iid="1", quantity="1", simplify="true")
    assert error(body)["sub_code"] == "isv.item-not-exist:invalid-numIid-or-iid"


# ---------------------------------------------------------------------- gateway checks


def _drop(*names: str) -> Any:
    return lambda p: {k: v for k, v in p.items() if k not in names}


def _set(**values: str) -> Any:
    return lambda p: {**p, **values}


GATEWAY_CASES = [
    ("missing method", _drop("method"), 21, None),
    ("missing app_key", _drop("app_key"), 28, None),
    ("invalid app_key", _set(app_key="someone-else"), 29, None),
    ("missing timestamp", _drop("timestamp"), 30, None),
    ("garbage timestamp", _set(timestamp="yesterday"), 31, None),
    ("huge epoch", _set(timestamp="9" * 30), 31, None),
    ("missing v", _drop("v"), 32, None),
    ("invalid v", _set(v="two"), 33, None),
    ("unsupported v", _set(v="1.0"), 34, None),
    ("xml", _set(format="xml"), 23, None),
    ("bad sign_method", _set(sign_method="sha1"), 41, "isv.invalid-parameter:sign_method"),
    ("unknown method", _set(method="taobao.nothing.here"), 22, None),
    ("missing session", _drop("session"), 26, None),
    ("invalid session", _set(session="stolen"), 27, "invalid-sessionkey"),
]


@pytest.mark.parametrize(
    ("mutate", "code", "sub_code"),
    [case[1:] for case in GATEWAY_CASES],
    ids=[case[0] for case in GATEWAY_CASES],
)
def test_gateway_checks(
    sandbox: SandboxServer, http: httpx.Client, mutate: Any, code: int, sub_code: str | None
) -> None:
    params = resign(mutate(signed(QTY_UPDATE, num_iid=str(MUG), quantity="5")))
    err = error(post(sandbox, http, params))
    assert err["code"] == code
    assert err.get("sub_code") == sub_code
    assert isinstance(err["msg"], str) and err["msg"]


def test_xml_is_refused_with_a_hint(sandbox: SandboxServer, http: httpx.Client) -> None:
    err = error(post(sandbox, http, signed(QTY_UPDATE, format="xml")))
    assert (err["code"], err["msg"]) == (23, "Invalid Format")
    assert "JSON" in err["sub_msg"]


def test_missing_format_means_json(sandbox: SandboxServer, http: httpx.Client) -> None:
    params = resign(_drop("format")(signed(QTY_UPDATE, num_iid=str(MUG), quantity="5")))
    assert ok(post(sandbox, http, params), QTY_UPDATE)["item"]["num"] == 5


@pytest.mark.parametrize("shift_s", [-660, 660])
def test_timestamp_skew(sandbox: SandboxServer, http: httpx.Client, shift_s: int) -> None:
    params = signed(QTY_UPDATE, num_iid=str(MUG), quantity="5")
    params["timestamp"] = now_ts(timedelta(seconds=shift_s))
    err = error(post(sandbox, http, resign(params)))
    assert err["code"] == 31 and "600" in err["sub_msg"]


def test_epoch_ms_timestamp_is_accepted(sandbox: SandboxServer, http: httpx.Client) -> None:
    params = signed(QTY_UPDATE, num_iid=str(MUG), quantity="5")
    params["timestamp"] = str(int(time.time() * 1000))
    ok(post(sandbox, http, resign(params)), QTY_UPDATE)


@pytest.mark.parametrize("sign_method", SIGN_METHODS)
def test_every_sign_method(
    sandbox: SandboxServer, http: httpx.Client, sign_method: SignMethod
) -> None:
    good = signed_with(sign_method, QTY_UPDATE, num_iid=str(MUG), quantity="5")
    assert ok(post(sandbox, http, good), QTY_UPDATE)["item"]["num"] == 5
    bad = resign(signed_with(sign_method, QTY_UPDATE, num_iid=str(MUG), quantity="6"), "wrong")
    assert (error(post(sandbox, http, bad))["code"], error(post(sandbox, http, bad))["msg"]) == (
        25,
        "Invalid Signature",
    )
    tampered = {**good, "quantity": "7"}
    assert error(post(sandbox, http, tampered))["code"] == 25


def test_missing_sign(sandbox: SandboxServer, http: httpx.Client) -> None:
    params = _drop("sign")(signed(QTY_UPDATE, num_iid=str(MUG), quantity="5"))
    assert error(post(sandbox, http, params))["code"] == 24


def test_empty_params_are_part_of_the_signature(sandbox: SandboxServer, http: httpx.Client) -> None:
    with_empty = signed(QTY_UPDATE, num_iid=str(MUG), quantity="5", outer_id="")
    ok(post(sandbox, http, with_empty), QTY_UPDATE)
    signed_without = signed(QTY_UPDATE, num_iid=str(MUG), quantity="5")
    assert error(post(sandbox, http, {**signed_without, "outer_id": ""}))["code"] == 25


@pytest.mark.parametrize("verb", ["PUT", "DELETE", "PATCH"])
def test_other_http_methods(sandbox: SandboxServer, http: httpx.Client, verb: str) -> None:
    response = http.request(verb, sandbox.gateway_url, params=signed(QTY_UPDATE))
    assert response.status_code == 200
    assert error(response.json())["code"] == 9


# ---------------------------------------------------------------------- per-API parameters

PARAM_CASES: list[tuple[str, dict[str, str], int, str]] = [
    (QTY_UPDATE, {"quantity": "1"}, 40, "isv.missing-parameter:num_iid"),
    (QTY_UPDATE, {"num_iid": str(MUG)}, 40, "isv.missing-parameter:quantity"),
    (QTY_UPDATE, {"num_iid": "12x", "quantity": "1"}, 41, "isv.invalid-parameter:num_iid"),
    (QTY_UPDATE, {"num_iid": str(MUG), "quantity": "1.5"}, 41, "isv.invalid-parameter:quantity"),
    (QTY_UPDATE, {"num_iid": str(MUG), "quantity": "9" * 25}, 41, "isv.invalid-parameter:quantity"),
    (
        QTY_UPDATE,
        {"num_iid": str(MUG), "quantity": "1", "type": "3"},
        41,
        "isv.invalid-parameter:type",
    ),
    (
        QTY_UPDATE,
        {"num_iid": str(SHIRT), "quantity": "1", "sku_id": "red"},
        41,
        "isv.invalid-parameter:sku_id",
    ),
    (
        "taobao.skus.quantity.update",
        {"num_iid": str(SHIRT)},
        40,
        "isv.missing-parameter:skuid_quantities",
    ),
    (
        "taobao.skus.quantity.update",
        {"num_iid": str(SHIRT), "skuid_quantities": "a:b"},
        41,
        "isv.invalid-parameter:skuid_quantities",
    ),
    (
        "taobao.skus.quantity.update",
        {"num_iid": str(SHIRT), "skuid_quantities": ";".join(f"{RED_M}:{i}" for i in range(21))},
        41,
        "isv.invalid-parameter:skuid_quantities",
    ),
    ("taobao.item.update.listing", {"num_iid": str(MUG)}, 40, "isv.missing-parameter:num"),
    (
        "taobao.item.update.listing",
        {"num_iid": str(MUG), "num": "-1"},
        41,
        "isv.invalid-parameter:num",
    ),
    ("taobao.item.update.delisting", {}, 40, "isv.missing-parameter:num_iid"),
    ("taobao.item.seller.get", {"num_iid": str(MUG)}, 40, "isv.missing-parameter:fields"),
    (
        "taobao.items.onsale.get",
        {"fields": "num_iid", "page_size": "201"},
        41,
        "isv.invalid-parameter:page_size",
    ),
    (
        "taobao.items.onsale.get",
        {"fields": "num_iid", "order_by": "price:up"},
        41,
        "isv.invalid-parameter:order_by",
    ),
    (
        "taobao.items.onsale.get",
        {"fields": "num_iid", "start_modified": "today"},
        41,
        "isv.invalid-parameter:start_modified",
    ),
    (
        "taobao.items.inventory.get",
        {"fields": "num_iid", "page_no": "102"},
        41,
        "isv.invalid-parameter:page_no",
    ),
    (
        "taobao.items.inventory.get",
        {"fields": "num_iid", "banner": "all"},
        41,
        "isv.invalid-parameter:banner",
    ),
    ("taobao.skus.custom.get", {"fields": "sku_id"}, 40, "isv.missing-parameter:outer_id"),
    (
        "taobao.items.custom.get",
        {"fields": "num_iid", "outer_id": ",".join(f"X{i}" for i in range(41))},
        41,
        "isv.invalid-parameter:outer_id",
    ),
    (
        "taobao.inventory.query",
        {"sc_item_ids": "^".join(str(i + 1) for i in range(51))},
        41,
        "isv.invalid-parameter:sc_item_ids",
    ),
    ("taobao.inventory.query", {"sc_item_ids": "1^x"}, 41, "isv.invalid-parameter:sc_item_ids"),
    ("taobao.top.auth.token.refresh", {}, 40, "isv.missing-parameter:refresh_token"),
]


@pytest.mark.parametrize(("method", "extra", "code", "sub_code"), PARAM_CASES)
def test_parameter_checks(
    sandbox: SandboxServer,
    http: httpx.Client,
    method: str,
    extra: dict[str, str],
    code: int,
    sub_code: str,
) -> None:
    err = error(call(sandbox, http, method, **extra))
    assert (err["code"], err["sub_code"]) == (code, sub_code)
    assert err["msg"] == ("Missing Required Arguments" if code == 40 else "Invalid Arguments")


BUSINESS_CASES: list[tuple[str, dict[str, str], str]] = [
    (QTY_UPDATE, {"num_iid": "1", "quantity": "1"}, "isv.item-not-exist:invalid-numIid-or-iid"),
    (
        QTY_UPDATE,
        {"num_iid": str(SHIRT), "quantity": "1"},
        "isv.item-quantity-item-update-service-error",
    ),
    (
        QTY_UPDATE,
        {"num_iid": str(SHIRT), "sku_id": "5", "quantity": "1"},
        "isv.invalid-parameter:sku-properties",
    ),
    (QTY_UPDATE, {"num_iid": str(MUG), "quantity": "-1"}, "isv.invalid-parameter:quantity"),
    (
        QTY_UPDATE,
        {"num_iid": str(MUG), "quantity": "-61", "type": "2"},
        "isv.invalid-parameter:quantity",
    ),
    (
        QTY_UPDATE,
        {"num_iid": str(MUG), "quantity": "0"},
        "isv.item-update-service-error:FORBIDDEN_QUANTITY_ZERO_ERROR",
    ),
    (
        QTY_UPDATE,
        {"num_iid": str(PRESALE), "quantity": "3"},
        "isv.item-is-presale:invalid-presale-tags-id",
    ),
    (
        "taobao.skus.quantity.update",
        {"num_iid": str(JACKET), "skuid_quantities": f"{JACKET_M}:3"},
        "isv.item-is-campaign:full-update-forbidden",
    ),
    (
        "taobao.skus.quantity.update",
        {"num_iid": str(JACKET), "skuid_quantities": f"{JACKET_M}:-1", "type": "2"},
        "isv.item-is-campaign:only-increase-allowed",
    ),
    (
        "taobao.item.seller.get",
        {"num_iid": "1", "fields": "num"},
        "isv.item-not-exist:invalid-numIid-or-iid",
    ),
    (
        "taobao.top.auth.token.refresh",
        {"refresh_token": "nope"},
        "isv.invalid-parameter:refresh_token",
    ),
]


@pytest.mark.parametrize(("method", "extra", "sub_code"), BUSINESS_CASES)
def test_business_rules(
    sandbox: SandboxServer, http: httpx.Client, method: str, extra: dict[str, str], sub_code: str
) -> None:
    before = http.get(f"{sandbox.url}/sandbox/state").json()["items"]
    err = error(call(sandbox, http, method, **extra))
    assert (err["code"], err["msg"], err["sub_code"]) == (15, "Remote service error", sub_code)
    assert err["sub_msg"]
    assert http.get(f"{sandbox.url}/sandbox/state").json()["items"] == before


def test_presale_incremental_and_its_message(sandbox: SandboxServer, http: httpx.Client) -> None:
    err = error(call(sandbox, http, QTY_UPDATE, num_iid=str(PRESALE), quantity="3"))
    assert err["sub_msg"] == "预售商品，不能全量更新库存，只能增量更新库存"
    body = call(sandbox, http, QTY_UPDATE, num_iid=str(PRESALE), quantity="-3", type="2")
    assert ok(body, QTY_UPDATE)["item"]["num"] == 27


def test_skus_update_by_outer_id_and_incremental_floor(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    method = "taobao.skus.quantity.update"
    body = call(sandbox, http, method, num_iid=str(SHIRT), outerid_quantities="TSHIRT-RED-L:2")
    assert ok(body, method)["item"]["num"] == 25 + 2 + 7
    body = call(
        sandbox, http, method, num_iid=str(SHIRT), skuid_quantities=f"{BLUE_M}:-100", type="2"
    )
    assert ok(body, method)["item"]["num"] == 25 + 2


def test_delist_then_zero_then_listing(sandbox: SandboxServer, http: httpx.Client) -> None:
    ok(
        call(sandbox, http, "taobao.item.update.delisting", num_iid=str(MUG)),
        "taobao.item.update.delisting",
    )
    ok(call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="0"), QTY_UPDATE)
    inventory = ok(
        call(sandbox, http, "taobao.items.inventory.get", fields="num_iid,num", banner="sold_out"),
        "taobao.items.inventory.get",
    )
    assert inventory["items"]["item"] == [{"num_iid": MUG, "num": 0}]
    err = error(call(sandbox, http, "taobao.item.update.listing", num_iid=str(MUG), num="0"))
    assert err["sub_code"] == "isv.item-update-service-error:FORBIDDEN_QUANTITY_ZERO_ERROR"
    listed = ok(
        call(sandbox, http, "taobao.item.update.listing", num_iid=str(MUG), num="8"),
        "taobao.item.update.listing",
    )
    assert set(listed["item"]) == {"iid", "num_iid", "modified"}
    state = item_state(sandbox, http, MUG)
    assert (state["approve_status"], state["num"]) == ("onsale", 8)


def test_modified_window(sandbox: SandboxServer, http: httpx.Client) -> None:
    start = now_ts(timedelta(seconds=-1))
    ok(call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="11"), QTY_UPDATE)
    found = ok(
        call(sandbox, http, "taobao.items.onsale.get", fields="num_iid", start_modified=start),
        "taobao.items.onsale.get",
    )
    assert (found["total_results"], found["items"]["item"]) == (1, [{"num_iid": MUG}])


# ---------------------------------------------------------------------- OAuth


def token_form(**overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": CONFIG.refresh_token,
        "client_id": APP_KEY,
        "client_secret": SECRET,
    }
    return {k: v for k, v in {**form, **overrides}.items() if v != "-"}


def test_token_refresh_rotates(sandbox: SandboxServer, http: httpx.Client) -> None:
    response = http.post(sandbox.token_url, data=token_form())
    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 86400
    assert {
        "re_expires_in",
        "r1_expires_in",
        "w1_expires_in",
        "taobao_user_id",
        "taobao_user_nick",
    } <= set(token)
    assert token["refresh_token"] != CONFIG.refresh_token
    # the old refresh token is spent; the old access token still works; the new one too
    again = http.post(sandbox.token_url, data=token_form())
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    ok(call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="5"), QTY_UPDATE)
    fresh = call(
        sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="6", session=token["access_token"]
    )
    ok(fresh, QTY_UPDATE)
    rotated = http.post(sandbox.token_url, data=token_form(refresh_token=token["refresh_token"]))
    assert rotated.status_code == 200


@pytest.mark.parametrize(
    ("overrides", "status", "error_code"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "other"}, 401, "invalid_client"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
        ({"grant_type": "-"}, 400, "invalid_request"),
        ({"refresh_token": "-"}, 400, "invalid_request"),
        ({"refresh_token": "forged"}, 400, "invalid_grant"),
    ],
)
def test_token_errors(
    sandbox: SandboxServer,
    http: httpx.Client,
    overrides: dict[str, str],
    status: int,
    error_code: str,
) -> None:
    response = http.post(sandbox.token_url, data=token_form(**overrides))
    assert response.status_code == status
    assert response.json()["error"] == error_code and response.json()["error_description"]


def test_top_auth_token_refresh_api(sandbox: SandboxServer, http: httpx.Client) -> None:
    method = "taobao.top.auth.token.refresh"
    params = _drop("session")(signed(method, refresh_token=CONFIG.refresh_token))
    result = ok(post(sandbox, http, resign(params)), method)
    token = json.loads(result["token_result"])
    assert token["token_type"] == "Bearer" and token["access_token"]
    ok(
        call(
            sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="5", session=token["access_token"]
        ),
        QTY_UPDATE,
    )
    err = error(
        post(
            sandbox,
            http,
            resign(_drop("session")(signed(method, refresh_token=CONFIG.refresh_token))),
        )
    )
    assert err["sub_code"] == "isv.invalid-parameter:refresh_token"


def test_expired_tokens(sandbox: SandboxServer, http: httpx.Client) -> None:
    assert http.post(f"{sandbox.url}/sandbox/tokens/expire").json()["expired"] >= 1
    err = error(call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="5"))
    assert (err["code"], err["sub_code"]) == (27, "invalid-sessionkey")
    token = http.post(sandbox.token_url, data=token_form()).json()
    ok(
        call(
            sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="5", session=token["access_token"]
        ),
        QTY_UPDATE,
    )


# ---------------------------------------------------------------------- call limits


def test_call_limit_and_ban(http: httpx.Client) -> None:
    with SandboxServer(SandboxConfig(qps=2, ban_s=3)) as limited:
        bodies = [
            post(limited, http, signed("taobao.item.seller.get", num_iid=str(MUG), fields="num"))
            for _ in range(4)
        ]
        assert all("error_response" not in b for b in bodies[:2])
        for body in bodies[2:]:
            err = error(body)
            assert (err["code"], err["msg"], err["sub_code"]) == (
                7,
                "App Call Limited",
                "accesscontrol.limited-by-app-access-count",
            )
            assert err["sub_msg"] == "This ban will last for 3 more seconds"
        state = http.get(f"{limited.url}/sandbox/state").json()
        assert APP_KEY in state["bans"]
        # an invalid app key is answered before the limiter
        assert (
            error(post(limited, http, resign({**signed(QTY_UPDATE), "app_key": "x"})))["code"] == 29
        )


def test_injected_code_7_bans(sandbox: SandboxServer, http: httpx.Client) -> None:
    set_faults(sandbox, http, error_rates={"7": 1.0}, methods=[QTY_UPDATE])
    err = error(call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="5"))
    assert (err["code"], err["sub_code"]) == (7, "accesscontrol.limited-by-app-access-count")
    assert err["sub_msg"] == "This ban will last for 1 more seconds"
    # the ban covers every method, even one the fault config leaves alone
    err = error(call(sandbox, http, "taobao.item.seller.get", num_iid=str(MUG), fields="num"))
    assert err["code"] == 7
    assert item_state(sandbox, http, MUG)["num"] == 60


# ---------------------------------------------------------------------- bans on demand

BAN_ERROR = (7, "App Call Limited", "accesscontrol.limited-by-app-access-count")


def start_ban(sandbox: SandboxServer, http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post(f"{sandbox.url}/sandbox/ban", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def bans(sandbox: SandboxServer, http: httpx.Client) -> dict[str, float]:
    found: dict[str, float] = http.get(f"{sandbox.url}/sandbox/state").json()["bans"]
    return found


def test_ban_of_chosen_length_starts_now(sandbox: SandboxServer, http: httpx.Client) -> None:
    before = datetime.now(UTC)
    answer = start_ban(sandbox, http, seconds=60)
    assert (answer["app_key"], answer["remaining_s"]) == (APP_KEY, 60)
    until = datetime.fromisoformat(answer["until"])
    assert before + timedelta(seconds=59) < until <= datetime.now(UTC) + timedelta(seconds=60)
    assert set(bans(sandbox, http)) == {APP_KEY} and 59 < bans(sandbox, http)[APP_KEY] <= 60
    banned = [
        (QTY_UPDATE, {"num_iid": str(MUG), "quantity": "5"}),
        ("taobao.item.update.delisting", {"num_iid": str(MUG)}),
        ("taobao.item.seller.get", {"num_iid": str(MUG), "fields": "num"}),
        ("taobao.top.auth.token.refresh", {"refresh_token": CONFIG.refresh_token}),
    ]
    for method, extra in banned:
        err = error(call(sandbox, http, method, **extra))
        assert (err["code"], err["msg"], err["sub_code"]) == BAN_ERROR
        assert err["sub_msg"] == "This ban will last for 60 more seconds"
    # nothing was applied: stock and shelf as they were, the refresh token not spent
    mug = item_state(sandbox, http, MUG)
    assert (mug["num"], mug["approve_status"]) == (60, "onsale")
    assert http.post(sandbox.token_url, data=token_form()).status_code == 200
    logged = calls(sandbox, http)
    assert [(c["method"], c["code"], c["sub_code"], c["applied"]) for c in logged] == [
        *((method, 7, BAN_ERROR[2], False) for method, _ in banned),
        ("/token", None, None, False),
    ]


def test_ban_counts_down_and_ends(sandbox: SandboxServer, http: httpx.Client) -> None:
    def seller_get() -> dict[str, Any]:
        return call(sandbox, http, "taobao.item.seller.get", num_iid=str(MUG), fields="num")

    answer = start_ban(sandbox, http, seconds=1.5)
    assert answer["remaining_s"] == 2
    until = datetime.fromisoformat(answer["until"])
    assert error(seller_get())["sub_msg"] == "This ban will last for 2 more seconds"
    time.sleep(0.6)
    assert error(seller_get())["sub_msg"] == "This ban will last for 1 more seconds"
    deadline = time.monotonic() + 5
    while bans(sandbox, http):
        assert time.monotonic() < deadline, "the ban did not end"
        time.sleep(0.05)
    assert datetime.now(UTC) > until - timedelta(milliseconds=50)
    ok(seller_get(), "taobao.item.seller.get")
    assert [c["code"] for c in calls(sandbox, http)] == [7, 7, None]


def test_ban_extends_but_never_shortens(sandbox: SandboxServer, http: httpx.Client) -> None:
    assert start_ban(sandbox, http, seconds=30)["remaining_s"] == 30
    kept = start_ban(sandbox, http, seconds=5)
    assert kept["remaining_s"] == 30
    longer = start_ban(sandbox, http, seconds=45, app_key=APP_KEY)
    assert longer["remaining_s"] == 45
    assert datetime.fromisoformat(longer["until"]) > datetime.fromisoformat(kept["until"])
    assert 44 < bans(sandbox, http)[APP_KEY] <= 45
    err = error(call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="5"))
    assert err["sub_msg"] == "This ban will last for 45 more seconds"
    http.post(f"{sandbox.url}/sandbox/reset").raise_for_status()
    assert bans(sandbox, http) == {}
    ok(call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="5"), QTY_UPDATE)


BAD_BANS: list[tuple[str, dict[str, Any], str]] = [
    ("empty body", {}, "seconds is required"),
    ("not an object", {"json": [60]}, "JSON object"),
    ("no seconds", {"json": {"app_key": APP_KEY}}, "seconds is required"),
    ("zero", {"json": {"seconds": 0}}, "> 0"),
    ("negative", {"json": {"seconds": -5}}, "> 0"),
    ("longer than a day", {"json": {"seconds": 86401}}, "<= 86400"),
    ("string", {"json": {"seconds": "60"}}, "must be a number"),
    ("bool", {"json": {"seconds": True}}, "must be a number"),
    ("null", {"json": {"seconds": None}}, "must be a number"),
    ("nan", {"content": b'{"seconds": NaN}'}, "> 0"),
    ("infinity", {"content": b'{"seconds": Infinity}'}, "<= 86400"),
    ("other app key", {"json": {"seconds": 5, "app_key": "someone-else"}}, "app_key"),
    ("empty app key", {"json": {"seconds": 5, "app_key": ""}}, "app_key"),
    ("unknown key", {"json": {"seconds": 5, "minutes": 1}}, "unknown keys: minutes"),
    ("not json", {"content": b"{"}, "not JSON"),
    ("not utf-8", {"content": b"\xff\xfe{}"}, "not JSON"),
]


@pytest.mark.parametrize(
    ("kwargs", "fragment"), [b[1:] for b in BAD_BANS], ids=[b[0] for b in BAD_BANS]
)
def test_ban_rejects_bad_bodies(
    sandbox: SandboxServer, http: httpx.Client, kwargs: dict[str, Any], fragment: str
) -> None:
    response = http.post(f"{sandbox.url}/sandbox/ban", **kwargs)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert bans(sandbox, http) == {}


def test_every_request_is_logged_with_when_it_arrived(
    sandbox: SandboxServer, http: httpx.Client
) -> None:
    tick = timedelta(milliseconds=1)  # the log shows milliseconds, truncated
    start = datetime.now(UTC)
    ok(call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="5"), QTY_UPDATE)
    time.sleep(0.01)  # so the first call arrived clearly before the ban
    ban_start = datetime.now(UTC)
    until = datetime.fromisoformat(start_ban(sandbox, http, seconds=30)["until"])
    error(call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="6"))
    error(post(sandbox, http, {"app_key": APP_KEY, "method": QTY_UPDATE}))  # not even signed
    error(post(sandbox, http, resign({**signed(QTY_UPDATE), "app_key": "someone-else"})))
    error(post(sandbox, http, _drop("method")(signed(QTY_UPDATE))))
    http.get(sandbox.gateway_url, params=signed("taobao.item.seller.get", num_iid=str(MUG)))
    http.post(sandbox.gateway_url, content=b"\x00garbage")
    http.post(sandbox.token_url, data=token_form())  # the token URL is not banned
    end = datetime.now(UTC)
    logged = calls(sandbox, http)
    assert [c["seq"] for c in logged] == list(range(1, 9))
    assert [(c["method"], c["code"]) for c in logged] == [
        (QTY_UPDATE, None),
        (QTY_UPDATE, 7),
        (QTY_UPDATE, 7),
        (QTY_UPDATE, 29),  # another app key is refused before the ban check
        (None, 21),
        ("taobao.item.seller.get", 7),
        (None, 21),
        ("/token", None),
    ]
    assert [c["applied"] for c in logged] == [True] + [False] * 7
    assert item_state(sandbox, http, MUG)["num"] == 5
    for entry in logged:
        received = datetime.fromisoformat(entry["received"])
        answered = datetime.fromisoformat(entry["time"])
        assert start - tick <= received <= answered <= end
    during = [
        c["seq"]
        for c in logged
        if ban_start - tick <= datetime.fromisoformat(c["received"]) < until
    ]
    assert during == list(range(2, 9))


# ---------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("key", "code", "msg", "sub_code"),
    [
        ("10", 10, "Service Currently Unavailable", None),
        ("isp.remote-service-timeout", 15, "Remote service error", "isp.remote-service-timeout"),
        (
            "isv.item-is-delete:invalid-numIid-or-iid",
            15,
            "Remote service error",
            "isv.item-is-delete:invalid-numIid-or-iid",
        ),
    ],
)
def test_injected_errors(
    sandbox: SandboxServer, http: httpx.Client, key: str, code: int, msg: str, sub_code: str | None
) -> None:
    set_faults(sandbox, http, error_rates={key: 1.0})
    err = error(call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="5"))
    assert (err["code"], err["msg"], err.get("sub_code")) == (code, msg, sub_code)
    assert item_state(sandbox, http, MUG)["num"] == 60
    assert calls(sandbox, http)[-1]["fault"] == "error"


def test_timeout_fault_does_not_apply(sandbox: SandboxServer, http: httpx.Client) -> None:
    set_faults(sandbox, http, timeout_rate=1.0, timeout_s=0.3)
    with pytest.raises(httpx.ReadTimeout):
        http.post(
            sandbox.gateway_url,
            data=signed(QTY_UPDATE, num_iid=str(MUG), quantity="5"),
            timeout=0.1,
        )
    assert item_state(sandbox, http, MUG)["num"] == 60
    time.sleep(0.35)  # let the held answer finish so it is logged in this test
    [entry] = calls(sandbox, http)
    assert (entry["fault"], entry["applied"], entry["sub_code"]) == (
        "timeout",
        False,
        "isp.top-remote-connection-timeout",
    )


def test_hang_after_apply(sandbox: SandboxServer, http: httpx.Client) -> None:
    set_faults(sandbox, http, hang_after_apply_rate=1.0, timeout_s=0.3)
    with pytest.raises(httpx.ReadTimeout):
        http.post(
            sandbox.gateway_url,
            data=signed(QTY_UPDATE, num_iid=str(MUG), quantity="5"),
            timeout=0.1,
        )
    assert item_state(sandbox, http, MUG)["num"] == 5
    time.sleep(0.35)
    [entry] = calls(sandbox, http)
    assert (entry["fault"], entry["applied"], entry["code"]) == ("hang_after_apply", True, None)


def test_drop_after_apply(sandbox: SandboxServer, http: httpx.Client) -> None:
    set_faults(sandbox, http, drop_after_apply_rate=1.0, methods=[QTY_UPDATE])
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(sandbox.gateway_url, data=signed(QTY_UPDATE, num_iid=str(MUG), quantity="5"))
    assert item_state(sandbox, http, MUG)["num"] == 5
    [entry] = calls(sandbox, http)
    assert (entry["fault"], entry["applied"]) == ("drop_after_apply", True)
    # reads are outside the method filter and still answer
    ok(
        call(sandbox, http, "taobao.item.seller.get", num_iid=str(MUG), fields="num"),
        "taobao.item.seller.get",
    )


def test_latency(sandbox: SandboxServer, http: httpx.Client) -> None:
    set_faults(sandbox, http, latency_ms=150)
    started = time.perf_counter()
    ok(
        call(sandbox, http, "taobao.item.seller.get", num_iid=str(MUG), fields="num"),
        "taobao.item.seller.get",
    )
    assert time.perf_counter() - started >= 0.15


# ---------------------------------------------------------------------- admin


def test_state_has_every_field(sandbox: SandboxServer, http: httpx.Client) -> None:
    state = http.get(f"{sandbox.url}/sandbox/state").json()
    assert len(state["items"]) == 6
    shirt = next(i for i in state["items"] if i["num_iid"] == SHIRT)
    assert {
        "title",
        "outer_id",
        "num",
        "approve_status",
        "lock",
        "list_time",
        "modified",
        "price",
        "skus",
    } <= set(shirt)
    assert shirt["num"] == sum(s["quantity"] for s in shirt["skus"])
    assert state["faults"] == FaultConfig().to_json()
    assert state["bans"] == {} and state["sc_items"]


def test_call_log_redacts_and_pages(sandbox: SandboxServer, http: httpx.Client) -> None:
    call(sandbox, http, QTY_UPDATE, num_iid=str(MUG), quantity="5")
    call(sandbox, http, "taobao.top.auth.token.refresh", refresh_token="secret-refresh")
    http.post(sandbox.token_url, data=token_form())
    log = http.get(f"{sandbox.url}/sandbox/calls").json()
    assert [c["seq"] for c in log["calls"]] == [1, 2, 3] and log["next"] == 3
    first, second, third = log["calls"]
    assert first["params"]["sign"] == first["params"]["session"] == "***"
    assert first["params"]["quantity"] == "5" and first["applied"] is True
    assert first["method"] == QTY_UPDATE and first["app_key"] == APP_KEY
    assert first["code"] is None and first["fault"] is None and first["duration_ms"] >= 0
    assert second["params"]["refresh_token"] == "***" and second["applied"] is False
    assert third["method"] == "/token" and third["params"]["client_secret"] == "***"
    assert third["params"]["refresh_token"] == "***"
    text = json.dumps(log)
    assert SESSION not in text and SECRET not in text and "secret-refresh" not in text
    assert calls(sandbox, http, since=2) == [third]


def test_reset_with_custom_catalog(sandbox: SandboxServer, http: httpx.Client) -> None:
    catalog = {"items": [{"num_iid": 5, "title": "only", "num": 3}]}
    assert http.post(f"{sandbox.url}/sandbox/reset", json={"catalog": catalog}).json()["items"] == 1
    assert [i["num_iid"] for i in http.get(f"{sandbox.url}/sandbox/state").json()["items"]] == [5]
    bad = http.post(f"{sandbox.url}/sandbox/reset", json={"catalog": {"items": [{}]}})
    assert bad.status_code == 400 and "num_iid" in bad.json()["error"]


def test_faults_endpoint(sandbox: SandboxServer, http: httpx.Client) -> None:
    set_faults(sandbox, http, timeout_rate=0.25)
    assert http.get(f"{sandbox.url}/sandbox/faults").json()["timeout_rate"] == 0.25
    bad = http.post(f"{sandbox.url}/sandbox/faults", json={"timeout_rate": 2})
    assert bad.status_code == 400
    assert http.post(f"{sandbox.url}/sandbox/faults", content=b"{").status_code == 400
    assert http.post(f"{sandbox.url}/sandbox/reset", content=b"\xff{}").status_code == 400


def test_merchant_edit(sandbox: SandboxServer, http: httpx.Client) -> None:
    before = item_state(sandbox, http, SHIRT)
    edited = http.post(
        f"{sandbox.url}/sandbox/items/{SHIRT}",
        json={"approve_status": "instock", "lock": "presale", "sku_quantities": {str(RED_M): 1}},
    ).json()
    assert (edited["approve_status"], edited["lock"], edited["num"]) == ("instock", "presale", 26)
    assert edited["modified"] > before["modified"]
    assert http.post(f"{sandbox.url}/sandbox/items/{MUG}", json={"quantity": 0}).json()["num"] == 0
    assert http.post(f"{sandbox.url}/sandbox/items/1", json={"quantity": 1}).status_code == 404
    assert http.post(f"{sandbox.url}/sandbox/items/{MUG}", json={"quantity": -1}).status_code == 400
    assert http.post(f"{sandbox.url}/sandbox/items/{MUG}", json={"colour": 1}).status_code == 400


def test_healthz(sandbox: SandboxServer, http: httpx.Client) -> None:
    assert http.get(f"{sandbox.url}/healthz").json() == {"status": "ok"}


# ---------------------------------------------------------------------- never a 5xx


def assert_top_answer(response: httpx.Response) -> None:
    assert response.status_code < 500
    if response.status_code == 200:
        body = response.json()
        assert isinstance(body, dict) and body
        if "error_response" in body:
            assert body["error_response"].get("sub_code") != "isp.unknown-error", body


GARBAGE: list[tuple[str, dict[str, Any]]] = [
    (
        "binary form body",
        {
            "content": bytes(range(256)) * 4,
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
    ),
    (
        "bad percent escapes",
        {
            "content": b"method=%zz&app_key=%E4%&sign=%%",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
    ),
    (
        "nul bytes",
        {
            "content": b"method=\x00&\x00=\x00",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
    ),
    (
        "json body",
        {
            "content": b'{"method": "taobao.item.seller.get"}',
            "headers": {"Content-Type": "application/json"},
        },
    ),
    (
        "multipart garbage",
        {
            "content": b"--x\r\nnonsense",
            "headers": {"Content-Type": "multipart/form-data; boundary=x"},
        },
    ),
    (
        "multipart no boundary",
        {"content": b"abc", "headers": {"Content-Type": "multipart/form-data"}},
    ),
    ("no content type", {"content": b"method=a&app_key=b"}),
    (
        "text body",
        {"content": "方法=值".encode(), "headers": {"Content-Type": "text/plain; charset=gbk"}},
    ),
    (
        "huge body",
        {
            "content": b"a=" + b"x" * (5 * 1024 * 1024),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
    ),
    (
        "charset mismatch",
        {
            "content": "method=商品".encode("gbk"),
            "headers": {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        },
    ),
]


@pytest.mark.parametrize("kwargs", [g[1] for g in GARBAGE], ids=[g[0] for g in GARBAGE])
def test_garbage_bodies(sandbox: SandboxServer, http: httpx.Client, kwargs: dict[str, Any]) -> None:
    assert_top_answer(http.post(sandbox.gateway_url, **kwargs))
    assert_top_answer(http.post(sandbox.token_url, **kwargs))


def test_duplicate_keys_and_unicode(sandbox: SandboxServer, http: httpx.Client) -> None:
    params = signed(QTY_UPDATE, num_iid=str(MUG), quantity="5", outer_id="红色-М-🙂")
    body = "&".join(f"{k}={v}" for k, v in [("quantity", "1"), *params.items()])
    response = http.post(
        sandbox.gateway_url,
        content=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_top_answer(response)


_text = st.text(max_size=40)
_api_values = st.one_of(
    _text,
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(
        [
            "",
            " ",
            "1",
            "0",
            "-1",
            str(MUG),
            str(SHIRT),
            str(RED_M),
            "1:2;3:4",
            f"{RED_M}:1",
            "num_iid,sku",
        ]
    ),
)
_api_names = st.sampled_from(
    [
        "num_iid",
        "sku_id",
        "outer_id",
        "quantity",
        "type",
        "skuid_quantities",
        "outerid_quantities",
        "num",
        "fields",
        "start_modified",
        "end_modified",
        "page_no",
        "page_size",
        "order_by",
        "banner",
        "sc_item_ids",
        "refresh_token",
        "simplify",
    ]
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(
        [
            QTY_UPDATE,
            "taobao.skus.quantity.update",
            "taobao.item.update.listing",
            "taobao.item.update.delisting",
            "taobao.item.seller.get",
            "taobao.items.onsale.get",
            "taobao.items.inventory.get",
            "taobao.skus.custom.get",
            "taobao.items.custom.get",
            "taobao.inventory.query",
            "taobao.top.auth.token.refresh",
        ]
    ),
    extra=st.dictionaries(_api_names, _api_values, max_size=6),
)
def test_fuzz_signed_api_calls(
    sandbox: SandboxServer, http: httpx.Client, method: str, extra: dict[str, str]
) -> None:
    response = http.post(sandbox.gateway_url, data=signed(method, **extra))
    assert_top_answer(response)
    assert response.status_code == 200


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=st.dictionaries(_text, _text, max_size=8), use_get=st.booleans())
def test_fuzz_unsigned_garbage(
    sandbox: SandboxServer, http: httpx.Client, raw: dict[str, str], use_get: bool
) -> None:
    clean = {k.replace("\x00", ""): v.replace("\x00", "") for k, v in raw.items()}
    if use_get:
        response = http.get(sandbox.gateway_url, params=clean)
    else:
        response = http.post(sandbox.gateway_url, data=clean)
    assert_top_answer(response)
    assert response.status_code == 200 and "error_response" in response.json()
