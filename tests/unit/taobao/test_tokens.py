"""The seller's OAuth session: seeding, single-flight refresh, and the OAuth token endpoint."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from connector.errors import TaobaoSessionError
from connector.taobao.tokens import (
    MemoryTokenStore,
    OAuthTokenEndpoint,
    StoredToken,
    TokenGrant,
    TokenManager,
    fingerprint,
)

T0 = 1_714_536_000.0  # 2024-05-01 04:00:00 UTC
APP_KEY = "12345678"
APP_SECRET = "app-secret-5f2c9d81e7"
SESSION = "6100a2b3c4d5e6f7a8b9-session-0"
REFRESH = "6101f0e1d2c3b4a5-refresh-0"
TOKEN_URL = "https://oauth.example.test/token"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeEndpoint:
    """Hands out session-1, session-2 … with rotated refresh tokens; records every call."""

    def __init__(self, time: FakeTime, *, lifetime_s: float = 86400, rotate: bool = True) -> None:
        self.time = time
        self.lifetime_s = lifetime_s
        self.rotate = rotate
        self.calls: list[str] = []

    async def refresh(self, refresh_token: SecretStr) -> TokenGrant:
        self.calls.append(refresh_token.get_secret_value())
        for _ in range(3):  # let concurrent callers run while the "HTTP call" is in flight
            await asyncio.sleep(0)
        n = len(self.calls)
        return TokenGrant(
            access_token=SecretStr(f"6100-session-{n}"),
            refresh_token=SecretStr(f"6101-refresh-{n}") if self.rotate else refresh_token,
            expires_at=datetime.fromtimestamp(self.time.now + self.lifetime_s, UTC),
        )


class FailingEndpoint:
    def __init__(self) -> None:
        self.calls = 0

    async def refresh(self, refresh_token: SecretStr) -> TokenGrant:
        self.calls += 1
        raise TaobaoSessionError("token refresh refused (invalid_grant)", method="oauth")


def _manager(
    store: MemoryTokenStore,
    endpoint: FakeEndpoint | FailingEndpoint,
    time: FakeTime,
    *,
    session: str | None = SESSION,
    refresh: str | None = REFRESH,
    expires_at: datetime | None = None,
    margin_s: float = 300,
) -> TokenManager:
    return TokenManager(
        store=store,
        endpoint=endpoint,
        seed_session=SecretStr(session) if session else None,
        seed_refresh_token=SecretStr(refresh) if refresh else None,
        seed_expires_at=expires_at,
        refresh_margin_s=margin_s,
        clock=time.clock,
        sleep=time.sleep,
    )


def _at(offset_s: float) -> datetime:
    return datetime.fromtimestamp(T0 + offset_s, UTC)


# --- seeding --------------------------------------------------------------------------------


async def test_seeds_the_configured_token() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    manager = _manager(store, endpoint, time, expires_at=_at(3600))
    token = await manager.current()
    assert token.access_token.get_secret_value() == SESSION
    assert token.refresh_token == SecretStr(REFRESH)
    assert token.expires_at == _at(3600)
    assert token.version == 1
    assert token.seed == fingerprint(SecretStr(SESSION))
    assert await store.load() == token
    assert await manager.current() == token  # cached, no re-seed
    assert endpoint.calls == []


async def test_no_seed_and_empty_store_is_a_session_error() -> None:
    time = FakeTime()
    manager = _manager(MemoryTokenStore(), FakeEndpoint(time), time, session=None)
    with pytest.raises(TaobaoSessionError, match="TAOBAO_SESSION"):
        await manager.current()


async def test_without_a_seed_the_stored_token_is_used() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    await _manager(store, FakeEndpoint(time), time).current()
    replica = _manager(store, FakeEndpoint(time), time, session=None, refresh=None)
    assert (await replica.current()).access_token == SecretStr(SESSION)


async def test_restart_with_the_same_seed_keeps_the_refreshed_token() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    first = _manager(store, endpoint, time)
    refreshed = await first.refresh(stale=await first.current())
    restarted = _manager(store, endpoint, time)  # same configuration
    assert await restarted.current() == refreshed
    assert refreshed.access_token == SecretStr("6100-session-1")


async def test_a_different_configured_seed_replaces_the_stored_token() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    first = _manager(store, endpoint, time)
    await first.refresh(stale=await first.current())  # version 2, descends from SESSION
    reauthorised = _manager(store, endpoint, time, session="6100-new-grant", refresh="6101-new")
    token = await reauthorised.current()
    assert token.access_token == SecretStr("6100-new-grant")
    assert token.refresh_token == SecretStr("6101-new")
    assert token.version == 3
    assert token.seed == fingerprint(SecretStr("6100-new-grant"))
    # a refresh of the new grant keeps the new seed fingerprint, so a restart does not re-seed
    refreshed = await reauthorised.refresh(stale=token)
    assert refreshed.seed == token.seed
    assert endpoint.calls == [REFRESH, "6101-new"]


# --- proactive refresh ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed_s", "refreshed"),
    [(0, False), (699, False), (699.999, False), (700, True), (1000, True), (5000, True)],
)
async def test_refreshes_within_the_margin_of_expiry(elapsed_s: float, refreshed: bool) -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    manager = _manager(store, endpoint, time, expires_at=_at(1000), margin_s=300)
    await manager.current()
    time.now += elapsed_s
    token = await manager.current()
    assert endpoint.calls == ([REFRESH] if refreshed else [])
    expected = "6100-session-1" if refreshed else SESSION
    assert token.access_token.get_secret_value() == expected
    if refreshed:
        assert token.expires_at == datetime.fromtimestamp(time.now + 86400, UTC)
        assert token.refresh_token == SecretStr("6101-refresh-1")


async def test_token_without_expiry_is_never_refreshed_proactively() -> None:
    time = FakeTime()
    endpoint = FakeEndpoint(time)
    manager = _manager(MemoryTokenStore(), endpoint, time, expires_at=None)
    await manager.current()
    time.now += 10 * 365 * 86400
    assert (await manager.current()).access_token == SecretStr(SESSION)
    assert endpoint.calls == []


async def test_expiring_token_without_refresh_token_is_still_handed_out() -> None:
    time = FakeTime()
    endpoint = FakeEndpoint(time)
    manager = _manager(MemoryTokenStore(), endpoint, time, refresh=None, expires_at=_at(60))
    assert (await manager.current()).access_token == SecretStr(SESSION)
    assert endpoint.calls == []


async def test_proactive_refresh_sees_another_replicas_refresh() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    a = _manager(store, endpoint, time, expires_at=_at(1000))
    b = _manager(store, endpoint, time, expires_at=_at(1000))
    await a.current()
    await b.current()
    time.now += 800
    token_a = await a.current()
    token_b = await b.current()
    assert token_a == token_b
    assert endpoint.calls == [REFRESH]


# --- refresh(stale=...) ---------------------------------------------------------------------


async def test_refresh_rotates_once() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    manager = _manager(store, endpoint, time)
    stale = await manager.current()
    fresh = await manager.refresh(stale=stale)
    assert fresh.access_token == SecretStr("6100-session-1")
    assert fresh.refresh_token == SecretStr("6101-refresh-1")
    assert fresh.version == stale.version + 1
    assert await store.load() == fresh
    assert await manager.current() == fresh
    assert endpoint.calls == [REFRESH]
    # a caller still holding the old token gets the new one without another call
    assert await manager.refresh(stale=stale) == fresh
    assert endpoint.calls == [REFRESH]
    # refreshing the new one uses the rotated refresh token
    await manager.refresh(stale=fresh)
    assert endpoint.calls == [REFRESH, "6101-refresh-1"]


async def test_concurrent_refresh_of_the_same_stale_token_is_single_flight() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    manager = _manager(store, endpoint, time)
    stale = await manager.current()
    first, second, third = await asyncio.gather(
        manager.refresh(stale=stale), manager.refresh(stale=stale), manager.refresh(stale=stale)
    )
    assert first == second == third
    assert first.access_token == SecretStr("6100-session-1")
    assert endpoint.calls == [REFRESH]


async def test_concurrent_refresh_across_replicas_is_single_flight() -> None:
    """Two managers on one store (two replicas): the store lock makes one of them wait."""
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    a = _manager(store, endpoint, time)
    b = _manager(store, endpoint, time)
    stale = await a.current()
    assert await b.current() == stale
    got_a, got_b = await asyncio.gather(a.refresh(stale=stale), b.refresh(stale=stale))
    assert got_a == got_b
    assert endpoint.calls == [REFRESH]
    assert await store.try_lock("probe", 1)  # the lock was released


async def test_waiting_for_a_lock_that_is_never_released_times_out() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    manager = _manager(store, endpoint, time)
    stale = await manager.current()
    assert await store.try_lock("another-replica", 15)
    with pytest.raises(TaobaoSessionError, match="timed out"):
        await manager.refresh(stale=stale)
    assert endpoint.calls == []
    assert sum(time.sleeps) == pytest.approx(15, abs=0.2)


async def test_no_refresh_token_is_a_session_error() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    manager = _manager(store, endpoint, time, refresh=None)
    stale = await manager.current()
    with pytest.raises(TaobaoSessionError, match="TAOBAO_REFRESH_TOKEN"):
        await manager.refresh(stale=stale)
    assert endpoint.calls == []
    assert await store.try_lock("probe", 1)  # the lock was released


async def test_endpoint_failure_propagates_and_releases_the_lock() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FailingEndpoint()
    manager = _manager(store, endpoint, time)
    stale = await manager.current()
    with pytest.raises(TaobaoSessionError, match="invalid_grant"):
        await manager.refresh(stale=stale)
    assert await store.load() == stale  # nothing was overwritten
    with pytest.raises(TaobaoSessionError):
        await manager.refresh(stale=stale)  # a second try is not blocked by a stale lock
    assert endpoint.calls == 2


async def test_reprs_never_show_a_token() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    manager = _manager(store, FakeEndpoint(time), time)
    texts = [repr(manager)]
    token = await manager.current()
    fresh = await manager.refresh(stale=token)
    grant = TokenGrant(SecretStr(SESSION), SecretStr(REFRESH), None)
    texts += [repr(manager), str(manager), repr(token), str(token), repr(fresh), repr(grant)]
    for text in texts:
        for value in (SESSION, REFRESH, "6100-session-1", "6101-refresh-1"):
            assert value not in text
    assert repr(manager) == "TokenManager(version=2)"


# --- OAuthTokenEndpoint against httpx.MockTransport ----------------------------------------


class Recorder:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.forms: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert str(request.url) == TOKEN_URL
        form = parse_qs(request.content.decode("utf-8"), strict_parsing=True)
        self.forms.append({k: v[0] for k, v in form.items()})
        return self.handler(request)


async def _refresh(handler: Handler, refresh: str = REFRESH) -> tuple[TokenGrant, Recorder]:
    recorder = Recorder(handler)
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        endpoint = OAuthTokenEndpoint(
            http,
            token_url=TOKEN_URL,
            app_key=APP_KEY,
            app_secret=SecretStr(APP_SECRET),
            clock=lambda: T0,
        )
        grant = await endpoint.refresh(SecretStr(refresh))
    return grant, recorder


async def _refusal(handler: Handler) -> str:
    with pytest.raises(TaobaoSessionError) as info:
        await _refresh(handler)
    assert info.value.method == "oauth.token.refresh"
    assert info.value.__cause__ is None
    return str(info.value)


def _json_response(status: int, body: Any) -> Handler:
    return lambda request: httpx.Response(status, json=body)


@pytest.mark.parametrize("expires_in", [86400, "86400", 86400.0])
async def test_oauth_refresh_success(expires_in: Any) -> None:
    body = {
        "access_token": "6100-session-new",
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": "6101-refresh-new",
        "re_expires_in": 2592000,
        "taobao_user_id": "2021891722",
        "taobao_user_nick": "yexue08",
    }
    grant, recorder = await _refresh(_json_response(200, body))
    assert grant.access_token == SecretStr("6100-session-new")
    assert grant.refresh_token == SecretStr("6101-refresh-new")
    assert grant.expires_at == datetime.fromtimestamp(T0, UTC) + timedelta(seconds=86400)
    assert recorder.forms == [
        {
            "grant_type": "refresh_token",
            "refresh_token": REFRESH,
            "client_id": APP_KEY,
            "client_secret": APP_SECRET,
        }
    ]


@pytest.mark.parametrize("new_refresh", [None, "", "absent"])
async def test_oauth_without_a_new_refresh_token_keeps_the_old_one(new_refresh: str | None) -> None:
    body: dict[str, Any] = {"access_token": "6100-session-new", "expires_in": 3600}
    if new_refresh != "absent":
        body["refresh_token"] = new_refresh
    grant, _ = await _refresh(_json_response(200, body))
    assert grant.refresh_token == SecretStr(REFRESH)
    assert grant.expires_at == datetime.fromtimestamp(T0 + 3600, UTC)


async def test_oauth_without_expires_in_has_no_expiry() -> None:
    grant, _ = await _refresh(_json_response(200, {"access_token": "6100-x"}))
    assert grant.expires_at is None


@pytest.mark.parametrize(
    ("body", "shown", "hint"),
    [
        (
            {"error": "invalid_grant", "error_description": "refresh token expired"},
            "invalid_grant: refresh token expired",
            "TAOBAO_REFRESH_TOKEN",
        ),
        (
            {"error": "invalid_grant", "error_description": f"refresh_token {REFRESH} is invalid"},
            "invalid_grant: refresh_token *** is invalid",
            "TAOBAO_REFRESH_TOKEN",
        ),
        (
            {"error": "invalid_client", "error_description": "authorize code invalidate"},
            "invalid_client: authorize code invalidate",
            "TAOBAO_APP_SECRET",
        ),
        (
            {"error": "invalid_client", "error_description": f"bad client_secret={APP_SECRET}"},
            "invalid_client: bad client_secret=***",
            "TAOBAO_APP_KEY",
        ),
        ({"error": "invalid_grant"}, "invalid_grant", "TAOBAO_SESSION"),
        ({}, "HTTP 400", "TAOBAO_REFRESH_TOKEN"),
    ],
)
async def test_oauth_refusals(body: dict[str, Any], shown: str, hint: str) -> None:
    message = await _refusal(_json_response(400, body))
    assert f"({shown})" in message
    assert hint in message
    assert REFRESH not in message
    assert APP_SECRET not in message


async def test_oauth_invalid_client_hint_names_the_credentials() -> None:
    message = await _refusal(_json_response(401, {"error": "invalid_client"}))
    assert "TAOBAO_APP_KEY" in message
    assert "TAOBAO_APP_SECRET" in message
    assert "TAOBAO_REFRESH_TOKEN" not in message


@pytest.mark.parametrize(
    ("status", "content"),
    [
        (200, b"<html><body>login</body></html>"),
        (502, b"Bad Gateway"),
        (200, b""),
        (200, b"\xff\xfe\x00garbage"),
        (200, json.dumps(["access_token"]).encode()),
        (200, json.dumps({"error": "invalid_grant"}).encode()),  # 200 without a token
        (500, json.dumps({"access_token": "6100-x"}).encode()),  # a token on an error status
    ],
)
async def test_oauth_unusable_answers_are_session_errors(status: int, content: bytes) -> None:
    message = await _refusal(lambda request: httpx.Response(status, content=content))
    assert message.startswith("oauth.token.refresh: token refresh refused (")


@pytest.mark.parametrize(
    "exc_type", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
async def test_oauth_network_errors_are_session_errors(exc_type: type[httpx.RequestError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(f"failed sending {REFRESH}", request=request)

    message = await _refusal(handler)
    assert "unreachable" in message
    assert exc_type.__name__ in message
    assert "TAOBAO_TOKEN_URL" in message
    assert REFRESH not in message


async def test_oauth_redacts_a_token_cut_by_truncation() -> None:
    description = "x" * 190 + REFRESH  # the token starts at character 190
    message = await _refusal(
        _json_response(400, {"error": "invalid_grant", "error_description": description})
    )
    assert REFRESH[:10] not in message


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": None, "expires_in": 3600},
        {"access_token": "", "expires_in": 3600},
        {"access_token": "6100-x", "expires_in": "never"},
    ],
)
async def test_oauth_malformed_grant_is_a_session_error(body: dict[str, Any]) -> None:
    await _refusal(_json_response(200, body))


async def test_manager_with_oauth_endpoint_rotates_refresh_tokens() -> None:
    issued = iter([("6100-s1", "6101-r1"), ("6100-s2", "6101-r2")])

    def handler(request: httpx.Request) -> httpx.Response:
        access, refresh = next(issued)
        body = {"access_token": access, "refresh_token": refresh, "expires_in": 7200}
        return httpx.Response(200, json=body)

    recorder = Recorder(handler)
    time, store = FakeTime(), MemoryTokenStore()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        endpoint = OAuthTokenEndpoint(
            http,
            token_url=TOKEN_URL,
            app_key=APP_KEY,
            app_secret=SecretStr(APP_SECRET),
            clock=time.clock,
        )
        manager = TokenManager(
            store=store,
            endpoint=endpoint,
            seed_session=SecretStr(SESSION),
            seed_refresh_token=SecretStr(REFRESH),
            seed_expires_at=_at(100),  # already inside the 300 s margin
            clock=time.clock,
            sleep=time.sleep,
        )
        first = await manager.current()
        assert first.access_token == SecretStr("6100-s1")
        assert first.expires_at == _at(7200)
        time.now += 7000
        second = await manager.current()
    assert second.access_token == SecretStr("6100-s2")
    assert second.refresh_token == SecretStr("6101-r2")
    assert [form["refresh_token"] for form in recorder.forms] == [REFRESH, "6101-r1"]
    stored = await store.load()
    assert isinstance(stored, StoredToken)
    assert stored.version == 3


async def test_write_permission_lapsing_first_refreshes_before_it_and_fixed_tokens_never() -> None:
    time, store = FakeTime(), MemoryTokenStore()
    endpoint = FakeEndpoint(time)
    manager = _manager(store, endpoint, time)
    grant = TokenGrant(SecretStr("6100-w1"), SecretStr(REFRESH), _at(86_400),
                       write_expires_at=_at(1800), refreshable=True)  # fmt: skip
    await store.save(grant, seed=(await manager.current()).seed)
    manager._cached = None  # (read the store again)
    time.now += 1600  # within the margin of the write permission, far from the session's
    assert (await manager.current()).access_token == SecretStr("6100-session-1")
    fixed = TokenGrant(SecretStr("6100-fixed"), SecretStr(REFRESH), _at(2000), refreshable=False)
    await store.save(fixed, seed=(await manager.current()).seed)
    manager._cached = None
    # Fixed-length: used as it is until it expires, never sent for a refresh.
    assert (await manager.current()).access_token == SecretStr("6100-fixed")
    assert endpoint.calls == [REFRESH]
