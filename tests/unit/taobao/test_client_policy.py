"""The TOP client's policy, against httpx.MockTransport: no network, fake time."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr

from connector.errors import (
    TaobaoCallerError,
    TaobaoCallLimited,
    TaobaoError,
    TaobaoFullUpdateForbidden,
    TaobaoSessionError,
    TaobaoTransientError,
    TaobaoUnknownOutcome,
)
from connector.taobao.budget import BudgetPolicy, LocalCallBudget
from connector.taobao.client import TopClient
from connector.taobao.retry import RetryPolicy
from connector.taobao.signing import verify
from connector.taobao.tokens import MemoryTokenStore, TokenGrant, TokenManager

SECRET = "app-secret-value-123"
SESSION = "session-token-abcdef"
REFRESH = "refresh-token-ghijkl"
NEW_SESSION = "session-token-new-999"
LIMITED = "accesscontrol.limited-by-app-access-count"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """Monotonic clock that advances only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeEndpoint:
    def __init__(self) -> None:
        self.calls = 0

    async def refresh(self, refresh_token: SecretStr) -> TokenGrant:
        self.calls += 1
        return TokenGrant(SecretStr(NEW_SESSION), SecretStr("refresh-rotated-xyz"), None)


def form_of(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode()))


def ok(method_key: str, payload: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={method_key: {**payload, "request_id": "rid-ok"}})


def err(code: int, sub_code: str | None = None, sub_msg: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"code": code, "msg": "error", "request_id": f"rid-{code}"}
    if sub_code:
        body["sub_code"] = sub_code
    if sub_msg:
        body["sub_msg"] = sub_msg
    return httpx.Response(200, json={"error_response": body})


ITEM = {"item": {"num_iid": 600000000001, "num": 5, "modified": "2026-11-22 10:00:00"}}


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with ``responses`` in order, recording every request."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def make_client(
    handler: Handler,
    time_: FakeTime,
    *,
    endpoint: FakeEndpoint | None = None,
    refresh_token: str | None = REFRESH,
    policy: RetryPolicy | None = None,
    simplify: bool = False,
) -> TopClient:
    tokens = TokenManager(
        store=MemoryTokenStore(),
        endpoint=endpoint or FakeEndpoint(),
        seed_session=SecretStr(SESSION),
        seed_refresh_token=SecretStr(refresh_token) if refresh_token else None,
        clock=time_.clock,
        sleep=time_.sleep,
    )
    return TopClient(
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        gateway_url="http://gateway.test/router/rest",
        app_key="app-key-1",
        app_secret=SecretStr(SECRET),
        tokens=tokens,
        budget=LocalCallBudget(
            BudgetPolicy(qps=1000, burst=1000), clock=time_.clock, sleep=time_.sleep
        ),
        retry=policy or RetryPolicy(max_attempts=4, base_s=0.5, max_s=4.0, deadline_s=30.0),
        clock=time_.clock,
        sleep=time_.sleep,
        now=lambda: datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC),
        rng=random.Random(7),
        simplify=simplify,
    )


async def test_request_is_a_signed_post_form_with_system_params() -> None:
    handler, seen = scripted(ok("item_quantity_update_response", ITEM))
    client = make_client(handler, FakeTime())

    result = await client.update_quantity(600000000001, 5, sku_id=7)

    request = seen[0]
    form = form_of(request)
    assert request.method == "POST"
    assert request.url.query == b""  # the session never travels in the URL
    assert form["method"] == "taobao.item.quantity.update"
    assert form["timestamp"] == "2026-11-22 10:00:00"  # China time
    assert form["v"] == "2.0" and form["format"] == "json"
    assert form["sign_method"] == "hmac-sha256"
    assert form["session"] == SESSION
    assert form["type"] == "1" and form["quantity"] == "5" and form["sku_id"] == "7"
    assert "outer_id" not in form and "simplify" not in form  # empty values are not sent
    assert verify(form, SECRET)
    assert result.num_iid == 600000000001 and result.num == 5


async def test_transient_errors_are_retried_with_growing_jittered_backoff() -> None:
    time_ = FakeTime()
    handler, seen = scripted(
        err(15, "isp.remote-service-timeout"),
        httpx.Response(503),
        httpx.ConnectError("refused"),
        ok("item_quantity_update_response", ITEM),
    )
    client = make_client(handler, time_)

    await client.update_quantity(600000000001, 5)

    assert len(seen) == 4
    assert len(time_.sleeps) == 3
    for attempt, delay in enumerate(time_.sleeps, start=1):
        assert 0 <= delay <= min(4.0, 0.5 * 2 ** (attempt - 1))


async def test_transient_errors_give_up_after_max_attempts_with_the_request_id() -> None:
    handler, seen = scripted(err(15, "isp.remote-service-error"))
    client = make_client(handler, FakeTime())

    with pytest.raises(TaobaoTransientError) as info:
        await client.update_quantity(600000000001, 5)

    assert len(seen) == 4
    assert info.value.request_id == "rid-15"
    assert info.value.attempts == 4


async def test_deadline_bounds_retries() -> None:
    time_ = FakeTime()
    handler, seen = scripted(err(10))
    policy = RetryPolicy(max_attempts=100, base_s=1.0, max_s=1.0, deadline_s=3.0)
    client = make_client(handler, time_, policy=policy)

    with pytest.raises(TaobaoTransientError):
        await client.update_quantity(600000000001, 5)

    assert sum(time_.sleeps) < 3.0
    assert len(seen) < 100


@pytest.mark.parametrize(
    "response",
    [
        err(41, "isv.invalid-parameter:quantity"),
        err(15, "isv.item-not-exist:invalid-numIid-or-iid"),
        err(40, "isv.missing-parameter:num_iid"),
    ],
)
async def test_caller_errors_are_never_retried(response: httpx.Response) -> None:
    handler, seen = scripted(response)
    client = make_client(handler, FakeTime())

    with pytest.raises(TaobaoCallerError):
        await client.update_quantity(600000000001, 5)

    assert len(seen) == 1


async def test_presale_lock_is_its_own_error() -> None:
    handler, _ = scripted(err(15, "isv.item-is-presale:invalid-presale-tags-id"))
    client = make_client(handler, FakeTime())

    with pytest.raises(TaobaoFullUpdateForbidden):
        await client.update_quantity(600000000001, 5)


async def test_ban_is_honoured_then_the_call_succeeds() -> None:
    time_ = FakeTime()
    handler, seen = scripted(
        err(
            7, "accesscontrol.limited-by-app-access-count", "This ban will last for 3 more seconds"
        ),
        ok("item_quantity_update_response", ITEM),
    )
    client = make_client(handler, time_)

    await client.update_quantity(600000000001, 5)

    assert len(seen) == 2
    assert sum(time_.sleeps) >= 3.0  # waited the ban out before calling again


async def test_ban_longer_than_the_deadline_is_backpressure() -> None:
    handler, seen = scripted(
        err(
            7,
            "accesscontrol.limited-by-app-access-count",
            "This ban will last for 3600 more seconds",
        )
    )
    client = make_client(handler, FakeTime())

    with pytest.raises(TaobaoCallLimited) as info:
        await client.update_quantity(600000000001, 5)
    assert info.value.retry_after_s == 3600
    assert len(seen) == 1

    # The ban is remembered: the next call does not even reach the gateway.
    with pytest.raises(TaobaoCallLimited):
        await client.update_quantity(600000000001, 5)
    assert len(seen) == 1


async def test_invalid_session_refreshes_the_token_and_retries_once() -> None:
    endpoint = FakeEndpoint()
    handler, seen = scripted(
        err(27, "invalid-sessionkey"), ok("item_quantity_update_response", ITEM)
    )
    client = make_client(handler, FakeTime(), endpoint=endpoint)

    await client.update_quantity(600000000001, 5)

    assert endpoint.calls == 1
    assert [form_of(r)["session"] for r in seen] == [SESSION, NEW_SESSION]


async def test_session_still_invalid_after_refresh_is_raised() -> None:
    endpoint = FakeEndpoint()
    handler, seen = scripted(err(27, "invalid-sessionkey"))
    client = make_client(handler, FakeTime(), endpoint=endpoint)

    with pytest.raises(TaobaoSessionError):
        await client.update_quantity(600000000001, 5)
    assert endpoint.calls == 1
    assert len(seen) == 2


async def test_invalid_session_without_refresh_token_says_what_to_set() -> None:
    handler, _ = scripted(err(27, "invalid-sessionkey"))
    client = make_client(handler, FakeTime(), refresh_token=None)

    with pytest.raises(TaobaoSessionError, match="TAOBAO_REFRESH_TOKEN"):
        await client.update_quantity(600000000001, 5)


async def test_timeout_after_sending_an_incremental_update_is_an_unknown_outcome() -> None:
    handler, seen = scripted(httpx.ReadTimeout("slow"))
    client = make_client(handler, FakeTime())

    with pytest.raises(TaobaoUnknownOutcome, match="may have been applied"):
        await client.update_quantity(600000000001, 2, incremental=True)
    assert len(seen) == 1  # never repeated blindly


async def test_timeout_after_sending_a_full_update_is_retried() -> None:
    handler, seen = scripted(
        httpx.RemoteProtocolError("dropped"), ok("item_quantity_update_response", ITEM)
    )
    client = make_client(handler, FakeTime())

    await client.update_quantity(600000000001, 5)
    assert len(seen) == 2


async def test_full_update_unknown_outcome_persisting_is_raised_as_unknown() -> None:
    handler, _ = scripted(httpx.ReadTimeout("slow"))
    client = make_client(handler, FakeTime())

    with pytest.raises(TaobaoUnknownOutcome):
        await client.update_quantity(600000000001, 5)


async def test_non_json_answer_is_an_unknown_outcome() -> None:
    handler, _ = scripted(httpx.Response(200, text="<html>proxy</html>"))
    client = make_client(handler, FakeTime())

    with pytest.raises(TaobaoUnknownOutcome):
        await client.update_quantity(600000000001, 1, incremental=True)


async def test_simplify_reads_fields_at_the_root() -> None:
    handler, seen = scripted(httpx.Response(200, json={"item": ITEM["item"], "request_id": "r"}))
    client = make_client(handler, FakeTime(), simplify=True)

    result = await client.update_quantity(600000000001, 5)

    assert form_of(seen[0])["simplify"] == "true"
    assert result.num == 5


async def test_paging_stops_at_total_results() -> None:
    pages = [
        {"items": {"item": [{"num_iid": i} for i in range(1, 3)]}, "total_results": 5},
        {"items": {"item": [{"num_iid": i} for i in range(3, 5)]}, "total_results": 5},
        {"items": {"item": [{"num_iid": 5}]}, "total_results": 5},
    ]
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = form_of(request)
        seen.append(form)
        page = pages[int(form["page_no"]) - 1]
        return ok("items_onsale_get_response", page)

    client = make_client(handler, FakeTime())

    ids = [item.num_iid async for item in client.iter_onsale(page_size=2)]

    assert ids == [1, 2, 3, 4, 5]
    assert [f["page_no"] for f in seen] == ["1", "2", "3"]


async def test_batches_respect_platform_limits() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = form_of(request)
        seen.append(form)
        if form["method"] == "taobao.skus.quantity.update":
            return ok("skus_quantity_update_response", ITEM)
        return ok("items_custom_get_response", {"items": {"item": []}})

    client = make_client(handler, FakeTime())

    await client.update_sku_quantities(600000000001, {i: i for i in range(1, 46)})
    await client.items_by_outer_ids([f"CODE-{i}" for i in range(85)])

    sku_calls = [f for f in seen if f["method"] == "taobao.skus.quantity.update"]
    assert [len(f["skuid_quantities"].split(";")) for f in sku_calls] == [20, 20, 5]
    outer_calls = [f for f in seen if f["method"] == "taobao.items.custom.get"]
    assert [len(f["outer_id"].split(",")) for f in outer_calls] == [40, 40, 5]


async def test_no_secret_reaches_logs_or_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    handler, _ = scripted(
        err(27, "invalid-sessionkey"),
        err(15, "isp.remote-service-error", "backend down"),
        httpx.ReadTimeout("slow"),
        err(25),
    )
    client = make_client(handler, FakeTime())

    errors: list[TaobaoError] = []
    for _ in range(2):
        try:
            await client.update_quantity(600000000001, 5)
        except TaobaoError as exc:
            errors.append(exc)

    text = caplog.text + " ".join(f"{e!s} {e!r}" for e in errors) + repr(client)
    for secret in (SECRET, SESSION, REFRESH, NEW_SESSION, "refresh-rotated-xyz"):
        assert secret not in text
    assert any("TAOBAO_APP_SECRET" in str(e) for e in errors)  # code 25 names the fix
    assert json.dumps([str(e) for e in errors])  # serialisable, for result events
