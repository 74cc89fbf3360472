"""The seller's OAuth session: where the newest token lives and how it is refreshed.

The access token (TOP's ``session`` parameter) expires; the refresh token buys a new one,
through the documented API ``taobao.top.auth.token.refresh`` (``TopTokenEndpoint``, the
default) or the OAuth server's ``/token`` route (``OAuthTokenEndpoint``,
``TAOBAO_TOKEN_REFRESH=oauth``), and the answer may rotate the refresh token. Some apps get
fixed-length tokens that cannot be refreshed (``re_expires_in`` 0; the documented API says
only apps sold on the service market may refresh), and write permission
(``w1_expires_in``) may lapse before the session: both expiries are kept with the token so
the projection can warn days before (``TokenManager.expiry``). With
several replicas the newest pair must be visible to all of them and only one may refresh at
a time, so the pair lives in Redis (``Keys.token``) and a short lock (``Keys.token_lock``)
makes the refresh single-flight. The configured token is a *seed*: it is written to Redis
the first time, or when the operator configures a different one (a re-authorisation);
otherwise the newest refreshed token in Redis wins.

Tokens are ``SecretStr`` everywhere and never appear in logs, spans or exception text.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from pydantic import SecretStr
from redis.exceptions import RedisError

from connector.errors import (
    DependencyError,
    TaobaoCallerError,
    TaobaoSessionError,
    TaobaoUnknownOutcome,
    redact,
)
from connector.keys import Keys
from connector.push.leases import Leases
from connector.redis_client import AsyncRedis

__all__ = [
    "Expiry",
    "MemoryTokenStore",
    "OAuthTokenEndpoint",
    "RedisTokenStore",
    "StoredToken",
    "TokenEndpoint",
    "TokenGrant",
    "TokenManager",
    "TokenStore",
    "TopTokenEndpoint",
    "grant_from",
]

_REFRESH_METHOD = "oauth.token.refresh"


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What the token endpoint hands out."""

    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: datetime | None
    # When the refresh token stops working (None: unknown); a grant with re_expires_in 0
    # cannot be refreshed at all (refreshable False).
    refresh_expires_at: datetime | None = None
    write_expires_at: datetime | None = None  # write permission (w1_expires_in)
    refreshable: bool | None = None


@dataclass(frozen=True, slots=True)
class StoredToken:
    """The newest token as every replica sees it; ``version`` grows on every change."""

    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: datetime | None
    version: int
    seed: str  # fingerprint of the configured token this one descends from
    refresh_expires_at: datetime | None = None
    write_expires_at: datetime | None = None
    refreshable: bool | None = None


@dataclass(frozen=True, slots=True)
class Expiry:
    """What the session's expiries are, as last seen (no I/O: for gauges and warnings)."""

    session_at: datetime | None
    write_at: datetime | None
    refresh_at: datetime | None
    refreshable: bool | None
    has_refresh: bool  # a refresh token is at hand


def _at_ms(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None


def _ms(value: datetime | None) -> str:
    return str(int(value.timestamp() * 1000)) if value else ""


def fingerprint(token: SecretStr) -> str:
    """A one-way fingerprint, to notice a newly configured token without storing it twice."""
    return hashlib.sha256(token.get_secret_value().encode("utf-8")).hexdigest()[:32]


class TokenStore(Protocol):
    async def load(self) -> StoredToken | None: ...
    async def save(self, grant: TokenGrant, *, seed: str) -> StoredToken: ...
    async def try_lock(self, owner: str, ttl_s: float) -> bool: ...
    async def unlock(self, owner: str) -> None: ...


class TokenEndpoint(Protocol):
    async def refresh(self, refresh_token: SecretStr) -> TokenGrant: ...


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisTokenStore:
    """The token hash and refresh lock in Redis, shared by every replica."""

    def __init__(self, redis: AsyncRedis, keys: Keys, app_key: str) -> None:
        self._redis = redis
        self._key = keys.token(app_key)
        self._lock_key = keys.token_lock(app_key)
        self._leases = Leases(redis)

    async def load(self) -> StoredToken | None:
        try:
            raw = await self._redis.hgetall(self._key)
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the Taobao token: {exc}") from exc
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        refresh = fields.get("refresh_token")
        refreshable = fields.get("refreshable")
        return StoredToken(
            access_token=SecretStr(fields["access_token"]),
            refresh_token=SecretStr(refresh) if refresh else None,
            expires_at=_at_ms(fields.get("expires_at_ms")),
            version=int(fields.get("version", "0")),
            seed=fields.get("seed", ""),
            refresh_expires_at=_at_ms(fields.get("refresh_expires_at_ms")),
            write_expires_at=_at_ms(fields.get("write_expires_at_ms")),
            refreshable=None if not refreshable else refreshable == "1",
        )

    async def save(self, grant: TokenGrant, *, seed: str) -> StoredToken:
        mapping: dict[Any, Any] = {
            "access_token": grant.access_token.get_secret_value(),
            "refresh_token": grant.refresh_token.get_secret_value() if grant.refresh_token else "",
            "expires_at_ms": _ms(grant.expires_at),
            "refresh_expires_at_ms": _ms(grant.refresh_expires_at),
            "write_expires_at_ms": _ms(grant.write_expires_at),
            "refreshable": "" if grant.refreshable is None else str(int(grant.refreshable)),
            "seed": seed,
        }
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key, mapping=mapping)
                pipe.hincrby(self._key, "version", 1)
                _, version = await pipe.execute()
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the Taobao token: {exc}") from exc
        return _stored(grant, version, seed)

    async def try_lock(self, owner: str, ttl_s: float) -> bool:
        return await self._leases.acquire(self._lock_key, ttl_s, token=owner) is not None

    async def unlock(self, owner: str) -> None:
        await self._leases.release(self._lock_key, owner)


def _stored(grant: TokenGrant, version: int, seed: str) -> StoredToken:
    return StoredToken(
        grant.access_token,
        grant.refresh_token,
        grant.expires_at,
        version,
        seed,
        grant.refresh_expires_at,
        grant.write_expires_at,
        grant.refreshable,
    )


class MemoryTokenStore:
    """A process-local store (unit tests, a single local run)."""

    def __init__(self) -> None:
        self._token: StoredToken | None = None
        self._lock_owner: str | None = None

    async def load(self) -> StoredToken | None:
        return self._token

    async def save(self, grant: TokenGrant, *, seed: str) -> StoredToken:
        version = (self._token.version if self._token else 0) + 1
        self._token = _stored(grant, version, seed)
        return self._token

    async def try_lock(self, owner: str, ttl_s: float) -> bool:
        if self._lock_owner is None:
            self._lock_owner = owner
            return True
        return False

    async def unlock(self, owner: str) -> None:
        if self._lock_owner == owner:
            self._lock_owner = None


class OAuthTokenEndpoint:
    """``POST token_url`` with ``grant_type=refresh_token`` (reference §4.1)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token_url: str,
        app_key: str,
        app_secret: SecretStr,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._url = token_url
        self._app_key = app_key
        self._secret = app_secret
        self._clock = clock

    async def refresh(self, refresh_token: SecretStr) -> TokenGrant:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.get_secret_value(),
            "client_id": self._app_key,
            "client_secret": self._secret.get_secret_value(),
        }
        try:
            response = await self._http.post(self._url, data=form)
        except httpx.HTTPError as exc:
            raise TaobaoSessionError(
                f"token endpoint unreachable ({type(exc).__name__}); check TAOBAO_TOKEN_URL",
                method=_REFRESH_METHOD,
            ) from None
        return self._grant(response, refresh_token)

    def _grant(self, response: httpx.Response, used: SecretStr) -> TokenGrant:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        access = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(access, str) or not access.strip():
            raise TaobaoSessionError(
                self._refusal(response.status_code, body, used), method=_REFRESH_METHOD
            )
        assert isinstance(body, dict)
        return grant_from(body, used, self._clock())

    def _refusal(self, status: int, body: Any, used: SecretStr) -> str:
        error = description = ""
        if isinstance(body, dict):
            error = str(body.get("error", ""))
            description = str(body.get("error_description", ""))
        secret_values = (used.get_secret_value(), self._secret.get_secret_value())
        # Redact before truncating, or a secret cut in two would escape the match.
        detail = redact(f"{error}: {description}".strip(": "), secret_values)[:200]
        detail = detail or f"HTTP {status}"
        hint = (
            "check TAOBAO_APP_KEY and TAOBAO_APP_SECRET"
            if error == "invalid_client"
            else "authorize the app again and set TAOBAO_SESSION and TAOBAO_REFRESH_TOKEN"
        )
        return f"token refresh refused ({detail}); {hint}"


def grant_from(body: Mapping[str, Any], used: SecretStr, now_s: float) -> TokenGrant:
    """A token answer's fields (reference §4.2): lifetimes in seconds from ``now_s``."""
    access = body.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise TaobaoSessionError("the token answer has no access_token", method=_REFRESH_METHOD)
    new_refresh = body.get("refresh_token")
    refresh_in = _seconds(body.get("re_expires_in"), "re_expires_in")
    return TokenGrant(
        access_token=SecretStr(access),
        # An endpoint that does not rotate the refresh token leaves the old one valid.
        refresh_token=SecretStr(new_refresh)
        if isinstance(new_refresh, str) and new_refresh
        else used,
        expires_at=_after(now_s, _seconds(body.get("expires_in"), "expires_in")),
        refresh_expires_at=_after(now_s, refresh_in) if refresh_in else None,
        write_expires_at=_after(now_s, _seconds(body.get("w1_expires_in"), "w1_expires_in")),
        refreshable=None if refresh_in is None else refresh_in > 0,
    )


def _seconds(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TaobaoSessionError(
            f"the token answer has a malformed {name}", method=_REFRESH_METHOD
        ) from None


def _after(now_s: float, seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(now_s + seconds, UTC)


class TopTokenEndpoint:
    """``taobao.top.auth.token.refresh`` (reference §4.3, the documented API): a signed TOP
    call through the client (its budget and retries), answered with ``token_result``, a
    JSON string of the token fields."""

    def __init__(
        self,
        call: Callable[..., Awaitable[Mapping[str, Any]]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._call = call
        self._clock = clock

    async def refresh(self, refresh_token: SecretStr) -> TokenGrant:
        method = "taobao.top.auth.token.refresh"
        try:
            body = await self._call(
                method,
                {"refresh_token": refresh_token.get_secret_value()},
                idempotent=False,  # a refresh token is spent by its first use
                needs_session=False,
            )
        except TaobaoCallerError as exc:
            raise TaobaoSessionError(_refused_refresh(exc, refresh_token), method=method) from None
        except TaobaoUnknownOutcome:
            # The call that needed the session was not sent: it fails on the session.
            raise TaobaoSessionError(
                "the token refresh got no answer (the refresh token may be spent); it is "
                "tried again with the next call",
                method=method,
            ) from None
        try:
            fields = json.loads(str(body["token_result"]))
        except (KeyError, ValueError):
            raise TaobaoSessionError(
                "the refresh answer has no token_result", method=method
            ) from None
        if not isinstance(fields, dict):
            raise TaobaoSessionError(
                "the refresh answer's token_result is not an object", method=method
            )
        return grant_from(fields, refresh_token, self._clock())


def _refused_refresh(exc: TaobaoCallerError, used: SecretStr) -> str:
    # TOP's text should never carry the token; redacted all the same.
    why = redact(exc.sub_msg or exc.sub_code or "refused", (used.get_secret_value(),))[:200]
    return (
        f"token refresh refused ({why}): the refresh token is expired or spent, or the app's "
        "tokens are fixed-length (only apps sold on the service market may refresh); "
        "authorize the app again and set TAOBAO_SESSION (and TAOBAO_REFRESH_TOKEN)"
    )


def _must_seed(stored: StoredToken | None, seed_fp: str) -> bool:
    """Write the configured token unless Redis holds it or a token refreshed from it."""
    return stored is None or stored.seed != seed_fp


class TokenManager:
    """Hands out the current access token and refreshes it once, across replicas."""

    def __init__(
        self,
        *,
        store: TokenStore,
        endpoint: TokenEndpoint,
        seed_session: SecretStr | None,
        seed_refresh_token: SecretStr | None,
        seed_expires_at: datetime | None = None,
        refresh_margin_s: float = 300.0,
        lock_ttl_s: float = 15.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._endpoint = endpoint
        self._seed = (
            TokenGrant(seed_session, seed_refresh_token, seed_expires_at) if seed_session else None
        )
        self._margin_s = refresh_margin_s
        self._lock_ttl_s = lock_ttl_s
        self._clock = clock
        self._sleep = sleep
        self._cached: StoredToken | None = None
        self._local = asyncio.Lock()
        self._owner = secrets.token_hex(8)

    def __repr__(self) -> str:
        version = self._cached.version if self._cached else None
        return f"TokenManager(version={version})"

    def use_endpoint(self, endpoint: TokenEndpoint) -> None:
        """Refresh through ``endpoint`` (the documented API needs the client built first)."""
        self._endpoint = endpoint

    def expiry(self) -> Expiry | None:
        """The session's known expiries, as last loaded (no I/O)."""
        token = self._cached
        if token is None:
            return None
        return Expiry(
            token.expires_at,
            token.write_expires_at,
            token.refresh_expires_at,
            token.refreshable,
            token.refresh_token is not None,
        )

    def usable(self) -> bool:
        """Whether a token is at hand and not past its known expiry. No I/O: for probes."""
        token = self._cached
        if token is None:
            return False
        return token.expires_at is None or token.expires_at.timestamp() > self._clock()

    async def current(self) -> StoredToken:
        """The token to call with, refreshed first if it is about to expire."""
        token = self._cached
        if token is None or self._expiring(token):
            token = await self._load_or_seed()
        if self._expiring(token) and self._refreshable(token):
            token = await self.refresh(stale=token)
        return token

    def _refreshable(self, token: StoredToken) -> bool:
        """Whether a refresh can renew ``token``: a fixed-length token (or one whose refresh
        token has ended) is used as it is until it expires."""
        if token.refresh_token is None or token.refreshable is False:
            return False
        ends = token.refresh_expires_at
        return ends is None or ends.timestamp() > self._clock()

    async def refresh(self, *, stale: StoredToken) -> StoredToken:
        """Replace ``stale`` (rejected or expiring) with a fresh token, once for everyone."""
        async with self._local:
            deadline = self._clock() + self._lock_ttl_s
            while True:
                newer = await self._newer_than(stale)
                if newer is not None:
                    return newer
                if await self._store.try_lock(self._owner, self._lock_ttl_s):
                    break
                if self._clock() > deadline:
                    raise TaobaoSessionError(
                        "timed out waiting for another replica to refresh the token",
                        method=_REFRESH_METHOD,
                    )
                await self._sleep(0.1)
            try:
                return await self._refresh_locked(stale)
            finally:
                await self._store.unlock(self._owner)

    async def _refresh_locked(self, stale: StoredToken) -> StoredToken:
        newer = await self._newer_than(stale)
        if newer is not None:
            return newer
        if stale.refresh_token is None:
            raise TaobaoSessionError(
                "the session is invalid or expired and no refresh token is configured; "
                "set TAOBAO_REFRESH_TOKEN or a new TAOBAO_SESSION",
                method=_REFRESH_METHOD,
            )
        if stale.refreshable is False:
            raise TaobaoSessionError(
                "the session is invalid or expired and cannot be refreshed (a fixed-length "
                "token: re_expires_in 0); authorize the app again and set TAOBAO_SESSION",
                method=_REFRESH_METHOD,
            )
        grant = await self._endpoint.refresh(stale.refresh_token)
        self._cached = await self._store.save(grant, seed=stale.seed)
        return self._cached

    async def _newer_than(self, stale: StoredToken) -> StoredToken | None:
        stored = await self._store.load()
        # A higher version alone is not enough: replicas seeding the same configured token
        # concurrently bump the version without changing the token.
        if (
            stored is not None
            and stored.version > stale.version
            and stored.access_token != stale.access_token
        ):
            self._cached = stored
            return stored
        return None

    async def _load_or_seed(self) -> StoredToken:
        stored = await self._store.load()
        seed_fp = fingerprint(self._seed.access_token) if self._seed else None
        if self._seed is not None and seed_fp is not None and _must_seed(stored, seed_fp):
            # First start, or the operator configured a new token: it replaces the stored one.
            stored = await self._store.save(self._seed, seed=seed_fp)
        if stored is None:
            raise TaobaoSessionError(
                "no seller session: set TAOBAO_SESSION (and TAOBAO_REFRESH_TOKEN)",
                method=_REFRESH_METHOD,
            )
        self._cached = stored
        return stored

    def _expiring(self, token: StoredToken) -> bool:
        """The session, or its write permission (which may lapse first), ends within the
        refresh margin."""
        ends = [t for t in (token.expires_at, token.write_expires_at) if t is not None]
        if not ends:
            return False
        return min(ends).timestamp() - self._margin_s <= self._clock()
